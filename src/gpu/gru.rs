//! Bidirectional one-layer GRU over captions of different lengths (packed
//! semantics), directions averaged, then l2-normalised (spec §4,
//! `shaders/gru.wgsl`). The input projections of all time steps are one
//! linear layer; the recurrence is one dispatch per step per direction.

use super::context::{Access, GpuContext, Shader};
use super::params::{scratch, zeros_in, GpuGruDirection, GpuLayout};
use super::tensor::GpuTensor;
use super::{expect_numel, linear, u32c};
use crate::error::{Result, SgrafError};

pub const SHADER: Shader = Shader { name: "gru", source: include_str!("../../shaders/gru.wgsl"), trusted: false };

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_cap: u32,
    l_max: u32,
    e: u32,
    step: u32,
    reverse: u32,
    packed: u32,
    _pad0: u32,
    _pad1: u32,
}

fn check(lay: &GpuLayout, l_max: usize) -> Result<()> {
    if let Some(&l) = lay.host.lengths.iter().find(|&&l| l == 0 || l > l_max) {
        return Err(SgrafError::Input(format!("gru: caption length {l} outside 1..={l_max}")));
    }
    Ok(())
}

/// One direction: `x [n_cap, l_max, D_w]` → hidden states `h [n_cap, l_max, E]`
/// (zeros past each caption's length). `reverse` reads tokens L−1 … 0.
pub fn direction_forward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    x: &GpuTensor,
    lay: &GpuLayout,
    p: &GpuGruDirection,
    l_max: usize,
    reverse: bool,
) -> Result<GpuTensor> {
    check(lay, l_max)?;
    let (n_cap, e, dw) = (lay.n_cap(), p.hidden, p.input);
    expect_numel("gru input", x, n_cap * l_max * dw)?;
    let gi = scratch(ctx, &[n_cap, l_max, 3 * e])?; // [n_cap, l_max, 3E]
    linear::gemm(ctx, encoder, x, &p.w_ih, Some(&p.b_ih), &gi, None, &linear::Gemm::linear(n_cap * l_max, dw, 3 * e))?;
    let h = zeros_in(ctx, encoder, &[n_cap, l_max, e])?; // [n_cap, l_max, E], zeros past each length
    let mut params = Params {
        n_cap: u32c("captions", n_cap)?,
        l_max: u32c("l_max", l_max)?,
        e: u32c("E", e)?,
        step: 0,
        reverse: reverse as u32,
        packed: 0,
        _pad0: 0,
        _pad1: 0,
    };
    u32c("gru input projections", n_cap * l_max * 3 * e)?;
    let k = ctx.kernel(
        &SHADER,
        "gru_forward_step",
        &[Access::Read, Access::Read, Access::Read, Access::Read, Access::ReadWrite],
    );
    let grid = [e.div_ceil(32) as u32, n_cap.div_ceil(32) as u32, 1];
    let steps = lay.host.lengths.iter().copied().max().unwrap_or(0);
    for s in 0..steps {
        params.step = s as u32;
        ctx.dispatch(
            encoder,
            &k,
            &params,
            &[&gi.buffer, &p.w_hh.buffer, &p.b_hh.buffer, &lay.lengths.buffer, &h.buffer],
            grid,
        );
    }
    Ok(h)
}

#[allow(clippy::too_many_arguments)]
fn combine(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    hf: &GpuTensor,
    hb: &GpuTensor,
    lay: &GpuLayout,
    l_max: usize,
    e: usize,
    packed: bool,
) -> Result<GpuTensor> {
    let n_cap = lay.n_cap();
    let out = if packed { scratch(ctx, &[lay.n_words(), e])? } else { scratch(ctx, &[n_cap, l_max, e])? };
    let params = Params {
        n_cap: u32c("captions", n_cap)?,
        l_max: u32c("l_max", l_max)?,
        e: u32c("E", e)?,
        step: 0,
        reverse: 0,
        packed: packed as u32,
        _pad0: 0,
        _pad1: 0,
    };
    let k = ctx.kernel(
        &SHADER,
        "gru_forward_combine",
        &[Access::Read, Access::Read, Access::Read, Access::Read, Access::ReadWrite],
    );
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&hf.buffer, &hb.buffer, &lay.lengths.buffer, &lay.word_off.buffer, &out.buffer],
        ctx.grid_1d((n_cap * l_max) as u64),
    );
    Ok(out)
}

/// Text encoder after the embedding: `x [n_cap, l_max, D_w]` →
/// `cap_emb [n_cap, l_max, E]` (zeros past each length), as the official
/// text encoder returns it.
pub fn forward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    x: &GpuTensor,
    lay: &GpuLayout,
    fwd: &GpuGruDirection,
    bwd: &GpuGruDirection,
    l_max: usize,
) -> Result<GpuTensor> {
    let hf = direction_forward(ctx, encoder, x, lay, fwd, l_max, false)?;
    let hb = direction_forward(ctx, encoder, x, lay, bwd, l_max, true)?;
    combine(ctx, encoder, &hf, &hb, lay, l_max, fwd.hidden, false)
}

/// Like [`forward`] but packed: `t [n_words, E]`, caption c's word j at
/// row `word_off[c] + j` (the tile layout of pair scoring).
pub fn forward_packed(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    x: &GpuTensor,
    lay: &GpuLayout,
    fwd: &GpuGruDirection,
    bwd: &GpuGruDirection,
    l_max: usize,
) -> Result<GpuTensor> {
    let hf = direction_forward(ctx, encoder, x, lay, fwd, l_max, false)?;
    let hb = direction_forward(ctx, encoder, x, lay, bwd, l_max, true)?;
    combine(ctx, encoder, &hf, &hb, lay, l_max, fwd.hidden, true)
}
