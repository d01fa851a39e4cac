//! Inverted dropout with host-drawn masks (`shaders/dropout.wgsl`): the
//! masks come from the same generator as the CPU twin's
//! (`cpu::train::dropout_mask`), so both backends drop the same entries.

use super::context::{Access, GpuContext, Shader};
use super::tensor::GpuTensor;
use super::{expect_numel, u32c};
use crate::error::Result;

pub const SHADER: Shader =
    Shader { name: "dropout", source: include_str!("../../shaders/dropout.wgsl"), trusted: false };

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    has_mask: u32,
    _pad0: u32,
    _pad1: u32,
}

/// `x [..] ← x · mask [..]` (mask entries 0 or 1/(1−p)); nothing when `mask` is `None`.
/// The backward of a dropout is the same product on the gradient.
pub fn apply(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    x: &GpuTensor,
    mask: Option<&GpuTensor>,
) -> Result<()> {
    let Some(mask) = mask else { return Ok(()) };
    let n = x.numel();
    expect_numel("dropout mask", mask, n)?;
    if n == 0 {
        return Ok(());
    }
    let params = Params { n: u32c("dropout size", n)?, has_mask: 1, _pad0: 0, _pad1: 0 };
    let k = ctx.kernel(&SHADER, "dropout_forward", &[Access::ReadWrite, Access::Read]);
    ctx.dispatch(encoder, &k, &params, &[&x.buffer, &mask.buffer], ctx.grid_1d(n.div_ceil(256) as u64));
    Ok(())
}

/// Backward of `y = dropout(tanh(a))`: `d [..] ← d · mask · (1 − th²)` in
/// place, with `th [..]` the tanh output before the dropout.
pub fn backward_tanh(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    d: &GpuTensor,
    th: &GpuTensor,
    mask: Option<&GpuTensor>,
) -> Result<()> {
    let n = d.numel();
    expect_numel("tanh backward input", th, n)?;
    if let Some(m) = mask {
        expect_numel("dropout mask", m, n)?;
    }
    if n == 0 {
        return Ok(());
    }
    let params = Params { n: u32c("dropout size", n)?, has_mask: mask.is_some() as u32, _pad0: 0, _pad1: 0 };
    let k = ctx.kernel(&SHADER, "dropout_backward_tanh", &[Access::ReadWrite, Access::Read, Access::Read]);
    let m = mask.map_or(ctx.dummy(), |m| &m.buffer);
    ctx.dispatch(encoder, &k, &params, &[&d.buffer, &th.buffer, m], ctx.grid_1d(n.div_ceil(256) as u64));
    Ok(())
}
