//! The two containers `torch.save` writes.
//!
//! **Zip** (PyTorch ≥ 1.6): a zip archive (entries stored, not compressed)
//! with one top folder whose name varies (`archive/`, or the file's stem):
//! `<top>/data.pkl` is the pickle, `<top>/data/<key>` the raw bytes of each
//! storage, `<top>/byteorder` `little` or `big` (absent: little).
//!
//! **Legacy** (PyTorch < 1.6): five things back to back —
//! pickle(magic number 0x1950a86a20f9469cfc6c), pickle(protocol 1001),
//! pickle(sys info dict), the main pickle (with persistent ids), pickle(the
//! sorted list of storage keys), then for each key in that order its
//! element count as a little-endian u64 followed by its raw little-endian
//! bytes (element size given by the storage type the main pickle names).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;

use super::pickle::{unpickle, Heap, Value};
use super::tensor::{materialise, StorageDtype};
use super::PthError;
use crate::model::params::RawTensor;

/// Which container a checkpoint uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    Zip,
    Legacy,
}

impl Container {
    pub fn name(self) -> &'static str {
        match self {
            Container::Zip => "zip",
            Container::Legacy => "legacy",
        }
    }
}

/// The legacy magic number 0x1950a86a20f9469cfc6c as pickle LONG1 bytes.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const LEGACY_PROTOCOL_VERSION: i64 = 1001;

/// Tells a PyTorch checkpoint from other files by its first bytes: the zip
/// local-header (or empty-archive) signature, or the legacy magic-number
/// pickle. A safetensors file starts with its header length, which never
/// matches either for any file below petabytes.
pub fn detect(bytes: &[u8]) -> Option<Container> {
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return Some(Container::Zip);
    }
    // PROTO p, optional FRAME (9 bytes), LONG1 10, magic.
    if bytes.len() >= 2 && bytes[0] == 0x80 && (2..=5).contains(&bytes[1]) {
        let rest = if bytes.get(2) == Some(&0x95) { bytes.get(11..)? } else { &bytes[2..] };
        if rest.len() >= 12 && rest[0] == 0x8a && rest[1] == 10 && rest[2..12] == LEGACY_MAGIC {
            return Some(Container::Legacy);
        }
    }
    None
}

/// A parsed checkpoint: the unpickled object graph plus the raw bytes of
/// every storage it refers to. Tensors are materialised on demand.
#[derive(Debug)]
pub struct TorchFile<'a> {
    pub container: Container,
    pub root: Value,
    pub heap: Heap,
    storages: HashMap<String, Cow<'a, [u8]>>, // key → raw bytes
    big_endian: bool,
}

/// Materialised tensors may total at most this many times the storage bytes
/// in the file (views may overlap, but a pickle naming one large tensor
/// thousands of times must not turn a small file into gigabytes).
pub const OUTPUT_FACTOR: usize = 4;

impl TorchFile<'_> {
    /// Bytes of all storages in the file.
    pub fn storage_bytes(&self) -> usize {
        self.storages.values().map(|b| b.len()).sum()
    }

    /// The contiguous tensor behind a tensor value.
    pub fn tensor(&self, v: &Value) -> Result<RawTensor, String> {
        let t = match v {
            Value::Tensor(i) => &self.heap.tensors[*i],
            other => return Err(format!("is a {}, not a tensor", self.heap.kind(other))),
        };
        let s = &self.heap.storages[t.storage];
        let bytes =
            self.storages.get(&s.key).ok_or_else(|| format!("its storage '{}' is missing from the file", s.key))?;
        materialise(t, s, bytes, self.big_endian)
    }
}

/// Type and largest recorded element count of each storage the main pickle
/// refers to, by key (one pass: a pickle may refer to a storage many times).
fn storage_dtypes(heap: &Heap) -> Result<HashMap<&str, (StorageDtype, u64)>, PthError> {
    let mut m: HashMap<&str, (StorageDtype, u64)> = HashMap::new();
    for s in &heap.storages {
        let e = m.entry(&s.key).or_insert((s.dtype, s.numel));
        if e.0 != s.dtype {
            return Err(PthError::Container(format!(
                "storage '{}' is referred to both as {} and as {}",
                s.key,
                e.0.torch_name(),
                s.dtype.torch_name()
            )));
        }
        e.1 = e.1.max(s.numel);
    }
    Ok(m)
}

// ---------------------------------------------------------------------------
// zip

/// Reads a zip-container checkpoint.
pub fn read_zip(bytes: &[u8]) -> Result<TorchFile<'_>, PthError> {
    let zerr = |what: &str, e: zip::result::ZipError| PthError::Zip(format!("{what}: {e}"));
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| zerr("not a readable zip archive (is the file truncated or corrupt?)", e))?;
    // `<top>/data.pkl`: the shortest such name, so a nested copy cannot shadow it.
    let pkl_name = zip
        .file_names()
        .filter(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
        .min_by_key(|n| n.len())
        .map(str::to_string)
        .ok_or_else(|| PthError::Zip("no data.pkl record: this zip archive is not a PyTorch checkpoint".into()))?;
    let top = pkl_name[..pkl_name.len() - "data.pkl".len()].to_string();
    // Decompressed-size budget: torch stores entries uncompressed, so a
    // legitimate file never expands; this bounds a zip bomb.
    let mut budget: u64 = (bytes.len() as u64).saturating_mul(16).saturating_add(1 << 20);
    let pkl = read_entry(&mut zip, &pkl_name, &mut budget)?;
    let byteorder = format!("{top}byteorder");
    let big_endian = if zip.index_for_name(&byteorder).is_some() {
        let b = read_entry(&mut zip, &byteorder, &mut budget)?;
        match std::str::from_utf8(&b).map(str::trim) {
            Ok("little") => false,
            Ok("big") => true,
            _ => return Err(PthError::Zip(format!("{byteorder} is neither 'little' nor 'big'"))),
        }
    } else {
        false
    };
    let (root, heap, _) = unpickle(&pkl, 0, true)?;
    let mut storages: HashMap<String, Cow<'_, [u8]>> = HashMap::new();
    for (key, (dtype, numel)) in storage_dtypes(&heap)? {
        let name = format!("{top}data/{key}");
        if zip.index_for_name(&name).is_none() {
            return Err(PthError::Zip(format!("storage record {name} is missing (is the file truncated?)")));
        }
        let data = read_entry(&mut zip, &name, &mut budget)?;
        // Every reference must fit its record: numel · element size bytes.
        let need = numel.checked_mul(dtype.size() as u64);
        if need.is_none_or(|n| n > data.len() as u64) {
            return Err(PthError::Container(format!(
                "storage record {name} holds {} bytes but the pickle says {numel} elements of {} bytes ({}): the \
                 storage is shorter than recorded",
                data.len(),
                dtype.size(),
                dtype.torch_name()
            )));
        }
        storages.insert(key.to_string(), Cow::Owned(data));
    }
    Ok(TorchFile { container: Container::Zip, root, heap, storages, big_endian })
}

/// Reads (and decompresses, CRC-checked) one entry, within the byte budget.
fn read_entry<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    budget: &mut u64,
) -> Result<Vec<u8>, PthError> {
    let f = zip.by_name(name).map_err(|e| PthError::Zip(format!("cannot open record {name}: {e}")))?;
    let mut out = Vec::with_capacity(f.size().min(*budget) as usize);
    let n = f
        .take(*budget + 1)
        .read_to_end(&mut out)
        .map_err(|e| PthError::Zip(format!("cannot read record {name} (truncated or corrupt file?): {e}")))?;
    if n as u64 > *budget {
        return Err(PthError::Zip(format!(
            "record {name} decompresses to more than 16× the file's size; refusing (a zip bomb?)"
        )));
    }
    *budget -= n as u64;
    Ok(out)
}

// ---------------------------------------------------------------------------
// legacy

/// Reads a legacy-container checkpoint.
pub fn read_legacy(bytes: &[u8]) -> Result<TorchFile<'_>, PthError> {
    if bytes.len() > 262 && &bytes[257..262] == b"ustar" {
        return Err(PthError::Container(
            "this is a tar archive (PyTorch < 0.4 'tar' checkpoints are not supported); load it in Python and \
             re-save it with torch.save"
                .into(),
        ));
    }
    // 1. magic number
    let (magic, _, pos) = unpickle(bytes, 0, false)?;
    if !matches!(&magic, Value::BigInt(b) if **b == LEGACY_MAGIC) {
        return Err(PthError::Container(
            "not a PyTorch checkpoint: the first pickle is not the legacy magic number".into(),
        ));
    }
    // 2. protocol version
    let (version, _, pos) = unpickle(bytes, pos, false)?;
    if version != Value::Int(LEGACY_PROTOCOL_VERSION) {
        return Err(PthError::Container(format!(
            "legacy protocol version {version:?}, expected {LEGACY_PROTOCOL_VERSION}"
        )));
    }
    // 3. sys info: {'protocol_version', 'little_endian', 'type_sizes'}; storages are
    // always written little-endian by torch, whatever the machine, so it is not needed.
    let (sys_info, sys_heap, pos) = unpickle(bytes, pos, false)?;
    if sys_heap.dict(&sys_info).is_none() {
        return Err(PthError::Container("legacy sys info is not a dict".into()));
    }
    // 4. the checkpoint itself
    let (root, heap, pos) = unpickle(bytes, pos, true)?;
    // 5. storage keys, then their bytes in that order
    let (keys_v, keys_heap, mut pos) = unpickle(bytes, pos, false)?;
    let keys = keys_heap
        .seq(&keys_v)
        .ok_or_else(|| PthError::Container("the legacy storage key list is not a list".into()))?;
    let dtypes = storage_dtypes(&heap)?;
    let mut storages: HashMap<String, Cow<'_, [u8]>> = HashMap::new();
    for k in keys {
        let key = match k {
            Value::Str(s) => s.to_string(),
            Value::Int(i) => i.to_string(),
            other => return Err(PthError::Container(format!("a legacy storage key is a {}", keys_heap.kind(other)))),
        };
        let (dtype, _) = *dtypes.get(key.as_str()).ok_or_else(|| {
            PthError::Container(format!("storage '{key}' is listed but no tensor refers to it (corrupt file?)"))
        })?;
        let truncated = |need: u64, at: usize| {
            PthError::Container(format!(
                "truncated: storage '{key}' needs {need} bytes at offset {at} but the file has {} left",
                bytes.len() - at
            ))
        };
        if bytes.len() - pos < 8 {
            return Err(truncated(8, pos));
        }
        let numel = u64::from_le_bytes(bytes[pos..pos + 8].try_into().expect("8 bytes"));
        pos += 8;
        let nbytes = numel.checked_mul(dtype.size() as u64).ok_or_else(|| truncated(u64::MAX, pos))?;
        if nbytes > (bytes.len() - pos) as u64 {
            return Err(truncated(nbytes, pos));
        }
        let data = &bytes[pos..pos + nbytes as usize];
        pos += nbytes as usize;
        if storages.insert(key.clone(), Cow::Borrowed(data)).is_some() {
            return Err(PthError::Container(format!("storage '{key}' is listed twice")));
        }
    }
    Ok(TorchFile { container: Container::Legacy, root, heap, storages, big_endian: false })
}
