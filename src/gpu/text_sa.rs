//! Text self-attention `t_global_w` (spec §5.2, `shaders/text_sa.wgsl`),
//! per caption over its own words.

use super::context::{Access, GpuContext, Shader};
use super::linear::{self, Activation};
use super::params::{scratch, GpuLayout, GpuTextSa};
use super::tensor::GpuTensor;
use super::{dropout, expect_numel, l2norm, u32c};
use crate::error::Result;

pub const SHADER: Shader =
    Shader { name: "text_sa", source: include_str!("../../shaders/text_sa.wgsl"), trusted: false };

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_cap: u32,
    e: u32,
    n_words: u32,
    _pad1: u32,
}

/// Output of [`forward`].
#[derive(Debug)]
pub struct TextSaOut {
    pub t_glo: GpuTensor,   // [n_cap, E]
    pub weights: GpuTensor, // [n_words] softmax over each caption's words
}

/// `t [n_words, E]` (packed words) → `t_glo [n_cap, E]`.
pub fn forward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    t: &GpuTensor,
    p: &GpuTextSa,
    lay: &GpuLayout,
) -> Result<TextSaOut> {
    // eval: the training forward without dropout (its caches are dropped)
    let c = forward_train(ctx, encoder, t, p, lay, None, None)?;
    Ok(TextSaOut { t_glo: c.out, weights: c.w })
}

// ----------------------------------------------------------------------------
// Training: forward keeping activations (optional dropout), and backward
// (`cpu::text_sa::{forward_train, backward}`).

/// What [`backward`] needs (`cpu::text_sa::TextSaCache`).
#[derive(Debug)]
pub struct GpuTextSaCache {
    pub l_th: GpuTensor,  // [n_words, E] tanh(local linear), before dropout
    pub l: GpuTensor,     // [n_words, E] after dropout
    pub mean: GpuTensor,  // [n_cap, E] mean word (query input)
    pub g_th: GpuTensor,  // [n_cap, E] tanh(global linear), before dropout
    pub g: GpuTensor,     // [n_cap, E] after dropout
    pub w: GpuTensor,     // [n_words] softmax weights over each caption's words
    pub out: GpuTensor,   // [n_cap, E] t_glo
    pub norms: GpuTensor, // [n_cap] ‖Σ_j w_j t_j‖
}

/// [`forward`] keeping activations, with inverted-dropout masks on the local
/// `[n_words, E]` and global `[n_cap, E]` branch outputs (`None`: no
/// dropout). `t_glo [n_cap, E]` is `cache.out`.
pub fn forward_train(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    t: &GpuTensor,
    p: &GpuTextSa,
    lay: &GpuLayout,
    local_mask: Option<&GpuTensor>,
    global_mask: Option<&GpuTensor>,
) -> Result<GpuTextSaCache> {
    let (nw, nc, e) = (lay.n_words(), lay.n_cap(), p.local.n_in);
    expect_numel("text_sa input", t, nw * e)?;
    let params = Params { n_cap: u32c("captions", nc)?, e: u32c("E", e)?, n_words: u32c("words", nw)?, _pad1: 0 };
    u32c("text_sa size", nw * e)?;
    let copy = |enc: &mut wgpu::CommandEncoder, src: &GpuTensor| -> Result<GpuTensor> {
        let dst = scratch(ctx, &src.shape)?;
        enc.copy_buffer_to_buffer(&src.buffer, 0, &dst.buffer, 0, src.size_bytes());
        Ok(dst)
    };
    let l_th = scratch(ctx, &[nw, e])?; // tanh(local(t))           [n_words, E]
    linear::forward_act(ctx, encoder, t, &p.local.w, Some(&p.local.b), &l_th, Activation::Tanh)?;
    let l = copy(encoder, &l_th)?;
    dropout::apply(ctx, encoder, &l, local_mask)?;
    let mean = scratch(ctx, &[nc, e])?; // per-caption mean word    [n_cap, E]
    let k = ctx.kernel(&SHADER, "text_sa_forward_mean", &[Access::Read, Access::Read, Access::ReadWrite]);
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&t.buffer, &lay.word_off.buffer, &mean.buffer],
        ctx.grid_1d((nc * e).div_ceil(256) as u64),
    );
    let g_th = scratch(ctx, &[nc, e])?; // tanh(global(mean))       [n_cap, E]
    linear::forward_act(ctx, encoder, &mean, &p.global.w, Some(&p.global.b), &g_th, Activation::Tanh)?;
    let g = copy(encoder, &g_th)?;
    dropout::apply(ctx, encoder, &g, global_mask)?;
    // scores and softmax weights over each caption's words
    let t_glo = scratch(ctx, &[nc, e])?;
    let w = scratch(ctx, &[nw])?;
    let k = ctx.kernel(
        &SHADER,
        "text_sa_forward",
        &[Access::Read, Access::Read, Access::Read, Access::Read, Access::Read, Access::ReadWrite],
    );
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&l.buffer, &g.buffer, &p.common.w.buffer, &p.common.b.buffer, &lay.word_off.buffer, &w.buffer],
        ctx.grid_1d(nc as u64),
    );
    // t_glo = l2norm(Σ_j w_j t_j), keeping the norms                [n_cap, E]
    let k = ctx.kernel(&SHADER, "text_sa_forward_pool", &[Access::Read, Access::Read, Access::Read, Access::ReadWrite]);
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&t.buffer, &w.buffer, &lay.word_off.buffer, &t_glo.buffer],
        ctx.grid_1d((nc * e).div_ceil(256) as u64),
    );
    let norms = scratch(ctx, &[nc])?;
    l2norm::forward_keep_norms(ctx, encoder, &t_glo, e, &norms)?;
    Ok(GpuTextSaCache { l_th, l, mean, g_th, g, w, out: t_glo, norms })
}

/// Backward of [`forward_train`]: `dout [n_cap, E]` (gradient of t_glo) →
/// `dp += …`, `dt [n_words, E] += …`. `dp.common.b` is not touched: a
/// constant before a softmax, its gradient is zero by construction.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    dout: &GpuTensor,
    t: &GpuTensor,
    p: &GpuTextSa,
    lay: &GpuLayout,
    cache: &GpuTextSaCache,
    local_mask: Option<&GpuTensor>,
    global_mask: Option<&GpuTensor>,
    dp: &GpuTextSa,
    dt: &GpuTensor,
) -> Result<()> {
    let (nw, nc, e) = (lay.n_words(), lay.n_cap(), p.local.n_in);
    expect_numel("text_sa backward dout", dout, nc * e)?;
    expect_numel("text_sa backward t", t, nw * e)?;
    expect_numel("text_sa backward dt", dt, nw * e)?;
    expect_numel("text_sa backward l", &cache.l, nw * e)?;
    expect_numel("text_sa backward g", &cache.g, nc * e)?;
    expect_numel("text_sa backward weights", &cache.w, nw)?;
    if nc == 0 || e == 0 {
        return Ok(());
    }
    let params = Params { n_cap: u32c("captions", nc)?, e: u32c("E", e)?, n_words: u32c("words", nw)?, _pad1: 0 };
    u32c("text_sa size", nw * e)?;
    // t_glo = l2norm(u)
    let du = scratch(ctx, &[nc, e])?;
    l2norm::backward(ctx, encoder, dout, &cache.out, &cache.norms, &du, e, false)?;
    // u = Σ_j w_j t_j, w = softmax(scores)
    let ds = scratch(ctx, &[nw])?;
    let k = ctx.kernel(
        &SHADER,
        "text_sa_backward_scores",
        &[Access::Read, Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite],
    );
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&du.buffer, &t.buffer, &cache.w.buffer, &lay.word_off.buffer, &dt.buffer, &ds.buffer],
        ctx.grid_1d(nc as u64),
    );
    // scores_j = (l_j ⊙ g_c)·w_c + b_c
    let dl = scratch(ctx, &[nw, e])?;
    let dg = scratch(ctx, &[nc, e])?;
    let dwc = scratch(ctx, &[nc, e])?; // per-caption parts of dw_c
    let k = ctx.kernel(
        &SHADER,
        "text_sa_backward_branches",
        &[
            Access::Read,
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
        &[
            &ds.buffer,
            &cache.l.buffer,
            &cache.g.buffer,
            &p.common.w.buffer,
            &lay.word_off.buffer,
            &dl.buffer,
            &dg.buffer,
            &dwc.buffer,
        ],
        ctx.grid_1d((nc * e).div_ceil(256) as u64),
    );
    linear::column_sum(ctx, encoder, &dwc, &dp.common.w, nc, e, e, 0, 0, true)?;
    // dropout and tanh of both branches
    dropout::backward_tanh(ctx, encoder, &dl, &cache.l_th, local_mask)?;
    dropout::backward_tanh(ctx, encoder, &dg, &cache.g_th, global_mask)?;
    // the two Linears; the mean word spreads back over the caption's words
    linear::backward(ctx, encoder, &dl, t, &p.local.w, Some(dt), true, &dp.local.w, Some(&dp.local.b))?;
    let dmean = scratch(ctx, &[nc, e])?;
    linear::backward(
        ctx,
        encoder,
        &dg,
        &cache.mean,
        &p.global.w,
        Some(&dmean),
        false,
        &dp.global.w,
        Some(&dp.global.b),
    )?;
    let k =
        ctx.kernel(&SHADER, "text_sa_backward_mean", &[Access::Read, Access::Read, Access::Read, Access::ReadWrite]);
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&dmean.buffer, &lay.word_cap.buffer, &lay.word_off.buffer, &dt.buffer],
        ctx.grid_1d((nw * e).div_ceil(256) as u64),
    );
    Ok(())
}
