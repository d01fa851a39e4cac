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
    let c = forward_impl(ctx, encoder, v, t, lay, n_img, false)?;
    Ok(AttentionOut { ctx: c.ctx, attn: c.attn })
}

/// What the backward needs (`cpu::attention::AttentionCache`, all images).
#[derive(Debug)]
pub struct GpuAttentionCache {
    pub a: GpuTensor,         // [n_img·36, n_words] region·word cosines, before LeakyReLU
    pub attn: GpuTensor,      // [n_img, n_words, 36] softmax over regions
    pub ctx: GpuTensor,       // [n_img, n_words, E] l2-normalised attended vectors
    pub ctx_norms: GpuTensor, // [n_img, n_words] norms before the l2norm
}

/// [`forward`] keeping what [`backward`] needs (same values).
pub fn forward_train(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    v: &GpuTensor,
    t: &GpuTensor,
    lay: &GpuLayout,
    n_img: usize,
) -> Result<GpuAttentionCache> {
    forward_impl(ctx, encoder, v, t, lay, n_img, true)
}

fn params(lay: &GpuLayout, n_img: usize) -> Result<Params> {
    Ok(Params {
        n_img: u32c("images", n_img)?,
        r: N_REGIONS as u32,
        n_words: u32c("words", lay.n_words())?,
        n_cap: u32c("captions", lay.n_cap())?,
        lambda: LAMBDA,
        slope: LEAKY_SLOPE,
        _pad0: 0,
        _pad1: 0,
    })
}

fn forward_impl(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    v: &GpuTensor,
    t: &GpuTensor,
    lay: &GpuLayout,
    n_img: usize,
    keep_norms: bool,
) -> Result<GpuAttentionCache> {
    let (r, nw, nc) = (N_REGIONS, lay.n_words(), lay.n_cap());
    let e = t.numel().checked_div(nw).unwrap_or(0);
    expect_numel("attention words", t, nw * e)?;
    expect_numel("attention regions", v, n_img * r * e)?;
    // Logits a = v·tᵀ                                              [n_img·36, n_words]
    let a = scratch(ctx, &[n_img * r, nw])?;
    linear::gemm(ctx, encoder, v, t, None, &a, None, &Gemm::linear(n_img * r, e, nw))?;
    let params = params(lay, n_img)?;
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
    let ctx_norms = scratch(ctx, &[n_img, nw])?;
    if keep_norms {
        l2norm::forward_keep_norms(ctx, encoder, &attended, e, &ctx_norms)?;
    } else {
        l2norm::forward(ctx, encoder, &attended, e)?;
    }
    Ok(GpuAttentionCache { a, attn, ctx: attended, ctx_norms })
}

/// Backward of [`forward_train`] for all images (`cpu::attention::backward_image`
/// image by image): `dctx [n_img, n_words, E]` → `dv [n_img, 36, E] += …`,
/// `dt [n_words, E] += …` (summed over images).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    dctx: &GpuTensor,
    v: &GpuTensor,
    t: &GpuTensor,
    lay: &GpuLayout,
    n_img: usize,
    cache: &GpuAttentionCache,
    dv: &GpuTensor,
    dt: &GpuTensor,
) -> Result<()> {
    let (r, nw) = (N_REGIONS, lay.n_words());
    let e = t.numel().checked_div(nw).unwrap_or(0);
    expect_numel("attention backward words", t, nw * e)?;
    expect_numel("attention backward regions", v, n_img * r * e)?;
    expect_numel("attention backward dctx", dctx, n_img * nw * e)?;
    expect_numel("attention backward dv", dv, n_img * r * e)?;
    expect_numel("attention backward dt", dt, nw * e)?;
    expect_numel("attention backward a", &cache.a, n_img * r * nw)?;
    expect_numel("attention backward attn", &cache.attn, n_img * nw * r)?;
    expect_numel("attention backward ctx", &cache.ctx, n_img * nw * e)?;
    if n_img * nw * e == 0 {
        return Ok(());
    }
    let params = params(lay, n_img)?;
    u32c("attention sizes", n_img * nw * e.max(r))?;
    // ctx = l2norm(attn · v_i)
    let dcraw = scratch(ctx, &[n_img, nw, e])?;
    l2norm::backward(ctx, encoder, dctx, &cache.ctx, &cache.ctx_norms, &dcraw, e, false)?;
    // dattn[i] = dcraw[i] · v[i]ᵀ                                   [n_img, n_words, 36]
    let dattn = scratch(ctx, &[n_img, nw, r])?;
    linear::gemm(ctx, encoder, &dcraw, v, None, &dattn, None, &Gemm::batched(n_img, nw, e, r, true))?;
    // dv[i] += attn[i]ᵀ · dcraw[i]
    let g = Gemm {
        m: r,
        n: e,
        k: nw,
        batch: n_img,
        trans_w: false,
        ldx: r,
        ldw: e,
        ldy: e,
        x_bstride: nw * r,
        w_bstride: nw * e,
        y_bstride: r * e,
        accumulate: true,
        ..Gemm::linear(r, nw, e)
    };
    linear::gemm_tn(ctx, encoder, &cache.attn, &dcraw, dv, &g)?;
    // softmax over regions of 9·an → da = 9·dlogit                 [n_img·36, n_words]
    let da = scratch(ctx, &[n_img * r, nw])?;
    let k = ctx.kernel(&SHADER, "attention_backward_softmax", &[Access::Read, Access::Read, Access::ReadWrite]);
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&cache.attn.buffer, &dattn.buffer, &da.buffer],
        ctx.grid_1d((n_img * nw).div_ceil(256) as u64),
    );
    // l2norm over each caption's words of LeakyReLU(a), in place
    let k = ctx.kernel(&SHADER, "attention_backward_norm", &[Access::Read, Access::Read, Access::ReadWrite]);
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&cache.a.buffer, &lay.word_off.buffer, &da.buffer],
        ctx.grid_1d((n_img * r * lay.n_cap()).div_ceil(256) as u64),
    );
    // a = v_i · tᵀ: dv += da · t, dt += daᵀ · v
    let g = Gemm { trans_w: false, ldw: e, accumulate: true, ..Gemm::linear(n_img * r, nw, e) };
    linear::gemm(ctx, encoder, &da, t, None, dv, None, &g)?;
    linear::weight_grad(ctx, encoder, &da, v, dt, n_img * r, e, nw)
}
