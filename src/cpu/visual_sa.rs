//! Visual self-attention `v_global_w` (spec §5.1): the mean region as query,
//! BatchNorm over the 36 region slots and over features.

use super::batchnorm::{self, BnStats};
use crate::model::params::{Mode, VisualSa, N_REGIONS};

/// Batch statistics of the two BatchNorms (train mode).
#[derive(Clone, Debug, Default)]
pub struct VisualSaStats {
    pub local: Option<BnStats>,
    pub global: Option<BnStats>,
}

/// `v [n, 36, E]` → `v_glo [n, E]`.
pub fn forward(v: &[f32], p: &VisualSa, mode: Mode, n: usize, e: usize) -> (Vec<f32>, VisualSaStats) {
    let r = N_REGIONS;
    // local branch: tanh(BN_36(v·Wlᵀ + b))                     [n, 36, E]
    let mut l = vec![0.0; n * r * e];
    super::linear::forward(v, &p.local.w, Some(&p.local.b), &mut l, n * r, e, e);
    let s_local = batchnorm::forward(&mut l, &p.local_bn, mode, n, r, e);
    l.iter_mut().for_each(|x| *x = x.tanh());
    // global branch: tanh(BN_E(mean_r(v)·Wgᵀ + b))              [n, E]
    let mut mean = vec![0.0; n * e];
    for i in 0..n {
        for reg in 0..r {
            for k in 0..e {
                mean[i * e + k] += v[(i * r + reg) * e + k];
            }
        }
    }
    mean.iter_mut().for_each(|x| *x /= r as f32);
    let mut g = vec![0.0; n * e];
    super::linear::forward(&mean, &p.global.w, Some(&p.global.b), &mut g, n, e, e);
    let s_global = batchnorm::forward(&mut g, &p.global_bn, mode, n, e, 1);
    g.iter_mut().for_each(|x| *x = x.tanh());
    // common: softmax_r((l ⊙ g)·wc + bc); v_glo = l2norm(Σ_r w_r v_r)
    let mut out = vec![0.0; n * e];
    let mut w = vec![0.0; r];
    for i in 0..n {
        for reg in 0..r {
            let lr = &l[(i * r + reg) * e..(i * r + reg + 1) * e];
            let gi = &g[i * e..(i + 1) * e];
            w[reg] = lr.iter().zip(gi).zip(&p.common.w).map(|((a, b), c)| a * b * c).sum::<f32>() + p.common.b[0];
        }
        super::softmax(&mut w);
        let o = &mut out[i * e..(i + 1) * e];
        for reg in 0..r {
            let vr = &v[(i * r + reg) * e..(i * r + reg + 1) * e];
            for k in 0..e {
                o[k] += w[reg] * vr[k];
            }
        }
    }
    super::l2norm::forward(&mut out, e);
    (out, VisualSaStats { local: s_local, global: s_global })
}
