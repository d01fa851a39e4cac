//! Image encoder `v = l2norm(fc(x))` per region (spec §3): a linear layer
//! then a row l2norm.

use super::context::GpuContext;
use super::params::GpuLinear;
use super::tensor::GpuTensor;
use super::{l2norm, linear};
use crate::error::Result;

/// `images [rows, D_img]` (rows = n_img·36) → `v [rows, E]`.
pub fn forward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    images: &GpuTensor,
    fc: &GpuLinear,
    v: &GpuTensor,
) -> Result<()> {
    linear::forward(ctx, encoder, images, &fc.w, Some(&fc.b), v)?;
    l2norm::forward(ctx, encoder, v, fc.n_out)
}
