// BatchNorm1d (PyTorch semantics, spec §1) on x [N, C, L], channel axis 1,
// with an optional tanh after the affine map (VisualSA uses tanh(BN(·))).
//
//   batchnorm_forward_stats   (train) one workgroup per channel: batch mean
//                             and biased variance over N·L values (two passes)
//   batchnorm_forward         in place: y = (x − μ)/sqrt(σ² + 1e-5)·w + b, then act
//   batchnorm_update_running  (train) running ← 0.9·running + 0.1·batch
//                             (variance made unbiased with N·L/(N·L − 1))

struct Params {
    n: u32,
    c: u32,
    l: u32,
    act: u32,        // 0 none, 2 tanh
    mean_off: u32,   // μ[ch] = mean[mean_off + ch]
    var_off: u32,    // σ²[ch] = var[var_off + ch]
    _pad0: u32,
    _pad1: u32,
}

const EPS: f32 = 1e-5;

@group(0) @binding(0) var<uniform> p: Params;

// batchnorm_forward_stats
@group(0) @binding(1) var<storage, read> xs: array<f32>;          // [N, C, L]
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;  // [2, C]: mean, biased var

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

fn stable_tanh(v: f32) -> f32 {
    let e = exp(-2.0 * abs(v));
    return sign(v) * (1.0 - e) / (1.0 + e);
}

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
        v = stable_tanh(v);
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
