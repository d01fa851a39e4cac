//! Similarity Attention Filtration (spec §6.6): per-node weights
//! `l1norm(σ(BN(Linear_a(X))))`, then `l2norm(Σ β X)`.

use super::batchnorm::{self, BnStats};
use super::Real;
use crate::model::layout::TileLayout;
use crate::model::params::{BatchNorm, Mode, Saf};

/// What SAF computed besides its output.
#[derive(Clone, Debug, Default)]
pub struct SafTrace<T = f32> {
    pub bn_out: Vec<T>,            // [n_img, n_nodes], BN output before σ
    pub weights: Vec<T>,           // [n_img, n_nodes], normalised β
    pub bn_stats: Vec<BnStats<T>>, // [n_cap] in caption order (train mode)
}

/// `nodes [n_img, n_nodes, S]` → `s [n_img, n_cap, S]`. In train mode the
/// BatchNorm statistics of caption c are taken over all n_img × (L_c+1) values.
pub fn forward<T: Real>(nodes: &[T], p: &Saf<T>, lay: &TileLayout, n_img: usize, mode: Mode) -> (Vec<T>, SafTrace<T>) {
    let (s, nn, nc) = (p.attn.n_in, lay.n_nodes(), lay.n_cap());
    let mut beta = vec![T::ZERO; n_img * nn]; // [n_img, n_nodes]
    super::linear::forward(nodes, &p.attn.w, Some(&p.attn.b), &mut beta, n_img * nn, s, 1);
    let mut stats = Vec::new();
    let mut buf = Vec::new();
    for c in 0..nc {
        let r = lay.nodes(c);
        buf.clear();
        for i in 0..n_img {
            buf.extend_from_slice(&beta[i * nn + r.start..i * nn + r.end]);
        }
        // BatchNorm1d(1) on [n_img, 1, L+1]
        if let Some(st) = batchnorm::forward(&mut buf, &p.bn, mode, n_img, 1, r.len()) {
            stats.push(st);
        }
        for i in 0..n_img {
            beta[i * nn + r.start..i * nn + r.end].copy_from_slice(&buf[i * r.len()..(i + 1) * r.len()]);
        }
    }
    let bn_out = beta.clone();
    let mut out = vec![T::ZERO; n_img * nc * s];
    for i in 0..n_img {
        for c in 0..nc {
            let r = lay.nodes(c);
            let b = &mut beta[i * nn + r.start..i * nn + r.end];
            b.iter_mut().for_each(|x| *x = super::sigmoid(*x));
            let sum = b.iter().map(|x| x.abs()).sum::<T>() + T::from_f32(1e-8);
            b.iter_mut().for_each(|x| *x /= sum);
            let o = &mut out[(i * nc + c) * s..(i * nc + c + 1) * s];
            for (j, n) in r.enumerate() {
                let xn = &nodes[(i * nn + n) * s..(i * nn + n + 1) * s];
                for k in 0..s {
                    o[k] += b[j] * xn[k];
                }
            }
        }
    }
    super::l2norm::forward(&mut out, s);
    (out, SafTrace { bn_out, weights: beta, bn_stats: stats })
}

// ----------------------------------------------------------------------------
// Training: SAF in three stages, so that a caller can run the per-caption
// BatchNorm (which couples all images of a caption) between per-image passes:
//   attn_logits          nodes [n_img, n_nodes, S] → β [n_img, n_nodes]
//   caption_batch_norm   β → BN(β) per caption (statistics over images × nodes)
//   filter_forward       σ, l1norm over nodes, weighted sum of the nodes, l2norm
// [`forward`] is these three in a row.

/// `β = Linear_a(nodes)`: `nodes [rows, S]` → `[rows]`.
pub fn attn_logits<T: Real>(nodes: &[T], p: &Saf<T>, rows: usize) -> Vec<T> {
    let mut beta = vec![T::ZERO; rows]; // [rows]
    super::linear::forward(nodes, &p.attn.w, Some(&p.attn.b), &mut beta, rows, p.attn.n_in, 1);
    beta
}

/// Backward of [`attn_logits`]: `dbeta [rows]` → `dp.attn += …`, `dnodes [rows, S] += …`.
/// In train mode `attn.b` is not accumulated: the BatchNorm that follows
/// removes any constant (zero gradient by construction).
pub fn attn_logits_backward<T: Real>(
    dbeta: &[T],
    nodes: &[T],
    p: &Saf<T>,
    mode: Mode,
    dp: &mut Saf<T>,
    dnodes: &mut [T],
    rows: usize,
) {
    let db = if mode == Mode::Eval { Some(&mut dp.attn.b[..]) } else { None };
    super::linear::backward(dbeta, nodes, &p.attn.w, Some(dnodes), &mut dp.attn.w, db, rows, p.attn.n_in, 1);
}

/// BatchNorm1d(1) of each caption's `β [n_img, L+1]` (as in [`forward`]):
/// `beta [n_img, n_nodes]` → `bn_out [n_img, n_nodes]`, and in train mode the
/// batch statistics of every caption, in caption order.
pub fn caption_batch_norm<T: Real>(
    beta: &[T],
    p: &Saf<T>,
    lay: &TileLayout,
    n_img: usize,
    mode: Mode,
) -> (Vec<T>, Vec<BnStats<T>>) {
    let nn = lay.n_nodes();
    let mut out = beta.to_vec(); // [n_img, n_nodes]
    let mut stats = Vec::new();
    let mut buf = Vec::new(); // [n_img, 1, L+1]
    for c in 0..lay.n_cap() {
        let r = lay.nodes(c);
        buf.clear();
        for i in 0..n_img {
            buf.extend_from_slice(&beta[i * nn + r.start..i * nn + r.end]);
        }
        if let Some(st) = batchnorm::forward(&mut buf, &p.bn, mode, n_img, 1, r.len()) {
            stats.push(st);
        }
        for i in 0..n_img {
            out[i * nn + r.start..i * nn + r.end].copy_from_slice(&buf[i * r.len()..(i + 1) * r.len()]);
        }
    }
    (out, stats)
}

/// Backward of [`caption_batch_norm`]: `dbn_out [n_img, n_nodes]` → `dbn += …`
/// (weight, bias), `dbeta [n_img, n_nodes] += …`. `stats` is what the forward returned.
#[allow(clippy::too_many_arguments)]
pub fn caption_batch_norm_backward<T: Real>(
    dbn_out: &[T],
    beta: &[T],
    p: &Saf<T>,
    lay: &TileLayout,
    n_img: usize,
    mode: Mode,
    stats: &[BnStats<T>],
    dbn: &mut BatchNorm<T>,
    dbeta: &mut [T],
) {
    let nn = lay.n_nodes();
    let gather = |t: &[T], r: &std::ops::Range<usize>| -> Vec<T> {
        (0..n_img).flat_map(|i| t[i * nn + r.start..i * nn + r.end].to_vec()).collect()
    };
    for c in 0..lay.n_cap() {
        let r = lay.nodes(c);
        let (dy, x) = (gather(dbn_out, &r), gather(beta, &r)); // [n_img, 1, L+1]
        let mut dx = vec![T::ZERO; dy.len()];
        batchnorm::backward(&dy, &x, &p.bn, mode, stats.get(c), dbn, &mut dx, n_img, 1, r.len());
        for i in 0..n_img {
            super::add_into(&mut dbeta[i * nn + r.start..i * nn + r.end], &dx[i * r.len()..(i + 1) * r.len()]);
        }
    }
}

/// What the backward of [`filter_forward`] needs.
#[derive(Clone, Debug, Default)]
pub struct FilterCache<T = f32> {
    pub sig: Vec<T>,     // [n_img, n_nodes] σ(BN(β))
    pub weights: Vec<T>, // [n_img, n_nodes] σ / (Σ_nodes σ + 1e-8)
    pub out: Vec<T>,     // [n_img, n_cap, S] l2norm(Σ weights·nodes)
    pub norms: Vec<T>,   // [n_img, n_cap]
}

/// The filtration after the BatchNorm (as in [`forward`]): `nodes [n_img, n_nodes, S]`,
/// `bn_out [n_img, n_nodes]` → `s [n_img, n_cap, S]` (`cache.out`).
pub fn filter_forward<T: Real>(nodes: &[T], bn_out: &[T], lay: &TileLayout, n_img: usize, s: usize) -> FilterCache<T> {
    let (nn, nc) = (lay.n_nodes(), lay.n_cap());
    let sig: Vec<T> = bn_out.iter().map(|&x| super::sigmoid(x)).collect();
    let mut weights = sig.clone();
    let mut out = vec![T::ZERO; n_img * nc * s]; // [n_img, n_cap, S]
    for i in 0..n_img {
        for c in 0..nc {
            let r = lay.nodes(c);
            let b = &mut weights[i * nn + r.start..i * nn + r.end];
            let sum = b.iter().map(|x| x.abs()).sum::<T>() + T::from_f32(1e-8);
            b.iter_mut().for_each(|x| *x /= sum);
            let o = &mut out[(i * nc + c) * s..(i * nc + c + 1) * s];
            for (j, n) in r.enumerate() {
                let xn = &nodes[(i * nn + n) * s..(i * nn + n + 1) * s];
                for k in 0..s {
                    o[k] += b[j] * xn[k];
                }
            }
        }
    }
    let norms = super::l2norm::forward_keep_norms(&mut out, s);
    FilterCache { sig, weights, out, norms }
}

/// Backward of [`filter_forward`]: `dout [n_img, n_cap, S]` → `dnodes [n_img, n_nodes, S] += …`
/// (the weighted-sum path only), `dbn_out [n_img, n_nodes] += …`.
#[allow(clippy::too_many_arguments)]
pub fn filter_backward<T: Real>(
    dout: &[T],
    nodes: &[T],
    lay: &TileLayout,
    n_img: usize,
    s: usize,
    cache: &FilterCache<T>,
    dnodes: &mut [T],
    dbn_out: &mut [T],
) {
    let (nn, nc) = (lay.n_nodes(), lay.n_cap());
    let mut du = vec![T::ZERO; n_img * nc * s]; // [n_img, n_cap, S] gradient of the weighted sum
    super::l2norm::backward(dout, &cache.out, &cache.norms, &mut du, s);
    let mut dw = Vec::new(); // [L+1] gradient of the l1-normalised weights
    for i in 0..n_img {
        for c in 0..nc {
            let r = lay.nodes(c);
            let duc = &du[(i * nc + c) * s..(i * nc + c + 1) * s];
            let w = &cache.weights[i * nn + r.start..i * nn + r.end];
            dw.clear();
            for (j, n) in r.clone().enumerate() {
                let row = (i * nn + n) * s..(i * nn + n + 1) * s;
                dw.push(nodes[row.clone()].iter().zip(duc).map(|(&a, &b)| a * b).sum::<T>());
                for (d, &g) in dnodes[row].iter_mut().zip(duc) {
                    *d += w[j] * g;
                }
            }
            // w = σ / (Σσ + 1e-8) (σ > 0, so |σ| = σ): dσ_j = dw_j/D − Σ_k dw_k σ_k / D²
            let sig = &cache.sig[i * nn + r.start..i * nn + r.end];
            let d = sig.iter().map(|x| x.abs()).sum::<T>() + T::from_f32(1e-8);
            let dot: T = dw.iter().zip(sig).map(|(&a, &b)| a * b).sum();
            let dbo = &mut dbn_out[i * nn + r.start..i * nn + r.end];
            for j in 0..r.len() {
                let dsig = dw[j] / d - dot / (d * d);
                dbo[j] += dsig * sig[j] * (T::ONE - sig[j]);
            }
        }
    }
}
