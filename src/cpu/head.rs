//! Score head: `σ(Linear_eval(s))`.

use crate::model::params::Linear;

/// `s [p, S]` → `(logits [p], scores [p])`.
pub fn forward(s: &[f32], lin: &Linear, p: usize) -> (Vec<f32>, Vec<f32>) {
    let mut logit = vec![0.0; p];
    super::linear::forward(s, &lin.w, Some(&lin.b), &mut logit, p, lin.n_in, 1);
    let score = logit.iter().map(|&x| super::sigmoid(x)).collect();
    (logit, score)
}

/// Backward of [`forward`]: `dscore [p]` → `dlin += …`, `ds [p, S] += …`.
pub fn backward(dscore: &[f32], s: &[f32], score: &[f32], lin: &Linear, dlin: &mut Linear, ds: &mut [f32], p: usize) {
    let dlogit: Vec<f32> = dscore.iter().zip(score).map(|(&g, &y)| g * y * (1.0 - y)).collect(); // [p]
    super::linear::backward(&dlogit, s, &lin.w, Some(ds), &mut dlin.w, Some(&mut dlin.b), p, lin.n_in, 1);
}
