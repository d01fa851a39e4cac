// Similarity Attention Filtration (spec §6.6):
//   β = Linear_a(X) → BatchNorm1d(1) per caption → σ → divide by (Σ + 1e-8),
//   s = l2norm(Σ_j β_j X_j)
//
//   saf_forward_logits   β[r] = X[r]·w_a + b_a; 8 threads per node row, 32 rows per workgroup
//   saf_forward_stats    one workgroup per caption: BN statistics over all
//                        n_img × (L+1) logits of the caption (train) or the
//                        running ones (eval), as an affine map coef = (scale, shift)
//   saf_forward_running  (train) one thread: running stats updated once per caption, in caption order
//   saf_forward_pool     one workgroup per (caption, image) = (wid.x, wid.y): BN, σ, l1 weights, pooled l2norm vector
//
// Backward (β is recomputed with saf_forward_logits; Linear_a's backward runs in linear.wgsl):
//   saf_backward_filter  one workgroup per (caption, image): through the l2norm (norm recomputed
//                        from the weights), the weighted sum (dX += w·du) and the l1 normalisation
//                        and σ → dBN-out
//   saf_backward_bn      one workgroup, captions in order: BatchNorm1d(1) backward per caption
//                        (train: batch statistics over n_img × (L+1); eval: running), dBN-out → dβ
//                        in place, dweight/dbias accumulated caption by caption

struct Params {
    n_img: u32,
    n_cap: u32,
    n_nodes: u32,
    s: u32,          // S
    train: u32,      // 1 = batch statistics
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const EPS: f32 = 1e-5;

@group(0) @binding(0) var<uniform> p: Params;                         // sizes and flags

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

// saf_forward_logits
@group(0) @binding(1) var<storage, read> xl: array<f32>;             // [n_img, n_nodes, S]
@group(0) @binding(2) var<storage, read> w_a: array<f32>;            // [S]
@group(0) @binding(3) var<storage, read> b_a: array<f32>;            // [1]
@group(0) @binding(4) var<storage, read_write> logits: array<f32>;   // [n_img, n_nodes]

@compute @workgroup_size(256)
fn saf_forward_logits(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = (wid.x + wid.y * nwg.x) * 32u + li / 8u;
    let lane = li % 8u;
    let rows = p.n_img * p.n_nodes;
    var acc = 0.0;
    if (row < rows) {
        for (var kk = lane; kk < p.s; kk += 8u) {
            acc += xl[row * p.s + kk] * w_a[kk];
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
    if (lane == 0u && row < rows) {
        logits[row] = red[li] + b_a[0];
    }
}

// saf_forward_stats
@group(0) @binding(1) var<storage, read> beta_in: array<f32>;        // [n_img, n_nodes] logits
@group(0) @binding(2) var<storage, read> node_off: array<u32>;       // [n_cap + 1]
@group(0) @binding(3) var<storage, read> bn_w: array<f32>;           // [1]
@group(0) @binding(4) var<storage, read> bn_b: array<f32>;           // [1]
@group(0) @binding(5) var<storage, read> run_mean: array<f32>;       // [1]
@group(0) @binding(6) var<storage, read> run_var: array<f32>;        // [1]
@group(0) @binding(7) var<storage, read_write> stats: array<f32>;    // [2, n_cap]: batch mean, biased var (train)
@group(0) @binding(8) var<storage, read_write> coef: array<f32>;     // [2, n_cap]: scale, shift

var<workgroup> wg_nodes: vec2<u32>;

@compute @workgroup_size(256)
fn saf_forward_stats(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let c = wid.x;
    if (li == 0u) {
        wg_nodes = vec2<u32>(node_off[c], node_off[c + 1u] - node_off[c]);
    }
    let nodes = workgroupUniformLoad(&wg_nodes);
    var mean = run_mean[0];
    var var_b = run_var[0];
    if (p.train == 1u) {
        let m = nodes.y;
        let count = p.n_img * m;
        var s = 0.0;
        for (var t = li; t < count; t += 256u) {
            s += beta_in[(t / m) * p.n_nodes + nodes.x + t % m];
        }
        mean = block_sum(li, s) / f32(count);
        var q = 0.0;
        for (var t = li; t < count; t += 256u) {
            let d = beta_in[(t / m) * p.n_nodes + nodes.x + t % m] - mean;
            q += d * d;
        }
        var_b = block_sum(li, q) / f32(count);
    }
    if (li == 0u) {
        let scale = bn_w[0] / sqrt(var_b + EPS);
        coef[c] = scale;
        coef[p.n_cap + c] = bn_b[0] - mean * scale;
        if (p.train == 1u) {
            stats[c] = mean;
            stats[p.n_cap + c] = var_b;
        }
    }
}

// saf_forward_running
@group(0) @binding(1) var<storage, read> batch_stats: array<f32>;        // [2, n_cap]
@group(0) @binding(2) var<storage, read> offs: array<u32>;               // [n_cap + 1] node_off
@group(0) @binding(3) var<storage, read_write> upd_mean: array<f32>;     // [1] running mean
@group(0) @binding(4) var<storage, read_write> upd_var: array<f32>;      // [1] running var

@compute @workgroup_size(1)
fn saf_forward_running() {
    var rm = upd_mean[0];
    var rv = upd_var[0];
    for (var c = 0u; c < p.n_cap; c++) {
        let count = f32(p.n_img * (offs[c + 1u] - offs[c]));
        var unbias = 1.0;
        if (count > 1.0) {
            unbias = count / (count - 1.0);
        }
        rm = 0.9 * rm + 0.1 * batch_stats[c];
        rv = 0.9 * rv + 0.1 * batch_stats[p.n_cap + c] * unbias;
    }
    upd_mean[0] = rm;
    upd_var[0] = rv;
}

// saf_forward_pool
@group(0) @binding(1) var<storage, read_write> beta: array<f32>;     // [n_img, n_nodes]: logits in, BN output out
@group(0) @binding(2) var<storage, read> coefs: array<f32>;          // [2, n_cap]
@group(0) @binding(3) var<storage, read> x: array<f32>;              // [n_img, n_nodes, S]
@group(0) @binding(4) var<storage, read> pool_off: array<u32>;       // [n_cap + 1] node_off
@group(0) @binding(5) var<storage, read_write> weights: array<f32>;  // [n_img, n_nodes] normalised β
@group(0) @binding(6) var<storage, read_write> s_out: array<f32>;    // [n_img, n_cap, S]

@compute @workgroup_size(256)
fn saf_forward_pool(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let c = wid.x;
    let i = wid.y;
    if (li == 0u) {
        wg_nodes = vec2<u32>(pool_off[c], pool_off[c + 1u] - pool_off[c]);
    }
    let nodes = workgroupUniformLoad(&wg_nodes);
    let m = nodes.y;
    let n0 = i * p.n_nodes + nodes.x;
    let scale = coefs[c];
    let shift = coefs[p.n_cap + c];
    var part = 0.0;
    for (var j = li; j < m; j += 256u) {
        let bn = beta[n0 + j] * scale + shift;
        beta[n0 + j] = bn;
        let sg = sigmoid_acc(bn);
        weights[n0 + j] = sg;
        part += sg;
    }
    let denom = block_sum(li, part) + 1e-8;
    for (var j = li; j < m; j += 256u) {
        weights[n0 + j] = weights[n0 + j] / denom;
    }
    storageBarrier();
    let out = (i * p.n_cap + c) * p.s;
    var ss = 0.0;
    for (var kk = li; kk < p.s; kk += 256u) {
        var o = 0.0;
        for (var j = 0u; j < m; j++) {
            o += weights[n0 + j] * x[(n0 + j) * p.s + kk];
        }
        s_out[out + kk] = o;
        ss += o * o;
    }
    let norm = sqrt(block_sum(li, ss)) + 1e-8;
    for (var kk = li; kk < p.s; kk += 256u) {
        s_out[out + kk] = s_out[out + kk] / norm;
    }
}

// saf_backward_filter (S ≤ 1024)
@group(0) @binding(1) var<storage, read> bf_ds: array<f32>;            // [n_img, n_cap, S] gradient of s
@group(0) @binding(2) var<storage, read> bf_x: array<f32>;             // [n_img, n_nodes, S] nodes
@group(0) @binding(3) var<storage, read> bf_bn_out: array<f32>;        // [n_img, n_nodes] BN output
@group(0) @binding(4) var<storage, read> bf_weights: array<f32>;       // [n_img, n_nodes] normalised β
@group(0) @binding(5) var<storage, read> bf_node_off: array<u32>;      // [n_cap + 1]
@group(0) @binding(6) var<storage, read_write> bf_dx: array<f32>;      // [n_img, n_nodes, S], accumulated
@group(0) @binding(7) var<storage, read_write> bf_dbn_out: array<f32>; // [n_img, n_nodes], written

var<workgroup> wg_vec: array<f32, 1024>;   // [S] pooled vector u, then du

@compute @workgroup_size(256)
fn saf_backward_filter(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let c = wid.x;
    let i = wid.y;
    if (li == 0u) {
        wg_nodes = vec2<u32>(bf_node_off[c], bf_node_off[c + 1u] - bf_node_off[c]);
    }
    let nodes = workgroupUniformLoad(&wg_nodes);
    let m = nodes.y;
    let n0 = i * p.n_nodes + nodes.x;
    let sd = p.s;
    let out = (i * p.n_cap + c) * sd;
    // u = Σ_j w_j X_j and its norm
    var ss = 0.0;
    for (var kk = li; kk < sd; kk += 256u) {
        var o = 0.0;
        for (var j = 0u; j < m; j++) {
            o += bf_weights[n0 + j] * bf_x[(n0 + j) * sd + kk];
        }
        wg_vec[kk] = o;
        ss += o * o;
    }
    let nu = sqrt(block_sum(li, ss));
    let d = nu + 1e-8;
    // l2norm backward: du = ds/d − y·(y·ds)/‖u‖, y = u/d
    var part = 0.0;
    for (var kk = li; kk < sd; kk += 256u) {
        part += (wg_vec[kk] / d) * bf_ds[out + kk];
    }
    let dot = block_sum(li, part);
    var cc = 0.0;
    if (nu > 0.0) {
        cc = dot / nu;
    }
    for (var kk = li; kk < sd; kk += 256u) {
        wg_vec[kk] = bf_ds[out + kk] / d - (wg_vec[kk] / d) * cc;
    }
    workgroupBarrier();
    // weighted sum: dX_j += w_j·du
    for (var e = li; e < m * sd; e += 256u) {
        let j = e / sd;
        let kk = e % sd;
        bf_dx[(n0 + j) * sd + kk] += bf_weights[n0 + j] * wg_vec[kk];
    }
    // dw_j = X_j·du; w = σ/(Σσ + 1e-8): dσ_j = dw_j/D − Σ_k dw_k σ_k/D²; dBN = dσ·σ(1 − σ)
    var psig = 0.0;
    var pdot = 0.0;
    for (var j = li; j < m; j += 256u) {
        var dw = 0.0;
        for (var kk = 0u; kk < sd; kk++) {
            dw += bf_x[(n0 + j) * sd + kk] * wg_vec[kk];
        }
        let sg = sigmoid_acc(bf_bn_out[n0 + j]);
        bf_dbn_out[n0 + j] = dw;
        psig += sg;
        pdot += dw * sg;
    }
    let dd = block_sum(li, psig) + 1e-8;
    let dt = block_sum(li, pdot);
    for (var j = li; j < m; j += 256u) {
        let sg = sigmoid_acc(bf_bn_out[n0 + j]);
        let dsig = bf_dbn_out[n0 + j] / dd - dt / (dd * dd);
        bf_dbn_out[n0 + j] = dsig * sg * (1.0 - sg);
    }
}

// saf_backward_bn (one workgroup)
@group(0) @binding(1) var<storage, read_write> bb_dy: array<f32>;      // [n_img, n_nodes]: dBN-out in, dβ out
@group(0) @binding(2) var<storage, read> bb_beta: array<f32>;          // [n_img, n_nodes] logits (the BN input)
@group(0) @binding(3) var<storage, read> bb_node_off: array<u32>;      // [n_cap + 1]
@group(0) @binding(4) var<storage, read> bb_mean: array<f32>;          // train: stats [2, n_cap] (mean at c); eval: running_mean [1]
@group(0) @binding(5) var<storage, read> bb_var: array<f32>;           // train: stats [2, n_cap] (var at n_cap + c); eval: running_var [1]
@group(0) @binding(6) var<storage, read> bb_weight: array<f32>;        // [1]
@group(0) @binding(7) var<storage, read_write> bb_dweight: array<f32>; // [1], accumulated
@group(0) @binding(8) var<storage, read_write> bb_dbias: array<f32>;   // [1], accumulated

@compute @workgroup_size(256)
fn saf_backward_bn(@builtin(local_invocation_index) li: u32) {
    var acc_w = bb_dweight[0];
    var acc_b = bb_dbias[0];
    for (var c = 0u; c < p.n_cap; c++) {
        let start = bb_node_off[c];
        let m = bb_node_off[c + 1u] - start;
        var mu = bb_mean[0];
        var vr = bb_var[0];
        if (p.train == 1u) {
            mu = bb_mean[c];
            vr = bb_var[p.n_cap + c];
        }
        let inv_std = 1.0 / sqrt(vr + EPS);
        let count = p.n_img * m;
        var s_dy = 0.0;
        var s_dy_xhat = 0.0;
        for (var t = li; t < count; t += 256u) {
            let idx = (t / m) * p.n_nodes + start + t % m;
            let g = bb_dy[idx];
            s_dy += g;
            s_dy_xhat += g * ((bb_beta[idx] - mu) * inv_std);
        }
        s_dy = block_sum(li, s_dy);
        s_dy_xhat = block_sum(li, s_dy_xhat);
        acc_w += s_dy_xhat;
        acc_b += s_dy;
        let scale = bb_weight[0] * inv_std;
        var m_dy = 0.0;
        var m_dy_xhat = 0.0;
        if (p.train == 1u) {
            m_dy = s_dy / f32(count);
            m_dy_xhat = s_dy_xhat / f32(count);
        }
        for (var t = li; t < count; t += 256u) {
            let idx = (t / m) * p.n_nodes + start + t % m;
            let xhat = (bb_beta[idx] - mu) * inv_std;
            bb_dy[idx] = scale * (bb_dy[idx] - m_dy - xhat * m_dy_xhat);
        }
    }
    if (li == 0u) {
        bb_dweight[0] = acc_w;
        bb_dbias[0] = acc_b;
    }
}
