//! Storages and tensor views as a checkpoint describes them, and their
//! materialisation into contiguous [`RawTensor`]s.
//!
//! A pickled tensor is `_rebuild_tensor_v2(storage, offset, size, stride, …)`:
//! a view into a flat typed storage (its raw bytes live in the container).
//! Tensors of a cuDNN-flattened GRU, for example, are views at different
//! offsets into one shared storage. Every index the view can reach is
//! checked against the storage before any element is read.

use crate::model::params::RawTensor;

/// Element type of a typed storage (`torch.FloatStorage`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StorageDtype {
    F32,
    F64,
    I64,
    F16,
    BF16,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl StorageDtype {
    /// The storage type for a `torch.<name>` global, if it is one.
    pub fn from_torch_name(name: &str) -> Option<StorageDtype> {
        Some(match name {
            "FloatStorage" => StorageDtype::F32,
            "DoubleStorage" => StorageDtype::F64,
            "LongStorage" => StorageDtype::I64,
            "HalfStorage" => StorageDtype::F16,
            "BFloat16Storage" => StorageDtype::BF16,
            "IntStorage" => StorageDtype::I32,
            "ShortStorage" => StorageDtype::I16,
            "CharStorage" => StorageDtype::I8,
            "ByteStorage" => StorageDtype::U8,
            "BoolStorage" => StorageDtype::Bool,
            _ => return None,
        })
    }

    /// `torch.FloatStorage`, … as written in the pickle.
    pub fn torch_name(self) -> &'static str {
        match self {
            StorageDtype::F32 => "torch.FloatStorage",
            StorageDtype::F64 => "torch.DoubleStorage",
            StorageDtype::I64 => "torch.LongStorage",
            StorageDtype::F16 => "torch.HalfStorage",
            StorageDtype::BF16 => "torch.BFloat16Storage",
            StorageDtype::I32 => "torch.IntStorage",
            StorageDtype::I16 => "torch.ShortStorage",
            StorageDtype::I8 => "torch.CharStorage",
            StorageDtype::U8 => "torch.ByteStorage",
            StorageDtype::Bool => "torch.BoolStorage",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            StorageDtype::F64 | StorageDtype::I64 => 8,
            StorageDtype::F32 | StorageDtype::I32 => 4,
            StorageDtype::F16 | StorageDtype::BF16 | StorageDtype::I16 => 2,
            StorageDtype::I8 | StorageDtype::U8 | StorageDtype::Bool => 1,
        }
    }
}

/// One persistent id `('storage', type, key, location, numel[, view])`.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageRef {
    /// Record name: `data/<key>` in a zip, an entry of the key list in a legacy file.
    pub key: String,
    pub dtype: StorageDtype,
    /// Elements of the whole storage, as recorded in the pickle.
    pub numel: u64,
    /// Legacy storage views: `(offset, size)` in elements inside the root storage.
    pub view: Option<(u64, u64)>,
}

/// One `_rebuild_tensor[_v2]` call: a strided view into a storage.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    pub storage: usize,   // index into Heap::storages
    pub offset: u64,      // storage_offset, in elements
    pub shape: Vec<u64>,  // size
    pub stride: Vec<u64>, // stride, in elements, one per dimension
}

/// Copies the elements of view `t` out of `bytes` (the raw bytes of its
/// storage) into a contiguous row-major tensor. float64 becomes float32;
/// int64 stays int64; other dtypes are refused. `big_endian` byte-swaps.
pub fn materialise(t: &TensorRef, s: &StorageRef, bytes: &[u8], big_endian: bool) -> Result<RawTensor, String> {
    match s.dtype {
        StorageDtype::F32 | StorageDtype::F64 | StorageDtype::I64 => {}
        other => {
            return Err(format!(
                "its storage is {}; only float32 (FloatStorage), float64 (DoubleStorage, converted to float32) and \
                 int64 (LongStorage) tensors are supported — convert the checkpoint with .float() first",
                other.torch_name()
            ))
        }
    }
    let esize = s.dtype.size();
    let whole = (bytes.len() / esize) as u64; // elements the storage's bytes hold
                                              // A legacy storage view is a window [base, base + avail) of the root storage.
    let (base, avail) = match s.view {
        None => (0u64, whole),
        Some((off, size)) => match off.checked_add(size) {
            Some(end) if end <= whole => (off, size),
            _ => {
                return Err(format!(
                    "storage view (offset {off}, size {size}) reaches past its root storage '{}' of {whole} elements",
                    s.key
                ))
            }
        },
    };
    let to_usize = |x: u64, what: &str| {
        usize::try_from(x).map_err(|_| format!("{what} {x} does not fit in this machine's address space"))
    };
    let shape: Vec<usize> = t.shape.iter().map(|&d| to_usize(d, "dimension")).collect::<Result<_, _>>()?;
    let numel = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} has more elements than fit in memory (element count overflows)"))?;
    if t.stride.len() != shape.len() {
        return Err(format!(
            "shape {shape:?} has {} dimensions but stride {:?} has {}",
            shape.len(),
            t.stride,
            t.stride.len()
        ));
    }
    if numel == 0 {
        return Ok(match s.dtype {
            StorageDtype::I64 => RawTensor::I64 { shape, data: Vec::new() },
            _ => RawTensor::F32 { shape, data: Vec::new() },
        });
    }
    // Expanded (stride-0) views could ask for more elements than the file holds; a
    // state dict never has them, and refusing them bounds the memory we allocate.
    if numel as u64 > avail {
        return Err(format!(
            "shape {shape:?} needs {numel} elements but its storage '{}' holds only {avail}{}",
            s.key,
            if bytes.len() as u64 / esize as u64 == s.numel { "" } else { " (the file is truncated or inconsistent)" }
        ));
    }
    // Last element the view touches: offset + Σ (size_i − 1)·stride_i.
    let mut last = t.offset;
    for (&d, &st) in t.shape.iter().zip(&t.stride) {
        last = (d - 1).checked_mul(st).and_then(|x| x.checked_add(last)).ok_or_else(|| {
            format!("view (offset {}, shape {shape:?}, stride {:?}) overflows its index range", t.offset, t.stride)
        })?;
    }
    if last >= avail {
        return Err(format!(
            "view (offset {}, shape {shape:?}, stride {:?}) reaches element {last} but its storage '{}' holds only {avail} \
             elements: the storage is shorter than the tensor needs",
            t.offset, t.stride, s.key
        ));
    }
    // All element indices are now < avail ≤ bytes.len()/esize: no read below can fail.
    let start = (base + t.offset) as usize; // first element, relative to the storage bytes
    let stride: Vec<usize> = t.stride.iter().map(|&x| x as usize).collect(); // each ≤ last < avail
    let elem = |i: usize| -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..esize].copy_from_slice(&bytes[i * esize..(i + 1) * esize]);
        if big_endian {
            b[..esize].reverse();
        }
        b
    };
    Ok(match s.dtype {
        StorageDtype::F32 => {
            let mut data = Vec::with_capacity(numel);
            for_each_index(&shape, &stride, start, |i| {
                data.push(f32::from_le_bytes(elem(i)[..4].try_into().expect("4")))
            });
            RawTensor::F32 { shape, data }
        }
        StorageDtype::F64 => {
            let mut data = Vec::with_capacity(numel);
            for_each_index(&shape, &stride, start, |i| data.push(f64::from_le_bytes(elem(i)) as f32));
            RawTensor::F32 { shape, data }
        }
        StorageDtype::I64 => {
            let mut data = Vec::with_capacity(numel);
            for_each_index(&shape, &stride, start, |i| data.push(i64::from_le_bytes(elem(i))));
            RawTensor::I64 { shape, data }
        }
        _ => unreachable!("dtype checked above"),
    })
}

/// Calls `f` with the storage element index of every element of a strided
/// view, in row-major order. Precondition: every index fits (checked by the caller).
fn for_each_index(shape: &[usize], stride: &[usize], start: usize, mut f: impl FnMut(usize)) {
    let rank = shape.len();
    if rank == 0 {
        f(start);
        return;
    }
    let (inner, inner_stride) = (shape[rank - 1], stride[rank - 1]);
    let mut pos = vec![0usize; rank - 1]; // odometer over the outer dimensions
    loop {
        let row: usize = start + pos.iter().zip(stride).map(|(p, s)| p * s).sum::<usize>();
        for j in 0..inner {
            f(row + j * inner_stride);
        }
        // advance the odometer
        let mut d = rank - 1;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            pos[d] += 1;
            if pos[d] < shape[d] {
                break;
            }
            pos[d] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn storage(dtype: StorageDtype, numel: u64) -> StorageRef {
        StorageRef { key: "0".into(), dtype, numel, view: None }
    }

    #[test]
    fn transposed_view_with_offset() {
        // storage [pad, 0 1 2 / 3 4 5] as 2x3 at offset 1; view its transpose [3, 2].
        let bytes = f32_bytes(&[9.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let t = TensorRef { storage: 0, offset: 1, shape: vec![3, 2], stride: vec![1, 3] };
        let got = materialise(&t, &storage(StorageDtype::F32, 7), &bytes, false).unwrap();
        assert_eq!(got, RawTensor::F32 { shape: vec![3, 2], data: vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0] });
    }

    #[test]
    fn scalar_and_empty() {
        let bytes = 7i64.to_le_bytes().to_vec();
        let t = TensorRef { storage: 0, offset: 0, shape: vec![], stride: vec![] };
        assert_eq!(
            materialise(&t, &storage(StorageDtype::I64, 1), &bytes, false).unwrap(),
            RawTensor::I64 { shape: vec![], data: vec![7] }
        );
        let t = TensorRef { storage: 0, offset: 0, shape: vec![0, 5], stride: vec![5, 1] };
        assert_eq!(
            materialise(&t, &storage(StorageDtype::I64, 1), &bytes, false).unwrap(),
            RawTensor::I64 { shape: vec![0, 5], data: vec![] }
        );
    }

    #[test]
    fn out_of_bounds_and_overflow_are_errors() {
        let bytes = f32_bytes(&[0.0; 6]);
        let t = TensorRef { storage: 0, offset: 1, shape: vec![2, 3], stride: vec![3, 1] };
        let e = materialise(&t, &storage(StorageDtype::F32, 6), &bytes, false).unwrap_err();
        assert!(e.contains("shorter than the tensor needs"), "{e}");
        let t = TensorRef { storage: 0, offset: 0, shape: vec![u64::MAX / 2, 4], stride: vec![4, 1] };
        let e = materialise(&t, &storage(StorageDtype::F32, 6), &bytes, false).unwrap_err();
        assert!(e.contains("overflow") || e.contains("address space"), "{e}");
        let t = TensorRef { storage: 0, offset: 0, shape: vec![1 << 40], stride: vec![0] };
        let e = materialise(&t, &storage(StorageDtype::F32, 6), &bytes, false).unwrap_err();
        assert!(e.contains("holds only"), "{e}");
        let t = TensorRef { storage: 0, offset: u64::MAX, shape: vec![2], stride: vec![1] };
        assert!(materialise(&t, &storage(StorageDtype::F32, 6), &bytes, false).is_err());
    }

    #[test]
    fn float64_converts_and_half_is_refused() {
        let bytes: Vec<u8> = [1.5f64, -2.25].iter().flat_map(|x| x.to_le_bytes()).collect();
        let t = TensorRef { storage: 0, offset: 0, shape: vec![2], stride: vec![1] };
        assert_eq!(
            materialise(&t, &storage(StorageDtype::F64, 2), &bytes, false).unwrap(),
            RawTensor::F32 { shape: vec![2], data: vec![1.5, -2.25] }
        );
        let e = materialise(&t, &storage(StorageDtype::F16, 8), &bytes, false).unwrap_err();
        assert!(e.contains("torch.HalfStorage"), "{e}");
    }

    #[test]
    fn big_endian_swaps() {
        let bytes = 1.0f32.to_be_bytes().to_vec();
        let t = TensorRef { storage: 0, offset: 0, shape: vec![1], stride: vec![1] };
        assert_eq!(
            materialise(&t, &storage(StorageDtype::F32, 1), &bytes, true).unwrap(),
            RawTensor::F32 { shape: vec![1], data: vec![1.0] }
        );
    }
}
