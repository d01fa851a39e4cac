//! Score head: `σ(Linear_eval(s))`.

use super::Real;
use crate::model::params::Linear;

/// `s [p, S]` → `(logits [p], scores [p])`.
pub fn forward<T: Real>(s: &[T], lin: &Linear<T>, p: usize) -> (Vec<T>, Vec<T>) {
    let mut logit = vec![T::ZERO; p];
    super::linear::forward(s, &lin.w, Some(&lin.b), &mut logit, p, lin.n_in, 1);
    let score = logit.iter().map(|&x| super::sigmoid(x)).collect();
    (logit, score)
}

/// Backward of [`forward`]: `dscore [p]` → `dlin += …`, `ds [p, S] += …`.
pub fn backward<T: Real>(
    dscore: &[T],
    s: &[T],
    score: &[T],
    lin: &Linear<T>,
    dlin: &mut Linear<T>,
    ds: &mut [T],
    p: usize,
) {
    let dlogit: Vec<T> = dscore.iter().zip(score).map(|(&g, &y)| g * y * (T::ONE - y)).collect(); // [p]
    super::linear::backward(&dlogit, s, &lin.w, Some(ds), &mut dlin.w, Some(&mut dlin.b), p, lin.n_in, 1);
}
