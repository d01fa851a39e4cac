// Similarity vectors (Eq. 1 as implemented, spec §6.3). The projection
// Linear((x − y)²) runs in linear_forward with its fused SQDIFF prologue;
// here each projected row is l2-normalised and written to its graph node:
//
//   similarity_forward_scatter  one workgroup per row of y:
//     local  (mode 0): row i·n_words + w → node row i·n_nodes + node_off[c(w)] + 1 + j
//                      (= i·n_nodes + w + c(w) + 1)
//     global (mode 1): row i·n_cap + c   → node row i·n_nodes + node_off[c]

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
