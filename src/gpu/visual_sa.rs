//! Visual self-attention `v_global_w` (spec §5.1, `shaders/visual_sa.wgsl`):
//! the mean region as query, BatchNorm over the 36 region slots (local
//! branch) and over features (global branch).

use super::batchnorm::{self, BnAct};
use super::context::{Access, GpuContext, Shader};
use super::params::{scratch, GpuVisualSa};
use super::tensor::GpuTensor;
use super::{dropout, expect_numel, l2norm, linear, u32c};
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
    // the training forward without dropout (its other caches are dropped)
    let c = forward_train(ctx, encoder, v, p, mode, n, None, None)?;
    Ok(VisualSaOut { v_glo: c.out, weights: c.w, l: c.l, g: c.g, stats: c.stats })
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

// ----------------------------------------------------------------------------
// Training: forward keeping activations (optional dropout), and backward
// (`cpu::visual_sa::{forward_train, backward}`).

/// What [`backward`] needs (`cpu::visual_sa::VisualSaCache`).
#[derive(Debug)]
pub struct GpuVisualSaCache {
    pub l_pre: GpuTensor, // [n, 36, E] local linear output (BatchNorm input)
    pub l_th: GpuTensor,  // [n, 36, E] tanh(BN(l_pre)), before dropout
    pub l: GpuTensor,     // [n, 36, E] after dropout
    pub mean: GpuTensor,  // [n, E] mean region (query input)
    pub g_pre: GpuTensor, // [n, E] global linear output (BatchNorm input)
    pub g_th: GpuTensor,  // [n, E] tanh(BN(g_pre)), before dropout
    pub g: GpuTensor,     // [n, E] after dropout
    pub w: GpuTensor,     // [n, 36] softmax weights over regions
    pub out: GpuTensor,   // [n, E] v_glo
    pub norms: GpuTensor, // [n] ‖Σ_r w_r v_r‖
    pub stats: VisualSaStats,
}

fn copy_of(ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder, src: &GpuTensor) -> Result<GpuTensor> {
    let dst = scratch(ctx, &src.shape)?;
    encoder.copy_buffer_to_buffer(&src.buffer, 0, &dst.buffer, 0, src.size_bytes());
    Ok(dst)
}

/// [`forward`] keeping activations, with inverted-dropout masks on the local
/// `[n, 36, E]` and global `[n, E]` branch outputs (`None`: no dropout).
/// `v_glo [n, E]` is `cache.out`.
#[allow(clippy::too_many_arguments)]
pub fn forward_train(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    v: &GpuTensor,
    p: &GpuVisualSa,
    mode: Mode,
    n: usize,
    local_mask: Option<&GpuTensor>,
    global_mask: Option<&GpuTensor>,
) -> Result<GpuVisualSaCache> {
    let (r, e) = (N_REGIONS, p.local.n_in);
    expect_numel("visual_sa input", v, n * r * e)?;
    if mode == Mode::Train && n < 2 {
        return Err(SgrafError::Input("visual_sa: train-mode BatchNorm needs at least 2 images".into()));
    }
    let params = Params { n: u32c("images", n)?, r: r as u32, e: u32c("E", e)?, _pad: 0 };
    // local branch: dropout(tanh(BN_36(v·Wlᵀ + b)))            [n, 36, E]
    let l_pre = scratch(ctx, &[n, r, e])?;
    linear::forward(ctx, encoder, v, &p.local.w, Some(&p.local.b), &l_pre)?;
    let l_th = copy_of(ctx, encoder, &l_pre)?;
    let local_stats = batchnorm::forward(ctx, encoder, &l_th, &p.local_bn, mode, n, r, e, BnAct::Tanh)?;
    let l = copy_of(ctx, encoder, &l_th)?;
    dropout::apply(ctx, encoder, &l, local_mask)?;
    // global branch: dropout(tanh(BN_E(mean_r(v)·Wgᵀ + b)))     [n, E]
    let mean = scratch(ctx, &[n, e])?;
    let k = ctx.kernel(&SHADER, "visual_sa_forward_mean", &[Access::Read, Access::ReadWrite]);
    ctx.dispatch(encoder, &k, &params, &[&v.buffer, &mean.buffer], ctx.grid_1d((n * e).div_ceil(256) as u64));
    let g_pre = scratch(ctx, &[n, e])?;
    linear::forward(ctx, encoder, &mean, &p.global.w, Some(&p.global.b), &g_pre)?;
    let g_th = copy_of(ctx, encoder, &g_pre)?;
    let global_stats = batchnorm::forward(ctx, encoder, &g_th, &p.global_bn, mode, n, e, 1, BnAct::Tanh)?;
    let g = copy_of(ctx, encoder, &g_th)?;
    dropout::apply(ctx, encoder, &g, global_mask)?;
    // scores and softmax weights over each image's regions
    let out = scratch(ctx, &[n, e])?;
    let w = scratch(ctx, &[n, r])?;
    let k = ctx.kernel(
        &SHADER,
        "visual_sa_forward",
        &[Access::Read, Access::Read, Access::Read, Access::Read, Access::ReadWrite],
    );
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&l.buffer, &g.buffer, &p.common.w.buffer, &p.common.b.buffer, &w.buffer],
        ctx.grid_1d(n as u64),
    );
    // v_glo = l2norm(Σ_r w_r v_r), keeping the norms                [n, E]
    let k = ctx.kernel(&SHADER, "visual_sa_forward_pool", &[Access::Read, Access::Read, Access::ReadWrite]);
    ctx.dispatch(encoder, &k, &params, &[&v.buffer, &w.buffer, &out.buffer], ctx.grid_1d((n * e).div_ceil(256) as u64));
    let norms = scratch(ctx, &[n])?;
    l2norm::forward_keep_norms(ctx, encoder, &out, e, &norms)?;
    Ok(GpuVisualSaCache {
        l_pre,
        l_th,
        l,
        mean,
        g_pre,
        g_th,
        g,
        w,
        out,
        norms,
        stats: VisualSaStats { local: local_stats, global: global_stats },
    })
}

/// Backward of [`forward_train`]: `dout [n, E]` (gradient of v_glo) →
/// `dp += …`, `dv [n, 36, E] += …`, through both BatchNorms
/// ([`batchnorm::backward`]). Not touched, being zero by construction:
/// `dp.common.b` (a constant before the softmax) and, in train mode,
/// `dp.global.b` (followed by a BatchNorm over the batch).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    dout: &GpuTensor,
    v: &GpuTensor,
    p: &GpuVisualSa,
    mode: Mode,
    cache: &GpuVisualSaCache,
    local_mask: Option<&GpuTensor>,
    global_mask: Option<&GpuTensor>,
    dp: &GpuVisualSa,
    dv: &GpuTensor,
    n: usize,
) -> Result<()> {
    let (r, e) = (N_REGIONS, p.local.n_in);
    expect_numel("visual_sa backward dout", dout, n * e)?;
    expect_numel("visual_sa backward v", v, n * r * e)?;
    expect_numel("visual_sa backward dv", dv, n * r * e)?;
    expect_numel("visual_sa backward l", &cache.l, n * r * e)?;
    expect_numel("visual_sa backward weights", &cache.w, n * r)?;
    if n * e == 0 {
        return Ok(());
    }
    let params = Params { n: u32c("images", n)?, r: r as u32, e: u32c("E", e)?, _pad: 0 };
    u32c("visual_sa size", n * r * e)?;
    // v_glo = l2norm(u)
    let du = scratch(ctx, &[n, e])?;
    l2norm::backward(ctx, encoder, dout, &cache.out, &cache.norms, &du, e, false)?;
    // u = Σ_r w_r v_r, w = softmax(scores)
    let ds = scratch(ctx, &[n, r])?;
    let k = ctx.kernel(
        &SHADER,
        "visual_sa_backward_scores",
        &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite],
    );
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&du.buffer, &v.buffer, &cache.w.buffer, &dv.buffer, &ds.buffer],
        ctx.grid_1d(n as u64),
    );
    // scores_r = (l_r ⊙ g)·w_c + b_c
    let dl = scratch(ctx, &[n, r, e])?;
    let dg = scratch(ctx, &[n, e])?;
    let dwc = scratch(ctx, &[n, e])?; // per-image parts of dw_c
    let k = ctx.kernel(
        &SHADER,
        "visual_sa_backward_branches",
        &[
            Access::Read,
            Access::Read,
            Access::Read,
            Access::Read,
            Access::ReadWrite,
            Access::ReadWrite,
            Access::ReadWrite,
        ],
    );
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&ds.buffer, &cache.l.buffer, &cache.g.buffer, &p.common.w.buffer, &dl.buffer, &dg.buffer, &dwc.buffer],
        ctx.grid_1d((n * e).div_ceil(256) as u64),
    );
    linear::column_sum(ctx, encoder, &dwc, &dp.common.w, n, e, e, 0, 0, true)?;
    // dropout and tanh: d(BN output) = d·mask·(1 − th²)
    dropout::backward_tanh(ctx, encoder, &dl, &cache.l_th, local_mask)?;
    dropout::backward_tanh(ctx, encoder, &dg, &cache.g_th, global_mask)?;
    // local: BatchNorm over the 36 region slots, then Linear(E→E) on v
    let dl_pre = super::params::zeros_in(ctx, encoder, &[n, r, e])?;
    batchnorm::backward(
        ctx,
        encoder,
        &dl,
        &cache.l_pre,
        &p.local_bn,
        mode,
        cache.stats.local.as_ref(),
        &dp.local_bn,
        &dl_pre,
        n,
        r,
        e,
    )?;
    linear::backward(ctx, encoder, &dl_pre, v, &p.local.w, Some(dv), true, &dp.local.w, Some(&dp.local.b))?;
    // global: BatchNorm over features, then Linear(E→E) on the mean region
    let dg_pre = super::params::zeros_in(ctx, encoder, &[n, e])?;
    batchnorm::backward(
        ctx,
        encoder,
        &dg,
        &cache.g_pre,
        &p.global_bn,
        mode,
        cache.stats.global.as_ref(),
        &dp.global_bn,
        &dg_pre,
        n,
        e,
        1,
    )?;
    let dmean = scratch(ctx, &[n, e])?;
    let dgb = (mode == Mode::Eval).then_some(&dp.global.b);
    linear::backward(ctx, encoder, &dg_pre, &cache.mean, &p.global.w, Some(&dmean), false, &dp.global.w, dgb)?;
    let k = ctx.kernel(&SHADER, "visual_sa_backward_mean", &[Access::Read, Access::ReadWrite]);
    ctx.dispatch(encoder, &k, &params, &[&dmean.buffer, &dv.buffer], ctx.grid_1d((n * r * e).div_ceil(256) as u64));
    Ok(())
}
