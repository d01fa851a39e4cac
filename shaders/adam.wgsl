// The optimizer step (spec §9.3): global-norm gradient clipping and Adam, as
// train::clip and train::adam, with no readback.
//
// Clipping, over every parameter gradient (many buffers):
//  1. clip_norm_partial, once per gradient tensor: `groups` workgroups (grid
//     (groups)) each add the squares of a grid-strided part of g and write one
//     partial sum to partials[slot + workgroup];
//  2. clip_norm_total, one workgroup: norm = sqrt(Σ partials) (fixed order),
//     coef = max_norm / (norm + 1e-6), written to norm_out = [norm, coef];
//  3. clip_scale, once per gradient tensor: g ← g · coef when coef < 1 (read
//     from the buffer, so the host never sees the norm).
// Adam (adam_update, once per parameter tensor, one thread per element):
//   m ← m + (1 − β₁)(g − m),  v ← β₂ v + (1 − β₂) g²,
//   p ← p − step_size · m / (sqrt(v) / bc2_sqrt + ε)
// with step_size = lr / (1 − β₁ᵗ) and bc2_sqrt = sqrt(1 − β₂ᵗ) computed on the
// host in float64 (as the CPU twin).

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

// ---- clipping

struct ClipParams {
    n: u32,          // elements of this gradient (partial, scale); partials (total)
    slot: u32,       // first partial of this tensor (partial)
    max_norm: f32,   // (total)
    _pad: u32,
}

@group(0) @binding(0) var<uniform> cp: ClipParams;                        // sizes and flags
@group(0) @binding(1) var<storage, read> g_in: array<f32>;                // [n] one gradient tensor
@group(0) @binding(2) var<storage, read_write> partials_out: array<f32>;  // [Σ groups]

@compute @workgroup_size(256)
fn clip_norm_partial(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    var acc = 0.0;
    for (var i = wid.x * 256u + li; i < cp.n; i += nwg.x * 256u) {
        let v = g_in[i];
        acc += v * v;
    }
    let total = block_sum(li, acc);
    if (li == 0u) {
        partials_out[cp.slot + wid.x] = total;
    }
}

@group(0) @binding(1) var<storage, read> partials: array<f32>;           // [n]
@group(0) @binding(2) var<storage, read_write> norm_out: array<f32>;     // [2] norm, coef

@compute @workgroup_size(256)
fn clip_norm_total(@builtin(local_invocation_index) li: u32) {
    var acc = 0.0;
    for (var i = li; i < cp.n; i += 256u) {
        acc += partials[i];
    }
    let total = block_sum(li, acc);
    if (li == 0u) {
        let norm = sqrt(total);
        norm_out[0] = norm;
        norm_out[1] = cp.max_norm / (norm + 1e-6);
    }
}

@group(0) @binding(1) var<storage, read> norm_in: array<f32>;            // [2] norm, coef
@group(0) @binding(2) var<storage, read_write> g_io: array<f32>;         // [n] one gradient tensor

@compute @workgroup_size(256)
fn clip_scale(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = (wid.x + wid.y * nwg.x) * 256u + li;
    let coef = norm_in[1];
    if (i < cp.n && coef < 1.0) {
        g_io[i] = g_io[i] * coef;
    }
}

// ---- Adam

struct AdamParams {
    n: u32,
    t: u32,           // step number, 1 on the first update (informational)
    lr: f32,          // (informational: step_size carries it)
    beta1: f32,
    beta2: f32,
    eps: f32,
    step_size: f32,   // lr / (1 − β₁ᵗ)
    bc2_sqrt: f32,    // sqrt(1 − β₂ᵗ)
}

@group(0) @binding(0) var<uniform> ap: AdamParams;                     // sizes and hyper-parameters
@group(0) @binding(1) var<storage, read> grad: array<f32>;             // [n]
@group(0) @binding(2) var<storage, read_write> param: array<f32>;      // [n]
@group(0) @binding(3) var<storage, read_write> m1: array<f32>;         // [n] first moment
@group(0) @binding(4) var<storage, read_write> m2: array<f32>;         // [n] second moment

@compute @workgroup_size(256)
fn adam_update(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = (wid.x + wid.y * nwg.x) * 256u + li;
    if (i >= ap.n) {
        return;
    }
    let g = grad[i];
    let m = m1[i] + (1.0 - ap.beta1) * (g - m1[i]);
    let v = ap.beta2 * m2[i] + (1.0 - ap.beta2) * g * g;
    m1[i] = m;
    m2[i] = v;
    let denom = sqrt(v) / ap.bc2_sqrt + ap.eps;
    param[i] = param[i] - ap.step_size * m / denom;
}
