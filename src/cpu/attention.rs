//! Text-to-image attention (SCAN t2i, spec §6.2): for each word, attend over
//! the 36 regions of an image and l2-normalise the attended vector.

use crate::model::layout::TileLayout;
use crate::model::params::N_REGIONS;

pub const LAMBDA: f32 = 9.0;

/// `v [n_img, 36, E]`, `t [n_words, E]` → `ctx [n_img, n_words, E]`;
/// also returns `attn [n_img, n_words, 36]` (softmax weights) when asked.
pub fn forward(
    v: &[f32],
    t: &[f32],
    lay: &TileLayout,
    n_img: usize,
    e: usize,
    keep_attn: bool,
) -> (Vec<f32>, Vec<f32>) {
    let (r, nw) = (N_REGIONS, lay.n_words());
    let mut ctx = vec![0.0; n_img * nw * e];
    let mut attn_all = if keep_attn { vec![0.0; n_img * nw * r] } else { Vec::new() };
    forward_into(v, t, lay, n_img, e, &mut ctx, keep_attn.then_some(&mut attn_all[..]));
    (ctx, attn_all)
}

/// As [`forward`], writing `ctx [n_img, n_words, E]` (and `attn [n_img, n_words, 36]`) into given buffers.
pub fn forward_into(
    v: &[f32],
    t: &[f32],
    lay: &TileLayout,
    n_img: usize,
    e: usize,
    ctx: &mut [f32],
    mut attn_all: Option<&mut [f32]>,
) {
    let (r, nw) = (N_REGIONS, lay.n_words());
    let mut a = super::Scratch::new(r * nw); // [36, n_words]
    let mut attn = super::Scratch::new(nw * r); // [n_words, 36]
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
pub fn scores(a: &mut [f32], attn: &mut [f32], lay: &TileLayout) {
    let (r, nw) = (N_REGIONS, lay.n_words());
    for x in a.iter_mut() {
        if *x <= 0.0 {
            *x *= 0.1;
        }
    }
    for reg in 0..r {
        let row = &mut a[reg * nw..(reg + 1) * nw];
        for c in 0..lay.n_cap() {
            let ws = &mut row[lay.words(c)];
            let norm = ws.iter().map(|x| x * x).sum::<f32>().sqrt() + 1e-8;
            ws.iter_mut().for_each(|x| *x /= norm);
        }
    }
    for w in 0..nw {
        let dst = &mut attn[w * r..(w + 1) * r];
        for reg in 0..r {
            dst[reg] = LAMBDA * a[reg * nw + w];
        }
        super::softmax(dst);
    }
}
