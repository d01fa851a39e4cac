//! Text self-attention `t_global_w` (spec §5.2, `shaders/text_sa.wgsl`),
//! per caption over its own words.

use super::context::{Access, GpuContext, Shader};
use super::linear::{self, Activation};
use super::params::{scratch, GpuLayout, GpuTextSa};
use super::tensor::GpuTensor;
use super::{expect_numel, u32c};
use crate::error::Result;

pub const SHADER: Shader =
    Shader { name: "text_sa", source: include_str!("../../shaders/text_sa.wgsl"), trusted: false };

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_cap: u32,
    e: u32,
    _pad0: u32,
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
    let (nw, nc, e) = (lay.n_words(), lay.n_cap(), p.local.n_in);
    expect_numel("text_sa input", t, nw * e)?;
    let params = Params { n_cap: u32c("captions", nc)?, e: u32c("E", e)?, _pad0: 0, _pad1: 0 };
    let l = scratch(ctx, &[nw, e])?; // tanh(local(t))          [n_words, E]
    linear::forward_act(ctx, encoder, t, &p.local.w, Some(&p.local.b), &l, Activation::Tanh)?;
    let mean = scratch(ctx, &[nc, e])?; // per-caption mean word [n_cap, E]
    let k = ctx.kernel(&SHADER, "text_sa_forward_mean", &[Access::Read, Access::Read, Access::ReadWrite]);
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&t.buffer, &lay.word_off.buffer, &mean.buffer],
        ctx.grid_1d((nc * e).div_ceil(256) as u64),
    );
    let g = scratch(ctx, &[nc, e])?; // tanh(global(mean))      [n_cap, E]
    linear::forward_act(ctx, encoder, &mean, &p.global.w, Some(&p.global.b), &g, Activation::Tanh)?;
    let t_glo = scratch(ctx, &[nc, e])?;
    let weights = scratch(ctx, &[nw])?;
    let k = ctx.kernel(
        &SHADER,
        "text_sa_forward",
        &[
            Access::Read,
            Access::Read,
            Access::Read,
            Access::Read,
            Access::Read,
            Access::Read,
            Access::ReadWrite,
            Access::ReadWrite,
        ],
    );
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[
            &t.buffer,
            &l.buffer,
            &g.buffer,
            &p.common.w.buffer,
            &p.common.b.buffer,
            &lay.word_off.buffer,
            &t_glo.buffer,
            &weights.buffer,
        ],
        ctx.grid_1d(nc as u64),
    );
    Ok(TextSaOut { t_glo, weights })
}
