//! Per-word explanation of one image–caption pair, from the traced CPU
//! forward: SAF filtration weight per token, SGR global-node edge per token,
//! and the text-to-image attention of every token over the 36 regions.
//!
//! TEMPORARY: a thin stand-in with the signature and struct of the coming
//! `sgraf::explain::explain`; the page switches to that one when it lands on
//! main, and this file goes away.

use serde::Serialize;

use crate::cpu::model::{encode_captions, encode_images, ImageEmb};
use crate::data::Vocab;
use crate::error::{Result, SgrafError};
use crate::model::params::{Mode, Params, Reasoning, N_REGIONS};

/// What one model makes of one image–caption pair, per token (`<start>` and
/// `<end>` included, as the model reads them).
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    pub tokens: Vec<String>,
    pub score: f32,
    /// SAF: the filtration weight β of every token's local node (`[n_tokens]`;
    /// the global node takes the rest of the l1 mass).
    pub saf_weights: Option<Vec<f32>>,
    /// SGR: the last step's edge from the global node to every token's node
    /// (`[n_tokens]`, softmax row of the global node without its self-edge).
    pub sgr_global_edges: Option<Vec<f32>>,
    /// Text-to-image attention `α[token][region]`, `[n_tokens][36]`.
    pub region_attention: Vec<Vec<f32>>,
}

/// Explains `caption` against `image` (`[36, D_img]` region features).
pub fn explain(params: &Params, vocab: &Vocab, image: &[f32], caption: &str) -> Result<Explanation> {
    let mut all = explain_many(params, vocab, image, &[caption.to_string()])?;
    all.pop().ok_or_else(|| SgrafError::Input("no caption to explain".into()))
}

/// [`explain`] for several captions of one image, encoding the image once.
pub fn explain_many(params: &Params, vocab: &Vocab, image: &[f32], captions: &[String]) -> Result<Vec<Explanation>> {
    let d = params.cfg.img_dim;
    if image.len() != N_REGIONS * d {
        return Err(SgrafError::Input(format!(
            "explain: the image has {} values, the model needs {N_REGIONS} regions × {d}",
            image.len()
        )));
    }
    if captions.is_empty() {
        return Ok(Vec::new());
    }
    let (img, _) = encode_images(params, image, 1, Mode::Eval);
    explain_encoded(params, vocab, &img, captions)
}

/// [`explain_many`] on an image already encoded by the CPU encoder (`img.n == 1`).
pub fn explain_encoded(
    params: &Params,
    vocab: &Vocab,
    img: &ImageEmb,
    captions: &[String],
) -> Result<Vec<Explanation>> {
    let ids = crate::eval::score::encode_captions(captions, vocab)?;
    let cap = encode_captions(params, &ids);
    let (sims, trace) = crate::cpu::model::score_tile(params, img, &cap, Mode::Eval, true);
    let tr = trace.ok_or_else(|| SgrafError::Input("explain: the traced forward kept no trace".into()))?;
    let lay = &cap.layout;
    let s = params.cfg.sim_dim;
    let mut out = Vec::with_capacity(captions.len());
    for (c, caption) in captions.iter().enumerate() {
        let words = lay.words(c);
        let nodes = lay.nodes(c);
        let mut tokens = vec!["<start>".to_string()];
        tokens.extend(crate::data::tokenize(caption));
        tokens.push("<end>".to_string());
        let region_attention =
            words.clone().map(|w| tr.attn[w * N_REGIONS..(w + 1) * N_REGIONS].to_vec()).collect::<Vec<_>>();
        // Node 0 of each caption is the global node; nodes 1..=L are its tokens.
        let saf_weights = tr.saf.as_ref().map(|saf| saf.weights[nodes.start + 1..nodes.end].to_vec());
        let sgr_global_edges = match &params.reasoning {
            Reasoning::Sgr(steps) => steps.last().map(|last| {
                // Input of the last step: the initial nodes, or the previous step's output.
                let x = match tr.sgr_steps.len() {
                    0 | 1 => &tr.nodes,
                    k => &tr.sgr_steps[k - 2],
                };
                let x = &x[nodes.start * s..nodes.end * s];
                global_edges(x, last, s)
            }),
            Reasoning::Saf(_) => None,
        };
        out.push(Explanation { tokens, score: sims[c], saf_weights, sgr_global_edges, region_attention });
    }
    Ok(out)
}

/// Row 0 of `softmax(Q Kᵀ)` over one caption's nodes `x [m, S]`, without
/// its self-edge: `[m − 1]`.
fn global_edges(x: &[f32], step: &crate::model::params::SgrStep, s: usize) -> Vec<f32> {
    let m = x.len() / s;
    let mut q = vec![0.0; s];
    crate::cpu::linear::forward(&x[..s], &step.query.w, Some(&step.query.b), &mut q, 1, s, s);
    let mut k = vec![0.0; m * s];
    crate::cpu::linear::forward(x, &step.key.w, Some(&step.key.b), &mut k, m, s, s);
    let mut row: Vec<f32> = k.chunks_exact(s).map(|kj| kj.iter().zip(&q).map(|(a, b)| a * b).sum()).collect();
    crate::cpu::softmax(&mut row);
    row.split_off(1)
}
