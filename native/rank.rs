//! `sgraf rank`: one sentence against every image of a split, ranked by the
//! score of one checkpoint or the SGRAF ensemble of two (the page's
//! sentence → images search, natively; the browser test compares the two).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use sgraf::backend::{Backend, BackendChoice, Model};
use sgraf::data::{Split, Vocab};
use sgraf::eval::{metrics, score};

#[derive(Args)]
pub struct RankArgs {
    /// Checkpoint (.safetensors with the official keys, or the authors' .pth.tar); give two for the SGRAF ensemble.
    #[arg(long = "checkpoint", required = true, num_args = 1)]
    checkpoints: Vec<PathBuf>,
    /// Folder with <split>_ims.npy and <split>_caps.txt.
    #[arg(long)]
    data: PathBuf,
    /// Split name: test, testall, dev, ...
    #[arg(long, default_value = "test")]
    split: String,
    /// Vocabulary JSON (default: <data>/vocab.json).
    #[arg(long)]
    vocab: Option<PathBuf>,
    /// The sentence to search with.
    #[arg(long)]
    query: String,
    /// auto (hardware GPU if any, else CPU), gpu (any adapter, lavapipe included) or cpu.
    #[arg(long, default_value = "auto")]
    backend: BackendChoice,
    /// Print one JSON object: {"query", "tokens", "modules", "order", "scores", "per_model"}.
    #[arg(long)]
    json: bool,
}

pub fn rank(a: RankArgs) -> Result<()> {
    if a.checkpoints.len() > 2 {
        bail!("give one checkpoint, or two (an SGR and an SAF model) for the SGRAF ensemble");
    }
    let vocab_path = a.vocab.clone().unwrap_or_else(|| a.data.join("vocab.json"));
    let vocab = Vocab::load(&vocab_path).context("loading the vocabulary (use --vocab to point at it)")?;
    let split = Split::load(&a.data, &a.split)
        .with_context(|| format!("loading split '{}' from {}", a.split, a.data.display()))?;
    if sgraf::data::tokenize(&a.query).is_empty() {
        bail!("the query has no words");
    }
    let query = score::encode_captions(std::slice::from_ref(&a.query), &vocab)?;
    let (backend, desc) = Backend::resolve(a.backend)?;
    if !a.json {
        eprintln!("{desc}");
    }
    let mut per_model: Vec<(&'static str, Vec<f32>)> = Vec::new();
    for ck in &a.checkpoints {
        let params = crate::load_checkpoint(ck)?;
        if params.cfg.vocab != vocab.len() {
            bail!(
                "checkpoint {} has a {}-word embedding but the vocabulary {} has {} words",
                ck.display(),
                params.cfg.vocab,
                vocab_path.display(),
                vocab.len()
            );
        }
        let module = params.cfg.module.name();
        let model = Model::new(params, &backend)?;
        let s = score::score_split(&model, &split, &query, &mut |_, _| {})
            .with_context(|| format!("scoring with {}", ck.display()))?; // [n_images, 1]
        per_model.push((module, s));
    }
    let mut scores = per_model[0].1.clone();
    if let Some((_, b)) = per_model.get(1) {
        scores = metrics::ensemble(&scores, b)?;
    }
    let order = metrics::ranking(&scores);
    if a.json {
        let v = serde_json::json!({
            "query": a.query,
            "tokens": sgraf::data::tokenize(&a.query),
            "modules": per_model.iter().map(|(m, _)| m).collect::<Vec<_>>(),
            "order": order,
            "scores": scores,
            "per_model": per_model.iter().map(|(m, s)| serde_json::json!({"module": m, "scores": s})).collect::<Vec<_>>(),
        });
        println!("{v}");
    } else {
        let names: String = per_model.iter().map(|(m, _)| format!(" {m:>9}")).collect();
        let score = if per_model.len() > 1 { "SGRAF" } else { "score" };
        println!("{:>5} {:>6} {score:>9}{names}", "rank", "image");
        for (pos, &i) in order.iter().enumerate() {
            let parts: String = per_model.iter().map(|(_, s)| format!(" {:>9.6}", s[i])).collect();
            println!("{:>5} {:>6} {:>9.6}{parts}", pos + 1, i, scores[i]);
        }
    }
    Ok(())
}
