//! Similarity vectors (Eq. 1 as implemented, spec §6.3):
//! `l2norm(Linear((x − y)²))`, written into the graph-node tensor.

use super::Real;
use crate::model::layout::TileLayout;
use crate::model::params::Linear;

/// Local: `ctx [n_img, n_words, E]`, `t [n_words, E]` → node rows `node_off[c]+1+j`
/// of `nodes [n_img, n_nodes, S]`. Returns the pre-l2norm projection
/// `[n_img, n_words, S]` when `keep_linear`.
pub fn local_forward<T: Real>(
    ctx: &[T],
    t: &[T],
    lin: &Linear<T>,
    lay: &TileLayout,
    n_img: usize,
    nodes: &mut [T],
    keep_linear: bool,
) -> Vec<T> {
    let (e, s, nw, nn) = (lin.n_in, lin.n_out, lay.n_words(), lay.n_nodes());
    let mut d = super::Scratch::<T>::new(nw * e); // [n_words, E]
    let mut y = super::Scratch::<T>::new(nw * s); // [n_words, S]
    let mut kept = if keep_linear { Vec::with_capacity(n_img * nw * s) } else { Vec::new() };
    for i in 0..n_img {
        let ci = &ctx[i * nw * e..(i + 1) * nw * e];
        for ((dv, &cv), &tv) in d.iter_mut().zip(ci).zip(t) {
            let x = cv - tv;
            *dv = x * x;
        }
        super::linear::forward(&d, &lin.w, Some(&lin.b), &mut y, nw, e, s);
        if keep_linear {
            kept.extend_from_slice(&y);
        }
        super::l2norm::forward(&mut y, s);
        let ni = &mut nodes[i * nn * s..(i + 1) * nn * s];
        for c in 0..lay.n_cap() {
            let (w0, w1, n0) = (lay.word_off[c], lay.word_off[c + 1], lay.node_off[c] + 1);
            ni[n0 * s..(n0 + w1 - w0) * s].copy_from_slice(&y[w0 * s..w1 * s]);
        }
    }
    kept
}

/// Global: `v_glo [n_img, E]`, `t_glo [n_cap, E]` → node rows `node_off[c]`.
/// Returns the pre-l2norm projection `[n_img, n_cap, S]` when `keep_linear`.
pub fn global_forward<T: Real>(
    v_glo: &[T],
    t_glo: &[T],
    lin: &Linear<T>,
    lay: &TileLayout,
    n_img: usize,
    nodes: &mut [T],
    keep_linear: bool,
) -> Vec<T> {
    let (e, s, nc, nn) = (lin.n_in, lin.n_out, lay.n_cap(), lay.n_nodes());
    let mut d = super::Scratch::<T>::new(n_img * nc * e); // [n_img, n_cap, E], every value written below
    for i in 0..n_img {
        for c in 0..nc {
            let dst = &mut d[(i * nc + c) * e..(i * nc + c + 1) * e];
            for k in 0..e {
                let x = v_glo[i * e + k] - t_glo[c * e + k];
                dst[k] = x * x;
            }
        }
    }
    let mut y = vec![T::ZERO; n_img * nc * s]; // [n_img, n_cap, S]
    super::linear::forward(&d, &lin.w, Some(&lin.b), &mut y, n_img * nc, e, s);
    let kept = if keep_linear { y.clone() } else { Vec::new() };
    super::l2norm::forward(&mut y, s);
    for i in 0..n_img {
        for c in 0..nc {
            let n0 = i * nn + lay.node_off[c];
            nodes[n0 * s..(n0 + 1) * s].copy_from_slice(&y[(i * nc + c) * s..(i * nc + c + 1) * s]);
        }
    }
    kept
}

// ----------------------------------------------------------------------------
// Training: one image against every caption of the tile, and the backward.
// `nodes_i [n_nodes, S]` is one image's slice of the node tensor.

/// [`local_forward`] for one image (same values): writes the word rows of
/// `nodes_i [n_nodes, S]`; returns the norms `[n_words]` of the projections.
pub fn local_forward_image<T: Real>(
    ctx_i: &[T],
    t: &[T],
    lin: &Linear<T>,
    lay: &TileLayout,
    nodes_i: &mut [T],
) -> Vec<T> {
    let (e, s, nw) = (lin.n_in, lin.n_out, lay.n_words());
    let mut d = vec![T::ZERO; nw * e]; // [n_words, E] (ctx − t)²
    for ((dv, &cv), &tv) in d.iter_mut().zip(ctx_i).zip(t) {
        let x = cv - tv;
        *dv = x * x;
    }
    let mut y = vec![T::ZERO; nw * s]; // [n_words, S]
    super::linear::forward(&d, &lin.w, Some(&lin.b), &mut y, nw, e, s);
    let norms = super::l2norm::forward_keep_norms(&mut y, s);
    for c in 0..lay.n_cap() {
        let (w0, w1, n0) = (lay.word_off[c], lay.word_off[c + 1], lay.node_off[c] + 1);
        nodes_i[n0 * s..(n0 + w1 - w0) * s].copy_from_slice(&y[w0 * s..w1 * s]);
    }
    norms
}

/// Backward of [`local_forward_image`]: the word rows of `dnodes_i [n_nodes, S]`
/// → `dlin += …`, `dctx_i [n_words, E] += …`, `dt [n_words, E] += …`.
#[allow(clippy::too_many_arguments)]
pub fn local_backward_image<T: Real>(
    dnodes_i: &[T],
    nodes_i: &[T],
    norms: &[T],
    ctx_i: &[T],
    t: &[T],
    lin: &Linear<T>,
    lay: &TileLayout,
    dlin: &mut Linear<T>,
    dctx_i: &mut [T],
    dt: &mut [T],
) {
    let (e, s, nw) = (lin.n_in, lin.n_out, lay.n_words());
    let mut y = vec![T::ZERO; nw * s]; // [n_words, S] l2-normalised projections (node rows)
    let mut dy_n = vec![T::ZERO; nw * s]; // [n_words, S] their gradients
    for c in 0..lay.n_cap() {
        let (w0, w1, n0) = (lay.word_off[c], lay.word_off[c + 1], lay.node_off[c] + 1);
        y[w0 * s..w1 * s].copy_from_slice(&nodes_i[n0 * s..(n0 + w1 - w0) * s]);
        dy_n[w0 * s..w1 * s].copy_from_slice(&dnodes_i[n0 * s..(n0 + w1 - w0) * s]);
    }
    let mut dy = vec![T::ZERO; nw * s]; // [n_words, S] gradient before the l2norm
    super::l2norm::backward(&dy_n, &y, norms, &mut dy, s);
    let diff: Vec<T> = ctx_i.iter().zip(t).map(|(&c, &w)| c - w).collect(); // [n_words, E] ctx − t
    let d: Vec<T> = diff.iter().map(|&x| x * x).collect(); // [n_words, E]
    let mut dd = vec![T::ZERO; nw * e]; // [n_words, E]
    super::linear::backward(&dy, &d, &lin.w, Some(&mut dd), &mut dlin.w, Some(&mut dlin.b), nw, e, s);
    for (((&g, &x), dc), dw) in dd.iter().zip(&diff).zip(dctx_i.iter_mut()).zip(dt.iter_mut()) {
        let v = T::from_f32(2.0) * x * g;
        *dc += v;
        *dw -= v;
    }
}

/// [`global_forward`] for one image `v_glo_i [E]` (same values): writes the
/// global rows of `nodes_i [n_nodes, S]`; returns the norms `[n_cap]`.
pub fn global_forward_image<T: Real>(
    v_glo_i: &[T],
    t_glo: &[T],
    lin: &Linear<T>,
    lay: &TileLayout,
    nodes_i: &mut [T],
) -> Vec<T> {
    let (e, s, nc) = (lin.n_in, lin.n_out, lay.n_cap());
    let mut d = vec![T::ZERO; nc * e]; // [n_cap, E] (v_glo − t_glo)²
    for c in 0..nc {
        for k in 0..e {
            let x = v_glo_i[k] - t_glo[c * e + k];
            d[c * e + k] = x * x;
        }
    }
    let mut y = vec![T::ZERO; nc * s]; // [n_cap, S]
    super::linear::forward(&d, &lin.w, Some(&lin.b), &mut y, nc, e, s);
    let norms = super::l2norm::forward_keep_norms(&mut y, s);
    for c in 0..nc {
        let n0 = lay.node_off[c];
        nodes_i[n0 * s..(n0 + 1) * s].copy_from_slice(&y[c * s..(c + 1) * s]);
    }
    norms
}

/// Backward of [`global_forward_image`]: the global rows of `dnodes_i` →
/// `dlin += …`, `dv_glo_i [E] += …`, `dt_glo [n_cap, E] += …`.
#[allow(clippy::too_many_arguments)]
pub fn global_backward_image<T: Real>(
    dnodes_i: &[T],
    nodes_i: &[T],
    norms: &[T],
    v_glo_i: &[T],
    t_glo: &[T],
    lin: &Linear<T>,
    lay: &TileLayout,
    dlin: &mut Linear<T>,
    dv_glo_i: &mut [T],
    dt_glo: &mut [T],
) {
    let (e, s, nc) = (lin.n_in, lin.n_out, lay.n_cap());
    let mut y = vec![T::ZERO; nc * s]; // [n_cap, S]
    let mut dy_n = vec![T::ZERO; nc * s]; // [n_cap, S]
    for c in 0..nc {
        let n0 = lay.node_off[c];
        y[c * s..(c + 1) * s].copy_from_slice(&nodes_i[n0 * s..(n0 + 1) * s]);
        dy_n[c * s..(c + 1) * s].copy_from_slice(&dnodes_i[n0 * s..(n0 + 1) * s]);
    }
    let mut dy = vec![T::ZERO; nc * s]; // [n_cap, S]
    super::l2norm::backward(&dy_n, &y, norms, &mut dy, s);
    let mut diff = vec![T::ZERO; nc * e]; // [n_cap, E] v_glo − t_glo
    for c in 0..nc {
        for k in 0..e {
            diff[c * e + k] = v_glo_i[k] - t_glo[c * e + k];
        }
    }
    let d: Vec<T> = diff.iter().map(|&x| x * x).collect(); // [n_cap, E]
    let mut dd = vec![T::ZERO; nc * e]; // [n_cap, E]
    super::linear::backward(&dy, &d, &lin.w, Some(&mut dd), &mut dlin.w, Some(&mut dlin.b), nc, e, s);
    for c in 0..nc {
        for k in 0..e {
            let v = T::from_f32(2.0) * diff[c * e + k] * dd[c * e + k];
            dv_glo_i[k] += v;
            dt_glo[c * e + k] -= v;
        }
    }
}
