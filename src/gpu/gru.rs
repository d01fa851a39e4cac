//! Bidirectional one-layer GRU over captions of different lengths (packed
//! semantics), directions averaged, then l2-normalised (spec §4,
//! `shaders/gru.wgsl`). The input projections of all time steps are one
//! linear layer; the recurrence is one dispatch per step per direction.

use super::context::{Access, GpuContext, Shader};
use super::params::{scratch, zeros_in, GpuGruDirection, GpuLayout};
use super::tensor::GpuTensor;
use super::{expect_numel, l2norm, linear, u32c};
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
    dh_scale: f32,
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
        dh_scale: 0.0,
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
        dh_scale: 0.0,
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

// ----------------------------------------------------------------------------
// Training: the forward on packed rows keeping the gates, and the backward
// through time (`cpu::gru::{direction_forward_train, direction_backward}`).
// Caption c's token `pos` is row `word_off[c] + pos`.

/// What the backward of one direction needs (`cpu::gru::DirectionCache`).
#[derive(Debug)]
pub struct GpuDirectionCache {
    pub h: GpuTensor,     // [n_words, E] hidden state after reading each token
    pub gates: GpuTensor, // [n_words, 4E] r, z, n, and W_hn·h_prev + b_hn
}

/// What the text encoder's backward needs (`cpu::gru::GruCache`).
#[derive(Debug)]
pub struct GpuGruCache {
    pub fwd: GpuDirectionCache,
    pub bwd: GpuDirectionCache,
    pub norms: GpuTensor, // [n_words] ‖(h_fwd + h_bwd)/2‖
}

fn check_packed(lay: &GpuLayout) -> Result<usize> {
    if let Some(c) = lay.host.lengths.iter().position(|&l| l == 0) {
        return Err(SgrafError::Input(format!("gru: caption {c} has no tokens")));
    }
    Ok(lay.host.lengths.iter().copied().max().unwrap_or(0))
}

fn packed_params(lay: &GpuLayout, e: usize, reverse: bool) -> Result<Params> {
    Ok(Params {
        n_cap: u32c("captions", lay.n_cap())?,
        l_max: 0,
        e: u32c("E", e)?,
        step: 0,
        reverse: reverse as u32,
        packed: 1,
        dh_scale: 1.0,
        _pad1: 0,
    })
}

/// One direction over packed words `x [n_words, D_w]` → hidden states and
/// gates of every row. `reverse` reads tokens L−1 … 0.
pub fn direction_forward_train(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    x: &GpuTensor,
    lay: &GpuLayout,
    p: &GpuGruDirection,
    reverse: bool,
) -> Result<GpuDirectionCache> {
    let l_max = check_packed(lay)?;
    let (nw, nc, e, dw) = (lay.n_words(), lay.n_cap(), p.hidden, p.input);
    expect_numel("gru input", x, nw * dw)?;
    u32c("gru gates", nw * 4 * e)?;
    let gi = scratch(ctx, &[nw, 3 * e])?; // [n_words, 3E] x·W_ihᵀ + b_ih
    linear::forward(ctx, encoder, x, &p.w_ih, Some(&p.b_ih), &gi)?;
    let h = scratch(ctx, &[nw, e])?; // [n_words, E] every row written once
    let gates = scratch(ctx, &[nw, 4 * e])?; // [n_words, 4E]
    let mut params = packed_params(lay, e, reverse)?;
    let k = ctx.kernel(
        &SHADER,
        "gru_forward_step_train",
        &[Access::Read, Access::Read, Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite],
    );
    let grid = [e.div_ceil(32) as u32, nc.div_ceil(32) as u32, 1];
    for s in 0..l_max {
        params.step = s as u32;
        ctx.dispatch(
            encoder,
            &k,
            &params,
            &[
                &gi.buffer,
                &p.w_hh.buffer,
                &p.b_hh.buffer,
                &lay.lengths.buffer,
                &lay.word_off.buffer,
                &h.buffer,
                &gates.buffer,
            ],
            grid,
        );
    }
    Ok(GpuDirectionCache { h, gates })
}

/// Packed training form of [`forward_packed`]: `x [n_words, D_w]` →
/// `t [n_words, E]` = l2norm((h_fwd + h_bwd)/2), with the cache of both directions.
pub fn forward_train(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    x: &GpuTensor,
    lay: &GpuLayout,
    fwd: &GpuGruDirection,
    bwd: &GpuGruDirection,
) -> Result<(GpuTensor, GpuGruCache)> {
    let (nw, e) = (lay.n_words(), fwd.hidden);
    let cf = direction_forward_train(ctx, encoder, x, lay, fwd, false)?;
    let cb = direction_forward_train(ctx, encoder, x, lay, bwd, true)?;
    let t = scratch(ctx, &[nw, e])?; // [n_words, E]
    let mut params = packed_params(lay, e, false)?;
    params.step = u32c("gru output size", nw * e)?;
    let k = ctx.kernel(&SHADER, "gru_forward_average", &[Access::Read, Access::Read, Access::ReadWrite]);
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&cf.h.buffer, &cb.h.buffer, &t.buffer],
        ctx.grid_1d((nw * e).div_ceil(256) as u64),
    );
    let norms = scratch(ctx, &[nw])?;
    l2norm::forward_keep_norms(ctx, encoder, &t, e, &norms)?;
    Ok((t, GpuGruCache { fwd: cf, bwd: cb, norms }))
}

/// Backward through time of one direction (`cpu::gru::direction_backward`):
/// `dh_scale · dh [n_words, E]` is the gradient of every output hidden state →
/// `dp += …` (all four tensors), `dx [n_words, D_w] += …`. Two dispatches per
/// time step (the cell, then `dh_run += dgh · W_hh` on 32-caption tiles);
/// the weight gradients are taken once over all rows afterwards.
#[allow(clippy::too_many_arguments)]
pub fn direction_backward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    dh: &GpuTensor,
    dh_scale: f32,
    x: &GpuTensor,
    lay: &GpuLayout,
    p: &GpuGruDirection,
    cache: &GpuDirectionCache,
    dp: &GpuGruDirection,
    dx: &GpuTensor,
    reverse: bool,
) -> Result<()> {
    let l_max = check_packed(lay)?;
    let (nw, nc, e, dw) = (lay.n_words(), lay.n_cap(), p.hidden, p.input);
    expect_numel("gru backward dh", dh, nw * e)?;
    expect_numel("gru backward x", x, nw * dw)?;
    expect_numel("gru backward dx", dx, nw * dw)?;
    expect_numel("gru backward h", &cache.h, nw * e)?;
    expect_numel("gru backward gates", &cache.gates, nw * 4 * e)?;
    if dp.hidden != e || dp.input != dw {
        return Err(SgrafError::Input(format!(
            "gru backward: gradient of a {}→{} direction for a {dw}→{e} one",
            dp.input, dp.hidden
        )));
    }
    if nw == 0 || e == 0 {
        return Ok(());
    }
    u32c("gru gates", nw * 4 * e)?;
    let mut params = packed_params(lay, e, reverse)?;
    params.dh_scale = dh_scale;
    let dgi = scratch(ctx, &[nw, 3 * e])?; // [n_words, 3E] every row written once
    let dh_run = zeros_in(ctx, encoder, &[nc, e])?; // [n_cap, E]
    let dgh = scratch(ctx, &[nc, 3 * e])?; // [n_cap, 3E] one step, zero for finished captions
    let cell = ctx.kernel(
        &SHADER,
        "gru_backward_cell",
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
    // dh_run [n_cap, E] += dgh [n_cap, 3E] · W_hh [3E, E]
    let hidden = ctx.kernel(&SHADER, "gru_backward_hidden", &[Access::Read, Access::Read, Access::ReadWrite]);
    let grid = [e.div_ceil(32) as u32, nc.div_ceil(32) as u32, 1];
    for s in (0..l_max).rev() {
        params.step = s as u32;
        ctx.dispatch(
            encoder,
            &cell,
            &params,
            &[
                &dh.buffer,
                &cache.gates.buffer,
                &cache.h.buffer,
                &lay.lengths.buffer,
                &lay.word_off.buffer,
                &dh_run.buffer,
                &dgi.buffer,
                &dgh.buffer,
            ],
            ctx.grid_1d((nc * e).div_ceil(256) as u64),
        );
        if s > 0 {
            ctx.dispatch(encoder, &hidden, &params, &[&dgh.buffer, &p.w_hh.buffer, &dh_run.buffer], grid);
        }
    }
    // W_hh, b_hh: over every row, with the state it read
    let hprev = scratch(ctx, &[nw, e])?; // [n_words, E]
    let dgh_all = scratch(ctx, &[nw, 3 * e])?; // [n_words, 3E]
    params.step = u32c("words", nw)?;
    let k = ctx.kernel(
        &SHADER,
        "gru_backward_gather",
        &[Access::Read, Access::Read, Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite],
    );
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[
            &cache.h.buffer,
            &lay.word_cap.buffer,
            &lay.word_off.buffer,
            &dgi.buffer,
            &cache.gates.buffer,
            &hprev.buffer,
            &dgh_all.buffer,
        ],
        ctx.grid_1d((nw * e).div_ceil(256) as u64),
    );
    linear::weight_grad(ctx, encoder, &dgh_all, &hprev, &dp.w_hh, nw, e, 3 * e)?;
    linear::column_sum(ctx, encoder, &dgh_all, &dp.b_hh, nw, 3 * e, 3 * e, 0, 0, true)?;
    // W_ih, b_ih and the input
    linear::backward(ctx, encoder, &dgi, x, &p.w_ih, Some(dx), true, &dp.w_ih, Some(&dp.b_ih))
}

/// Backward of [`forward_train`] (`cpu::gru::backward`): `dt [n_words, E]`
/// with `t` the forward's output → `dfwd, dbwd += …`, `dx [n_words, D_w] += …`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    dt: &GpuTensor,
    t: &GpuTensor,
    x: &GpuTensor,
    lay: &GpuLayout,
    fwd: &GpuGruDirection,
    bwd: &GpuGruDirection,
    cache: &GpuGruCache,
    dfwd: &GpuGruDirection,
    dbwd: &GpuGruDirection,
    dx: &GpuTensor,
) -> Result<()> {
    let e = fwd.hidden;
    let dmid = scratch(ctx, &t.shape)?; // [n_words, E] gradient of h_fwd + h_bwd … before the halving
    l2norm::backward(ctx, encoder, dt, t, &cache.norms, &dmid, e, false)?;
    // both directions get half of the gradient of their average
    direction_backward(ctx, encoder, &dmid, 0.5, x, lay, fwd, &cache.fwd, dfwd, dx, false)?;
    direction_backward(ctx, encoder, &dmid, 0.5, x, lay, bwd, &cache.bwd, dbwd, dx, true)
}
