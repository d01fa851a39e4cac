// Inverted dropout with a given mask (spec §1; masks are drawn on the host so
// that the GPU and CPU twins drop the same entries), and the backward of a
// `tanh` followed by such a dropout (the self-attention branches).
//
//   dropout_forward        x ← x · mask                       (one thread per element)
//   dropout_backward_tanh  d ← d · mask · (1 − th²)           (mask optional: has_mask = 0)

struct Params {
    n: u32,         // elements
    has_mask: u32,  // dropout_backward_tanh: 0 = no dropout
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;                         // sizes and flags

// dropout_forward
@group(0) @binding(1) var<storage, read_write> x: array<f32>;     // [n]
@group(0) @binding(2) var<storage, read> mask: array<f32>;        // [n] 0 or 1/(1−p)

@compute @workgroup_size(256)
fn dropout_forward(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = (wid.x + wid.y * nwg.x) * 256u + li;
    if (i >= p.n) {
        return;
    }
    x[i] = x[i] * mask[i];
}

// dropout_backward_tanh
@group(0) @binding(1) var<storage, read_write> d: array<f32>;     // [n] gradient, in place
@group(0) @binding(2) var<storage, read> th: array<f32>;          // [n] tanh output (before dropout)
@group(0) @binding(3) var<storage, read> m: array<f32>;           // [n] mask (unread when has_mask = 0)

@compute @workgroup_size(256)
fn dropout_backward_tanh(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = (wid.x + wid.y * nwg.x) * 256u + li;
    if (i >= p.n) {
        return;
    }
    var g = d[i];
    if (p.has_mask == 1u) {
        g = g * m[i];
    }
    let t = th[i];
    d[i] = g * (1.0 - t * t);
}
