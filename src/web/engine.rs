//! The page's engine, the same on every target: one or two models (SGR, SAF)
//! on one backend, a gallery (region features and captions) encoded once,
//! and the two searches of the page — sentence → images and image →
//! sentences — ranked by the ensemble score (the mean of the models'
//! scores), plus the per-word explanation of a pair.
//!
//! Natively the futures complete at once on the CPU backend or block on the
//! GPU ones; in the browser they await WebGPU.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use serde::Serialize;

use crate::backend::{Backend, Model};
use crate::cpu::model::{CaptionEmb, ImageEmb};
use crate::data::{Split, Vocab};
use crate::error::{Result, SgrafError};
use crate::eval::metrics::ranking;
use crate::eval::score;
use crate::gpu::model::{GpuCaptionEmb, GpuImageEmb};
use crate::gpu::tensor::read_f32_many;
use crate::model::params::{Mode, Params, N_REGIONS};

use crate::explain::{explain_encoded, Explanation};

/// Called with (what, done, total) between chunks of work; the returned
/// future lets the browser paint before the next chunk.
pub type Progress<'a> = dyn FnMut(&str, usize, usize) -> Pin<Box<dyn Future<Output = ()>>> + 'a;

/// Images encoded per chunk while the gallery loads.
const IMAGE_CHUNK: usize = 32;

/// Longest query, in tokens with `<start>`/`<end>`: the GPU image tiles are
/// sized for it once, when the gallery is uploaded.
pub const MAX_QUERY_TOKENS: usize = 64;

/// One model and the gallery encoded by it.
pub struct DemoModel {
    /// "SGR" or "SAF".
    pub module: &'static str,
    pub model: Model,
    /// Gallery images, `[n_images]` encoded.
    pub images: ImageEmb,
    /// On a GPU: the encoded images uploaded once, in tiles (first image, tile).
    gpu_images: Vec<(usize, GpuImageEmb)>,
    /// Gallery captions, encoded on first use (image → sentences).
    captions: RefCell<Option<Rc<CaptionEmb>>>,
    /// On a GPU: the encoded captions uploaded once, in tiles.
    gpu_captions: RefCell<Option<Rc<Vec<GpuCaptionEmb>>>>,
}

impl DemoModel {
    /// Scores of every gallery image against one caption (`ids`), `[n_images]`.
    /// On a GPU: the caption is encoded and every image tile scored in one
    /// submission, read back once; the images never leave the device.
    async fn score_images(&self, ids: &[Vec<u32>]) -> Result<Vec<f32>> {
        let Some(g) = self.model.gpu() else {
            let cap = self.model.encode_captions_async(ids).await?;
            return score::score_all_async(&self.model, &self.images, &cap).await;
        };
        let ctx = g.context();
        let mut enc = ctx.encoder("rank images");
        let cap = g.encode_captions_gpu(&mut enc, ids)?;
        let sims = self
            .gpu_images
            .iter()
            .map(|(_, tile)| Ok(g.score_tile_gpu(&mut enc, tile, &cap, Mode::Eval, false)?.sims))
            .collect::<Result<Vec<_>>>()?;
        ctx.submit(enc);
        let parts = read_f32_many(ctx, &sims.iter().collect::<Vec<_>>()).await?; // [n_tile_images, 1] each
        Ok(parts.concat())
    }

    /// Scores of every gallery caption against encoded gallery image `image`, `[n_captions]`.
    async fn score_captions(&self, image: usize, caption_ids: &[Vec<u32>]) -> Result<Vec<f32>> {
        let e = self.model.params().cfg.embed;
        let cached = self.captions.borrow().clone();
        let cap = match cached {
            Some(c) => c,
            None => {
                let c = Rc::new(self.model.encode_captions_async(caption_ids).await?);
                *self.captions.borrow_mut() = Some(c.clone());
                c
            }
        };
        let img = self.images.slice(image..image + 1, e);
        let Some(g) = self.model.gpu() else {
            return score::score_all_async(&self.model, &img, &cap).await; // [1, n_cap]
        };
        let cached = self.gpu_captions.borrow().clone();
        let tiles = match cached {
            Some(t) => t,
            None => {
                let (_, per_tile) = g.tile_sizes(1, &cap.layout.lengths);
                let n = cap.layout.n_cap();
                let t = (0..n)
                    .step_by(per_tile.max(1))
                    .map(|c0| g.upload_captions(&cap.slice(c0..(c0 + per_tile).min(n), e)))
                    .collect::<Result<Vec<_>>>()?;
                let t = Rc::new(t);
                *self.gpu_captions.borrow_mut() = Some(t.clone());
                t
            }
        };
        let ctx = g.context();
        let gi = g.upload_images(&img)?;
        let mut enc = ctx.encoder("rank captions");
        let sims = tiles
            .iter()
            .map(|ct| Ok(g.score_tile_gpu(&mut enc, &gi, ct, Mode::Eval, false)?.sims))
            .collect::<Result<Vec<_>>>()?;
        ctx.submit(enc);
        let parts = read_f32_many(ctx, &sims.iter().collect::<Vec<_>>()).await?; // [1, n_tile_captions] each
        Ok(parts.concat())
    }
}

/// The loaded demo.
pub struct Demo {
    /// One or two models, SGR before SAF.
    pub models: Vec<DemoModel>,
    pub vocab: Vocab,
    pub gallery: Split,
    /// Token ids of every gallery caption.
    pub caption_ids: Vec<Vec<u32>>,
}

/// Scores of every candidate by each model and by the ensemble, and the
/// candidates in ranked order (best first, the official tie rule).
#[derive(Clone, Debug, Serialize)]
pub struct Ranking {
    /// (module, scores) per model, in the order of [`Demo::models`].
    pub models: Vec<ModelScores>,
    /// Mean of the models' scores.
    pub ensemble: Vec<f32>,
    /// Candidate indices, best first.
    pub order: Vec<usize>,
    /// The query as the model read it (sentence → images only).
    pub tokens: Vec<String>,
    /// Per token: whether the vocabulary knows it (unknown words read as `<unk>`).
    pub known: Vec<bool>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModelScores {
    pub module: &'static str,
    pub scores: Vec<f32>,
}

/// Checks that checkpoints, vocabulary and gallery fit together, with a
/// message a user can act on.
pub fn check_inputs(params: &[Params], vocab: &Vocab, gallery: &Split) -> Result<()> {
    if params.is_empty() {
        return Err(SgrafError::Input("no checkpoint: give an SGR and/or an SAF checkpoint".into()));
    }
    if params.len() > 2 {
        return Err(SgrafError::Input(format!(
            "{} checkpoints: give one, or two (an SGR and an SAF model) for the SGRAF ensemble",
            params.len()
        )));
    }
    if params.len() == 2 && params[0].cfg.module.name() == params[1].cfg.module.name() {
        return Err(SgrafError::Input(format!(
            "both checkpoints are {} models; the SGRAF ensemble averages one SGR and one SAF model",
            params[0].cfg.module.name()
        )));
    }
    for p in params {
        let m = p.cfg.module.name();
        if p.cfg.vocab != vocab.len() {
            return Err(SgrafError::Input(format!(
                "the {m} checkpoint has a {}-word embedding (txt_enc.embed.weight) but the vocabulary has {} words: \
                 use the vocabulary the model was trained with",
                p.cfg.vocab,
                vocab.len()
            )));
        }
        if gallery.n_regions != N_REGIONS {
            return Err(SgrafError::Input(format!(
                "the gallery images have {} regions; SGRAF needs exactly {N_REGIONS}",
                gallery.n_regions
            )));
        }
        if p.cfg.img_dim != gallery.img_dim {
            return Err(SgrafError::Input(format!(
                "the gallery features have {} dimensions per region but the {m} checkpoint expects {} \
                 (img_enc.fc.weight is [{}, {}])",
                gallery.img_dim, p.cfg.img_dim, p.cfg.embed, p.cfg.img_dim
            )));
        }
    }
    gallery.check_finite()
}

impl Demo {
    /// Puts the models on `backend` and encodes the gallery images with each.
    pub async fn new(
        backend: &Backend,
        mut params: Vec<Params>,
        vocab: Vocab,
        gallery: Split,
        progress: &mut Progress<'_>,
    ) -> Result<Demo> {
        check_inputs(&params, &vocab, &gallery)?;
        let caption_ids = score::encode_captions(&gallery.captions, &vocab)?;
        params.sort_by_key(|p| p.cfg.module.name() != "SGR");
        let n = gallery.n_images;
        let per_image = N_REGIONS * gallery.img_dim;
        let total = n * params.len();
        let mut models = Vec::with_capacity(params.len());
        for (k, p) in params.into_iter().enumerate() {
            let module = p.cfg.module.name();
            let model = Model::new(p, backend)?;
            let mut images: Option<ImageEmb> = None;
            for start in (0..n).step_by(IMAGE_CHUNK) {
                let end = (start + IMAGE_CHUNK).min(n);
                progress(&format!("encoding the gallery images ({module})"), k * n + start, total).await;
                let data = &gallery.images.data()[start * per_image..end * per_image];
                let part = model.encode_images_async(data, end - start).await?;
                images = Some(match images {
                    None => part,
                    Some(mut acc) => {
                        ImageEmb::append(&mut acc, part);
                        acc
                    }
                });
            }
            let images = images.ok_or_else(|| SgrafError::Input("the gallery has no images".into()))?;
            let gpu_images = match model.gpu() {
                None => Vec::new(),
                Some(g) => {
                    let e = model.params().cfg.embed;
                    let per_tile = images_per_query_tile(g, n);
                    (0..n)
                        .step_by(per_tile.max(1))
                        .map(|i0| Ok((i0, g.upload_images(&images.slice(i0..(i0 + per_tile).min(n), e))?)))
                        .collect::<Result<Vec<_>>>()?
                }
            };
            models.push(DemoModel {
                module,
                model,
                images,
                gpu_images,
                captions: RefCell::new(None),
                gpu_captions: RefCell::new(None),
            });
        }
        progress("ready", total, total).await;
        Ok(Demo { models, vocab, gallery, caption_ids })
    }

    /// Sentence → images: every gallery image scored against `query`.
    pub async fn rank_images(&self, query: &str) -> Result<Ranking> {
        let tokens = crate::data::tokenize(query);
        if tokens.is_empty() {
            return Err(SgrafError::Input("the query has no words".into()));
        }
        let ids = score::encode_captions(&[query.to_string()], &self.vocab)?;
        if ids[0].len() > MAX_QUERY_TOKENS {
            return Err(SgrafError::Input(format!(
                "the query has {} words; at most {} fit the image tiles",
                ids[0].len() - 2,
                MAX_QUERY_TOKENS - 2
            )));
        }
        let mut models = Vec::with_capacity(self.models.len());
        for m in &self.models {
            let scores = m.score_images(&ids).await?;
            models.push(ModelScores { module: m.module, scores });
        }
        let known = tokens.iter().map(|t| self.vocab.contains(t)).collect();
        Ok(finish(models, tokens, known))
    }

    /// Image → sentences: every gallery caption scored against image `image`.
    pub async fn rank_captions(&self, image: usize) -> Result<Ranking> {
        let n = self.gallery.n_images;
        if image >= n {
            return Err(SgrafError::Input(format!("image {image} is not in the gallery of {n} images")));
        }
        let mut models = Vec::with_capacity(self.models.len());
        for m in &self.models {
            let scores = m.score_captions(image, &self.caption_ids).await?;
            models.push(ModelScores { module: m.module, scores });
        }
        Ok(finish(models, Vec::new(), Vec::new()))
    }

    /// Per-word explanation of `captions` against gallery image `image`, one
    /// [`Explanation`] per model and caption: `[model][caption]`.
    pub fn explain(&self, image: usize, captions: &[String]) -> Result<Vec<Vec<Explanation>>> {
        let n = self.gallery.n_images;
        if image >= n {
            return Err(SgrafError::Input(format!("image {image} is not in the gallery of {n} images")));
        }
        let features = self.gallery.image(image);
        self.models
            .iter()
            .map(|m| {
                let p = m.model.params();
                let (img, _) = crate::cpu::model::encode_images(p, features, 1, crate::model::params::Mode::Eval);
                explain_encoded(p, &self.vocab, &img, captions)
            })
            .collect()
    }
}

fn finish(models: Vec<ModelScores>, tokens: Vec<String>, known: Vec<bool>) -> Ranking {
    let n = models.first().map_or(0, |m| m.scores.len());
    let k = models.len().max(1) as f32;
    let ensemble: Vec<f32> = (0..n).map(|j| models.iter().map(|m| m.scores[j]).sum::<f32>() / k).collect();
    let order = ranking(&ensemble);
    Ranking { models, ensemble, order, tokens, known }
}

/// Images per GPU tile when scoring one query: as many as keep the largest
/// per-tile tensor (`ctx [images, MAX_QUERY_TOKENS, E]`) within one storage
/// binding and 64 MiB. One query is one caption, so fewer, larger tiles mean
/// far fewer dispatches; on a software adapter (SwiftShader) the per-dispatch
/// cost dominates.
fn images_per_query_tile(g: &crate::gpu::model::GpuModel, n: usize) -> usize {
    let cfg = &g.params().cfg;
    let width = cfg.embed.max(cfg.sim_dim).max(N_REGIONS) as u64;
    let limits = &g.context().limits;
    let budget = (64u64 << 20).min(limits.max_storage_buffer_binding_size).min(limits.max_buffer_size);
    let per_image = 4 * (MAX_QUERY_TOKENS as u64 + 1) * width;
    ((budget / per_image) as usize).clamp(1, n.max(1))
}
