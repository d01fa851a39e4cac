//! Linear layer `y = x·Wᵀ + b` (PyTorch `nn.Linear`).

/// `y[m, n] = x[m, k] · w[n, k]ᵀ + b[n]` (overwrites `y`).
pub fn forward(x: &[f32], w: &[f32], b: Option<&[f32]>, y: &mut [f32], m: usize, k: usize, n: usize) {
    match b {
        Some(b) => {
            for row in y[..m * n].chunks_exact_mut(n) {
                row.copy_from_slice(&b[..n]);
            }
            super::matmul_nt(x, w, y, m, k, n, true);
        }
        None => super::matmul_nt(x, w, y, m, k, n, false),
    }
}
