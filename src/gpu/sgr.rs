//! Similarity Graph Reasoning (spec §6.5, `shaders/sgr.wgsl`): K unshared
//! steps of `X ← ReLU(Linear_g(softmax(Q Kᵀ) X))` over each caption's L+1
//! nodes; the result is the reasoned global node.

use super::context::{Access, GpuContext, Shader};
use super::linear::{self, Activation};
use super::params::{scratch, GpuLayout, GpuLinear, GpuSgrStep};
use super::tensor::GpuTensor;
use super::{expect_numel, u32c};
use crate::cpu::sgr::FoldedStep;
use crate::error::{Result, SgrafError};
use crate::model::params::Linear;

pub const SHADER: Shader = Shader { name: "sgr", source: include_str!("../../shaders/sgr.wgsl"), trusted: false };

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_img: u32,
    n_cap: u32,
    n_nodes: u32,
    s: u32,
    sq_total: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

fn params(lay: &GpuLayout, n_img: usize, s: usize) -> Result<Params> {
    Ok(Params {
        n_img: u32c("images", n_img)?,
        n_cap: u32c("captions", lay.n_cap())?,
        n_nodes: u32c("nodes", lay.n_nodes())?,
        s: u32c("S", s)?,
        sq_total: u32c("SGR attention entries per image", lay.sq_total)?,
        _pad0: 0,
        _pad1: 0,
        _pad2: 0,
    })
}

/// Output of [`step_forward`].
#[derive(Debug)]
pub struct SgrStepOut {
    /// `[n_img, n_nodes, S]` the new node tensor.
    pub x: GpuTensor,
    /// `[n_img, Σ_c (L_c+1)²]` edge weights A of every graph, caption c's
    /// `[L_c+1, L_c+1]` block at `sq_off[c]`.
    pub attn: GpuTensor,
}

/// `A = softmax_rows(q kᵀ)` per graph and `Y = A·x`: `(attn [n_img, sq_total], y [n_img, n_nodes, S])`.
#[allow(clippy::too_many_arguments)]
fn attend(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    q: &GpuTensor,
    k: &GpuTensor,
    x: &GpuTensor,
    lay: &GpuLayout,
    n_img: usize,
    s: usize,
) -> Result<(GpuTensor, GpuTensor)> {
    let (nn, nc) = (lay.n_nodes(), lay.n_cap());
    let max = ctx.max_groups() as usize;
    if nc > max || n_img > max {
        return Err(SgrafError::Input(format!("sgr: {n_img} images × {nc} captions exceed {max} workgroups per axis")));
    }
    let attn = scratch(ctx, &[n_img, lay.sq_total])?;
    let y = scratch(ctx, &[n_img, nn, s])?; // A·X
    u32c("SGR attention size", n_img * lay.sq_total)?;
    u32c("SGR node tensor size", n_img * nn * s)?;
    let kern = ctx.kernel(
        &SHADER,
        "sgr_forward_attend",
        &[Access::Read, Access::Read, Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite],
    );
    ctx.dispatch(
        encoder,
        &kern,
        &params(lay, n_img, s)?,
        &[&q.buffer, &k.buffer, &x.buffer, &lay.node_off.buffer, &lay.sq_off.buffer, &attn.buffer, &y.buffer],
        [nc as u32, n_img as u32, 1],
    );
    Ok((attn, y))
}

/// One step over `x [n_img, n_nodes, S]` → new `[n_img, n_nodes, S]`.
pub fn step_forward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    x: &GpuTensor,
    p: &GpuSgrStep,
    lay: &GpuLayout,
    n_img: usize,
) -> Result<SgrStepOut> {
    let (s, nn) = (p.graph.n_out, lay.n_nodes());
    expect_numel("sgr nodes", x, n_img * nn * s)?;
    let q = scratch(ctx, &[n_img, nn, s])?;
    let k = scratch(ctx, &[n_img, nn, s])?;
    linear::forward(ctx, encoder, x, &p.query.w, Some(&p.query.b), &q)?;
    linear::forward(ctx, encoder, x, &p.key.w, Some(&p.key.b), &k)?;
    let (attn, y) = attend(ctx, encoder, &q, &k, x, lay, n_img, s)?;
    let out = scratch(ctx, &[n_img, nn, s])?;
    linear::forward_act(ctx, encoder, &y, &p.graph.w, Some(&p.graph.b), &out, Activation::Relu)?;
    Ok(SgrStepOut { x: out, attn })
}

/// What the backward of one SGR step needs (`cpu::sgr::StepCache`).
#[derive(Debug)]
pub struct GpuStepCache {
    pub x: GpuTensor,    // [n_img, n_nodes, S] step input
    pub q: GpuTensor,    // [n_img, n_nodes, S] queries
    pub k: GpuTensor,    // [n_img, n_nodes, S] keys
    pub attn: GpuTensor, // [n_img, sq_total] edge weights A, caption c's block at sq_off[c]
    pub ax: GpuTensor,   // [n_img, n_nodes, S] A·X
    pub out: GpuTensor,  // [n_img, n_nodes, S] ReLU output
}

/// [`step_forward`] keeping activations (same values); `x` is copied.
pub fn step_forward_train(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    x: &GpuTensor,
    p: &GpuSgrStep,
    lay: &GpuLayout,
    n_img: usize,
) -> Result<GpuStepCache> {
    let (s, nn) = (p.graph.n_out, lay.n_nodes());
    expect_numel("sgr nodes", x, n_img * nn * s)?;
    let xc = scratch(ctx, &[n_img, nn, s])?;
    encoder.copy_buffer_to_buffer(&x.buffer, 0, &xc.buffer, 0, (n_img * nn * s * 4) as u64);
    let q = scratch(ctx, &[n_img, nn, s])?;
    let k = scratch(ctx, &[n_img, nn, s])?;
    linear::forward(ctx, encoder, &xc, &p.query.w, Some(&p.query.b), &q)?;
    linear::forward(ctx, encoder, &xc, &p.key.w, Some(&p.key.b), &k)?;
    let (attn, ax) = attend(ctx, encoder, &q, &k, &xc, lay, n_img, s)?;
    let out = scratch(ctx, &[n_img, nn, s])?;
    linear::forward_act(ctx, encoder, &ax, &p.graph.w, Some(&p.graph.b), &out, Activation::Relu)?;
    Ok(GpuStepCache { x: xc, q, k, attn, ax, out })
}

/// Backward of [`step_forward_train`] (`cpu::sgr::step_backward`):
/// `dout [n_img, n_nodes, S]` → `dp += …`, `dx [n_img, n_nodes, S] += …`.
/// `dp.key.b` is not touched: the key bias adds `q_i·b` to every logit of
/// row i, which the softmax ignores (its gradient is zero by construction).
#[allow(clippy::too_many_arguments)]
pub fn step_backward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    dout: &GpuTensor,
    p: &GpuSgrStep,
    lay: &GpuLayout,
    n_img: usize,
    cache: &GpuStepCache,
    dp: &GpuSgrStep,
    dx: &GpuTensor,
) -> Result<()> {
    let (s, nn, nc) = (p.graph.n_out, lay.n_nodes(), lay.n_cap());
    let numel = n_img * nn * s;
    expect_numel("sgr backward dout", dout, numel)?;
    expect_numel("sgr backward dx", dx, numel)?;
    expect_numel("sgr backward attn", &cache.attn, n_img * lay.sq_total)?;
    for (what, t) in [("x", &cache.x), ("q", &cache.q), ("k", &cache.k), ("ax", &cache.ax), ("out", &cache.out)] {
        expect_numel(what, t, numel)?;
    }
    let max = ctx.max_groups() as usize;
    if nc > max || n_img > max {
        return Err(SgrafError::Input(format!("sgr: {n_img} images × {nc} captions exceed {max} workgroups per axis")));
    }
    if numel == 0 {
        return Ok(());
    }
    u32c("SGR node tensor size", numel)?;
    u32c("SGR attention size", n_img * lay.sq_total)?;
    let prm = params(lay, n_img, s)?;
    // out = ReLU(ax·W_gᵀ + b_g)
    let dpre = scratch(ctx, &[n_img, nn, s])?;
    let kern = ctx.kernel(&SHADER, "sgr_backward_relu", &[Access::Read, Access::Read, Access::ReadWrite]);
    ctx.dispatch(
        encoder,
        &kern,
        &prm,
        &[&dout.buffer, &cache.out.buffer, &dpre.buffer],
        ctx.grid_1d(numel.div_ceil(256) as u64),
    );
    let dax = scratch(ctx, &[n_img, nn, s])?;
    linear::backward(ctx, encoder, &dpre, &cache.ax, &p.graph.w, Some(&dax), false, &dp.graph.w, Some(&dp.graph.b))?;
    // ax = A·X per graph, A = softmax(Q·Kᵀ)
    let dlogit = scratch(ctx, &[n_img, lay.sq_total])?;
    let kern = ctx.kernel(
        &SHADER,
        "sgr_backward_attend",
        &[Access::Read, Access::Read, Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite],
    );
    ctx.dispatch(
        encoder,
        &kern,
        &prm,
        &[
            &dax.buffer,
            &cache.x.buffer,
            &cache.attn.buffer,
            &lay.node_off.buffer,
            &lay.sq_off.buffer,
            &dlogit.buffer,
            &dx.buffer,
        ],
        [nc as u32, n_img as u32, 1],
    );
    let dq = scratch(ctx, &[n_img, nn, s])?;
    let dk = scratch(ctx, &[n_img, nn, s])?;
    let kern = ctx.kernel(
        &SHADER,
        "sgr_backward_qk",
        &[Access::Read, Access::Read, Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite],
    );
    ctx.dispatch(
        encoder,
        &kern,
        &prm,
        &[
            &dlogit.buffer,
            &cache.q.buffer,
            &cache.k.buffer,
            &lay.node_off.buffer,
            &lay.sq_off.buffer,
            &dq.buffer,
            &dk.buffer,
        ],
        [nc as u32, n_img as u32, 1],
    );
    linear::backward(ctx, encoder, &dq, &cache.x, &p.query.w, Some(dx), true, &dp.query.w, Some(&dp.query.b))?;
    linear::backward(ctx, encoder, &dk, &cache.x, &p.key.w, Some(dx), true, &dp.key.w, None)?;
    Ok(())
}

/// An SGR step folded for scoring only (`cpu::sgr::FoldedStep`): the
/// logits `Q Kᵀ` equal `P Xᵀ` up to a per-row constant, with
/// `P = X·Mᵀ + c`, `M = W_kᵀ W_q [S, S]`, `c = W_kᵀ b_q [S]` held as a
/// linear layer.
#[derive(Debug)]
pub struct GpuFoldedStep {
    pub pq: GpuLinear,
}

impl GpuFoldedStep {
    pub fn upload(ctx: &GpuContext, f: &FoldedStep) -> Result<Self> {
        let s = f.c.len();
        let pq = Linear { w: f.m.clone(), b: f.c.clone(), n_out: s, n_in: s };
        Ok(GpuFoldedStep { pq: GpuLinear::upload(ctx, &pq)? })
    }
}

/// Scores-only SGR (eval): equal to [`forward`]'s output up to rounding,
/// with the query/key products folded ([`GpuFoldedStep`], one S×S product
/// per node instead of two) and the last step computed for the global node
/// only. `nodes [n_img, n_nodes, S]` → `s [n_img, n_cap, S]`.
#[allow(clippy::too_many_arguments)]
pub fn forward_scores_only(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    nodes: &GpuTensor,
    steps: &[GpuSgrStep],
    folded: &[GpuFoldedStep],
    lay: &GpuLayout,
    n_img: usize,
) -> Result<GpuTensor> {
    if steps.len() != folded.len() {
        return Err(SgrafError::Input(format!("sgr: {} steps but {} folded steps", steps.len(), folded.len())));
    }
    let Some(last) = steps.len().checked_sub(1) else {
        return Err(SgrafError::Input("sgr: no reasoning steps".into()));
    };
    let (s, nn, nc) = (steps[0].graph.n_out, lay.n_nodes(), lay.n_cap());
    expect_numel("sgr nodes", nodes, n_img * nn * s)?;
    let mut cur: Option<GpuTensor> = None;
    for k in 0..last {
        let x = cur.as_ref().unwrap_or(nodes);
        let pq = scratch(ctx, &[n_img, nn, s])?; // P = X·Mᵀ + c
        linear::forward(ctx, encoder, x, &folded[k].pq.w, Some(&folded[k].pq.b), &pq)?;
        let (_, y) = attend(ctx, encoder, &pq, x, x, lay, n_img, s)?;
        let out = scratch(ctx, &[n_img, nn, s])?;
        linear::forward_act(ctx, encoder, &y, &steps[k].graph.w, Some(&steps[k].graph.b), &out, Activation::Relu)?;
        cur = Some(out);
    }
    // Last step: the global node's row only.
    let x = cur.as_ref().unwrap_or(nodes);
    let g = global_nodes(ctx, encoder, x, lay, n_img, s)?; // [n_img, n_cap, S]
    let p0 = scratch(ctx, &[n_img, nc, s])?;
    linear::forward(ctx, encoder, &g, &folded[last].pq.w, Some(&folded[last].pq.b), &p0)?;
    let logits = scratch(ctx, &[n_img, nn])?;
    let y0 = scratch(ctx, &[n_img, nc, s])?;
    let kern = ctx.kernel(
        &SHADER,
        "sgr_forward_attend_global",
        &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite],
    );
    ctx.dispatch(
        encoder,
        &kern,
        &params(lay, n_img, s)?,
        &[&p0.buffer, &x.buffer, &lay.node_off.buffer, &logits.buffer, &y0.buffer],
        [nc as u32, n_img as u32, 1],
    );
    let out = scratch(ctx, &[n_img, nc, s])?;
    linear::forward_act(ctx, encoder, &y0, &steps[last].graph.w, Some(&steps[last].graph.b), &out, Activation::Relu)?;
    Ok(out)
}

/// All steps; returns `s [n_img, n_cap, S]` (node 0 of each caption) and,
/// when `keep_steps`, the node tensor after every step.
pub fn forward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    nodes: &GpuTensor,
    steps: &[GpuSgrStep],
    lay: &GpuLayout,
    n_img: usize,
    keep_steps: bool,
) -> Result<(GpuTensor, Vec<GpuTensor>)> {
    let s = steps.first().map_or(0, |p| p.graph.n_out);
    let mut kept = Vec::new();
    let mut cur: Option<GpuTensor> = None;
    for p in steps {
        let out = step_forward(ctx, encoder, cur.as_ref().unwrap_or(nodes), p, lay, n_img)?.x;
        if let Some(prev) = cur.replace(out) {
            if keep_steps {
                kept.push(prev);
            }
        }
    }
    let last = cur.as_ref().unwrap_or(nodes);
    let sv = global_nodes(ctx, encoder, last, lay, n_img, s)?;
    if keep_steps {
        kept.extend(cur);
    }
    Ok((sv, kept))
}

/// Gathers node 0 of every (image, caption): `[n_img, n_nodes, S]` → `[n_img, n_cap, S]`.
pub fn global_nodes(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    x: &GpuTensor,
    lay: &GpuLayout,
    n_img: usize,
    s: usize,
) -> Result<GpuTensor> {
    let nc = lay.n_cap();
    expect_numel("sgr nodes", x, n_img * lay.n_nodes() * s)?;
    let out = scratch(ctx, &[n_img, nc, s])?;
    u32c("SGR output size", n_img * nc * s)?;
    let k = ctx.kernel(&SHADER, "sgr_forward_gather", &[Access::Read, Access::Read, Access::ReadWrite]);
    ctx.dispatch(
        encoder,
        &k,
        &params(lay, n_img, s)?,
        &[&x.buffer, &lay.node_off.buffer, &out.buffer],
        ctx.grid_1d((n_img * nc * s).div_ceil(256) as u64),
    );
    Ok(out)
}

/// Backward of [`global_nodes`]: `ds [n_img, n_cap, S]` → node 0 rows of
/// `dx [n_img, n_nodes, S] += …` (the other rows untouched).
pub fn global_nodes_backward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    ds: &GpuTensor,
    lay: &GpuLayout,
    n_img: usize,
    s: usize,
    dx: &GpuTensor,
) -> Result<()> {
    let nc = lay.n_cap();
    expect_numel("sgr backward ds", ds, n_img * nc * s)?;
    expect_numel("sgr backward dnodes", dx, n_img * lay.n_nodes() * s)?;
    u32c("SGR node tensor size", n_img * lay.n_nodes() * s)?;
    let k = ctx.kernel(&SHADER, "sgr_backward_gather", &[Access::Read, Access::Read, Access::ReadWrite]);
    ctx.dispatch(
        encoder,
        &k,
        &params(lay, n_img, s)?,
        &[&ds.buffer, &lay.node_off.buffer, &dx.buffer],
        ctx.grid_1d((n_img * nc * s).div_ceil(256) as u64),
    );
    Ok(())
}
