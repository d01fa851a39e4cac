// Score head (spec §6.7): logit = s·w_eval + b_eval, score = σ(logit), for
// every (image, caption) pair; 8 threads per pair, 32 pairs per workgroup.

struct Params {
    rows: u32,   // pairs
    s: u32,      // S
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> sv: array<f32>;              // [rows, S]
@group(0) @binding(2) var<storage, read> w: array<f32>;               // [S]
@group(0) @binding(3) var<storage, read> b: array<f32>;               // [1]
@group(0) @binding(4) var<storage, read_write> logit: array<f32>;     // [rows]
@group(0) @binding(5) var<storage, read_write> score: array<f32>;     // [rows]

var<workgroup> red: array<f32, 256>;

fn stable_sigmoid(v: f32) -> f32 {
    if (v >= 0.0) {
        return 1.0 / (1.0 + exp(-v));
    }
    let e = exp(v);
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
        score[row] = stable_sigmoid(z);
    }
}
