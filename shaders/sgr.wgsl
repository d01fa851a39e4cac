// Similarity Graph Reasoning (spec §6.5). One step is
//   Q = Linear_q(X), K = Linear_k(X)          (linear_forward)
//   A = softmax_rows(Q Kᵀ), Y = A X           (sgr_forward_attend, per (image, caption) graph)
//   X ← ReLU(Linear_g(Y))                     (linear_forward, ReLU epilogue)
// and after the last step sgr_forward_gather takes node 0 (the global node)
// of every (image, caption).
//
//   sgr_forward_attend  one workgroup per (caption, image) = (wid.x, wid.y), over the
//                       caption's m = L + 1 nodes: logits in 16×16 tiles (S in
//                       slices of 16) into `attn`, row softmax, then Y = A·X in
//                       16×16 tiles.
//   sgr_forward_gather  s[i, c] = X[i, node_off[c]]; one thread per element.
//   sgr_forward_attend_global  scores-only last step for node 0 (below).
//
// Backward of one step (the Linears' backward runs in linear.wgsl):
//   sgr_backward_relu    dpre = dout where out > 0, else 0; one thread per element.
//   sgr_backward_attend  one workgroup per (caption, image): dA = dY·Xᵀ, the row
//                        softmax backward dL = A ∘ (dA − rowsum(A ∘ dA)) into
//                        `dlogit`, and dX += Aᵀ·dY.
//   sgr_backward_qk      one workgroup per (caption, image): dQ = dL·K, dK = dLᵀ·Q
//                        (written, every node row belongs to exactly one graph).
//   sgr_backward_gather  backward of sgr_forward_gather: dX[i, node_off[c]] += ds[i, c];
//                        one thread per element.

struct Params {
    n_img: u32,
    n_cap: u32,
    n_nodes: u32,
    s: u32,          // S
    sq_total: u32,   // Σ_c m_c², attention entries per image
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;                         // sizes and flags

// sgr_forward_attend
@group(0) @binding(1) var<storage, read> q: array<f32>;              // [n_img, n_nodes, S]
@group(0) @binding(2) var<storage, read> k: array<f32>;              // [n_img, n_nodes, S]
@group(0) @binding(3) var<storage, read> x: array<f32>;              // [n_img, n_nodes, S]
@group(0) @binding(4) var<storage, read> node_off: array<u32>;       // [n_cap + 1]
@group(0) @binding(5) var<storage, read> sq_off: array<u32>;         // [n_cap + 1], Σ_{c' < c} m_c'²
@group(0) @binding(6) var<storage, read_write> attn: array<f32>;     // [n_img, sq_total]: A of (i, c) at i·sq_total + sq_off[c], [m, m]
@group(0) @binding(7) var<storage, read_write> y: array<f32>;        // [n_img, n_nodes, S] A·X

const T: u32 = 16u;
const TP: u32 = 17u;   // padded row of a shared tile

var<workgroup> ta: array<f32, 272>;   // [16, 17]
var<workgroup> tb: array<f32, 272>;   // [16, 17]
var<workgroup> wg_info: vec3<u32>;    // node_off[c], m, sq_off[c]

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
fn sgr_forward_attend(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let c = wid.x;
    let i = wid.y;
    if (li == 0u) {
        wg_info = vec3<u32>(node_off[c], node_off[c + 1u] - node_off[c], sq_off[c]);
    }
    let info = workgroupUniformLoad(&wg_info);
    let m = info.y;
    let n0 = i * p.n_nodes + info.x;          // first node row of this graph
    let abase = i * p.sq_total + info.z;      // A[0, 0]
    let s_dim = p.s;
    let tx = li % T;
    let ty = li / T;
    let tiles = (m + T - 1u) / T;

    // Logits Q Kᵀ.
    for (var pt = 0u; pt < tiles; pt++) {
        for (var qt = 0u; qt < tiles; qt++) {
            var acc = 0.0;
            for (var s0 = 0u; s0 < s_dim; s0 += T) {
                let qr = pt * T + ty;
                let kr = qt * T + ty;
                var qv = 0.0;
                var kv = 0.0;
                if (s0 + tx < s_dim) {
                    if (qr < m) { qv = q[(n0 + qr) * s_dim + s0 + tx]; }
                    if (kr < m) { kv = k[(n0 + kr) * s_dim + s0 + tx]; }
                }
                ta[ty * TP + tx] = qv;
                tb[ty * TP + tx] = kv;
                workgroupBarrier();
                for (var kk = 0u; kk < T; kk++) {
                    acc += ta[ty * TP + kk] * tb[tx * TP + kk];
                }
                workgroupBarrier();
            }
            let pr = pt * T + ty;
            let qc = qt * T + tx;
            if (pr < m && qc < m) {
                attn[abase + pr * m + qc] = acc;
            }
        }
    }
    storageBarrier();

    // Row softmax, one row per thread.
    for (var r = li; r < m; r += 256u) {
        let rb = abase + r * m;
        var mx = -3.4e38;
        for (var j = 0u; j < m; j++) {
            mx = max(mx, attn[rb + j]);
        }
        var total = 0.0;
        for (var j = 0u; j < m; j++) {
            let e = exp_acc(attn[rb + j] - mx);
            attn[rb + j] = e;
            total += e;
        }
        for (var j = 0u; j < m; j++) {
            attn[rb + j] = attn[rb + j] / total;
        }
    }
    storageBarrier();

    // Y = A X.
    let col_tiles = (s_dim + T - 1u) / T;
    for (var pt = 0u; pt < tiles; pt++) {
        for (var st = 0u; st < col_tiles; st++) {
            var acc = 0.0;
            for (var q0 = 0u; q0 < m; q0 += T) {
                let ar = pt * T + ty;
                var av = 0.0;
                if (ar < m && q0 + tx < m) {
                    av = attn[abase + ar * m + q0 + tx];
                }
                var xv = 0.0;
                if (q0 + ty < m && st * T + tx < s_dim) {
                    xv = x[(n0 + q0 + ty) * s_dim + st * T + tx];
                }
                ta[ty * TP + tx] = av;
                tb[ty * TP + tx] = xv;
                workgroupBarrier();
                for (var kk = 0u; kk < T; kk++) {
                    acc += ta[ty * TP + kk] * tb[kk * TP + tx];
                }
                workgroupBarrier();
            }
            let pr = pt * T + ty;
            let col = st * T + tx;
            if (pr < m && col < s_dim) {
                y[(n0 + pr) * s_dim + col] = acc;
            }
        }
    }
}

// sgr_forward_gather
@group(0) @binding(1) var<storage, read> xg: array<f32>;             // [n_img, n_nodes, S]
@group(0) @binding(2) var<storage, read> offs: array<u32>;           // [n_cap + 1] node_off
@group(0) @binding(3) var<storage, read_write> s_out: array<f32>;    // [n_img, n_cap, S]

@compute @workgroup_size(256)
fn sgr_forward_gather(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = (wid.x + wid.y * nwg.x) * 256u + li;
    if (idx >= p.n_img * p.n_cap * p.s) {
        return;
    }
    let pair = idx / p.s;
    let kk = idx % p.s;
    let i = pair / p.n_cap;
    let c = pair % p.n_cap;
    s_out[idx] = xg[(i * p.n_nodes + offs[c]) * p.s + kk];
}

// sgr_forward_attend_global: the last step of the scores-only (eval) form,
// for the global node only. One workgroup per (caption, image) = (wid.x, wid.y):
//   a_j = softmax_j(p0 · X_j) over the caption's m nodes, y0 = Σ_j a_j X_j,
// with p0 = X_0·Mᵀ + c the folded query of the global node (see sgr.rs).
@group(0) @binding(1) var<storage, read> p0: array<f32>;             // [n_img, n_cap, S]
@group(0) @binding(2) var<storage, read> xn: array<f32>;             // [n_img, n_nodes, S]
@group(0) @binding(3) var<storage, read> goff: array<u32>;           // [n_cap + 1] node_off
@group(0) @binding(4) var<storage, read_write> logits: array<f32>;   // [n_img, n_nodes] scratch: a_j at the node's row
@group(0) @binding(5) var<storage, read_write> y0: array<f32>;       // [n_img, n_cap, S]

var<workgroup> red: array<f32, 256>;
var<workgroup> wg_nodes: vec2<u32>;

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
fn sgr_forward_attend_global(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let c = wid.x;
    let i = wid.y;
    if (li == 0u) {
        wg_nodes = vec2<u32>(goff[c], goff[c + 1u] - goff[c]);
    }
    let nodes = workgroupUniformLoad(&wg_nodes);
    let m = nodes.y;
    let n0 = i * p.n_nodes + nodes.x;
    let prow = (i * p.n_cap + c) * p.s;
    var mx = -3.4e38;
    for (var j = 0u; j < m; j++) {
        var part = 0.0;
        for (var kk = li; kk < p.s; kk += 256u) {
            part += p0[prow + kk] * xn[(n0 + j) * p.s + kk];
        }
        let a = block_sum(li, part);
        mx = max(mx, a);
        if (li == 0u) {
            logits[n0 + j] = a;
        }
    }
    storageBarrier();
    var part = 0.0;
    for (var j = li; j < m; j += 256u) {
        part += exp_acc(logits[n0 + j] - mx);
    }
    let total = block_sum(li, part);
    for (var j = li; j < m; j += 256u) {
        logits[n0 + j] = exp_acc(logits[n0 + j] - mx) / total;
    }
    storageBarrier();
    for (var kk = li; kk < p.s; kk += 256u) {
        var o = 0.0;
        for (var j = 0u; j < m; j++) {
            o += logits[n0 + j] * xn[(n0 + j) * p.s + kk];
        }
        y0[prow + kk] = o;
    }
}

// sgr_backward_relu
@group(0) @binding(1) var<storage, read> br_dout: array<f32>;          // [n_img, n_nodes, S]
@group(0) @binding(2) var<storage, read> br_out: array<f32>;           // [n_img, n_nodes, S] ReLU output
@group(0) @binding(3) var<storage, read_write> br_dpre: array<f32>;    // [n_img, n_nodes, S]

@compute @workgroup_size(256)
fn sgr_backward_relu(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = (wid.x + wid.y * nwg.x) * 256u + li;
    if (idx >= p.n_img * p.n_nodes * p.s) {
        return;
    }
    var g = 0.0;
    if (br_out[idx] > 0.0) {
        g = br_dout[idx];
    }
    br_dpre[idx] = g;
}

// sgr_backward_attend
@group(0) @binding(1) var<storage, read> ba_dy: array<f32>;            // [n_img, n_nodes, S] gradient of A·X
@group(0) @binding(2) var<storage, read> ba_x: array<f32>;             // [n_img, n_nodes, S] step input
@group(0) @binding(3) var<storage, read> ba_attn: array<f32>;          // [n_img, sq_total] A
@group(0) @binding(4) var<storage, read> ba_node_off: array<u32>;      // [n_cap + 1]
@group(0) @binding(5) var<storage, read> ba_sq_off: array<u32>;        // [n_cap + 1]
@group(0) @binding(6) var<storage, read_write> ba_dlogit: array<f32>;  // [n_img, sq_total] dL
@group(0) @binding(7) var<storage, read_write> ba_dx: array<f32>;      // [n_img, n_nodes, S], accumulated

@compute @workgroup_size(256)
fn sgr_backward_attend(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let c = wid.x;
    let i = wid.y;
    if (li == 0u) {
        wg_info = vec3<u32>(ba_node_off[c], ba_node_off[c + 1u] - ba_node_off[c], ba_sq_off[c]);
    }
    let info = workgroupUniformLoad(&wg_info);
    let m = info.y;
    let n0 = i * p.n_nodes + info.x;
    let abase = i * p.sq_total + info.z;
    let sd = p.s;
    // dA[r, j] = Σ_s dY[r, s]·X[j, s]
    for (var e = li; e < m * m; e += 256u) {
        let r = e / m;
        let j = e % m;
        var acc = 0.0;
        for (var t = 0u; t < sd; t++) {
            acc += ba_dy[(n0 + r) * sd + t] * ba_x[(n0 + j) * sd + t];
        }
        ba_dlogit[abase + e] = acc;
    }
    storageBarrier();
    // row softmax backward, in place
    for (var r = li; r < m; r += 256u) {
        var dot = 0.0;
        for (var j = 0u; j < m; j++) {
            dot += ba_attn[abase + r * m + j] * ba_dlogit[abase + r * m + j];
        }
        for (var j = 0u; j < m; j++) {
            let e = abase + r * m + j;
            ba_dlogit[e] = ba_attn[e] * (ba_dlogit[e] - dot);
        }
    }
    // dX[j, s] += Σ_r A[r, j]·dY[r, s]
    for (var e = li; e < m * sd; e += 256u) {
        let j = e / sd;
        let t = e % sd;
        var acc = 0.0;
        for (var r = 0u; r < m; r++) {
            acc += ba_attn[abase + r * m + j] * ba_dy[(n0 + r) * sd + t];
        }
        ba_dx[(n0 + j) * sd + t] += acc;
    }
}

// sgr_backward_qk
@group(0) @binding(1) var<storage, read> bq_dlogit: array<f32>;        // [n_img, sq_total] dL
@group(0) @binding(2) var<storage, read> bq_q: array<f32>;             // [n_img, n_nodes, S]
@group(0) @binding(3) var<storage, read> bq_k: array<f32>;             // [n_img, n_nodes, S]
@group(0) @binding(4) var<storage, read> bq_node_off: array<u32>;      // [n_cap + 1]
@group(0) @binding(5) var<storage, read> bq_sq_off: array<u32>;        // [n_cap + 1]
@group(0) @binding(6) var<storage, read_write> bq_dq: array<f32>;      // [n_img, n_nodes, S]
@group(0) @binding(7) var<storage, read_write> bq_dk: array<f32>;      // [n_img, n_nodes, S]

@compute @workgroup_size(256)
fn sgr_backward_qk(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let c = wid.x;
    let i = wid.y;
    let n0 = i * p.n_nodes + bq_node_off[c];
    let m = bq_node_off[c + 1u] - bq_node_off[c];
    let abase = i * p.sq_total + bq_sq_off[c];
    let sd = p.s;
    for (var e = li; e < m * sd; e += 256u) {
        let r = e / sd;
        let t = e % sd;
        var aq = 0.0;
        var ak = 0.0;
        for (var j = 0u; j < m; j++) {
            aq += bq_dlogit[abase + r * m + j] * bq_k[(n0 + j) * sd + t];
            ak += bq_dlogit[abase + j * m + r] * bq_q[(n0 + j) * sd + t];
        }
        bq_dq[(n0 + r) * sd + t] = aq;
        bq_dk[(n0 + r) * sd + t] = ak;
    }
}

// sgr_backward_gather (offs at binding 2 as above)
@group(0) @binding(1) var<storage, read> bg_ds: array<f32>;          // [n_img, n_cap, S]
@group(0) @binding(3) var<storage, read_write> bg_dx: array<f32>;    // [n_img, n_nodes, S] (+=)

@compute @workgroup_size(256)
fn sgr_backward_gather(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = (wid.x + wid.y * nwg.x) * 256u + li;
    if (idx >= p.n_img * p.n_cap * p.s) {
        return;
    }
    let pair = idx / p.s;
    let kk = idx % p.s;
    let i = pair / p.n_cap;
    let c = pair % p.n_cap;
    let dst = (i * p.n_nodes + offs[c]) * p.s + kk;
    bg_dx[dst] = bg_dx[dst] + bg_ds[idx];
}
