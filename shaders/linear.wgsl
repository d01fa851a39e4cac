// Linear layer and batched matrix products (most of SGRAF's FLOPs).
//
//   y[b][i, j] = act( Σ_k A[b][i, k] · B[b][k, j] + bias[j] )      (or y += … with ACCUMULATE)
//
// with A[b][i, k] = x[b][i / x_div, k], or with SQDIFF
//      A[b][i, k] = (x[b][i / x_div, k] − x2[i % x2_mod, k])²  (similarity vectors, spec §6.3),
//
// with B[b][k, j] = w[b][j, k] when TRANS_W (the nn.Linear layout, y = x·wᵀ + b)
// and  B[b][k, j] = w[b][k, j] otherwise (e.g. ctx[i] = attn[i] · v[i]).
// Every operand has an element offset, a row stride (ld*) and a batch stride
// (*_bstride; 0 = the same matrix for every batch entry). Grid:
// (ceil(n / 128), ceil(m / 128), batch); 256 threads, each computing 8×8
// outputs; K is consumed in slices of 8 staged in 8 KiB of workgroup memory,
// the next slice prefetched into registers while the current one is used.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    flags: u32,       // FLAG_* bits | activation << ACT_SHIFT
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
    x_div: u32,       // A row i reads x row i / x_div (1 = dense)
    x2_off: u32,
    ldx2: u32,
    x2_mod: u32,      // A row i subtracts x2 row i % x2_mod (SQDIFF only)
    _pad: u32,
}

const FLAG_BIAS: u32 = 1u;
const FLAG_TRANS_W: u32 = 2u;
const FLAG_ACCUMULATE: u32 = 4u;
const FLAG_SQDIFF: u32 = 8u;
const ACT_SHIFT: u32 = 4u;
const ACT_NONE: u32 = 0u;
const ACT_RELU: u32 = 1u;
const ACT_TANH: u32 = 2u;
const ACT_SIGMOID: u32 = 3u;

@group(0) @binding(0) var<uniform> p: Params;                         // sizes and flags
@group(0) @binding(1) var<storage, read> x: array<f32>;          // [batch, m, k] (row stride ldx)
@group(0) @binding(2) var<storage, read> w: array<f32>;          // [batch, n, k] if TRANS_W else [batch, k, n] (row stride ldw)
@group(0) @binding(3) var<storage, read> bias: array<f32>;       // [n] (read only with FLAG_BIAS)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;    // [batch, m, n] (row stride ldy)
@group(0) @binding(5) var<storage, read> x2: array<f32>;         // [x2_mod, k] (row stride ldx2; read only with SQDIFF)

const BM: u32 = 128u;
const BN: u32 = 128u;
const BK: u32 = 8u;

// Operand slices, k-major: element (kk, r) of the A slice is As[kk * 32 + r / 4][r % 4].
var<workgroup> As: array<vec4<f32>, 256>;   // [BK, BM / 4] vec4
var<workgroup> Bs: array<vec4<f32>, 256>;   // [BK, BN / 4] vec4

// ---- float32 exp/tanh/sigmoid to libm accuracy (the CPU twin's). Builtin
// exp may be several ULP off (|x|·ULP when done through exp2), which the
// softmax smoothing λ = 9 would amplify. The same block is in every shader
// that needs it.

// exp(x) for x ≤ 88: x = n·ln2 + r with |r| ≤ ln2/2 (Cody–Waite, ln2 split
// so n·ln2_hi is exact), degree-7 Taylor polynomial, scaled by 2ⁿ.
fn exp_acc(x: f32) -> f32 {
    if (x < -87.0) {
        return 0.0;
    }
    let xc = min(x, 88.0);
    let n = round(xc * 1.44269504);
    let r = (xc - n * 0.693359375) + n * 2.12194440e-4;
    let q = 1.0 + r * (1.0 + r * (0.5 + r * (0.16666667 + r * (0.041666668 + r * (0.0083333338 + r * (0.0013888889 + r * 1.9841270e-4))))));
    return ldexp(q, i32(n));
}

// exp(x) − 1 without cancellation near 0.
fn expm1_acc(x: f32) -> f32 {
    if (abs(x) < 0.3466) {
        return x * (1.0 + x * (0.5 + x * (0.16666667 + x * (0.041666668 + x * (0.0083333338 + x * (0.0013888889 + x * (1.9841270e-4 + x * 2.4801587e-5)))))));
    }
    return exp_acc(x) - 1.0;
}

fn tanh_acc(x: f32) -> f32 {
    let e = expm1_acc(-2.0 * abs(x));
    return sign(x) * (-e / (2.0 + e));
}

fn sigmoid_acc(x: f32) -> f32 {
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp_acc(-x));
    }
    let e = exp_acc(x);
    return e / (1.0 + e);
}

fn activate(v: f32, act: u32) -> f32 {
    switch act {
        case 1u: { return max(v, 0.0); }
        case 2u: { return tanh_acc(v); }
        case 3u: { return sigmoid_acc(v); }
        default: { return v; }
    }
}

// Loads of one K slice. Each thread loads the same four rows of A (and
// four rows/columns of B) in every slice, so their element offsets are
// computed once (`*_rows`), and only the slice column moves.

struct RowsA {
    off: vec4<u32>,     // x offset of each row's column 0
    off2: vec4<u32>,    // x2 offset of each row's column 0 (SQDIFF)
    ok: vec4<bool>,     // row < m
}

fn a_rows(base: u32, r0: u32) -> RowsA {
    var ra: RowsA;
    let sqdiff = (p.flags & FLAG_SQDIFF) != 0u;
    for (var j = 0u; j < 4u; j++) {
        let r = r0 + j;
        ra.ok[j] = r < p.m;
        ra.off[j] = base + (r / p.x_div) * p.ldx;
        if (sqdiff) {
            ra.off2[j] = p.x2_off + (r % p.x2_mod) * p.ldx2;
        }
    }
    return ra;
}

fn load_a4(ra: RowsA, col: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (col < p.k) {
        if ((p.flags & FLAG_SQDIFF) != 0u) {
            for (var j = 0u; j < 4u; j++) {
                if (ra.ok[j]) {
                    let d = x[ra.off[j] + col] - x2[ra.off2[j] + col];
                    v[j] = d * d;
                }
            }
        } else {
            for (var j = 0u; j < 4u; j++) {
                if (ra.ok[j]) {
                    v[j] = x[ra.off[j] + col];
                }
            }
        }
    }
    return v;
}

// B slice, transposed layout w[j, k]: rows j0..j0+3 at column kk.
fn load_wt4(base: u32, j0: u32, kk: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (kk < p.k) {
        let at = base + j0 * p.ldw + kk;
        if (j0 < p.n) { v.x = w[at]; }
        if (j0 + 1u < p.n) { v.y = w[at + p.ldw]; }
        if (j0 + 2u < p.n) { v.z = w[at + 2u * p.ldw]; }
        if (j0 + 3u < p.n) { v.w = w[at + 3u * p.ldw]; }
    }
    return v;
}

// B slice, plain layout w[k, j]: columns j0..j0+3 of row kk.
fn load_w4(base: u32, kk: u32, j0: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (kk < p.k) {
        let at = base + kk * p.ldw + j0;
        if (j0 < p.n) { v.x = w[at]; }
        if (j0 + 1u < p.n) { v.y = w[at + 1u]; }
        if (j0 + 2u < p.n) { v.z = w[at + 2u]; }
        if (j0 + 3u < p.n) { v.w = w[at + 3u]; }
    }
    return v;
}

fn store4(base: u32, row: u32, col: u32, v: vec4<f32>) {
    if (row >= p.m) {
        return;
    }
    let act = (p.flags >> ACT_SHIFT) & 15u;
    let has_bias = (p.flags & FLAG_BIAS) != 0u;
    let accumulate = (p.flags & FLAG_ACCUMULATE) != 0u;
    let at = base + row * p.ldy + col;
    for (var c = 0u; c < 4u; c++) {
        let j = col + c;
        if (j < p.n) {
            var o = v[c];
            if (has_bias) {
                o += bias[p.b_off + j];
            }
            if (accumulate) {
                o += y[at + c];
            }
            y[at + c] = activate(o, act);
        }
    }
}

@compute @workgroup_size(256)
fn linear_forward(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let m0 = wid.y * BM;
    let n0 = wid.x * BN;
    let xb = p.x_off + wid.z * p.x_bstride;
    let wb = p.w_off + wid.z * p.w_bstride;
    let yb = p.y_off + wid.z * p.y_bstride;
    let trans = (p.flags & FLAG_TRANS_W) != 0u;

    // Loader roles: A (and transposed B): rows 4·lr…4·lr+3 at slice column lk.
    let lk = li % BK;
    let lr = li / BK;
    // Plain B: slice row pk, columns 4·pc…4·pc+3.
    let pk = li / 32u;
    let pc = li % 32u;
    // Compute roles: rows 4·ty+{0..3} and 64+4·ty+{0..3}, columns likewise with tx.
    let tx = li % 16u;
    let ty = li / 16u;

    let arows = a_rows(xb, m0 + 4u * lr);
    var ra = load_a4(arows, lk);
    var rb: vec4<f32>;
    if (trans) {
        rb = load_wt4(wb, n0 + 4u * lr, lk);
    } else {
        rb = load_w4(wb, pk, n0 + 4u * pc);
    }

    var c00 = vec4<f32>(0.0); var c01 = vec4<f32>(0.0);
    var c10 = vec4<f32>(0.0); var c11 = vec4<f32>(0.0);
    var c20 = vec4<f32>(0.0); var c21 = vec4<f32>(0.0);
    var c30 = vec4<f32>(0.0); var c31 = vec4<f32>(0.0);
    var c40 = vec4<f32>(0.0); var c41 = vec4<f32>(0.0);
    var c50 = vec4<f32>(0.0); var c51 = vec4<f32>(0.0);
    var c60 = vec4<f32>(0.0); var c61 = vec4<f32>(0.0);
    var c70 = vec4<f32>(0.0); var c71 = vec4<f32>(0.0);

    let slices = (p.k + BK - 1u) / BK;
    for (var s = 0u; s < slices; s++) {
        workgroupBarrier();
        As[lk * 32u + lr] = ra;
        if (trans) {
            Bs[lk * 32u + lr] = rb;
        } else {
            Bs[pk * 32u + pc] = rb;
        }
        workgroupBarrier();
        if (s + 1u < slices) {
            let k1 = (s + 1u) * BK;
            ra = load_a4(arows, k1 + lk);
            if (trans) {
                rb = load_wt4(wb, n0 + 4u * lr, k1 + lk);
            } else {
                rb = load_w4(wb, k1 + pk, n0 + 4u * pc);
            }
        }
        for (var kk = 0u; kk < BK; kk++) {
            let a0 = As[kk * 32u + ty];
            let a1 = As[kk * 32u + 16u + ty];
            let b0 = Bs[kk * 32u + tx];
            let b1 = Bs[kk * 32u + 16u + tx];
            c00 += a0.x * b0; c01 += a0.x * b1;
            c10 += a0.y * b0; c11 += a0.y * b1;
            c20 += a0.z * b0; c21 += a0.z * b1;
            c30 += a0.w * b0; c31 += a0.w * b1;
            c40 += a1.x * b0; c41 += a1.x * b1;
            c50 += a1.y * b0; c51 += a1.y * b1;
            c60 += a1.z * b0; c61 += a1.z * b1;
            c70 += a1.w * b0; c71 += a1.w * b1;
        }
    }

    let r0 = m0 + 4u * ty;
    let r1 = m0 + 64u + 4u * ty;
    let j0 = n0 + 4u * tx;
    let j1 = n0 + 64u + 4u * tx;
    store4(yb, r0, j0, c00); store4(yb, r0, j1, c01);
    store4(yb, r0 + 1u, j0, c10); store4(yb, r0 + 1u, j1, c11);
    store4(yb, r0 + 2u, j0, c20); store4(yb, r0 + 2u, j1, c21);
    store4(yb, r0 + 3u, j0, c30); store4(yb, r0 + 3u, j1, c31);
    store4(yb, r1, j0, c40); store4(yb, r1, j1, c41);
    store4(yb, r1 + 1u, j0, c50); store4(yb, r1 + 1u, j1, c51);
    store4(yb, r1 + 2u, j0, c60); store4(yb, r1 + 2u, j1, c61);
    store4(yb, r1 + 3u, j0, c70); store4(yb, r1 + 3u, j1, c71);
}

// ---------------------------------------------------------------------------
// Backward.
//
// linear_backward: the product with A transposed (the weight gradient),
//
//   y[b][i, j] = Σ_k A[b][i, k] · B[b][k, j]      (or y += … with ACCUMULATE)
//
// with A[b][i, k] = x[b][k, i] (x is [k, m], row stride ldx) and B as in the
// forward (w[b][j, k] with TRANS_W, w[b][k, j] otherwise). For nn.Linear,
// dw [n, k] += dyᵀ · x is m = n_out, n = n_in, k = rows, x = dy [rows, n_out],
// w = x [rows, n_in] plain. The same tiling as linear_forward; no bias, no
// activation, no x_div, no SQDIFF (the host refuses them).

// A slice, transposed layout x[k, i]: rows r0..r0+3 of A at slice column kk,
// four consecutive elements of row kk of x.
fn load_at4(base: u32, kk: u32, r0: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (kk < p.k) {
        let at = base + kk * p.ldx + r0;
        if (r0 < p.m) { v.x = x[at]; }
        if (r0 + 1u < p.m) { v.y = x[at + 1u]; }
        if (r0 + 2u < p.m) { v.z = x[at + 2u]; }
        if (r0 + 3u < p.m) { v.w = x[at + 3u]; }
    }
    return v;
}

@compute @workgroup_size(256)
fn linear_backward(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let m0 = wid.y * BM;
    let n0 = wid.x * BN;
    let xb = p.x_off + wid.z * p.x_bstride;
    let wb = p.w_off + wid.z * p.w_bstride;
    let yb = p.y_off + wid.z * p.y_bstride;
    let trans = (p.flags & FLAG_TRANS_W) != 0u;

    // Loader roles: transposed B: rows 4·lr…4·lr+3 at slice column lk.
    let lk = li % BK;
    let lr = li / BK;
    // Transposed A and plain B: slice row pk, columns 4·pc…4·pc+3.
    let pk = li / 32u;
    let pc = li % 32u;
    let tx = li % 16u;
    let ty = li / 16u;

    var ra = load_at4(xb, pk, m0 + 4u * pc);
    var rb: vec4<f32>;
    if (trans) {
        rb = load_wt4(wb, n0 + 4u * lr, lk);
    } else {
        rb = load_w4(wb, pk, n0 + 4u * pc);
    }

    var c00 = vec4<f32>(0.0); var c01 = vec4<f32>(0.0);
    var c10 = vec4<f32>(0.0); var c11 = vec4<f32>(0.0);
    var c20 = vec4<f32>(0.0); var c21 = vec4<f32>(0.0);
    var c30 = vec4<f32>(0.0); var c31 = vec4<f32>(0.0);
    var c40 = vec4<f32>(0.0); var c41 = vec4<f32>(0.0);
    var c50 = vec4<f32>(0.0); var c51 = vec4<f32>(0.0);
    var c60 = vec4<f32>(0.0); var c61 = vec4<f32>(0.0);
    var c70 = vec4<f32>(0.0); var c71 = vec4<f32>(0.0);

    let slices = (p.k + BK - 1u) / BK;
    for (var s = 0u; s < slices; s++) {
        workgroupBarrier();
        As[pk * 32u + pc] = ra;
        if (trans) {
            Bs[lk * 32u + lr] = rb;
        } else {
            Bs[pk * 32u + pc] = rb;
        }
        workgroupBarrier();
        if (s + 1u < slices) {
            let k1 = (s + 1u) * BK;
            ra = load_at4(xb, k1 + pk, m0 + 4u * pc);
            if (trans) {
                rb = load_wt4(wb, n0 + 4u * lr, k1 + lk);
            } else {
                rb = load_w4(wb, k1 + pk, n0 + 4u * pc);
            }
        }
        for (var kk = 0u; kk < BK; kk++) {
            let a0 = As[kk * 32u + ty];
            let a1 = As[kk * 32u + 16u + ty];
            let b0 = Bs[kk * 32u + tx];
            let b1 = Bs[kk * 32u + 16u + tx];
            c00 += a0.x * b0; c01 += a0.x * b1;
            c10 += a0.y * b0; c11 += a0.y * b1;
            c20 += a0.z * b0; c21 += a0.z * b1;
            c30 += a0.w * b0; c31 += a0.w * b1;
            c40 += a1.x * b0; c41 += a1.x * b1;
            c50 += a1.y * b0; c51 += a1.y * b1;
            c60 += a1.z * b0; c61 += a1.z * b1;
            c70 += a1.w * b0; c71 += a1.w * b1;
        }
    }

    let r0 = m0 + 4u * ty;
    let r1 = m0 + 64u + 4u * ty;
    let j0 = n0 + 4u * tx;
    let j1 = n0 + 64u + 4u * tx;
    store4(yb, r0, j0, c00); store4(yb, r0, j1, c01);
    store4(yb, r0 + 1u, j0, c10); store4(yb, r0 + 1u, j1, c11);
    store4(yb, r0 + 2u, j0, c20); store4(yb, r0 + 2u, j1, c21);
    store4(yb, r0 + 3u, j0, c30); store4(yb, r0 + 3u, j1, c31);
    store4(yb, r1, j0, c40); store4(yb, r1, j1, c41);
    store4(yb, r1 + 1u, j0, c50); store4(yb, r1 + 1u, j1, c51);
    store4(yb, r1 + 2u, j0, c60); store4(yb, r1 + 2u, j1, c61);
    store4(yb, r1 + 3u, j0, c70); store4(yb, r1 + 3u, j1, c71);
}

// linear_backward_bias: column sums, y[y_off + s·ldy + j] (+)= Σ_i x[x_off + i·ldx + j]
// over the rows i of split s = wid.y, [s·chunk, min((s + 1)·chunk, k)) with
// chunk = ldw, for j < n (the bias gradient db += Σ_rows dy; with several
// splits the host adds the [splits, n] partial sums in a second dispatch).
// Grid (x, splits, z) with column block wid.x + wid.z·nwg.x covering
// ceil(n / 16) blocks; 256 threads = 16 columns × 16 row lanes, each
// lane summing rows lane, lane + 16, … of its split, then the 16 lanes added
// in a fixed tree (deterministic). Reads x_off, ldx, y_off, ldy, ldw (chunk),
// k, n and ACCUMULATE; binding w (2) is unused.

var<workgroup> red: array<f32, 256>;   // [16 lanes, 16 columns]

@compute @workgroup_size(256)
fn linear_backward_bias(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let col = li % 16u;
    let lane = li / 16u;
    let j = (wid.x + wid.z * nwg.x) * 16u + col;
    let r0 = wid.y * p.ldw;
    let r1 = min(r0 + p.ldw, p.k);
    var acc = 0.0;
    if (j < p.n) {
        for (var i = r0 + lane; i < r1; i += 16u) {
            acc += x[p.x_off + i * p.ldx + j];
        }
    }
    red[li] = acc;
    workgroupBarrier();
    for (var s = 8u; s > 0u; s >>= 1u) {
        if (lane < s) {
            red[li] += red[li + s * 16u];
        }
        workgroupBarrier();
    }
    if (lane == 0u && j < p.n) {
        let at = p.y_off + wid.y * p.ldy + j;
        var v = red[col];
        if ((p.flags & FLAG_ACCUMULATE) != 0u) {
            v += y[at];
        }
        y[at] = v;
    }
}
