// Word embedding lookup: out[r, :] = table[ids[r], :]. An id outside the
// table gives a zero row (ids are validated on the host before upload).
// One thread per output element; grid (x, y) of 256-thread groups.

struct Params {
    n: u32,       // number of ids
    dim: u32,     // D_w
    vocab: u32,   // table rows
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;                         // sizes and flags
@group(0) @binding(1) var<storage, read> ids: array<u32>;          // [n]
@group(0) @binding(2) var<storage, read> table: array<f32>;        // [vocab, dim]
@group(0) @binding(3) var<storage, read_write> out: array<f32>;    // [n, dim]

@compute @workgroup_size(256)
fn embed_forward(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = (wid.x + wid.y * nwg.x) * 256u + li;
    if (idx >= p.n * p.dim) {
        return;
    }
    let r = idx / p.dim;
    let d = idx % p.dim;
    let id = ids[r];
    var v = 0.0;
    if (id < p.vocab) {
        v = table[id * p.dim + d];
    }
    out[idx] = v;
}

// ---------------------------------------------------------------------------
// Backward: dtable[v, :] += Σ_{r : ids[r] = v} dx[r, :], in token order, with
// no float atomics. Two passes:
//  1. embed_backward_links, one thread per token r: links[r] = the next token
//     with the same id (NONE if none), links[n + r] = 1 if r is the first
//     token with its id, else 0 (O(n) scan per token; n is a batch's tokens);
//  2. embed_backward, one thread per (first token r, feature d): walks r's
//     chain, acc = dtable[id, d] + dx[r, d] + dx[next, d] + … in token order
//     (the CPU twin's order), and writes it once. Each table element has one
//     writer, so the result is deterministic. Out-of-range ids are skipped.

const NONE: u32 = 0xffffffffu;

@group(0) @binding(1) var<storage, read> ids_b: array<u32>;            // [n]
@group(0) @binding(2) var<storage, read_write> links_out: array<u32>;  // [2, n] next token, is-first flag

@compute @workgroup_size(256)
fn embed_backward_links(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = (wid.x + wid.y * nwg.x) * 256u + li;
    if (r >= p.n) {
        return;
    }
    let id = ids_b[r];
    var first = 1u;
    for (var t = 0u; t < r; t++) {
        if (ids_b[t] == id) {
            first = 0u;
            break;
        }
    }
    var next = NONE;
    for (var t = r + 1u; t < p.n; t++) {
        if (ids_b[t] == id) {
            next = t;
            break;
        }
    }
    links_out[r] = next;
    links_out[p.n + r] = first;
}

@group(0) @binding(2) var<storage, read> links: array<u32>;            // [2, n] from embed_backward_links
@group(0) @binding(3) var<storage, read> dx: array<f32>;               // [n, dim]
@group(0) @binding(4) var<storage, read_write> dtable: array<f32>;     // [vocab, dim]

@compute @workgroup_size(256)
fn embed_backward(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = (wid.x + wid.y * nwg.x) * 256u + li;
    if (idx >= p.n * p.dim) {
        return;
    }
    let r = idx / p.dim;
    let d = idx % p.dim;
    let id = ids_b[r];
    if (links[p.n + r] == 0u || id >= p.vocab) {
        return;
    }
    let at = id * p.dim + d;
    var acc = dtable[at];
    var t = r;
    loop {
        acc += dx[t * p.dim + d];
        t = links[t];
        if (t >= p.n) {
            break;
        }
    }
    dtable[at] = acc;
}
