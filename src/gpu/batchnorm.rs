//! BatchNorm1d (PyTorch semantics) on `[N, C, L]`, channel axis 1
//! (`shaders/batchnorm.wgsl`).

use super::context::{Access, GpuContext, Shader};
use super::params::{scratch, GpuBatchNorm};
use super::tensor::GpuTensor;
use super::{expect_numel, u32c};
use crate::error::{Result, SgrafError};
use crate::model::params::Mode;

pub const SHADER: Shader =
    Shader { name: "batchnorm", source: include_str!("../../shaders/batchnorm.wgsl"), trusted: false };

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c: u32,
    l: u32,
    act: u32,
    mean_off: u32,
    var_off: u32,
    _pad0: u32,
    _pad1: u32,
}

/// What follows the affine map (VisualSA applies tanh).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BnAct {
    None,
    Tanh,
}

/// Normalises `x [n, c, l]` in place, then applies `act`. Eval mode uses
/// the running statistics; train mode the batch statistics, which are
/// returned as `stats [2, C]` (mean, biased variance) for
/// [`update_running`].
#[allow(clippy::too_many_arguments)]
pub fn forward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    x: &GpuTensor,
    bn: &GpuBatchNorm,
    mode: Mode,
    n: usize,
    c: usize,
    l: usize,
    act: BnAct,
) -> Result<Option<GpuTensor>> {
    expect_numel("batchnorm input", x, n * c * l)?;
    if bn.channels != c {
        return Err(SgrafError::Input(format!("batchnorm: {} channels in the layer, {c} in the input", bn.channels)));
    }
    if mode == Mode::Train && n * l < 1 {
        return Err(SgrafError::Input("batchnorm: no values per channel in train mode".into()));
    }
    let mut params = Params {
        n: u32c("batchnorm N", n)?,
        c: u32c("batchnorm C", c)?,
        l: u32c("batchnorm L", l)?,
        act: if act == BnAct::Tanh { 2 } else { 0 },
        mean_off: 0,
        var_off: 0,
        _pad0: 0,
        _pad1: 0,
    };
    u32c("batchnorm size", n * c * l)?;
    let stats = if mode == Mode::Train {
        let stats = scratch(ctx, &[2, c])?;
        let k = ctx.kernel(&SHADER, "batchnorm_forward_stats", &[Access::Read, Access::ReadWrite]);
        ctx.dispatch(encoder, &k, &params, &[&x.buffer, &stats.buffer], [params.c, 1, 1]);
        params.var_off = params.c;
        Some(stats)
    } else {
        None
    };
    let (mean, var) = match &stats {
        Some(s) => (&s.buffer, &s.buffer),
        None => (&bn.running_mean.buffer, &bn.running_var.buffer),
    };
    let k = ctx.kernel(
        &SHADER,
        "batchnorm_forward",
        &[Access::ReadWrite, Access::Read, Access::Read, Access::Read, Access::Read],
    );
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&x.buffer, mean, var, &bn.weight.buffer, &bn.bias.buffer],
        ctx.grid_1d((n * c * l).div_ceil(256) as u64),
    );
    Ok(stats)
}

/// Backward of [`forward`] (with `act` [`BnAct::None`]) on `x [n, c, l]`, the
/// BatchNorm *input*, accumulating `dx += …`, `dbn.weight += Σ dy·x̂`,
/// `dbn.bias += Σ dy` per channel (`cpu::batchnorm::backward`).
///
/// Train mode needs `stats [2, C]` (mean, biased variance) returned by the
/// same forward: `dx = w/sqrt(σ² + ε) · (dy − mean(dy) − x̂ · mean(dy·x̂))`.
/// Eval mode uses the running statistics: `dx = w/sqrt(σ²_run + ε) · dy`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    dy: &GpuTensor,
    x: &GpuTensor,
    bn: &GpuBatchNorm,
    mode: Mode,
    stats: Option<&GpuTensor>,
    dbn: &GpuBatchNorm,
    dx: &GpuTensor,
    n: usize,
    c: usize,
    l: usize,
) -> Result<()> {
    expect_numel("batchnorm backward dy", dy, n * c * l)?;
    expect_numel("batchnorm backward x", x, n * c * l)?;
    expect_numel("batchnorm backward dx", dx, n * c * l)?;
    if bn.channels != c || dbn.channels != c {
        return Err(SgrafError::Input(format!(
            "batchnorm backward: {} / {} channels in the layer / its gradient, {c} in the input",
            bn.channels, dbn.channels
        )));
    }
    if n * c * l == 0 {
        return Ok(());
    }
    if c > ctx.max_groups() as usize {
        return Err(SgrafError::Input(format!(
            "batchnorm backward: {c} channels exceed {} workgroups",
            ctx.max_groups()
        )));
    }
    let mut params = Params {
        n: u32c("batchnorm N", n)?,
        c: u32c("batchnorm C", c)?,
        l: u32c("batchnorm L", l)?,
        act: 0,
        mean_off: 0,
        var_off: 0,
        _pad0: 0,
        _pad1: 0,
    };
    u32c("batchnorm size", n * c * l)?;
    let (mean, var) = match (mode, stats) {
        (Mode::Train, Some(s)) => {
            expect_numel("batchnorm stats", s, 2 * c)?;
            params.act = 1;
            params.var_off = params.c;
            (&s.buffer, &s.buffer)
        }
        (Mode::Train, None) => {
            return Err(SgrafError::Input(
                "batchnorm backward: train mode needs the batch statistics of the forward".into(),
            ))
        }
        (Mode::Eval, _) => (&bn.running_mean.buffer, &bn.running_var.buffer),
    };
    let k = ctx.kernel(
        &SHADER,
        "batchnorm_backward",
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
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&dy.buffer, &x.buffer, mean, var, &bn.weight.buffer, &dbn.weight.buffer, &dbn.bias.buffer, &dx.buffer],
        [params.c, 1, 1],
    );
    Ok(())
}

/// `running ← 0.9·running + 0.1·batch` (variance made unbiased with
/// `count/(count−1)`, `count` = values per channel, N·L), on the GPU;
/// `num_batches_tracked += 1` on the host.
pub fn update_running(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    bn: &mut GpuBatchNorm,
    stats: &GpuTensor,
    count: usize,
) -> Result<()> {
    let c = bn.channels;
    expect_numel("batchnorm stats", stats, 2 * c)?;
    let params = Params {
        n: u32c("batchnorm count", count)?,
        c: u32c("batchnorm C", c)?,
        l: 1,
        act: 0,
        mean_off: 0,
        var_off: 0,
        _pad0: 0,
        _pad1: 0,
    };
    let k = ctx.kernel(&SHADER, "batchnorm_update_running", &[Access::Read, Access::ReadWrite, Access::ReadWrite]);
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&stats.buffer, &bn.running_mean.buffer, &bn.running_var.buffer],
        [c.div_ceil(256) as u32, 1, 1],
    );
    bn.num_batches_tracked += 1;
    Ok(())
}
