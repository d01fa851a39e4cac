//! Image encoder: `v = l2norm(fc(x))` for every region.

use crate::model::params::Linear;

/// `images [rows, D_img]` (rows = n_img·36) → `v [rows, E]`.
pub fn forward(images: &[f32], fc: &Linear, rows: usize) -> Vec<f32> {
    let mut v = vec![0.0; rows * fc.n_out]; // [rows, E]
    super::linear::forward(images, &fc.w, Some(&fc.b), &mut v, rows, fc.n_in, fc.n_out);
    super::l2norm::forward(&mut v, fc.n_out);
    v
}
