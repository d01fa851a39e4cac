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
