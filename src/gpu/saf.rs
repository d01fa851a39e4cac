//! Similarity Attention Filtration (spec §6.6, `shaders/saf.wgsl`):
//! per-node weights `l1norm(σ(BN(Linear_a(X))))`, then `l2norm(Σ β X)`.

use super::context::{Access, GpuContext, Shader};
use super::params::{scratch, GpuLayout, GpuSaf};
use super::tensor::GpuTensor;
use super::{expect_numel, u32c};
use crate::error::{Result, SgrafError};
use crate::model::params::Mode;

pub const SHADER: Shader = Shader { name: "saf", source: include_str!("../../shaders/saf.wgsl"), trusted: false };

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_img: u32,
    n_cap: u32,
    n_nodes: u32,
    s: u32,
    train: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

/// Output of [`forward`].
#[derive(Debug)]
pub struct SafOut {
    /// `[n_img, n_cap, S]` filtered, l2-normalised similarity vectors.
    pub s: GpuTensor,
    /// `[n_img, n_nodes]` BatchNorm output before σ.
    pub bn_out: GpuTensor,
    /// `[n_img, n_nodes]` normalised node weights β.
    pub weights: GpuTensor,
    /// Train mode: `[2, n_cap]` per-caption batch mean and biased variance.
    pub stats: Option<GpuTensor>,
}

/// `nodes [n_img, n_nodes, S]` → `s [n_img, n_cap, S]`. In train mode the
/// BatchNorm statistics of caption c are taken over all n_img × (L_c+1)
/// values; apply them with [`update_running`].
pub fn forward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    nodes: &GpuTensor,
    p: &GpuSaf,
    lay: &GpuLayout,
    n_img: usize,
    mode: Mode,
) -> Result<SafOut> {
    let (s, nn, nc) = (p.attn.n_in, lay.n_nodes(), lay.n_cap());
    expect_numel("saf nodes", nodes, n_img * nn * s)?;
    if p.attn.n_out != 1 || p.bn.channels != 1 {
        return Err(SgrafError::Input("saf: Linear_a must have 1 output and BatchNorm 1 channel".into()));
    }
    let max = ctx.max_groups() as usize;
    if nc > max || n_img > max {
        return Err(SgrafError::Input(format!("saf: {n_img} images × {nc} captions exceed {max} workgroups per axis")));
    }
    u32c("SAF node tensor size", n_img * nn * s)?;
    let params = Params {
        n_img: u32c("images", n_img)?,
        n_cap: u32c("captions", nc)?,
        n_nodes: u32c("nodes", nn)?,
        s: u32c("S", s)?,
        train: (mode == Mode::Train) as u32,
        _pad0: 0,
        _pad1: 0,
        _pad2: 0,
    };
    // β = X·w_a + b_a                                              [n_img, n_nodes]
    let beta = scratch(ctx, &[n_img, nn])?;
    let k = ctx.kernel(&SHADER, "saf_forward_logits", &[Access::Read, Access::Read, Access::Read, Access::ReadWrite]);
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&nodes.buffer, &p.attn.w.buffer, &p.attn.b.buffer, &beta.buffer],
        ctx.grid_1d((n_img * nn).div_ceil(32) as u64),
    );
    // BatchNorm1d(1) as a per-caption affine map                   [2, n_cap]
    let stats = scratch(ctx, &[2, nc])?;
    let coef = scratch(ctx, &[2, nc])?;
    let k = ctx.kernel(
        &SHADER,
        "saf_forward_stats",
        &[
            Access::Read,
            Access::Read,
            Access::Read,
            Access::Read,
            Access::Read,
            Access::Read,
            Access::ReadWrite,
            Access::ReadWrite,
        ],
    );
    let bn = &p.bn;
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[
            &beta.buffer,
            &lay.node_off.buffer,
            &bn.weight.buffer,
            &bn.bias.buffer,
            &bn.running_mean.buffer,
            &bn.running_var.buffer,
            &stats.buffer,
            &coef.buffer,
        ],
        [nc as u32, 1, 1],
    );
    // σ, l1 weights, pooled vector                                 [n_img, n_cap, S]
    let weights = scratch(ctx, &[n_img, nn])?;
    let s_out = scratch(ctx, &[n_img, nc, s])?;
    let k = ctx.kernel(
        &SHADER,
        "saf_forward_pool",
        &[Access::ReadWrite, Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite],
    );
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&beta.buffer, &coef.buffer, &nodes.buffer, &lay.node_off.buffer, &weights.buffer, &s_out.buffer],
        [nc as u32, n_img as u32, 1],
    );
    Ok(SafOut { s: s_out, bn_out: beta, weights, stats: (mode == Mode::Train).then_some(stats) })
}

/// Backward of [`forward`], as `cpu::saf::{filter_backward,
/// caption_batch_norm_backward, attn_logits_backward}` in a row:
/// `ds [n_img, n_cap, S]` with `fwd` the same call's [`SafOut`] →
/// `dp += …` (attn, bn), `dnodes [n_img, n_nodes, S] += …`. In train mode
/// `dp.attn.b` is not touched: the per-caption BatchNorm removes any constant
/// (zero gradient by construction). `S ≤ 1024`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    ds: &GpuTensor,
    nodes: &GpuTensor,
    p: &GpuSaf,
    lay: &GpuLayout,
    n_img: usize,
    mode: Mode,
    fwd: &SafOut,
    dp: &GpuSaf,
    dnodes: &GpuTensor,
) -> Result<()> {
    let (s, nn, nc) = (p.attn.n_in, lay.n_nodes(), lay.n_cap());
    expect_numel("saf backward ds", ds, n_img * nc * s)?;
    expect_numel("saf backward nodes", nodes, n_img * nn * s)?;
    expect_numel("saf backward dnodes", dnodes, n_img * nn * s)?;
    expect_numel("saf backward bn_out", &fwd.bn_out, n_img * nn)?;
    expect_numel("saf backward weights", &fwd.weights, n_img * nn)?;
    if p.attn.n_out != 1 || p.bn.channels != 1 || dp.attn.n_in != s || dp.bn.channels != 1 {
        return Err(SgrafError::Input("saf backward: Linear_a must have 1 output and BatchNorm 1 channel".into()));
    }
    if s > 1024 {
        return Err(SgrafError::Input(format!("saf backward: S = {s} exceeds 1024")));
    }
    let max = ctx.max_groups() as usize;
    if nc > max || n_img > max {
        return Err(SgrafError::Input(format!("saf: {n_img} images × {nc} captions exceed {max} workgroups per axis")));
    }
    if n_img * nn == 0 {
        return Ok(());
    }
    u32c("SAF node tensor size", n_img * nn * s)?;
    let params = Params {
        n_img: u32c("images", n_img)?,
        n_cap: u32c("captions", nc)?,
        n_nodes: u32c("nodes", nn)?,
        s: u32c("S", s)?,
        train: (mode == Mode::Train) as u32,
        _pad0: 0,
        _pad1: 0,
        _pad2: 0,
    };
    // σ, l1 weights, weighted sum, l2norm → dBN-out                 [n_img, n_nodes]
    let dbeta = scratch(ctx, &[n_img, nn, 1])?;
    let k = ctx.kernel(
        &SHADER,
        "saf_backward_filter",
        &[Access::Read, Access::Read, Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite],
    );
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[
            &ds.buffer,
            &nodes.buffer,
            &fwd.bn_out.buffer,
            &fwd.weights.buffer,
            &lay.node_off.buffer,
            &dnodes.buffer,
            &dbeta.buffer,
        ],
        [nc as u32, n_img as u32, 1],
    );
    // the BatchNorm's input β, recomputed                          [n_img, n_nodes]
    let beta = scratch(ctx, &[n_img, nn])?;
    let k = ctx.kernel(&SHADER, "saf_forward_logits", &[Access::Read, Access::Read, Access::Read, Access::ReadWrite]);
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&nodes.buffer, &p.attn.w.buffer, &p.attn.b.buffer, &beta.buffer],
        ctx.grid_1d((n_img * nn).div_ceil(32) as u64),
    );
    // per-caption BatchNorm1d(1): dBN-out → dβ in place
    let (mean, var) = match (mode, &fwd.stats) {
        (Mode::Train, Some(st)) => {
            expect_numel("saf stats", st, 2 * nc)?;
            (&st.buffer, &st.buffer)
        }
        (Mode::Train, None) => {
            return Err(SgrafError::Input("saf backward: train mode needs the forward's batch statistics".into()))
        }
        (Mode::Eval, _) => (&p.bn.running_mean.buffer, &p.bn.running_var.buffer),
    };
    let k = ctx.kernel(
        &SHADER,
        "saf_backward_bn",
        &[
            Access::ReadWrite,
            Access::Read,
            Access::Read,
            Access::Read,
            Access::Read,
            Access::Read,
            Access::ReadWrite,
            Access::ReadWrite,
        ],
    );
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[
            &dbeta.buffer,
            &beta.buffer,
            &lay.node_off.buffer,
            mean,
            var,
            &p.bn.weight.buffer,
            &dp.bn.weight.buffer,
            &dp.bn.bias.buffer,
        ],
        [1, 1, 1],
    );
    // β = X·w_a + b_a
    let db = (mode == Mode::Eval).then_some(&dp.attn.b);
    super::linear::backward(ctx, encoder, &dbeta, nodes, &p.attn.w, Some(dnodes), true, &dp.attn.w, db)?;
    Ok(())
}

/// Updates the BatchNorm running statistics once per caption, in caption
/// order, with the statistics of a train-mode [`forward`] (as the official
/// loop over captions does); `num_batches_tracked += n_cap`.
pub fn update_running(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    p: &mut GpuSaf,
    stats: &GpuTensor,
    lay: &GpuLayout,
    n_img: usize,
) -> Result<()> {
    let nc = lay.n_cap();
    expect_numel("saf stats", stats, 2 * nc)?;
    let params = Params {
        n_img: u32c("images", n_img)?,
        n_cap: u32c("captions", nc)?,
        n_nodes: u32c("nodes", lay.n_nodes())?,
        s: 0,
        train: 1,
        _pad0: 0,
        _pad1: 0,
        _pad2: 0,
    };
    let k =
        ctx.kernel(&SHADER, "saf_forward_running", &[Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite]);
    ctx.dispatch(
        encoder,
        &k,
        &params,
        &[&stats.buffer, &lay.node_off.buffer, &p.bn.running_mean.buffer, &p.bn.running_var.buffer],
        [1, 1, 1],
    );
    p.bn.num_batches_tracked += nc as i64;
    Ok(())
}
