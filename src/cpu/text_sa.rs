//! Text self-attention `t_global_w` (spec §5.2), per caption over its own words.

use super::Real;
use crate::model::layout::TileLayout;
use crate::model::params::TextSa;

/// `t [n_words, E]` (packed words) → `t_glo [n_cap, E]`.
pub fn forward<T: Real>(t: &[T], p: &TextSa<T>, lay: &TileLayout, e: usize) -> Vec<T> {
    let (nw, nc) = (lay.n_words(), lay.n_cap());
    let mut l = vec![T::ZERO; nw * e]; // [n_words, E]
    super::linear::forward(t, &p.local.w, Some(&p.local.b), &mut l, nw, e, e);
    l.iter_mut().for_each(|x| *x = x.tanh());
    let mut mean = vec![T::ZERO; nc * e]; // [n_cap, E]
    for c in 0..nc {
        let m = &mut mean[c * e..(c + 1) * e];
        for w in lay.words(c) {
            for k in 0..e {
                m[k] += t[w * e + k];
            }
        }
        let len = T::from_usize(lay.lengths[c]);
        m.iter_mut().for_each(|x| *x /= len);
    }
    let mut g = vec![T::ZERO; nc * e]; // [n_cap, E]
    super::linear::forward(&mean, &p.global.w, Some(&p.global.b), &mut g, nc, e, e);
    g.iter_mut().for_each(|x| *x = x.tanh());
    let mut out = vec![T::ZERO; nc * e];
    for c in 0..nc {
        let gc = &g[c * e..(c + 1) * e];
        let mut w: Vec<T> = lay
            .words(c)
            .map(|wi| {
                let lw = &l[wi * e..(wi + 1) * e];
                lw.iter().zip(gc).zip(&p.common.w).map(|((&a, &b), &c)| a * b * c).sum::<T>() + p.common.b[0]
            })
            .collect();
        super::softmax(&mut w);
        let o = &mut out[c * e..(c + 1) * e];
        for (j, wi) in lay.words(c).enumerate() {
            for k in 0..e {
                o[k] += w[j] * t[wi * e + k];
            }
        }
    }
    super::l2norm::forward(&mut out, e);
    out
}

// ----------------------------------------------------------------------------
// Training: forward keeping activations (optional dropout), and backward.

/// What the backward of [`forward_train`] needs.
#[derive(Clone, Debug, Default)]
pub struct TextSaCache<T = f32> {
    pub l_th: Vec<T>,           // [n_words, E] tanh(local linear), before dropout
    pub l: Vec<T>,              // [n_words, E] after dropout
    pub l_mask: Option<Vec<T>>, // [n_words, E] dropout multipliers
    pub mean: Vec<T>,           // [n_cap, E] mean word (query input)
    pub g_th: Vec<T>,           // [n_cap, E] tanh(global linear), before dropout
    pub g: Vec<T>,              // [n_cap, E] after dropout
    pub g_mask: Option<Vec<T>>, // [n_cap, E]
    pub w: Vec<T>,              // [n_words] softmax weights over each caption's words
    pub out: Vec<T>,            // [n_cap, E] t_glo
    pub norms: Vec<T>,          // [n_cap]
}

/// [`forward`] keeping activations, with inverted-dropout masks on the local
/// `[n_words, E]` and global `[n_cap, E]` branch outputs (`None`: no dropout).
/// `t_glo [n_cap, E]` is `cache.out`.
pub fn forward_train<T: Real>(
    t: &[T],
    p: &TextSa<T>,
    lay: &TileLayout,
    e: usize,
    local_mask: Option<Vec<T>>,
    global_mask: Option<Vec<T>>,
) -> TextSaCache<T> {
    let (nw, nc) = (lay.n_words(), lay.n_cap());
    let mut l_th = vec![T::ZERO; nw * e]; // [n_words, E]
    super::linear::forward(t, &p.local.w, Some(&p.local.b), &mut l_th, nw, e, e);
    l_th.iter_mut().for_each(|x| *x = x.tanh());
    let mut l = l_th.clone();
    if let Some(m) = &local_mask {
        l.iter_mut().zip(m).for_each(|(v, &s)| *v *= s);
    }
    let mut mean = vec![T::ZERO; nc * e]; // [n_cap, E]
    for c in 0..nc {
        let m = &mut mean[c * e..(c + 1) * e];
        for w in lay.words(c) {
            for k in 0..e {
                m[k] += t[w * e + k];
            }
        }
        let len = T::from_usize(lay.lengths[c]);
        m.iter_mut().for_each(|x| *x /= len);
    }
    let mut g_th = vec![T::ZERO; nc * e]; // [n_cap, E]
    super::linear::forward(&mean, &p.global.w, Some(&p.global.b), &mut g_th, nc, e, e);
    g_th.iter_mut().for_each(|x| *x = x.tanh());
    let mut g = g_th.clone();
    if let Some(m) = &global_mask {
        g.iter_mut().zip(m).for_each(|(v, &s)| *v *= s);
    }
    let mut out = vec![T::ZERO; nc * e]; // [n_cap, E]
    let mut w = vec![T::ZERO; nw]; // [n_words]
    for c in 0..nc {
        let gc = &g[c * e..(c + 1) * e];
        let wc = &mut w[lay.words(c)];
        for (j, wi) in lay.words(c).enumerate() {
            let lw = &l[wi * e..(wi + 1) * e];
            wc[j] = lw.iter().zip(gc).zip(&p.common.w).map(|((&a, &b), &c)| a * b * c).sum::<T>() + p.common.b[0];
        }
        super::softmax(wc);
        let o = &mut out[c * e..(c + 1) * e];
        for (j, wi) in lay.words(c).enumerate() {
            for k in 0..e {
                o[k] += wc[j] * t[wi * e + k];
            }
        }
    }
    let norms = super::l2norm::forward_keep_norms(&mut out, e);
    TextSaCache { l_th, l, l_mask: local_mask, mean, g_th, g, g_mask: global_mask, w, out, norms }
}

/// Backward of [`forward_train`]: `dout [n_cap, E]` (gradient of t_glo) →
/// `dp += …`, `dt [n_words, E] += …`. `common.b` is not accumulated: a
/// constant before a softmax, its gradient is zero by construction.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Real>(
    dout: &[T],
    t: &[T],
    p: &TextSa<T>,
    lay: &TileLayout,
    cache: &TextSaCache<T>,
    dp: &mut TextSa<T>,
    dt: &mut [T],
    e: usize,
) {
    let (nw, nc) = (lay.n_words(), lay.n_cap());
    let c = cache;
    let mut du = vec![T::ZERO; nc * e]; // [n_cap, E] gradient of Σ_j w_j t_j
    super::l2norm::backward(dout, &c.out, &c.norms, &mut du, e);
    let mut dl = vec![T::ZERO; nw * e]; // [n_words, E]
    let mut dg = vec![T::ZERO; nc * e]; // [n_cap, E]
    for cap in 0..nc {
        let words = lay.words(cap);
        let duc = &du[cap * e..(cap + 1) * e];
        let wc = &c.w[words.clone()];
        let mut dw = vec![T::ZERO; words.len()]; // [L]
        for (j, wi) in words.clone().enumerate() {
            let row = wi * e..(wi + 1) * e;
            dw[j] = t[row.clone()].iter().zip(duc).map(|(&a, &b)| a * b).sum();
            for (d, &g) in dt[row].iter_mut().zip(duc) {
                *d += wc[j] * g;
            }
        }
        let mut dscore = vec![T::ZERO; words.len()]; // [L]
        super::softmax_backward(wc, &dw, &mut dscore);
        let gc = &c.g[cap * e..(cap + 1) * e];
        let dgc = &mut dg[cap * e..(cap + 1) * e];
        for (j, wi) in words.enumerate() {
            let lw = &c.l[wi * e..(wi + 1) * e];
            let dlw = &mut dl[wi * e..(wi + 1) * e];
            let ds = dscore[j];
            for k in 0..e {
                let wk = p.common.w[k];
                dlw[k] += ds * gc[k] * wk;
                dgc[k] += ds * lw[k] * wk;
                dp.common.w[k] += ds * lw[k] * gc[k];
            }
        }
    }
    // dropout and tanh
    let branch = |d: &mut [T], th: &[T], mask: &Option<Vec<T>>| {
        if let Some(m) = mask {
            d.iter_mut().zip(m).for_each(|(x, &s)| *x *= s);
        }
        d.iter_mut().zip(th).for_each(|(x, &t)| *x *= T::ONE - t * t);
    };
    branch(&mut dl, &c.l_th, &c.l_mask);
    branch(&mut dg, &c.g_th, &c.g_mask);
    super::linear::backward(&dl, t, &p.local.w, Some(&mut *dt), &mut dp.local.w, Some(&mut dp.local.b), nw, e, e);
    let mut dmean = vec![T::ZERO; nc * e]; // [n_cap, E]
    super::linear::backward(
        &dg,
        &c.mean,
        &p.global.w,
        Some(&mut dmean),
        &mut dp.global.w,
        Some(&mut dp.global.b),
        nc,
        e,
        e,
    );
    for cap in 0..nc {
        let len = T::from_usize(lay.lengths[cap]);
        for wi in lay.words(cap) {
            for k in 0..e {
                dt[wi * e + k] += dmean[cap * e + k] / len;
            }
        }
    }
}
