// Text self-attention `t_global_w` (spec §5.2), per caption over its own
// words, the parts that are not linear layers:
//
//   text_sa_forward_mean  t̄[c] = mean of caption c's packed word rows; one thread per (c, e)
//   text_sa_forward       one workgroup per caption: scores_j = (l_j ⊙ g_c)·w_c + b_c,
//                         w = softmax over the caption's words
//   text_sa_forward_pool  u[c] = Σ_j w_j t_j; t_glo = l2norm(u) follows (l2norm.wgsl, keeping norms)
//
// Training:
//   text_sa_backward_scores    one workgroup per caption: dw_j = t_j·du_c, dt_j += w_j du_c,
//                              dscore = softmax backward (w ⊙ (dw − Σ w dw))
//   text_sa_backward_branches  one thread per (caption, e): dl_j = ds_j g_c w_c,
//                              dg_c = Σ_j ds_j l_j w_c, per-caption part of dw_c = Σ_j ds_j l_j g_c
//   text_sa_backward_mean      dt_j += dmean_c / L_c; one thread per (word, e)

struct Params {
    n_cap: u32,
    e: u32,
    n_words: u32,   // text_sa_backward_mean only
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;                         // sizes and flags

// text_sa_forward_mean
@group(0) @binding(1) var<storage, read> tm: array<f32>;            // [n_words, E]
@group(0) @binding(2) var<storage, read> offs: array<u32>;          // [n_cap + 1] word_off
@group(0) @binding(3) var<storage, read_write> mean: array<f32>;    // [n_cap, E]

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
fn text_sa_forward_mean(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = (wid.x + wid.y * nwg.x) * 256u + li;
    if (idx >= p.n_cap * p.e) {
        return;
    }
    let c = idx / p.e;
    let k = idx % p.e;
    let w0 = offs[c];
    let w1 = offs[c + 1u];
    var s = 0.0;
    for (var w = w0; w < w1; w++) {
        s += tm[w * p.e + k];
    }
    mean[idx] = s / f32(w1 - w0);
}

// text_sa_forward
@group(0) @binding(1) var<storage, read> l: array<f32>;             // [n_words, E] tanh(local(t))
@group(0) @binding(2) var<storage, read> g: array<f32>;             // [n_cap, E] tanh(global(t̄))
@group(0) @binding(3) var<storage, read> w_c: array<f32>;           // [E] embedding_common weight
@group(0) @binding(4) var<storage, read> b_c: array<f32>;           // [1]
@group(0) @binding(5) var<storage, read> word_off: array<u32>;      // [n_cap + 1]
@group(0) @binding(6) var<storage, read_write> weights: array<f32>; // [n_words] softmax weights

var<workgroup> red: array<f32, 256>;
var<workgroup> wg_range: vec2<u32>;

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

fn block_max(li: u32, x: f32) -> f32 {
    red[li] = x;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (li < s) {
            red[li] = max(red[li], red[li + s]);
        }
        workgroupBarrier();
    }
    let m = red[0];
    workgroupBarrier();
    return m;
}

@compute @workgroup_size(256)
fn text_sa_forward(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let c = wid.x + wid.y * nwg.x;
    if (c >= p.n_cap) {
        return;
    }
    if (li == 0u) {
        wg_range = vec2<u32>(word_off[c], word_off[c + 1u]);
    }
    let range = workgroupUniformLoad(&wg_range);
    let w0 = range.x;
    let w1 = range.y;
    // Scores, kept in `weights` until normalised.
    var mx = -3.4e38;
    for (var w = w0; w < w1; w++) {
        var s = 0.0;
        for (var k = li; k < p.e; k += 256u) {
            s += l[w * p.e + k] * g[c * p.e + k] * w_c[k];
        }
        let score = block_sum(li, s) + b_c[0];
        mx = max(mx, score);
        if (li == 0u) {
            weights[w] = score;
        }
    }
    storageBarrier();
    // Softmax over the caption's words, one word per thread.
    var part = 0.0;
    for (var w = w0 + li; w < w1; w += 256u) {
        part += exp_acc(weights[w] - mx);
    }
    let total = block_sum(li, part);
    for (var w = w0 + li; w < w1; w += 256u) {
        weights[w] = exp_acc(weights[w] - mx) / total;
    }
}

// ---------------------------------------------------------------------------
// Training

// text_sa_forward_pool
@group(0) @binding(1) var<storage, read> fp_t: array<f32>;           // [n_words, E]
@group(0) @binding(2) var<storage, read> fp_w: array<f32>;           // [n_words] softmax weights
@group(0) @binding(3) var<storage, read> fp_off: array<u32>;         // [n_cap + 1] word_off
@group(0) @binding(4) var<storage, read_write> fp_u: array<f32>;     // [n_cap, E]

@compute @workgroup_size(256)
fn text_sa_forward_pool(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = (wid.x + wid.y * nwg.x) * 256u + li;
    if (idx >= p.n_cap * p.e) {
        return;
    }
    let c = idx / p.e;
    let k = idx % p.e;
    var o = 0.0;
    for (var w = fp_off[c]; w < fp_off[c + 1u]; w++) {
        o += fp_w[w] * fp_t[w * p.e + k];
    }
    fp_u[idx] = o;
}

// text_sa_backward_scores
@group(0) @binding(1) var<storage, read> bs_du: array<f32>;          // [n_cap, E] gradient of u
@group(0) @binding(2) var<storage, read> bs_t: array<f32>;           // [n_words, E]
@group(0) @binding(3) var<storage, read> bs_w: array<f32>;           // [n_words] softmax weights
@group(0) @binding(4) var<storage, read> bs_off: array<u32>;         // [n_cap + 1] word_off
@group(0) @binding(5) var<storage, read_write> bs_dt: array<f32>;    // [n_words, E] (+=)
@group(0) @binding(6) var<storage, read_write> bs_ds: array<f32>;    // [n_words] gradient of the scores

@compute @workgroup_size(256)
fn text_sa_backward_scores(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let c = wid.x + wid.y * nwg.x;
    if (c >= p.n_cap) {
        return;
    }
    if (li == 0u) {
        wg_range = vec2<u32>(bs_off[c], bs_off[c + 1u]);
    }
    let range = workgroupUniformLoad(&wg_range);
    let w0 = range.x;
    let w1 = range.y;
    // dw_j = t_j · du_c (kept in bs_ds until the softmax backward), dt_j += w_j du_c
    var dot = 0.0;
    for (var w = w0; w < w1; w++) {
        var s = 0.0;
        let wj = bs_w[w];
        for (var k = li; k < p.e; k += 256u) {
            let g = bs_du[c * p.e + k];
            s += bs_t[w * p.e + k] * g;
            bs_dt[w * p.e + k] = bs_dt[w * p.e + k] + wj * g;
        }
        let dw = block_sum(li, s);
        dot += wj * dw;
        if (li == 0u) {
            bs_ds[w] = dw;
        }
    }
    storageBarrier();
    for (var w = w0 + li; w < w1; w += 256u) {
        bs_ds[w] = bs_w[w] * (bs_ds[w] - dot);
    }
}

// text_sa_backward_branches
@group(0) @binding(1) var<storage, read> br_ds: array<f32>;          // [n_words] gradient of the scores
@group(0) @binding(2) var<storage, read> br_l: array<f32>;           // [n_words, E] local branch (after dropout)
@group(0) @binding(3) var<storage, read> br_g: array<f32>;           // [n_cap, E] global branch (after dropout)
@group(0) @binding(4) var<storage, read> br_wc: array<f32>;          // [E] embedding_common weight
@group(0) @binding(5) var<storage, read> br_off: array<u32>;         // [n_cap + 1] word_off
@group(0) @binding(6) var<storage, read_write> br_dl: array<f32>;    // [n_words, E] (=)
@group(0) @binding(7) var<storage, read_write> br_dg: array<f32>;    // [n_cap, E] (=)
@group(0) @binding(8) var<storage, read_write> br_dwc: array<f32>;   // [n_cap, E] per-caption part of dw_c

@compute @workgroup_size(256)
fn text_sa_backward_branches(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = (wid.x + wid.y * nwg.x) * 256u + li;
    if (idx >= p.n_cap * p.e) {
        return;
    }
    let c = idx / p.e;
    let k = idx % p.e;
    let gk = br_g[idx];
    let wk = br_wc[k];
    var dg = 0.0;
    var dwc = 0.0;
    for (var w = br_off[c]; w < br_off[c + 1u]; w++) {
        let ds = br_ds[w];
        let lk = br_l[w * p.e + k];
        br_dl[w * p.e + k] = ds * gk * wk;
        dg += ds * lk * wk;
        dwc += ds * lk * gk;
    }
    br_dg[idx] = dg;
    br_dwc[idx] = dwc;
}

// text_sa_backward_mean
@group(0) @binding(1) var<storage, read> bm_dmean: array<f32>;       // [n_cap, E]
@group(0) @binding(2) var<storage, read> bm_word_cap: array<u32>;    // [n_words]
@group(0) @binding(3) var<storage, read> bm_off: array<u32>;         // [n_cap + 1] word_off
@group(0) @binding(4) var<storage, read_write> bm_dt: array<f32>;    // [n_words, E] (+=)

// p._pad0 holds n_words here.
@compute @workgroup_size(256)
fn text_sa_backward_mean(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = (wid.x + wid.y * nwg.x) * 256u + li;
    if (idx >= p.n_words * p.e) {
        return;
    }
    let w = idx / p.e;
    let k = idx % p.e;
    let c = bm_word_cap[w];
    let len = f32(bm_off[c + 1u] - bm_off[c]);
    bm_dt[idx] = bm_dt[idx] + bm_dmean[c * p.e + k] / len;
}
