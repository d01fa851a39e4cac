//! One split of SCAN "precomp" data (spec §2.1–2.2): region features
//! `<dir>/<split>_ims.npy` (`[N, 36, D]` float32) and captions
//! `<dir>/<split>_caps.txt` (one per line).
//!
//! Caption `k` belongs to image `k / im_div`; `im_div` is 5 when the number of
//! caption lines differs from the number of image rows (the SCAN layout:
//! captions `5i … 5i+4` describe image `i`), else 1.

use crate::error::{Result, SgrafError};

use super::npy::NpyF32;

/// Regions per image, fixed by the bottom-up-attention features (and by the
/// model's visual self-attention).
pub const N_REGIONS: usize = 36;

/// Captions per image in the SCAN layout.
pub const CAPTIONS_PER_IMAGE: usize = 5;

/// A split: image features and captions.
#[derive(Debug)]
pub struct Split {
    /// Region features, `[n_images, n_regions, img_dim]`.
    pub images: NpyF32,
    /// Captions in file order, surrounding whitespace stripped, `[n_captions]`.
    pub captions: Vec<String>,
    pub n_images: usize,
    /// Always [`N_REGIONS`] (36).
    pub n_regions: usize,
    /// Feature size `D` (2048 for the SCAN features).
    pub img_dim: usize,
    /// Captions per image index step: 5, or 1 when images and captions pair 1:1.
    pub im_div: usize,
}

impl Split {
    /// Loads `<dir>/<split>_ims.npy` (memory-mapped) and `<dir>/<split>_caps.txt`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(dir: impl AsRef<std::path::Path>, split: &str) -> Result<Self> {
        let dir = dir.as_ref();
        let ims = dir.join(format!("{split}_ims.npy"));
        let caps = dir.join(format!("{split}_caps.txt"));
        let images = NpyF32::open(&ims)?;
        let bytes = std::fs::read(&caps).map_err(|e| SgrafError::io(&caps, e))?;
        let captions = parse_captions(&bytes, &caps.display().to_string())?;
        Self::with_source(images, captions, &caps.display().to_string())
    }

    /// Makes a split from features `[N, 36, D]` and caption lines (all targets).
    pub fn from_parts(images: NpyF32, captions: Vec<String>) -> Result<Self> {
        Self::with_source(images, captions, "<captions>")
    }

    fn with_source(images: NpyF32, captions: Vec<String>, caps_source: &str) -> Result<Self> {
        images.expect_rank(3)?;
        let (n_images, n_regions, img_dim) = (images.shape()[0], images.shape()[1], images.shape()[2]);
        let npy_err = |msg: String| SgrafError::Npy { path: images.source().to_string(), msg };
        if n_regions != N_REGIONS {
            return Err(npy_err(format!(
                "expected {N_REGIONS} regions per image (shape [N, {N_REGIONS}, D]), found {n_regions} (shape {:?})",
                images.shape()
            )));
        }
        if n_images == 0 || img_dim == 0 {
            return Err(npy_err(format!("no image features (shape {:?})", images.shape())));
        }
        let caps_err = |msg: String| SgrafError::Captions { path: caps_source.to_string(), msg };
        let n_captions = captions.len();
        if n_captions == 0 {
            return Err(caps_err("no captions".into()));
        }
        if let Some(k) = captions.iter().position(|c| c.trim().is_empty()) {
            return Err(caps_err(format!("line {}: empty caption", k + 1)));
        }
        let im_div = if n_captions == n_images { 1 } else { CAPTIONS_PER_IMAGE };
        if (n_captions - 1) / im_div >= n_images {
            return Err(caps_err(format!(
                "{n_captions} captions but only {n_images} images: caption line {} would belong to image {} \
                 (captions 5i..5i+4 describe image i, so at most {} lines fit)",
                n_captions,
                (n_captions - 1) / im_div,
                im_div * n_images
            )));
        }
        Ok(Split { images, captions, n_images, n_regions, img_dim, im_div })
    }

    /// Number of captions (the dataset length of the official loader).
    pub fn n_captions(&self) -> usize {
        self.captions.len()
    }

    /// The image described by caption `k`: `k / im_div`.
    pub fn image_of_caption(&self, k: usize) -> usize {
        k / self.im_div
    }

    /// Region features of image `i`, `[36, D]` row-major.
    pub fn image(&self, i: usize) -> &[f32] {
        let per_image = self.n_regions * self.img_dim;
        &self.images.data()[i * per_image..(i + 1) * per_image]
    }

    /// Refuses NaN or infinite features, naming the first bad image, region
    /// and feature index. Scans the whole array (touches every page of a
    /// memory-mapped file).
    pub fn check_finite(&self) -> Result<()> {
        let per_image = self.n_regions * self.img_dim;
        let data = self.images.data();
        let bad_image = first_non_finite_image(data, per_image);
        if let Some(i) = bad_image {
            let img = self.image(i);
            let j = img.iter().position(|v| !v.is_finite()).unwrap_or(0);
            return Err(SgrafError::Input(format!(
                "{}: image {i} has a non-finite feature ({} at region {}, feature {}); \
                 region features must be finite",
                self.images.source(),
                img[j],
                j / self.img_dim,
                j % self.img_dim
            )));
        }
        Ok(())
    }
}

/// Index of the first image (chunk of `per_image` values) holding a NaN or ±inf.
#[cfg(not(target_arch = "wasm32"))]
fn first_non_finite_image(data: &[f32], per_image: usize) -> Option<usize> {
    use rayon::prelude::*;
    data.par_chunks(per_image).position_first(|img| img.iter().any(|v| !v.is_finite()))
}

#[cfg(target_arch = "wasm32")]
fn first_non_finite_image(data: &[f32], per_image: usize) -> Option<usize> {
    data.chunks(per_image).position(|img| img.iter().any(|v| !v.is_finite()))
}

/// Splits a caption file into captions: one per line (`\n` or `\r\n`),
/// surrounding whitespace stripped as the official `line.strip()` does. An
/// empty line or invalid UTF-8 is an error naming `source` and the line
/// number (1-based). A final newline does not start an extra line.
pub fn parse_captions(bytes: &[u8], source: &str) -> Result<Vec<String>> {
    let err = |msg: String| SgrafError::Captions { path: source.to_string(), msg };
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if body.is_empty() {
        return Err(err("no captions (the file is empty)".into()));
    }
    let mut captions = Vec::new();
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let text = std::str::from_utf8(line).map_err(|e| {
            err(format!("line {}: not valid UTF-8 (invalid byte at column {})", i + 1, e.valid_up_to() + 1))
        })?;
        let text = text.trim();
        if text.is_empty() {
            return Err(err(format!("line {}: empty caption", i + 1)));
        }
        captions.push(text.to_string());
    }
    Ok(captions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::npy::encode_f32;

    fn features(n: usize, regions: usize, dim: usize) -> NpyF32 {
        let data: Vec<f32> = (0..n * regions * dim).map(|i| i as f32 * 0.01).collect();
        NpyF32::from_vec(vec![n, regions, dim], data).unwrap()
    }

    fn caps(n: usize) -> Vec<String> {
        (0..n).map(|k| format!("caption number {k}")).collect()
    }

    #[test]
    fn five_captions_per_image() {
        let s = Split::from_parts(features(3, 36, 4), caps(15)).unwrap();
        assert_eq!((s.n_images, s.n_regions, s.img_dim, s.im_div), (3, 36, 4, 5));
        assert_eq!(s.n_captions(), 15);
        assert_eq!(s.image_of_caption(0), 0);
        assert_eq!(s.image_of_caption(4), 0);
        assert_eq!(s.image_of_caption(5), 1);
        assert_eq!(s.image_of_caption(14), 2);
        assert_eq!(s.image(1).len(), 36 * 4);
        assert_eq!(s.image(1)[0], (36 * 4) as f32 * 0.01);
        s.check_finite().unwrap();
    }

    #[test]
    fn one_caption_per_image() {
        let s = Split::from_parts(features(6, 36, 2), caps(6)).unwrap();
        assert_eq!(s.im_div, 1);
        assert_eq!(s.image_of_caption(5), 5);
    }

    #[test]
    fn fewer_captions_are_allowed_more_are_not() {
        // The official loader only needs k // 5 < N.
        let s = Split::from_parts(features(3, 36, 2), caps(11)).unwrap();
        assert_eq!(s.image_of_caption(10), 2);
        let e = Split::from_parts(features(3, 36, 2), caps(16)).unwrap_err().to_string();
        assert!(e.contains("16 captions") && e.contains("3 images") && e.contains("15"), "{e}");
    }

    #[test]
    fn shape_errors_name_expected_and_found() {
        let e = Split::from_parts(features(2, 10, 4), caps(10)).unwrap_err().to_string();
        assert!(e.contains("expected 36 regions") && e.contains("found 10"), "{e}");
        let flat = NpyF32::from_vec(vec![2, 36 * 4], vec![0.0; 2 * 36 * 4]).unwrap();
        let e = Split::from_parts(flat, caps(10)).unwrap_err().to_string();
        assert!(e.contains("3-dimensional") && e.contains("found 2"), "{e}");
        let e = Split::from_parts(features(2, 36, 4), vec![]).unwrap_err().to_string();
        assert!(e.contains("no captions"), "{e}");
        let mut c = caps(10);
        c[3] = "  ".into();
        let e = Split::from_parts(features(2, 36, 4), c).unwrap_err().to_string();
        assert!(e.contains("line 4"), "{e}");
    }

    #[test]
    fn non_finite_features_are_named() {
        let mut data = vec![0.5f32; 3 * 36 * 4];
        data[2 * 36 * 4 + 5 * 4 + 3] = f32::NAN;
        let s = Split::from_parts(NpyF32::from_vec(vec![3, 36, 4], data).unwrap(), caps(15)).unwrap();
        let e = s.check_finite().unwrap_err().to_string();
        assert!(e.contains("image 2") && e.contains("region 5") && e.contains("feature 3") && e.contains("NaN"), "{e}");

        let mut data = vec![0.5f32; 2 * 36 * 4];
        data[7] = f32::INFINITY;
        let s = Split::from_parts(NpyF32::from_vec(vec![2, 36, 4], data).unwrap(), caps(10)).unwrap();
        let e = s.check_finite().unwrap_err().to_string();
        assert!(e.contains("image 0") && e.contains("inf"), "{e}");
    }

    #[test]
    fn caption_file_parsing() {
        let c = parse_captions(b"A dog runs.  \r\n  Two cats\nlast line", "caps.txt").unwrap();
        assert_eq!(c, vec!["A dog runs.", "Two cats", "last line"]);
        assert_eq!(parse_captions(b"one\ntwo\n", "caps.txt").unwrap().len(), 2);

        let e = parse_captions(b"one\n\nthree\n", "caps.txt").unwrap_err().to_string();
        assert!(e.contains("caps.txt") && e.contains("line 2") && e.contains("empty"), "{e}");
        let e = parse_captions(b"one\ntwo\n\n", "caps.txt").unwrap_err().to_string();
        assert!(e.contains("line 3"), "{e}");
        let e = parse_captions(b"one\ntw\xffo\n", "caps.txt").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("UTF-8") && e.contains("column 3"), "{e}");
        let e = parse_captions(b"", "caps.txt").unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn load_from_directory() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<f32> = (0..2 * 36 * 3).map(|i| i as f32).collect();
        std::fs::write(dir.path().join("test_ims.npy"), encode_f32(&[2, 36, 3], &data).unwrap()).unwrap();
        let lines: String = (0..10).map(|k| format!("caption {k}\n")).collect();
        std::fs::write(dir.path().join("test_caps.txt"), lines).unwrap();
        let s = Split::load(dir.path(), "test").unwrap();
        assert_eq!((s.n_images, s.n_captions(), s.im_div, s.img_dim), (2, 10, 5, 3));
        assert!(s.images.is_memory_mapped());
        assert_eq!(s.image(1)[0], (36 * 3) as f32);

        let e = Split::load(dir.path(), "dev").unwrap_err().to_string();
        assert!(e.contains("dev_ims.npy"), "{e}");
        std::fs::write(dir.path().join("bad_ims.npy"), encode_f32(&[2, 36, 3], &data).unwrap()).unwrap();
        std::fs::write(dir.path().join("bad_caps.txt"), "a\n\nb\n").unwrap();
        let e = Split::load(dir.path(), "bad").unwrap_err().to_string();
        assert!(e.contains("bad_caps.txt") && e.contains("line 2"), "{e}");
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn golden_cli_split_loads() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/golden/small_float32_cli/SGR/data");
        assert!(dir.is_dir(), "golden data missing at {} (../shared beside the repo)", dir.display());
        let s = Split::load(&dir, "test").unwrap();
        assert_eq!((s.n_images, s.n_regions, s.img_dim, s.n_captions(), s.im_div), (6, 36, 48, 6, 1));
        s.check_finite().unwrap();
    }
}
