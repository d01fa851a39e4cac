//! Row-wise `x / (sqrt(Σx²) + 1e-8)` (eps added to the norm, spec §1).
//!
//! The sums of squares and the dot product of the backward are float64 for
//! either float type (for `f32` exactly as before the layers were generic).

use super::Real;

/// The eps added to the norm.
fn eps<T: Real>() -> T {
    T::from_f32(1e-8)
}

/// Normalises every row of `x [m, n]` in place.
pub fn forward<T: Real>(x: &mut [T], n: usize) {
    for row in x.chunks_exact_mut(n) {
        // Sum of squares in float64 (4 lanes, so it vectorises): the attention
        // and similarity stages amplify rounding in these norms.
        let mut acc = [0.0f64; 4];
        let mut chunks = row.chunks_exact(4);
        for c in &mut chunks {
            for k in 0..4 {
                acc[k] += c[k].to_f64() * c[k].to_f64();
            }
        }
        let tail: f64 = chunks.remainder().iter().map(|&v| v.to_f64() * v.to_f64()).sum();
        let norm = T::from_f64(((acc[0] + acc[1]) + (acc[2] + acc[3]) + tail).sqrt()) + eps();
        for v in row.iter_mut() {
            *v /= norm;
        }
    }
}

/// `sqrt(Σx²)` of one row, computed exactly as [`forward`] does (float64, 4 lanes).
pub fn row_norm<T: Real>(row: &[T]) -> T {
    let mut acc = [0.0f64; 4];
    let mut chunks = row.chunks_exact(4);
    for c in &mut chunks {
        for k in 0..4 {
            acc[k] += c[k].to_f64() * c[k].to_f64();
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&v| v.to_f64() * v.to_f64()).sum();
    T::from_f64(((acc[0] + acc[1]) + (acc[2] + acc[3]) + tail).sqrt())
}

/// As [`forward`] (same values), also returning every row's norm `‖x‖`
/// (without the eps), `[m]`, for the backward.
pub fn forward_keep_norms<T: Real>(x: &mut [T], n: usize) -> Vec<T> {
    let mut norms = Vec::with_capacity(x.len() / n.max(1));
    for row in x.chunks_exact_mut(n) {
        let norm = row_norm(row);
        let d = norm + eps();
        for v in row.iter_mut() {
            *v /= d;
        }
        norms.push(norm);
    }
    norms
}

/// Backward of `y = x / (‖x‖ + ε)` for every row of `y [m, n]`, accumulating into `dx`.
///
/// With `ν = ‖x‖`: `∂y_k/∂x_j = δ_kj/(ν+ε) − x_k x_j / (ν (ν+ε)²)`, and `x = y (ν+ε)`, so
/// `dx = dy/(ν+ε) − y (y·dy)/ν = (dy − y (y·dy)(ν+ε)/ν) / (ν+ε)`.
/// (The ratio is `(ν+ε)/ν`, not `ν/(ν+ε)`; the two differ by ~ε/ν.) A zero row
/// (ν = 0, y = 0) gets `dy/ε`, the one-sided limit PyTorch would give without its NaN.
pub fn backward<T: Real>(dy: &[T], y: &[T], norms: &[T], dx: &mut [T], n: usize) {
    for (((dyr, yr), &nu), dxr) in dy.chunks_exact(n).zip(y.chunks_exact(n)).zip(norms).zip(dx.chunks_exact_mut(n)) {
        let d = nu + eps();
        let dot: f64 = yr.iter().zip(dyr).map(|(&a, &b)| a.to_f64() * b.to_f64()).sum();
        let c = if nu > T::ZERO { T::from_f64(dot / nu.to_f64()) } else { T::ZERO };
        for ((g, &yv), &gy) in dxr.iter_mut().zip(yr).zip(dyr) {
            *g += gy / d - yv * c;
        }
    }
}
