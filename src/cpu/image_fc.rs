//! Image encoder: `v = l2norm(fc(x))` for every region.

use super::Real;
use crate::model::params::Linear;

/// `images [rows, D_img]` (rows = n_img·36) → `v [rows, E]`.
pub fn forward<T: Real>(images: &[T], fc: &Linear<T>, rows: usize) -> Vec<T> {
    let mut v = vec![T::ZERO; rows * fc.n_out]; // [rows, E]
    super::linear::forward(images, &fc.w, Some(&fc.b), &mut v, rows, fc.n_in, fc.n_out);
    super::l2norm::forward(&mut v, fc.n_out);
    v
}

/// As [`forward`], also returning the region norms `[rows]` for the backward.
pub fn forward_train<T: Real>(images: &[T], fc: &Linear<T>, rows: usize) -> (Vec<T>, Vec<T>) {
    let mut v = vec![T::ZERO; rows * fc.n_out]; // [rows, E]
    super::linear::forward(images, &fc.w, Some(&fc.b), &mut v, rows, fc.n_in, fc.n_out);
    let norms = super::l2norm::forward_keep_norms(&mut v, fc.n_out); // [rows]
    (v, norms)
}

/// Backward of [`forward`]: `dv [rows, E]` → `dfc += …`, `dimages [rows, D_img] += …` when given.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Real>(
    dv: &[T],
    v: &[T],
    norms: &[T],
    images: &[T],
    fc: &Linear<T>,
    dfc: &mut Linear<T>,
    dimages: Option<&mut [T]>,
    rows: usize,
) {
    let e = fc.n_out;
    let mut dpre = vec![T::ZERO; rows * e]; // [rows, E] gradient of fc(x) before the l2norm
    super::l2norm::backward(dv, v, norms, &mut dpre, e);
    super::linear::backward(&dpre, images, &fc.w, dimages, &mut dfc.w, Some(&mut dfc.b), rows, fc.n_in, e);
}
