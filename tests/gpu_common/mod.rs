//! Helpers shared by the GPU test binaries: the one GPU context (a test
//! fails, never skips, without an adapter), a seeded generator, the
//! GPU-vs-CPU comparison, uploads and readbacks.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use sgraf::gpu::tensor::{read_f32_many_blocking, read_u32_many_blocking, GpuTensor};
use sgraf::gpu::GpuContext;

pub fn gpu() -> &'static GpuContext {
    gpu_shared()
}

/// The one context of a test binary (`GpuModel` holds it in an `Arc`).
pub fn gpu_shared() -> &'static Arc<GpuContext> {
    static CTX: OnceLock<Arc<GpuContext>> = OnceLock::new();
    CTX.get_or_init(|| match GpuContext::new_blocking(false) {
        Ok(c) => {
            eprintln!("GPU tests on {}", c.describe());
            Arc::new(c)
        }
        Err(e) => panic!(
            "GPU tests need a GPU adapter and none could be had: {e}\n\
             HINT: apt-get install mesa-vulkan-drivers libvulkan1, then run with WGPU_BACKEND=vulkan"
        ),
    })
}

/// Small seeded LCG (Knuth's MMIX constants); values uniform in [-1, 1).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Lcg(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }
    pub fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    pub fn uniform(&mut self) -> f32 {
        (self.next_u32() >> 7) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
}

/// `|got − want| ≤ tol·(1 + |want|)` everywhere; the message names the
/// tensor, the flat index and both values. Returns the largest |diff|.
pub fn assert_close(name: &str, got: &[f32], want: &[f32], tol: f32) -> f32 {
    assert_eq!(got.len(), want.len(), "{name}: GPU gave {} values, CPU {}", got.len(), want.len());
    let mut worst = (0usize, 0.0f32);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        if err.is_nan() || err > tol * (1.0 + w.abs()) {
            panic!("{name}[{i}]: GPU {g} vs CPU {w} (|diff| {err:e}, tolerance {tol:e}·(1+|cpu|))");
        }
        if err > worst.1 {
            worst = (i, err);
        }
    }
    eprintln!("{name}: {} values match, max |diff| {:e} at {}", got.len(), worst.1, worst.0);
    worst.1
}

pub fn up(data: &[f32], shape: &[usize]) -> GpuTensor {
    GpuTensor::upload_f32(gpu(), data, shape).unwrap()
}

pub fn up_u32(data: &[u32], shape: &[usize]) -> GpuTensor {
    GpuTensor::upload_u32(gpu(), data, shape).unwrap()
}

pub fn read(t: &GpuTensor) -> Vec<f32> {
    read_f32_many_blocking(gpu(), &[t]).unwrap().pop().unwrap()
}

pub fn read_u32(t: &GpuTensor) -> Vec<u32> {
    read_u32_many_blocking(gpu(), &[t]).unwrap().pop().unwrap()
}
