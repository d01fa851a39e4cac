//! The whole SGRAF forward on the GPU, the twin of `crate::cpu::model`:
//! encoders, then pair scoring of a tile of images × captions (spec §3–§6).
//!
//! Two levels: `*_gpu` methods record into an encoder and keep everything
//! on the device ([`GpuImageEmb`], [`GpuCaptionEmb`], [`GpuScores`]); the
//! host-facing methods take and return the CPU types (`ImageEmb`,
//! `CaptionEmb`, `Trace`), submit once and read back once. The blocking
//! forms exist natively; on wasm use the `*_async` forms.

use std::sync::Arc;

use super::context::GpuContext;
use super::params::{scratch, GpuLayout, GpuParams, GpuReasoning};
use super::tensor::{read_f32_many, GpuTensor};
use super::{attention, embed, gru, head, image_fc, saf, sgr, similarity, text_sa, visual_sa};
use crate::cpu::batchnorm::BnStats;
use crate::cpu::model::{CaptionEmb, ImageEmb, Trace};
use crate::cpu::saf::SafTrace;
use crate::error::{Result, SgrafError};
use crate::model::layout::TileLayout;
use crate::model::params::{Mode, Params, Reasoning, N_REGIONS};

/// Encoded images on the GPU.
#[derive(Debug)]
pub struct GpuImageEmb {
    pub n: usize,
    pub v: GpuTensor,     // [n, 36, E] l2-normalised regions
    pub v_glo: GpuTensor, // [n, E] visual self-attention output
}

/// Encoded captions on the GPU, packed (see [`TileLayout`]).
#[derive(Debug)]
pub struct GpuCaptionEmb {
    pub layout: GpuLayout,
    pub t: GpuTensor,     // [n_words, E] l2-normalised word vectors
    pub t_glo: GpuTensor, // [n_cap, E] text self-attention output
}

/// What [`GpuModel::score_tile_gpu`] produced: the scores and, when kept,
/// every intermediate (the GPU form of `cpu::model::Trace`).
#[derive(Debug)]
pub struct GpuScores {
    pub sims: GpuTensor,           // [n_img, n_cap]
    pub logit: GpuTensor,          // [n_img, n_cap]
    pub sim_vec: GpuTensor,        // [n_img, n_cap, S]
    pub ctx: GpuTensor,            // [n_img, n_words, E]
    pub attn: GpuTensor,           // [n_img, n_words, 36]
    pub sim_loc_linear: GpuTensor, // [n_img, n_words, S]
    pub sim_glo_linear: GpuTensor, // [n_img, n_cap, S]
    pub nodes: GpuTensor,          // [n_img, n_nodes, S]
    pub sgr_steps: Vec<GpuTensor>, // K × [n_img, n_nodes, S] (when kept)
    pub saf: Option<saf::SafOut>,
}

/// A model's parameters on one GPU device.
pub struct GpuModel {
    ctx: Arc<GpuContext>,
    params: GpuParams,
    /// SGR steps folded for eval scoring (empty for SAF).
    folded: Vec<sgr::GpuFoldedStep>,
}

#[cfg(target_arch = "wasm32")]
fn no_blocking() -> SgrafError {
    SgrafError::Gpu("blocking GPU calls are not available on the web; use the *_async methods".into())
}

impl GpuModel {
    /// Uploads `p` to the device of `ctx`.
    pub fn new(ctx: Arc<GpuContext>, p: &Params) -> Result<GpuModel> {
        let params = GpuParams::upload(&ctx, p)?;
        let folded = match &p.reasoning {
            Reasoning::Sgr(steps) => steps
                .iter()
                .map(|st| sgr::GpuFoldedStep::upload(&ctx, &crate::cpu::sgr::FoldedStep::new(st)))
                .collect::<Result<_>>()?,
            Reasoning::Saf(_) => Vec::new(),
        };
        Ok(GpuModel { ctx, params, folded })
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    pub fn params(&self) -> &GpuParams {
        &self.params
    }

    /// Mutable parameters (BatchNorm running statistics are updated in place).
    pub fn params_mut(&mut self) -> &mut GpuParams {
        &mut self.params
    }

    // ---------------------------------------------------------------- encoders

    /// `images [n, 36, D_img]` → image embeddings, recorded into `encoder`.
    /// Train mode uses batch statistics and does not touch the running ones
    /// (see [`visual_sa::update_running`]).
    pub fn encode_images_gpu(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        images: &GpuTensor,
        n: usize,
        mode: Mode,
    ) -> Result<(GpuImageEmb, visual_sa::VisualSaStats)> {
        let (ctx, p) = (&*self.ctx, &self.params);
        let e = p.cfg.embed;
        let v = scratch(ctx, &[n, N_REGIONS, e])?;
        image_fc::forward(ctx, encoder, images, &p.img_fc, &v)?;
        let sa = visual_sa::forward(ctx, encoder, &v, &p.v_sa, mode, n)?;
        Ok((GpuImageEmb { n, v, v_glo: sa.v_glo }, sa.stats))
    }

    /// Token ids per caption (with `<start>`/`<end>`) → packed caption
    /// embeddings, recorded into `encoder`.
    pub fn encode_captions_gpu(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        captions: &[Vec<u32>],
    ) -> Result<GpuCaptionEmb> {
        let (ctx, p) = (&*self.ctx, &self.params);
        let (vocab, dw) = (p.cfg.vocab, p.cfg.word_dim);
        let lengths: Vec<usize> = captions.iter().map(|c| c.len()).collect();
        let l_max = lengths.iter().copied().max().unwrap_or(0);
        let mut ids = vec![0u32; captions.len() * l_max]; // [n_cap, l_max], 0 = <pad>
        for (c, cap) in captions.iter().enumerate() {
            if let Some(&bad) = cap.iter().find(|&&id| id as usize >= vocab) {
                return Err(SgrafError::Input(format!(
                    "caption {c}: token id {bad} outside the vocabulary of {vocab}"
                )));
            }
            if cap.is_empty() {
                return Err(SgrafError::Input(format!("caption {c} has no tokens")));
            }
            ids[c * l_max..c * l_max + cap.len()].copy_from_slice(cap);
        }
        let layout = GpuLayout::upload(ctx, &TileLayout::new(&lengths))?;
        let ids = GpuTensor::upload_u32(ctx, &ids, &[captions.len(), l_max])?;
        let x = scratch(ctx, &[captions.len(), l_max, dw])?;
        embed::forward(ctx, encoder, &ids, &p.embed, &x)?;
        let t = gru::forward_packed(ctx, encoder, &x, &layout, &p.gru_fwd, &p.gru_bwd, l_max)?;
        let t_glo = text_sa::forward(ctx, encoder, &t, &p.t_sa, &layout)?.t_glo;
        Ok(GpuCaptionEmb { layout, t, t_glo })
    }

    // ---------------------------------------------------------------- scoring

    /// Scores every image of `img` against every caption of `cap`, recorded
    /// into `encoder`: `sims [n_img, n_cap]` plus the intermediates. With
    /// `keep_steps` the SGR step outputs are kept; in eval mode without it
    /// SGR runs its scores-only form ([`sgr::forward_scores_only`]).
    pub fn score_tile_gpu(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        img: &GpuImageEmb,
        cap: &GpuCaptionEmb,
        mode: Mode,
        keep_steps: bool,
    ) -> Result<GpuScores> {
        let (ctx, p) = (&*self.ctx, &self.params);
        let s = p.cfg.sim_dim;
        let lay = &cap.layout;
        let n_img = img.n;
        let att = attention::forward(ctx, encoder, &img.v, &cap.t, lay, n_img)?;
        let nodes = scratch(ctx, &[n_img, lay.n_nodes(), s])?;
        let loc = similarity::local_forward(ctx, encoder, &att.ctx, &cap.t, &p.sim_loc, lay, n_img, &nodes)?;
        let glo = similarity::global_forward(ctx, encoder, &img.v_glo, &cap.t_glo, &p.sim_glo, lay, n_img, &nodes)?;
        let (sim_vec, sgr_steps, saf_out) = match &p.reasoning {
            GpuReasoning::Sgr(steps) if keep_steps || mode == Mode::Train => {
                let (out, kept) = sgr::forward(ctx, encoder, &nodes, steps, lay, n_img, keep_steps)?;
                (out, kept, None)
            }
            GpuReasoning::Sgr(steps) => {
                (sgr::forward_scores_only(ctx, encoder, &nodes, steps, &self.folded, lay, n_img)?, Vec::new(), None)
            }
            GpuReasoning::Saf(sp) => {
                let o = saf::forward(ctx, encoder, &nodes, sp, lay, n_img, mode)?;
                let sv = copy_of(ctx, encoder, &o.s)?;
                (sv, Vec::new(), Some(o))
            }
        };
        let (logit, sims) = head::forward(ctx, encoder, &sim_vec, &p.sim_eval, n_img * lay.n_cap())?;
        Ok(GpuScores {
            sims,
            logit,
            sim_vec,
            ctx: att.ctx,
            attn: att.attn,
            sim_loc_linear: loc,
            sim_glo_linear: glo,
            nodes,
            sgr_steps,
            saf: saf_out,
        })
    }

    // ---------------------------------------------------------------- host API

    /// `images [n, 36, D_img]` → image embeddings on the host.
    pub async fn encode_images_async(&self, images: &[f32], n: usize, mode: Mode) -> Result<ImageEmb> {
        let ctx = &*self.ctx;
        let dimg = self.params.cfg.img_dim;
        if images.len() != n * N_REGIONS * dimg {
            return Err(SgrafError::Input(format!(
                "encode_images: {} values for {n} images of {N_REGIONS}×{dimg}",
                images.len()
            )));
        }
        let x = GpuTensor::upload_f32(ctx, images, &[n * N_REGIONS, dimg])?;
        let mut enc = ctx.encoder("encode_images");
        let (emb, _) = self.encode_images_gpu(&mut enc, &x, n, mode)?;
        ctx.submit(enc);
        let mut r = read_f32_many(ctx, &[&emb.v, &emb.v_glo]).await?;
        let v_glo = r.pop().unwrap_or_default();
        let v = r.pop().unwrap_or_default();
        Ok(ImageEmb { n, v, v_glo })
    }

    /// Token ids per caption → packed caption embeddings on the host, in
    /// chunks of captions (the GRU's input projections take
    /// `chunk × l_max × 3E` values per direction).
    pub async fn encode_captions_async(&self, captions: &[Vec<u32>]) -> Result<CaptionEmb> {
        let ctx = &*self.ctx;
        let chunk = if ctx.is_software() { 64 } else { 256 };
        let (mut t, mut t_glo) = (Vec::new(), Vec::new());
        for part in captions.chunks(chunk) {
            let mut enc = ctx.encoder("encode_captions");
            let emb = self.encode_captions_gpu(&mut enc, part)?;
            ctx.submit(enc);
            let mut r = read_f32_many(ctx, &[&emb.t, &emb.t_glo]).await?.into_iter();
            t.extend(r.next().unwrap_or_default());
            t_glo.extend(r.next().unwrap_or_default());
        }
        let lengths: Vec<usize> = captions.iter().map(|c| c.len()).collect();
        Ok(CaptionEmb { layout: TileLayout::new(&lengths), t, t_glo })
    }

    /// Uploads host embeddings.
    pub fn upload_images(&self, img: &ImageEmb) -> Result<GpuImageEmb> {
        let e = self.params.cfg.embed;
        Ok(GpuImageEmb {
            n: img.n,
            v: GpuTensor::upload_f32(&self.ctx, &img.v, &[img.n, N_REGIONS, e])?,
            v_glo: GpuTensor::upload_f32(&self.ctx, &img.v_glo, &[img.n, e])?,
        })
    }

    /// Uploads host embeddings.
    pub fn upload_captions(&self, cap: &CaptionEmb) -> Result<GpuCaptionEmb> {
        let e = self.params.cfg.embed;
        let lay = &cap.layout;
        Ok(GpuCaptionEmb {
            layout: GpuLayout::upload(&self.ctx, lay)?,
            t: GpuTensor::upload_f32(&self.ctx, &cap.t, &[lay.n_words(), e])?,
            t_glo: GpuTensor::upload_f32(&self.ctx, &cap.t_glo, &[lay.n_cap(), e])?,
        })
    }

    /// Scores a tile: `sims [n_img, n_cap]` and, with `trace`, every
    /// intermediate (as `cpu::model::score_tile`).
    pub async fn score_tile_async(
        &self,
        img: &ImageEmb,
        cap: &CaptionEmb,
        mode: Mode,
        trace: bool,
    ) -> Result<(Vec<f32>, Option<Trace>)> {
        let ctx = &*self.ctx;
        let gi = self.upload_images(img)?;
        let gc = self.upload_captions(cap)?;
        let mut enc = ctx.encoder("score_tile");
        let out = self.score_tile_gpu(&mut enc, &gi, &gc, mode, trace)?;
        ctx.submit(enc);
        if !trace {
            let sims = read_f32_many(ctx, &[&out.sims]).await?.pop().unwrap_or_default();
            return Ok((sims, None));
        }
        let mut list: Vec<&GpuTensor> = vec![
            &out.sims,
            &out.logit,
            &out.sim_vec,
            &out.ctx,
            &out.attn,
            &out.sim_loc_linear,
            &out.sim_glo_linear,
            &out.nodes,
        ];
        list.extend(out.sgr_steps.iter());
        if let Some(o) = &out.saf {
            list.extend([&o.bn_out, &o.weights]);
            list.extend(o.stats.as_ref());
        }
        let mut r = read_f32_many(ctx, &list).await?.into_iter();
        let mut next = || r.next().unwrap_or_default();
        let sims = next();
        let mut tr = Trace {
            logit: next(),
            sim_vec: next(),
            ctx: next(),
            attn: next(),
            sim_loc_linear: next(),
            sim_glo_linear: next(),
            nodes: next(),
            ..Trace::default()
        };
        tr.sgr_steps = out.sgr_steps.iter().map(|_| next()).collect();
        if let Some(o) = &out.saf {
            let (bn_out, weights) = (next(), next());
            let lay = &cap.layout;
            let nc = lay.n_cap();
            let bn_stats = match &o.stats {
                Some(_) => {
                    let st = next();
                    (0..nc)
                        .map(|c| BnStats {
                            mean: vec![st[c]],
                            var_biased: vec![st[nc + c]],
                            count: img.n * lay.nodes(c).len(),
                        })
                        .collect()
                }
                None => Vec::new(),
            };
            tr.saf = Some(SafTrace { bn_out, weights, bn_stats });
        }
        Ok((sims, Some(tr)))
    }

    /// Blocking [`Self::encode_images_async`] (native only; an error on wasm).
    pub fn encode_images(&self, images: &[f32], n: usize, mode: Mode) -> Result<ImageEmb> {
        #[cfg(not(target_arch = "wasm32"))]
        return pollster::block_on(self.encode_images_async(images, n, mode));
        #[cfg(target_arch = "wasm32")]
        {
            let _ = (images, n, mode);
            Err(no_blocking())
        }
    }

    /// Blocking [`Self::encode_captions_async`] (native only; an error on wasm).
    pub fn encode_captions(&self, captions: &[Vec<u32>]) -> Result<CaptionEmb> {
        #[cfg(not(target_arch = "wasm32"))]
        return pollster::block_on(self.encode_captions_async(captions));
        #[cfg(target_arch = "wasm32")]
        {
            let _ = captions;
            Err(no_blocking())
        }
    }

    /// Blocking [`Self::score_tile_async`] (native only; an error on wasm).
    pub fn score_tile(
        &self,
        img: &ImageEmb,
        cap: &CaptionEmb,
        mode: Mode,
        trace: bool,
    ) -> Result<(Vec<f32>, Option<Trace>)> {
        #[cfg(not(target_arch = "wasm32"))]
        return pollster::block_on(self.score_tile_async(img, cap, mode, trace));
        #[cfg(target_arch = "wasm32")]
        {
            let _ = (img, cap, mode, trace);
            Err(no_blocking())
        }
    }

    /// Eval-mode scores of every image × caption, `[n_img, n_cap]` (row =
    /// image): tiles of [`Self::tile_sizes`], every embedding uploaded once,
    /// one submission per tile with the next tile recorded while the GPU
    /// runs the previous one, and one readback at the end.
    /// `progress(done, total)` is called after each tile.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn score_all(
        &self,
        img: &ImageEmb,
        cap: &CaptionEmb,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<f32>> {
        let tiles = self.tile_sizes(img.n, &cap.layout.lengths);
        self.score_all_tiled(img, cap, tiles, progress)
    }

    /// [`Self::score_all`] with explicit (images, captions) per tile.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn score_all_tiled(
        &self,
        img: &ImageEmb,
        cap: &CaptionEmb,
        (it, ct): (usize, usize),
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<f32>> {
        let ctx = &*self.ctx;
        let e = self.params.cfg.embed;
        let (n_img, n_cap) = (img.n, cap.layout.n_cap());
        if it == 0 || ct == 0 {
            return Err(SgrafError::Input("score_all: zero tile size".into()));
        }
        let img_tiles: Vec<(usize, GpuImageEmb)> = (0..n_img)
            .step_by(it)
            .map(|i0| Ok((i0, self.upload_images(&img.slice(i0..(i0 + it).min(n_img), e))?)))
            .collect::<Result<_>>()?;
        let total = img_tiles.len() * n_cap.div_ceil(ct);
        let mut tiles: Vec<(usize, usize, usize, usize, GpuTensor)> = Vec::with_capacity(total); // i0, n_i, c0, n_c, sims
        let mut in_flight: Option<wgpu::SubmissionIndex> = None;
        let wait = |idx: wgpu::SubmissionIndex| {
            ctx.device
                .poll(wgpu::PollType::Wait { submission_index: Some(idx), timeout: None })
                .map(|_| ())
                .map_err(|e| SgrafError::Gpu(format!("waiting for the GPU: {e}")))
        };
        for c0 in (0..n_cap).step_by(ct) {
            let c1 = (c0 + ct).min(n_cap);
            let gc = self.upload_captions(&cap.slice(c0..c1, e))?;
            for (i0, gi) in &img_tiles {
                let mut enc = ctx.encoder("score_all tile");
                let out = self.score_tile_gpu(&mut enc, gi, &gc, Mode::Eval, false)?;
                let idx = ctx.submit(enc);
                tiles.push((*i0, gi.n, c0, c1 - c0, out.sims));
                if let Some(prev) = in_flight.replace(idx) {
                    wait(prev)?;
                }
                progress(tiles.len(), total);
            }
        }
        let refs: Vec<&GpuTensor> = tiles.iter().map(|t| &t.4).collect();
        let vals = pollster::block_on(read_f32_many(ctx, &refs))?;
        let mut sims = vec![0.0f32; n_img * n_cap];
        for ((i0, ni, c0, nc, _), s) in tiles.iter().zip(&vals) {
            for i in 0..*ni {
                sims[(i0 + i) * n_cap + c0..(i0 + i) * n_cap + c0 + nc].copy_from_slice(&s[i * nc..(i + 1) * nc]);
            }
        }
        Ok(sims)
    }

    /// (images per tile, captions per tile) for scoring `n_img` images
    /// against captions of these lengths: the largest per-tile tensor
    /// (`ctx [n_img, n_words, E]`) is kept within one storage binding and a
    /// memory budget (smaller on software adapters).
    pub fn tile_sizes(&self, n_img: usize, lengths: &[usize]) -> (usize, usize) {
        let cfg = &self.params.cfg;
        let e = cfg.embed.max(cfg.sim_dim).max(N_REGIONS);
        let mean_len = (lengths.iter().sum::<usize>() as f64 / lengths.len().max(1) as f64).max(1.0);
        let budget: u64 = if self.ctx.is_software() { 32 << 20 } else { 512 << 20 };
        let budget = budget.min(self.ctx.limits.max_storage_buffer_binding_size).min(self.ctx.limits.max_buffer_size);
        let imgs = n_img.clamp(1, if self.ctx.is_software() { 16 } else { 64 });
        let words = budget as f64 / (4.0 * imgs as f64 * e as f64);
        let caps = ((words / (mean_len + 1.0)) as usize).clamp(1, 4096);
        (imgs, caps.min(lengths.len().max(1)))
    }
}

/// A copy of `t` (recorded), so an output can be moved out of a struct that
/// is returned whole.
fn copy_of(ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder, t: &GpuTensor) -> Result<GpuTensor> {
    let out = GpuTensor::scratch(ctx, &t.shape, t.dtype)?;
    if t.size_bytes() > 0 {
        encoder.copy_buffer_to_buffer(&t.buffer, 0, &out.buffer, 0, t.size_bytes());
    }
    Ok(out)
}

/// Measured single-precision matmul throughput of this device through the
/// linear kernel, GFLOP/s (best of a few timed batches of square products;
/// n = 4096 on hardware, 256 on software adapters).
#[cfg(not(target_arch = "wasm32"))]
pub fn measure_matmul_gflops(ctx: &GpuContext) -> Result<f64> {
    use super::linear;
    let n = if ctx.is_software() { 256 } else { 4096 };
    let reps = if ctx.is_software() { 2 } else { 10 };
    let a = GpuTensor::upload_f32(ctx, &vec![0.5f32; n * n], &[n, n])?;
    let b = GpuTensor::upload_f32(ctx, &vec![0.25f32; n * n], &[n, n])?;
    let c = scratch(ctx, &[n, n])?;
    let wait = || {
        ctx.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| SgrafError::Gpu(format!("waiting for the GPU: {e}")))
    };
    let batch = |reps: usize| -> Result<f64> {
        let mut enc = ctx.encoder("matmul peak");
        for _ in 0..reps {
            linear::forward(ctx, &mut enc, &a, &b, None, &c)?;
        }
        let t = std::time::Instant::now();
        ctx.submit(enc);
        wait()?;
        Ok(t.elapsed().as_secs_f64())
    };
    batch(1)?; // pipeline creation and warm-up
    let mut best = f64::MAX;
    for _ in 0..3 {
        best = best.min(batch(reps)?);
    }
    Ok(2.0 * (n * n * n) as f64 * reps as f64 / best / 1e9)
}
