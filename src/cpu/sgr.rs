//! Similarity Graph Reasoning (spec §6.5): K unshared steps of
//! `X ← ReLU(Linear_g(softmax(Q Kᵀ) X))` over each caption's L+1 nodes;
//! the result is the reasoned global node.

use super::Real;
use crate::model::layout::TileLayout;
use crate::model::params::SgrStep;

/// One step over `x [n_img, n_nodes, S]` → new `[n_img, n_nodes, S]`.
pub fn step_forward<T: Real>(x: &[T], p: &SgrStep<T>, lay: &TileLayout, n_img: usize) -> Vec<T> {
    let (s, nn) = (p.graph.n_out, lay.n_nodes());
    let rows = n_img * nn;
    let mut q = vec![T::ZERO; rows * s]; // [n_img, n_nodes, S]
    let mut k = vec![T::ZERO; rows * s];
    super::linear::forward(x, &p.query.w, Some(&p.query.b), &mut q, rows, s, s);
    super::linear::forward(x, &p.key.w, Some(&p.key.b), &mut k, rows, s, s);
    let mut ax = vec![T::ZERO; rows * s]; // A·X, [n_img, n_nodes, S]
    let mut a = Vec::new();
    for i in 0..n_img {
        for c in 0..lay.n_cap() {
            let r = lay.nodes(c);
            let (n0, m) = (i * nn + r.start, r.len());
            a.resize(m * m, T::ZERO);
            super::matmul_nt(&q[n0 * s..(n0 + m) * s], &k[n0 * s..(n0 + m) * s], &mut a, m, s, m, false);
            for row in a.chunks_exact_mut(m) {
                super::softmax(row);
            }
            super::matmul_nn(&a, &x[n0 * s..(n0 + m) * s], &mut ax[n0 * s..(n0 + m) * s], m, m, s, false);
        }
    }
    let mut out = vec![T::ZERO; rows * s];
    super::linear::forward(&ax, &p.graph.w, Some(&p.graph.b), &mut out, rows, s, s);
    out.iter_mut().for_each(|v| *v = v.max(T::ZERO));
    out
}

/// All steps; returns `s [n_img, n_cap, S]` (node 0 of each caption) and,
/// when `keep_steps`, the node tensor after every step.
pub fn forward<T: Real>(
    nodes: &[T],
    steps: &[SgrStep<T>],
    lay: &TileLayout,
    n_img: usize,
    keep_steps: bool,
) -> (Vec<T>, Vec<Vec<T>>) {
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
pub fn global_nodes<T: Real>(x: &[T], lay: &TileLayout, n_img: usize, s: usize) -> Vec<T> {
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
pub struct FoldedStep<T = f32> {
    pub m: Vec<T>, // [S, S]
    pub c: Vec<T>, // [S]
}

impl<T: Real> FoldedStep<T> {
    pub fn new(p: &SgrStep<T>) -> FoldedStep<T> {
        let s = p.query.n_out;
        let mut wk_t = vec![T::ZERO; s * s]; // W_kᵀ, [S, S]
        for o in 0..s {
            for a in 0..s {
                wk_t[a * s + o] = p.key.w[o * s + a];
            }
        }
        let mut m = vec![T::ZERO; s * s];
        super::matmul_nn(&wk_t, &p.query.w, &mut m, s, s, s, false);
        let mut c = vec![T::ZERO; s];
        super::matmul_nn(&wk_t, &p.query.b, &mut c, s, s, 1, false);
        FoldedStep { m, c }
    }
}

/// Scores-only SGR for eval: equal to [`forward`]'s output up to rounding, with
/// the query/key products folded ([`FoldedStep`]) and the last step computed
/// for the global node only (the only node the score reads).
pub fn forward_scores_only<T: Real>(
    nodes: &[T],
    steps: &[SgrStep<T>],
    folded: &[FoldedStep<T>],
    lay: &TileLayout,
    n_img: usize,
) -> Vec<T> {
    let Some(last) = steps.len().checked_sub(1) else {
        return global_nodes(nodes, lay, n_img, 0);
    };
    let (s, nn) = (steps[0].graph.n_out, lay.n_nodes());
    let rows = n_img * nn;
    let mut x = nodes.to_vec();
    let mut pq = vec![T::ZERO; rows * s]; // P = X·Mᵀ + c, [n_img, n_nodes, S]
    let mut ax = vec![T::ZERO; rows * s];
    let mut a = Vec::new();
    for k in 0..last {
        super::linear::forward(&x, &folded[k].m, Some(&folded[k].c), &mut pq, rows, s, s);
        for i in 0..n_img {
            for c in 0..lay.n_cap() {
                let r = lay.nodes(c);
                let (n0, m) = (i * nn + r.start, r.len());
                a.resize(m * m, T::ZERO);
                let xc = &x[n0 * s..(n0 + m) * s];
                super::matmul_nt(&pq[n0 * s..(n0 + m) * s], xc, &mut a, m, s, m, false);
                for row in a.chunks_exact_mut(m) {
                    super::softmax(row);
                }
                super::matmul_nn(&a, xc, &mut ax[n0 * s..(n0 + m) * s], m, m, s, false);
            }
        }
        super::linear::forward(&ax, &steps[k].graph.w, Some(&steps[k].graph.b), &mut x, rows, s, s);
        x.iter_mut().for_each(|v| *v = v.max(T::ZERO));
    }
    // Last step: the global node's row only.
    let nc = lay.n_cap();
    let g = global_nodes(&x, lay, n_img, s); // [n_img, n_cap, S]
    let mut p0 = vec![T::ZERO; n_img * nc * s];
    super::linear::forward(&g, &folded[last].m, Some(&folded[last].c), &mut p0, n_img * nc, s, s);
    let mut ax0 = vec![T::ZERO; n_img * nc * s];
    for i in 0..n_img {
        for c in 0..nc {
            let r = lay.nodes(c);
            let (n0, m) = (i * nn + r.start, r.len());
            let xc = &x[n0 * s..(n0 + m) * s];
            let pc = &p0[(i * nc + c) * s..(i * nc + c + 1) * s];
            a.resize(m, T::ZERO);
            for j in 0..m {
                a[j] = pc.iter().zip(&xc[j * s..(j + 1) * s]).map(|(&u, &v)| u * v).sum();
            }
            super::softmax(&mut a[..m]);
            let o = &mut ax0[(i * nc + c) * s..(i * nc + c + 1) * s];
            for j in 0..m {
                for (ov, &xv) in o.iter_mut().zip(&xc[j * s..(j + 1) * s]) {
                    *ov += a[j] * xv;
                }
            }
        }
    }
    let mut out = vec![T::ZERO; n_img * nc * s];
    super::linear::forward(&ax0, &steps[last].graph.w, Some(&steps[last].graph.b), &mut out, n_img * nc, s, s);
    out.iter_mut().for_each(|v| *v = v.max(T::ZERO));
    out
}

// ----------------------------------------------------------------------------
// Training: the steps keeping activations, and the backward.

/// What the backward of one SGR step needs.
#[derive(Clone, Debug, Default)]
pub struct StepCache<T = f32> {
    pub x: Vec<T>,   // [n_img, n_nodes, S] step input
    pub q: Vec<T>,   // [n_img, n_nodes, S] queries
    pub k: Vec<T>,   // [n_img, n_nodes, S] keys
    pub a: Vec<T>,   // edges: per (image, caption) an (L+1)×(L+1) softmax block, see [`edge_offsets`]
    pub ax: Vec<T>,  // [n_img, n_nodes, S] A·X
    pub out: Vec<T>, // [n_img, n_nodes, S] ReLU output
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
pub fn step_forward_train<T: Real>(x: &[T], p: &SgrStep<T>, lay: &TileLayout, n_img: usize) -> StepCache<T> {
    let (s, nn) = (p.graph.n_out, lay.n_nodes());
    let rows = n_img * nn;
    let eoff = edge_offsets(lay);
    let per_img = eoff[lay.n_cap()];
    let mut q = vec![T::ZERO; rows * s]; // [n_img, n_nodes, S]
    let mut k = vec![T::ZERO; rows * s];
    super::linear::forward(x, &p.query.w, Some(&p.query.b), &mut q, rows, s, s);
    super::linear::forward(x, &p.key.w, Some(&p.key.b), &mut k, rows, s, s);
    let mut a = vec![T::ZERO; n_img * per_img]; // edge blocks
    let mut ax = vec![T::ZERO; rows * s]; // [n_img, n_nodes, S]
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
    let mut out = vec![T::ZERO; rows * s];
    super::linear::forward(&ax, &p.graph.w, Some(&p.graph.b), &mut out, rows, s, s);
    out.iter_mut().for_each(|v| *v = v.max(T::ZERO));
    StepCache { x: x.to_vec(), q, k, a, ax, out }
}

/// Backward of [`step_forward_train`]: `dout [n_img, n_nodes, S]` → `dp += …`,
/// `dx [n_img, n_nodes, S] += …`. `key.b` is not accumulated: it adds `q_i·b`
/// to every logit of row i, which the softmax ignores (zero by construction).
pub fn step_backward<T: Real>(
    dout: &[T],
    p: &SgrStep<T>,
    lay: &TileLayout,
    n_img: usize,
    cache: &StepCache<T>,
    dp: &mut SgrStep<T>,
    dx: &mut [T],
) {
    let (s, nn) = (p.graph.n_out, lay.n_nodes());
    let rows = n_img * nn;
    let eoff = edge_offsets(lay);
    let per_img = eoff[lay.n_cap()];
    let c = cache;
    // out = ReLU(ax·W_gᵀ + b_g)
    let dpre: Vec<T> = dout.iter().zip(&c.out).map(|(&g, &o)| if o > T::ZERO { g } else { T::ZERO }).collect();
    let mut dax = vec![T::ZERO; rows * s]; // [n_img, n_nodes, S]
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
    let mut dq = vec![T::ZERO; rows * s]; // [n_img, n_nodes, S]
    let mut dk = vec![T::ZERO; rows * s];
    let mut da = Vec::new(); // [m, m]
    let mut dlogit = Vec::new(); // [m, m]
    for i in 0..n_img {
        for cap in 0..lay.n_cap() {
            let r = lay.nodes(cap);
            let (n0, m) = (i * nn + r.start, r.len());
            let nodes = n0 * s..(n0 + m) * s;
            let blk = &c.a[i * per_img + eoff[cap]..i * per_img + eoff[cap + 1]];
            da.resize(m * m, T::ZERO);
            super::matmul_nt(&dax[nodes.clone()], &c.x[nodes.clone()], &mut da, m, s, m, false);
            super::matmul_tn(blk, &dax[nodes.clone()], &mut dx[nodes.clone()], m, m, s, true);
            dlogit.clear();
            dlogit.resize(m * m, T::ZERO);
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
pub fn forward_train<T: Real>(
    nodes: &[T],
    steps: &[SgrStep<T>],
    lay: &TileLayout,
    n_img: usize,
) -> (Vec<T>, Vec<StepCache<T>>) {
    let s = steps.first().map(|p| p.graph.n_out).unwrap_or(0);
    let mut caches: Vec<StepCache<T>> = Vec::with_capacity(steps.len());
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
pub fn backward<T: Real>(
    ds: &[T],
    steps: &[SgrStep<T>],
    lay: &TileLayout,
    n_img: usize,
    caches: &[StepCache<T>],
    dsteps: &mut [SgrStep<T>],
    dnodes: &mut [T],
) {
    let (nn, nc) = (lay.n_nodes(), lay.n_cap());
    let s = steps.first().map(|p| p.graph.n_out).unwrap_or(0);
    let mut dx = vec![T::ZERO; n_img * nn * s]; // [n_img, n_nodes, S] gradient of the last step's output
    for i in 0..n_img {
        for c in 0..nc {
            let n0 = i * nn + lay.node_off[c];
            dx[n0 * s..(n0 + 1) * s].copy_from_slice(&ds[(i * nc + c) * s..(i * nc + c + 1) * s]);
        }
    }
    for k in (0..steps.len()).rev() {
        let mut dprev = vec![T::ZERO; n_img * nn * s]; // [n_img, n_nodes, S]
        step_backward(&dx, &steps[k], lay, n_img, &caches[k], &mut dsteps[k], &mut dprev);
        dx = dprev;
    }
    super::add_into(dnodes, &dx);
}
