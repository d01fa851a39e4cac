// Score head (spec §6.7): logit = s·w_eval + b_eval, score = σ(logit), for
// every (image, caption) pair; 8 threads per pair, 32 pairs per workgroup.

struct Params {
    rows: u32,   // pairs
    s: u32,      // S
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;                         // sizes and flags
@group(0) @binding(1) var<storage, read> sv: array<f32>;              // [rows, S]
@group(0) @binding(2) var<storage, read> w: array<f32>;               // [S]
@group(0) @binding(3) var<storage, read> b: array<f32>;               // [1]
@group(0) @binding(4) var<storage, read_write> logit: array<f32>;     // [rows]
@group(0) @binding(5) var<storage, read_write> score: array<f32>;     // [rows]

var<workgroup> red: array<f32, 256>;

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

@compute @workgroup_size(256)
fn head_forward(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = (wid.x + wid.y * nwg.x) * 32u + li / 8u;
    let lane = li % 8u;
    var acc = 0.0;
    if (row < p.rows) {
        for (var kk = lane; kk < p.s; kk += 8u) {
            acc += sv[row * p.s + kk] * w[kk];
        }
    }
    red[li] = acc;
    workgroupBarrier();
    for (var off = 4u; off > 0u; off >>= 1u) {
        if (lane < off) {
            red[li] += red[li + off];
        }
        workgroupBarrier();
    }
    if (lane == 0u && row < p.rows) {
        let z = red[li] + b[0];
        logit[row] = z;
        score[row] = sigmoid_acc(z);
    }
}

// ---------------------------------------------------------------------------
// head_backward: the sigmoid's backward, dlogit = dscore · σ · (1 − σ) from the
// forward's scores; one thread per pair. The Linear part (ds, dw, db) is the
// linear kernel's backward (src/gpu/head.rs).

@group(0) @binding(1) var<storage, read> dscore: array<f32>;          // [rows]
@group(0) @binding(2) var<storage, read> score_in: array<f32>;        // [rows] σ(logit) from the forward
@group(0) @binding(3) var<storage, read_write> dlogit: array<f32>;    // [rows]

@compute @workgroup_size(256)
fn head_backward(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = (wid.x + wid.y * nwg.x) * 256u + li;
    if (row >= p.rows) {
        return;
    }
    let y = score_in[row];
    dlogit[row] = dscore[row] * y * (1.0 - y);
}
