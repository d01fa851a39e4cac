//! Word embedding lookup (`shaders/embed.wgsl`).

use super::context::{Access, GpuContext, Shader};
use super::tensor::{DType, GpuTensor};
use super::{expect_numel, u32c};
use crate::error::{Result, SgrafError};

pub const SHADER: Shader = Shader { name: "embed", source: include_str!("../../shaders/embed.wgsl"), trusted: false };

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    dim: u32,
    vocab: u32,
    _pad: u32,
}

/// `ids [n_tok]` (u32) → rows of `table [V, D_w]` → `out [n_tok, D_w]`.
/// Ids must be `< V` (checked on the host when the ids are made; the
/// kernel writes a zero row for an out-of-range id).
pub fn forward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    ids: &GpuTensor,
    table: &GpuTensor,
    out: &GpuTensor,
) -> Result<()> {
    ids.expect_dtype("embed ids", DType::U32)?;
    if table.shape.len() != 2 {
        return Err(SgrafError::Input(format!("embed: table shape {:?} is not [V, D_w]", table.shape)));
    }
    let (vocab, dim) = (table.shape[0], table.shape[1]);
    let n = ids.numel();
    expect_numel("embed output", out, n * dim)?;
    let params = Params { n: u32c("ids", n)?, dim: u32c("D_w", dim)?, vocab: u32c("V", vocab)?, _pad: 0 };
    u32c("embed output size", n * dim)?;
    let k = ctx.kernel(&SHADER, "embed_forward", &[Access::Read, Access::Read, Access::ReadWrite]);
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&ids.buffer, &table.buffer, &out.buffer],
        ctx.grid_1d((n * dim).div_ceil(256) as u64),
    );
    Ok(())
}

/// Backward of [`forward`], as `cpu::embed::backward`: scatter-adds
/// `dx [n_tok, D_w]` into the rows `ids` of `dtable [V, D_w]` (`+=`, each row
/// in token order; deterministic, no atomics). Two dispatches; ids `>= V` are
/// skipped.
pub fn backward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    dx: &GpuTensor,
    ids: &GpuTensor,
    dtable: &GpuTensor,
) -> Result<()> {
    ids.expect_dtype("embed backward ids", DType::U32)?;
    if dtable.shape.len() != 2 {
        return Err(SgrafError::Input(format!("embed backward: dtable shape {:?} is not [V, D_w]", dtable.shape)));
    }
    let (vocab, dim) = (dtable.shape[0], dtable.shape[1]);
    let n = ids.numel();
    expect_numel("embed backward dx", dx, n * dim)?;
    if n == 0 || dim == 0 {
        return Ok(());
    }
    let params = Params { n: u32c("ids", n)?, dim: u32c("D_w", dim)?, vocab: u32c("V", vocab)?, _pad: 0 };
    u32c("embed backward sizes", (n * dim).max(vocab * dim).max(2 * n))?;
    let links = GpuTensor::scratch(ctx, &[2, n], DType::U32)?;
    let k = ctx.kernel(&SHADER, "embed_backward_links", &[Access::Read, Access::ReadWrite]);
    ctx.dispatch(encoder, &k, &params, &[&ids.buffer, &links.buffer], ctx.grid_1d(n.div_ceil(256) as u64));
    let k = ctx.kernel(&SHADER, "embed_backward", &[Access::Read, Access::Read, Access::Read, Access::ReadWrite]);
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&ids.buffer, &links.buffer, &dx.buffer, &dtable.buffer],
        ctx.grid_1d((n * dim).div_ceil(256) as u64),
    );
    Ok(())
}
