//! Reader and writer of NumPy `.npy` files holding little-endian float32
//! arrays in C order — the format of SCAN's precomputed region features
//! (`<split>_ims.npy`, `[N, 36, 2048]`) and of `--save-sims` output.
//!
//! Format (NumPy's `format.py`): the magic `\x93NUMPY`, a major and a minor
//! version byte, the header length (u16 LE for 1.0, u32 LE for 2.0 and 3.0),
//! then the header — a Python dict literal such as
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (6, 36, 48), }` padded
//! with spaces and a final `\n` — then the raw data.
//!
//! On native targets [`NpyF32::open`] memory-maps the file, so an 8.5 GB
//! training split costs no RAM until its pages are touched. Parsing from bytes
//! ([`NpyF32::from_bytes`]) works on every target, wasm included.

use crate::error::{Result, SgrafError};

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Name used in messages for arrays that did not come from a file.
const IN_MEMORY: &str = "<in-memory .npy>";

/// The parsed header of a `.npy` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// `(major, minor)` format version: (1, 0), (2, 0) or (3, 0).
    pub version: (u8, u8),
    /// The dtype string, e.g. `<f4`.
    pub descr: String,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
    /// Byte offset of the first data byte from the start of the file.
    pub data_offset: usize,
}

impl NpyHeader {
    /// Number of elements (product of the shape; 1 for a 0-d array).
    pub fn n_elements(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
    }
}

fn npy_err(path: &str, msg: impl Into<String>) -> SgrafError {
    SgrafError::Npy { path: path.to_string(), msg: msg.into() }
}

/// Parses the magic, version and header dict of a `.npy` file and checks that
/// it holds a little-endian float32 array in C order. `path` only names the
/// source in error messages.
pub fn parse_header(bytes: &[u8], path: &str) -> Result<NpyHeader> {
    if bytes.len() < 6 || &bytes[..6] != MAGIC {
        return Err(npy_err(path, "not a .npy file (bad magic: the file must start with \\x93NUMPY)"));
    }
    if bytes.len() < 10 {
        return Err(npy_err(path, format!("truncated .npy header ({} bytes)", bytes.len())));
    }
    let version = (bytes[6], bytes[7]);
    let (header_len, header_start) = match version.0 {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(npy_err(path, format!("truncated .npy header ({} bytes)", bytes.len())));
            }
            let n = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (n as usize, 12usize)
        }
        major => {
            return Err(npy_err(
                path,
                format!("unsupported .npy format version {major}.{}; versions 1.0, 2.0 and 3.0 are read", version.1),
            ))
        }
    };
    let data_offset = header_start.checked_add(header_len).ok_or_else(|| npy_err(path, "bad .npy header length"))?;
    if bytes.len() < data_offset {
        return Err(npy_err(
            path,
            format!(
                "truncated .npy header: it declares {header_len} header bytes but the file has only {}",
                bytes.len() - header_start
            ),
        ));
    }
    let raw = &bytes[header_start..data_offset];
    // Version 1.0 and 2.0 headers are latin-1 (in practice ASCII); 3.0 is UTF-8.
    let text: String = if version.0 == 3 {
        std::str::from_utf8(raw).map_err(|_| npy_err(path, "bad .npy header: not valid UTF-8"))?.to_string()
    } else {
        raw.iter().map(|&b| b as char).collect()
    };
    let dict = HeaderParser::new(&text)
        .parse_dict()
        .map_err(|e| npy_err(path, format!("bad .npy header {:?}: {e}", text.trim_end())))?;

    let mut descr = None;
    let mut fortran_order = None;
    let mut shape = None;
    for (key, value) in dict {
        match (key.as_str(), value) {
            ("descr", PyValue::Str(s)) => descr = Some(s),
            ("descr", _) => {
                return Err(npy_err(path, "structured dtypes are not supported: expected a float32 array ('<f4')"))
            }
            ("fortran_order", PyValue::Bool(b)) => fortran_order = Some(b),
            ("shape", PyValue::Tuple(items)) => {
                let dims: Option<Vec<usize>> = items
                    .into_iter()
                    .map(|v| match v {
                        PyValue::Int(n) => Some(n),
                        _ => None,
                    })
                    .collect();
                shape = Some(dims.ok_or_else(|| npy_err(path, "bad .npy header: shape must be a tuple of integers"))?);
            }
            ("fortran_order", _) | ("shape", _) => {
                return Err(npy_err(path, format!("bad .npy header: malformed '{key}'")))
            }
            _ => {} // NumPy refuses extra keys; they carry no meaning for us.
        }
    }
    let descr = descr.ok_or_else(|| npy_err(path, "bad .npy header: no 'descr' key"))?;
    let fortran_order = fortran_order.ok_or_else(|| npy_err(path, "bad .npy header: no 'fortran_order' key"))?;
    let shape = shape.ok_or_else(|| npy_err(path, "bad .npy header: no 'shape' key"))?;

    check_descr(&descr, path)?;
    if fortran_order {
        return Err(npy_err(
            path,
            "array is stored in Fortran (column-major) order; only C order is supported \
             (re-save it with np.save(path, np.ascontiguousarray(arr)))",
        ));
    }
    Ok(NpyHeader { version, descr, fortran_order, shape, data_offset })
}

fn check_descr(descr: &str, path: &str) -> Result<()> {
    if descr == "<f4" {
        return Ok(());
    }
    let what = match descr {
        ">f4" => "big-endian float32".to_string(),
        "<f8" | ">f8" | "=f8" => "float64".to_string(),
        "<f2" | ">f2" => "float16".to_string(),
        d if d.get(1..).is_some_and(|t| t.starts_with('i')) => "signed integer".to_string(),
        d if d.get(1..).is_some_and(|t| t.starts_with('u')) => "unsigned integer".to_string(),
        d if d.get(1..).is_some_and(|t| t.starts_with('f')) => "floating point".to_string(),
        _ => "unknown dtype".to_string(),
    };
    Err(npy_err(
        path,
        format!(
            "dtype '{descr}' ({what}) is not supported: expected little-endian float32 '<f4' \
             (convert with np.save(path, arr.astype('<f4')))"
        ),
    ))
}

// ---------------------------------------------------------------------------
// A tiny parser for the Python literal of the header dict.

#[derive(Debug, Clone, PartialEq)]
enum PyValue {
    Str(String),
    Bool(bool),
    Int(usize),
    Tuple(Vec<PyValue>),
    List(Vec<PyValue>),
    None,
}

struct HeaderParser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl<'a> HeaderParser<'a> {
    fn new(text: &'a str) -> Self {
        HeaderParser { s: text.as_bytes(), text, pos: 0 }
    }

    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && (self.s[self.pos] as char).is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        match self.peek() {
            Some(x) if x == c => {
                self.pos += 1;
                Ok(())
            }
            Some(x) => Err(format!("expected '{}' at byte {}, found '{}'", c as char, self.pos, x as char)),
            None => Err(format!("expected '{}', found the end of the header", c as char)),
        }
    }

    fn parse_dict(&mut self) -> std::result::Result<Vec<(String, PyValue)>, String> {
        self.expect(b'{')?;
        let mut out = Vec::new();
        loop {
            if self.peek() == Some(b'}') {
                self.pos += 1;
                break;
            }
            let key = match self.parse_value()? {
                PyValue::Str(k) => k,
                other => return Err(format!("dict key must be a string, found {other:?}")),
            };
            self.expect(b':')?;
            let value = self.parse_value()?;
            out.push((key, value));
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                Some(c) => return Err(format!("expected ',' or '}}', found '{}'", c as char)),
                None => return Err("unterminated dict".into()),
            }
        }
        if self.peek().is_some() {
            return Err(format!("unexpected text after the dict at byte {}", self.pos));
        }
        Ok(out)
    }

    fn parse_seq(&mut self, close: u8) -> std::result::Result<Vec<PyValue>, String> {
        let mut items = Vec::new();
        loop {
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(items);
            }
            items.push(self.parse_value()?);
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(c) if c == close => {}
                Some(c) => return Err(format!("expected ',' or '{}', found '{}'", close as char, c as char)),
                None => return Err("unterminated tuple or list".into()),
            }
        }
    }

    fn parse_value(&mut self) -> std::result::Result<PyValue, String> {
        match self.peek() {
            Some(q @ (b'\'' | b'"')) => {
                let start = self.pos + 1;
                let end =
                    self.s[start..].iter().position(|&c| c == q).map(|i| start + i).ok_or("unterminated string")?;
                self.pos = end + 1;
                Ok(PyValue::Str(self.text[start..end].to_string()))
            }
            Some(b'(') => {
                self.pos += 1;
                Ok(PyValue::Tuple(self.parse_seq(b')')?))
            }
            Some(b'[') => {
                self.pos += 1;
                Ok(PyValue::List(self.parse_seq(b']')?))
            }
            Some(c) if c.is_ascii_digit() => {
                let start = self.pos;
                while self.pos < self.s.len() && self.s[self.pos].is_ascii_digit() {
                    self.pos += 1;
                }
                let n: usize = self.text[start..self.pos]
                    .parse()
                    .map_err(|_| format!("integer {} is too large", &self.text[start..self.pos]))?;
                // Python 2 wrote long integers with an `L` suffix: `(6L, 36L)`.
                if self.pos < self.s.len() && matches!(self.s[self.pos], b'L' | b'l') {
                    self.pos += 1;
                }
                Ok(PyValue::Int(n))
            }
            Some(_) => {
                for (word, value) in
                    [("True", PyValue::Bool(true)), ("False", PyValue::Bool(false)), ("None", PyValue::None)]
                {
                    if self.text[self.pos..].starts_with(word) {
                        self.pos += word.len();
                        return Ok(value);
                    }
                }
                let rest: String = self.text[self.pos..].chars().take(12).collect();
                Err(format!("unexpected value at byte {}: {rest:?}", self.pos))
            }
            None => Err("unexpected end of the header".into()),
        }
    }
}

// ---------------------------------------------------------------------------
// The array.

/// Where the float data lives.
enum Storage {
    /// Decoded copy (used when the bytes are not 4-aligned, or on big-endian hosts).
    Floats(Vec<f32>),
    /// The whole file's bytes in memory; the data starts at `offset`, which
    /// was checked to be 4-aligned in memory when the array was made.
    Bytes { bytes: Vec<u8>, offset: usize, len: usize },
    /// The file memory-mapped read-only; same layout as `Bytes`.
    #[cfg(not(target_arch = "wasm32"))]
    Mapped { map: memmap2::Mmap, offset: usize, len: usize },
}

/// A float32 array read from a `.npy` file: its shape and a `&[f32]` view of
/// its data in C (row-major) order.
pub struct NpyF32 {
    shape: Vec<usize>,
    storage: Storage,
    /// The file the array came from (or a placeholder), for error messages.
    source: String,
}

impl std::fmt::Debug for NpyF32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NpyF32")
            .field("source", &self.source)
            .field("shape", &self.shape)
            .field("memory_mapped", &self.is_memory_mapped())
            .finish()
    }
}

/// Decodes little-endian f32 values from bytes (any alignment, any host).
fn decode_le_f32(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// True when `bytes` can be viewed as `&[f32]` in place: 4-aligned and a
/// little-endian host.
fn can_view_in_place(bytes: &[u8]) -> bool {
    cfg!(target_endian = "little") && bytemuck::try_cast_slice::<u8, f32>(bytes).is_ok()
}

impl NpyF32 {
    /// Parses a whole `.npy` file held in memory (all targets). The data is
    /// used in place when it is 4-aligned, else copied.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        Self::from_bytes_named(bytes, IN_MEMORY)
    }

    /// As [`NpyF32::from_bytes`], naming the source `name` in error messages.
    pub fn from_bytes_named(bytes: Vec<u8>, name: &str) -> Result<Self> {
        let header = parse_header(&bytes, name)?;
        let len = data_len(&header, bytes.len(), name)?;
        let data = &bytes[header.data_offset..header.data_offset + 4 * len];
        let storage = if can_view_in_place(data) {
            Storage::Bytes { offset: header.data_offset, len, bytes }
        } else {
            Storage::Floats(decode_le_f32(data))
        };
        Ok(NpyF32 { shape: header.shape, storage, source: name.to_string() })
    }

    /// Makes an array from a shape and its data (C order).
    pub fn from_vec(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if n != Some(data.len()) {
            return Err(SgrafError::Input(format!(
                "array of shape {shape:?} needs {} values, got {}",
                n.map_or("too many".to_string(), |n| n.to_string()),
                data.len()
            )));
        }
        Ok(NpyF32 { shape, storage: Storage::Floats(data), source: "<in-memory array>".into() })
    }

    /// Opens a `.npy` file by memory-mapping it (never reading the whole file
    /// into RAM). When the data offset is not 4-aligned (only possible for
    /// hand-made files) the data is read into a copy instead.
    ///
    /// The file must not be modified while the array is alive.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|e| SgrafError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| SgrafError::io(path, e))?.len();
        if file_len < 16 {
            // Too small to map usefully (and mapping 0 bytes fails): read it.
            let bytes = std::fs::read(path).map_err(|e| SgrafError::io(path, e))?;
            return Self::from_bytes_named(bytes, &name);
        }
        // SAFETY: the map is read-only; the caller must not modify the file
        // while the array lives (documented above), as with any mmap reader.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| SgrafError::io(path, e))?;
        let header = parse_header(&map, &name)?;
        let len = data_len(&header, map.len(), &name)?;
        let offset = header.data_offset;
        let storage = if can_view_in_place(&map[offset..offset + 4 * len]) {
            Storage::Mapped { map, offset, len }
        } else {
            Storage::Floats(decode_le_f32(&map[offset..offset + 4 * len]))
        };
        Ok(NpyF32 { shape: header.shape, storage, source: name })
    }

    /// The array's shape, e.g. `[N, 36, 2048]`.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The data in C order.
    pub fn data(&self) -> &[f32] {
        match &self.storage {
            Storage::Floats(v) => v,
            // Alignment was checked when the storage was chosen, and neither
            // the Vec's heap block nor the map moves afterwards.
            Storage::Bytes { bytes, offset, len } => bytemuck::cast_slice(&bytes[*offset..*offset + 4 * *len]),
            #[cfg(not(target_arch = "wasm32"))]
            Storage::Mapped { map, offset, len } => bytemuck::cast_slice(&map[*offset..*offset + 4 * *len]),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// The file this array came from, or a placeholder for in-memory arrays.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the data is a view into a memory-mapped file.
    pub fn is_memory_mapped(&self) -> bool {
        #[cfg(not(target_arch = "wasm32"))]
        if let Storage::Mapped { .. } = self.storage {
            return true;
        }
        false
    }

    /// Errors (naming the file, the expected and the found rank) unless the
    /// array has `rank` dimensions.
    pub fn expect_rank(&self, rank: usize) -> Result<()> {
        if self.shape.len() != rank {
            return Err(npy_err(
                &self.source,
                format!(
                    "expected a {rank}-dimensional array, found {} dimensions (shape {:?})",
                    self.shape.len(),
                    self.shape
                ),
            ));
        }
        Ok(())
    }
}

/// Number of f32 elements the header declares, checked against the bytes present.
fn data_len(header: &NpyHeader, total: usize, path: &str) -> Result<usize> {
    let n = header
        .n_elements()
        .filter(|n| n.checked_mul(4).is_some())
        .ok_or_else(|| npy_err(path, format!("shape {:?} is too large", header.shape)))?;
    let have = total - header.data_offset;
    if have < 4 * n {
        return Err(npy_err(
            path,
            format!("truncated: shape {:?} needs {} data bytes but the file has {have}", header.shape, 4 * n),
        ));
    }
    Ok(n)
}

// ---------------------------------------------------------------------------
// Writing.

/// Encodes a float32 array as a version-1.0 `.npy` file, byte for byte as
/// `np.save` (NumPy 2.x) writes it: the header is padded with spaces and a
/// final `\n` so that the data starts at a multiple of 64 bytes. Works on
/// every target.
pub fn encode_f32(shape: &[usize], data: &[f32]) -> Result<Vec<u8>> {
    let header = header_bytes(shape, data.len())?;
    let mut out = Vec::with_capacity(header.len() + 4 * data.len());
    out.extend_from_slice(&header);
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

/// The magic, version, length and padded header dict for `shape`.
fn header_bytes(shape: &[usize], n_values: usize) -> Result<Vec<u8>> {
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if n != Some(n_values) {
        return Err(SgrafError::Input(format!(
            "cannot write .npy: shape {shape:?} needs {} values, got {n_values}",
            n.map_or("too many".to_string(), |n| n.to_string())
        )));
    }
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // NumPy leaves room for the first axis to grow to 21 digits...
    if let Some(first) = dims.first() {
        dict.push_str(&" ".repeat(21usize.saturating_sub(first.len())));
    }
    // ...then pads with 1 to 64 spaces and a '\n' so that
    // 6 magic + 2 version + 2 length + header ≡ 0 (mod 64).
    let pad = 64 - (10 + dict.len() + 1) % 64;
    dict.push_str(&" ".repeat(pad));
    dict.push('\n');
    let header_len = u16::try_from(dict.len())
        .map_err(|_| SgrafError::Input(format!("shape {shape:?} is too long for a .npy header")))?;
    let mut out = Vec::with_capacity(10 + dict.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    Ok(out)
}

/// Writes a float32 array to `path` as a `.npy` file (see [`encode_f32`]),
/// streaming the data (no second copy of a large matrix).
#[cfg(not(target_arch = "wasm32"))]
pub fn write_f32(path: impl AsRef<std::path::Path>, shape: &[usize], data: &[f32]) -> Result<()> {
    use std::io::Write;
    let path = path.as_ref();
    let header = header_bytes(shape, data.len())?;
    let file = std::fs::File::create(path).map_err(|e| SgrafError::io(path, e))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let io = |e| SgrafError::io(path, e);
    w.write_all(&header).map_err(io)?;
    if cfg!(target_endian = "little") {
        w.write_all(bytemuck::cast_slice(data)).map_err(io)?;
    } else {
        for v in data {
            w.write_all(&v.to_le_bytes()).map_err(io)?;
        }
    }
    w.flush().map_err(io)?;
    Ok(())
}

// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a `.npy` file by hand with the given version and header dict.
    fn handmade(version: u8, dict: &str, data: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[version, 0]);
        if version == 1 {
            out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(dict.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(dict.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn msg(e: SgrafError) -> String {
        e.to_string()
    }

    #[test]
    fn roundtrip_encode_parse() {
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        let bytes = encode_f32(&[2, 3, 4], &data).unwrap();
        let header = parse_header(&bytes, "x").unwrap();
        assert_eq!(header.data_offset % 64, 0, "data offset {} not 64-aligned", header.data_offset);
        assert_eq!(header.version, (1, 0));
        let arr = NpyF32::from_bytes(bytes).unwrap();
        assert_eq!(arr.shape(), &[2, 3, 4]);
        assert_eq!(arr.data(), &data[..]);
        assert_eq!(arr.len(), 24);
        arr.expect_rank(3).unwrap();
    }

    #[test]
    fn header_bytes_match_numpy() {
        // Headers written by np.save (NumPy 2.4) for float32 arrays.
        let cases: [(&[usize], &str); 4] = [
            (&[2, 3], "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"),
            (&[5], "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }"),
            (&[], "{'descr': '<f4', 'fortran_order': False, 'shape': (), }"),
            (&[1000, 36, 2048], "{'descr': '<f4', 'fortran_order': False, 'shape': (1000, 36, 2048), }"),
        ];
        for (shape, dict) in cases {
            let n: usize = shape.iter().product();
            let bytes = encode_f32(shape, &vec![0.0; n]).unwrap();
            assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
            assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 118, "header length for {shape:?}");
            let text = std::str::from_utf8(&bytes[10..128]).unwrap();
            assert_eq!(text, format!("{dict:<117}\n"), "header of {shape:?}");
            assert_eq!(bytes.len(), 128 + 4 * n);
        }
        let arr = NpyF32::from_bytes(encode_f32(&[], &[7.0]).unwrap()).unwrap();
        assert_eq!(arr.shape(), &[] as &[usize]);
        assert_eq!(arr.data(), &[7.0]);
    }

    #[test]
    fn versions_2_and_3_and_python2_longs() {
        let data = [1.0f32, -2.0, 3.5, 4.25];
        for version in [1u8, 2, 3] {
            let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 2L), }   \n";
            let arr = NpyF32::from_bytes(handmade(version, dict, &f32_bytes(&data))).unwrap();
            assert_eq!(arr.shape(), &[2, 2], "version {version}");
            assert_eq!(arr.data(), &data, "version {version}");
        }
        // Double quotes and no trailing comma are accepted too.
        let dict = "{\"descr\": \"<f4\", \"shape\": (4,), \"fortran_order\": False}\n";
        let arr = NpyF32::from_bytes(handmade(1, dict, &f32_bytes(&data))).unwrap();
        assert_eq!(arr.shape(), &[4]);
    }

    #[test]
    fn unaligned_data_is_copied() {
        // Header of odd length: data offset 10 + 63 = 73, not 4-aligned.
        let dict = format!("{:<62}\n", "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }");
        let bytes = handmade(1, &dict, &f32_bytes(&[1.5, 2.5, 3.5]));
        assert_eq!(parse_header(&bytes, "x").unwrap().data_offset, 73);
        let arr = NpyF32::from_bytes(bytes).unwrap();
        assert_eq!(arr.data(), &[1.5, 2.5, 3.5]);
    }

    #[test]
    fn refuses_other_dtypes_and_fortran_order() {
        for (descr, word) in [("<f8", "float64"), ("<i8", "integer"), (">f4", "big-endian"), ("|u1", "unsigned")] {
            let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (2,), }}\n");
            let e = msg(NpyF32::from_bytes_named(handmade(1, &dict, &[0; 16]), "feats.npy").unwrap_err());
            assert!(
                e.contains(descr) && e.contains(word) && e.contains("feats.npy") && e.contains("<f4"),
                "message for {descr}: {e}"
            );
        }
        let dict = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }\n";
        let e = msg(NpyF32::from_bytes(handmade(1, dict, &[0; 16])).unwrap_err());
        assert!(e.contains("Fortran"), "{e}");
    }

    #[test]
    fn errors_bad_magic_header_truncation_rank() {
        let e = msg(NpyF32::from_bytes_named(b"PK\x03\x04 not npy".to_vec(), "a.npy").unwrap_err());
        assert!(e.contains("a.npy") && e.contains("magic"), "{e}");

        let e = msg(NpyF32::from_bytes(handmade(1, "{'descr': '<f4', 'shape': (2,) \n", &[0; 8])).unwrap_err());
        assert!(e.contains("bad .npy header"), "{e}");

        let e = msg(NpyF32::from_bytes(handmade(1, "{'descr': '<f4', 'shape': (2,), }\n", &[0; 8])).unwrap_err());
        assert!(e.contains("fortran_order"), "{e}");

        // Header length pointing past the end of the file.
        let mut bytes = encode_f32(&[2], &[1.0, 2.0]).unwrap();
        bytes.truncate(40);
        let e = msg(NpyF32::from_bytes(bytes).unwrap_err());
        assert!(e.contains("truncated"), "{e}");

        // Data shorter than the shape needs.
        let mut bytes = encode_f32(&[2, 3], &[0.0; 6]).unwrap();
        bytes.truncate(bytes.len() - 3);
        let e = msg(NpyF32::from_bytes_named(bytes, "t.npy").unwrap_err());
        assert!(e.contains("truncated") && e.contains("24") && e.contains("21") && e.contains("t.npy"), "{e}");

        let arr = NpyF32::from_bytes(encode_f32(&[2, 3], &[0.0; 6]).unwrap()).unwrap();
        let e = msg(arr.expect_rank(3).unwrap_err());
        assert!(e.contains("3-dimensional") && e.contains("found 2"), "{e}");

        let e = msg(NpyF32::from_bytes(b"\x93NUMPY\x04\x00\x00\x00".to_vec()).unwrap_err());
        assert!(e.contains("version 4.0"), "{e}");
    }

    #[test]
    fn from_vec_checks_length() {
        assert!(NpyF32::from_vec(vec![2, 2], vec![0.0; 4]).is_ok());
        let e = msg(NpyF32::from_vec(vec![2, 2], vec![0.0; 5]).unwrap_err());
        assert!(e.contains("needs 4") && e.contains("got 5"), "{e}");
        assert!(encode_f32(&[3], &[0.0; 2]).is_err());
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn write_then_open_memory_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sims.npy");
        let data: Vec<f32> = (0..5 * 36 * 8).map(|i| (i as f32).sin()).collect();
        write_f32(&path, &[5, 36, 8], &data).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), encode_f32(&[5, 36, 8], &data).unwrap());
        let arr = NpyF32::open(&path).unwrap();
        assert!(arr.is_memory_mapped(), "expected a memory-mapped array: {arr:?}");
        assert_eq!(arr.shape(), &[5, 36, 8]);
        assert_eq!(arr.data(), &data[..]);
        assert_eq!(arr.source(), path.display().to_string());
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn open_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing_ims.npy");
        let e = msg(NpyF32::open(&missing).unwrap_err());
        assert!(e.contains("missing_ims.npy"), "{e}");

        let empty = dir.path().join("empty.npy");
        std::fs::write(&empty, b"").unwrap();
        let e = msg(NpyF32::open(&empty).unwrap_err());
        assert!(e.contains("empty.npy") && e.contains("magic"), "{e}");

        let short = dir.path().join("short.npy");
        let mut bytes = encode_f32(&[4, 4], &[1.0; 16]).unwrap();
        bytes.truncate(bytes.len() - 4);
        std::fs::write(&short, bytes).unwrap();
        let e = msg(NpyF32::open(&short).unwrap_err());
        assert!(e.contains("short.npy") && e.contains("truncated"), "{e}");
    }
}
