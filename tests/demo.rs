//! The demo: the shipped models in `web/assets/` (written by `sgraf demo`)
//! and the command itself at a test-sized scale.

use std::path::Path;
use std::process::Command;

use sgraf::data::{Split, Vocab};
use sgraf::eval::{metrics, score};
use sgraf::explain::explain;
use sgraf::model::params::Params;

const ASSETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/web/assets");
const FUNCTION_WORDS: [&str; 6] = ["a", "of", "the", "with", "on", "is"];

fn load(name: &str) -> Params {
    let path = Path::new(ASSETS).join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run `sgraf demo`)", path.display()));
    Params::from_safetensors_bytes(&bytes, name).expect("shipped checkpoint")
}

/// Over the test captions of the shipped SAF model, colour words get more
/// SAF weight on average than function words.
#[test]
fn shipped_saf_weighs_colours_above_function_words() {
    let saf = load("saf.safetensors");
    let vocab = Vocab::load(Path::new(ASSETS).join("vocab.json")).expect("vocab");
    let test = Split::load(ASSETS, "test").expect("the shipped test gallery");
    let (mut colour, mut function) = ((0.0f64, 0usize), (0.0f64, 0usize));
    for (k, cap) in test.captions.iter().enumerate() {
        let e = explain(&saf, &vocab, test.image(test.image_of_caption(k)), cap).expect("explain");
        let w = e.saf_weights.expect("an SAF model");
        for (tok, &w) in e.tokens.iter().zip(&w) {
            if sgraf::synth::Colour::from_word(tok).is_some() {
                colour = (colour.0 + w as f64, colour.1 + 1);
            } else if FUNCTION_WORDS.contains(&tok.as_str()) {
                function = (function.0 + w as f64, function.1 + 1);
            }
        }
    }
    let (c, f) = (colour.0 / colour.1 as f64, function.0 / function.1 as f64);
    println!(
        "mean SAF weight: colour words {c:.4} ({} tokens), function words {f:.4} ({} tokens)",
        colour.1, function.1
    );
    assert!(colour.1 > 100 && function.1 > 100, "too few tokens: {colour:?} {function:?}");
    assert!(c > f, "colour words ({c}) should weigh more than function words ({f})");
}

/// The shipped ensemble retrieves far above chance on its test gallery.
#[test]
fn shipped_ensemble_is_far_above_chance() {
    let vocab = Vocab::load(Path::new(ASSETS).join("vocab.json")).expect("vocab");
    let test = Split::load(ASSETS, "test").expect("the shipped test gallery");
    let ids = score::encode_captions(&test.captions, &vocab).unwrap();
    let mut sims = Vec::new();
    for name in ["saf.safetensors", "sgr.safetensors"] {
        let model = sgraf::backend::Model::new(load(name), &sgraf::backend::Backend::Cpu).unwrap();
        sims.push(score::score_split(&model, &test, &ids, &mut |_, _| {}).unwrap());
    }
    let ens = metrics::ensemble(&sims[0], &sims[1]).unwrap();
    let m = metrics::evaluate(&ens, test.n_images, ids.len(), test.im_div).unwrap();
    let chance = 100.0 / test.n_images as f64;
    println!("shipped ensemble: i2t R@1 {:.1}, t2i R@1 {:.1} (chance {chance:.1})", m.i2t.r1, m.t2i.r1);
    assert!(m.i2t.r1 > 10.0 * chance && m.t2i.r1 > 10.0 * chance, "R@1 {m:?} not far above chance {chance}");
}

/// `sgraf demo` end to end at a small scale: table, explanation, assets.
#[test]
fn demo_command_writes_the_page_assets() {
    let dir = tempfile::tempdir().unwrap();
    let (work, out) = (dir.path().join("work"), dir.path().join("assets"));
    let o = Command::new(env!("CARGO_BIN_EXE_sgraf"))
        .args(["demo", "--images", "72", "--epochs", "1", "--backend", "cpu", "--work"])
        .arg(&work)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "sgraf demo failed:\n{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    for want in ["SGRAF (SGR + SAF)", "chance (random ranking)", "A hard negative", "SAF weight"] {
        assert!(stdout.contains(want), "demo output lacks '{want}':\n{stdout}");
    }
    for f in [
        "manifest.json",
        "saf.safetensors",
        "sgr.safetensors",
        "vocab.json",
        "test_ims.npy",
        "test_caps.txt",
        "test_boxes.json",
        "test_img/00000.png",
    ] {
        assert!(out.join(f).is_file(), "demo did not write {f}");
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["images"], 6);
    assert!(manifest["examples"].as_array().is_some_and(|e| !e.is_empty()));
}
