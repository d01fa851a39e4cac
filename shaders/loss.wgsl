// Bidirectional hardest-negative triplet loss (spec §8, VSE++ max violation),
// as cpu::loss. For the training scores s [B, B] (row = image, column =
// caption, positives on the diagonal), margin m:
//
//   C_s[i, j]  = [m + s[i, j] − s[i, i]]₊ (image i as query),  0 on the diagonal
//   C_im[i, j] = [m + s[i, j] − s[j, j]]₊ (caption j as query), 0 on the diagonal
//   loss = Σ_i max_j C_s[i, j] + Σ_j max_i C_im[i, j]        (a sum, not a mean)
//
// The hardest negative is the FIRST maximum in index order (torch.max(dim));
// the zero diagonal takes part like any other entry.
//
// loss_forward: one workgroup of 256 threads; thread t handles rows t, t+256, …
// and columns likewise, then thread 0 adds the 2B costs in the CPU's order
// (cost_s then cost_im) with a compensated sum.
// loss_backward: dsims[i, j] for dloss = 1, one thread per element.
//
// With `all_negatives` (the official `--max_violation` switched off) the loss
// is the sum of every entry of both cost matrices: `cost[q]` holds the row
// (column) sum and `hardest[q]` the number of violating entries, which is the
// −count on the diagonal of dsims; off the diagonal dsims[i, j] counts the
// two hinges of (i, j) that are active.

struct Params {
    b: u32,          // B
    margin: f32,     // 0.2
    all_negatives: u32, // 0: hardest negatives (official default), 1: all of them
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;                         // sizes and flags
@group(0) @binding(1) var<storage, read> sims: array<f32>;            // [B, B]
@group(0) @binding(2) var<storage, read_write> loss: array<f32>;      // [1]
@group(0) @binding(3) var<storage, read_write> hardest: array<u32>;   // [2, B] hardest caption per image, hardest image per caption
@group(0) @binding(4) var<storage, read_write> cost: array<f32>;      // [2, B] max_j C_s[i, ·], max_i C_im[·, j]

@compute @workgroup_size(256)
fn loss_forward(@builtin(local_invocation_index) li: u32) {
    let b = p.b;
    for (var q = li; q < 2u * b; q += 256u) {
        var best = 0u;
        var best_v = -3.4028235e38;
        var first = true;
        if (p.all_negatives != 0u) {
            // row / column sum of the costs and the number of active hinges
            var total = 0.0;
            var count = 0u;
            for (var k = 0u; k < b; k++) {
                var c = 0.0;
                if (q < b && k != q) {
                    c = p.margin + sims[q * b + k] - sims[q * b + q];
                } else if (q >= b && k != q - b) {
                    c = p.margin + sims[k * b + (q - b)] - sims[(q - b) * b + (q - b)];
                }
                if (c > 0.0) {
                    total += c;
                    count += 1u;
                }
            }
            hardest[q] = count;
            cost[q] = total;
            continue;
        }
        if (q < b) {
            // image i = q as query: max over captions j of C_s[i, j]
            let i = q;
            let sii = sims[i * b + i];
            for (var j = 0u; j < b; j++) {
                var c = 0.0;
                if (j != i) {
                    c = max(p.margin + sims[i * b + j] - sii, 0.0);
                }
                if (first || c > best_v) {
                    best = j;
                    best_v = c;
                    first = false;
                }
            }
        } else {
            // caption j = q − B as query: max over images i of C_im[i, j]
            let j = q - b;
            let sjj = sims[j * b + j];
            for (var i = 0u; i < b; i++) {
                var c = 0.0;
                if (i != j) {
                    c = max(p.margin + sims[i * b + j] - sjj, 0.0);
                }
                if (first || c > best_v) {
                    best = i;
                    best_v = c;
                    first = false;
                }
            }
        }
        hardest[q] = best;
        cost[q] = best_v;
    }
    storageBarrier();
    workgroupBarrier();
    if (li == 0u) {
        // Neumaier's compensated sum, so the result is the float64 sum
        // rounded (as the CPU twin's) up to ~1 ulp.
        var s = 0.0;
        var comp = 0.0;
        for (var q = 0u; q < 2u * b; q++) {
            let v = cost[q];
            let t = s + v;
            if (abs(s) >= abs(v)) {
                comp += (s - t) + v;
            } else {
                comp += (v - t) + s;
            }
            s = t;
        }
        loss[0] = s + comp;
    }
}

@group(0) @binding(2) var<storage, read> hardest_in: array<u32>;      // [2, B] from loss_forward
@group(0) @binding(3) var<storage, read> cost_in: array<f32>;         // [2, B] from loss_forward
@group(0) @binding(4) var<storage, read_write> dsims: array<f32>;     // [B, B]

@compute @workgroup_size(256)
fn loss_backward(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let b = p.b;
    let idx = (wid.x + wid.y * nwg.x) * 256u + li;
    if (idx >= b * b) {
        return;
    }
    let i = idx / b;
    let j = idx % b;
    var g = 0.0;
    if (p.all_negatives != 0u) {
        if (i == j) {
            g = -f32(hardest_in[i] + hardest_in[b + j]);
        } else {
            if (p.margin + sims[i * b + j] - sims[i * b + i] > 0.0) {
                g += 1.0;
            }
            if (p.margin + sims[i * b + j] - sims[j * b + j] > 0.0) {
                g += 1.0;
            }
        }
        dsims[idx] = g;
        return;
    }
    // image i's term: +1 at its hardest caption, −1 at its positive (i, i)
    if (cost_in[i] > 0.0 && hardest_in[i] == j) {
        g += 1.0;
    }
    if (i == j && cost_in[i] > 0.0) {
        g -= 1.0;
    }
    // caption j's term: +1 at its hardest image, −1 at its positive (j, j)
    if (cost_in[b + j] > 0.0 && hardest_in[b + j] == i) {
        g += 1.0;
    }
    if (i == j && cost_in[b + j] > 0.0) {
        g -= 1.0;
    }
    dsims[idx] = g;
}
