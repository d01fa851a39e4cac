//! Training learns: on a small generated scenes dataset (captions describe
//! their image), a few epochs of `Trainer::run` lower the loss well below its
//! start and lift dev R@1 far above chance, in both directions, for SAF and SGR.
//! Fixed seeds; CPU backend.

use sgraf::backend::Backend;
use sgraf::data::Vocab;
use sgraf::model::params::{Config, Module, Params};
use sgraf::synth::{self, SynthConfig};
use sgraf::train::run::{validate, TrainData, TrainOptions, Trainer};

fn learns(module: Module) {
    let dir = tempfile::tempdir().expect("temp dir");
    // 200 train, 20 dev, 20 test images; 32-d region features
    let cfg = SynthConfig::with_images(240, 11, 32);
    synth::write_dataset(dir.path(), &cfg, "tests/train_learns.rs").expect("writing the scenes");
    let vocab = Vocab::load(dir.path().join("vocab.json")).expect("vocab");
    let data = TrainData::load(dir.path(), &vocab).expect("train data");
    let dev = data.dev.as_ref().expect("a dev split");
    let n_dev = dev.0.n_images;

    let p = Params::init(Config { img_dim: 32, word_dim: 32, embed: 64, sim_dim: 32, vocab: vocab.len(), module }, 5);
    let options = TrainOptions {
        epochs: 8,
        batch_size: 32,
        lr: 2e-3,
        lr_update: 100,
        max_violation: false,
        seed: 5,
        val_step: u64::MAX,
        checkpoint_step: u64::MAX,
        ..TrainOptions::default()
    };
    let before = validate(&p, dev, &Backend::Cpu).expect("dev before");
    let out = dir.path().join("run");
    let mut t = Trainer::new(&out, p, options, Backend::Cpu).expect("trainer");
    let mut losses = Vec::new();
    t.run(&data, &mut |pr| losses.push(pr.loss)).expect("training");
    let after = validate(&t.params, dev, &Backend::Cpu).expect("dev after");

    let mean = |x: &[f32]| x.iter().sum::<f32>() / x.len() as f32;
    let (first, last) = (mean(&losses[..4]), mean(&losses[losses.len() - 8..]));
    // chance R@1: t2i 1/N; i2t 5 true captions among 5N: 1/N as well
    let chance = 100.0 / n_dev as f64;
    println!(
        "{} after {} steps: loss {first:.2} → {last:.2}; dev R@1 i2t {:.1} → {:.1}, t2i {:.1} → {:.1} (chance {chance:.1})",
        module.name(),
        losses.len(),
        before.i2t.r1,
        after.i2t.r1,
        before.t2i.r1,
        after.t2i.r1
    );
    assert!(last < 0.5 * first, "{}: the loss did not fall: first steps {first}, last steps {last}", module.name());
    for (what, r1) in [("i2t", after.i2t.r1), ("t2i", after.t2i.r1)] {
        assert!(
            r1 >= 4.0 * chance,
            "{}: dev {what} R@1 {r1:.1} is not far above chance {chance:.1} (needs ≥ 4×)",
            module.name()
        );
    }
}

#[test]
fn saf_learns_the_scenes() {
    learns(Module::Saf);
}

#[test]
fn sgr_learns_the_scenes() {
    learns(Module::Sgr { steps: 3 });
}
