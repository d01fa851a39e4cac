//! `sgraf explain`: one image–caption pair, word by word.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use sgraf::data::{Split, Vocab};
use sgraf::explain::{explain, Explanation};

#[derive(Args)]
pub struct ExplainArgs {
    /// Checkpoint (.safetensors with the official keys, or the authors' .pth.tar).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Folder with <split>_ims.npy.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Image index in the split (0-based).
    #[arg(long)]
    pub image: usize,
    /// The caption, as free text.
    #[arg(long)]
    pub caption: String,
    /// Vocabulary JSON (default: <data>/vocab.json).
    #[arg(long)]
    pub vocab: Option<PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: ExplainArgs) -> Result<()> {
    let params = super::load_checkpoint(&a.checkpoint)?;
    let vocab_path = a.vocab.clone().unwrap_or_else(|| a.data.join("vocab.json"));
    let vocab = Vocab::load(&vocab_path).context("loading the vocabulary (use --vocab to point at it)")?;
    if params.cfg.vocab != vocab.len() {
        bail!(
            "checkpoint {} has a {}-word embedding but the vocabulary {} has {} words",
            a.checkpoint.display(),
            params.cfg.vocab,
            vocab_path.display(),
            vocab.len()
        );
    }
    let split = Split::load(&a.data, &a.split).with_context(|| format!("loading split {}", a.split))?;
    if a.image >= split.n_images {
        bail!("--image {} is out of range: split '{}' has {} images (0-based)", a.image, a.split, split.n_images);
    }
    if split.img_dim != params.cfg.img_dim {
        bail!("the split has {}-d region features but the checkpoint expects {}", split.img_dim, params.cfg.img_dim);
    }
    let e = explain(&params, &vocab, split.image(a.image), &a.caption)?;
    if a.json {
        println!("{}", serde_json::to_string(&e)?);
    } else {
        print!("{}", table(&e, a.image));
    }
    Ok(())
}

/// The terminal form: one row per token with its weights, a bar, and its most attended regions.
pub fn table(e: &Explanation, image: usize) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "score {:.4} (image {image})", e.score);
    let (what, w) = match (&e.saf_weights, &e.sgr_global_edges) {
        (Some(w), _) => ("SAF weight", w),
        (None, Some(g)) => ("SGR edge", g),
        (None, None) => unreachable!("an explanation carries SAF weights or SGR edges"),
    };
    let max = w.iter().cloned().fold(f32::MIN, f32::max).max(1e-12);
    let _ = writeln!(s, "{:<12} {:>10}  {:<20}  top regions (attention)", "token", what, "");
    for (k, tok) in e.tokens.iter().enumerate() {
        let bar = "#".repeat(((w[k] / max) * 20.0).round() as usize);
        let mut order: Vec<usize> = (0..e.region_attention[k].len()).collect();
        order.sort_by(|&x, &y| e.region_attention[k][y].total_cmp(&e.region_attention[k][x]));
        let top: Vec<String> = order.iter().take(3).map(|&r| format!("r{r} {:.2}", e.region_attention[k][r])).collect();
        let _ = writeln!(s, "{tok:<12} {:>10.4}  {bar:<20}  {}", w[k], top.join(", "));
    }
    s
}
