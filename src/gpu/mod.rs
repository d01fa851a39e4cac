//! The GPU backend (wgpu / WGSL). One file per layer, mirroring `src/cpu/`:
//! `src/gpu/<layer>.rs` records the dispatches of `shaders/<layer>.wgsl`
//! into a caller-owned `wgpu::CommandEncoder`; nothing is read back per op.
//! Shapes are checked before anything is recorded.

pub mod attention;
pub mod batchnorm;
pub mod context;
pub mod dropout;
pub mod embed;
pub mod gru;
pub mod head;
pub mod image_fc;
pub mod l2norm;
pub mod linear;
pub mod loss;
pub mod model;
pub mod optim;
pub mod params;
pub mod saf;
pub mod sgr;
pub mod similarity;
pub mod tensor;
pub mod text_sa;
pub mod train;
pub mod visual_sa;

pub use context::GpuContext;
pub use params::{GpuLayout, GpuParams};
pub use tensor::{DType, GpuTensor};

use crate::error::{Result, SgrafError};

/// `v` as `u32` for a kernel's uniform, or an input error naming it.
pub(crate) fn u32c(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| SgrafError::Input(format!("{what} = {v} is too large for the GPU kernels (u32)")))
}

/// Fail with [`SgrafError::Input`] unless `t` holds exactly `want` elements.
pub(crate) fn expect_numel(what: &str, t: &GpuTensor, want: usize) -> Result<()> {
    if t.numel() != want {
        return Err(SgrafError::Input(format!("{what}: GPU tensor of shape {:?} should hold {want} values", t.shape)));
    }
    Ok(())
}
