//! Adam (Kingma & Ba) as current PyTorch computes it (`torch.optim.Adam`,
//! single-tensor path, no weight decay, no AMSGrad; spec §13.15):
//!
//! ```text
//! m ← m + (1 − β₁)(g − m)          v ← β₂ v + (1 − β₂) g²
//! p ← p − lr/(1 − β₁ᵗ) · m / (sqrt(v)/sqrt(1 − β₂ᵗ) + ε)
//! ```
//!
//! Only trainable tensors are updated; BatchNorm running buffers are not parameters.

use super::grads::{trainable, trainable_mut};
use crate::model::params::Params;

/// Adam hyper-parameters and state.
#[derive(Clone, Debug)]
pub struct Adam {
    pub lr: f32,    // 2e-4 (the official schedule multiplies it by 0.1 every lr_update epochs)
    pub beta1: f32, // 0.9
    pub beta2: f32, // 0.999
    pub eps: f32,   // 1e-8
    pub step: u64,  // number of steps taken
    pub m: Params,  // first moment, same shape as the model
    pub v: Params,  // second moment
}

impl Adam {
    /// Fresh state with the official hyper-parameters (lr 2e-4, β (0.9, 0.999), ε 1e-8).
    pub fn new(p: &Params) -> Adam {
        Adam { lr: 2e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, step: 0, m: p.zeros_like(), v: p.zeros_like() }
    }

    /// One update of `p` with the gradients `g` (a gradient container, see [`super::grads`]).
    pub fn update(&mut self, p: &mut Params, g: &Params) {
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - (self.beta1 as f64).powi(t);
        let bc2_sqrt = (1.0 - (self.beta2 as f64).powi(t)).sqrt();
        let step_size = (self.lr as f64 / bc1) as f32;
        let bc2_sqrt = bc2_sqrt as f32;
        let (b1, b2, eps) = (self.beta1, self.beta2, self.eps);
        let params = trainable_mut(p);
        let grads = trainable(g);
        let ms = trainable_mut(&mut self.m);
        let vs = trainable_mut(&mut self.v);
        for (((pt, gt), mt), vt) in params.into_iter().zip(grads).zip(ms).zip(vs) {
            for (((pv, &gv), mv), vv) in pt.iter_mut().zip(gt).zip(mt.iter_mut()).zip(vt.iter_mut()) {
                *mv += (1.0 - b1) * (gv - *mv);
                *vv = b2 * *vv + (1.0 - b2) * gv * gv;
                let denom = vv.sqrt() / bc2_sqrt + eps;
                *pv -= step_size * *mv / denom;
            }
        }
    }
}
