//! The CPU twin of every GPU kernel: the same layers, under the same names,
//! computing the same values. Matrix products go through the `gemm` crate;
//! the scorer runs images in parallel on native targets.
//!
//! Every layer is generic over its float type [`Real`]: `f32` is the model
//! (type inference picks it at every call site of the crate), `f64` exists
//! for the finite-difference checks of the backwards (`tests/grad_check.rs`).
//! The float32 path computes exactly what it computed before the layers were
//! generic: float32 literals enter through [`Real::from_f32`] (exact for
//! `f32`), and the float64 accumulations stay float64 ([`Real::to_f64`],
//! [`Real::from_f64`], identities for `f64`).

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

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

/// The float type of the CPU layers: `f32` (the model) or `f64` (gradient checks).
pub trait Real:
    Copy
    + Default
    + Debug
    + std::fmt::Display
    + PartialEq
    + PartialOrd
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
    + for<'a> Sum<&'a Self>
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;
    /// A float32 constant (exact for `f32`, widened for `f64`).
    fn from_f32(x: f32) -> Self;
    /// `x as Self`.
    fn from_f64(x: f64) -> Self;
    /// `n as Self`.
    fn from_usize(n: usize) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn sqrt(self) -> Self;
    fn tanh(self) -> Self;
    fn abs(self) -> Self;
    fn max(self, other: Self) -> Self;
    fn is_finite(self) -> bool;
    /// Runs `f` on this thread's pool of [`Scratch`] buffers of this type.
    fn with_pool<R>(f: impl FnOnce(&mut Vec<Vec<Self>>) -> R) -> R;
}

thread_local! {
    static POOL_F32: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
    static POOL_F64: std::cell::RefCell<Vec<Vec<f64>>> = const { std::cell::RefCell::new(Vec::new()) };
}

macro_rules! impl_real {
    ($t:ty, $pool:ident) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            #[inline(always)]
            fn from_f32(x: f32) -> Self {
                x as $t
            }
            #[inline(always)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn from_usize(n: usize) -> Self {
                n as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            fn with_pool<R>(f: impl FnOnce(&mut Vec<Vec<Self>>) -> R) -> R {
                $pool.with(|p| f(&mut p.borrow_mut()))
            }
        }
    };
}
impl_real!(f32, POOL_F32);
impl_real!(f64, POOL_F64);

/// `c[m, n] (+)= a[m, k] · b[n, k]ᵀ` (`accumulate` adds to c).
pub fn matmul_nt<T: Real>(a: &[T], b: &[T], c: &mut [T], m: usize, k: usize, n: usize, accumulate: bool) {
    assert!(b.len() >= n * k, "matmul_nt: b too small");
    // b[n, k] read as its transpose [k, n]: column stride k, row stride 1
    matmul(a, b, (k as isize, 1), c, m, k, n, accumulate);
}

/// `c[m, n] (+)= a[m, k] · b[k, n]`.
pub fn matmul_nn<T: Real>(a: &[T], b: &[T], c: &mut [T], m: usize, k: usize, n: usize, accumulate: bool) {
    assert!(b.len() >= k * n, "matmul_nn: b too small");
    matmul(a, b, (1, n as isize), c, m, k, n, accumulate);
}

/// Row-major `a [m, k]` and `c [m, n]`; `b` as [k, n] with the given
/// (column, row) strides.
#[allow(clippy::too_many_arguments)]
fn matmul<T: Real>(
    a: &[T],
    b: &[T],
    (b_cs, b_rs): (isize, isize),
    c: &mut [T],
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
            c[..m * n].fill(T::ZERO);
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
            T::ONE,
            T::ONE,
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

pub fn sigmoid<T: Real>(x: T) -> T {
    T::ONE / (T::ONE + (-x).exp())
}

/// In-place max-shifted softmax of one row (the sum in float64).
pub fn softmax<T: Real>(x: &mut [T]) {
    let m = x.iter().copied().fold(T::NEG_INFINITY, T::max);
    let mut s = 0.0f64;
    for v in x.iter_mut() {
        *v = (*v - m).exp();
        s += v.to_f64();
    }
    let s = T::from_f64(s);
    for v in x.iter_mut() {
        *v /= s;
    }
}

/// Backward of [`softmax`] for one row: `dx += y ⊙ (dy − Σ y·dy)` with `y` the softmax output.
pub fn softmax_backward<T: Real>(y: &[T], dy: &[T], dx: &mut [T]) {
    let dot: T = y.iter().zip(dy).map(|(&a, &b)| a * b).sum();
    for ((d, &yv), &g) in dx.iter_mut().zip(y).zip(dy) {
        *d += yv * (g - dot);
    }
}

/// `dst += src` element-wise (gradient reductions).
pub fn add_into<T: Real>(dst: &mut [T], src: &[T]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}

/// A per-thread reusable buffer (returned to the thread's pool on drop), so
/// the per-image loops do not allocate and zero megabytes per image. Its
/// contents are unspecified: callers overwrite what they read.
pub struct Scratch<T: Real = f32>(Vec<T>);

impl<T: Real> Scratch<T> {
    pub fn new(len: usize) -> Scratch<T> {
        let mut v = T::with_pool(|p| p.pop()).unwrap_or_default();
        if v.len() < len {
            v.resize(len, T::ZERO);
        }
        v.truncate(len);
        Scratch(v)
    }
}

impl<T: Real> Drop for Scratch<T> {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        T::with_pool(|p| p.push(v));
    }
}

impl<T: Real> std::ops::Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T: Real> std::ops::DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}

/// `c[m, n] (+)= a[k, m]ᵀ · b[k, n]` (weight gradients: `dW += dyᵀ·x`).
pub fn matmul_tn<T: Real>(a: &[T], b: &[T], c: &mut [T], m: usize, k: usize, n: usize, accumulate: bool) {
    assert!(a.len() >= k * m && b.len() >= k * n && c.len() >= m * n, "matmul_tn: buffer too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(T::ZERO);
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
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism(m * n * k),
        )
    }
}
