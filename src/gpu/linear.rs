//! Linear layers and batched matrix products (`shaders/linear.wgsl`).
//!
//! One tiled kernel serves every product: `y[b] = act(x[b] · B[b] + bias)`
//! with `B[b] = w[b]ᵀ` (nn.Linear layout `[n, k]`) or `B[b] = w[b]`
//! (`[k, n]`), element offsets, row strides and batch strides (0 = shared).

use super::context::{Access, GpuContext, Shader};
use super::tensor::GpuTensor;
use crate::error::{Result, SgrafError};

pub const SHADER: Shader = Shader { name: "linear", source: include_str!("../../shaders/linear.wgsl"), trusted: true };

const TILE: usize = 128;

/// Element-wise function applied after the bias (and accumulation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Activation {
    #[default]
    None,
    Relu,
    Tanh,
    Sigmoid,
}

impl Activation {
    fn code(self) -> u32 {
        match self {
            Activation::None => 0,
            Activation::Relu => 1,
            Activation::Tanh => 2,
            Activation::Sigmoid => 3,
        }
    }
}

/// Full description of one (batched) product. Offsets, strides and sizes
/// are in elements. Build it with [`Gemm::linear`] or [`Gemm::batched`] and
/// adjust fields as needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batch: usize,
    /// `w` is `[n, k]` (nn.Linear) instead of `[k, n]`.
    pub trans_w: bool,
    pub x_off: usize,
    pub w_off: usize,
    pub y_off: usize,
    pub b_off: usize,
    pub ldx: usize,
    pub ldw: usize,
    pub ldy: usize,
    pub x_bstride: usize,
    pub w_bstride: usize,
    pub y_bstride: usize,
    /// `y += …` instead of `y = …`.
    pub accumulate: bool,
    pub act: Activation,
    /// Row `i` of A reads row `i / x_div` of `x` (1 = dense; e.g. the image
    /// of a pair in `pairs [n_img·n_cap, ·]`).
    pub x_div: usize,
    /// `Some` = A is `(x[i / x_div] − x2[i % x2_mod])²` element-wise (see
    /// [`SqDiff`]); `None` = A is `x`.
    pub sqdiff: Option<SqDiff>,
}

/// The second operand of the fused `(x − x2)²` prologue: row `i` of A
/// subtracts row `i % modulus` of `x2` (element offset `off`, row stride `ld`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SqDiff {
    pub off: usize,
    pub ld: usize,
    pub modulus: usize,
}

impl Gemm {
    /// `y[m, n] = x[m, k] · w[n, k]ᵀ (+ b)`, all dense.
    pub fn linear(m: usize, k: usize, n: usize) -> Self {
        Gemm {
            m,
            n,
            k,
            batch: 1,
            trans_w: true,
            x_off: 0,
            w_off: 0,
            y_off: 0,
            b_off: 0,
            ldx: k,
            ldw: k,
            ldy: n,
            x_bstride: 0,
            w_bstride: 0,
            y_bstride: 0,
            accumulate: false,
            act: Activation::None,
            x_div: 1,
            sqdiff: None,
        }
    }

    /// `y[b] = x[b] · w[b]` (`w[b]` is `[k, n]`, or `[n, k]` with
    /// `trans_w`), dense operands, every operand with its own batch entry.
    pub fn batched(batch: usize, m: usize, k: usize, n: usize, trans_w: bool) -> Self {
        Gemm {
            batch,
            trans_w,
            ldw: if trans_w { k } else { n },
            x_bstride: m * k,
            w_bstride: k * n,
            y_bstride: m * n,
            ..Gemm::linear(m, k, n)
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    flags: u32,
    batch: u32,
    x_off: u32,
    w_off: u32,
    y_off: u32,
    ldx: u32,
    ldw: u32,
    ldy: u32,
    b_off: u32,
    x_bstride: u32,
    w_bstride: u32,
    y_bstride: u32,
    x_div: u32,
    x2_off: u32,
    ldx2: u32,
    x2_mod: u32,
    _pad: u32,
}

fn u32_of(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| SgrafError::Input(format!("linear: {what} = {v} does not fit in u32")))
}

/// Last element touched by a strided operand plus one (0 when empty).
fn extent(off: usize, batch: usize, bstride: usize, rows: usize, ld: usize, cols: usize) -> usize {
    if batch == 0 || rows == 0 || cols == 0 {
        return 0;
    }
    off + (batch - 1) * bstride + (rows - 1) * ld + cols
}

/// Record `y[b] = act(x[b] · B[b] + bias)` described by `g` (see [`Gemm`]).
///
/// Bindings: `x` read at `x_off + b·x_bstride + i·ldx + kk`; `w` at
/// `w_off + b·w_bstride + j·ldw + kk` (`trans_w`) or `… + kk·ldw + j`;
/// `bias` (optional) at `b_off + j`; `y` written at
/// `y_off + b·y_bstride + i·ldy + j`; with `g.sqdiff`, `x2` is read at
/// `off + (i % modulus)·ld + kk`. Every access is checked against the
/// tensors' sizes before recording.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    x: &GpuTensor,
    w: &GpuTensor,
    bias: Option<&GpuTensor>,
    y: &GpuTensor,
    x2: Option<&GpuTensor>,
    g: &Gemm,
) -> Result<()> {
    if g.x_div == 0 || g.sqdiff.is_some_and(|d| d.modulus == 0) {
        return Err(SgrafError::Input(format!("linear: zero row divisor or modulus in {g:?}")));
    }
    if g.sqdiff.is_some() != x2.is_some() {
        return Err(SgrafError::Input("linear: x2 must be given exactly when sqdiff is set".into()));
    }
    let (wr, wc) = if g.trans_w { (g.n, g.k) } else { (g.k, g.n) };
    let x_rows = if g.m == 0 { 0 } else { (g.m - 1) / g.x_div + 1 };
    let x2_need = match (g.sqdiff, g.m) {
        (Some(d), m) if m > 0 => extent(d.off, 1, 0, m.min(d.modulus), d.ld, g.k),
        _ => 0,
    };
    let checks = [
        ("x2", x2_need, x2.map_or(0, |t| t.numel())),
        ("x", extent(g.x_off, g.batch, g.x_bstride, x_rows, g.ldx, g.k), x.numel()),
        ("w", extent(g.w_off, g.batch, g.w_bstride, wr, g.ldw, wc), w.numel()),
        ("y", extent(g.y_off, g.batch, g.y_bstride, g.m, g.ldy, g.n), y.numel()),
        ("bias", bias.map_or(0, |_| if g.n == 0 { 0 } else { g.b_off + g.n }), bias.map_or(0, |b| b.numel())),
    ];
    for (what, need, have) in checks {
        if need > have {
            return Err(SgrafError::Input(format!("linear: {what} needs {need} elements for {g:?} but holds {have}")));
        }
    }
    if g.m == 0 || g.n == 0 || g.batch == 0 {
        return Ok(());
    }
    let grid = [g.n.div_ceil(TILE), g.m.div_ceil(TILE), g.batch];
    let max = ctx.max_groups() as usize;
    if grid.iter().any(|&v| v > max) {
        return Err(SgrafError::Input(format!(
            "linear: grid {grid:?} exceeds {max} workgroups per dimension; split the product"
        )));
    }
    let mut flags = g.act.code() << 4;
    if bias.is_some() {
        flags |= 1;
    }
    if g.trans_w {
        flags |= 2;
    }
    if g.accumulate {
        flags |= 4;
    }
    if g.sqdiff.is_some() {
        flags |= 8;
    }
    let d = g.sqdiff.unwrap_or(SqDiff { off: 0, ld: 0, modulus: 1 });
    let params = Params {
        m: u32_of("m", g.m)?,
        n: u32_of("n", g.n)?,
        k: u32_of("k", g.k)?,
        flags,
        batch: u32_of("batch", g.batch)?,
        x_off: u32_of("x_off", g.x_off)?,
        w_off: u32_of("w_off", g.w_off)?,
        y_off: u32_of("y_off", g.y_off)?,
        ldx: u32_of("ldx", g.ldx)?,
        ldw: u32_of("ldw", g.ldw)?,
        ldy: u32_of("ldy", g.ldy)?,
        b_off: u32_of("b_off", g.b_off)?,
        x_bstride: u32_of("x_bstride", g.x_bstride)?,
        w_bstride: u32_of("w_bstride", g.w_bstride)?,
        y_bstride: u32_of("y_bstride", g.y_bstride)?,
        x_div: u32_of("x_div", g.x_div)?,
        x2_off: u32_of("x2 offset", d.off)?,
        ldx2: u32_of("x2 row stride", d.ld)?,
        x2_mod: u32_of("x2 modulus", d.modulus)?,
        _pad: 0,
    };
    // Element indices are computed in u32 inside the kernel.
    for (what, t) in [("x", x), ("w", w), ("y", y)] {
        u32_of(what, t.numel())?;
    }
    let kernel = ctx.kernel(
        &SHADER,
        "linear_forward",
        &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::Read],
    );
    let b = bias.map_or(ctx.dummy(), |b| &b.buffer);
    let x2 = x2.map_or(ctx.dummy(), |t| &t.buffer);
    ctx.dispatch(encoder, &kernel, &params, &[&x.buffer, &w.buffer, b, &y.buffer, x2], grid.map(|v| v as u32));
    Ok(())
}

/// `y [.., n] = x [.., k] · w [n, k]ᵀ + b [n]` (nn.Linear); `x` may have any
/// leading axes, `m` = their product, `y` must hold `m·n` values.
pub fn forward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    x: &GpuTensor,
    w: &GpuTensor,
    b: Option<&GpuTensor>,
    y: &GpuTensor,
) -> Result<()> {
    forward_act(ctx, encoder, x, w, b, y, Activation::None)
}

/// [`forward`] followed by an element-wise activation, in the same kernel.
pub fn forward_act(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    x: &GpuTensor,
    w: &GpuTensor,
    b: Option<&GpuTensor>,
    y: &GpuTensor,
    act: Activation,
) -> Result<()> {
    if w.shape.len() != 2 {
        return Err(SgrafError::Input(format!("linear: weight shape {:?} is not [out, in]", w.shape)));
    }
    let (n, k) = (w.shape[0], w.shape[1]);
    if x.shape.last() != Some(&k) {
        return Err(SgrafError::Input(format!("linear: input shape {:?} does not end in {k}", x.shape)));
    }
    let m = x.numel() / k.max(1);
    if let Some(b) = b {
        b.expect_shape("linear bias", &[n])?;
    }
    if y.numel() != m * n || y.shape.last() != Some(&n) {
        return Err(SgrafError::Input(format!("linear: output shape {:?}, expected [{m}, {n}]", y.shape)));
    }
    gemm(ctx, encoder, x, w, b, y, None, &Gemm { act, ..Gemm::linear(m, k, n) })
}

/// Batched product `y [B, m, n] = x [B, m, k] · w [B, k, n]` (or `w [B, n, k]`
/// transposed when `trans_w`). A rank-2 `x` or `w` is shared by every batch
/// entry (batch stride 0).
pub fn batched_forward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    x: &GpuTensor,
    w: &GpuTensor,
    y: &GpuTensor,
    trans_w: bool,
) -> Result<()> {
    let bad = || {
        SgrafError::Input(format!(
            "batched linear: shapes x {:?}, w {:?}, y {:?} do not fit [B, m, k]·[B, {}] = [B, m, n]",
            x.shape,
            w.shape,
            y.shape,
            if trans_w { "n, k" } else { "k, n" }
        ))
    };
    if y.shape.len() != 3 || !(2..=3).contains(&x.shape.len()) || !(2..=3).contains(&w.shape.len()) {
        return Err(bad());
    }
    let (batch, m, n) = (y.shape[0], y.shape[1], y.shape[2]);
    let xs = &x.shape[x.shape.len() - 2..];
    let ws = &w.shape[w.shape.len() - 2..];
    let k = xs[1];
    let (wk, wn) = if trans_w { (ws[1], ws[0]) } else { (ws[0], ws[1]) };
    if xs[0] != m || wk != k || wn != n {
        return Err(bad());
    }
    if (x.shape.len() == 3 && x.shape[0] != batch) || (w.shape.len() == 3 && w.shape[0] != batch) {
        return Err(bad());
    }
    let mut g = Gemm::batched(batch, m, k, n, trans_w);
    if x.shape.len() == 2 {
        g.x_bstride = 0;
    }
    if w.shape.len() == 2 {
        g.w_bstride = 0;
    }
    gemm(ctx, encoder, x, w, None, y, None, &g)
}

// ---------------------------------------------------------------------------
// Backward

/// Record `y[b] (+)= A[b] · B[b]` with A transposed: `A[b][i, kk] = x[b][kk, i]`
/// (`x` is `[batch, k, m]`, read at `x_off + b·x_bstride + kk·ldx + i`) and `B`
/// as in [`gemm`] (`w [n, k]` with `trans_w`, else `[k, n]`). The weight
/// gradient of a Linear is `dw [n_out, n_in] += dy [rows, n_out]ᵀ · x [rows, n_in]`:
/// `m = n_out`, `n = n_in`, `k = rows`, `x = dy`, `w = x` plain.
///
/// `g.bias`-like fields, `act`, `x_div` and `sqdiff` must be off (checked).
pub fn gemm_tn(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    x: &GpuTensor,
    w: &GpuTensor,
    y: &GpuTensor,
    g: &Gemm,
) -> Result<()> {
    if g.x_div != 1 || g.sqdiff.is_some() || g.act != Activation::None {
        return Err(SgrafError::Input(format!("linear backward: x_div, sqdiff and act are not supported in {g:?}")));
    }
    let (wr, wc) = if g.trans_w { (g.n, g.k) } else { (g.k, g.n) };
    let checks = [
        ("x", extent(g.x_off, g.batch, g.x_bstride, g.k, g.ldx, g.m), x.numel()),
        ("w", extent(g.w_off, g.batch, g.w_bstride, wr, g.ldw, wc), w.numel()),
        ("y", extent(g.y_off, g.batch, g.y_bstride, g.m, g.ldy, g.n), y.numel()),
    ];
    for (what, need, have) in checks {
        if need > have {
            return Err(SgrafError::Input(format!(
                "linear backward: {what} needs {need} elements for {g:?} but holds {have}"
            )));
        }
    }
    if g.m == 0 || g.n == 0 || g.batch == 0 {
        return Ok(());
    }
    let grid = [g.n.div_ceil(TILE), g.m.div_ceil(TILE), g.batch];
    let max = ctx.max_groups() as usize;
    if grid.iter().any(|&v| v > max) {
        return Err(SgrafError::Input(format!(
            "linear backward: grid {grid:?} exceeds {max} workgroups per dimension; split the product"
        )));
    }
    let mut flags = 0;
    if g.trans_w {
        flags |= 2;
    }
    if g.accumulate {
        flags |= 4;
    }
    let params = Params {
        m: u32_of("m", g.m)?,
        n: u32_of("n", g.n)?,
        k: u32_of("k", g.k)?,
        flags,
        batch: u32_of("batch", g.batch)?,
        x_off: u32_of("x_off", g.x_off)?,
        w_off: u32_of("w_off", g.w_off)?,
        y_off: u32_of("y_off", g.y_off)?,
        ldx: u32_of("ldx", g.ldx)?,
        ldw: u32_of("ldw", g.ldw)?,
        ldy: u32_of("ldy", g.ldy)?,
        b_off: 0,
        x_bstride: u32_of("x_bstride", g.x_bstride)?,
        w_bstride: u32_of("w_bstride", g.w_bstride)?,
        y_bstride: u32_of("y_bstride", g.y_bstride)?,
        x_div: 1,
        x2_off: 0,
        ldx2: 0,
        x2_mod: 1,
        _pad: 0,
    };
    for (what, t) in [("x", x), ("w", w), ("y", y)] {
        u32_of(what, t.numel())?;
    }
    let kernel = ctx.kernel(
        &SHADER,
        "linear_backward",
        &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::Read],
    );
    let d = ctx.dummy();
    ctx.dispatch(encoder, &kernel, &params, &[&x.buffer, &w.buffer, d, &y.buffer, d], grid.map(|v| v as u32));
    Ok(())
}

/// Rows per split above which [`column_sum`] splits the rows over workgroups.
const SUM_CHUNK: usize = 2048;
/// Most row splits of [`column_sum`].
const SUM_MAX_SPLITS: usize = 256;

/// Record column sums `y[y_off + j] (+)= Σ_{i < rows} x[x_off + i·ldx + j]`
/// for `j < n` (deterministic: a fixed order per column). Many rows are split
/// over up to 256 workgroups per column block, whose partial sums a second
/// dispatch adds. The bias gradient of a Linear is
/// `column_sum(ctx, enc, dy, db, rows, n_out, n_out, 0, 0, true)`.
#[allow(clippy::too_many_arguments)]
pub fn column_sum(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    x: &GpuTensor,
    y: &GpuTensor,
    rows: usize,
    n: usize,
    ldx: usize,
    x_off: usize,
    y_off: usize,
    accumulate: bool,
) -> Result<()> {
    let checks = [("x", extent(x_off, 1, 0, rows, ldx, n), x.numel()), ("y", extent(y_off, 1, 0, 1, 0, n), y.numel())];
    for (what, need, have) in checks {
        if need > have {
            return Err(SgrafError::Input(format!(
                "linear column sum: {what} needs {need} elements ({rows} rows of {n}, stride {ldx}) but holds {have}"
            )));
        }
    }
    if n == 0 {
        return Ok(());
    }
    let splits = rows.div_ceil(SUM_CHUNK).clamp(1, SUM_MAX_SPLITS);
    if splits == 1 {
        return column_sum_pass(ctx, encoder, x, y, rows, n, ldx, x_off, y_off, 1, rows, accumulate);
    }
    let chunk = rows.div_ceil(splits);
    let splits = rows.div_ceil(chunk);
    let partials = GpuTensor::scratch(ctx, &[splits, n], super::DType::F32)?;
    column_sum_pass(ctx, encoder, x, &partials, rows, n, ldx, x_off, 0, splits, chunk, false)?;
    column_sum_pass(ctx, encoder, &partials, y, splits, n, n, 0, y_off, 1, splits, accumulate)
}

/// One dispatch of `linear_backward_bias`: split `s < splits` sums rows
/// `[s·chunk, min((s+1)·chunk, rows))` into `y[y_off + s·n + j]`.
#[allow(clippy::too_many_arguments)]
fn column_sum_pass(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    x: &GpuTensor,
    y: &GpuTensor,
    rows: usize,
    n: usize,
    ldx: usize,
    x_off: usize,
    y_off: usize,
    splits: usize,
    chunk: usize,
    accumulate: bool,
) -> Result<()> {
    let params = Params {
        m: 1,
        n: u32_of("n", n)?,
        k: u32_of("rows", rows)?,
        flags: if accumulate { 4 } else { 0 },
        batch: 1,
        x_off: u32_of("x_off", x_off)?,
        w_off: 0,
        y_off: u32_of("y_off", y_off)?,
        ldx: u32_of("ldx", ldx)?,
        ldw: u32_of("rows per split", chunk)?,
        ldy: u32_of("n", n)?,
        b_off: 0,
        x_bstride: 0,
        w_bstride: 0,
        y_bstride: 0,
        x_div: 1,
        x2_off: 0,
        ldx2: 0,
        x2_mod: 1,
        _pad: 0,
    };
    u32_of("rows + rows per split", rows + chunk)?;
    for (what, t) in [("x", x), ("y", y)] {
        u32_of(what, t.numel())?;
    }
    let [gx, gz, _] = ctx.grid_1d(n.div_ceil(16) as u64);
    if splits > ctx.max_groups() as usize || gz > ctx.max_groups() {
        return Err(SgrafError::Input(format!("linear column sum: {n} columns need too many workgroups")));
    }
    let kernel = ctx.kernel(
        &SHADER,
        "linear_backward_bias",
        &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::Read],
    );
    let d = ctx.dummy();
    ctx.dispatch(encoder, &kernel, &params, &[&x.buffer, d, d, &y.buffer, d], [gx, splits as u32, gz]);
    Ok(())
}

/// Workgroups the weight-gradient product aims for before it splits the rows.
const DW_TARGET_GROUPS: usize = 512;
/// Fewest rows per split of the weight-gradient product.
const DW_MIN_ROWS: usize = 256;
/// Most values of the split products' scratch (64 MiB of f32).
const DW_MAX_SCRATCH: usize = 16 << 20;

/// `dw [n, k] += dy [m, n]ᵀ · x [m, k]` (dense). When the output has few tiles
/// and there are many rows (the pairs of the similarity stages), the rows are
/// split: `splits` products of `chunk` rows into a scratch `[splits, n, k]`
/// (one batched dispatch), the leftover rows straight into `dw`, then a column
/// sum over the splits adds them to `dw` — deterministic, no atomics.
#[allow(clippy::too_many_arguments)]
pub fn weight_grad(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    dy: &GpuTensor,
    x: &GpuTensor,
    dw: &GpuTensor,
    m: usize,
    k: usize,
    n: usize,
) -> Result<()> {
    let tiles = n.div_ceil(TILE) * k.div_ceil(TILE);
    let splits = DW_TARGET_GROUPS.div_ceil(tiles.max(1)).min(m / DW_MIN_ROWS).min(DW_MAX_SCRATCH / (n * k).max(1));
    let base = Gemm { trans_w: false, ldx: n, ldw: k, ldy: k, accumulate: true, ..Gemm::linear(n, m, k) };
    if splits < 2 {
        return gemm_tn(ctx, encoder, dy, x, dw, &base);
    }
    let chunk = m / splits;
    let main = chunk * splits;
    let partials = GpuTensor::scratch(ctx, &[splits, n, k], super::DType::F32)?;
    let g = Gemm {
        k: chunk,
        batch: splits,
        x_bstride: chunk * n,
        w_bstride: chunk * k,
        y_bstride: n * k,
        accumulate: false,
        ..base
    };
    gemm_tn(ctx, encoder, dy, x, &partials, &g)?;
    if main < m {
        let g = Gemm { k: m - main, x_off: main * n, w_off: main * k, ..base };
        gemm_tn(ctx, encoder, dy, x, dw, &g)?;
    }
    column_sum(ctx, encoder, &partials, dw, splits, n * k, n * k, 0, 0, true)
}

/// Backward of [`forward`] (`y [m, n] = x [m, k] · w [n, k]ᵀ + b`), mirroring
/// `cpu::linear::backward`:
/// * `dx [m, k] = dy · w` (or `+=` with `dx_accumulate`); `dx = None` skips it;
/// * `dw [n, k] += dyᵀ · x` (always accumulates);
/// * `db [n] += Σ_rows dy`; `db = None` skips it.
///
/// `x` and `dy` may have any leading axes (`m` = their product); `dx` must not
/// alias `dy` or `w`. Three (or fewer) dispatches.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    dy: &GpuTensor,
    x: &GpuTensor,
    w: &GpuTensor,
    dx: Option<&GpuTensor>,
    dx_accumulate: bool,
    dw: &GpuTensor,
    db: Option<&GpuTensor>,
) -> Result<()> {
    if w.shape.len() != 2 {
        return Err(SgrafError::Input(format!("linear backward: weight shape {:?} is not [out, in]", w.shape)));
    }
    let (n, k) = (w.shape[0], w.shape[1]);
    if x.shape.last() != Some(&k) {
        return Err(SgrafError::Input(format!("linear backward: input shape {:?} does not end in {k}", x.shape)));
    }
    let m = x.numel() / k.max(1);
    if dy.numel() != m * n || dy.shape.last() != Some(&n) {
        return Err(SgrafError::Input(format!("linear backward: dy shape {:?}, expected [{m}, {n}]", dy.shape)));
    }
    dw.expect_shape("linear backward dw", &[n, k])?;
    if let Some(db) = db {
        db.expect_shape("linear backward db", &[n])?;
    }
    if let Some(dx) = dx {
        if dx.numel() != m * k {
            return Err(SgrafError::Input(format!("linear backward: dx shape {:?}, expected [{m}, {k}]", dx.shape)));
        }
        // dx [m, k] = dy [m, n] · w [n, k] (w plain, row stride k).
        let g = Gemm { trans_w: false, ldw: k, accumulate: dx_accumulate, ..Gemm::linear(m, n, k) };
        gemm(ctx, encoder, dy, w, None, dx, None, &g)?;
    }
    // dw [n, k] += dy [m, n]ᵀ · x [m, k].
    weight_grad(ctx, encoder, dy, x, dw, m, k, n)?;
    if let Some(db) = db {
        column_sum(ctx, encoder, dy, db, m, n, n, 0, 0, true)?;
    }
    Ok(())
}
