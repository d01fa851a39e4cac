//! GPU kernels against their CPU twins (`sgraf::cpu::<layer>`), on small
//! random inputs. Needs a GPU adapter; on headless Linux install lavapipe
//! (`apt-get install mesa-vulkan-drivers libvulkan1`) and run with
//! `WGPU_BACKEND=vulkan`. Without an adapter these tests FAIL (they never
//! skip silently).

use std::sync::OnceLock;

use sgraf::gpu::linear::{self, Activation, Gemm};
use sgraf::gpu::tensor::{read_f32_many_blocking, GpuTensor};
use sgraf::gpu::GpuContext;

fn gpu() -> &'static GpuContext {
    static CTX: OnceLock<GpuContext> = OnceLock::new();
    CTX.get_or_init(|| match GpuContext::new_blocking(false) {
        Ok(c) => {
            eprintln!("GPU tests on {}", c.describe());
            c
        }
        Err(e) => panic!(
            "GPU tests need a GPU adapter and none could be had: {e}\n\
             HINT: apt-get install mesa-vulkan-drivers libvulkan1, then run with WGPU_BACKEND=vulkan"
        ),
    })
}

/// Small seeded LCG (Knuth's MMIX constants); values uniform in [-1, 1).
struct Lcg(u64);

impl Lcg {
    fn new(seed: u64) -> Self {
        Lcg(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }
    fn next_u32(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    fn uniform(&mut self) -> f32 {
        (self.next_u32() >> 7) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
}

/// `|got − want| ≤ tol·(1 + |want|)` everywhere; the message names the
/// tensor, the flat index and both values.
fn assert_close(name: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(
        got.len(),
        want.len(),
        "{name}: GPU gave {} values, CPU {}",
        got.len(),
        want.len()
    );
    let mut worst = (0usize, 0.0f32);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        if !(err <= tol * (1.0 + w.abs())) {
            panic!("{name}[{i}]: GPU {g} vs CPU {w} (|diff| {err:e}, tolerance {tol:e}·(1+|cpu|))");
        }
        if err > worst.1 {
            worst = (i, err);
        }
    }
    eprintln!(
        "{name}: {} values match, max |diff| {:e} at {}",
        got.len(),
        worst.1,
        worst.0
    );
}

fn up(data: &[f32], shape: &[usize]) -> GpuTensor {
    GpuTensor::upload_f32(gpu(), data, shape).unwrap()
}

fn read(t: &GpuTensor) -> Vec<f32> {
    read_f32_many_blocking(gpu(), &[t]).unwrap().pop().unwrap()
}

const TOL: f32 = 1e-5;

// ---------------------------------------------------------------------------
// linear

fn check_linear(m: usize, k: usize, n: usize, bias: bool, seed: u64) {
    let ctx = gpu();
    let mut rng = Lcg::new(seed);
    let x = rng.vec(m * k, 1.0);
    let w = rng.vec(n * k, 0.5);
    let b = rng.vec(n, 1.0);
    let mut want = vec![0.0; m * n];
    sgraf::cpu::linear::forward(&x, &w, bias.then_some(&b[..]), &mut want, m, k, n);

    let (gx, gw, gb) = (up(&x, &[m, k]), up(&w, &[n, k]), up(&b, &[n]));
    let gy = GpuTensor::zeros(ctx, &[m, n], sgraf::gpu::DType::F32).unwrap();
    let mut enc = ctx.encoder("test linear");
    linear::forward(ctx, &mut enc, &gx, &gw, bias.then_some(&gb), &gy).unwrap();
    ctx.submit(enc);
    assert_close(
        &format!("linear y (m={m} k={k} n={n} bias={bias})"),
        &read(&gy),
        &want,
        TOL,
    );
}

#[test]
fn linear_matches_cpu() {
    check_linear(37, 50, 70, true, 1);
    check_linear(37, 50, 70, false, 2);
    // Exact tile multiples, a K that is a multiple of the K slice, and tiny sizes.
    check_linear(128, 64, 128, true, 3);
    check_linear(1, 1, 1, true, 4);
    check_linear(130, 9, 3, true, 5);
    check_linear(3, 300, 129, false, 6);
}

#[test]
fn linear_activations() {
    let ctx = gpu();
    let (m, k, n) = (19, 23, 29);
    let mut rng = Lcg::new(7);
    let x = rng.vec(m * k, 1.0);
    let w = rng.vec(n * k, 1.0);
    let b = rng.vec(n, 1.0);
    let mut lin = vec![0.0; m * n];
    sgraf::cpu::linear::forward(&x, &w, Some(&b), &mut lin, m, k, n);
    let (gx, gw, gb) = (up(&x, &[m, k]), up(&w, &[n, k]), up(&b, &[n]));
    for (act, f) in [
        (Activation::Relu, (|v: f32| v.max(0.0)) as fn(f32) -> f32),
        (Activation::Tanh, f32::tanh),
        (Activation::Sigmoid, sgraf::cpu::sigmoid),
    ] {
        let gy = GpuTensor::zeros(ctx, &[m, n], sgraf::gpu::DType::F32).unwrap();
        let mut enc = ctx.encoder("test act");
        linear::forward_act(ctx, &mut enc, &gx, &gw, Some(&gb), &gy, act).unwrap();
        ctx.submit(enc);
        let want: Vec<f32> = lin.iter().map(|&v| f(v)).collect();
        assert_close(&format!("linear y ({act:?})"), &read(&gy), &want, TOL);
    }
}

/// `ctx[i] = attn[i] (L×36) · v[i] (36×E)`: plain B, batch strides.
#[test]
fn batched_matches_cpu() {
    let ctx = gpu();
    let (batch, m, k, n) = (3, 37, 36, 50);
    let mut rng = Lcg::new(11);
    let x = rng.vec(batch * m * k, 1.0);
    let w = rng.vec(batch * k * n, 1.0);
    let mut want = vec![0.0; batch * m * n];
    for b in 0..batch {
        sgraf::cpu::matmul_nn(
            &x[b * m * k..(b + 1) * m * k],
            &w[b * k * n..(b + 1) * k * n],
            &mut want[b * m * n..(b + 1) * m * n],
            m,
            k,
            n,
            false,
        );
    }
    let (gx, gw) = (up(&x, &[batch, m, k]), up(&w, &[batch, k, n]));
    let gy = GpuTensor::zeros(ctx, &[batch, m, n], sgraf::gpu::DType::F32).unwrap();
    let mut enc = ctx.encoder("test batched");
    linear::batched_forward(ctx, &mut enc, &gx, &gw, &gy, false).unwrap();
    ctx.submit(enc);
    assert_close("batched y = x·w", &read(&gy), &want, TOL);

    // Shared x (batch stride 0) against transposed per-batch w.
    let x1 = &x[..m * k];
    let wt = rng.vec(batch * n * k, 1.0);
    let mut want = vec![0.0; batch * m * n];
    for b in 0..batch {
        sgraf::cpu::matmul_nt(
            x1,
            &wt[b * n * k..(b + 1) * n * k],
            &mut want[b * m * n..(b + 1) * m * n],
            m,
            k,
            n,
            false,
        );
    }
    let (gx1, gwt) = (up(x1, &[m, k]), up(&wt, &[batch, n, k]));
    let gy = GpuTensor::zeros(ctx, &[batch, m, n], sgraf::gpu::DType::F32).unwrap();
    let mut enc = ctx.encoder("test batched t");
    linear::batched_forward(ctx, &mut enc, &gx1, &gwt, &gy, true).unwrap();
    ctx.submit(enc);
    assert_close("batched y = x·w[b]ᵀ (shared x)", &read(&gy), &want, TOL);
}

/// Offsets, row strides and accumulation through [`linear::gemm`].
#[test]
fn gemm_strides_offsets_accumulate() {
    let ctx = gpu();
    let (m, k, n) = (5, 7, 6);
    let (ldx, ldw, ldy) = (11, 9, 8);
    let (xo, wo, yo, bo) = (3, 2, 4, 1);
    let mut rng = Lcg::new(13);
    let x = rng.vec(xo + m * ldx, 1.0);
    let w = rng.vec(wo + k * ldw, 1.0); // plain [k, n] with row stride ldw
    let b = rng.vec(bo + n, 1.0);
    let y0 = rng.vec(yo + m * ldy, 1.0);
    let mut want = y0.clone();
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f32;
            for kk in 0..k {
                s += x[xo + i * ldx + kk] * w[wo + kk * ldw + j];
            }
            want[yo + i * ldy + j] += s + b[bo + j];
        }
    }
    let (gx, gw, gb, gy) = (
        up(&x, &[x.len()]),
        up(&w, &[w.len()]),
        up(&b, &[b.len()]),
        up(&y0, &[y0.len()]),
    );
    let g = Gemm {
        trans_w: false,
        x_off: xo,
        w_off: wo,
        y_off: yo,
        b_off: bo,
        ldx,
        ldw,
        ldy,
        accumulate: true,
        ..Gemm::linear(m, k, n)
    };
    let mut enc = ctx.encoder("test gemm");
    linear::gemm(ctx, &mut enc, &gx, &gw, Some(&gb), &gy, None, &g).unwrap();
    ctx.submit(enc);
    assert_close("gemm y (strided, accumulate)", &read(&gy), &want, TOL);

    // An access past the end is refused before anything is recorded.
    let mut enc = ctx.encoder("test gemm oob");
    let bad = Gemm { m: m + 1, ..g };
    assert!(linear::gemm(ctx, &mut enc, &gx, &gw, Some(&gb), &gy, None, &bad).is_err());
}

#[test]
fn readback_many() {
    let ctx = gpu();
    let a = up(&[1.0, 2.0, 3.0], &[3]);
    let b = up(&[], &[0, 4]);
    let c = up(&[-4.5], &[1, 1]);
    let got = read_f32_many_blocking(ctx, &[&a, &b, &c]).unwrap();
    assert_eq!(got, vec![vec![1.0, 2.0, 3.0], vec![], vec![-4.5]]);
    let u = GpuTensor::upload_u32(ctx, &[7, 8], &[2]).unwrap();
    assert_eq!(
        sgraf::gpu::tensor::read_u32_many_blocking(ctx, &[&u]).unwrap(),
        vec![vec![7, 8]]
    );
    assert!(!ctx.describe().is_empty());
}
