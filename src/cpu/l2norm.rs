//! Row-wise `x / (sqrt(Σx²) + 1e-8)` (eps added to the norm, spec §1).

/// Normalises every row of `x [m, n]` in place.
pub fn forward(x: &mut [f32], n: usize) {
    for row in x.chunks_exact_mut(n) {
        // Sum of squares in float64 (4 lanes, so it vectorises): the attention
        // and similarity stages amplify rounding in these norms.
        let mut acc = [0.0f64; 4];
        let mut chunks = row.chunks_exact(4);
        for c in &mut chunks {
            for k in 0..4 {
                acc[k] += c[k] as f64 * c[k] as f64;
            }
        }
        let tail: f64 = chunks.remainder().iter().map(|&v| v as f64 * v as f64).sum();
        let norm = (((acc[0] + acc[1]) + (acc[2] + acc[3]) + tail).sqrt() as f32) + 1e-8;
        for v in row.iter_mut() {
            *v /= norm;
        }
    }
}

/// `sqrt(Σx²)` of one row, computed exactly as [`forward`] does (float64, 4 lanes).
pub fn row_norm(row: &[f32]) -> f32 {
    let mut acc = [0.0f64; 4];
    let mut chunks = row.chunks_exact(4);
    for c in &mut chunks {
        for k in 0..4 {
            acc[k] += c[k] as f64 * c[k] as f64;
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&v| v as f64 * v as f64).sum();
    ((acc[0] + acc[1]) + (acc[2] + acc[3]) + tail).sqrt() as f32
}

/// As [`forward`] (same values), also returning every row's norm `‖x‖`
/// (without the eps), `[m]`, for the backward.
pub fn forward_keep_norms(x: &mut [f32], n: usize) -> Vec<f32> {
    let mut norms = Vec::with_capacity(x.len() / n.max(1));
    for row in x.chunks_exact_mut(n) {
        let norm = row_norm(row);
        let d = norm + 1e-8;
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
pub fn backward(dy: &[f32], y: &[f32], norms: &[f32], dx: &mut [f32], n: usize) {
    for (((dyr, yr), &nu), dxr) in dy.chunks_exact(n).zip(y.chunks_exact(n)).zip(norms).zip(dx.chunks_exact_mut(n)) {
        let d = nu + 1e-8;
        let dot: f64 = yr.iter().zip(dyr).map(|(&a, &b)| a as f64 * b as f64).sum();
        let c = if nu > 0.0 { (dot / nu as f64) as f32 } else { 0.0 };
        for ((g, &yv), &gy) in dxr.iter_mut().zip(yr).zip(dyr) {
            *g += gy / d - yv * c;
        }
    }
}
