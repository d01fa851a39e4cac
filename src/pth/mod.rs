//! # PyTorch checkpoints without Python
//!
//! Reads the authors' released `model_best.pth.tar` files (spec §11.1) —
//! safely: the pickle inside is interpreted by a restricted reader
//! ([`pickle`]) that knows only the opcodes and the handful of globals a
//! checkpoint uses, refuses every other global by name, and never executes
//! anything from the file. Both containers are read ([`container`]): the
//! zip of PyTorch ≥ 1.6 and the legacy pickle sequence of older releases.
//! Tensors saved from a GPU, float32/int64 (and float64, converted)
//! storages, and strided views at storage offsets (a cuDNN-flattened GRU)
//! are materialised contiguously with every index bounds-checked
//! ([`tensor`]). [`convert`] turns SGRAF's `{'model': [img_enc, txt_enc,
//! sim_enc], 'opt', …}` into sgraf's prefixed state map.
//!
//! ```no_run
//! # fn main() -> sgraf::Result<()> {
//! let bytes = std::fs::read("runs/f30k_SGR/model_best.pth.tar").unwrap();
//! let imported = sgraf::pth::import(&bytes, "model_best.pth.tar")?;
//! let params = imported.params("model_best.pth.tar")?; // checked against the saved options
//! let safetensors = imported.to_safetensors("model_best.pth.tar")?; // what `sgraf import` writes
//! # Ok(()) }
//! ```

pub mod container;
pub mod convert;
pub mod pickle;
pub mod tensor;

use std::collections::{BTreeMap, HashMap};

pub use container::{detect, read_legacy, read_zip, Container, TorchFile};

use crate::error::{Result, SgrafError};
use crate::model::params::{Module, Params, RawTensor};

/// What can go wrong inside a checkpoint. At the library boundary these
/// become [`SgrafError::Pth`] with the file's path.
#[derive(Debug, thiserror::Error)]
pub enum PthError {
    #[error(
        "refused to load the Python global `{0}`: a PyTorch checkpoint needs only tensors, storages, \
         collections.OrderedDict and argparse.Namespace, so this file is not a plain checkpoint (it may have been \
         crafted to run code). Nothing from it was executed"
    )]
    RefusedGlobal(String),

    #[error("malformed pickle at byte {pos}: {msg}")]
    Pickle { pos: usize, msg: String },

    #[error("zip container: {0}")]
    Zip(String),

    #[error("{0}")]
    Container(String),

    #[error("tensor {key}: {msg}")]
    Tensor { key: String, msg: String },

    /// A valid PyTorch file that is not an SGRAF training checkpoint.
    #[error("{0}")]
    Checkpoint(String),
}

impl PthError {
    pub fn at(self, path: &str) -> SgrafError {
        SgrafError::Pth { path: path.to_string(), msg: self.to_string() }
    }
}

/// Parses either container, chosen by the file's first bytes.
pub fn read(bytes: &[u8]) -> std::result::Result<TorchFile<'_>, PthError> {
    match detect(bytes) {
        Some(Container::Zip) => read_zip(bytes),
        Some(Container::Legacy) => read_legacy(bytes),
        None => Err(PthError::Container(
            "not a PyTorch checkpoint: it starts neither with a zip signature (PyTorch ≥ 1.6) nor with the legacy \
             magic number"
                .into(),
        )),
    }
}

/// An imported SGRAF checkpoint.
#[derive(Clone, Debug)]
pub struct Import {
    /// Official state-dict keys prefixed `img_enc.`, `txt_enc.`, `sim_enc.`.
    pub tensors: BTreeMap<String, RawTensor>,
    /// `container`, `epoch`, `best_rsum`, `Eiters`, and from `opt`: `module_name`,
    /// `img_dim`, `word_dim`, `embed_size`, `sim_dim`, `sgr_step`, `vocab_size`,
    /// `data_name`, `num_layers` (those present), all as text.
    pub metadata: HashMap<String, String>,
    pub container: Container,
}

/// Reads an SGRAF `.pth.tar` checkpoint from memory. `path` names it in errors.
pub fn import(bytes: &[u8], path: &str) -> Result<Import> {
    let file = read(bytes).map_err(|e| e.at(path))?;
    let (tensors, metadata) = convert::convert(&file).map_err(|e| e.at(path))?;
    Ok(Import { tensors, metadata, container: file.container })
}

/// Reads an SGRAF `.pth.tar` checkpoint file.
#[cfg(not(target_arch = "wasm32"))]
pub fn open(path: &std::path::Path) -> Result<Import> {
    let bytes = std::fs::read(path).map_err(|e| SgrafError::io(path, e))?;
    import(&bytes, &path.display().to_string())
}

/// Reads an SGRAF `.pth.tar` checkpoint straight into a model.
pub fn load_params(bytes: &[u8], path: &str) -> Result<Params> {
    let imp = import(bytes, path)?;
    let params = Params::from_state(imp.tensors, path)?;
    check_options(&imp.metadata, &params, path)?;
    Ok(params)
}

impl Import {
    /// The model, with every key and shape checked and the saved options
    /// (`opt.module_name`, sizes) checked against the weights.
    pub fn params(&self, path: &str) -> Result<Params> {
        let params = Params::from_state(self.tensors.clone(), path)?;
        check_options(&self.metadata, &params, path)?;
        Ok(params)
    }

    /// A safetensors checkpoint of the model, with the metadata.
    pub fn to_safetensors(&self, path: &str) -> Result<Vec<u8>> {
        let params = self.params(path)?;
        let mut meta = self.metadata.clone();
        let source = std::path::Path::new(path).file_name().map(|s| s.to_string_lossy().into_owned());
        meta.insert("imported_from".into(), source.unwrap_or_else(|| path.to_string()));
        params.to_safetensors_bytes(Some(meta))
    }
}

/// The saved options must describe the weights they came with.
fn check_options(meta: &HashMap<String, String>, p: &Params, path: &str) -> Result<()> {
    let c = &p.cfg;
    let mismatch = |what: &str, saved: &str, found: String| {
        Err(SgrafError::Pth {
            path: path.to_string(),
            msg: format!("opt.{what} is {saved} but the weights have {found}; the file is inconsistent"),
        })
    };
    if let Some(m) = meta.get("module_name") {
        if m != c.module.name() {
            return mismatch("module_name", m, format!("{} keys", c.module.name()));
        }
    }
    let steps = match c.module {
        Module::Sgr { steps } => Some(steps),
        Module::Saf => None,
    };
    let sizes = [
        ("img_dim", Some(c.img_dim)),
        ("word_dim", Some(c.word_dim)),
        ("embed_size", Some(c.embed)),
        ("sim_dim", Some(c.sim_dim)),
        ("vocab_size", Some(c.vocab)),
        ("sgr_step", steps),
    ];
    for (k, have) in sizes {
        if let (Some(saved), Some(have)) = (meta.get(k), have) {
            if saved.parse::<usize>().ok() != Some(have) {
                return mismatch(k, saved, have.to_string());
            }
        }
    }
    Ok(())
}
