//! Text-to-image attention (SCAN t2i, spec §6.2, `shaders/attention.wgsl`):
//! for each word, attend over the 36 regions of an image and l2-normalise
//! the attended vector.

use super::context::{Access, GpuContext, Shader};
use super::linear::{self, Gemm};
use super::params::{scratch, GpuLayout};
use super::tensor::GpuTensor;
use super::{expect_numel, l2norm, u32c};
use crate::error::Result;
use crate::model::params::N_REGIONS;

pub const SHADER: Shader =
    Shader { name: "attention", source: include_str!("../../shaders/attention.wgsl"), trusted: false };

/// Softmax smoothing λ.
pub const LAMBDA: f32 = 9.0;
/// LeakyReLU slope applied to the logits.
pub const LEAKY_SLOPE: f32 = 0.1;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_img: u32,
    r: u32,
    n_words: u32,
    n_cap: u32,
    lambda: f32,
    slope: f32,
    _pad0: u32,
    _pad1: u32,
}

/// Output of [`forward`].
#[derive(Debug)]
pub struct AttentionOut {
    /// `[n_img, n_words, E]` attended image vectors, l2-normalised.
    pub ctx: GpuTensor,
    /// `[n_img, n_words, 36]` attention weights (softmax over regions).
    pub attn: GpuTensor,
}

/// `v [n_img, 36, E]`, `t [n_words, E]` (packed words) →
/// `ctx [n_img, n_words, E]` and `attn [n_img, n_words, 36]`.
pub fn forward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    v: &GpuTensor,
    t: &GpuTensor,
    lay: &GpuLayout,
    n_img: usize,
) -> Result<AttentionOut> {
    let (r, nw, nc) = (N_REGIONS, lay.n_words(), lay.n_cap());
    let e = t.numel().checked_div(nw).unwrap_or(0);
    expect_numel("attention words", t, nw * e)?;
    expect_numel("attention regions", v, n_img * r * e)?;
    // Logits a = v·tᵀ                                              [n_img·36, n_words]
    let a = scratch(ctx, &[n_img * r, nw])?;
    linear::gemm(ctx, encoder, v, t, None, &a, None, &Gemm::linear(n_img * r, e, nw))?;
    let params = Params {
        n_img: u32c("images", n_img)?,
        r: r as u32,
        n_words: u32c("words", nw)?,
        n_cap: u32c("captions", nc)?,
        lambda: LAMBDA,
        slope: LEAKY_SLOPE,
        _pad0: 0,
        _pad1: 0,
    };
    // ‖LeakyReLU(a)‖ over each caption's words + 1e-8              [n_img·36, n_cap]
    let norm = scratch(ctx, &[n_img * r, nc])?;
    u32c("attention norms", n_img * r * nc)?;
    let k =
        ctx.kernel(&SHADER, "attention_forward_norm", &[Access::Read, Access::Read, Access::Read, Access::ReadWrite]);
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&a.buffer, &lay.word_off.buffer, &lay.word_cap.buffer, &norm.buffer],
        ctx.grid_1d((n_img * r * nc).div_ceil(256) as u64),
    );
    // Softmax over regions                                         [n_img, n_words, 36]
    let attn = scratch(ctx, &[n_img, nw, r])?;
    let k = ctx.kernel(
        &SHADER,
        "attention_forward_softmax",
        &[Access::Read, Access::Read, Access::Read, Access::Read, Access::ReadWrite],
    );
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&a.buffer, &lay.word_off.buffer, &lay.word_cap.buffer, &norm.buffer, &attn.buffer],
        ctx.grid_1d((n_img * nw).div_ceil(256) as u64),
    );
    // ctx[i] = attn[i] · v[i], then l2norm                         [n_img, n_words, E]
    let attended = scratch(ctx, &[n_img, nw, e])?;
    let mut g = Gemm::batched(n_img, nw, r, e, false);
    g.w_bstride = r * e;
    linear::gemm(ctx, encoder, &attn, v, None, &attended, None, &g)?;
    l2norm::forward(ctx, encoder, &attended, e)?;
    Ok(AttentionOut { ctx: attended, attn })
}
