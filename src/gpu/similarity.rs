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

// ----------------------------------------------------------------------------
// Backward, all images at once (`cpu::similarity::{local,global}_backward_image`
// image by image).

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SqParams {
    rows: u32,
    e: u32,
    a_div: u32,
    b_mod: u32,
    a_rows: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

/// The shared backward: node rows of `dnodes` / `nodes` → through the
/// l2norm (`norms [rows]`) → through the Linear (`dlin += …`) on
/// `d = (a[r / a_div] − b[r % b_mod])²` → `da += 2(a − b)·dd`, `db −= 2(a − b)·dd`.
#[allow(clippy::too_many_arguments)]
fn backward_rows(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    dnodes: &GpuTensor,
    nodes: &GpuTensor,
    norms: &GpuTensor,
    a: &GpuTensor,
    b: &GpuTensor,
    lin: &GpuLinear,
    lay: &GpuLayout,
    n_img: usize,
    dlin: &GpuLinear,
    da: &GpuTensor,
    db: &GpuTensor,
    global: bool,
) -> Result<()> {
    let (e, s) = (lin.n_in, lin.n_out);
    let per_img = if global { lay.n_cap() } else { lay.n_words() };
    let rows = n_img * per_img;
    let (a_rows, b_mod) = if global { (n_img, lay.n_cap()) } else { (n_img * lay.n_words(), lay.n_words()) };
    expect_numel("similarity backward dnodes", dnodes, n_img * lay.n_nodes() * s)?;
    expect_numel("similarity backward nodes", nodes, n_img * lay.n_nodes() * s)?;
    expect_numel("similarity backward norms", norms, rows)?;
    expect_numel("similarity backward a", a, a_rows * e)?;
    expect_numel("similarity backward b", b, b_mod * e)?;
    expect_numel("similarity backward da", da, a_rows * e)?;
    expect_numel("similarity backward db", db, b_mod * e)?;
    if rows == 0 || s == 0 || e == 0 {
        return Ok(());
    }
    u32c("similarity backward size", rows * s.max(e))?;
    u32c("node tensor size", nodes.numel())?;
    // node rows → y, dy_n [rows, S]
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
    let y = scratch(ctx, &[rows, s])?;
    let dy_n = scratch(ctx, &[rows, s])?;
    let k = ctx.kernel(
        &SHADER,
        "similarity_backward_gather",
        &[Access::Read, Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite],
    );
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&dnodes.buffer, &nodes.buffer, &lay.word_cap.buffer, &lay.node_off.buffer, &y.buffer, &dy_n.buffer],
        ctx.grid_1d((rows * s).div_ceil(256) as u64),
    );
    // through the l2norm
    let dy = scratch(ctx, &[rows, s])?;
    super::l2norm::backward(ctx, encoder, &dy_n, &y, norms, &dy, s, false)?;
    // the Linear's input d = (a − b)², then its backward
    let sq = SqParams {
        rows: params.rows,
        e: u32c("E", e)?,
        a_div: if global { params.n_cap } else { 1 },
        b_mod: u32c("similarity b rows", b_mod)?,
        a_rows: u32c("similarity a rows", a_rows)?,
        _pad0: 0,
        _pad1: 0,
        _pad2: 0,
    };
    let d = scratch(ctx, &[rows, e])?;
    let k = ctx.kernel(&SHADER, "similarity_backward_sqdiff_input", &[Access::Read, Access::Read, Access::ReadWrite]);
    ctx.dispatch(encoder, &k, &sq, &[&a.buffer, &b.buffer, &d.buffer], ctx.grid_1d((rows * e).div_ceil(256) as u64));
    let dd = scratch(ctx, &[rows, e])?;
    linear::backward(ctx, encoder, &dy, &d, &lin.w, Some(&dd), false, &dlin.w, Some(&dlin.b))?;
    // through the squared difference
    let k = ctx.kernel(
        &SHADER,
        "similarity_backward_sqdiff",
        &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite],
    );
    ctx.dispatch(
        encoder,
        &k,
        &sq,
        &[&a.buffer, &b.buffer, &dd.buffer, &da.buffer, &db.buffer],
        ctx.grid_1d(((a_rows + b_mod) * e).div_ceil(256) as u64),
    );
    Ok(())
}

/// Backward of [`local_forward`] for all images: the word rows of
/// `dnodes [n_img, n_nodes, S]`, with `nodes` the forward's output and
/// `norms [n_img, n_words]` the projections' norms (without the eps) →
/// `dlin += …`, `dctx [n_img, n_words, E] += …`, `dt [n_words, E] += …`
/// (summed over images in image order).
#[allow(clippy::too_many_arguments)]
pub fn local_backward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    dnodes: &GpuTensor,
    nodes: &GpuTensor,
    norms: &GpuTensor,
    attended: &GpuTensor,
    t: &GpuTensor,
    lin: &GpuLinear,
    lay: &GpuLayout,
    n_img: usize,
    dlin: &GpuLinear,
    dctx: &GpuTensor,
    dt: &GpuTensor,
) -> Result<()> {
    backward_rows(ctx, encoder, dnodes, nodes, norms, attended, t, lin, lay, n_img, dlin, dctx, dt, false)
}

/// Backward of [`global_forward`] for all images: the global rows of
/// `dnodes [n_img, n_nodes, S]`, `norms [n_img, n_cap]` →
/// `dlin += …`, `dv_glo [n_img, E] += …`, `dt_glo [n_cap, E] += …`.
#[allow(clippy::too_many_arguments)]
pub fn global_backward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    dnodes: &GpuTensor,
    nodes: &GpuTensor,
    norms: &GpuTensor,
    v_glo: &GpuTensor,
    t_glo: &GpuTensor,
    lin: &GpuLinear,
    lay: &GpuLayout,
    n_img: usize,
    dlin: &GpuLinear,
    dv_glo: &GpuTensor,
    dt_glo: &GpuTensor,
) -> Result<()> {
    backward_rows(ctx, encoder, dnodes, nodes, norms, v_glo, t_glo, lin, lay, n_img, dlin, dv_glo, dt_glo, true)
}
