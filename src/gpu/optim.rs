//! The optimizer step on the GPU (`shaders/adam.wgsl`), twin of
//! `train::clip` and `train::adam`: global-norm gradient clipping over many
//! gradient buffers (a two-level reduction into a `[2]` buffer read by the
//! scaling kernel, so nothing is read back) and Adam.

use super::context::{Access, GpuContext, Shader};
use super::tensor::{DType, GpuTensor};
use super::u32c;
use crate::error::{Result, SgrafError};

pub const SHADER: Shader = Shader { name: "adam", source: include_str!("../../shaders/adam.wgsl"), trusted: false };

/// Elements per workgroup below which a gradient gets fewer partial sums.
const PER_GROUP: usize = 4096;
/// Most partial sums (workgroups) per gradient tensor.
const MAX_GROUPS: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ClipParams {
    n: u32,
    slot: u32,
    max_norm: f32,
    _pad: u32,
}

fn groups_for(n: usize) -> usize {
    n.div_ceil(PER_GROUP).clamp(1, MAX_GROUPS)
}

/// Record the global L2 norm of every tensor of `grads` (as one vector) and
/// the clipping coefficient `max_norm / (norm + 1e-6)`; returns `[2]` =
/// `[norm, coef]` on the GPU. Two levels: per-tensor partial sums of squares
/// into a scratch buffer, then one workgroup adds them in a fixed order.
pub fn grad_norm(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    grads: &[&GpuTensor],
    max_norm: f32,
) -> Result<GpuTensor> {
    let total_groups: usize = grads.iter().map(|g| groups_for(g.numel())).sum();
    let partials = GpuTensor::scratch(ctx, &[total_groups.max(1)], DType::F32)?;
    let out = GpuTensor::scratch(ctx, &[2], DType::F32)?;
    let part = ctx.kernel(&SHADER, "clip_norm_partial", &[Access::Read, Access::ReadWrite]);
    let mut slot = 0;
    for (i, g) in grads.iter().enumerate() {
        g.expect_dtype(&format!("clip gradient {i}"), DType::F32)?;
        let groups = groups_for(g.numel());
        let params = ClipParams { n: u32c("gradient size", g.numel())?, slot: u32c("slot", slot)?, max_norm, _pad: 0 };
        ctx.dispatch(encoder, &part, &params, &[&g.buffer, &partials.buffer], [groups as u32, 1, 1]);
        slot += groups;
    }
    if total_groups == 0 {
        encoder.clear_buffer(&partials.buffer, 0, None);
    }
    let params = ClipParams { n: u32c("partials", total_groups.max(1))?, slot: 0, max_norm, _pad: 0 };
    let tot = ctx.kernel(&SHADER, "clip_norm_total", &[Access::Read, Access::ReadWrite]);
    ctx.dispatch(encoder, &tot, &params, &[&partials.buffer, &out.buffer], [1, 1, 1]);
    Ok(out)
}

/// Record `g ← g · coef` when `coef < 1`, reading `norm = [norm, coef]` (from
/// [`grad_norm`]) on the GPU.
pub fn clip_scale(ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder, norm: &GpuTensor, g: &GpuTensor) -> Result<()> {
    norm.expect_shape("clip norm", &[2])?;
    let n = g.numel();
    if n == 0 {
        return Ok(());
    }
    let params = ClipParams { n: u32c("gradient size", n)?, slot: 0, max_norm: 0.0, _pad: 0 };
    let k = ctx.kernel(&SHADER, "clip_scale", &[Access::Read, Access::ReadWrite]);
    ctx.dispatch(encoder, &k, &params, &[&norm.buffer, &g.buffer], ctx.grid_1d(n.div_ceil(256) as u64));
    Ok(())
}

/// Global-norm clipping of every gradient in `grads` to `max_norm` (official
/// 2.0), as `train::clip::clip_grad_norm`: when `coef = max_norm / (norm +
/// 1e-6) < 1` every gradient is multiplied by `coef`. Returns `[2]` =
/// `[norm before clipping, coef]` on the GPU (read it back only if needed).
pub fn clip_grad_norm(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    grads: &[&GpuTensor],
    max_norm: f32,
) -> Result<GpuTensor> {
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return Err(SgrafError::Input(format!("clip: max_norm {max_norm} must be positive and finite")));
    }
    let norm = grad_norm(ctx, encoder, grads, max_norm)?;
    for g in grads {
        clip_scale(ctx, encoder, &norm, g)?;
    }
    Ok(norm)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AdamParams {
    n: u32,
    t: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    step_size: f32,
    bc2_sqrt: f32,
}

/// Adam hyper-parameters and state on the GPU, twin of `train::adam::Adam`
/// (PyTorch's single-tensor Adam, no weight decay, no AMSGrad).
#[derive(Debug)]
pub struct GpuAdam {
    pub lr: f32,    // 2e-4
    pub beta1: f32, // 0.9
    pub beta2: f32, // 0.999
    pub eps: f32,   // 1e-8
    pub step: u64,  // number of steps taken
    /// First moments, one per parameter tensor, same shapes.
    pub m: Vec<GpuTensor>,
    /// Second moments.
    pub v: Vec<GpuTensor>,
}

impl GpuAdam {
    /// Zero moments for `params` with the official hyper-parameters.
    pub fn new(ctx: &GpuContext, params: &[&GpuTensor]) -> Result<GpuAdam> {
        let zeros = |t: &&GpuTensor| GpuTensor::zeros(ctx, &t.shape, DType::F32);
        Ok(GpuAdam {
            lr: 2e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step: 0,
            m: params.iter().map(zeros).collect::<Result<_>>()?,
            v: params.iter().map(zeros).collect::<Result<_>>()?,
        })
    }

    /// Record one update of every tensor of `params` with its gradient in
    /// `grads` (same order and shapes as at [`GpuAdam::new`]); counts the step.
    pub fn update(
        &mut self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        params: &[&GpuTensor],
        grads: &[&GpuTensor],
    ) -> Result<()> {
        if params.len() != self.m.len() || grads.len() != self.m.len() {
            return Err(SgrafError::Input(format!(
                "adam: {} parameters and {} gradients for a state of {} tensors",
                params.len(),
                grads.len(),
                self.m.len()
            )));
        }
        for (i, ((p, g), m)) in params.iter().zip(grads).zip(&self.m).enumerate() {
            if p.shape != m.shape || g.numel() != m.numel() {
                return Err(SgrafError::Input(format!(
                    "adam: tensor {i}: parameter {:?}, gradient {:?}, state {:?}",
                    p.shape, g.shape, m.shape
                )));
            }
        }
        self.step += 1;
        let t = i32::try_from(self.step).unwrap_or(i32::MAX);
        // As the CPU twin: bias corrections in float64, then rounded.
        let bc1 = 1.0 - (self.beta1 as f64).powi(t);
        let bc2_sqrt = (1.0 - (self.beta2 as f64).powi(t)).sqrt();
        let step_size = (self.lr as f64 / bc1) as f32;
        let k = ctx.kernel(
            &SHADER,
            "adam_update",
            &[Access::Read, Access::ReadWrite, Access::ReadWrite, Access::ReadWrite],
        );
        for ((p, g), (m, v)) in params.iter().zip(grads).zip(self.m.iter().zip(&self.v)) {
            let n = p.numel();
            if n == 0 {
                continue;
            }
            let params = AdamParams {
                n: u32c("parameter size", n)?,
                t: self.step.min(u32::MAX as u64) as u32,
                lr: self.lr,
                beta1: self.beta1,
                beta2: self.beta2,
                eps: self.eps,
                step_size,
                bc2_sqrt: bc2_sqrt as f32,
            };
            ctx.dispatch(
                encoder,
                &k,
                &params,
                &[&g.buffer, &p.buffer, &m.buffer, &v.buffer],
                ctx.grid_1d(n.div_ceil(256) as u64),
            );
        }
        Ok(())
    }
}
