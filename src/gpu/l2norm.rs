//! Row-wise l2 normalisation `x / (sqrt(Σx²) + 1e-8)` (`shaders/l2norm.wgsl`).

use super::context::{Access, GpuContext, Shader};
use super::tensor::GpuTensor;
use super::u32c;
use crate::error::{Result, SgrafError};

pub const SHADER: Shader = Shader { name: "l2norm", source: include_str!("../../shaders/l2norm.wgsl"), trusted: false };

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    n: u32,
    ld: u32,
    off: u32,
}

/// Normalises every row of `x [.., n]` in place.
pub fn forward(ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder, x: &GpuTensor, n: usize) -> Result<()> {
    if n == 0 || !x.numel().is_multiple_of(n) {
        return Err(SgrafError::Input(format!("l2norm: shape {:?} is not [.., {n}]", x.shape)));
    }
    forward_rows(ctx, encoder, x, x.numel() / n, n, n, 0)
}

/// Normalises `rows` rows of length `n` in place, row `r` starting at
/// element `off + r·ld` of `x`.
pub fn forward_rows(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    x: &GpuTensor,
    rows: usize,
    n: usize,
    ld: usize,
    off: usize,
) -> Result<()> {
    if rows == 0 || n == 0 {
        return Ok(());
    }
    if off + (rows - 1) * ld + n > x.numel() {
        return Err(SgrafError::Input(format!(
            "l2norm: {rows} rows of {n} (stride {ld}, offset {off}) overrun shape {:?}",
            x.shape
        )));
    }
    let params = Params { rows: u32c("rows", rows)?, n: u32c("n", n)?, ld: u32c("ld", ld)?, off: u32c("off", off)? };
    u32c("l2norm tensor size", x.numel())?;
    let k = ctx.kernel(&SHADER, "l2norm_forward", &[Access::ReadWrite]);
    ctx.dispatch(encoder, &k, &params, &[&x.buffer], ctx.grid_1d(rows as u64));
    Ok(())
}
