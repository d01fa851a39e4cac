//! Linear layer `y = x·Wᵀ + b` (PyTorch `nn.Linear`).

use super::Real;

/// `y[m, n] = x[m, k] · w[n, k]ᵀ + b[n]` (overwrites `y`).
pub fn forward<T: Real>(x: &[T], w: &[T], b: Option<&[T]>, y: &mut [T], m: usize, k: usize, n: usize) {
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

/// Backward of [`forward`], accumulating: `dx [m, k] += dy·W`, `dw [n, k] += dyᵀ·x`,
/// `db [n] += Σ_rows dy`. `dx = None` skips the input gradient; `db = None`
/// skips the bias gradient (used where it is zero by construction).
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Real>(
    dy: &[T],
    x: &[T],
    w: &[T],
    dx: Option<&mut [T]>,
    dw: &mut [T],
    db: Option<&mut [T]>,
    m: usize,
    k: usize,
    n: usize,
) {
    super::matmul_tn(dy, x, dw, n, m, k, true);
    if let Some(db) = db {
        for row in dy[..m * n].chunks_exact(n) {
            super::add_into(&mut db[..n], row);
        }
    }
    if let Some(dx) = dx {
        super::matmul_nn(dy, w, dx, m, n, k, true);
    }
}
