//! Visual self-attention `v_global_w` (spec §5.1): the mean region as query,
//! BatchNorm over the 36 region slots and over features.

use super::batchnorm::{self, BnStats};
use super::Real;
use crate::model::params::{Mode, VisualSa, N_REGIONS};

/// Batch statistics of the two BatchNorms (train mode).
#[derive(Clone, Debug, Default)]
pub struct VisualSaStats<T = f32> {
    pub local: Option<BnStats<T>>,
    pub global: Option<BnStats<T>>,
}

/// `v [n, 36, E]` → `v_glo [n, E]`.
pub fn forward<T: Real>(v: &[T], p: &VisualSa<T>, mode: Mode, n: usize, e: usize) -> (Vec<T>, VisualSaStats<T>) {
    let r = N_REGIONS;
    // local branch: tanh(BN_36(v·Wlᵀ + b))                     [n, 36, E]
    let mut l = vec![T::ZERO; n * r * e];
    super::linear::forward(v, &p.local.w, Some(&p.local.b), &mut l, n * r, e, e);
    let s_local = batchnorm::forward(&mut l, &p.local_bn, mode, n, r, e);
    l.iter_mut().for_each(|x| *x = x.tanh());
    // global branch: tanh(BN_E(mean_r(v)·Wgᵀ + b))              [n, E]
    let mut mean = vec![T::ZERO; n * e];
    for i in 0..n {
        for reg in 0..r {
            for k in 0..e {
                mean[i * e + k] += v[(i * r + reg) * e + k];
            }
        }
    }
    mean.iter_mut().for_each(|x| *x /= T::from_usize(r));
    let mut g = vec![T::ZERO; n * e];
    super::linear::forward(&mean, &p.global.w, Some(&p.global.b), &mut g, n, e, e);
    let s_global = batchnorm::forward(&mut g, &p.global_bn, mode, n, e, 1);
    g.iter_mut().for_each(|x| *x = x.tanh());
    // common: softmax_r((l ⊙ g)·wc + bc); v_glo = l2norm(Σ_r w_r v_r)
    let mut out = vec![T::ZERO; n * e];
    let mut w = vec![T::ZERO; r];
    for i in 0..n {
        for reg in 0..r {
            let lr = &l[(i * r + reg) * e..(i * r + reg + 1) * e];
            let gi = &g[i * e..(i + 1) * e];
            w[reg] = lr.iter().zip(gi).zip(&p.common.w).map(|((&a, &b), &c)| a * b * c).sum::<T>() + p.common.b[0];
        }
        super::softmax(&mut w);
        let o = &mut out[i * e..(i + 1) * e];
        for reg in 0..r {
            let vr = &v[(i * r + reg) * e..(i * r + reg + 1) * e];
            for k in 0..e {
                o[k] += w[reg] * vr[k];
            }
        }
    }
    super::l2norm::forward(&mut out, e);
    (out, VisualSaStats { local: s_local, global: s_global })
}

// ----------------------------------------------------------------------------
// Training: forward keeping activations (optional dropout), and backward.

/// Multiplies `x` by an inverted-dropout mask (entries 0 or 1/(1−p)) when given.
fn apply_mask<T: Real>(x: &mut [T], mask: Option<&[T]>) {
    if let Some(m) = mask {
        x.iter_mut().zip(m).for_each(|(v, &s)| *v *= s);
    }
}

/// What the backward of [`forward_train`] needs.
#[derive(Clone, Debug, Default)]
pub struct VisualSaCache<T = f32> {
    pub l_pre: Vec<T>,          // [n, 36, E] local linear output (BatchNorm input)
    pub l_th: Vec<T>,           // [n, 36, E] tanh(BN(l_pre)), before dropout
    pub l: Vec<T>,              // [n, 36, E] after dropout
    pub l_mask: Option<Vec<T>>, // [n, 36, E] dropout multipliers
    pub mean: Vec<T>,           // [n, E] mean region (query input)
    pub g_pre: Vec<T>,          // [n, E] global linear output (BatchNorm input)
    pub g_th: Vec<T>,           // [n, E] tanh(BN(g_pre)), before dropout
    pub g: Vec<T>,              // [n, E] after dropout
    pub g_mask: Option<Vec<T>>, // [n, E]
    pub w: Vec<T>,              // [n, 36] softmax weights over regions
    pub out: Vec<T>,            // [n, E] v_glo
    pub norms: Vec<T>,          // [n] ‖Σ_r w_r v_r‖
    pub stats: VisualSaStats<T>,
}

/// [`forward`] keeping activations, with inverted-dropout masks on the local
/// `[n, 36, E]` and global `[n, E]` branch outputs (`None`: no dropout).
/// Returns `v_glo [n, E]` inside the cache (`cache.out`).
pub fn forward_train<T: Real>(
    v: &[T],
    p: &VisualSa<T>,
    mode: Mode,
    n: usize,
    e: usize,
    local_mask: Option<Vec<T>>,
    global_mask: Option<Vec<T>>,
) -> VisualSaCache<T> {
    let r = N_REGIONS;
    let mut l_pre = vec![T::ZERO; n * r * e]; // [n, 36, E]
    super::linear::forward(v, &p.local.w, Some(&p.local.b), &mut l_pre, n * r, e, e);
    let mut l_th = l_pre.clone();
    let s_local = batchnorm::forward(&mut l_th, &p.local_bn, mode, n, r, e);
    l_th.iter_mut().for_each(|x| *x = x.tanh());
    let mut l = l_th.clone();
    apply_mask(&mut l, local_mask.as_deref());
    let mut mean = vec![T::ZERO; n * e]; // [n, E]
    for i in 0..n {
        for reg in 0..r {
            for k in 0..e {
                mean[i * e + k] += v[(i * r + reg) * e + k];
            }
        }
    }
    mean.iter_mut().for_each(|x| *x /= T::from_usize(r));
    let mut g_pre = vec![T::ZERO; n * e]; // [n, E]
    super::linear::forward(&mean, &p.global.w, Some(&p.global.b), &mut g_pre, n, e, e);
    let mut g_th = g_pre.clone();
    let s_global = batchnorm::forward(&mut g_th, &p.global_bn, mode, n, e, 1);
    g_th.iter_mut().for_each(|x| *x = x.tanh());
    let mut g = g_th.clone();
    apply_mask(&mut g, global_mask.as_deref());
    let mut out = vec![T::ZERO; n * e]; // [n, E]
    let mut w = vec![T::ZERO; n * r]; // [n, 36]
    for i in 0..n {
        let wi = &mut w[i * r..(i + 1) * r];
        for reg in 0..r {
            let lr = &l[(i * r + reg) * e..(i * r + reg + 1) * e];
            let gi = &g[i * e..(i + 1) * e];
            wi[reg] = lr.iter().zip(gi).zip(&p.common.w).map(|((&a, &b), &c)| a * b * c).sum::<T>() + p.common.b[0];
        }
        super::softmax(wi);
        let o = &mut out[i * e..(i + 1) * e];
        for reg in 0..r {
            let vr = &v[(i * r + reg) * e..(i * r + reg + 1) * e];
            for k in 0..e {
                o[k] += wi[reg] * vr[k];
            }
        }
    }
    let norms = super::l2norm::forward_keep_norms(&mut out, e);
    VisualSaCache {
        l_pre,
        l_th,
        l,
        l_mask: local_mask,
        mean,
        g_pre,
        g_th,
        g,
        g_mask: global_mask,
        w,
        out,
        norms,
        stats: VisualSaStats { local: s_local, global: s_global },
    }
}

/// Backward of [`forward_train`]: `dout [n, E]` (gradient of v_glo) → `dp += …`, `dv [n, 36, E] += …`.
///
/// Not accumulated, being zero by construction: `common.b` (a constant added
/// before the softmax) and, in train mode, `global.b` (followed by a
/// BatchNorm over the batch, which removes it).
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Real>(
    dout: &[T],
    v: &[T],
    p: &VisualSa<T>,
    mode: Mode,
    cache: &VisualSaCache<T>,
    dp: &mut VisualSa<T>,
    dv: &mut [T],
    n: usize,
    e: usize,
) {
    let r = N_REGIONS;
    let c = cache;
    let mut du = vec![T::ZERO; n * e]; // [n, E] gradient of Σ_r w_r v_r
    super::l2norm::backward(dout, &c.out, &c.norms, &mut du, e);
    let mut dl = vec![T::ZERO; n * r * e]; // [n, 36, E]
    let mut dg = vec![T::ZERO; n * e]; // [n, E]
    let mut dw = vec![T::ZERO; r]; // [36]
    let mut dscore = vec![T::ZERO; r]; // [36]
    for i in 0..n {
        let dui = &du[i * e..(i + 1) * e];
        let wi = &c.w[i * r..(i + 1) * r];
        for reg in 0..r {
            let row = (i * r + reg) * e..(i * r + reg + 1) * e;
            dw[reg] = v[row.clone()].iter().zip(dui).map(|(&a, &b)| a * b).sum();
            for (d, &g) in dv[row].iter_mut().zip(dui) {
                *d += wi[reg] * g;
            }
        }
        dscore.fill(T::ZERO);
        super::softmax_backward(wi, &dw, &mut dscore);
        let gi = &c.g[i * e..(i + 1) * e];
        let dgi = &mut dg[i * e..(i + 1) * e];
        for (reg, &ds) in dscore.iter().enumerate() {
            let row = (i * r + reg) * e..(i * r + reg + 1) * e;
            let lr = &c.l[row.clone()];
            let dlr = &mut dl[row];
            for k in 0..e {
                let wc = p.common.w[k];
                dlr[k] += ds * gi[k] * wc;
                dgi[k] += ds * lr[k] * wc;
                dp.common.w[k] += ds * lr[k] * gi[k];
            }
        }
    }
    // dropout and tanh: d(BN output) = d·mask·(1 − th²)
    let branch = |d: &mut [T], th: &[T], mask: &Option<Vec<T>>| {
        if let Some(m) = mask {
            d.iter_mut().zip(m).for_each(|(x, &s)| *x *= s);
        }
        d.iter_mut().zip(th).for_each(|(x, &t)| *x *= T::ONE - t * t);
    };
    branch(&mut dl, &c.l_th, &c.l_mask);
    branch(&mut dg, &c.g_th, &c.g_mask);
    // local: BatchNorm over the 36 region slots, then Linear(E→E) on v
    let mut dl_pre = vec![T::ZERO; n * r * e]; // [n, 36, E]
    batchnorm::backward(
        &dl,
        &c.l_pre,
        &p.local_bn,
        mode,
        c.stats.local.as_ref(),
        &mut dp.local_bn,
        &mut dl_pre,
        n,
        r,
        e,
    );
    super::linear::backward(
        &dl_pre,
        v,
        &p.local.w,
        Some(&mut *dv),
        &mut dp.local.w,
        Some(&mut dp.local.b),
        n * r,
        e,
        e,
    );
    // global: BatchNorm over features, then Linear(E→E) on the mean region
    let mut dg_pre = vec![T::ZERO; n * e]; // [n, E]
    batchnorm::backward(
        &dg,
        &c.g_pre,
        &p.global_bn,
        mode,
        c.stats.global.as_ref(),
        &mut dp.global_bn,
        &mut dg_pre,
        n,
        e,
        1,
    );
    let mut dmean = vec![T::ZERO; n * e]; // [n, E]
    let dgb = if mode == Mode::Eval { Some(&mut dp.global.b[..]) } else { None };
    super::linear::backward(&dg_pre, &c.mean, &p.global.w, Some(&mut dmean), &mut dp.global.w, dgb, n, e, e);
    for i in 0..n {
        for reg in 0..r {
            for k in 0..e {
                dv[(i * r + reg) * e + k] += dmean[i * e + k] / T::from_usize(r);
            }
        }
    }
}
