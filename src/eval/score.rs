//! All-pairs scoring of a split: every image and every caption encoded once,
//! then the pairs scored in tiles of images × captions sized to stay within
//! the device's per-binding limit (spec §10.1–10.2, batched instead of
//! caption by caption).

use crate::backend::Model;
use crate::data::{Split, Vocab};
use crate::error::{Result, SgrafError};
use crate::model::params::N_REGIONS;

/// Longest caption accepted, in tokens including `<start>`/`<end>`.
pub const MAX_TOKENS: usize = 256;

/// Turns caption lines into token ids, refusing captions too long for the kernels.
pub fn encode_captions(captions: &[String], vocab: &Vocab) -> Result<Vec<Vec<u32>>> {
    captions
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let ids = crate::data::encode(c, vocab);
            if ids.len() > MAX_TOKENS {
                return Err(SgrafError::Input(format!(
                    "caption {} has {} tokens; at most {MAX_TOKENS} (with <start>/<end>) are supported",
                    k + 1,
                    ids.len()
                )));
            }
            Ok(ids)
        })
        .collect()
}

/// Checks a split against a model: region count, feature size, finite values.
pub fn check_split(split: &Split, model: &Model) -> Result<()> {
    let cfg = &model.params().cfg;
    if split.n_regions != N_REGIONS {
        return Err(SgrafError::Input(format!(
            "images have {} regions; SGRAF needs exactly {N_REGIONS}",
            split.n_regions
        )));
    }
    if split.img_dim != cfg.img_dim {
        return Err(SgrafError::Input(format!(
            "image features have {} dimensions but the checkpoint's image encoder expects {} (img_enc.fc.weight is [{}, {}])",
            split.img_dim, cfg.img_dim, cfg.embed, cfg.img_dim
        )));
    }
    split.check_finite()
}

/// Scores every image of `split` against every caption: `[n_images, n_captions]`
/// (row = image in order, column = caption in file order). `progress(done, total)`
/// is called after every tile.
pub fn score_split(
    model: &Model,
    split: &Split,
    captions: &[Vec<u32>],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f32>> {
    check_split(split, model)?;
    let n_img = split.n_images;
    let d = split.img_dim;
    let data = split.images.data(); // [n_img, 36, D]
                                    // Encode images in batches (bounded host memory for the raw features).
    let mut img = None;
    for start in (0..n_img).step_by(128) {
        let end = (start + 128).min(n_img);
        let part = model.encode_images(&data[start * N_REGIONS * d..end * N_REGIONS * d], end - start)?;
        img = Some(match img {
            None => part,
            Some(mut acc) => {
                crate::cpu::model::ImageEmb::append(&mut acc, part);
                acc
            }
        });
    }
    let img = img.ok_or_else(|| SgrafError::Input("the split has no images".into()))?;
    let cap = model.encode_captions(captions)?;
    score_all(model, &img, &cap, progress)
}

/// Scores encoded images × encoded captions in tiles: `[n_img, n_cap]`.
pub fn score_all(
    model: &Model,
    img: &crate::cpu::model::ImageEmb,
    cap: &crate::cpu::model::CaptionEmb,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f32>> {
    // The GPU scorer uploads each embedding once and keeps two tiles in flight.
    #[cfg(not(target_arch = "wasm32"))]
    if let Some(g) = model.gpu() {
        return g.score_all(img, cap, progress);
    }
    let e = model.params().cfg.embed;
    let (n_img, n_cap) = (img.n, cap.layout.n_cap());
    let (img_tile, cap_tile) = model.tile_sizes(n_img, &cap.layout.lengths);
    let mut sims = vec![0.0f32; n_img * n_cap];
    let total = n_img.div_ceil(img_tile) * n_cap.div_ceil(cap_tile);
    let mut done = 0;
    for c0 in (0..n_cap).step_by(cap_tile) {
        let c1 = (c0 + cap_tile).min(n_cap);
        let ct = cap.slice(c0..c1, e);
        for i0 in (0..n_img).step_by(img_tile) {
            let i1 = (i0 + img_tile).min(n_img);
            let it = img.slice(i0..i1, e);
            let s = model.score(&it, &ct)?; // [i1-i0, c1-c0]
            for i in i0..i1 {
                sims[i * n_cap + c0..i * n_cap + c1]
                    .copy_from_slice(&s[(i - i0) * (c1 - c0)..(i - i0 + 1) * (c1 - c0)]);
            }
            done += 1;
            progress(done, total);
        }
    }
    Ok(sims)
}

/// [`score_all`] awaiting the GPU between tiles instead of blocking: the form
/// the web page uses (one tile submitted and read back at a time).
pub async fn score_all_async(
    model: &Model,
    img: &crate::cpu::model::ImageEmb,
    cap: &crate::cpu::model::CaptionEmb,
) -> Result<Vec<f32>> {
    let e = model.params().cfg.embed;
    let (n_img, n_cap) = (img.n, cap.layout.n_cap());
    let (img_tile, cap_tile) = model.tile_sizes(n_img, &cap.layout.lengths);
    let mut sims = vec![0.0f32; n_img * n_cap];
    for c0 in (0..n_cap).step_by(cap_tile.max(1)) {
        let c1 = (c0 + cap_tile).min(n_cap);
        let ct = cap.slice(c0..c1, e);
        for i0 in (0..n_img).step_by(img_tile.max(1)) {
            let i1 = (i0 + img_tile).min(n_img);
            let s = model.score_async(&img.slice(i0..i1, e), &ct).await?; // [i1-i0, c1-c0]
            for i in i0..i1 {
                sims[i * n_cap + c0..i * n_cap + c1]
                    .copy_from_slice(&s[(i - i0) * (c1 - c0)..(i - i0 + 1) * (c1 - c0)]);
            }
        }
    }
    Ok(sims)
}
