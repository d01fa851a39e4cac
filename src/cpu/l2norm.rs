//! Row-wise `x / (sqrt(Σx²) + 1e-8)` (eps added to the norm, spec §1).

/// Normalises every row of `x [m, n]` in place.
pub fn forward(x: &mut [f32], n: usize) {
    for row in x.chunks_exact_mut(n) {
        let norm = (row.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt() as f32) + 1e-8;
        for v in row.iter_mut() {
            *v /= norm;
        }
    }
}
