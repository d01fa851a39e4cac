//! Visual self-attention `v_global_w` (spec §5.1, `shaders/visual_sa.wgsl`):
//! the mean region as query, BatchNorm over the 36 region slots (local
//! branch) and over features (global branch).

use super::batchnorm::{self, BnAct};
use super::context::{Access, GpuContext, Shader};
use super::params::{scratch, GpuVisualSa};
use super::tensor::GpuTensor;
use super::{expect_numel, linear, u32c};
use crate::error::{Result, SgrafError};
use crate::model::params::{Mode, N_REGIONS};

pub const SHADER: Shader =
    Shader { name: "visual_sa", source: include_str!("../../shaders/visual_sa.wgsl"), trusted: false };

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    r: u32,
    e: u32,
    _pad: u32,
}

/// Output of [`forward`].
#[derive(Debug)]
pub struct VisualSaOut {
    pub v_glo: GpuTensor,   // [n, E]
    pub weights: GpuTensor, // [n, 36] softmax over regions
    pub l: GpuTensor,       // [n, 36, E] tanh(BN_36(local(v)))
    pub g: GpuTensor,       // [n, E] tanh(BN_E(global(v̄)))
    pub stats: VisualSaStats,
}

/// Train mode: batch statistics `[2, 36]` and `[2, E]` (mean, biased
/// variance) of the two BatchNorms; `None` in eval mode.
#[derive(Debug, Default)]
pub struct VisualSaStats {
    pub local: Option<GpuTensor>,
    pub global: Option<GpuTensor>,
}

/// `v [n, 36, E]` → `v_glo [n, E]` (plus intermediates). Train mode uses
/// batch statistics (n ≥ 2 images); apply them with [`update_running`].
pub fn forward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    v: &GpuTensor,
    p: &GpuVisualSa,
    mode: Mode,
    n: usize,
) -> Result<VisualSaOut> {
    let (r, e) = (N_REGIONS, p.local.n_in);
    expect_numel("visual_sa input", v, n * r * e)?;
    if mode == Mode::Train && n < 2 {
        return Err(SgrafError::Input("visual_sa: train-mode BatchNorm needs at least 2 images".into()));
    }
    let params = Params { n: u32c("images", n)?, r: r as u32, e: u32c("E", e)?, _pad: 0 };
    // local branch: tanh(BN_36(v·Wlᵀ + b))                     [n, 36, E]
    let l = scratch(ctx, &[n, r, e])?;
    linear::forward(ctx, encoder, v, &p.local.w, Some(&p.local.b), &l)?;
    let local_stats = batchnorm::forward(ctx, encoder, &l, &p.local_bn, mode, n, r, e, BnAct::Tanh)?;
    // global branch: tanh(BN_E(mean_r(v)·Wgᵀ + b))              [n, E]
    let mean = scratch(ctx, &[n, e])?;
    let k = ctx.kernel(&SHADER, "visual_sa_forward_mean", &[Access::Read, Access::ReadWrite]);
    ctx.dispatch(encoder, &k, &params, &[&v.buffer, &mean.buffer], ctx.grid_1d((n * e).div_ceil(256) as u64));
    let g = scratch(ctx, &[n, e])?;
    linear::forward(ctx, encoder, &mean, &p.global.w, Some(&p.global.b), &g)?;
    let global_stats = batchnorm::forward(ctx, encoder, &g, &p.global_bn, mode, n, e, 1, BnAct::Tanh)?;
    // common: softmax_r((l ⊙ g)·wc + bc); v_glo = l2norm(Σ_r w_r v_r)
    let v_glo = scratch(ctx, &[n, e])?;
    let weights = scratch(ctx, &[n, r])?;
    let k = ctx.kernel(
        &SHADER,
        "visual_sa_forward",
        &[Access::Read, Access::Read, Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite],
    );
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&v.buffer, &l.buffer, &g.buffer, &p.common.w.buffer, &p.common.b.buffer, &v_glo.buffer, &weights.buffer],
        ctx.grid_1d(n as u64),
    );
    Ok(VisualSaOut { v_glo, weights, l, g, stats: VisualSaStats { local: local_stats, global: global_stats } })
}

/// Applies the train-mode statistics of [`forward`] to both BatchNorms'
/// running statistics (once each, as one official iteration does).
pub fn update_running(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    p: &mut GpuVisualSa,
    stats: &VisualSaStats,
    n: usize,
) -> Result<()> {
    let e = p.local.n_in;
    if let Some(s) = &stats.local {
        batchnorm::update_running(ctx, encoder, &mut p.local_bn, s, n * e)?;
    }
    if let Some(s) = &stats.global {
        batchnorm::update_running(ctx, encoder, &mut p.global_bn, s, n)?;
    }
    Ok(())
}
