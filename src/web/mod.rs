//! The browser page (`web/`): the engine it runs (the same model, kernels
//! and loaders as the `sgraf` binary, on WebGPU or on the CPU backend
//! compiled to wasm) and, on wasm, its JavaScript interface.
//!
//! [`engine`] builds on every target (the native tests drive it; its
//! per-word explanations are [`crate::explain`]); [`bindings`] exists only on `wasm32`.

pub mod engine;

#[cfg(target_arch = "wasm32")]
pub mod bindings;
