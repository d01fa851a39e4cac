//! Score head `σ(Linear_eval(s))` (spec §6.7, `shaders/head.wgsl`).

use super::context::{Access, GpuContext, Shader};
use super::params::{scratch, GpuLinear};
use super::tensor::GpuTensor;
use super::{expect_numel, u32c};
use crate::error::{Result, SgrafError};

pub const SHADER: Shader = Shader { name: "head", source: include_str!("../../shaders/head.wgsl"), trusted: false };

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    s: u32,
    _pad0: u32,
    _pad1: u32,
}

/// `s [p, S]` → `(logits [p], scores [p])`.
pub fn forward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    s: &GpuTensor,
    lin: &GpuLinear,
    p: usize,
) -> Result<(GpuTensor, GpuTensor)> {
    if lin.n_out != 1 {
        return Err(SgrafError::Input(format!("head: Linear_eval has {} outputs, expected 1", lin.n_out)));
    }
    expect_numel("head input", s, p * lin.n_in)?;
    let logits = scratch(ctx, &[p])?;
    let scores = scratch(ctx, &[p])?;
    let params = Params { rows: u32c("pairs", p)?, s: u32c("S", lin.n_in)?, _pad0: 0, _pad1: 0 };
    let k = ctx.kernel(
        &SHADER,
        "head_forward",
        &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite],
    );
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&s.buffer, &lin.w.buffer, &lin.b.buffer, &logits.buffer, &scores.buffer],
        ctx.grid_1d(p.div_ceil(32) as u64),
    );
    Ok((logits, scores))
}
