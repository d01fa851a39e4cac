//! The training forward and backward of one batch on the CPU: B (image,
//! caption) pairs, the B×B score matrix, the triplet loss, and the gradient of
//! the loss with respect to every parameter (and optionally the input
//! features). The composition mirrors [`super::model`]; every stage's own
//! backward sits beside its forward in `src/cpu/<layer>.rs`.
//!
//! ## Memory: per-image passes, recomputing
//! At the default sizes (B = 128, E = 1024) the per-pair tensors of the whole
//! score matrix (attended vectors `[B, B·L, E]` and the like) do not fit, so
//! pair scoring runs **one image at a time** (against all B captions) and
//! recomputes that image's similarity nodes in every pass instead of keeping
//! them. Only per-image caches live at once (one per worker thread).
//!
//! * SGR: pairs are independent given the image and caption embeddings.
//!   Pass 1 scores each image row; loss → `dsims`; pass 2 recomputes each row
//!   with caches and backpropagates it.
//! * SAF: its train-mode BatchNorm(1) couples all images of one caption
//!   (statistics over images × nodes). Pass A computes each row's `β`
//!   logits (`[B, n_nodes]`, small, kept); then the per-caption statistics
//!   and `BN(β)` for all images; pass B scores each row; loss → `dsims`;
//!   pass C backpropagates each row down to `dBN(β)` (kept, `[B, n_nodes]`);
//!   the per-caption BatchNorm backward (which needs Σ over images of `dy`
//!   and `dy·x̂`) gives `dβ` for all images; the final pass recomputes each
//!   row with caches and backpropagates `dβ` and the weighted-sum path into
//!   the nodes and below.
//!
//! The nodes of a row are computed twice per step for SGR and four times for
//! SAF. Measured at the default sizes, B = 128: about 0.8 GB peak for a whole
//! training step (parameters, Adam state and gradients included).
//!
//! Rows are processed in fixed chunks of images that depend only on B, and
//! the chunk results are summed in chunk order: the gradients do not depend
//! on the number of threads.
//!
//! ## Dropout
//! With `dropout > 0` in train mode, inverted-dropout masks (kept values
//! scaled by 1/(1−p)) are drawn from the given [`Rng`] in this order: word
//! embeddings `[n_words, D_w]`, VisualSA local `[B, 36, E]` and global
//! `[B, E]`, TextSA local `[n_words, E]` and global `[B, E]` (one mask per
//! caption's rows, i.e. fresh per caption as the official per-caption call).
//! Eval mode never drops.

use super::attention::{self, AttentionCache};
use super::batchnorm::BnStats;
use super::visual_sa::VisualSaStats;
use super::{embed, gru, head, image_fc, loss, saf, sgr, similarity, text_sa, visual_sa, Real};
use crate::error::{Result, SgrafError};
use crate::model::init::Rng;
use crate::model::layout::TileLayout;
use crate::model::params::{BatchNorm, Config, Linear, Mode, Params, Reasoning, Saf, SgrStep, N_REGIONS};
use crate::train::grads::{zeros_linear, zeros_reasoning};

/// Options of one forward–backward.
#[derive(Clone, Debug)]
pub struct Options {
    /// Train: BatchNorm on batch statistics, dropout active. Eval: running statistics, no dropout.
    pub mode: Mode,
    /// Dropout probability (train mode only); 0 = off.
    pub dropout: f32,
    /// Triplet margin (official 0.2).
    pub margin: f32,
    /// Hardest negatives (official default) or all of them.
    pub negatives: loss::Negatives,
    /// Also compute the gradient of the loss with respect to the input features.
    pub input_grad: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: Mode::Train,
            dropout: 0.0,
            margin: loss::MARGIN,
            negatives: loss::Negatives::Hardest,
            input_grad: false,
        }
    }
}

/// Result of [`forward_backward`].
#[derive(Clone, Debug)]
pub struct ForwardBackward<T = f32> {
    pub loss: T,
    pub sims: Vec<T>,                   // [B, B] row = image, column = caption
    pub grads: Params<T>,               // ∂loss/∂parameter (gradient container, see `crate::train::grads`)
    pub dimages: Option<Vec<T>>,        // [B, 36, D_img] when `input_grad`
    pub visual_stats: VisualSaStats<T>, // train mode: batch statistics of the two VisualSA BatchNorms
    pub saf_stats: Vec<BnStats<T>>,     // train mode, SAF: per caption, caption order
}

/// One inverted-dropout mask of `len` multipliers (0 or 1/(1−p)), or `None` when `p` is 0.
pub fn dropout_mask<T: Real>(rng: &mut Rng, len: usize, p: f32) -> Option<Vec<T>> {
    if p <= 0.0 {
        return None;
    }
    let keep = T::from_f32(1.0 / (1.0 - p));
    Some((0..len).map(|_| if rng.uniform() < p { T::ZERO } else { keep }).collect())
}

pub(crate) fn check_inputs<T: Real>(cfg: &Config, images: &[T], captions: &[Vec<u32>], opts: &Options) -> Result<()> {
    let err = |m: String| Err(SgrafError::Input(m));
    let n = captions.len();
    let di = cfg.img_dim;
    if n == 0 {
        return err("training batch is empty: give at least one (image, caption) pair".into());
    }
    if opts.mode == Mode::Train && n < 2 {
        return err(format!(
            "a train-mode batch needs at least 2 pairs (BatchNorm over the batch), got {n}; use a larger batch"
        ));
    }
    if images.len() != n * N_REGIONS * di {
        return err(format!(
            "images hold {} values but {n} captions need {n} × {N_REGIONS} × {di} = {} (one image per caption)",
            images.len(),
            n * N_REGIONS * di
        ));
    }
    if let Some(k) = images.iter().position(|x| !x.is_finite()) {
        return err(format!("image feature {k} (image {}) is not finite", k / (N_REGIONS * di)));
    }
    for (c, cap) in captions.iter().enumerate() {
        if cap.is_empty() {
            return err(format!("caption {c} is empty (it needs at least its <start>/<end> tokens)"));
        }
        if let Some(&id) = cap.iter().find(|&&id| id as usize >= cfg.vocab) {
            return err(format!("caption {c} has token id {id}, outside the vocabulary of {}", cfg.vocab));
        }
    }
    if !(0.0..1.0).contains(&opts.dropout) {
        return err(format!("dropout must be in [0, 1), got {}", opts.dropout));
    }
    Ok(())
}

// ----------------------------------------------------------------------------
// Per-image pair scoring: nodes, then SGR or SAF, then the score head.

/// The embeddings every pair-scoring pass reads.
struct Tile<'a, T: Real> {
    p: &'a Params<T>,
    v: &'a [T],     // [B, 36, E]
    v_glo: &'a [T], // [B, E]
    t: &'a [T],     // [n_words, E]
    t_glo: &'a [T], // [B, E]
    lay: &'a TileLayout,
}

/// One image's similarity nodes against every caption, with what their backward needs.
struct NodesCache<T> {
    attn: AttentionCache<T>,
    loc_norms: Vec<T>, // [n_words]
    glo_norms: Vec<T>, // [n_cap]
    nodes: Vec<T>,     // [n_nodes, S] global node then the words, per caption
}

/// Gradients of one chunk of image rows (everything a row touches that is shared across rows).
struct RowGrads<T> {
    sim_loc: Linear<T>,
    sim_glo: Linear<T>,
    sim_eval: Linear<T>,
    reasoning: Reasoning<T>,
    dt: Vec<T>,     // [n_words, E]
    dt_glo: Vec<T>, // [n_cap, E]
    dv: Vec<T>,     // [rows of the chunk, 36, E]
    dv_glo: Vec<T>, // [rows of the chunk, E]
}

impl<'a, T: Real> Tile<'a, T> {
    fn e(&self) -> usize {
        self.p.cfg.embed
    }
    fn s(&self) -> usize {
        self.p.cfg.sim_dim
    }
    fn v_i(&self, i: usize) -> &'a [T] {
        let n = N_REGIONS * self.e();
        &self.v[i * n..(i + 1) * n]
    }
    fn v_glo_i(&self, i: usize) -> &'a [T] {
        &self.v_glo[i * self.e()..(i + 1) * self.e()]
    }

    /// Text-to-image attention and the local/global similarity vectors of image i.
    fn nodes_forward(&self, i: usize) -> NodesCache<T> {
        let (p, lay) = (self.p, self.lay);
        let attn = attention::forward_image(self.v_i(i), self.t, lay, self.e());
        let mut nodes = vec![T::ZERO; lay.n_nodes() * self.s()]; // [n_nodes, S]
        let loc_norms = similarity::local_forward_image(&attn.ctx, self.t, &p.sim_loc, lay, &mut nodes);
        let glo_norms = similarity::global_forward_image(self.v_glo_i(i), self.t_glo, &p.sim_glo, lay, &mut nodes);
        NodesCache { attn, loc_norms, glo_norms, nodes }
    }

    /// Backward of [`Self::nodes_forward`]: `dnodes [n_nodes, S]` → grads of image `i`
    /// (row `k` of the chunk) and of the captions.
    fn nodes_backward(&self, i: usize, k: usize, c: &NodesCache<T>, dnodes: &[T], g: &mut RowGrads<T>) {
        let (p, lay, e) = (self.p, self.lay, self.e());
        let mut dctx = vec![T::ZERO; lay.n_words() * e]; // [n_words, E]
        similarity::local_backward_image(
            dnodes,
            &c.nodes,
            &c.loc_norms,
            &c.attn.ctx,
            self.t,
            &p.sim_loc,
            lay,
            &mut g.sim_loc,
            &mut dctx,
            &mut g.dt,
        );
        similarity::global_backward_image(
            dnodes,
            &c.nodes,
            &c.glo_norms,
            self.v_glo_i(i),
            self.t_glo,
            &p.sim_glo,
            lay,
            &mut g.sim_glo,
            &mut g.dv_glo[k * e..(k + 1) * e],
            &mut g.dt_glo,
        );
        let dvi = &mut g.dv[k * N_REGIONS * e..(k + 1) * N_REGIONS * e];
        attention::backward_image(&dctx, self.v_i(i), self.t, lay, e, &c.attn, dvi, &mut g.dt);
    }

    fn row_grads(&self, rows: usize) -> RowGrads<T> {
        let (p, e) = (self.p, self.e());
        RowGrads {
            sim_loc: zeros_linear(&p.sim_loc),
            sim_glo: zeros_linear(&p.sim_glo),
            sim_eval: zeros_linear(&p.sim_eval),
            reasoning: zeros_reasoning(&p.reasoning),
            dt: vec![T::ZERO; self.lay.n_words() * e],
            dt_glo: vec![T::ZERO; self.lay.n_cap() * e],
            dv: vec![T::ZERO; rows * N_REGIONS * e],
            dv_glo: vec![T::ZERO; rows * e],
        }
    }
}

/// Runs `f` on fixed chunks of the images `0..n` (in parallel natively) and
/// returns the results in chunk order. The chunks depend only on `n`.
fn per_image_chunks<R: Send>(n: usize, f: impl Fn(std::ops::Range<usize>) -> R + Sync) -> Vec<R> {
    const CHUNKS: usize = 16;
    let len = n.div_ceil(CHUNKS).max(1);
    let ranges: Vec<std::ops::Range<usize>> = (0..n).step_by(len).map(|s| s..(s + len).min(n)).collect();
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        ranges.into_par_iter().map(|r| super::serial(|| f(r))).collect()
    }
    #[cfg(target_arch = "wasm32")]
    {
        ranges.into_iter().map(f).collect()
    }
}

/// SGR pair scoring of the whole batch: pass 1 scores every image row, the
/// loss gives `dsims`, pass 2 recomputes every row with caches and
/// backpropagates it. Returns the loss, `sims [B, B]` and the chunk gradients.
fn sgr_pairs<T: Real>(
    tile: &Tile<T>,
    steps: &[SgrStep<T>],
    margin: T,
    neg: loss::Negatives,
) -> (T, Vec<T>, Vec<RowGrads<T>>) {
    let (p, lay) = (tile.p, tile.lay);
    let (n, s) = (lay.n_cap(), tile.s());
    // pass 1: scores
    let sims: Vec<T> = per_image_chunks(n, |r| {
        r.flat_map(|i| {
            let nc = tile.nodes_forward(i);
            let (sv, _) = sgr::forward_train(&nc.nodes, steps, lay, 1); // [n_cap, S]
            head::forward(&sv, &p.sim_eval, n).1
        })
        .collect::<Vec<T>>()
    })
    .concat(); // [B, B]

    let (l, dsims) = loss::loss_and_grad(&sims, n, margin, neg); // dsims [B, B]

    // pass 2: recompute with caches, backward
    let chunks = per_image_chunks(n, |r| {
        let mut g = tile.row_grads(r.len());
        for (k, i) in r.enumerate() {
            let nc = tile.nodes_forward(i);
            let (sv, caches) = sgr::forward_train(&nc.nodes, steps, lay, 1); // [n_cap, S]
            let (_, score) = head::forward(&sv, &p.sim_eval, n); // [n_cap]
            let mut dsv = vec![T::ZERO; n * s]; // [n_cap, S]
            head::backward(&dsims[i * n..(i + 1) * n], &sv, &score, &p.sim_eval, &mut g.sim_eval, &mut dsv, n);
            let mut dnodes = vec![T::ZERO; lay.n_nodes() * s]; // [n_nodes, S]
            let Reasoning::Sgr(dsteps) = &mut g.reasoning else { unreachable!("same module") };
            sgr::backward(&dsv, steps, lay, 1, &caches, dsteps, &mut dnodes);
            tile.nodes_backward(i, k, &nc, &dnodes, &mut g);
        }
        g
    });
    (l, sims, chunks)
}

/// What [`saf_pairs`] returns: the loss, `sims [B, B]`, the chunk gradients and
/// the per-caption batch statistics.
type SafPairs<T> = (T, Vec<T>, Vec<RowGrads<T>>, Vec<BnStats<T>>);

/// SAF pair scoring of the whole batch, around its per-caption BatchNorm
/// (module doc): pass A (β logits), BatchNorm, pass B (scores), loss, pass C
/// (`dBN(β)`), BatchNorm backward (into `dbn`), final pass. Returns the loss,
/// `sims [B, B]`, the chunk gradients and the per-caption batch statistics.
fn saf_pairs<T: Real>(
    tile: &Tile<T>,
    sp: &Saf<T>,
    mode: Mode,
    margin: T,
    neg: loss::Negatives,
    dbn: &mut BatchNorm<T>,
) -> SafPairs<T> {
    let (p, lay) = (tile.p, tile.lay);
    let (n, s, nn) = (lay.n_cap(), tile.s(), lay.n_nodes());
    // pass A: β logits of every image row
    let beta: Vec<T> = per_image_chunks(n, |r| {
        r.flat_map(|i| saf::attn_logits(&tile.nodes_forward(i).nodes, sp, nn)).collect::<Vec<T>>()
    })
    .concat(); // [B, n_nodes]

    // BatchNorm(1) per caption over all images × nodes
    let (bn_out, stats) = saf::caption_batch_norm(&beta, sp, lay, n, mode); // [B, n_nodes]
    let filter = |i: usize, nodes: &[T]| saf::filter_forward(nodes, &bn_out[i * nn..(i + 1) * nn], lay, 1, s);

    // pass B: scores
    let sims: Vec<T> = per_image_chunks(n, |r| {
        r.flat_map(|i| head::forward(&filter(i, &tile.nodes_forward(i).nodes).out, &p.sim_eval, n).1)
            .collect::<Vec<T>>()
    })
    .concat(); // [B, B]

    let (l, dsims) = loss::loss_and_grad(&sims, n, margin, neg); // dsims [B, B]

    // pass C: gradient of every BN(β) (parameter gradients are taken in the final pass)
    let dbn_out: Vec<T> = per_image_chunks(n, |r| {
        r.flat_map(|i| {
            let nc = tile.nodes_forward(i);
            let f = filter(i, &nc.nodes);
            let (_, score) = head::forward(&f.out, &p.sim_eval, n); // [n_cap]
            let mut dsv = vec![T::ZERO; n * s]; // [n_cap, S]
            let mut unused = zeros_linear(&p.sim_eval);
            head::backward(&dsims[i * n..(i + 1) * n], &f.out, &score, &p.sim_eval, &mut unused, &mut dsv, n);
            let (mut dnodes, mut dbo) = (vec![T::ZERO; nn * s], vec![T::ZERO; nn]); // [n_nodes, S], [n_nodes]
            saf::filter_backward(&dsv, &nc.nodes, lay, 1, s, &f, &mut dnodes, &mut dbo);
            dbo
        })
        .collect::<Vec<T>>()
    })
    .concat(); // [B, n_nodes]

    // BatchNorm backward per caption (it needs sums over all images)
    let mut dbeta = vec![T::ZERO; n * nn]; // [B, n_nodes]
    saf::caption_batch_norm_backward(&dbn_out, &beta, sp, lay, n, mode, &stats, dbn, &mut dbeta);

    // final pass: recompute with caches, backward into the nodes and below
    let chunks = per_image_chunks(n, |r| {
        let mut g = tile.row_grads(r.len());
        for (k, i) in r.enumerate() {
            let nc = tile.nodes_forward(i);
            let f = filter(i, &nc.nodes);
            let (_, score) = head::forward(&f.out, &p.sim_eval, n); // [n_cap]
            let mut dsv = vec![T::ZERO; n * s]; // [n_cap, S]
            head::backward(&dsims[i * n..(i + 1) * n], &f.out, &score, &p.sim_eval, &mut g.sim_eval, &mut dsv, n);
            let (mut dnodes, mut unused) = (vec![T::ZERO; nn * s], vec![T::ZERO; nn]); // [n_nodes, S], [n_nodes]
            saf::filter_backward(&dsv, &nc.nodes, lay, 1, s, &f, &mut dnodes, &mut unused);
            let Reasoning::Saf(dsaf) = &mut g.reasoning else { unreachable!("same module") };
            saf::attn_logits_backward(&dbeta[i * nn..(i + 1) * nn], &nc.nodes, sp, mode, dsaf, &mut dnodes, nn);
            tile.nodes_backward(i, k, &nc, &dnodes, &mut g);
        }
        g
    });
    (l, sims, chunks, stats)
}

// ----------------------------------------------------------------------------
// The whole forward and backward.

/// Train-mode (or eval-mode) forward of a batch, the triplet loss, and the
/// gradient of the loss. `images [B, 36, D_img]`; `captions`: B token-id lists
/// (with `<start>`/`<end>`), caption k paired with image k, in any length
/// order. Does not touch `p`: the BatchNorm running-statistic updates are
/// returned (`visual_stats`, `saf_stats`) for the caller to apply.
///
/// Generic over the float type like every layer (`f32` for training; the
/// gradient checks run it in `f64`): the dropout masks and the margin are
/// float32 values widened.
pub fn forward_backward<T: Real>(
    p: &Params<T>,
    images: &[T],
    captions: &[Vec<u32>],
    opts: &Options,
    rng: &mut Rng,
) -> Result<ForwardBackward<T>> {
    check_inputs(&p.cfg, images, captions, opts)?;
    let (n, e, dw) = (captions.len(), p.cfg.embed, p.cfg.word_dim);
    let mode = opts.mode;
    let drop = if mode == Mode::Train { opts.dropout } else { 0.0 };
    let lengths: Vec<usize> = captions.iter().map(|c| c.len()).collect();
    let lay = TileLayout::new(&lengths);
    let nw = lay.n_words();

    // ---- forward: encoders -------------------------------------------------
    let word_mask = dropout_mask(rng, nw * dw, drop);
    let v_local_mask = dropout_mask(rng, n * N_REGIONS * e, drop);
    let v_global_mask = dropout_mask(rng, n * e, drop);
    let t_local_mask = dropout_mask(rng, nw * e, drop);
    let t_global_mask = dropout_mask(rng, n * e, drop);

    let (v, v_norms) = image_fc::forward_train(images, &p.img_fc, n * N_REGIONS); // [B, 36, E], [B·36]
    let vsa = visual_sa::forward_train(&v, &p.v_sa, mode, n, e, v_local_mask, v_global_mask); // v_glo = vsa.out [B, E]

    let ids: Vec<u32> = captions.iter().flatten().copied().collect(); // [n_words] packed
    let mut x = embed::forward(&ids, &p.embed, dw); // [n_words, D_w]
    if let Some(m) = &word_mask {
        x.iter_mut().zip(m).for_each(|(v, &k)| *v *= k);
    }
    let (t, gru_cache) = gru::forward_train(&x, &lay, &p.gru_fwd, &p.gru_bwd, dw, e); // [n_words, E]
    let tsa = text_sa::forward_train(&t, &p.t_sa, &lay, e, t_local_mask, t_global_mask); // t_glo = tsa.out [B, E]

    let tile = Tile { p, v: &v, v_glo: &vsa.out, t: &t, t_glo: &tsa.out, lay: &lay };
    let mut grads = p.zeros_like();

    // ---- pair scoring, loss, and its backward down to the embeddings --------
    let (loss, sims, chunks, saf_stats) = match &p.reasoning {
        Reasoning::Sgr(steps) => {
            let (l, sims, chunks) = sgr_pairs(&tile, steps, T::from_f32(opts.margin), opts.negatives);
            (l, sims, chunks, Vec::new())
        }
        Reasoning::Saf(sp) => {
            let Reasoning::Saf(gsaf) = &mut grads.reasoning else { unreachable!("same module") };
            let margin = T::from_f32(opts.margin);
            let (l, sims, chunks, stats) = saf_pairs(&tile, sp, mode, margin, opts.negatives, &mut gsaf.bn);
            (l, sims, chunks, if mode == Mode::Train { stats } else { Vec::new() })
        }
    };

    // ---- reduce the chunks (in order) ---------------------------------------
    let mut dv = Vec::with_capacity(n * N_REGIONS * e); // [B, 36, E]
    let mut dv_glo = Vec::with_capacity(n * e); // [B, E]
    let mut dt = vec![T::ZERO; nw * e]; // [n_words, E]
    let mut dt_glo = vec![T::ZERO; n * e]; // [B, E]
    for g in chunks {
        add_linear(&mut grads.sim_loc, &g.sim_loc);
        add_linear(&mut grads.sim_glo, &g.sim_glo);
        add_linear(&mut grads.sim_eval, &g.sim_eval);
        match (&mut grads.reasoning, &g.reasoning) {
            (Reasoning::Sgr(d), Reasoning::Sgr(s)) => {
                for (d, s) in d.iter_mut().zip(s) {
                    add_linear(&mut d.query, &s.query);
                    add_linear(&mut d.key, &s.key);
                    add_linear(&mut d.graph, &s.graph);
                }
            }
            (Reasoning::Saf(d), Reasoning::Saf(s)) => add_linear(&mut d.attn, &s.attn),
            _ => unreachable!("same module"),
        }
        super::add_into(&mut dt, &g.dt);
        super::add_into(&mut dt_glo, &g.dt_glo);
        dv.extend_from_slice(&g.dv);
        dv_glo.extend_from_slice(&g.dv_glo);
    }

    // ---- backward: encoders -------------------------------------------------
    text_sa::backward(&dt_glo, &t, &p.t_sa, &lay, &tsa, &mut grads.t_sa, &mut dt, e);
    let mut dx = vec![T::ZERO; nw * dw]; // [n_words, D_w]
    gru::backward(
        &dt,
        &t,
        &x,
        &lay,
        &p.gru_fwd,
        &p.gru_bwd,
        &gru_cache,
        &mut grads.gru_fwd,
        &mut grads.gru_bwd,
        &mut dx,
        dw,
        e,
    );
    if let Some(m) = &word_mask {
        dx.iter_mut().zip(m).for_each(|(v, &k)| *v *= k);
    }
    embed::backward(&dx, &ids, &mut grads.embed, dw);

    visual_sa::backward(&dv_glo, &v, &p.v_sa, mode, &vsa, &mut grads.v_sa, &mut dv, n, e);
    let mut dimages = opts.input_grad.then(|| vec![T::ZERO; images.len()]); // [B, 36, D_img]
    image_fc::backward(&dv, &v, &v_norms, images, &p.img_fc, &mut grads.img_fc, dimages.as_deref_mut(), n * N_REGIONS);

    Ok(ForwardBackward { loss, sims, grads, dimages, visual_stats: vsa.stats.clone(), saf_stats })
}

/// `dst += src` for a Linear's weight and bias.
fn add_linear<T: Real>(dst: &mut Linear<T>, src: &Linear<T>) {
    super::add_into(&mut dst.w, &src.w);
    super::add_into(&mut dst.b, &src.b);
}
