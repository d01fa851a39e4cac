// BatchNorm1d (PyTorch semantics, spec §1) on x [N, C, L], channel axis 1,
// with an optional tanh after the affine map (VisualSA uses tanh(BN(·))).
//
//   batchnorm_forward_stats   (train) one workgroup per channel: batch mean
//                             and biased variance over N·L values (two passes)
//   batchnorm_forward         in place: y = (x − μ)/sqrt(σ² + 1e-5)·w + b, then act
//   batchnorm_update_running  (train) running ← 0.9·running + 0.1·batch
//                             (variance made unbiased with N·L/(N·L − 1))
//   batchnorm_backward        one workgroup per channel: dx, dweight, dbias (accumulate)

struct Params {
    n: u32,
    c: u32,
    l: u32,
    act: u32,        // 0 none, 2 tanh (batchnorm_backward: 1 train, 0 eval)
    mean_off: u32,   // μ[ch] = mean[mean_off + ch]
    var_off: u32,    // σ²[ch] = var[var_off + ch]
    _pad0: u32,
    _pad1: u32,
}

const EPS: f32 = 1e-5;

@group(0) @binding(0) var<uniform> p: Params;                         // sizes and flags

// batchnorm_forward_stats
@group(0) @binding(1) var<storage, read> xs: array<f32>;          // [N, C, L]
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;  // [2, C]: mean, biased var

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

@compute @workgroup_size(256)
fn batchnorm_forward_stats(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let ch = wid.x;
    let count = p.n * p.l;
    var s = 0.0;
    for (var t = li; t < count; t += 256u) {
        let i = t / p.l;
        let j = t % p.l;
        s += xs[(i * p.c + ch) * p.l + j];
    }
    let mean = block_sum(li, s) / f32(count);
    var q = 0.0;
    for (var t = li; t < count; t += 256u) {
        let i = t / p.l;
        let j = t % p.l;
        let d = xs[(i * p.c + ch) * p.l + j] - mean;
        q += d * d;
    }
    let var_b = block_sum(li, q) / f32(count);
    if (li == 0u) {
        stats[ch] = mean;
        stats[p.c + ch] = var_b;
    }
}

// batchnorm_forward
@group(0) @binding(1) var<storage, read_write> x: array<f32>;     // [N, C, L]
@group(0) @binding(2) var<storage, read> mean: array<f32>;        // [.., C] at mean_off
@group(0) @binding(3) var<storage, read> variance: array<f32>;    // [.., C] at var_off
@group(0) @binding(4) var<storage, read> weight: array<f32>;      // [C]
@group(0) @binding(5) var<storage, read> bias: array<f32>;        // [C]

@compute @workgroup_size(256)
fn batchnorm_forward(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = (wid.x + wid.y * nwg.x) * 256u + li;
    if (idx >= p.n * p.c * p.l) {
        return;
    }
    let ch = (idx / p.l) % p.c;
    let scale = weight[ch] / sqrt(variance[p.var_off + ch] + EPS);
    let shift = bias[ch] - mean[p.mean_off + ch] * scale;
    var v = x[idx] * scale + shift;
    if (p.act == 2u) {
        v = tanh_acc(v);
    }
    x[idx] = v;
}

// batchnorm_update_running
@group(0) @binding(1) var<storage, read> batch_stats: array<f32>;      // [2, C]
@group(0) @binding(2) var<storage, read_write> run_mean: array<f32>;   // [C]
@group(0) @binding(3) var<storage, read_write> run_var: array<f32>;    // [C]

@compute @workgroup_size(256)
fn batchnorm_update_running(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ch = gid.x;
    if (ch >= p.c) {
        return;
    }
    let count = f32(p.n * p.l);
    var unbias = 1.0;
    if (count > 1.0) {
        unbias = count / (count - 1.0);
    }
    run_mean[ch] = 0.9 * run_mean[ch] + 0.1 * batch_stats[ch];
    run_var[ch] = 0.9 * run_var[ch] + 0.1 * batch_stats[p.c + ch] * unbias;
}

// batchnorm_backward   one workgroup per channel, x the BatchNorm *input*
// (act none). Σdy and Σdy·x̂ over the N·L values of the channel, then
//   dweight += Σdy·x̂,  dbias += Σdy,
//   dx += w/sqrt(σ² + ε) · (dy − mean(dy) − x̂·mean(dy·x̂))   (train, p.act = 1)
//   dx += w/sqrt(σ² + ε) · dy                               (eval,  p.act = 0)
@group(0) @binding(1) var<storage, read> bd_dy: array<f32>;            // [N, C, L]
@group(0) @binding(2) var<storage, read> bd_x: array<f32>;             // [N, C, L]
@group(0) @binding(3) var<storage, read> bd_mean: array<f32>;          // [.., C] at mean_off
@group(0) @binding(4) var<storage, read> bd_var: array<f32>;           // [.., C] at var_off
@group(0) @binding(5) var<storage, read> bd_weight: array<f32>;        // [C]
@group(0) @binding(6) var<storage, read_write> bd_dweight: array<f32>; // [C], accumulated
@group(0) @binding(7) var<storage, read_write> bd_dbias: array<f32>;   // [C], accumulated
@group(0) @binding(8) var<storage, read_write> bd_dx: array<f32>;      // [N, C, L], accumulated

@compute @workgroup_size(256)
fn batchnorm_backward(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let ch = wid.x;
    let count = p.n * p.l;
    let mu = bd_mean[p.mean_off + ch];
    let inv_std = 1.0 / sqrt(bd_var[p.var_off + ch] + EPS);
    var s_dy = 0.0;
    var s_dy_xhat = 0.0;
    for (var t = li; t < count; t += 256u) {
        let idx = ((t / p.l) * p.c + ch) * p.l + t % p.l;
        let g = bd_dy[idx];
        s_dy += g;
        s_dy_xhat += g * ((bd_x[idx] - mu) * inv_std);
    }
    s_dy = block_sum(li, s_dy);
    s_dy_xhat = block_sum(li, s_dy_xhat);
    if (li == 0u) {
        bd_dweight[ch] += s_dy_xhat;
        bd_dbias[ch] += s_dy;
    }
    let scale = bd_weight[ch] * inv_std;
    var m_dy = 0.0;
    var m_dy_xhat = 0.0;
    if (p.act == 1u) {
        m_dy = s_dy / f32(count);
        m_dy_xhat = s_dy_xhat / f32(count);
    }
    for (var t = li; t < count; t += 256u) {
        let idx = ((t / p.l) * p.c + ch) * p.l + t % p.l;
        let xhat = (bd_x[idx] - mu) * inv_std;
        bd_dx[idx] += scale * (bd_dy[idx] - m_dy - xhat * m_dy_xhat);
    }
}
