//! The CPU twin of every GPU kernel: the same layers, under the same names,
//! computing the same values. Matrix products go through the `gemm` crate;
//! the scorer runs images in parallel on native targets.

pub mod attention;
pub mod batchnorm;
pub mod embed;
pub mod gru;
pub mod head;
pub mod image_fc;
pub mod l2norm;
pub mod linear;
pub mod loss;
pub mod model;
pub mod saf;
pub mod sgr;
pub mod similarity;
pub mod text_sa;
pub mod train;
pub mod visual_sa;

/// `c[m, n] (+)= a[m, k] · b[n, k]ᵀ` (`accumulate` adds to c).
pub fn matmul_nt(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize, accumulate: bool) {
    assert!(b.len() >= n * k, "matmul_nt: b too small");
    // b[n, k] read as its transpose [k, n]: column stride k, row stride 1
    matmul(a, b, (k as isize, 1), c, m, k, n, accumulate);
}

/// `c[m, n] (+)= a[m, k] · b[k, n]`.
pub fn matmul_nn(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize, accumulate: bool) {
    assert!(b.len() >= k * n, "matmul_nn: b too small");
    matmul(a, b, (1, n as isize), c, m, k, n, accumulate);
}

/// Row-major `a [m, k]` and `c [m, n]`; `b` as [k, n] with the given
/// (column, row) strides.
#[allow(clippy::too_many_arguments)]
fn matmul(
    a: &[f32],
    b: &[f32],
    (b_cs, b_rs): (isize, isize),
    c: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
    accumulate: bool,
) {
    assert!(a.len() >= m * k && c.len() >= m * n, "matmul: buffer too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    // SAFETY: bounds checked above (b by the callers); row-major a and c.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism(m * n * k),
        )
    }
}

thread_local! {
    static SERIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with single-threaded matrix products (used inside parallel loops).
pub fn serial<R>(f: impl FnOnce() -> R) -> R {
    SERIAL.with(|s| {
        let old = s.replace(true);
        let r = f();
        s.set(old);
        r
    })
}

#[cfg(not(target_arch = "wasm32"))]
fn parallelism(work: usize) -> gemm::Parallelism {
    if work < 1 << 18 || SERIAL.with(|s| s.get()) {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(0)
    }
}

#[cfg(target_arch = "wasm32")]
fn parallelism(_work: usize) -> gemm::Parallelism {
    gemm::Parallelism::None
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// In-place max-shifted softmax of one row.
pub fn softmax(x: &mut [f32]) {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0.0f64;
    for v in x.iter_mut() {
        *v = (*v - m).exp();
        s += *v as f64;
    }
    let s = s as f32;
    for v in x.iter_mut() {
        *v /= s;
    }
}

/// Backward of [`softmax`] for one row: `dx += y ⊙ (dy − Σ y·dy)` with `y` the softmax output.
pub fn softmax_backward(y: &[f32], dy: &[f32], dx: &mut [f32]) {
    let dot: f32 = y.iter().zip(dy).map(|(a, b)| a * b).sum();
    for ((d, &yv), &g) in dx.iter_mut().zip(y).zip(dy) {
        *d += yv * (g - dot);
    }
}

/// `dst += src` element-wise (gradient reductions).
pub fn add_into(dst: &mut [f32], src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}

thread_local! {
    static POOL: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A per-thread reusable buffer (returned to the thread's pool on drop), so
/// the per-image loops do not allocate and zero megabytes per image. Its
/// contents are unspecified: callers overwrite what they read.
pub struct Scratch(Vec<f32>);

impl Scratch {
    pub fn new(len: usize) -> Scratch {
        let mut v = POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default();
        if v.len() < len {
            v.resize(len, 0.0);
        }
        v.truncate(len);
        Scratch(v)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        POOL.with(|p| p.borrow_mut().push(v));
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

/// `c[m, n] (+)= a[k, m]ᵀ · b[k, n]` (weight gradients: `dW += dyᵀ·x`).
pub fn matmul_tn(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize, accumulate: bool) {
    assert!(a.len() >= k * m && b.len() >= k * n && c.len() >= m * n, "matmul_tn: buffer too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    // SAFETY: bounds checked above; `a` is read transposed (column stride m, row stride 1).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            m as isize,
            1,
            b.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism(m * n * k),
        )
    }
}
