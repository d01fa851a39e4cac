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
