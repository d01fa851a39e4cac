//! BatchNorm1d (PyTorch semantics): channel axis 1 of `[N, C, L]`.

use crate::model::params::{BatchNorm, Mode};

pub const BN_EPS: f32 = 1e-5;

/// Batch statistics of one train-mode call, for the running-stat update.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BnStats {
    pub mean: Vec<f32>,       // [C]
    pub var_biased: Vec<f32>, // [C]
    pub count: usize,         // values per channel (N·L)
}

/// Normalises `x [n, c, l]` in place; returns the batch statistics in train mode.
pub fn forward(x: &mut [f32], bn: &BatchNorm, mode: Mode, n: usize, c: usize, l: usize) -> Option<BnStats> {
    let (mean, var, stats) = match mode {
        Mode::Eval => (bn.running_mean.clone(), bn.running_var.clone(), None),
        Mode::Train => {
            let mut mean = vec![0.0f32; c];
            let mut var = vec![0.0f32; c];
            let count = n * l;
            for ch in 0..c {
                let mut s = 0.0f64;
                for i in 0..n {
                    s += x[(i * c + ch) * l..(i * c + ch + 1) * l].iter().map(|&v| v as f64).sum::<f64>();
                }
                let m = s / count as f64;
                let mut q = 0.0f64;
                for i in 0..n {
                    q += x[(i * c + ch) * l..(i * c + ch + 1) * l].iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>();
                }
                mean[ch] = m as f32;
                var[ch] = (q / count as f64) as f32;
            }
            (mean.clone(), var.clone(), Some(BnStats { mean, var_biased: var, count }))
        }
    };
    for i in 0..n {
        for ch in 0..c {
            let scale = bn.weight[ch] / (var[ch] + BN_EPS).sqrt();
            let shift = bn.bias[ch] - mean[ch] * scale;
            for v in &mut x[(i * c + ch) * l..(i * c + ch + 1) * l] {
                *v = *v * scale + shift;
            }
        }
    }
    stats
}

/// `running ← 0.9·running + 0.1·batch` (unbiased variance), `num_batches_tracked += 1`.
pub fn update_running(bn: &mut BatchNorm, stats: &BnStats) {
    let unbias = if stats.count > 1 { stats.count as f32 / (stats.count as f32 - 1.0) } else { 1.0 };
    for ch in 0..bn.running_mean.len() {
        bn.running_mean[ch] = 0.9 * bn.running_mean[ch] + 0.1 * stats.mean[ch];
        bn.running_var[ch] = 0.9 * bn.running_var[ch] + 0.1 * stats.var_biased[ch] * unbias;
    }
    bn.num_batches_tracked += 1;
}
