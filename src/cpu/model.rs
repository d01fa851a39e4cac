//! The whole SGRAF forward on the CPU: encoders, then pair scoring of a tile
//! of images × captions (spec §3–§6).

use super::saf::SafTrace;
use super::visual_sa::VisualSaStats;
use crate::model::layout::TileLayout;
use crate::model::params::{Mode, Params, Reasoning, N_REGIONS};

/// Encoded images.
#[derive(Clone, Debug)]
pub struct ImageEmb {
    pub n: usize,
    pub v: Vec<f32>,     // [n, 36, E] l2-normalised regions
    pub v_glo: Vec<f32>, // [n, E] visual self-attention output
}

impl ImageEmb {
    /// Appends the images of `other` (same model).
    pub fn append(acc: &mut ImageEmb, other: ImageEmb) {
        acc.n += other.n;
        acc.v.extend(other.v);
        acc.v_glo.extend(other.v_glo);
    }
    pub fn slice(&self, r: std::ops::Range<usize>, e: usize) -> ImageEmb {
        ImageEmb {
            n: r.len(),
            v: self.v[r.start * N_REGIONS * e..r.end * N_REGIONS * e].to_vec(),
            v_glo: self.v_glo[r.start * e..r.end * e].to_vec(),
        }
    }
}

/// Encoded captions, packed (see [`TileLayout`]).
#[derive(Clone, Debug)]
pub struct CaptionEmb {
    pub layout: TileLayout,
    pub t: Vec<f32>,     // [n_words, E] l2-normalised word vectors
    pub t_glo: Vec<f32>, // [n_cap, E] text self-attention output
}

impl CaptionEmb {
    pub fn slice(&self, r: std::ops::Range<usize>, e: usize) -> CaptionEmb {
        let lay = &self.layout;
        let (w0, w1) = (lay.word_off[r.start], lay.word_off[r.end]);
        CaptionEmb {
            layout: TileLayout::new(&lay.lengths[r.clone()]),
            t: self.t[w0 * e..w1 * e].to_vec(),
            t_glo: self.t_glo[r.start * e..r.end * e].to_vec(),
        }
    }
}

/// `images [n, 36, D_img]` → image embeddings (+ BatchNorm stats in train mode).
pub fn encode_images(p: &Params, images: &[f32], n: usize, mode: Mode) -> (ImageEmb, VisualSaStats) {
    let e = p.cfg.embed;
    let v = super::image_fc::forward(images, &p.img_fc, n * N_REGIONS);
    let (v_glo, stats) = super::visual_sa::forward(&v, &p.v_sa, mode, n, e);
    (ImageEmb { n, v, v_glo }, stats)
}

/// Token ids per caption (with `<start>`/`<end>`) → `cap_emb [n_cap, l_max, E]`
/// as the official text encoder returns it (zeros past each length).
pub fn encode_words(p: &Params, captions: &[Vec<u32>]) -> (Vec<f32>, usize) {
    let (e, dw) = (p.cfg.embed, p.cfg.word_dim);
    let lengths: Vec<usize> = captions.iter().map(|c| c.len()).collect();
    let l_max = lengths.iter().copied().max().unwrap_or(0);
    let mut ids = vec![0u32; captions.len() * l_max]; // [n_cap, l_max], 0 = <pad>
    for (c, cap) in captions.iter().enumerate() {
        ids[c * l_max..c * l_max + cap.len()].copy_from_slice(cap);
    }
    let x = super::embed::forward(&ids, &p.embed, dw);
    (super::gru::forward(&x, &lengths, &p.gru_fwd, &p.gru_bwd, l_max, dw, e), l_max)
}

/// Token ids per caption → packed caption embeddings with the text global vector.
pub fn encode_captions(p: &Params, captions: &[Vec<u32>]) -> CaptionEmb {
    let e = p.cfg.embed;
    let (cap_emb, l_max) = encode_words(p, captions);
    let lengths: Vec<usize> = captions.iter().map(|c| c.len()).collect();
    let layout = TileLayout::new(&lengths);
    let t = layout.pack_words(&cap_emb, l_max, e);
    let t_glo = super::text_sa::forward(&t, &p.t_sa, &layout, e);
    CaptionEmb { layout, t, t_glo }
}

/// The attended vectors: kept (trace) or in a reusable per-thread buffer.
enum CtxBuf {
    Owned(Vec<f32>),
    Scratch(super::Scratch),
}

impl std::ops::Deref for CtxBuf {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match self {
            CtxBuf::Owned(v) => v,
            CtxBuf::Scratch(s) => s,
        }
    }
}

/// Every intermediate of one scoring call, in tile layout.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    pub ctx: Vec<f32>,            // [n_img, n_words, E] attended image vectors
    pub attn: Vec<f32>,           // [n_img, n_words, 36] text-to-image attention
    pub sim_loc_linear: Vec<f32>, // [n_img, n_words, S] before l2norm
    pub sim_glo_linear: Vec<f32>, // [n_img, n_cap, S] before l2norm
    pub nodes: Vec<f32>,          // [n_img, n_nodes, S] similarity graph nodes
    pub sgr_steps: Vec<Vec<f32>>, // K × [n_img, n_nodes, S]
    pub saf: Option<SafTrace>,
    pub sim_vec: Vec<f32>, // [n_img, n_cap, S] input of the score head
    pub logit: Vec<f32>,   // [n_img, n_cap]
}

/// Scores every image of `img` against every caption of `cap`:
/// `sims [n_img, n_cap]`. With `trace`, also every intermediate. In eval mode
/// without trace, SGR runs its scores-only form ([`super::sgr::forward_scores_only`]).
pub fn score_tile(p: &Params, img: &ImageEmb, cap: &CaptionEmb, mode: Mode, trace: bool) -> (Vec<f32>, Option<Trace>) {
    score_tile_folded(p, img, cap, mode, trace, &fold_sgr(p))
}

/// The folded SGR steps of a model (empty for SAF).
pub fn fold_sgr(p: &Params) -> Vec<super::sgr::FoldedStep> {
    match &p.reasoning {
        Reasoning::Sgr(steps) => steps.iter().map(super::sgr::FoldedStep::new).collect(),
        Reasoning::Saf(_) => Vec::new(),
    }
}

fn score_tile_folded(
    p: &Params,
    img: &ImageEmb,
    cap: &CaptionEmb,
    mode: Mode,
    trace: bool,
    folded: &[super::sgr::FoldedStep],
) -> (Vec<f32>, Option<Trace>) {
    let (e, s) = (p.cfg.embed, p.cfg.sim_dim);
    let lay = &cap.layout;
    let n_img = img.n;
    let (ctx, attn) = if trace {
        let (c, a) = super::attention::forward(&img.v, &cap.t, lay, n_img, e, true);
        (CtxBuf::Owned(c), a)
    } else {
        let mut c = super::Scratch::new(n_img * lay.n_words() * e);
        super::attention::forward_into(&img.v, &cap.t, lay, n_img, e, &mut c, None);
        (CtxBuf::Scratch(c), Vec::new())
    };
    let mut nodes = super::Scratch::new(n_img * lay.n_nodes() * s); // every row is written below
    let loc = super::similarity::local_forward(&ctx, &cap.t, &p.sim_loc, lay, n_img, &mut nodes, trace);
    let glo = super::similarity::global_forward(&img.v_glo, &cap.t_glo, &p.sim_glo, lay, n_img, &mut nodes, trace);
    let (sim_vec, sgr_steps, saf) = match &p.reasoning {
        Reasoning::Sgr(steps) if trace || mode == Mode::Train => {
            let (out, kept) = super::sgr::forward(&nodes, steps, lay, n_img, trace);
            (out, kept, None)
        }
        Reasoning::Sgr(steps) => (super::sgr::forward_scores_only(&nodes, steps, folded, lay, n_img), Vec::new(), None),
        Reasoning::Saf(saf) => {
            let (out, tr) = super::saf::forward(&nodes, saf, lay, n_img, mode);
            (out, Vec::new(), Some(tr))
        }
    };
    let (logit, sims) = super::head::forward(&sim_vec, &p.sim_eval, n_img * lay.n_cap());
    let ctx = match ctx {
        CtxBuf::Owned(c) => c,
        CtxBuf::Scratch(_) => Vec::new(),
    };
    let tr = trace.then(|| Trace {
        ctx,
        attn,
        sim_loc_linear: loc,
        sim_glo_linear: glo,
        nodes: nodes.to_vec(),
        sgr_steps,
        saf,
        sim_vec,
        logit,
    });
    (sims, tr)
}

/// Eval-mode scoring of a tile with images spread over threads (native):
/// `sims [n_img, n_cap]`. Equal to [`score_tile`] in eval mode.
pub fn score_tile_parallel(p: &Params, img: &ImageEmb, cap: &CaptionEmb) -> Vec<f32> {
    let e = p.cfg.embed;
    let nc = cap.layout.n_cap();
    let mut sims = vec![0.0; img.n * nc];
    let folded = fold_sgr(p);
    let score_row = |i: usize, row: &mut [f32]| {
        let one = img.slice(i..i + 1, e);
        row.copy_from_slice(&score_tile_folded(p, &one, cap, Mode::Eval, false, &folded).0);
    };
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        sims.par_chunks_mut(nc).enumerate().for_each(|(i, row)| super::serial(|| score_row(i, row)));
    }
    #[cfg(target_arch = "wasm32")]
    for (i, row) in sims.chunks_mut(nc).enumerate() {
        score_row(i, row);
    }
    sims
}
