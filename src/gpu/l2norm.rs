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

/// As [`forward`] (same values), also writing every row's norm `‖x‖`
/// (without the eps) into `norms [rows]` for [`backward`].
pub fn forward_keep_norms(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    x: &GpuTensor,
    n: usize,
    norms: &GpuTensor,
) -> Result<()> {
    if n == 0 || !x.numel().is_multiple_of(n) {
        return Err(SgrafError::Input(format!("l2norm: shape {:?} is not [.., {n}]", x.shape)));
    }
    let rows = x.numel() / n;
    super::expect_numel("l2norm norms", norms, rows)?;
    if rows == 0 {
        return Ok(());
    }
    let params = Params { rows: u32c("rows", rows)?, n: u32c("n", n)?, ld: u32c("ld", n)?, off: 0 };
    u32c("l2norm tensor size", x.numel())?;
    let k = ctx.kernel(&SHADER, "l2norm_forward_keep_norms", &[Access::ReadWrite, Access::ReadWrite]);
    ctx.dispatch(encoder, &k, &params, &[&x.buffer, &norms.buffer], ctx.grid_1d(rows as u64));
    Ok(())
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct BackParams {
    rows: u32,
    n: u32,
    accumulate: u32,
    _pad: u32,
}

/// Backward of `y = x / (‖x‖ + 1e-8)` row-wise, as `cpu::l2norm::backward`:
/// `dy [rows, n]`, `y [rows, n]` (the forward output), `norms [rows]` (from
/// [`forward_keep_norms`]) → `dx [rows, n]` (`=`, or `+=` with `accumulate`).
/// `dx` must be a different buffer from `dy` and `y`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    dy: &GpuTensor,
    y: &GpuTensor,
    norms: &GpuTensor,
    dx: &GpuTensor,
    n: usize,
    accumulate: bool,
) -> Result<()> {
    if n == 0 || !y.numel().is_multiple_of(n) {
        return Err(SgrafError::Input(format!("l2norm backward: shape {:?} is not [.., {n}]", y.shape)));
    }
    let rows = y.numel() / n;
    super::expect_numel("l2norm backward dy", dy, rows * n)?;
    super::expect_numel("l2norm backward dx", dx, rows * n)?;
    super::expect_numel("l2norm backward norms", norms, rows)?;
    if rows == 0 {
        return Ok(());
    }
    let params = BackParams { rows: u32c("rows", rows)?, n: u32c("n", n)?, accumulate: accumulate as u32, _pad: 0 };
    u32c("l2norm tensor size", y.numel())?;
    let k = ctx.kernel(&SHADER, "l2norm_backward", &[Access::Read, Access::Read, Access::Read, Access::ReadWrite]);
    ctx.dispatch(encoder, &k, &params, &[&dy.buffer, &y.buffer, &norms.buffer, &dx.buffer], ctx.grid_1d(rows as u64));
    Ok(())
}
