//! Image encoder: `v = l2norm(fc(x))` for every region.

use crate::model::params::Linear;

/// `images [rows, D_img]` (rows = n_img·36) → `v [rows, E]`.
pub fn forward(images: &[f32], fc: &Linear, rows: usize) -> Vec<f32> {
    let mut v = vec![0.0; rows * fc.n_out]; // [rows, E]
    super::linear::forward(images, &fc.w, Some(&fc.b), &mut v, rows, fc.n_in, fc.n_out);
    super::l2norm::forward(&mut v, fc.n_out);
    v
}

/// As [`forward`], also returning the region norms `[rows]` for the backward.
pub fn forward_train(images: &[f32], fc: &Linear, rows: usize) -> (Vec<f32>, Vec<f32>) {
    let mut v = vec![0.0; rows * fc.n_out]; // [rows, E]
    super::linear::forward(images, &fc.w, Some(&fc.b), &mut v, rows, fc.n_in, fc.n_out);
    let norms = super::l2norm::forward_keep_norms(&mut v, fc.n_out); // [rows]
    (v, norms)
}

/// Backward of [`forward`]: `dv [rows, E]` → `dfc += …`, `dimages [rows, D_img] += …` when given.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dv: &[f32],
    v: &[f32],
    norms: &[f32],
    images: &[f32],
    fc: &Linear,
    dfc: &mut Linear,
    dimages: Option<&mut [f32]>,
    rows: usize,
) {
    let e = fc.n_out;
    let mut dpre = vec![0.0; rows * e]; // [rows, E] gradient of fc(x) before the l2norm
    super::l2norm::backward(dv, v, norms, &mut dpre, e);
    super::linear::backward(&dpre, images, &fc.w, dimages, &mut dfc.w, Some(&mut dfc.b), rows, fc.n_in, e);
}
