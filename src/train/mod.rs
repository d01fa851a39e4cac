//! Training on the CPU (spec §8–§9): one official training step is
//!
//! 1. the train-mode forward of a batch of B (image, caption) pairs (pair k =
//!    image k, caption k), scoring the B×B matrix (dropout active, BatchNorm
//!    on batch statistics);
//! 2. the hardest-negative triplet loss ([`crate::cpu::loss`]) and the backward
//!    ([`crate::cpu::train::forward_backward`]);
//! 3. the BatchNorm running-statistics updates the forward made: the two
//!    VisualSA BatchNorms once, the SAF BatchNorm once per caption in caption order;
//! 4. global-norm gradient clipping at 2.0 ([`clip::clip_grad_norm`]);
//! 5. an Adam step ([`adam::Adam`]).
//!
//! Gradients are held in a `Params`-shaped container ([`grads`]).

pub mod adam;
pub mod clip;
pub mod grads;
#[cfg(not(target_arch = "wasm32"))]
pub mod run;

pub use adam::Adam;
pub use clip::clip_grad_norm;

use crate::cpu::train::{forward_backward, ForwardBackward, Options};
use crate::error::Result;
use crate::model::init::Rng;
use crate::model::params::{Mode, Params, Reasoning};

/// Options of a training step.
#[derive(Clone, Debug)]
pub struct StepOptions {
    /// Dropout probability at the three places of spec §14 (official: 0.4; 0 = off).
    pub dropout: f32,
    /// Global gradient-norm limit (official: 2.0).
    pub grad_clip: f32,
    /// Triplet margin (official: 0.2).
    pub margin: f32,
    /// Hardest negatives (official default) or all violating ones.
    pub negatives: crate::cpu::loss::Negatives,
}

impl StepOptions {
    /// The train-mode forward–backward options of such a step.
    pub fn forward_options(&self) -> Options {
        Options {
            mode: Mode::Train,
            dropout: self.dropout,
            margin: self.margin,
            negatives: self.negatives,
            input_grad: false,
        }
    }
}

impl Default for StepOptions {
    fn default() -> Self {
        StepOptions { dropout: 0.4, grad_clip: 2.0, margin: crate::cpu::loss::MARGIN, negatives: Default::default() }
    }
}

/// What one step reports.
#[derive(Clone, Debug)]
pub struct StepReport {
    pub loss: f32,
    pub grad_norm: f32, // global gradient norm before clipping
    pub sims: Vec<f32>, // [B, B] train-mode scores (row = image, column = caption)
}

/// Applies the BatchNorm running-statistics updates of a train-mode forward:
/// VisualSA's two BatchNorms once, SAF's once per caption in caption order.
pub fn update_running_stats(p: &mut Params, fb: &ForwardBackward) {
    use crate::cpu::batchnorm::update_running;
    if let Some(st) = &fb.visual_stats.local {
        update_running(&mut p.v_sa.local_bn, st);
    }
    if let Some(st) = &fb.visual_stats.global {
        update_running(&mut p.v_sa.global_bn, st);
    }
    if let Reasoning::Saf(saf) = &mut p.reasoning {
        for st in &fb.saf_stats {
            update_running(&mut saf.bn, st);
        }
    }
}

/// One official training step on the CPU: `images [B, 36, D_img]`, `captions`
/// (B token-id lists with `<start>`/`<end>`; caption k pairs with image k).
/// `rng` draws the dropout masks.
pub fn train_step(
    p: &mut Params,
    adam: &mut Adam,
    images: &[f32],
    captions: &[Vec<u32>],
    opts: &StepOptions,
    rng: &mut Rng,
) -> Result<StepReport> {
    let fo = opts.forward_options();
    let mut fb = forward_backward(p, images, captions, &fo, rng)?;
    update_running_stats(p, &fb);
    let grad_norm = clip_grad_norm(&mut fb.grads, opts.grad_clip);
    adam.update(p, &fb.grads);
    Ok(StepReport { loss: fb.loss, grad_norm, sims: fb.sims })
}
