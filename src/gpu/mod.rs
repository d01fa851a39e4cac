//! The GPU backend (wgpu / WGSL). One file per layer, mirroring `src/cpu/`:
//! `src/gpu/<layer>.rs` records the dispatches of `shaders/<layer>.wgsl`
//! into a caller-owned `wgpu::CommandEncoder`; nothing is read back per op.

pub mod context;
pub mod linear;
pub mod tensor;

pub use context::GpuContext;
pub use tensor::{DType, GpuTensor};
