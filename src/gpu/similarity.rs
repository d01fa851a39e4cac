//! Similarity vectors (Eq. 1 as implemented, spec §6.3):
//! `l2norm(Linear((x − y)²))`, written into the graph-node tensor
//! (`shaders/similarity.wgsl`; the squared difference is fused into the
//! linear kernel's operand load).

use super::context::{Access, GpuContext, Shader};
use super::linear::{self, Gemm, SqDiff};
use super::params::{scratch, GpuLayout, GpuLinear};
use super::tensor::GpuTensor;
use super::{expect_numel, u32c};
use crate::error::Result;

pub const SHADER: Shader =
    Shader { name: "similarity", source: include_str!("../../shaders/similarity.wgsl"), trusted: false };

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    s: u32,
    n_words: u32,
    n_cap: u32,
    n_nodes: u32,
    mode: u32,
    _pad0: u32,
    _pad1: u32,
}

#[allow(clippy::too_many_arguments)]
fn scatter(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    y: &GpuTensor,
    lay: &GpuLayout,
    n_img: usize,
    s: usize,
    nodes: &GpuTensor,
    global: bool,
) -> Result<()> {
    let rows = if global { n_img * lay.n_cap() } else { n_img * lay.n_words() };
    let params = Params {
        rows: u32c("similarity rows", rows)?,
        s: u32c("S", s)?,
        n_words: u32c("words", lay.n_words())?,
        n_cap: u32c("captions", lay.n_cap())?,
        n_nodes: u32c("nodes", lay.n_nodes())?,
        mode: global as u32,
        _pad0: 0,
        _pad1: 0,
    };
    u32c("node tensor size", nodes.numel())?;
    let k = ctx.kernel(
        &SHADER,
        "similarity_forward_scatter",
        &[Access::Read, Access::Read, Access::Read, Access::ReadWrite],
    );
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&y.buffer, &lay.word_cap.buffer, &lay.node_off.buffer, &nodes.buffer],
        ctx.grid_1d(rows as u64),
    );
    Ok(())
}

/// Local: `ctx [n_img, n_words, E]`, `t [n_words, E]` → node rows
/// `node_off[c] + 1 + j` of `nodes [n_img, n_nodes, S]`. Returns the
/// projection before the l2norm, `[n_img, n_words, S]`.
#[allow(clippy::too_many_arguments)]
pub fn local_forward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    attended: &GpuTensor,
    t: &GpuTensor,
    lin: &GpuLinear,
    lay: &GpuLayout,
    n_img: usize,
    nodes: &GpuTensor,
) -> Result<GpuTensor> {
    let (e, s, nw) = (lin.n_in, lin.n_out, lay.n_words());
    expect_numel("similarity ctx", attended, n_img * nw * e)?;
    expect_numel("similarity words", t, nw * e)?;
    expect_numel("similarity nodes", nodes, n_img * lay.n_nodes() * s)?;
    let y = scratch(ctx, &[n_img, nw, s])?;
    if nw > 0 {
        let g = Gemm { sqdiff: Some(SqDiff { off: 0, ld: e, modulus: nw }), ..Gemm::linear(n_img * nw, e, s) };
        linear::gemm(ctx, encoder, attended, &lin.w, Some(&lin.b), &y, Some(t), &g)?;
    }
    scatter(ctx, encoder, &y, lay, n_img, s, nodes, false)?;
    Ok(y)
}

/// Global: `v_glo [n_img, E]`, `t_glo [n_cap, E]` → node rows `node_off[c]`
/// of `nodes [n_img, n_nodes, S]`. Returns the projection before the
/// l2norm, `[n_img, n_cap, S]`.
#[allow(clippy::too_many_arguments)]
pub fn global_forward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    v_glo: &GpuTensor,
    t_glo: &GpuTensor,
    lin: &GpuLinear,
    lay: &GpuLayout,
    n_img: usize,
    nodes: &GpuTensor,
) -> Result<GpuTensor> {
    let (e, s, nc) = (lin.n_in, lin.n_out, lay.n_cap());
    expect_numel("similarity v_glo", v_glo, n_img * e)?;
    expect_numel("similarity t_glo", t_glo, nc * e)?;
    expect_numel("similarity nodes", nodes, n_img * lay.n_nodes() * s)?;
    let y = scratch(ctx, &[n_img, nc, s])?;
    if nc > 0 {
        let g =
            Gemm { x_div: nc, sqdiff: Some(SqDiff { off: 0, ld: e, modulus: nc }), ..Gemm::linear(n_img * nc, e, s) };
        linear::gemm(ctx, encoder, v_glo, &lin.w, Some(&lin.b), &y, Some(t_glo), &g)?;
    }
    scatter(ctx, encoder, &y, lay, n_img, s, nodes, true)?;
    Ok(y)
}
