//! Similarity Graph Reasoning (spec §6.5): K unshared steps of
//! `X ← ReLU(Linear_g(softmax(Q Kᵀ) X))` over each caption's L+1 nodes;
//! the result is the reasoned global node.

use crate::model::layout::TileLayout;
use crate::model::params::SgrStep;

/// One step over `x [n_img, n_nodes, S]` → new `[n_img, n_nodes, S]`.
pub fn step_forward(x: &[f32], p: &SgrStep, lay: &TileLayout, n_img: usize) -> Vec<f32> {
    let (s, nn) = (p.graph.n_out, lay.n_nodes());
    let rows = n_img * nn;
    let mut q = vec![0.0; rows * s]; // [n_img, n_nodes, S]
    let mut k = vec![0.0; rows * s];
    super::linear::forward(x, &p.query.w, Some(&p.query.b), &mut q, rows, s, s);
    super::linear::forward(x, &p.key.w, Some(&p.key.b), &mut k, rows, s, s);
    let mut ax = vec![0.0; rows * s]; // A·X, [n_img, n_nodes, S]
    let mut a = Vec::new();
    for i in 0..n_img {
        for c in 0..lay.n_cap() {
            let r = lay.nodes(c);
            let (n0, m) = (i * nn + r.start, r.len());
            a.resize(m * m, 0.0);
            super::matmul_nt(
                &q[n0 * s..(n0 + m) * s],
                &k[n0 * s..(n0 + m) * s],
                &mut a,
                m,
                s,
                m,
                false,
            );
            for row in a.chunks_exact_mut(m) {
                super::softmax(row);
            }
            super::matmul_nn(
                &a,
                &x[n0 * s..(n0 + m) * s],
                &mut ax[n0 * s..(n0 + m) * s],
                m,
                m,
                s,
                false,
            );
        }
    }
    let mut out = vec![0.0; rows * s];
    super::linear::forward(&ax, &p.graph.w, Some(&p.graph.b), &mut out, rows, s, s);
    out.iter_mut().for_each(|v| *v = v.max(0.0));
    out
}

/// All steps; returns `s [n_img, n_cap, S]` (node 0 of each caption) and,
/// when `keep_steps`, the node tensor after every step.
pub fn forward(
    nodes: &[f32],
    steps: &[SgrStep],
    lay: &TileLayout,
    n_img: usize,
    keep_steps: bool,
) -> (Vec<f32>, Vec<Vec<f32>>) {
    let s = steps.first().map(|p| p.graph.n_out).unwrap_or(0);
    let mut kept = Vec::new();
    let mut x = nodes.to_vec();
    for p in steps {
        x = step_forward(&x, p, lay, n_img);
        if keep_steps {
            kept.push(x.clone());
        }
    }
    (global_nodes(&x, lay, n_img, s), kept)
}

/// Gathers node 0 of every (image, caption): `[n_img, n_nodes, S]` → `[n_img, n_cap, S]`.
pub fn global_nodes(x: &[f32], lay: &TileLayout, n_img: usize, s: usize) -> Vec<f32> {
    let nn = lay.n_nodes();
    let mut out = Vec::with_capacity(n_img * lay.n_cap() * s);
    for i in 0..n_img {
        for c in 0..lay.n_cap() {
            let n0 = i * nn + lay.node_off[c];
            out.extend_from_slice(&x[n0 * s..(n0 + 1) * s]);
        }
    }
    out
}
