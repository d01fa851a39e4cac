// Row-wise l2 normalisation, in place: x[r] ← x[r] / (sqrt(Σ x[r]²) + 1e-8)
// (eps added to the norm, spec §1). One workgroup of 256 threads per row;
// grid (x, y) with row = wid.x + wid.y · nwg.x.

struct Params {
    rows: u32,
    n: u32,       // row length
    ld: u32,      // row stride
    off: u32,     // element offset of row 0
}

@group(0) @binding(0) var<uniform> p: Params;                         // sizes and flags
@group(0) @binding(1) var<storage, read_write> x: array<f32>;   // [rows, n] (row stride ld)

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

@compute @workgroup_size(256)
fn l2norm_forward(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) {
        return;
    }
    let base = p.off + row * p.ld;
    var ss = 0.0;
    for (var j = li; j < p.n; j += 256u) {
        let v = x[base + j];
        ss += v * v;
    }
    let norm = sqrt(block_sum(li, ss)) + 1e-8;
    for (var j = li; j < p.n; j += 256u) {
        x[base + j] = x[base + j] / norm;
    }
}
