//! Similarity vectors (Eq. 1 as implemented, spec §6.3):
//! `l2norm(Linear((x − y)²))`, written into the graph-node tensor.

use crate::model::layout::TileLayout;
use crate::model::params::Linear;

/// Local: `ctx [n_img, n_words, E]`, `t [n_words, E]` → node rows `node_off[c]+1+j`
/// of `nodes [n_img, n_nodes, S]`. Returns the pre-l2norm projection
/// `[n_img, n_words, S]` when `keep_linear`.
pub fn local_forward(
    ctx: &[f32],
    t: &[f32],
    lin: &Linear,
    lay: &TileLayout,
    n_img: usize,
    nodes: &mut [f32],
    keep_linear: bool,
) -> Vec<f32> {
    let (e, s, nw, nn) = (lin.n_in, lin.n_out, lay.n_words(), lay.n_nodes());
    let mut d = super::Scratch::new(nw * e); // [n_words, E]
    let mut y = super::Scratch::new(nw * s); // [n_words, S]
    let mut kept = if keep_linear { Vec::with_capacity(n_img * nw * s) } else { Vec::new() };
    for i in 0..n_img {
        let ci = &ctx[i * nw * e..(i + 1) * nw * e];
        for ((dv, cv), tv) in d.iter_mut().zip(ci).zip(t) {
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
pub fn global_forward(
    v_glo: &[f32],
    t_glo: &[f32],
    lin: &Linear,
    lay: &TileLayout,
    n_img: usize,
    nodes: &mut [f32],
    keep_linear: bool,
) -> Vec<f32> {
    let (e, s, nc, nn) = (lin.n_in, lin.n_out, lay.n_cap(), lay.n_nodes());
    let mut d = vec![0.0; n_img * nc * e]; // [n_img, n_cap, E]
    for i in 0..n_img {
        for c in 0..nc {
            let dst = &mut d[(i * nc + c) * e..(i * nc + c + 1) * e];
            for k in 0..e {
                let x = v_glo[i * e + k] - t_glo[c * e + k];
                dst[k] = x * x;
            }
        }
    }
    let mut y = vec![0.0; n_img * nc * s]; // [n_img, n_cap, S]
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
