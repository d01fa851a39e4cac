//! Score head `σ(Linear_eval(s))` (spec §6.7, `shaders/head.wgsl`).

use super::context::{Access, GpuContext, Shader};
use super::linear::{self, Gemm};
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

/// Backward of [`forward`], as `cpu::head::backward`: `dscore [p]`, the
/// forward's input `s [p, S]` and `scores [p]` → `ds [p, S] +=` (skipped when
/// `None`), `dlin.w [1, S] +=`, `dlin.b [1] +=`. Returns `dlogit [p]`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    dscore: &GpuTensor,
    s: &GpuTensor,
    scores: &GpuTensor,
    lin: &GpuLinear,
    dlin: &GpuLinear,
    ds: Option<&GpuTensor>,
    p: usize,
) -> Result<GpuTensor> {
    if lin.n_out != 1 || dlin.n_out != 1 || dlin.n_in != lin.n_in {
        return Err(SgrafError::Input(format!(
            "head backward: Linear_eval {}→{} and its gradient {}→{} should both be S→1",
            lin.n_in, lin.n_out, dlin.n_in, dlin.n_out
        )));
    }
    expect_numel("head backward dscore", dscore, p)?;
    expect_numel("head backward scores", scores, p)?;
    expect_numel("head backward input", s, p * lin.n_in)?;
    if let Some(ds) = ds {
        expect_numel("head backward ds", ds, p * lin.n_in)?;
    }
    let dlogit = scratch(ctx, &[p, 1])?;
    let params = Params { rows: u32c("pairs", p)?, s: u32c("S", lin.n_in)?, _pad0: 0, _pad1: 0 };
    let k = ctx.kernel(&SHADER, "head_backward", &[Access::Read, Access::Read, Access::ReadWrite]);
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&dscore.buffer, &scores.buffer, &dlogit.buffer],
        ctx.grid_1d(p.div_ceil(256) as u64),
    );
    // The Linear S → 1 on p rows of S (any shape of `s` holding p·S values).
    let sd = lin.n_in;
    if let Some(ds) = ds {
        // ds [p, S] += dlogit [p, 1] · w [1, S]
        let g = Gemm { trans_w: false, ldw: sd, accumulate: true, ..Gemm::linear(p, 1, sd) };
        linear::gemm(ctx, encoder, &dlogit, &lin.w, None, ds, None, &g)?;
    }
    // dw [1, S] += dlogit [p, 1]ᵀ · s [p, S] (rows split over workgroups)
    linear::weight_grad(ctx, encoder, &dlogit, s, &dlin.w, p, sd, 1)?;
    // db [1] += Σ_p dlogit
    linear::column_sum(ctx, encoder, &dlogit, &dlin.b, p, 1, 1, 0, 0, true)?;
    Ok(dlogit)
}
