//! Data: SCAN precomp splits (memory-mapped `.npy` region features and caption
//! files), the official vocabulary and NLTK-compatible caption tokenisation.

pub mod npy;
pub mod precomp;
pub mod tokenize;
pub mod vocab;

#[cfg(not(target_arch = "wasm32"))]
pub use npy::write_f32;
pub use npy::{encode_f32, NpyF32};
pub use precomp::{parse_captions, Split, N_REGIONS};
pub use tokenize::{encode, tokenize};
pub use vocab::{Vocab, END, PAD, START, UNK};
