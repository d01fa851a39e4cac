//! Score head: `σ(Linear_eval(s))`.

use crate::model::params::Linear;

/// `s [p, S]` → `(logits [p], scores [p])`.
pub fn forward(s: &[f32], lin: &Linear, p: usize) -> (Vec<f32>, Vec<f32>) {
    let mut logit = vec![0.0; p];
    super::linear::forward(s, &lin.w, Some(&lin.b), &mut logit, p, lin.n_in, 1);
    let score = logit.iter().map(|&x| super::sigmoid(x)).collect();
    (logit, score)
}
