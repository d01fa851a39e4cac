//! Why a pair scores what it scores: for one image and one caption, the score
//! and, per token, what the similarity encoder looked at (spec §6):
//!
//! - `saf_weights` (SAF models): the filtration weight of the token's node
//!   (the l1-normalised σ(BN(β)), node 0 — the global alignment — excluded);
//!   discriminative words get large weights, function words small ones.
//! - `sgr_global_edges` (SGR models): in the last reasoning step, the edge
//!   weight from the global node to the token's node (row 0 of softmax(Q Kᵀ)).
//! - `region_attention`: the text-to-image attention of the token over the 36
//!   regions (softmax of 9 × the clipped, word-normalised cosines).
//!
//! Eval mode (BatchNorm running statistics, no dropout), CPU, traced forward.

use crate::cpu::model::{encode_captions, encode_images, score_tile, ImageEmb};
use crate::data::Vocab;
use crate::error::{Result, SgrafError};
use crate::eval::score::encode_captions as encode_captions_checked;
use crate::model::params::{Mode, Params, Reasoning, SgrStep, N_REGIONS};

/// One pair explained. Every per-token vector is in token order, `<start>` and `<end>` included.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Explanation {
    pub tokens: Vec<String>,                // [L] the caption as the model reads it
    pub score: f32,                         // σ(head): the pair's score
    pub saf_weights: Option<Vec<f32>>,      // [L] SAF filtration weight of each word node
    pub sgr_global_edges: Option<Vec<f32>>, // [L] last SGR step: edge global node → word node
    pub region_attention: Vec<Vec<f32>>,    // [L][36] text-to-image attention
}

/// Explains `image [36, D_img]` against `caption` (raw text, tokenised as in training).
pub fn explain(params: &Params, vocab: &Vocab, image: &[f32], caption: &str) -> Result<Explanation> {
    let mut all = explain_many(params, vocab, image, &[caption.to_string()])?;
    all.pop().ok_or_else(|| SgrafError::Input("no caption to explain".into()))
}

/// [`explain`] for several captions of one image, encoding the image once.
pub fn explain_many(params: &Params, vocab: &Vocab, image: &[f32], captions: &[String]) -> Result<Vec<Explanation>> {
    let cfg = &params.cfg;
    if image.len() != N_REGIONS * cfg.img_dim {
        return Err(SgrafError::Input(format!(
            "the image has {} values; the model needs {N_REGIONS} regions × {} features = {}",
            image.len(),
            cfg.img_dim,
            N_REGIONS * cfg.img_dim
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
    let ids = encode_captions_checked(captions, vocab)?; // MAX_TOKENS enforced
    if let Some(&bad) = ids.iter().flatten().find(|&&id| id as usize >= params.cfg.vocab) {
        return Err(SgrafError::Input(format!(
            "token id {bad} is outside the model's {}-word embedding (vocabulary and checkpoint do not match)",
            params.cfg.vocab
        )));
    }
    let cap = encode_captions(params, &ids);
    let (sims, trace) = score_tile(params, img, &cap, Mode::Eval, true);
    let tr = trace.ok_or_else(|| SgrafError::Input("explain: the traced forward kept no trace".into()))?;
    let lay = &cap.layout;
    let mut out = Vec::with_capacity(captions.len());
    for (c, caption) in captions.iter().enumerate() {
        let (words, nodes) = (lay.words(c), lay.nodes(c));
        // the words as written (unknown ones included), or the vocabulary's if tokenising disagrees
        let mut tokens = vec!["<start>".to_string()];
        tokens.extend(crate::data::tokenize(caption));
        tokens.push("<end>".to_string());
        if tokens.len() != ids[c].len() {
            tokens = ids[c].iter().map(|&id| vocab.word(id).unwrap_or("<unk>").to_string()).collect();
        }
        let region_attention = words.clone().map(|w| tr.attn[w * N_REGIONS..(w + 1) * N_REGIONS].to_vec()).collect(); // [L][36]
                                                                                                                      // node 0 of each caption is the global node; nodes 1..=L its tokens
        let saf_weights = tr.saf.as_ref().map(|saf| saf.weights[nodes.start + 1..nodes.end].to_vec());
        let sgr_global_edges = match &params.reasoning {
            Reasoning::Sgr(steps) => steps.last().map(|last| {
                let s = params.cfg.sim_dim;
                // input of the last step: the initial nodes, or the previous step's output
                let x = if steps.len() == 1 { &tr.nodes } else { &tr.sgr_steps[steps.len() - 2] };
                global_edges(&x[nodes.start * s..nodes.end * s], last, s)
            }),
            Reasoning::Saf(_) => None,
        };
        out.push(Explanation { tokens, score: sims[c], saf_weights, sgr_global_edges, region_attention });
    }
    Ok(out)
}

/// Row 0 of `softmax(Q Kᵀ)` over one caption's nodes `x [m, S]`, without its
/// self-edge: `[m − 1]` weights of the word nodes (they sum to 1 − the self-edge).
fn global_edges(x: &[f32], step: &SgrStep, s: usize) -> Vec<f32> {
    let m = x.len() / s;
    let (mut q0, mut k) = (vec![0.0; s], vec![0.0; m * s]); // [S], [m, S]
    crate::cpu::linear::forward(&x[..s], &step.query.w, Some(&step.query.b), &mut q0, 1, s, s);
    crate::cpu::linear::forward(x, &step.key.w, Some(&step.key.b), &mut k, m, s, s);
    let mut row: Vec<f32> = k.chunks_exact(s).map(|kj| q0.iter().zip(kj).map(|(a, b)| a * b).sum()).collect(); // [m]
    crate::cpu::softmax(&mut row);
    row.split_off(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::params::{Config, Module};

    fn vocab() -> Vocab {
        let words = ["<pad>", "<start>", "<end>", "<unk>", "a", "brown", "dog", "of", "the"];
        let idx2word: Vec<String> = words.iter().enumerate().map(|(i, w)| format!("\"{i}\": \"{w}\"")).collect();
        let word2idx: Vec<String> = words.iter().enumerate().map(|(i, w)| format!("\"{w}\": {i}")).collect();
        let json = format!(
            "{{\"idx2word\": {{{}}}, \"word2idx\": {{{}}}, \"idx\": {}}}",
            idx2word.join(", "),
            word2idx.join(", "),
            words.len()
        );
        Vocab::from_json_str(&json).unwrap()
    }

    fn model(module: Module) -> Params {
        Params::init(Config { img_dim: 6, word_dim: 5, embed: 8, sim_dim: 4, vocab: 9, module }, 3)
    }

    #[test]
    fn explanation_matches_the_scorer_and_is_normalised() {
        let v = vocab();
        let image: Vec<f32> = (0..N_REGIONS * 6).map(|i| ((i * 37 % 11) as f32) / 11.0).collect();
        for module in [Module::Sgr { steps: 3 }, Module::Saf] {
            let p = model(module);
            let e = explain(&p, &v, &image, "a brown dog of the").unwrap();
            assert_eq!(e.tokens, ["<start>", "a", "brown", "dog", "of", "the", "<end>"]);
            // the same score as the untraced scorer
            let (img, _) = encode_images(&p, &image, 1, Mode::Eval);
            let cap = encode_captions(&p, &[crate::data::encode("a brown dog of the", &v)]);
            let want = score_tile(&p, &img, &cap, Mode::Eval, false).0[0];
            assert!((e.score - want).abs() < 1e-6, "score {} vs scorer {want}", e.score);
            assert_eq!(e.region_attention.len(), 7);
            for (j, a) in e.region_attention.iter().enumerate() {
                let s: f32 = a.iter().sum();
                assert!((s - 1.0).abs() < 1e-5, "token {j}: attention sums to {s}");
            }
            match module {
                Module::Saf => {
                    let w = e.saf_weights.as_ref().unwrap();
                    assert_eq!(w.len(), 7);
                    assert!(w.iter().all(|&x| x > 0.0 && x < 1.0), "{w:?}");
                    assert!(e.sgr_global_edges.is_none());
                }
                Module::Sgr { .. } => {
                    let g = e.sgr_global_edges.as_ref().unwrap();
                    assert_eq!(g.len(), 7);
                    let s: f32 = g.iter().sum();
                    assert!(s > 0.0 && s < 1.0, "word edges sum to {s}: below 1 by the self-edge");
                    assert!(e.saf_weights.is_none());
                }
            }
        }
    }

    #[test]
    fn mismatched_inputs_are_errors() {
        let v = vocab();
        let p = model(Module::Saf);
        assert!(explain(&p, &v, &[0.0; 10], "a dog").is_err());
        let big =
            Params::init(Config { img_dim: 6, word_dim: 5, embed: 8, sim_dim: 4, vocab: 5, module: Module::Saf }, 1);
        let image = vec![0.1; N_REGIONS * 6];
        let err = explain(&big, &v, &image, "the dog").unwrap_err().to_string();
        assert!(err.contains("vocabulary"), "{err}");
    }
}
