//! Bidirectional one-layer GRU over captions of different lengths (packed
//! semantics: each caption only over its own tokens), directions averaged,
//! then l2-normalised (spec §4).

use super::Real;
use crate::model::layout::TileLayout;
use crate::model::params::GruDirection;

/// PyTorch GRU cell for one caption: `gi [3E]` (x·W_ihᵀ + b_ih), `gh [3E]`
/// (h·W_hhᵀ + b_hh), `h [E]` updated in place. Gate blocks r, z, n.
pub fn cell<T: Real>(gi: &[T], gh: &[T], h: &mut [T]) {
    let e = h.len();
    for k in 0..e {
        let r = super::sigmoid(gi[k] + gh[k]);
        let z = super::sigmoid(gi[e + k] + gh[e + k]);
        let n = (gi[2 * e + k] + r * gh[2 * e + k]).tanh();
        h[k] = (T::ONE - z) * n + z * h[k];
    }
}

/// One direction: `x [n_cap, l_max, D_w]` → hidden states `[n_cap, l_max, E]`
/// (positions ≥ length stay 0). `reverse` reads tokens L−1 … 0.
pub fn direction_forward<T: Real>(
    x: &[T],
    lengths: &[usize],
    p: &GruDirection<T>,
    l_max: usize,
    dw: usize,
    e: usize,
    reverse: bool,
) -> Vec<T> {
    let n_cap = lengths.len();
    let mut gi = vec![T::ZERO; n_cap * l_max * 3 * e]; // [n_cap, l_max, 3E]
    super::linear::forward(x, &p.w_ih, Some(&p.b_ih), &mut gi, n_cap * l_max, dw, 3 * e);
    let mut out = vec![T::ZERO; n_cap * l_max * e]; // [n_cap, l_max, E]
    let mut h = vec![T::ZERO; n_cap * e]; // [n_cap, E]
    let mut gh = vec![T::ZERO; n_cap * 3 * e]; // [n_active, 3E]
    let mut h_act = vec![T::ZERO; n_cap * e]; // [n_active, E]
    for t in 0..l_max {
        let active: Vec<usize> = (0..n_cap).filter(|&c| lengths[c] > t).collect();
        if active.is_empty() {
            break;
        }
        for (a, &c) in active.iter().enumerate() {
            h_act[a * e..(a + 1) * e].copy_from_slice(&h[c * e..(c + 1) * e]);
        }
        let na = active.len();
        super::linear::forward(&h_act, &p.w_hh, Some(&p.b_hh), &mut gh, na, e, 3 * e);
        for (a, &c) in active.iter().enumerate() {
            let pos = if reverse { lengths[c] - 1 - t } else { t };
            let g = &gi[(c * l_max + pos) * 3 * e..(c * l_max + pos + 1) * 3 * e];
            let hc = &mut h[c * e..(c + 1) * e];
            cell(g, &gh[a * 3 * e..(a + 1) * 3 * e], hc);
            out[(c * l_max + pos) * e..(c * l_max + pos + 1) * e].copy_from_slice(hc);
        }
    }
    out
}

/// Text encoder after the embedding: `x [n_cap, l_max, D_w]` → `cap_emb [n_cap, l_max, E]`.
pub fn forward<T: Real>(
    x: &[T],
    lengths: &[usize],
    fwd: &GruDirection<T>,
    bwd: &GruDirection<T>,
    l_max: usize,
    dw: usize,
    e: usize,
) -> Vec<T> {
    let hf = direction_forward(x, lengths, fwd, l_max, dw, e, false);
    let hb = direction_forward(x, lengths, bwd, l_max, dw, e, true);
    let mut out: Vec<T> = hf.iter().zip(&hb).map(|(&a, &b)| (a + b) / T::from_f32(2.0)).collect();
    super::l2norm::forward(&mut out, e);
    out
}

// ----------------------------------------------------------------------------
// Training: the same forward in packed layout, keeping the gates, and its
// backward through time. Packed rows follow `TileLayout::words`: caption c's
// token `pos` is row `word_off[c] + pos`.

/// What the backward of one direction needs.
#[derive(Clone, Debug, Default)]
pub struct DirectionCache<T = f32> {
    pub h: Vec<T>,     // [n_words, E] hidden state after reading each token
    pub gates: Vec<T>, // [n_words, 4E] r, z, n, and W_hn·h_prev + b_hn
}

/// [`cell`] that also records `r, z, n, W_hn·h + b_hn` into `gates [4E]`.
fn cell_keep<T: Real>(gi: &[T], gh: &[T], h: &mut [T], gates: &mut [T]) {
    let e = h.len();
    for k in 0..e {
        let r = super::sigmoid(gi[k] + gh[k]);
        let z = super::sigmoid(gi[e + k] + gh[e + k]);
        let n = (gi[2 * e + k] + r * gh[2 * e + k]).tanh();
        h[k] = (T::ONE - z) * n + z * h[k];
        gates[k] = r;
        gates[e + k] = z;
        gates[2 * e + k] = n;
        gates[3 * e + k] = gh[2 * e + k];
    }
}

/// Captions still reading at time step `t`, and the packed row each reads.
fn active_rows(lay: &TileLayout, t: usize, reverse: bool) -> Vec<(usize, usize)> {
    (0..lay.n_cap())
        .filter(|&c| lay.lengths[c] > t)
        .map(|c| (c, lay.word_off[c] + if reverse { lay.lengths[c] - 1 - t } else { t }))
        .collect()
}

/// One direction over packed words `x [n_words, D_w]`, as [`direction_forward`].
pub fn direction_forward_train<T: Real>(
    x: &[T],
    lay: &TileLayout,
    p: &GruDirection<T>,
    dw: usize,
    e: usize,
    reverse: bool,
) -> DirectionCache<T> {
    let (nw, nc) = (lay.n_words(), lay.n_cap());
    let l_max = lay.lengths.iter().copied().max().unwrap_or(0);
    let mut gi = vec![T::ZERO; nw * 3 * e]; // [n_words, 3E]
    super::linear::forward(x, &p.w_ih, Some(&p.b_ih), &mut gi, nw, dw, 3 * e);
    let mut cache = DirectionCache { h: vec![T::ZERO; nw * e], gates: vec![T::ZERO; nw * 4 * e] };
    let mut h = vec![T::ZERO; nc * e]; // [n_cap, E] running hidden state
    let mut h_act = vec![T::ZERO; nc * e]; // [n_active, E]
    let mut gh = vec![T::ZERO; nc * 3 * e]; // [n_active, 3E]
    for t in 0..l_max {
        let active = active_rows(lay, t, reverse);
        for (a, &(c, _)) in active.iter().enumerate() {
            h_act[a * e..(a + 1) * e].copy_from_slice(&h[c * e..(c + 1) * e]);
        }
        let na = active.len();
        super::linear::forward(&h_act, &p.w_hh, Some(&p.b_hh), &mut gh, na, e, 3 * e);
        for (a, &(c, row)) in active.iter().enumerate() {
            let hc = &mut h[c * e..(c + 1) * e];
            let gates = &mut cache.gates[row * 4 * e..(row + 1) * 4 * e];
            cell_keep(&gi[row * 3 * e..(row + 1) * 3 * e], &gh[a * 3 * e..(a + 1) * 3 * e], hc, gates);
            cache.h[row * e..(row + 1) * e].copy_from_slice(hc);
        }
    }
    cache
}

/// Backward through time of one direction: `dh [n_words, E]` (gradient of every
/// output hidden state) → `dp += …`, `dx [n_words, D_w] += …`.
#[allow(clippy::too_many_arguments)]
pub fn direction_backward<T: Real>(
    dh: &[T],
    x: &[T],
    lay: &TileLayout,
    p: &GruDirection<T>,
    cache: &DirectionCache<T>,
    dp: &mut GruDirection<T>,
    dx: &mut [T],
    dw: usize,
    e: usize,
    reverse: bool,
) {
    let (nw, nc) = (lay.n_words(), lay.n_cap());
    let l_max = lay.lengths.iter().copied().max().unwrap_or(0);
    let mut dgi = vec![T::ZERO; nw * 3 * e]; // [n_words, 3E] gradient of x·W_ihᵀ + b_ih
    let mut dh_run = vec![T::ZERO; nc * e]; // [n_cap, E] gradient flowing into the hidden state
    let mut dgh = vec![T::ZERO; nc * 3 * e]; // [n_active, 3E] gradient of h_prev·W_hhᵀ + b_hh
    let mut h_prev = vec![T::ZERO; nc * e]; // [n_active, E]
    let mut dh_prev = vec![T::ZERO; nc * e]; // [n_active, E]
    for t in (0..l_max).rev() {
        let active = active_rows(lay, t, reverse);
        let na = active.len();
        for (a, &(c, row)) in active.iter().enumerate() {
            let prev = if t == 0 {
                None
            } else if reverse {
                Some(row + 1)
            } else {
                Some(row - 1)
            };
            let hp = &mut h_prev[a * e..(a + 1) * e];
            match prev {
                Some(pr) => hp.copy_from_slice(&cache.h[pr * e..(pr + 1) * e]),
                None => hp.fill(T::ZERO),
            }
            let g = &cache.gates[row * 4 * e..(row + 1) * 4 * e];
            let dhc = &mut dh_run[c * e..(c + 1) * e];
            let dgi_r = &mut dgi[row * 3 * e..(row + 1) * 3 * e];
            let dgh_a = &mut dgh[a * 3 * e..(a + 1) * 3 * e];
            for k in 0..e {
                let (r, z, n, ghn) = (g[k], g[e + k], g[2 * e + k], g[3 * e + k]);
                let d = dhc[k] + dh[row * e + k]; // h' = (1 − z)·n + z·h
                let dn = d * (T::ONE - z);
                let dz = d * (hp[k] - n);
                let dpre_n = dn * (T::ONE - n * n); // n = tanh(gi_n + r·ghn)
                let dpre_z = dz * z * (T::ONE - z);
                let dpre_r = dpre_n * ghn * r * (T::ONE - r);
                dgi_r[k] = dpre_r;
                dgi_r[e + k] = dpre_z;
                dgi_r[2 * e + k] = dpre_n;
                dgh_a[k] = dpre_r;
                dgh_a[e + k] = dpre_z;
                dgh_a[2 * e + k] = dpre_n * r;
                dhc[k] = d * z; // direct path; the W_hh path is added below
            }
        }
        // h_prev·W_hhᵀ + b_hh for the active captions
        dh_prev[..na * e].fill(T::ZERO);
        super::linear::backward(
            &dgh[..na * 3 * e],
            &h_prev[..na * e],
            &p.w_hh,
            Some(&mut dh_prev[..na * e]),
            &mut dp.w_hh,
            Some(&mut dp.b_hh),
            na,
            e,
            3 * e,
        );
        for (a, &(c, _)) in active.iter().enumerate() {
            super::add_into(&mut dh_run[c * e..(c + 1) * e], &dh_prev[a * e..(a + 1) * e]);
        }
    }
    super::linear::backward(&dgi, x, &p.w_ih, Some(dx), &mut dp.w_ih, Some(&mut dp.b_ih), nw, dw, 3 * e);
}

/// What the text encoder's backward needs.
#[derive(Clone, Debug, Default)]
pub struct GruCache<T = f32> {
    pub fwd: DirectionCache<T>,
    pub bwd: DirectionCache<T>,
    pub norms: Vec<T>, // [n_words] ‖(h_fwd + h_bwd)/2‖
}

/// Packed training form of [`forward`]: `x [n_words, D_w]` → `t [n_words, E]`
/// = l2norm((h_fwd + h_bwd)/2), the packed word vectors of `CaptionEmb::t`.
pub fn forward_train<T: Real>(
    x: &[T],
    lay: &TileLayout,
    fwd: &GruDirection<T>,
    bwd: &GruDirection<T>,
    dw: usize,
    e: usize,
) -> (Vec<T>, GruCache<T>) {
    let cf = direction_forward_train(x, lay, fwd, dw, e, false);
    let cb = direction_forward_train(x, lay, bwd, dw, e, true);
    let mut t: Vec<T> = cf.h.iter().zip(&cb.h).map(|(&a, &b)| (a + b) / T::from_f32(2.0)).collect(); // [n_words, E]
    let norms = super::l2norm::forward_keep_norms(&mut t, e);
    (t, GruCache { fwd: cf, bwd: cb, norms })
}

/// Backward of [`forward_train`]: `dt [n_words, E]` → `dfwd, dbwd += …`, `dx [n_words, D_w] += …`.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Real>(
    dt: &[T],
    t: &[T],
    x: &[T],
    lay: &TileLayout,
    fwd: &GruDirection<T>,
    bwd: &GruDirection<T>,
    cache: &GruCache<T>,
    dfwd: &mut GruDirection<T>,
    dbwd: &mut GruDirection<T>,
    dx: &mut [T],
    dw: usize,
    e: usize,
) {
    let mut dmid = vec![T::ZERO; t.len()]; // [n_words, E] gradient of (h_fwd + h_bwd)/2
    super::l2norm::backward(dt, t, &cache.norms, &mut dmid, e);
    dmid.iter_mut().for_each(|v| *v *= T::from_f32(0.5)); // both directions get half
    direction_backward(&dmid, x, lay, fwd, &cache.fwd, dfwd, dx, dw, e, false);
    direction_backward(&dmid, x, lay, bwd, &cache.bwd, dbwd, dx, dw, e, true);
}
