// Bidirectional GRU over packed captions (spec §4), after the input
// projections gi = x·W_ihᵀ + b_ih (done by linear_forward).
//
//   gru_forward_step     one time step s of one direction for every caption:
//                        gh = h·W_hhᵀ + b_hh, PyTorch cell (gates r, z, n),
//                        only for captions with s < L; the forward direction
//                        writes position s, the backward one L−1−s. The
//                        previous hidden state is read from `out` itself
//                        (position s−1, resp. L−s; zero at s = 0).
//                        Grid (ceil(E/32), ceil(n_cap/32)); each thread
//                        computes 2 captions × 2 units × 3 gates.
//   gru_forward_combine  t = l2norm((h_fwd + h_bwd) / 2) per (caption, position),
//                        written padded [n_cap, l_max, E] (zeros past L) or
//                        packed [n_words, E] (row word_off[c] + j).
//
// Training (packed rows: caption c's token pos is row word_off[c] + pos):
//   gru_forward_step_train  gru_forward_step on packed rows, also keeping the
//                           gates r, z, n and W_hn·h + b_hn of every row.
//   gru_forward_average     t = (h_fwd + h_bwd)/2 element-wise (l2norm follows).
//   gru_backward_cell       time step s of one direction, backward through the
//                           cell for every caption with s < L: from
//                           d = dh_run[c] + dh_scale·dh[row] writes dgi[row]
//                           (gradient of x·W_ihᵀ + b_ih), dgh[c] (of
//                           h_prev·W_hhᵀ + b_hh; zero for finished captions) and
//                           dh_run[c] = d·z (the W_hh path is added next).
//   gru_backward_hidden     dh_run [n_cap, E] += dgh [n_cap, 3E] · W_hh [3E, E];
//                           tiles of 32 captions × 32 units as gru_forward_step.
//   gru_backward_gather     after all steps: h_prev [n_words, E] (the state each
//                           row read, zero at a caption's first step) and
//                           dgh_all [n_words, 3E] for the weight gradient of W_hh.

struct Params {
    n_cap: u32,
    l_max: u32,
    e: u32,        // hidden size E
    step: u32,     // s
    reverse: u32,  // 1 = backward direction
    packed: u32,   // combine: 1 = packed output
    dh_scale: f32, // gru_backward_cell: factor on the output gradient (0.5: the directions are averaged)
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;                         // sizes and flags

// gru_forward_step
@group(0) @binding(1) var<storage, read> gi: array<f32>;          // [n_cap, l_max, 3E]
@group(0) @binding(2) var<storage, read> w_hh: array<f32>;        // [3E, E]
@group(0) @binding(3) var<storage, read> b_hh: array<f32>;        // [3E]
@group(0) @binding(4) var<storage, read> lengths: array<u32>;     // [n_cap]
@group(0) @binding(5) var<storage, read_write> out: array<f32>;   // [n_cap, l_max, E]

const TC: u32 = 32u;   // captions per tile
const TU: u32 = 32u;   // hidden units per tile
const TK: u32 = 16u;   // slice of the hidden state

var<workgroup> hs: array<f32, 512>;       // [TK, TC]
var<workgroup> ws: array<f32, 1536>;      // [3, TK, TU]

// Row (caption c) of `out` that holds the previous hidden state; -1 = zero state.
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

fn prev_row(c: u32) -> i32 {
    if (c >= p.n_cap || p.step == 0u) {
        return -1;
    }
    let len = lengths[c];
    if (p.step >= len) {
        return -1;
    }
    if (p.reverse == 1u) {
        return i32(c * p.l_max + len - p.step);
    }
    return i32(c * p.l_max + p.step - 1u);
}

@compute @workgroup_size(256)
fn gru_forward_step(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let c0 = wid.y * TC;
    let u0 = wid.x * TU;
    let e = p.e;
    let tx = li % 16u;     // units u0 + 2·tx + {0, 1}
    let ty = li / 16u;     // captions c0 + 2·ty + {0, 1}

    var acc: array<f32, 12>;   // [caption 2][unit 2][gate 3]
    for (var i = 0u; i < 12u; i++) {
        acc[i] = 0.0;
    }

    // Loader roles: h slice: caption lc = li / 8, k 2·(li % 8) + {0, 1}.
    let lc = li / 8u;
    let lk = 2u * (li % 8u);
    let hrow = prev_row(c0 + lc);

    let slices = (e + TK - 1u) / TK;
    for (var s = 0u; s < slices; s++) {
        let k0 = s * TK;
        for (var q = 0u; q < 2u; q++) {
            let kk = lk + q;
            var v = 0.0;
            if (hrow >= 0 && k0 + kk < e) {
                v = out[u32(hrow) * e + k0 + kk];
            }
            hs[kk * TC + lc] = v;
        }
        // W slice: 3 gates × 32 units × 16 k = 1536 values, 6 per thread.
        for (var q = 0u; q < 6u; q++) {
            let t = q * 256u + li;
            let kk = t % TK;
            let gu = t / TK;          // gate·32 + unit
            let g = gu / TU;
            let u = gu % TU;
            var v = 0.0;
            if (u0 + u < e && k0 + kk < e) {
                v = w_hh[(g * e + u0 + u) * e + k0 + kk];
            }
            ws[(g * TK + kk) * TU + u] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let h0 = hs[kk * TC + 2u * ty];
            let h1 = hs[kk * TC + 2u * ty + 1u];
            for (var g = 0u; g < 3u; g++) {
                let w0 = ws[(g * TK + kk) * TU + 2u * tx];
                let w1 = ws[(g * TK + kk) * TU + 2u * tx + 1u];
                acc[g] += h0 * w0;
                acc[3u + g] += h0 * w1;
                acc[6u + g] += h1 * w0;
                acc[9u + g] += h1 * w1;
            }
        }
        workgroupBarrier();
    }

    for (var a = 0u; a < 2u; a++) {
        let c = c0 + 2u * ty + a;
        if (c >= p.n_cap) {
            continue;
        }
        let len = lengths[c];
        if (p.step >= len) {
            continue;
        }
        var pos = p.step;
        if (p.reverse == 1u) {
            pos = len - 1u - p.step;
        }
        let prow = prev_row(c);
        for (var b = 0u; b < 2u; b++) {
            let j = u0 + 2u * tx + b;
            if (j >= e) {
                continue;
            }
            let gbase = (c * p.l_max + pos) * 3u * e;
            let ai = (a * 2u + b) * 3u;
            let r = sigmoid_acc(gi[gbase + j] + acc[ai] + b_hh[j]);
            let z = sigmoid_acc(gi[gbase + e + j] + acc[ai + 1u] + b_hh[e + j]);
            let n = tanh_acc(gi[gbase + 2u * e + j] + r * (acc[ai + 2u] + b_hh[2u * e + j]));
            var h = 0.0;
            if (prow >= 0) {
                h = out[u32(prow) * e + j];
            }
            out[(c * p.l_max + pos) * e + j] = (1.0 - z) * n + z * h;
        }
    }
}

// gru_forward_combine
@group(0) @binding(1) var<storage, read> h_fwd: array<f32>;        // [n_cap, l_max, E]
@group(0) @binding(2) var<storage, read> h_bwd: array<f32>;        // [n_cap, l_max, E]
@group(0) @binding(3) var<storage, read> lens: array<u32>;         // [n_cap]
@group(0) @binding(4) var<storage, read> word_off: array<u32>;     // [n_cap + 1] (packed output)
@group(0) @binding(5) var<storage, read_write> t: array<f32>;      // [n_cap, l_max, E] or [n_words, E]

var<workgroup> red: array<f32, 256>;

fn block_sum(li: u32, v: f32) -> f32 {
    red[li] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (li < s) {
            red[li] += red[li + s];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

// One workgroup per (caption, position): row = wid.x + wid.y · nwg.x.
@compute @workgroup_size(256)
fn gru_forward_combine(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.n_cap * p.l_max) {
        return;
    }
    let c = row / p.l_max;
    let pos = row % p.l_max;
    let valid = pos < lens[c];
    if (p.packed == 1u && !valid) {
        return;
    }
    var dst = row * p.e;
    if (p.packed == 1u) {
        dst = (word_off[c] + pos) * p.e;
    }
    var ss = 0.0;
    for (var j = li; j < p.e; j += 256u) {
        var v = 0.0;
        if (valid) {
            v = 0.5 * (h_fwd[row * p.e + j] + h_bwd[row * p.e + j]);
        }
        ss += v * v;
    }
    let norm = sqrt(block_sum(li, ss)) + 1e-8;
    for (var j = li; j < p.e; j += 256u) {
        var v = 0.0;
        if (valid) {
            v = 0.5 * (h_fwd[row * p.e + j] + h_bwd[row * p.e + j]) / norm;
        }
        t[dst + j] = v;
    }
}

// ---------------------------------------------------------------------------
// Training forward (packed rows)

// gru_forward_step_train: gi (binding 1) is [n_words, 3E]; w_hh, b_hh, lengths as above.
@group(0) @binding(5) var<storage, read> woff: array<u32>;             // [n_cap + 1] word_off
@group(0) @binding(6) var<storage, read_write> hp: array<f32>;         // [n_words, E] hidden states
@group(0) @binding(7) var<storage, read_write> gates: array<f32>;      // [n_words, 4E] r, z, n, W_hn·h + b_hn

// Packed row caption c reads at step p.step, or -1 when the caption is done.
fn cur_row_packed(c: u32) -> i32 {
    if (c >= p.n_cap) {
        return -1;
    }
    let len = lengths[c];
    if (p.step >= len) {
        return -1;
    }
    if (p.reverse == 1u) {
        return i32(woff[c] + len - 1u - p.step);
    }
    return i32(woff[c] + p.step);
}

// Packed row holding caption c's previous hidden state; -1 = zero state.
fn prev_row_packed(c: u32) -> i32 {
    let row = cur_row_packed(c);
    if (row < 0 || p.step == 0u) {
        return -1;
    }
    if (p.reverse == 1u) {
        return row + 1;
    }
    return row - 1;
}

@compute @workgroup_size(256)
fn gru_forward_step_train(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let c0 = wid.y * TC;
    let u0 = wid.x * TU;
    let e = p.e;
    let tx = li % 16u;
    let ty = li / 16u;

    var acc: array<f32, 12>;   // [caption 2][unit 2][gate 3]
    for (var i = 0u; i < 12u; i++) {
        acc[i] = 0.0;
    }
    let lc = li / 8u;
    let lk = 2u * (li % 8u);
    let hrow = prev_row_packed(c0 + lc);

    let slices = (e + TK - 1u) / TK;
    for (var s = 0u; s < slices; s++) {
        let k0 = s * TK;
        for (var q = 0u; q < 2u; q++) {
            let kk = lk + q;
            var v = 0.0;
            if (hrow >= 0 && k0 + kk < e) {
                v = hp[u32(hrow) * e + k0 + kk];
            }
            hs[kk * TC + lc] = v;
        }
        for (var q = 0u; q < 6u; q++) {
            let t = q * 256u + li;
            let kk = t % TK;
            let gu = t / TK;
            let g = gu / TU;
            let u = gu % TU;
            var v = 0.0;
            if (u0 + u < e && k0 + kk < e) {
                v = w_hh[(g * e + u0 + u) * e + k0 + kk];
            }
            ws[(g * TK + kk) * TU + u] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let h0 = hs[kk * TC + 2u * ty];
            let h1 = hs[kk * TC + 2u * ty + 1u];
            for (var g = 0u; g < 3u; g++) {
                let w0 = ws[(g * TK + kk) * TU + 2u * tx];
                let w1 = ws[(g * TK + kk) * TU + 2u * tx + 1u];
                acc[g] += h0 * w0;
                acc[3u + g] += h0 * w1;
                acc[6u + g] += h1 * w0;
                acc[9u + g] += h1 * w1;
            }
        }
        workgroupBarrier();
    }

    for (var a = 0u; a < 2u; a++) {
        let c = c0 + 2u * ty + a;
        let row = cur_row_packed(c);
        if (row < 0) {
            continue;
        }
        let prow = prev_row_packed(c);
        for (var b = 0u; b < 2u; b++) {
            let j = u0 + 2u * tx + b;
            if (j >= e) {
                continue;
            }
            let gbase = u32(row) * 3u * e;
            let ai = (a * 2u + b) * 3u;
            let ghn = acc[ai + 2u] + b_hh[2u * e + j];
            let r = sigmoid_acc(gi[gbase + j] + (acc[ai] + b_hh[j]));
            let z = sigmoid_acc(gi[gbase + e + j] + (acc[ai + 1u] + b_hh[e + j]));
            let n = tanh_acc(gi[gbase + 2u * e + j] + r * ghn);
            var h = 0.0;
            if (prow >= 0) {
                h = hp[u32(prow) * e + j];
            }
            hp[u32(row) * e + j] = (1.0 - z) * n + z * h;
            let gb = u32(row) * 4u * e;
            gates[gb + j] = r;
            gates[gb + e + j] = z;
            gates[gb + 2u * e + j] = n;
            gates[gb + 3u * e + j] = ghn;
        }
    }
}

// gru_forward_average
@group(0) @binding(1) var<storage, read> avg_f: array<f32>;           // [n_words, E]
@group(0) @binding(2) var<storage, read> avg_b: array<f32>;           // [n_words, E]
@group(0) @binding(3) var<storage, read_write> avg_out: array<f32>;   // [n_words, E]

// p.step holds n_words·E here.
@compute @workgroup_size(256)
fn gru_forward_average(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = (wid.x + wid.y * nwg.x) * 256u + li;
    if (i >= p.step) {
        return;
    }
    avg_out[i] = (avg_f[i] + avg_b[i]) / 2.0;
}

// ---------------------------------------------------------------------------
// Backward through time

// gru_backward_cell (lengths at binding 4, woff at 5 as above)
@group(0) @binding(1) var<storage, read> bc_dh: array<f32>;            // [n_words, E] gradient of the outputs
@group(0) @binding(2) var<storage, read> bc_gates: array<f32>;         // [n_words, 4E]
@group(0) @binding(3) var<storage, read> bc_h: array<f32>;             // [n_words, E] hidden states
@group(0) @binding(6) var<storage, read_write> dh_run: array<f32>;     // [n_cap, E] gradient flowing into the state
@group(0) @binding(7) var<storage, read_write> dgi: array<f32>;        // [n_words, 3E]
@group(0) @binding(8) var<storage, read_write> dgh: array<f32>;        // [n_cap, 3E] this step

@compute @workgroup_size(256)
fn gru_backward_cell(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = (wid.x + wid.y * nwg.x) * 256u + li;
    let e = p.e;
    if (idx >= p.n_cap * e) {
        return;
    }
    let c = idx / e;
    let k = idx % e;
    let row = cur_row_packed(c);
    if (row < 0) {
        dgh[c * 3u * e + k] = 0.0;
        dgh[c * 3u * e + e + k] = 0.0;
        dgh[c * 3u * e + 2u * e + k] = 0.0;
        return;
    }
    let ur = u32(row);
    let prow = prev_row_packed(c);
    var hprev = 0.0;
    if (prow >= 0) {
        hprev = bc_h[u32(prow) * e + k];
    }
    let gb = ur * 4u * e;
    let r = bc_gates[gb + k];
    let z = bc_gates[gb + e + k];
    let n = bc_gates[gb + 2u * e + k];
    let ghn = bc_gates[gb + 3u * e + k];
    let d = dh_run[idx] + p.dh_scale * bc_dh[ur * e + k];   // h' = (1 − z)·n + z·h
    let dn = d * (1.0 - z);
    let dz = d * (hprev - n);
    let dpre_n = dn * (1.0 - n * n);                          // n = tanh(gi_n + r·ghn)
    let dpre_z = dz * z * (1.0 - z);
    let dpre_r = dpre_n * ghn * r * (1.0 - r);
    dgi[ur * 3u * e + k] = dpre_r;
    dgi[ur * 3u * e + e + k] = dpre_z;
    dgi[ur * 3u * e + 2u * e + k] = dpre_n;
    dgh[c * 3u * e + k] = dpre_r;
    dgh[c * 3u * e + e + k] = dpre_z;
    dgh[c * 3u * e + 2u * e + k] = dpre_n * r;
    dh_run[idx] = d * z;
}

// gru_backward_hidden (w_hh at binding 2 as above)
@group(0) @binding(1) var<storage, read> bh_dgh: array<f32>;           // [n_cap, 3E]
@group(0) @binding(3) var<storage, read_write> bh_dh: array<f32>;      // [n_cap, E] (+=)

@compute @workgroup_size(256)
fn gru_backward_hidden(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let c0 = wid.y * TC;
    let u0 = wid.x * TU;
    let e = p.e;
    let e3 = 3u * e;
    let tx = li % 16u;     // units u0 + 2·tx + {0, 1}
    let ty = li / 16u;     // captions c0 + 2·ty + {0, 1}
    var acc: array<f32, 4>;   // [caption 2][unit 2]
    for (var i = 0u; i < 4u; i++) {
        acc[i] = 0.0;
    }
    // Loader roles: dgh slice, caption li / 8, j 2·(li % 8) + {0, 1};
    // W slice, j li / 16, units 2·(li % 16) + {0, 1}.
    let lc = li / 8u;
    let lk = 2u * (li % 8u);
    let wk = li / 16u;
    let wu = 2u * (li % 16u);
    let slices = (e3 + TK - 1u) / TK;
    for (var s = 0u; s < slices; s++) {
        let j0 = s * TK;
        for (var q = 0u; q < 2u; q++) {
            var v = 0.0;
            if (c0 + lc < p.n_cap && j0 + lk + q < e3) {
                v = bh_dgh[(c0 + lc) * e3 + j0 + lk + q];
            }
            hs[(lk + q) * TC + lc] = v;
            var w = 0.0;
            if (j0 + wk < e3 && u0 + wu + q < e) {
                w = w_hh[(j0 + wk) * e + u0 + wu + q];
            }
            ws[wk * TU + wu + q] = w;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let d0 = hs[kk * TC + 2u * ty];
            let d1 = hs[kk * TC + 2u * ty + 1u];
            let w0 = ws[kk * TU + 2u * tx];
            let w1 = ws[kk * TU + 2u * tx + 1u];
            acc[0] += d0 * w0;
            acc[1] += d0 * w1;
            acc[2] += d1 * w0;
            acc[3] += d1 * w1;
        }
        workgroupBarrier();
    }
    for (var a = 0u; a < 2u; a++) {
        let c = c0 + 2u * ty + a;
        if (c >= p.n_cap) {
            continue;
        }
        for (var b = 0u; b < 2u; b++) {
            let j = u0 + 2u * tx + b;
            if (j < e) {
                bh_dh[c * e + j] = bh_dh[c * e + j] + acc[a * 2u + b];
            }
        }
    }
}

// gru_backward_gather
@group(0) @binding(1) var<storage, read> ga_h: array<f32>;             // [n_words, E]
@group(0) @binding(2) var<storage, read> ga_word_cap: array<u32>;      // [n_words]
@group(0) @binding(3) var<storage, read> ga_woff: array<u32>;          // [n_cap + 1]
@group(0) @binding(4) var<storage, read> ga_dgi: array<f32>;           // [n_words, 3E]
@group(0) @binding(5) var<storage, read> ga_gates: array<f32>;         // [n_words, 4E]
@group(0) @binding(6) var<storage, read_write> ga_hprev: array<f32>;   // [n_words, E]
@group(0) @binding(7) var<storage, read_write> ga_dgh: array<f32>;     // [n_words, 3E]

// p.step holds n_words here.
@compute @workgroup_size(256)
fn gru_backward_gather(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = (wid.x + wid.y * nwg.x) * 256u + li;
    let e = p.e;
    if (idx >= p.step * e) {
        return;
    }
    let row = idx / e;
    let k = idx % e;
    let c = ga_word_cap[row];
    let first = ga_woff[c];
    let last = ga_woff[c + 1u] - 1u;
    var hprev = 0.0;
    if (p.reverse == 1u) {
        if (row < last) {
            hprev = ga_h[(row + 1u) * e + k];
        }
    } else if (row > first) {
        hprev = ga_h[(row - 1u) * e + k];
    }
    ga_hprev[idx] = hprev;
    let r = ga_gates[row * 4u * e + k];
    ga_dgh[row * 3u * e + k] = ga_dgi[row * 3u * e + k];
    ga_dgh[row * 3u * e + e + k] = ga_dgi[row * 3u * e + e + k];
    ga_dgh[row * 3u * e + 2u * e + k] = ga_dgi[row * 3u * e + 2u * e + k] * r;
}
