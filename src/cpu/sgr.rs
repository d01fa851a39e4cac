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
            super::matmul_nt(&q[n0 * s..(n0 + m) * s], &k[n0 * s..(n0 + m) * s], &mut a, m, s, m, false);
            for row in a.chunks_exact_mut(m) {
                super::softmax(row);
            }
            super::matmul_nn(&a, &x[n0 * s..(n0 + m) * s], &mut ax[n0 * s..(n0 + m) * s], m, m, s, false);
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

/// An SGR step folded for scoring only: the key bias only shifts every logit
/// of a row by the same amount (softmax-invariant), so
/// `softmax(Q Kᵀ) = softmax(P Xᵀ)` with `P = X·Mᵀ + c`, `M = W_kᵀ W_q`,
/// `c = W_kᵀ b_q`: one S×S product per node instead of two.
#[derive(Clone, Debug)]
pub struct FoldedStep {
    pub m: Vec<f32>, // [S, S]
    pub c: Vec<f32>, // [S]
}

impl FoldedStep {
    pub fn new(p: &SgrStep) -> FoldedStep {
        let s = p.query.n_out;
        let mut wk_t = vec![0.0f32; s * s]; // W_kᵀ, [S, S]
        for o in 0..s {
            for a in 0..s {
                wk_t[a * s + o] = p.key.w[o * s + a];
            }
        }
        let mut m = vec![0.0f32; s * s];
        super::matmul_nn(&wk_t, &p.query.w, &mut m, s, s, s, false);
        let mut c = vec![0.0f32; s];
        super::matmul_nn(&wk_t, &p.query.b, &mut c, s, s, 1, false);
        FoldedStep { m, c }
    }
}

/// Scores-only SGR for eval: equal to [`forward`]'s output up to rounding, with
/// the query/key products folded ([`FoldedStep`]) and the last step computed
/// for the global node only (the only node the score reads).
pub fn forward_scores_only(
    nodes: &[f32],
    steps: &[SgrStep],
    folded: &[FoldedStep],
    lay: &TileLayout,
    n_img: usize,
) -> Vec<f32> {
    let Some(last) = steps.len().checked_sub(1) else {
        return global_nodes(nodes, lay, n_img, 0);
    };
    let (s, nn) = (steps[0].graph.n_out, lay.n_nodes());
    let rows = n_img * nn;
    let mut x = nodes.to_vec();
    let mut pq = vec![0.0; rows * s]; // P = X·Mᵀ + c, [n_img, n_nodes, S]
    let mut ax = vec![0.0; rows * s];
    let mut a = Vec::new();
    for k in 0..last {
        super::linear::forward(&x, &folded[k].m, Some(&folded[k].c), &mut pq, rows, s, s);
        for i in 0..n_img {
            for c in 0..lay.n_cap() {
                let r = lay.nodes(c);
                let (n0, m) = (i * nn + r.start, r.len());
                a.resize(m * m, 0.0);
                let xc = &x[n0 * s..(n0 + m) * s];
                super::matmul_nt(&pq[n0 * s..(n0 + m) * s], xc, &mut a, m, s, m, false);
                for row in a.chunks_exact_mut(m) {
                    super::softmax(row);
                }
                super::matmul_nn(&a, xc, &mut ax[n0 * s..(n0 + m) * s], m, m, s, false);
            }
        }
        super::linear::forward(&ax, &steps[k].graph.w, Some(&steps[k].graph.b), &mut x, rows, s, s);
        x.iter_mut().for_each(|v| *v = v.max(0.0));
    }
    // Last step: the global node's row only.
    let nc = lay.n_cap();
    let g = global_nodes(&x, lay, n_img, s); // [n_img, n_cap, S]
    let mut p0 = vec![0.0; n_img * nc * s];
    super::linear::forward(&g, &folded[last].m, Some(&folded[last].c), &mut p0, n_img * nc, s, s);
    let mut ax0 = vec![0.0; n_img * nc * s];
    for i in 0..n_img {
        for c in 0..nc {
            let r = lay.nodes(c);
            let (n0, m) = (i * nn + r.start, r.len());
            let xc = &x[n0 * s..(n0 + m) * s];
            let pc = &p0[(i * nc + c) * s..(i * nc + c + 1) * s];
            a.resize(m, 0.0);
            for j in 0..m {
                a[j] = pc.iter().zip(&xc[j * s..(j + 1) * s]).map(|(u, v)| u * v).sum();
            }
            super::softmax(&mut a[..m]);
            let o = &mut ax0[(i * nc + c) * s..(i * nc + c + 1) * s];
            for j in 0..m {
                for (ov, xv) in o.iter_mut().zip(&xc[j * s..(j + 1) * s]) {
                    *ov += a[j] * xv;
                }
            }
        }
    }
    let mut out = vec![0.0; n_img * nc * s];
    super::linear::forward(&ax0, &steps[last].graph.w, Some(&steps[last].graph.b), &mut out, n_img * nc, s, s);
    out.iter_mut().for_each(|v| *v = v.max(0.0));
    out
}

// ----------------------------------------------------------------------------
// Training: the steps keeping activations, and the backward.

/// What the backward of one SGR step needs.
#[derive(Clone, Debug, Default)]
pub struct StepCache {
    pub x: Vec<f32>,   // [n_img, n_nodes, S] step input
    pub q: Vec<f32>,   // [n_img, n_nodes, S] queries
    pub k: Vec<f32>,   // [n_img, n_nodes, S] keys
    pub a: Vec<f32>,   // edges: per (image, caption) an (L+1)×(L+1) softmax block, see [`edge_offsets`]
    pub ax: Vec<f32>,  // [n_img, n_nodes, S] A·X
    pub out: Vec<f32>, // [n_img, n_nodes, S] ReLU output
}

/// Offsets of each caption's (L+1)² edge block within one image, `[n_cap + 1]`
/// (the last entry is the per-image total).
pub fn edge_offsets(lay: &TileLayout) -> Vec<usize> {
    let mut off = vec![0];
    for c in 0..lay.n_cap() {
        let m = lay.nodes(c).len();
        off.push(off[c] + m * m);
    }
    off
}

/// [`step_forward`] keeping activations (same values).
pub fn step_forward_train(x: &[f32], p: &SgrStep, lay: &TileLayout, n_img: usize) -> StepCache {
    let (s, nn) = (p.graph.n_out, lay.n_nodes());
    let rows = n_img * nn;
    let eoff = edge_offsets(lay);
    let per_img = eoff[lay.n_cap()];
    let mut q = vec![0.0; rows * s]; // [n_img, n_nodes, S]
    let mut k = vec![0.0; rows * s];
    super::linear::forward(x, &p.query.w, Some(&p.query.b), &mut q, rows, s, s);
    super::linear::forward(x, &p.key.w, Some(&p.key.b), &mut k, rows, s, s);
    let mut a = vec![0.0; n_img * per_img]; // edge blocks
    let mut ax = vec![0.0; rows * s]; // [n_img, n_nodes, S]
    for i in 0..n_img {
        for c in 0..lay.n_cap() {
            let r = lay.nodes(c);
            let (n0, m) = (i * nn + r.start, r.len());
            let blk = &mut a[i * per_img + eoff[c]..i * per_img + eoff[c + 1]];
            super::matmul_nt(&q[n0 * s..(n0 + m) * s], &k[n0 * s..(n0 + m) * s], blk, m, s, m, false);
            for row in blk.chunks_exact_mut(m) {
                super::softmax(row);
            }
            super::matmul_nn(blk, &x[n0 * s..(n0 + m) * s], &mut ax[n0 * s..(n0 + m) * s], m, m, s, false);
        }
    }
    let mut out = vec![0.0; rows * s];
    super::linear::forward(&ax, &p.graph.w, Some(&p.graph.b), &mut out, rows, s, s);
    out.iter_mut().for_each(|v| *v = v.max(0.0));
    StepCache { x: x.to_vec(), q, k, a, ax, out }
}

/// Backward of [`step_forward_train`]: `dout [n_img, n_nodes, S]` → `dp += …`,
/// `dx [n_img, n_nodes, S] += …`. `key.b` is not accumulated: it adds `q_i·b`
/// to every logit of row i, which the softmax ignores (zero by construction).
pub fn step_backward(
    dout: &[f32],
    p: &SgrStep,
    lay: &TileLayout,
    n_img: usize,
    cache: &StepCache,
    dp: &mut SgrStep,
    dx: &mut [f32],
) {
    let (s, nn) = (p.graph.n_out, lay.n_nodes());
    let rows = n_img * nn;
    let eoff = edge_offsets(lay);
    let per_img = eoff[lay.n_cap()];
    let c = cache;
    // out = ReLU(ax·W_gᵀ + b_g)
    let dpre: Vec<f32> = dout.iter().zip(&c.out).map(|(&g, &o)| if o > 0.0 { g } else { 0.0 }).collect();
    let mut dax = vec![0.0; rows * s]; // [n_img, n_nodes, S]
    super::linear::backward(
        &dpre,
        &c.ax,
        &p.graph.w,
        Some(&mut dax),
        &mut dp.graph.w,
        Some(&mut dp.graph.b),
        rows,
        s,
        s,
    );
    // ax = A·X per block, A = softmax(Q·Kᵀ)
    let mut dq = vec![0.0; rows * s]; // [n_img, n_nodes, S]
    let mut dk = vec![0.0; rows * s];
    let mut da = Vec::new(); // [m, m]
    let mut dlogit = Vec::new(); // [m, m]
    for i in 0..n_img {
        for cap in 0..lay.n_cap() {
            let r = lay.nodes(cap);
            let (n0, m) = (i * nn + r.start, r.len());
            let nodes = n0 * s..(n0 + m) * s;
            let blk = &c.a[i * per_img + eoff[cap]..i * per_img + eoff[cap + 1]];
            da.resize(m * m, 0.0);
            super::matmul_nt(&dax[nodes.clone()], &c.x[nodes.clone()], &mut da, m, s, m, false);
            super::matmul_tn(blk, &dax[nodes.clone()], &mut dx[nodes.clone()], m, m, s, true);
            dlogit.clear();
            dlogit.resize(m * m, 0.0);
            for j in 0..m {
                let row = j * m..(j + 1) * m;
                super::softmax_backward(&blk[row.clone()], &da[row.clone()], &mut dlogit[row]);
            }
            super::matmul_nn(&dlogit, &c.k[nodes.clone()], &mut dq[nodes.clone()], m, m, s, true);
            super::matmul_tn(&dlogit, &c.q[nodes.clone()], &mut dk[nodes.clone()], m, m, s, true);
        }
    }
    super::linear::backward(&dq, &c.x, &p.query.w, Some(&mut *dx), &mut dp.query.w, Some(&mut dp.query.b), rows, s, s);
    super::linear::backward(&dk, &c.x, &p.key.w, Some(&mut *dx), &mut dp.key.w, None, rows, s, s);
}

/// All steps keeping activations: `nodes [n_img, n_nodes, S]` → `s [n_img, n_cap, S]` and the step caches.
pub fn forward_train(nodes: &[f32], steps: &[SgrStep], lay: &TileLayout, n_img: usize) -> (Vec<f32>, Vec<StepCache>) {
    let s = steps.first().map(|p| p.graph.n_out).unwrap_or(0);
    let mut caches: Vec<StepCache> = Vec::with_capacity(steps.len());
    for p in steps {
        let x = caches.last().map(|c| &c.out[..]).unwrap_or(nodes);
        let c = step_forward_train(x, p, lay, n_img);
        caches.push(c);
    }
    let last = caches.last().map(|c| &c.out[..]).unwrap_or(nodes);
    (global_nodes(last, lay, n_img, s), caches)
}

/// Backward of [`forward_train`]: `ds [n_img, n_cap, S]` (gradient of the reasoned
/// global nodes) → `dsteps += …`, `dnodes [n_img, n_nodes, S] += …`.
pub fn backward(
    ds: &[f32],
    steps: &[SgrStep],
    lay: &TileLayout,
    n_img: usize,
    caches: &[StepCache],
    dsteps: &mut [SgrStep],
    dnodes: &mut [f32],
) {
    let (nn, nc) = (lay.n_nodes(), lay.n_cap());
    let s = steps.first().map(|p| p.graph.n_out).unwrap_or(0);
    let mut dx = vec![0.0; n_img * nn * s]; // [n_img, n_nodes, S] gradient of the last step's output
    for i in 0..n_img {
        for c in 0..nc {
            let n0 = i * nn + lay.node_off[c];
            dx[n0 * s..(n0 + 1) * s].copy_from_slice(&ds[(i * nc + c) * s..(i * nc + c + 1) * s]);
        }
    }
    for k in (0..steps.len()).rev() {
        let mut dprev = vec![0.0; n_img * nn * s]; // [n_img, n_nodes, S]
        step_backward(&dx, &steps[k], lay, n_img, &caches[k], &mut dsteps[k], &mut dprev);
        dx = dprev;
    }
    super::add_into(dnodes, &dx);
}
