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

// Normalises row `row` in place (all 256 threads of the workgroup); returns
// its norm ν = sqrt(Σ x²) without the eps.
fn normalize_row(li: u32, row: u32) -> f32 {
    let base = p.off + row * p.ld;
    var ss = 0.0;
    for (var j = li; j < p.n; j += 256u) {
        let v = x[base + j];
        ss += v * v;
    }
    let nu = sqrt(block_sum(li, ss));
    let norm = nu + 1e-8;
    for (var j = li; j < p.n; j += 256u) {
        x[base + j] = x[base + j] / norm;
    }
    return nu;
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
    normalize_row(li, row);
}

// ---------------------------------------------------------------------------
// l2norm_forward_keep_norms: as l2norm_forward, also writing each row's norm
// ν = sqrt(Σ x²) (without the eps) for the backward.

@group(0) @binding(2) var<storage, read_write> norms_out: array<f32>;   // [rows]

@compute @workgroup_size(256)
fn l2norm_forward_keep_norms(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) {
        return;
    }
    let nu = normalize_row(li, row);
    if (li == 0u) {
        norms_out[row] = nu;
    }
}

// l2norm_backward: for every row of y = x / (ν + ε), ν = ‖x‖, ε = 1e-8,
//
//   dx = dy / (ν + ε) − y · (y·dy) / ν          (dx = … or dx += … with ACCUMULATE)
//
// (a zero row, ν = 0, gets dy / ε), as cpu::l2norm::backward. Rows are dense
// [rows, n]; one workgroup of 256 threads per row, grid (x, y) as the forward.

struct BackParams {
    rows: u32,
    n: u32,          // row length (and row stride)
    accumulate: u32, // 1: dx += …
    _pad: u32,
}

@group(0) @binding(0) var<uniform> pb: BackParams;                    // sizes and flags
@group(0) @binding(1) var<storage, read> dy: array<f32>;              // [rows, n]
@group(0) @binding(2) var<storage, read> y: array<f32>;               // [rows, n] (the forward output)
@group(0) @binding(3) var<storage, read> norms: array<f32>;           // [rows] ν = ‖x‖ without eps
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;        // [rows, n]

@compute @workgroup_size(256)
fn l2norm_backward(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= pb.rows) {
        return;
    }
    let base = row * pb.n;
    var dot = 0.0;
    for (var j = li; j < pb.n; j += 256u) {
        dot += y[base + j] * dy[base + j];
    }
    dot = block_sum(li, dot);
    let nu = norms[row];
    let d = nu + 1e-8;
    var c = 0.0;
    if (nu > 0.0) {
        c = dot / nu;
    }
    for (var j = li; j < pb.n; j += 256u) {
        let g = dy[base + j] / d - y[base + j] * c;
        if (pb.accumulate != 0u) {
            dx[base + j] += g;
        } else {
            dx[base + j] = g;
        }
    }
}
