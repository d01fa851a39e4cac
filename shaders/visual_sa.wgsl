// Visual self-attention `v_global_w` (spec §5.1), the parts that are not
// linear layers or BatchNorms:
//
//   visual_sa_forward_mean  v̄[i] = mean over the 36 regions of v[i]; one thread per (i, e)
//   visual_sa_forward       one workgroup per image: scores_r = (l_r ⊙ g)·w_c + b_c,
//                           w = softmax over regions
//   visual_sa_forward_pool  u[i] = Σ_r w_r v_r; v_glo = l2norm(u) follows (l2norm.wgsl, keeping norms)
//
// Training:
//   visual_sa_backward_scores    one workgroup per image: dw_r = v_r·du_i, dv_r += w_r du_i,
//                                dscore = softmax backward (w ⊙ (dw − Σ w dw))
//   visual_sa_backward_branches  one thread per (image, e): dl_r = ds_r g_i w_c,
//                                dg_i = Σ_r ds_r l_r w_c, per-image part of dw_c = Σ_r ds_r l_r g_i
//   visual_sa_backward_mean      dv[i, r] += dmean[i] / R; one thread per (image, region, e)

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
@group(0) @binding(1) var<storage, read> l: array<f32>;             // [n, r, E] tanh(BN(local(v)))
@group(0) @binding(2) var<storage, read> g: array<f32>;             // [n, E] tanh(BN(global(v̄)))
@group(0) @binding(3) var<storage, read> w_c: array<f32>;           // [E] embedding_common weight
@group(0) @binding(4) var<storage, read> b_c: array<f32>;           // [1]
@group(0) @binding(5) var<storage, read_write> weights: array<f32>; // [n, r] softmax weights

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
        weights[i * p.r + li] = exp_acc(wr[li] - mx) / total;
    }
}

// ---------------------------------------------------------------------------
// Training

// visual_sa_forward_pool
@group(0) @binding(1) var<storage, read> fp_v: array<f32>;           // [n, r, E]
@group(0) @binding(2) var<storage, read> fp_w: array<f32>;           // [n, r] softmax weights
@group(0) @binding(3) var<storage, read_write> fp_u: array<f32>;     // [n, E]

@compute @workgroup_size(256)
fn visual_sa_forward_pool(
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
    var o = 0.0;
    for (var reg = 0u; reg < p.r; reg++) {
        o += fp_w[i * p.r + reg] * fp_v[(i * p.r + reg) * p.e + k];
    }
    fp_u[idx] = o;
}

// visual_sa_backward_scores
@group(0) @binding(1) var<storage, read> bs_du: array<f32>;          // [n, E] gradient of u
@group(0) @binding(2) var<storage, read> bs_v: array<f32>;           // [n, r, E]
@group(0) @binding(3) var<storage, read> bs_w: array<f32>;           // [n, r] softmax weights
@group(0) @binding(4) var<storage, read_write> bs_dv: array<f32>;    // [n, r, E] (+=)
@group(0) @binding(5) var<storage, read_write> bs_ds: array<f32>;    // [n, r] gradient of the scores

@compute @workgroup_size(256)
fn visual_sa_backward_scores(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = wid.x + wid.y * nwg.x;
    if (i >= p.n) {
        return;
    }
    var dot = 0.0;
    for (var reg = 0u; reg < p.r; reg++) {
        let wr_i = bs_w[i * p.r + reg];
        let row = (i * p.r + reg) * p.e;
        var s = 0.0;
        for (var k = li; k < p.e; k += 256u) {
            let g = bs_du[i * p.e + k];
            s += bs_v[row + k] * g;
            bs_dv[row + k] = bs_dv[row + k] + wr_i * g;
        }
        let dw = block_sum(li, s);
        dot += wr_i * dw;
        if (li == 0u) {
            wr[reg] = dw;
        }
    }
    workgroupBarrier();
    if (li < p.r) {
        bs_ds[i * p.r + li] = bs_w[i * p.r + li] * (wr[li] - dot);
    }
}

// visual_sa_backward_branches
@group(0) @binding(1) var<storage, read> br_ds: array<f32>;          // [n, r] gradient of the scores
@group(0) @binding(2) var<storage, read> br_l: array<f32>;           // [n, r, E] local branch (after dropout)
@group(0) @binding(3) var<storage, read> br_g: array<f32>;           // [n, E] global branch (after dropout)
@group(0) @binding(4) var<storage, read> br_wc: array<f32>;          // [E] embedding_common weight
@group(0) @binding(5) var<storage, read_write> br_dl: array<f32>;    // [n, r, E] (=)
@group(0) @binding(6) var<storage, read_write> br_dg: array<f32>;    // [n, E] (=)
@group(0) @binding(7) var<storage, read_write> br_dwc: array<f32>;   // [n, E] per-image part of dw_c

@compute @workgroup_size(256)
fn visual_sa_backward_branches(
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
    let gk = br_g[idx];
    let wk = br_wc[k];
    var dg = 0.0;
    var dwc = 0.0;
    for (var reg = 0u; reg < p.r; reg++) {
        let ds = br_ds[i * p.r + reg];
        let row = (i * p.r + reg) * p.e;
        let lk = br_l[row + k];
        br_dl[row + k] = ds * gk * wk;
        dg += ds * lk * wk;
        dwc += ds * lk * gk;
    }
    br_dg[idx] = dg;
    br_dwc[idx] = dwc;
}

// visual_sa_backward_mean
@group(0) @binding(1) var<storage, read> bm_dmean: array<f32>;       // [n, E]
@group(0) @binding(2) var<storage, read_write> bm_dv: array<f32>;    // [n, r, E] (+=)

@compute @workgroup_size(256)
fn visual_sa_backward_mean(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = (wid.x + wid.y * nwg.x) * 256u + li;
    if (idx >= p.n * p.r * p.e) {
        return;
    }
    let i = idx / (p.r * p.e);
    let k = idx % p.e;
    bm_dv[idx] = bm_dv[idx] + bm_dmean[i * p.e + k] / f32(p.r);
}
