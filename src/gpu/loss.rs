//! Bidirectional hardest-negative triplet loss (spec §8, `shaders/loss.wgsl`),
//! the GPU twin of `cpu::loss`: `sims [B, B]` (row = image, column = caption,
//! positives on the diagonal) → the summed loss, the hardest negatives (first
//! maximum in index order) and, for the backward, `dsims [B, B]`.

use super::context::{Access, GpuContext, Shader};
use super::tensor::{DType, GpuTensor};
use super::{expect_numel, u32c};
use crate::cpu::loss::Negatives;
use crate::error::{Result, SgrafError};

fn all(n: Negatives) -> u32 {
    u32::from(n == Negatives::All)
}

pub const SHADER: Shader = Shader { name: "loss", source: include_str!("../../shaders/loss.wgsl"), trusted: false };

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    b: u32,
    margin: f32,
    all_negatives: u32,
    _pad1: u32,
}

/// The loss and which entries it picked, on the GPU (mirrors `cpu::loss::TripletLoss`).
#[derive(Debug)]
pub struct GpuTripletLoss {
    pub b: usize,
    pub margin: f32,
    pub negatives: Negatives,
    /// `[1]` the summed loss.
    pub loss: GpuTensor,
    /// `[2, B]` u32: row 0 = hardest caption per image (`hardest_caption`),
    /// row 1 = hardest image per caption (`hardest_image`); with all negatives,
    /// the number of active hinges of each row / column.
    pub hardest: GpuTensor,
    /// `[2, B]`: row 0 = `cost_s`, row 1 = `cost_im` (with all negatives: their row / column sums).
    pub cost: GpuTensor,
}

/// Record the loss of `sims [B, B]` with margin `margin` (official 0.2) and
/// the hardest negatives (official default). One dispatch of one workgroup.
pub fn forward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    sims: &GpuTensor,
    b: usize,
    margin: f32,
) -> Result<GpuTripletLoss> {
    forward_with(ctx, encoder, sims, b, margin, Negatives::Hardest)
}

/// [`forward`] with either form of negatives (`cpu::loss::loss_and_grad`).
pub fn forward_with(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    sims: &GpuTensor,
    b: usize,
    margin: f32,
    negatives: Negatives,
) -> Result<GpuTripletLoss> {
    expect_numel("loss sims", sims, b * b)?;
    if !margin.is_finite() {
        return Err(SgrafError::Input(format!("loss: margin {margin} is not finite")));
    }
    let l = GpuTripletLoss {
        b,
        margin,
        negatives,
        loss: GpuTensor::zeros_in(ctx, encoder, &[1], DType::F32)?,
        hardest: GpuTensor::scratch(ctx, &[2, b], DType::U32)?,
        cost: GpuTensor::scratch(ctx, &[2, b], DType::F32)?,
    };
    if b == 0 {
        return Ok(l);
    }
    let params = Params { b: u32c("B", b)?, margin, all_negatives: all(negatives), _pad1: 0 };
    u32c("B·B", b * b)?;
    let k =
        ctx.kernel(&SHADER, "loss_forward", &[Access::Read, Access::ReadWrite, Access::ReadWrite, Access::ReadWrite]);
    ctx.dispatch(encoder, &k, &params, &[&sims.buffer, &l.loss.buffer, &l.hardest.buffer, &l.cost.buffer], [1, 1, 1]);
    Ok(l)
}

/// Record the backward of [`forward`] for `dloss = 1`: overwrites `dsims [B, B]`
/// (as `cpu::loss::backward`, or `cpu::loss::all_negatives`). `sims` is read
/// with all negatives only.
pub fn backward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    sims: &GpuTensor,
    l: &GpuTripletLoss,
    dsims: &GpuTensor,
) -> Result<()> {
    let b = l.b;
    expect_numel("loss backward dsims", dsims, b * b)?;
    expect_numel("loss backward sims", sims, b * b)?;
    if b == 0 {
        return Ok(());
    }
    let params = Params { b: u32c("B", b)?, margin: l.margin, all_negatives: all(l.negatives), _pad1: 0 };
    let k = ctx.kernel(&SHADER, "loss_backward", &[Access::Read, Access::Read, Access::Read, Access::ReadWrite]);
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&sims.buffer, &l.hardest.buffer, &l.cost.buffer, &dsims.buffer],
        ctx.grid_1d((b * b).div_ceil(256) as u64),
    );
    Ok(())
}
