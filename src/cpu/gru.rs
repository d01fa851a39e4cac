//! Bidirectional one-layer GRU over captions of different lengths (packed
//! semantics: each caption only over its own tokens), directions averaged,
//! then l2-normalised (spec §4).

use crate::model::params::GruDirection;

/// PyTorch GRU cell for one caption: `gi [3E]` (x·W_ihᵀ + b_ih), `gh [3E]`
/// (h·W_hhᵀ + b_hh), `h [E]` updated in place. Gate blocks r, z, n.
pub fn cell(gi: &[f32], gh: &[f32], h: &mut [f32]) {
    let e = h.len();
    for k in 0..e {
        let r = super::sigmoid(gi[k] + gh[k]);
        let z = super::sigmoid(gi[e + k] + gh[e + k]);
        let n = (gi[2 * e + k] + r * gh[2 * e + k]).tanh();
        h[k] = (1.0 - z) * n + z * h[k];
    }
}

/// One direction: `x [n_cap, l_max, D_w]` → hidden states `[n_cap, l_max, E]`
/// (positions ≥ length stay 0). `reverse` reads tokens L−1 … 0.
pub fn direction_forward(
    x: &[f32],
    lengths: &[usize],
    p: &GruDirection,
    l_max: usize,
    dw: usize,
    e: usize,
    reverse: bool,
) -> Vec<f32> {
    let n_cap = lengths.len();
    let mut gi = vec![0.0; n_cap * l_max * 3 * e]; // [n_cap, l_max, 3E]
    super::linear::forward(x, &p.w_ih, Some(&p.b_ih), &mut gi, n_cap * l_max, dw, 3 * e);
    let mut out = vec![0.0; n_cap * l_max * e]; // [n_cap, l_max, E]
    let mut h = vec![0.0; n_cap * e]; // [n_cap, E]
    let mut gh = vec![0.0; n_cap * 3 * e]; // [n_active, 3E]
    let mut h_act = vec![0.0; n_cap * e]; // [n_active, E]
    for t in 0..l_max {
        let active: Vec<usize> = (0..n_cap).filter(|&c| lengths[c] > t).collect();
        if active.is_empty() {
            break;
        }
        for (a, &c) in active.iter().enumerate() {
            h_act[a * e..(a + 1) * e].copy_from_slice(&h[c * e..(c + 1) * e]);
        }
        let na = active.len();
        super::linear::forward(&h_act, &p.w_hh, Some(&p.b_hh), &mut gh, na, e, 3 * e);
        for (a, &c) in active.iter().enumerate() {
            let pos = if reverse { lengths[c] - 1 - t } else { t };
            let g = &gi[(c * l_max + pos) * 3 * e..(c * l_max + pos + 1) * 3 * e];
            let hc = &mut h[c * e..(c + 1) * e];
            cell(g, &gh[a * 3 * e..(a + 1) * 3 * e], hc);
            out[(c * l_max + pos) * e..(c * l_max + pos + 1) * e].copy_from_slice(hc);
        }
    }
    out
}

/// Text encoder after the embedding: `x [n_cap, l_max, D_w]` → `cap_emb [n_cap, l_max, E]`.
pub fn forward(
    x: &[f32],
    lengths: &[usize],
    fwd: &GruDirection,
    bwd: &GruDirection,
    l_max: usize,
    dw: usize,
    e: usize,
) -> Vec<f32> {
    let hf = direction_forward(x, lengths, fwd, l_max, dw, e, false);
    let hb = direction_forward(x, lengths, bwd, l_max, dw, e, true);
    let mut out: Vec<f32> = hf.iter().zip(&hb).map(|(a, b)| (a + b) / 2.0).collect();
    super::l2norm::forward(&mut out, e);
    out
}
