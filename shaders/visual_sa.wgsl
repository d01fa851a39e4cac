// Visual self-attention `v_global_w` (spec §5.1), the parts that are not
// linear layers or BatchNorms:
//
//   visual_sa_forward_mean  v̄[i] = mean over the 36 regions of v[i]; one thread per (i, e)
//   visual_sa_forward       one workgroup per image: scores_r = (l_r ⊙ g)·w_c + b_c,
//                           w = softmax over regions, v_glo = l2norm(Σ_r w_r v_r)

struct Params {
    n: u32,        // images
    r: u32,        // regions (36)
    e: u32,        // E
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;                         // sizes and flags

// visual_sa_forward_mean
@group(0) @binding(1) var<storage, read> vm: array<f32>;            // [n, r, E]
@group(0) @binding(2) var<storage, read_write> mean: array<f32>;    // [n, E]

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
fn visual_sa_forward_mean(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = (wid.x + wid.y * nwg.x) * 256u + li;
    if (idx >= p.n * p.e) {
        return;
    }
    let i = idx / p.e;
    let k = idx % p.e;
    var s = 0.0;
    for (var reg = 0u; reg < p.r; reg++) {
        s += vm[(i * p.r + reg) * p.e + k];
    }
    mean[idx] = s / f32(p.r);
}

// visual_sa_forward
@group(0) @binding(1) var<storage, read> v: array<f32>;             // [n, r, E] regions
@group(0) @binding(2) var<storage, read> l: array<f32>;             // [n, r, E] tanh(BN(local(v)))
@group(0) @binding(3) var<storage, read> g: array<f32>;             // [n, E] tanh(BN(global(v̄)))
@group(0) @binding(4) var<storage, read> w_c: array<f32>;           // [E] embedding_common weight
@group(0) @binding(5) var<storage, read> b_c: array<f32>;           // [1]
@group(0) @binding(6) var<storage, read_write> v_glo: array<f32>;   // [n, E]
@group(0) @binding(7) var<storage, read_write> weights: array<f32>; // [n, r] softmax weights

var<workgroup> red: array<f32, 256>;
var<workgroup> wr: array<f32, 256>;      // region weights (r ≤ 256)

fn block_sum(li: u32, x: f32) -> f32 {
    red[li] = x;
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
fn visual_sa_forward(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = wid.x + wid.y * nwg.x;
    if (i >= p.n) {
        return;
    }
    for (var reg = 0u; reg < p.r; reg++) {
        var s = 0.0;
        for (var k = li; k < p.e; k += 256u) {
            s += l[(i * p.r + reg) * p.e + k] * g[i * p.e + k] * w_c[k];
        }
        let score = block_sum(li, s) + b_c[0];
        if (li == 0u) {
            wr[reg] = score;
        }
    }
    workgroupBarrier();
    var mx = -3.4e38;
    for (var reg = 0u; reg < p.r; reg++) {
        mx = max(mx, wr[reg]);
    }
    var total = 0.0;
    for (var reg = 0u; reg < p.r; reg++) {
        total += exp_acc(wr[reg] - mx);
    }
    workgroupBarrier();
    if (li < p.r) {
        let w = exp_acc(wr[li] - mx) / total;
        wr[li] = w;
        weights[i * p.r + li] = w;
    }
    workgroupBarrier();
    var ss = 0.0;
    for (var k = li; k < p.e; k += 256u) {
        var o = 0.0;
        for (var reg = 0u; reg < p.r; reg++) {
            o += wr[reg] * v[(i * p.r + reg) * p.e + k];
        }
        v_glo[i * p.e + k] = o;
        ss += o * o;
    }
    let norm = sqrt(block_sum(li, ss)) + 1e-8;
    for (var k = li; k < p.e; k += 256u) {
        v_glo[i * p.e + k] = v_glo[i * p.e + k] / norm;
    }
}
