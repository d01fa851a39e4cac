//! Global-norm gradient clipping (`torch.nn.utils.clip_grad_norm_`, spec §9.3).

use super::grads::{trainable, trainable_mut};
use crate::model::params::Params;

/// Clips the global L2 norm of every parameter gradient of `grads` to `max_norm`
/// and returns the norm before clipping.
///
/// As PyTorch: `coef = max_norm / (norm + 1e-6)`; when `coef < 1` every
/// gradient is multiplied by it (so a norm within 1e-6 below `max_norm` is
/// scaled too, by a factor within 1e-6 of 1). The norm is summed in float64.
pub fn clip_grad_norm(grads: &mut Params, max_norm: f32) -> f32 {
    let sq: f64 = trainable(grads).iter().flat_map(|t| t.iter()).map(|&g| g as f64 * g as f64).sum();
    let norm = sq.sqrt() as f32;
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for t in trainable_mut(grads) {
            t.iter_mut().for_each(|g| *g *= coef);
        }
    }
    norm
}
