// Similarity vectors (Eq. 1 as implemented, spec §6.3). The projection
// Linear((x − y)²) runs in linear_forward with its fused SQDIFF prologue;
// here each projected row is l2-normalised and written to its graph node:
//
//   similarity_forward_scatter  one workgroup per row of y:
//     local  (mode 0): row i·n_words + w → node row i·n_nodes + node_off[c(w)] + 1 + j
//                      (= i·n_nodes + w + c(w) + 1)
//     global (mode 1): row i·n_cap + c   → node row i·n_nodes + node_off[c]
//
// Backward (the projection's own backward runs in linear.wgsl, the l2norm's
// in l2norm.wgsl):
//   similarity_backward_gather   one thread per (row, k): node rows (same
//                                map as the scatter) → y, dy [rows, S]
//   similarity_backward_sqdiff_input  one thread per (row, k) of
//                                d = (a[row / a_div] − b[row % b_mod])² [rows, E]
//   similarity_backward_sqdiff   one thread per element of a, then of b:
//                                da += Σ 2·(a − b)·dd, db −= Σ 2·(a − b)·dd
//                                over the rows that read it (fixed order)

struct Params {
    rows: u32,
    s: u32,          // S
    n_words: u32,
    n_cap: u32,
    n_nodes: u32,
    mode: u32,       // 0 local, 1 global
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;                         // sizes and flags
@group(0) @binding(1) var<storage, read> y: array<f32>;              // [rows, S] projections before l2norm
@group(0) @binding(2) var<storage, read> word_cap: array<u32>;       // [n_words]
@group(0) @binding(3) var<storage, read> node_off: array<u32>;       // [n_cap + 1]
@group(0) @binding(4) var<storage, read_write> nodes: array<f32>;    // [n_img, n_nodes, S]

var<workgroup> red: array<f32, 256>;

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
fn similarity_forward_scatter(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) {
        return;
    }
    var dst: u32;
    if (p.mode == 0u) {
        let i = row / p.n_words;
        let w = row % p.n_words;
        dst = i * p.n_nodes + w + word_cap[w] + 1u;
    } else {
        let i = row / p.n_cap;
        let c = row % p.n_cap;
        dst = i * p.n_nodes + node_off[c];
    }
    var ss = 0.0;
    for (var k = li; k < p.s; k += 256u) {
        let v = y[row * p.s + k];
        ss += v * v;
    }
    let norm = sqrt(block_sum(li, ss)) + 1e-8;
    for (var k = li; k < p.s; k += 256u) {
        nodes[dst * p.s + k] = y[row * p.s + k] / norm;
    }
}

// similarity_backward_gather (Params as the scatter; `rows·S` threads)
@group(0) @binding(1) var<storage, read> bg_dnodes: array<f32>;      // [n_img, n_nodes, S]
@group(0) @binding(2) var<storage, read> bg_nodes: array<f32>;       // [n_img, n_nodes, S]
@group(0) @binding(3) var<storage, read> bg_word_cap: array<u32>;    // [n_words]
@group(0) @binding(4) var<storage, read> bg_node_off: array<u32>;    // [n_cap + 1]
@group(0) @binding(5) var<storage, read_write> bg_y: array<f32>;     // [rows, S] l2-normalised rows
@group(0) @binding(6) var<storage, read_write> bg_dy: array<f32>;    // [rows, S] their gradients

@compute @workgroup_size(256)
fn similarity_backward_gather(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = (wid.x + wid.y * nwg.x) * 256u + li;
    if (idx >= p.rows * p.s) {
        return;
    }
    let row = idx / p.s;
    let k = idx % p.s;
    var src: u32;
    if (p.mode == 0u) {
        let i = row / p.n_words;
        let w = row % p.n_words;
        src = i * p.n_nodes + w + bg_word_cap[w] + 1u;
    } else {
        let i = row / p.n_cap;
        let c = row % p.n_cap;
        src = i * p.n_nodes + bg_node_off[c];
    }
    bg_y[idx] = bg_nodes[src * p.s + k];
    bg_dy[idx] = bg_dnodes[src * p.s + k];
}

struct SqParams {
    rows: u32,       // rows of d / dd
    e: u32,          // E
    a_div: u32,      // row r reads a[r / a_div]
    b_mod: u32,      // row r reads b[r % b_mod]
    a_rows: u32,     // rows / a_div
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> q: SqParams;                      // sizes
@group(0) @binding(1) var<storage, read> sq_a: array<f32>;           // [a_rows, E] ctx or v_glo
@group(0) @binding(2) var<storage, read> sq_b: array<f32>;           // [b_mod, E] t or t_glo
@group(0) @binding(3) var<storage, read_write> sq_d: array<f32>;     // [rows, E] (a − b)²

@compute @workgroup_size(256)
fn similarity_backward_sqdiff_input(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = (wid.x + wid.y * nwg.x) * 256u + li;
    if (idx >= q.rows * q.e) {
        return;
    }
    let row = idx / q.e;
    let k = idx % q.e;
    let x = sq_a[(row / q.a_div) * q.e + k] - sq_b[(row % q.b_mod) * q.e + k];
    sq_d[idx] = x * x;
}

@group(0) @binding(1) var<storage, read> sb_a: array<f32>;           // [a_rows, E]
@group(0) @binding(2) var<storage, read> sb_b: array<f32>;           // [b_mod, E]
@group(0) @binding(3) var<storage, read> sb_dd: array<f32>;          // [rows, E] gradient of d
@group(0) @binding(4) var<storage, read_write> sb_da: array<f32>;    // [a_rows, E], accumulated
@group(0) @binding(5) var<storage, read_write> sb_db: array<f32>;    // [b_mod, E], accumulated

@compute @workgroup_size(256)
fn similarity_backward_sqdiff(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = (wid.x + wid.y * nwg.x) * 256u + li;
    let n_a = q.a_rows * q.e;
    if (idx < n_a) {
        let ra = idx / q.e;
        let k = idx % q.e;
        var acc = sb_da[idx];
        for (var r = ra * q.a_div; r < (ra + 1u) * q.a_div; r++) {
            let x = sb_a[idx] - sb_b[(r % q.b_mod) * q.e + k];
            acc += 2.0 * x * sb_dd[r * q.e + k];
        }
        sb_da[idx] = acc;
        return;
    }
    let jdx = idx - n_a;
    if (jdx >= q.b_mod * q.e) {
        return;
    }
    let rb = jdx / q.e;
    let k = jdx % q.e;
    var acc = sb_db[jdx];
    for (var r = rb; r < q.rows; r += q.b_mod) {
        let x = sb_a[(r / q.a_div) * q.e + k] - sb_b[jdx];
        acc -= 2.0 * x * sb_dd[r * q.e + k];
    }
    sb_db[jdx] = acc;
}
