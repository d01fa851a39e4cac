//! # sgraf
//!
//! SGRAF image-text matching (Diao et al., "Similarity Reasoning and
//! Filtration for Image-Text Matching", AAAI 2021) in Rust: every stage as a
//! WGSL compute shader run through `wgpu`, with a CPU twin of each kernel that
//! is also a real backend. Behaviour follows the official implementation
//! (`shared/spec/sgraf.md`), not the paper, where they differ.
//!
//! - [`model`]: parameters under the official state-dict names, sizes, tile layout.
//! - [`cpu`]: the CPU twin of every layer, and the CPU forward.
//! - [`gpu`]: the wgpu runtime and the WGSL kernels.
//! - [`data`]: SCAN precomp features (memory-mapped), captions, vocabulary, tokenizer.
//! - [`eval`]: all-pairs scoring in tiles and the retrieval metrics.
//! - [`explain`]: one pair explained per word: SAF weights, SGR edges, region attention.
//! - [`train`]: the training step on the CPU: loss, gradient clipping, Adam, BatchNorm updates.
//! - [`pth`]: the authors' PyTorch checkpoints (`.pth.tar`), read without Python or executing anything.
//! - [`synth`]: a generated teaching dataset of simple scenes (features, captions, pictures).
//! - [`web`]: the browser page's engine (sentence → images, image → sentences, per-word explanation) and its wasm interface.

pub mod backend;
pub mod cpu;
pub mod data;
pub mod error;
pub mod eval;
pub mod explain;
pub mod gpu;
pub mod model;
pub mod pth;
pub mod synth;
pub mod train;
pub mod web;

pub use error::{Result, SgrafError};
