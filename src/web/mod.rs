//! The browser page (`web/`): the engine it runs (the same model, kernels
//! and loaders as the `sgraf` binary, on WebGPU or on the CPU backend
//! compiled to wasm) and, on wasm, its JavaScript interface.
//!
//! [`engine`] and [`explain`] build on every target (the native tests drive
//! them); [`bindings`] exists only on `wasm32`.

pub mod engine;
pub mod explain;

#[cfg(target_arch = "wasm32")]
pub mod bindings;
