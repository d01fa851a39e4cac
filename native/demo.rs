//! `sgraf demo`: the whole story on a fresh machine, with nothing downloaded.
//! Generates the scenes dataset, trains a small SAF and a small SGR model,
//! evaluates their SGRAF ensemble on the test split beside chance level,
//! explains a hard negative word by word, and writes the browser page's assets.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use sgraf::backend::{Backend, BackendChoice, Model};
use sgraf::data::{Split, Vocab};
use sgraf::eval::metrics::{self, Metrics};
use sgraf::eval::score;
use sgraf::explain::explain;
use sgraf::model::params::{Config, Module, Params};
use sgraf::synth::{self, Colour, Edit, SynthConfig};
use sgraf::train::run::{TrainData, TrainOptions, Trainer};

#[derive(Args)]
pub struct DemoArgs {
    /// Where the browser page's assets go (checkpoints, test gallery, pictures, manifest).
    #[arg(long, default_value = "web/assets")]
    pub out: PathBuf,
    /// Working folder: the generated dataset (<work>/scenes) and both training runs.
    #[arg(long, default_value = "runs/demo")]
    pub work: PathBuf,
    /// Seed of the dataset, the initialisation and the batch order.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Images of the generated dataset (train : dev : test = 10 : 1 : 1).
    #[arg(long, default_value_t = synth::DEFAULT_IMAGES)]
    pub images: usize,
    /// Training epochs of each model (the last one at a tenth of the learning rate).
    #[arg(long, default_value_t = 4)]
    pub epochs: usize,
    /// auto (hardware GPU for validation and evaluation if any, else CPU), gpu or cpu.
    #[arg(long, default_value = "auto")]
    pub backend: BackendChoice,
}

/// The reduced model of the demo: region features from the generator, E 64, S 32, word 64.
fn demo_config(img_dim: usize, vocab: usize, module: Module) -> Config {
    Config { img_dim, word_dim: 64, embed: 64, sim_dim: 32, vocab, module }
}

/// The demo's training recipe (not the paper's: a small model, a 10× learning
/// rate, batches of 64, and the loss over all violating negatives — the official
/// `--max_violation` switched off — which leaves the initial plateau within the
/// first epoch; with hardest negatives a model this small stays on it).
fn demo_options(epochs: usize, seed: u64) -> TrainOptions {
    TrainOptions {
        epochs,
        max_steps: None,
        batch_size: 64,
        lr: 2e-3,
        lr_update: epochs.saturating_sub(1).max(1),
        max_violation: false,
        seed,
        val_step: u64::MAX,
        checkpoint_step: 1_000_000,
        ..TrainOptions::default()
    }
}

pub fn run(a: DemoArgs) -> Result<()> {
    let t0 = Instant::now();
    let data_dir = a.work.join("scenes");
    let cfg = SynthConfig::with_images(a.images, a.seed, synth::DEFAULT_FEATURE_SIZE);
    let dataset = synth::generate(&cfg).context("generating the scenes")?;
    let on_disk = std::fs::read_to_string(data_dir.join("test_caps.txt")).unwrap_or_default();
    let same = on_disk.lines().eq(dataset.splits[2].captions.iter().map(String::as_str));
    let dataset = if same && data_dir.join("vocab.json").exists() {
        eprintln!("using the scenes dataset in {}", data_dir.display());
        dataset
    } else {
        eprintln!("generating the scenes dataset into {} …", data_dir.display());
        synth::write_dataset(&data_dir, &cfg, &format!("sgraf demo --seed {} --images {}", a.seed, a.images))
            .with_context(|| format!("writing the scenes dataset into {}", data_dir.display()))?
    };
    let vocab = Vocab::load(data_dir.join("vocab.json")).context("loading the scenes vocabulary")?;
    let data = TrainData::load(&data_dir, &vocab).context("loading the scenes dataset")?;
    let (backend, desc) = Backend::resolve(a.backend)?;
    eprintln!("training, validation and evaluation: {desc}");

    // ---- train SAF, then SGR -------------------------------------------------
    let mut best = Vec::new();
    for (name, module) in [("saf", Module::Saf), ("sgr", Module::Sgr { steps: 3 })] {
        let out = a.work.join(name);
        let params = Params::init(demo_config(data.train.img_dim, vocab.len(), module), a.seed);
        let mut trainer = Trainer::new(&out, params, demo_options(a.epochs, a.seed), backend.clone())?;
        if let Backend::Gpu(ctx) = &backend {
            trainer.use_gpu_steps(ctx.clone()).context("moving the model to the GPU for training")?;
        }
        let batches = data.captions.len().div_ceil(64);
        let pb = ProgressBar::new((a.epochs * batches) as u64);
        pb.set_style(
            ProgressStyle::with_template(&format!(
                "{:<3} epoch {{prefix}} [{{bar:30}}] step {{pos}}/{{len}} {{msg}} ({{elapsed}}, eta {{eta}})",
                module.name()
            ))
            .expect("valid template")
            .progress_chars("=> "),
        );
        trainer.run(&data, &mut |p| {
            pb.set_prefix(format!("{}", p.epoch));
            pb.set_position(p.step);
            let dev = p.dev.map(|m| format!(" dev rsum {:.1}", m.rsum)).unwrap_or_default();
            pb.set_message(format!("loss {:.3}{dev}", p.loss));
        })?;
        pb.finish();
        best.push(out.join("best.safetensors"));
    }

    // ---- the ensemble on the test split ---------------------------------------
    let test = Split::load(&data_dir, "test").context("loading the test split")?;
    let captions = score::encode_captions(&test.captions, &vocab)?;
    let mut all = Vec::new();
    let mut models = Vec::new();
    for ck in &best {
        let params = super::load_checkpoint(ck)?;
        let model = Model::new(params.clone(), &backend)?;
        let s = score::score_split(&model, &test, &captions, &mut |_, _| {})?;
        let m = metrics::evaluate(&s, test.n_images, captions.len(), test.im_div)?;
        all.push(s);
        models.push((params, m));
    }
    let ens = metrics::ensemble(&all[0], &all[1])?;
    let m = metrics::evaluate(&ens, test.n_images, captions.len(), test.im_div)?;
    println!();
    println!("SGRAF ensemble on the scenes test split ({} images, {} captions):", test.n_images, captions.len());
    print_table(&m, &models[0].1, &models[1].1, test.n_images);

    // ---- one hard negative, explained ----------------------------------------
    let saf = &models[0].0;
    let split = &dataset.splits[2];
    if let Some((img, truth, wrong)) = hard_negative(split) {
        println!();
        println!("A hard negative: image {img} of the test split ({}) and two captions that differ in one colour.", {
            let p = data_dir.join(format!("test_img/{img:05}.png"));
            p.display().to_string()
        });
        for (what, cap) in [("true", &truth), ("one colour wrong", &wrong)] {
            let e = explain(saf, &vocab, test.image(img), cap)?;
            println!();
            println!("{what}: \"{cap}\"");
            print!("{}", super::explain::table(&e, img));
        }
        println!();
        println!("SAF puts its weight on the words that tell scenes apart (colours, kinds), not on function words.");
    }

    // ---- the browser page's assets --------------------------------------------
    write_assets(&a, &data_dir, &best, &dataset, test.n_images)?;
    println!();
    println!("assets for the browser page in {} ({} s in all)", a.out.display(), t0.elapsed().as_secs());
    Ok(())
}

/// The R@K table of the ensemble and each model, with chance level.
fn print_table(ens: &Metrics, saf: &Metrics, sgr: &Metrics, n_images: usize) {
    println!("{:<28} {:>6} {:>6} {:>6}   {:>6} {:>6} {:>6}   {:>6}", "", "i2t", "", "", "t2i", "", "", "");
    println!(
        "{:<28} {:>6} {:>6} {:>6}   {:>6} {:>6} {:>6}   {:>6}",
        "", "R@1", "R@5", "R@10", "R@1", "R@5", "R@10", "rsum"
    );
    for (name, m) in [("SGRAF (SGR + SAF)", ens), ("SAF", saf), ("SGR", sgr)] {
        println!(
            "{:<28} {:>6.1} {:>6.1} {:>6.1}   {:>6.1} {:>6.1} {:>6.1}   {:>6.1}",
            name, m.i2t.r1, m.i2t.r5, m.i2t.r10, m.t2i.r1, m.t2i.r5, m.t2i.r10, m.rsum
        );
    }
    // chance: a random ranking. i2t: 5 true captions among 5N; t2i: 1 true image among N.
    let n = n_images as f64;
    // P(no true caption in the top K) = C(5N−5, K) / C(5N, K)
    let i2t = |k: usize| {
        100.0 * (1.0 - (0..k).map(|j| ((5.0 * n - 5.0 - j as f64) / (5.0 * n - j as f64)).max(0.0)).product::<f64>())
    };
    let t2i = |k: usize| 100.0 * (k as f64 / n).min(1.0);
    let c = [i2t(1), i2t(5), i2t(10), t2i(1), t2i(5), t2i(10)];
    println!(
        "{:<28} {:>6.1} {:>6.1} {:>6.1}   {:>6.1} {:>6.1} {:>6.1}   {:>6.1}",
        "chance (random ranking)",
        c[0],
        c[1],
        c[2],
        c[3],
        c[4],
        c[5],
        c.iter().sum::<f64>()
    );
}

/// A test image made by recolouring one object of another, a caption of it
/// that names the new colour, and the same caption with the old colour.
fn hard_negative(split: &synth::SynthSplit) -> Option<(usize, String, String)> {
    for (i, e) in split.edits.iter().enumerate() {
        let Some(e) = e else { continue };
        let Edit::Colour { from, to, .. } = e.edit else { continue };
        for k in 0..synth::CAPTIONS_PER_IMAGE {
            let cap = &split.captions[i * synth::CAPTIONS_PER_IMAGE + k];
            let words: Vec<&str> = cap.split(' ').collect();
            let bare = |w: &str| w.trim_matches(|c: char| !c.is_alphabetic()).to_lowercase();
            let hits: Vec<usize> =
                (0..words.len()).filter(|&w| Colour::from_word(&bare(words[w])) == Some(to)).collect();
            if hits.len() == 1 && !words.iter().any(|w| Colour::from_word(&bare(w)) == Some(from)) {
                let mut wrong: Vec<String> = words.iter().map(|w| w.to_string()).collect();
                let w = words[hits[0]];
                let first_upper = w.chars().next().is_some_and(char::is_uppercase);
                let mut new = from.word().to_string();
                if first_upper {
                    new[..1].make_ascii_uppercase();
                }
                wrong[hits[0]] = w.replacen(&bare(w).to_string(), &new, 1).replacen(&capitalise(to.word()), &new, 1);
                return Some((i, cap.clone(), wrong.join(" ")));
            }
        }
    }
    None
}

fn capitalise(w: &str) -> String {
    let mut s = w.to_string();
    s[..1].make_ascii_uppercase();
    s
}

/// Everything `web/` loads: checkpoints, vocabulary, the test gallery (features,
/// captions, boxes, pictures) and `manifest.json`.
fn write_assets(a: &DemoArgs, data: &Path, best: &[PathBuf], dataset: &synth::SynthDataset, n: usize) -> Result<()> {
    let out = &a.out;
    std::fs::create_dir_all(out.join("test_img")).with_context(|| format!("creating {}", out.display()))?;
    let copy = |from: &Path, to: &str| -> Result<()> {
        std::fs::copy(from, out.join(to))
            .with_context(|| format!("copying {} to {}", from.display(), out.display()))?;
        Ok(())
    };
    copy(&best[0], "saf.safetensors")?;
    copy(&best[1], "sgr.safetensors")?;
    for f in ["vocab.json", "test_ims.npy", "test_caps.txt", "test_boxes.json"] {
        copy(&data.join(f), f)?;
    }
    for i in 0..n {
        copy(&data.join(format!("test_img/{i:05}.png")), &format!("test_img/{i:05}.png"))?;
    }
    let mut examples = vec![dataset.splits[2].captions[0].clone(), dataset.splits[2].captions[5].clone()];
    if let Some((_, _, wrong)) = hard_negative(&dataset.splits[2]) {
        examples.push(wrong);
    }
    let manifest = serde_json::json!({
        "version": 1,
        "checkpoints": {"sgr": "sgr.safetensors", "saf": "saf.safetensors"},
        "vocab": "vocab.json",
        "features": "test_ims.npy",
        "captions": "test_caps.txt",
        "boxes": "test_boxes.json",
        "pictures": "test_img/{:05}.png",
        "picture_size": [synth::WIDTH, synth::HEIGHT],
        "images": n,
        "captions_per_image": synth::CAPTIONS_PER_IMAGE,
        "examples": examples,
        "seed": a.seed,
        "command": format!("sgraf demo --seed {} --images {} --epochs {}", a.seed, a.images, a.epochs),
    });
    let text = serde_json::to_string_pretty(&manifest)?;
    std::fs::write(out.join("manifest.json"), text)
        .with_context(|| format!("writing {}/manifest.json", out.display()))?;
    if n == 0 {
        bail!("the test split is empty");
    }
    Ok(())
}
