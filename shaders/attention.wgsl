// Text-to-image attention (SCAN t2i, spec §6.2) between the regions of
// n_img images and the packed words of n_cap captions. The two products
// (logits a = v·tᵀ and ctx[i] = attn[i]·v[i]) run in linear_forward; here:
//
//   attention_forward_norm     inv_norm[i·R + r, c] = 1 / (‖LeakyReLU(a[i·R + r, words of c])‖ + 1e-8);
//                              one thread per (image·region, caption)
//   attention_forward_softmax  attn[i, w, r] = softmax over r of 9 · LeakyReLU(a[i·R + r, w]) · inv_norm[i·R + r, c(w)];
//                              one thread per (image, word)
//
// Backward (the products and the l2norm of ctx run in linear_* / l2norm_*):
//   attention_backward_softmax da[i·R + r, w] = λ · attn[i, w, r] · (dattn[i, w, r] − Σ_r' attn·dattn);
//                              one thread per (image, word)
//   attention_backward_norm    through an = LeakyReLU(a) / (‖·‖ + 1e-8) over each caption's
//                              words, da in place (as cpu::attention::backward_image);
//                              one thread per (image·region, caption)

struct Params {
    n_img: u32,
    r: u32,          // regions (36)
    n_words: u32,
    n_cap: u32,
    lambda: f32,     // softmax smoothing (9)
    slope: f32,      // LeakyReLU slope (0.1)
    _pad0: u32,
    _pad1: u32,
}

const MAX_R: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;              // [n_img·R, n_words] logits v·tᵀ
@group(0) @binding(2) var<storage, read> word_off: array<u32>;       // [n_cap + 1]
@group(0) @binding(3) var<storage, read> word_cap: array<u32>;       // [n_words]

// attention_forward_norm
@group(0) @binding(4) var<storage, read_write> inv_norm_out: array<f32>;   // [n_img·R, n_cap]

// attention_forward_softmax
@group(0) @binding(4) var<storage, read> inv_norm: array<f32>;       // [n_img·R, n_cap]
@group(0) @binding(5) var<storage, read_write> attn: array<f32>;     // [n_img, n_words, R]

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

fn leaky(x: f32) -> f32 {
    if (x > 0.0) {
        return x;
    }
    return p.slope * x;
}

@compute @workgroup_size(256)
fn attention_forward_norm(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = (wid.x + wid.y * nwg.x) * 256u + li;
    if (idx >= p.n_img * p.r * p.n_cap) {
        return;
    }
    let row = idx / p.n_cap;
    let c = idx % p.n_cap;
    var ss = 0.0;
    for (var w = word_off[c]; w < word_off[c + 1u]; w++) {
        let x = leaky(a[row * p.n_words + w]);
        ss += x * x;
    }
    inv_norm_out[idx] = 1.0 / (sqrt(ss) + 1e-8);
}

@compute @workgroup_size(256)
fn attention_forward_softmax(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = (wid.x + wid.y * nwg.x) * 256u + li;
    if (idx >= p.n_img * p.n_words) {
        return;
    }
    let i = idx / p.n_words;
    let w = idx % p.n_words;
    let c = word_cap[w];
    var z: array<f32, MAX_R>;
    var mx = -3.4e38;
    for (var reg = 0u; reg < p.r; reg++) {
        let row = i * p.r + reg;
        let v = p.lambda * (leaky(a[row * p.n_words + w]) * inv_norm[row * p.n_cap + c]);
        z[reg] = v;
        mx = max(mx, v);
    }
    var total = 0.0;
    for (var reg = 0u; reg < p.r; reg++) {
        let e = exp_acc(z[reg] - mx);
        z[reg] = e;
        total += e;
    }
    for (var reg = 0u; reg < p.r; reg++) {
        attn[idx * p.r + reg] = z[reg] / total;
    }
}

// ---------------------------------------------------------------------------
// Backward

// attention_backward_softmax
@group(0) @binding(1) var<storage, read> sb_attn: array<f32>;        // [n_img, n_words, R]
@group(0) @binding(2) var<storage, read> sb_dattn: array<f32>;       // [n_img, n_words, R]
// attention_backward_softmax (written), attention_backward_norm (in place)
@group(0) @binding(3) var<storage, read_write> da: array<f32>;       // [n_img·R, n_words]

@compute @workgroup_size(256)
fn attention_backward_softmax(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = (wid.x + wid.y * nwg.x) * 256u + li;
    if (idx >= p.n_img * p.n_words) {
        return;
    }
    let i = idx / p.n_words;
    let w = idx % p.n_words;
    var dot = 0.0;
    for (var reg = 0u; reg < p.r; reg++) {
        dot += sb_attn[idx * p.r + reg] * sb_dattn[idx * p.r + reg];
    }
    for (var reg = 0u; reg < p.r; reg++) {
        let y = sb_attn[idx * p.r + reg];
        da[(i * p.r + reg) * p.n_words + w] = p.lambda * (y * (sb_dattn[idx * p.r + reg] - dot));
    }
}

// attention_backward_norm: a (binding 1), word_off (binding 2), da (binding 3)
@compute @workgroup_size(256)
fn attention_backward_norm(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = (wid.x + wid.y * nwg.x) * 256u + li;
    if (idx >= p.n_img * p.r * p.n_cap) {
        return;
    }
    let row = idx / p.n_cap;
    let c = idx % p.n_cap;
    let w0 = word_off[c];
    let w1 = word_off[c + 1u];
    var ss = 0.0;
    for (var w = w0; w < w1; w++) {
        let x = leaky(a[row * p.n_words + w]);
        ss += x * x;
    }
    let norm = sqrt(ss);
    let d = norm + 1e-8;
    var dot = 0.0;
    for (var w = w0; w < w1; w++) {
        dot += (leaky(a[row * p.n_words + w]) / d) * da[row * p.n_words + w];
    }
    var kk = 0.0;
    if (norm > 0.0) {
        kk = dot / norm;
    }
    for (var w = w0; w < w1; w++) {
        let x = a[row * p.n_words + w];
        let an = leaky(x) / d;
        let dal = da[row * p.n_words + w] / d - an * kk;
        var g = dal;
        if (x <= 0.0) {
            g = p.slope * dal;
        }
        da[row * p.n_words + w] = g;
    }
}
