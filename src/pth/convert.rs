//! From the unpickled SGRAF training checkpoint to sgraf's state map.
//!
//! SGRAF's `train.py` saves (spec §11.1)
//! `{'epoch': int, 'model': [img_enc_sd, txt_enc_sd, sim_enc_sd],
//!   'best_rsum': float, 'opt': argparse.Namespace, 'Eiters': int}`.
//! The three state dicts become one map with keys prefixed `img_enc.`,
//! `txt_enc.`, `sim_enc.`; the options worth keeping become metadata.

use std::collections::{BTreeMap, HashMap};

use super::container::{TorchFile, OUTPUT_FACTOR};
use super::pickle::{Heap, Value};
use super::PthError;
use crate::model::params::RawTensor;

/// Prefixes of the three parts of `checkpoint['model']`, in order.
pub const PARTS: [&str; 3] = ["img_enc", "txt_enc", "sim_enc"];

/// Options of `opt` copied into the metadata, with the top-level scalars.
const OPT_KEYS: [&str; 9] = [
    "module_name",
    "img_dim",
    "word_dim",
    "embed_size",
    "sim_dim",
    "sgr_step",
    "vocab_size",
    "data_name",
    "num_layers",
];

/// Scalars as metadata text; containers and tensors give `None`.
fn scalar_text(v: &Value) -> Option<String> {
    Some(match v {
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Str(s) => s.to_string(),
        _ => return None,
    })
}

/// Prefixed tensors and text metadata.
pub type StateAndMeta = (BTreeMap<String, RawTensor>, HashMap<String, String>);

/// The prefixed state map and the metadata of an SGRAF checkpoint.
pub fn convert(file: &TorchFile) -> Result<StateAndMeta, PthError> {
    let h = &file.heap;
    let layout = "SGRAF's train.py saves {'epoch', 'model': [img_enc, txt_enc, sim_enc state dicts], 'best_rsum', \
                  'opt', 'Eiters'}";
    let root = h.dict(&file.root).ok_or_else(|| {
        PthError::Checkpoint(format!("the checkpoint is a {}, not a dict; {layout}", h.kind(&file.root)))
    })?;
    let model = Heap::lookup(root, "model")
        .ok_or_else(|| PthError::Checkpoint(format!("the checkpoint dict has no 'model' entry; {layout}")))?;
    let parts = match h.seq(model) {
        Some(p) if p.len() == PARTS.len() => p,
        _ => {
            return Err(PthError::Checkpoint(format!(
                "checkpoint['model'] is a {}, expected a list of three state dicts [img_enc, txt_enc, sim_enc]",
                h.kind(model)
            )))
        }
    };
    let mut tensors = BTreeMap::new();
    let budget = file.storage_bytes().saturating_mul(OUTPUT_FACTOR).saturating_add(1 << 16);
    let mut out_bytes = 0usize;
    for (i, (prefix, sd)) in PARTS.iter().zip(parts).enumerate() {
        let entries = h.dict(sd).ok_or_else(|| {
            PthError::Checkpoint(format!("checkpoint['model'][{i}] ({prefix}) is a {}, not a state dict", h.kind(sd)))
        })?;
        for (k, v) in entries {
            let name = match k {
                Value::Str(s) => format!("{prefix}.{s}"),
                other => {
                    return Err(PthError::Checkpoint(format!(
                        "checkpoint['model'][{i}] has a {} key, expected parameter names",
                        h.kind(other)
                    )))
                }
            };
            let t = file.tensor(v).map_err(|msg| PthError::Tensor { key: name.clone(), msg })?;
            out_bytes += match &t {
                RawTensor::F32 { data, .. } => data.len() * 4,
                RawTensor::I64 { data, .. } => data.len() * 8,
            };
            if out_bytes > budget {
                return Err(PthError::Checkpoint(format!(
                    "the state dicts' tensors need more than {OUTPUT_FACTOR}× the {} bytes of storage in the file \
                     (the same tensor named many times?)",
                    file.storage_bytes()
                )));
            }
            tensors.insert(name, t); // a repeated key keeps the last value, as Python does
        }
    }
    // Metadata: the epoch and best dev rsum, and the options that size the model.
    let mut meta = HashMap::new();
    meta.insert("container".to_string(), file.container.name().to_string());
    for k in ["epoch", "best_rsum", "Eiters"] {
        if let Some(s) = Heap::lookup(root, k).and_then(scalar_text) {
            meta.insert(k.to_string(), s);
        }
    }
    if let Some(opt) = Heap::lookup(root, "opt").and_then(|o| h.namespace(o)) {
        for k in OPT_KEYS {
            if let Some(s) = Heap::lookup(opt, k).and_then(scalar_text) {
                meta.insert(k.to_string(), s);
            }
        }
    }
    Ok((tensors, meta))
}
