//! BatchNorm1d (PyTorch semantics): channel axis 1 of `[N, C, L]`.

use super::Real;
use crate::model::params::{BatchNorm, Mode};

pub const BN_EPS: f32 = 1e-5;

/// Batch statistics of one train-mode call, for the running-stat update.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BnStats<T = f32> {
    pub mean: Vec<T>,       // [C]
    pub var_biased: Vec<T>, // [C]
    pub count: usize,       // values per channel (N·L)
}

/// Normalises `x [n, c, l]` in place; returns the batch statistics in train mode.
pub fn forward<T: Real>(
    x: &mut [T],
    bn: &BatchNorm<T>,
    mode: Mode,
    n: usize,
    c: usize,
    l: usize,
) -> Option<BnStats<T>> {
    let eps = T::from_f32(BN_EPS);
    let (mean, var, stats) = match mode {
        Mode::Eval => (bn.running_mean.clone(), bn.running_var.clone(), None),
        Mode::Train => {
            let mut mean = vec![T::ZERO; c];
            let mut var = vec![T::ZERO; c];
            let count = n * l;
            for ch in 0..c {
                let mut s = 0.0f64;
                for i in 0..n {
                    s += x[(i * c + ch) * l..(i * c + ch + 1) * l].iter().map(|&v| v.to_f64()).sum::<f64>();
                }
                let m = s / count as f64;
                let mut q = 0.0f64;
                for i in 0..n {
                    q += x[(i * c + ch) * l..(i * c + ch + 1) * l]
                        .iter()
                        .map(|&v| (v.to_f64() - m).powi(2))
                        .sum::<f64>();
                }
                mean[ch] = T::from_f64(m);
                var[ch] = T::from_f64(q / count as f64);
            }
            (mean.clone(), var.clone(), Some(BnStats { mean, var_biased: var, count }))
        }
    };
    for i in 0..n {
        for ch in 0..c {
            let scale = bn.weight[ch] / (var[ch] + eps).sqrt();
            let shift = bn.bias[ch] - mean[ch] * scale;
            for v in &mut x[(i * c + ch) * l..(i * c + ch + 1) * l] {
                *v = *v * scale + shift;
            }
        }
    }
    stats
}

/// `running ← 0.9·running + 0.1·batch` (unbiased variance), `num_batches_tracked += 1`.
pub fn update_running<T: Real>(bn: &mut BatchNorm<T>, stats: &BnStats<T>) {
    let unbias =
        if stats.count > 1 { T::from_usize(stats.count) / (T::from_usize(stats.count) - T::ONE) } else { T::ONE };
    let (keep, take) = (T::from_f32(0.9), T::from_f32(0.1));
    for ch in 0..bn.running_mean.len() {
        bn.running_mean[ch] = keep * bn.running_mean[ch] + take * stats.mean[ch];
        bn.running_var[ch] = keep * bn.running_var[ch] + take * stats.var_biased[ch] * unbias;
    }
    bn.num_batches_tracked += 1;
}

/// Backward of [`forward`] on `x [n, c, l]` (the BatchNorm *input*), accumulating:
/// `dx += …`, `dbn.weight += Σ dy·x̂`, `dbn.bias += Σ dy` (per channel).
///
/// Train mode (batch statistics `stats` of the same call), with `x̂ = (x − μ)/sqrt(σ² + ε)`
/// and `N = n·l` values per channel:
/// `dx = weight/sqrt(σ² + ε) · (dy − mean(dy) − x̂ · mean(dy·x̂))`.
/// Eval mode (running statistics, an affine map): `dx = weight/sqrt(σ²_run + ε) · dy`.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Real>(
    dy: &[T],
    x: &[T],
    bn: &BatchNorm<T>,
    mode: Mode,
    stats: Option<&BnStats<T>>,
    dbn: &mut BatchNorm<T>,
    dx: &mut [T],
    n: usize,
    c: usize,
    l: usize,
) {
    let (mean, var): (&[T], &[T]) = match (mode, stats) {
        (Mode::Train, Some(st)) => (&st.mean, &st.var_biased),
        (Mode::Train, None) => panic!("batchnorm::backward: train mode needs the batch statistics of the forward"),
        (Mode::Eval, _) => (&bn.running_mean, &bn.running_var),
    };
    let count = (n * l) as f64;
    for ch in 0..c {
        let inv_std = T::ONE / (var[ch] + T::from_f32(BN_EPS)).sqrt();
        let rows = (0..n).map(|i| (i * c + ch) * l..(i * c + ch + 1) * l);
        // Σ dy and Σ dy·x̂ over the channel, float64
        let (mut s_dy, mut s_dy_xhat) = (0.0f64, 0.0f64);
        for r in rows.clone() {
            for (&g, &xv) in dy[r.clone()].iter().zip(&x[r]) {
                s_dy += g.to_f64();
                s_dy_xhat += g.to_f64() * ((xv - mean[ch]) * inv_std).to_f64();
            }
        }
        dbn.weight[ch] += T::from_f64(s_dy_xhat);
        dbn.bias[ch] += T::from_f64(s_dy);
        let scale = bn.weight[ch] * inv_std;
        let (m_dy, m_dy_xhat) = match mode {
            Mode::Train => (T::from_f64(s_dy / count), T::from_f64(s_dy_xhat / count)),
            Mode::Eval => (T::ZERO, T::ZERO),
        };
        for r in rows {
            for ((d, &g), &xv) in dx[r.clone()].iter_mut().zip(&dy[r.clone()]).zip(&x[r]) {
                let xhat = (xv - mean[ch]) * inv_std;
                *d += scale * (g - m_dy - xhat * m_dy_xhat);
            }
        }
    }
}
