//! Text-to-image attention (SCAN t2i, spec §6.2): for each word, attend over
//! the 36 regions of an image and l2-normalise the attended vector.

use super::Real;
use crate::model::layout::TileLayout;
use crate::model::params::N_REGIONS;

pub const LAMBDA: f32 = 9.0;

/// `v [n_img, 36, E]`, `t [n_words, E]` → `ctx [n_img, n_words, E]`;
/// also returns `attn [n_img, n_words, 36]` (softmax weights) when asked.
pub fn forward<T: Real>(
    v: &[T],
    t: &[T],
    lay: &TileLayout,
    n_img: usize,
    e: usize,
    keep_attn: bool,
) -> (Vec<T>, Vec<T>) {
    let (r, nw) = (N_REGIONS, lay.n_words());
    let mut ctx = vec![T::ZERO; n_img * nw * e];
    let mut attn_all = if keep_attn { vec![T::ZERO; n_img * nw * r] } else { Vec::new() };
    forward_into(v, t, lay, n_img, e, &mut ctx, keep_attn.then_some(&mut attn_all[..]));
    (ctx, attn_all)
}

/// As [`forward`], writing `ctx [n_img, n_words, E]` (and `attn [n_img, n_words, 36]`) into given buffers.
pub fn forward_into<T: Real>(
    v: &[T],
    t: &[T],
    lay: &TileLayout,
    n_img: usize,
    e: usize,
    ctx: &mut [T],
    mut attn_all: Option<&mut [T]>,
) {
    let (r, nw) = (N_REGIONS, lay.n_words());
    let mut a = super::Scratch::<T>::new(r * nw); // [36, n_words]
    let mut attn = super::Scratch::<T>::new(nw * r); // [n_words, 36]
    for i in 0..n_img {
        let vi = &v[i * r * e..(i + 1) * r * e];
        super::matmul_nt(vi, t, &mut a, r, e, nw, false);
        scores(&mut a, &mut attn, lay);
        let ci = &mut ctx[i * nw * e..(i + 1) * nw * e];
        super::matmul_nn(&attn, vi, ci, nw, r, e, false);
        super::l2norm::forward(ci, e);
        if let Some(all) = attn_all.as_deref_mut() {
            all[i * nw * r..(i + 1) * nw * r].copy_from_slice(&attn);
        }
    }
}

/// Logits `a [36, n_words]` → weights `attn [n_words, 36]`: LeakyReLU(0.1),
/// l2norm over each caption's words (per region), softmax over regions of 9·a.
pub fn scores<T: Real>(a: &mut [T], attn: &mut [T], lay: &TileLayout) {
    let (r, nw) = (N_REGIONS, lay.n_words());
    let (slope, eps, lambda) = (T::from_f32(0.1), T::from_f32(1e-8), T::from_f32(LAMBDA));
    for x in a.iter_mut() {
        if *x <= T::ZERO {
            *x *= slope;
        }
    }
    for reg in 0..r {
        let row = &mut a[reg * nw..(reg + 1) * nw];
        for c in 0..lay.n_cap() {
            let ws = &mut row[lay.words(c)];
            let norm = ws.iter().map(|&x| x * x).sum::<T>().sqrt() + eps;
            ws.iter_mut().for_each(|x| *x /= norm);
        }
    }
    for w in 0..nw {
        let dst = &mut attn[w * r..(w + 1) * r];
        for reg in 0..r {
            dst[reg] = lambda * a[reg * nw + w];
        }
        super::softmax(dst);
    }
}

// ----------------------------------------------------------------------------
// Training: one image against every caption of the tile, keeping what the
// backward needs, and the backward.

/// What the backward of one image's text-to-image attention needs.
#[derive(Clone, Debug, Default)]
pub struct AttentionCache<T = f32> {
    pub a: Vec<T>,         // [36, n_words] region·word cosines, before LeakyReLU
    pub an: Vec<T>,        // [36, n_words] after LeakyReLU and the l2norm over each caption's words
    pub attn: Vec<T>,      // [n_words, 36] softmax over regions of 9·an
    pub ctx: Vec<T>,       // [n_words, E] l2-normalised attended vectors
    pub ctx_norms: Vec<T>, // [n_words] norms of the attended vectors before the l2norm
}

/// [`forward_into`] for one image `v_i [36, E]` (same values), keeping activations.
pub fn forward_image<T: Real>(vi: &[T], t: &[T], lay: &TileLayout, e: usize) -> AttentionCache<T> {
    let (r, nw) = (N_REGIONS, lay.n_words());
    let mut a = vec![T::ZERO; r * nw]; // [36, n_words]
    super::matmul_nt(vi, t, &mut a, r, e, nw, false);
    let mut an = a.clone();
    let mut attn = vec![T::ZERO; nw * r]; // [n_words, 36]
    scores(&mut an, &mut attn, lay);
    let mut ctx = vec![T::ZERO; nw * e]; // [n_words, E]
    super::matmul_nn(&attn, vi, &mut ctx, nw, r, e, false);
    let ctx_norms = super::l2norm::forward_keep_norms(&mut ctx, e);
    AttentionCache { a, an, attn, ctx, ctx_norms }
}

/// Backward of [`forward_image`]: `dctx [n_words, E]` → `dv_i [36, E] += …`, `dt [n_words, E] += …`.
#[allow(clippy::too_many_arguments)]
pub fn backward_image<T: Real>(
    dctx: &[T],
    vi: &[T],
    t: &[T],
    lay: &TileLayout,
    e: usize,
    cache: &AttentionCache<T>,
    dvi: &mut [T],
    dt: &mut [T],
) {
    let (r, nw) = (N_REGIONS, lay.n_words());
    let (slope, eps, lambda) = (T::from_f32(0.1), T::from_f32(1e-8), T::from_f32(LAMBDA));
    let c = cache;
    // ctx = l2norm(attn · v_i)
    let mut dcraw = vec![T::ZERO; nw * e]; // [n_words, E]
    super::l2norm::backward(dctx, &c.ctx, &c.ctx_norms, &mut dcraw, e);
    let mut dattn = vec![T::ZERO; nw * r]; // [n_words, 36]
    super::matmul_nt(&dcraw, vi, &mut dattn, nw, e, r, false);
    super::matmul_tn(&c.attn, &dcraw, dvi, r, nw, e, true);
    // attn[w] = softmax_r(9·an[·, w])
    let mut dlogit = vec![T::ZERO; nw * r]; // [n_words, 36]
    for w in 0..nw {
        super::softmax_backward(
            &c.attn[w * r..(w + 1) * r],
            &dattn[w * r..(w + 1) * r],
            &mut dlogit[w * r..(w + 1) * r],
        );
    }
    let mut da = vec![T::ZERO; r * nw]; // [36, n_words]
    for reg in 0..r {
        for w in 0..nw {
            da[reg * nw + w] = lambda * dlogit[w * r + reg];
        }
    }
    // an = l2norm over each caption's words of LeakyReLU(a), norm computed as in `scores`
    for reg in 0..r {
        let row = reg * nw..(reg + 1) * nw;
        let (a_row, an_row, da_row) = (&c.a[row.clone()], &c.an[row.clone()], &mut da[row]);
        for cap in 0..lay.n_cap() {
            let ws = lay.words(cap);
            let leaky = |x: T| if x <= T::ZERO { x * slope } else { x };
            let norm = a_row[ws.clone()].iter().map(|&x| leaky(x) * leaky(x)).sum::<T>().sqrt();
            let d = norm + eps;
            let dot: T = an_row[ws.clone()].iter().zip(&da_row[ws.clone()]).map(|(&y, &g)| y * g).sum();
            let k = if norm > T::ZERO { dot / norm } else { T::ZERO };
            for w in ws {
                let dal = da_row[w] / d - an_row[w] * k;
                da_row[w] = if a_row[w] <= T::ZERO { slope * dal } else { dal };
            }
        }
    }
    // a = v_i · tᵀ
    super::matmul_nn(&da, t, dvi, r, nw, e, true);
    super::matmul_tn(&da, vi, dt, nw, r, e, true);
}
