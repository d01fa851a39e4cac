//! The training step on the GPU, the twin of `crate::cpu::train::forward_backward`
//! plus `crate::train::train_step` (clip 2.0, Adam): the train-mode forward of
//! B (image, caption) pairs, the B×B score matrix, the triplet loss, the
//! backward into every parameter gradient, the BatchNorm running-statistic
//! updates, global-norm clipping and Adam — all on the device. Nothing is read
//! back but the loss and the gradient norm.
//!
//! ## Memory: caption chunks, recomputing
//! At the default sizes (B = 128, E = 1024, ~14 tokens) the per-pair tensors
//! of the whole score matrix (attended vectors `[B, n_words, E]` ≈ 0.9 GB and
//! the like) exceed one storage binding (128 MiB), so pair scoring runs over
//! **chunks of captions** against all B images: each chunk's per-pair
//! tensors stay under [`GpuTrainer::chunk_bytes`] (64 MiB by default).
//!
//! 1. Encoders (image FC + l2norm, VisualSA, embedding + dropout, bi-GRU,
//!    TextSA), keeping their caches.
//! 2. Pass 1: every chunk's scores into `sims [B, B]` (and, for SAF, the
//!    chunk's per-caption BatchNorm statistics — all B images of a caption are
//!    in its chunk, so they are the batch statistics of spec §6.6).
//! 3. Loss and `dsims` on the device.
//! 4. Pass 2: every chunk is recomputed with caches and backpropagated into
//!    the shared gradients, `dv`, `dv_glo` (summed over chunks) and its rows
//!    of `dt`, `dt_glo` (disjoint).
//! 5. Encoders' backward, BatchNorm running statistics (VisualSA once, SAF
//!    once per caption in caption order, spec §9.3), clipping, Adam.
//!
//! The node tensors are computed twice per step. Each chunk of each pass is
//! one command buffer (a step at B = 128 is about 30 of them); the encoders,
//! the loss and the optimizer share the first and last.
//!
//! ## Dropout
//! Masks are drawn on the host from the given [`Rng`] in the CPU twin's order
//! (`cpu::train`, module doc) and uploaded, so both backends drop the same
//! entries for the same seed.

use std::ops::Range;
use std::sync::Arc;

use super::context::GpuContext;
use super::loss::GpuTripletLoss;
use super::params::{scratch, zeros_in, GpuLayout, GpuParams, GpuReasoning, GpuSaf};
use super::tensor::{read_f32_many, GpuTensor};
use super::{
    attention, dropout, embed, gru, head, l2norm, linear, loss, optim, saf, sgr, similarity, text_sa, visual_sa,
};
use crate::cpu::batchnorm::BnStats;
use crate::cpu::train::{dropout_mask, ForwardBackward, Options};
use crate::error::{Result, SgrafError};
use crate::model::init::Rng;
use crate::model::layout::TileLayout;
use crate::model::params::{Mode, Params, N_REGIONS};
use crate::train::{Adam, StepOptions, StepReport};

/// Default bound of one per-pair tensor of a caption chunk (bytes).
pub const DEFAULT_CHUNK_BYTES: u64 = 64 << 20;

/// A model, its gradients and its Adam state on one GPU device.
pub struct GpuTrainer {
    ctx: Arc<GpuContext>,
    pub params: GpuParams,
    /// Gradient container with the model's shapes (its BatchNorm running
    /// statistics are unused).
    pub grads: GpuParams,
    /// Moments in the order of [`GpuParams::trainable`].
    pub adam: optim::GpuAdam,
    /// Largest per-pair tensor of one caption chunk, in bytes.
    pub chunk_bytes: u64,
}

/// What [`GpuTrainer::forward_backward`] leaves on the device.
pub struct GpuForwardBackward {
    pub b: usize,
    pub loss: GpuTripletLoss,
    pub sims: GpuTensor,            // [B, B] row = image, column = caption
    pub dimages: Option<GpuTensor>, // [B, 36, D_img] when `input_grad`
    pub visual_stats: visual_sa::VisualSaStats,
    /// SAF in train mode: per chunk, its layout and `[2, n_cap]` batch statistics.
    pub saf_stats: Vec<(GpuLayout, GpuTensor)>,
    /// The caption chunks scored (ranges of caption indices).
    pub chunks: Vec<Range<usize>>,
}

/// Records into encoders and submits each one as it is finished, or (dry run)
/// drops it unsubmitted — to measure memory without running the work.
struct Recorder<'a> {
    ctx: &'a GpuContext,
    enc: wgpu::CommandEncoder,
    submit: bool,
    command_buffers: usize,
}

impl<'a> Recorder<'a> {
    fn new(ctx: &'a GpuContext, submit: bool) -> Self {
        Recorder { ctx, enc: ctx.encoder("sgraf train step"), submit, command_buffers: 0 }
    }
    /// Ends the current command buffer.
    fn flush(&mut self) {
        let enc = std::mem::replace(&mut self.enc, self.ctx.encoder("sgraf train step"));
        self.command_buffers += 1;
        if self.submit {
            self.ctx.submit(enc);
        }
    }
}

/// Caption chunks `[c0, c1)` whose per-pair tensors `[n_img, n_words, width]`
/// hold at most `max_bytes` (at least one caption per chunk).
pub fn caption_chunks(lengths: &[usize], n_img: usize, width: usize, max_bytes: u64) -> Vec<Range<usize>> {
    let per_word = (n_img * width * 4) as u64;
    let mut out = Vec::new();
    let (mut c0, mut words) = (0, 0usize);
    for (c, &l) in lengths.iter().enumerate() {
        if c > c0 && (words + l) as u64 * per_word > max_bytes {
            out.push(c0..c);
            c0 = c;
            words = 0;
        }
        words += l;
    }
    if c0 < lengths.len() {
        out.push(c0..lengths.len());
    }
    out
}

/// One chunk's pair scoring, keeping what its backward needs.
struct ChunkForward {
    att: attention::GpuAttentionCache,
    nodes: GpuTensor,     // [B, n_nodes, S]
    loc_norms: GpuTensor, // [B·n_words] norms of the local projections
    glo_norms: GpuTensor, // [B·n_cap] norms of the global projections
    reasoning: ChunkReasoning,
    sv: GpuTensor,     // [B, n_cap, S] input of the score head
    scores: GpuTensor, // [B·n_cap] σ(logit), image-major
}

enum ChunkReasoning {
    Sgr(Vec<sgr::GpuStepCache>),
    Saf(Box<saf::SafOut>),
}

/// A chunk's captions on the device: layout and rows of `t`, `t_glo`.
struct ChunkCaptions {
    lay: GpuLayout,
    t: GpuTensor,     // [n_words, E]
    t_glo: GpuTensor, // [n_cap, E]
    word0: usize,     // first packed word row of the chunk in the batch
}

/// `‖y‖` of every row of `y [.., n]` (without the eps).
fn row_norms(ctx: &GpuContext, enc: &mut wgpu::CommandEncoder, y: &GpuTensor, n: usize) -> Result<GpuTensor> {
    let copy = scratch(ctx, &y.shape)?;
    enc.copy_buffer_to_buffer(&y.buffer, 0, &copy.buffer, 0, y.size_bytes());
    let norms = scratch(ctx, &[y.numel() / n.max(1)])?;
    l2norm::forward_keep_norms(ctx, enc, &copy, n, &norms)?;
    Ok(norms)
}

/// Copies `count` values of `src` from element `src_off` into `dst` from element `dst_off`.
fn copy_elems(
    enc: &mut wgpu::CommandEncoder,
    src: &GpuTensor,
    src_off: usize,
    dst: &GpuTensor,
    dst_off: usize,
    count: usize,
) {
    if count > 0 {
        enc.copy_buffer_to_buffer(
            &src.buffer,
            (src_off * 4) as u64,
            &dst.buffer,
            (dst_off * 4) as u64,
            (count * 4) as u64,
        );
    }
}

impl GpuTrainer {
    /// Uploads `p` and the optimizer state `adam` (its moments, step count
    /// and learning rate) to the device of `ctx`.
    pub fn new(ctx: Arc<GpuContext>, p: &Params, adam: &Adam) -> Result<GpuTrainer> {
        let params = GpuParams::upload(&ctx, p)?;
        let grads = GpuParams::upload(&ctx, &p.zeros_like())?;
        let mut gadam = optim::GpuAdam::new(&ctx, &params.trainable())?;
        gadam.lr = adam.lr;
        gadam.beta1 = adam.beta1;
        gadam.beta2 = adam.beta2;
        gadam.eps = adam.eps;
        gadam.step = adam.step;
        let (m, v) = (crate::train::grads::trainable(&adam.m), crate::train::grads::trainable(&adam.v));
        for ((gm, gv), (hm, hv)) in gadam.m.iter().zip(&gadam.v).zip(m.into_iter().zip(v)) {
            gm.write_f32(&ctx, hm)?;
            gv.write_f32(&ctx, hv)?;
        }
        Ok(GpuTrainer { ctx, params, grads, adam: gadam, chunk_bytes: DEFAULT_CHUNK_BYTES })
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// Reads the model and the optimizer state back into `p` and `adam`
    /// (same configuration as at [`GpuTrainer::new`]).
    pub async fn download_into(&self, p: &mut Params, adam: &mut Adam) -> Result<()> {
        self.params.download_into(&self.ctx, p).await?;
        let mut tensors: Vec<&GpuTensor> = self.adam.m.iter().collect();
        tensors.extend(self.adam.v.iter());
        let vals = read_f32_many(&self.ctx, &tensors).await?;
        let n = self.adam.m.len();
        for (dst, src) in crate::train::grads::trainable_mut(&mut adam.m).into_iter().zip(&vals[..n]) {
            dst.copy_from_slice(src);
        }
        for (dst, src) in crate::train::grads::trainable_mut(&mut adam.v).into_iter().zip(&vals[n..]) {
            dst.copy_from_slice(src);
        }
        adam.step = self.adam.step;
        adam.lr = self.adam.lr;
        Ok(())
    }

    /// [`GpuTrainer::download_into`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn download_into_blocking(&self, p: &mut Params, adam: &mut Adam) -> Result<()> {
        pollster::block_on(self.download_into(p, adam))
    }

    // ------------------------------------------------------------------ step

    /// One official training step (`train::train_step` on the device):
    /// forward, loss, backward, BatchNorm running statistics, clipping at
    /// `opts.grad_clip`, Adam at `self.adam.lr`. Reads back the loss and the
    /// gradient norm only (`StepReport::sims` is left empty).
    pub async fn step(
        &mut self,
        images: &[f32],
        captions: &[Vec<u32>],
        opts: &StepOptions,
        rng: &mut Rng,
    ) -> Result<StepReport> {
        let fo = opts.forward_options();
        let ctx = self.ctx.clone();
        let mut rec = Recorder::new(&ctx, true);
        let (loss, norm) = self.record_step(&mut rec, images, captions, &fo, opts.grad_clip, rng)?;
        rec.flush();
        let v = read_f32_many(&ctx, &[&loss, &norm]).await?;
        let loss = v[0].first().copied().unwrap_or(f32::NAN);
        let grad_norm = v[1].first().copied().unwrap_or(f32::NAN);
        Ok(StepReport { loss, grad_norm, sims: Vec::new() })
    }

    /// [`GpuTrainer::step`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn step_blocking(
        &mut self,
        images: &[f32],
        captions: &[Vec<u32>],
        opts: &StepOptions,
        rng: &mut Rng,
    ) -> Result<StepReport> {
        pollster::block_on(self.step(images, captions, opts, rng))
    }

    /// Records a whole step (no readback); returns the device `loss [1]` and `[norm, coef]`.
    fn record_step(
        &mut self,
        rec: &mut Recorder,
        images: &[f32],
        captions: &[Vec<u32>],
        fo: &Options,
        grad_clip: f32,
        rng: &mut Rng,
    ) -> Result<(GpuTensor, GpuTensor)> {
        let fb = self.record_forward_backward(rec, images, captions, fo, rng)?;
        let ctx = self.ctx.clone();
        let enc = &mut rec.enc;
        // BatchNorm running statistics: VisualSA once, SAF once per caption in order.
        visual_sa::update_running(&ctx, enc, &mut self.params.v_sa, &fb.visual_stats, fb.b)?;
        if let GpuReasoning::Saf(sp) = &mut self.params.reasoning {
            for (lay, st) in &fb.saf_stats {
                saf::update_running(&ctx, enc, sp, st, lay, fb.b)?;
            }
        }
        let grads = self.grads.trainable();
        let norm = optim::clip_grad_norm(&ctx, enc, &grads, grad_clip)?;
        self.adam.update(&ctx, enc, &self.params.trainable(), &grads)?;
        Ok((fb.loss.loss, norm))
    }

    /// Records a default-size step without submitting anything and returns
    /// `(peak bytes of tensor buffers alive at once, command buffers)`: the
    /// GPU memory a step needs beyond what was alive before (parameters,
    /// gradients and Adam state included when this trainer was made after
    /// [`super::tensor::BufferPool::reset_peak`]). The parameters are not changed.
    pub fn measure_step_memory(
        &mut self,
        images: &[f32],
        captions: &[Vec<u32>],
        opts: &StepOptions,
        rng: &mut Rng,
    ) -> Result<(u64, usize)> {
        let fo = opts.forward_options();
        let ctx = self.ctx.clone();
        let mut rec = Recorder::new(&ctx, false);
        let counted = self.params.v_sa.local_bn.num_batches_tracked;
        let saved_step = self.adam.step;
        let r = self.record_step(&mut rec, images, captions, &fo, opts.grad_clip, rng).map(|_| ());
        rec.flush();
        // nothing ran: undo the host-side counters
        self.adam.step = saved_step;
        let undo = self.params.v_sa.local_bn.num_batches_tracked - counted;
        self.params.v_sa.local_bn.num_batches_tracked -= undo;
        self.params.v_sa.global_bn.num_batches_tracked -= undo;
        if let GpuReasoning::Saf(sp) = &mut self.params.reasoning {
            sp.bn.num_batches_tracked -= (captions.len() as i64) * undo;
        }
        r?;
        Ok((ctx.pool().peak_bytes(), rec.command_buffers))
    }

    /// The forward and backward of one batch into `self.grads` (zeroed
    /// first), submitted; the device results are returned for reading.
    /// `opts.mode` Eval uses running statistics and no dropout.
    pub fn forward_backward(
        &mut self,
        images: &[f32],
        captions: &[Vec<u32>],
        opts: &Options,
        rng: &mut Rng,
    ) -> Result<GpuForwardBackward> {
        let ctx = self.ctx.clone();
        let mut rec = Recorder::new(&ctx, true);
        let fb = self.record_forward_backward(&mut rec, images, captions, opts, rng)?;
        rec.flush();
        Ok(fb)
    }

    fn record_forward_backward(
        &self,
        rec: &mut Recorder,
        images: &[f32],
        captions: &[Vec<u32>],
        opts: &Options,
        rng: &mut Rng,
    ) -> Result<GpuForwardBackward> {
        let (ctx, p, g) = (&*self.ctx, &self.params, &self.grads);
        crate::cpu::train::check_inputs(&p.cfg, images, captions, opts)?;
        let (n, e, dw, s, di) = (captions.len(), p.cfg.embed, p.cfg.word_dim, p.cfg.sim_dim, p.cfg.img_dim);
        let mode = opts.mode;
        let drop = if mode == Mode::Train { opts.dropout } else { 0.0 };
        let lengths: Vec<usize> = captions.iter().map(|c| c.len()).collect();
        let host_lay = TileLayout::new(&lengths);
        let nw = host_lay.n_words();
        let r = N_REGIONS;

        // ---- inputs and dropout masks (the CPU twin's order) -----------------
        let up_mask = |len: usize, shape: &[usize], rng: &mut Rng| -> Result<Option<GpuTensor>> {
            dropout_mask(rng, len, drop).map(|m| GpuTensor::upload_f32(ctx, &m, shape)).transpose()
        };
        let word_mask = up_mask(nw * dw, &[nw, dw], rng)?;
        let v_local_mask = up_mask(n * r * e, &[n, r, e], rng)?;
        let v_global_mask = up_mask(n * e, &[n, e], rng)?;
        let t_local_mask = up_mask(nw * e, &[nw, e], rng)?;
        let t_global_mask = up_mask(n * e, &[n, e], rng)?;
        let gimages = GpuTensor::upload_f32(ctx, images, &[n, r, di])?;
        let ids: Vec<u32> = captions.iter().flatten().copied().collect();
        let gids = GpuTensor::upload_u32(ctx, &ids, &[nw])?;
        let lay = GpuLayout::upload(ctx, &host_lay)?;

        let enc = &mut rec.enc;
        for t in g.trainable() {
            enc.clear_buffer(&t.buffer, 0, None);
        }

        // ---- forward: encoders -------------------------------------------------
        let v = scratch(ctx, &[n, r, e])?; // [B, 36, E]
        linear::forward(ctx, enc, &gimages, &p.img_fc.w, Some(&p.img_fc.b), &v)?;
        let v_norms = scratch(ctx, &[n * r])?;
        l2norm::forward_keep_norms(ctx, enc, &v, e, &v_norms)?;
        let vsa =
            visual_sa::forward_train(ctx, enc, &v, &p.v_sa, mode, n, v_local_mask.as_ref(), v_global_mask.as_ref())?;
        let x = scratch(ctx, &[nw, dw])?; // [n_words, D_w]
        embed::forward(ctx, enc, &gids, &p.embed, &x)?;
        dropout::apply(ctx, enc, &x, word_mask.as_ref())?;
        let (t, gru_cache) = gru::forward_train(ctx, enc, &x, &lay, &p.gru_fwd, &p.gru_bwd)?; // [n_words, E]
        let tsa = text_sa::forward_train(ctx, enc, &t, &p.t_sa, &lay, t_local_mask.as_ref(), t_global_mask.as_ref())?;

        // ---- pass 1: scores of every caption chunk ------------------------------
        let chunks = caption_chunks(&lengths, n, e.max(s), self.chunk_bytes);
        let sims = scratch(ctx, &[n, n])?; // [B, B]
        let mut saf_stats = Vec::new();
        for range in &chunks {
            let cc = self.chunk_captions(&mut rec.enc, range.clone(), &host_lay, &t, &tsa.out)?;
            let f = self.chunk_forward(&mut rec.enc, &cc, &v, &vsa.out, mode, n)?;
            let nc = range.len();
            for i in 0..n {
                copy_elems(&mut rec.enc, &f.scores, i * nc, &sims, i * n + range.start, nc);
            }
            if let (Mode::Train, ChunkReasoning::Saf(o)) = (mode, f.reasoning) {
                let st = o.stats.ok_or_else(|| SgrafError::Gpu("saf: train forward without statistics".into()))?;
                saf_stats.push((cc.lay, st));
            }
            rec.flush();
        }

        // ---- loss ---------------------------------------------------------------
        let enc = &mut rec.enc;
        let l = loss::forward_with(ctx, enc, &sims, n, opts.margin, opts.negatives)?;
        let dsims = scratch(ctx, &[n, n])?;
        loss::backward(ctx, enc, &sims, &l, &dsims)?;

        // ---- pass 2: recompute each chunk with caches, backward ----------------
        let dv = zeros_in(ctx, enc, &[n, r, e])?; // [B, 36, E]
        let dv_glo = zeros_in(ctx, enc, &[n, e])?; // [B, E]
        let dt = scratch(ctx, &[nw, e])?; // [n_words, E] every row written by its chunk
        let dt_glo = scratch(ctx, &[n, e])?; // [B, E]
        for range in &chunks {
            let cc = self.chunk_captions(&mut rec.enc, range.clone(), &host_lay, &t, &tsa.out)?;
            let f = self.chunk_forward(&mut rec.enc, &cc, &v, &vsa.out, mode, n)?;
            let enc = &mut rec.enc;
            let nc = range.len();
            let dscore = scratch(ctx, &[n * nc])?; // [B, n_cap] of the chunk
            for i in 0..n {
                copy_elems(enc, &dsims, i * n + range.start, &dscore, i * nc, nc);
            }
            let (dtc, dtgc) = self.chunk_backward(enc, &cc, &f, &dscore, &v, &vsa.out, mode, n, &dv, &dv_glo)?;
            copy_elems(enc, &dtc, 0, &dt, cc.word0 * e, cc.lay.n_words() * e);
            copy_elems(enc, &dtgc, 0, &dt_glo, range.start * e, nc * e);
            rec.flush();
        }

        // ---- backward: encoders -------------------------------------------------
        let enc = &mut rec.enc;
        text_sa::backward(
            ctx,
            enc,
            &dt_glo,
            &t,
            &p.t_sa,
            &lay,
            &tsa,
            t_local_mask.as_ref(),
            t_global_mask.as_ref(),
            &g.t_sa,
            &dt,
        )?;
        let dx = zeros_in(ctx, enc, &[nw, dw])?; // [n_words, D_w]
        gru::backward(ctx, enc, &dt, &t, &x, &lay, &p.gru_fwd, &p.gru_bwd, &gru_cache, &g.gru_fwd, &g.gru_bwd, &dx)?;
        dropout::apply(ctx, enc, &dx, word_mask.as_ref())?;
        embed::backward(ctx, enc, &dx, &gids, &g.embed)?;
        visual_sa::backward(
            ctx,
            enc,
            &dv_glo,
            &v,
            &p.v_sa,
            mode,
            &vsa,
            v_local_mask.as_ref(),
            v_global_mask.as_ref(),
            &g.v_sa,
            &dv,
            n,
        )?;
        let dpre = scratch(ctx, &[n, r, e])?; // gradient of the FC output
        l2norm::backward(ctx, enc, &dv, &v, &v_norms, &dpre, e, false)?;
        let dimages = if opts.input_grad { Some(scratch(ctx, &[n, r, di])?) } else { None };
        linear::backward(
            ctx,
            enc,
            &dpre,
            &gimages,
            &p.img_fc.w,
            dimages.as_ref(),
            false,
            &g.img_fc.w,
            Some(&g.img_fc.b),
        )?;

        Ok(GpuForwardBackward { b: n, loss: l, sims, dimages, visual_stats: vsa.stats, saf_stats, chunks })
    }

    /// The chunk's layout and copies of its rows of `t [n_words, E]`, `t_glo [B, E]`.
    fn chunk_captions(
        &self,
        enc: &mut wgpu::CommandEncoder,
        range: Range<usize>,
        lay: &TileLayout,
        t: &GpuTensor,
        t_glo: &GpuTensor,
    ) -> Result<ChunkCaptions> {
        let ctx = &*self.ctx;
        let e = self.params.cfg.embed;
        let host = TileLayout::new(&lay.lengths[range.clone()]);
        let (nw, nc, word0) = (host.n_words(), range.len(), lay.word_off[range.start]);
        let tc = scratch(ctx, &[nw, e])?;
        copy_elems(enc, t, word0 * e, &tc, 0, nw * e);
        let tgc = scratch(ctx, &[nc, e])?;
        copy_elems(enc, t_glo, range.start * e, &tgc, 0, nc * e);
        Ok(ChunkCaptions { lay: GpuLayout::upload(ctx, &host)?, t: tc, t_glo: tgc, word0 })
    }

    /// All B images against one chunk of captions: attention, similarity
    /// nodes, SGR or SAF, score head (train forms keeping caches).
    fn chunk_forward(
        &self,
        enc: &mut wgpu::CommandEncoder,
        cc: &ChunkCaptions,
        v: &GpuTensor,
        v_glo: &GpuTensor,
        mode: Mode,
        n_img: usize,
    ) -> Result<ChunkForward> {
        let (ctx, p) = (&*self.ctx, &self.params);
        let (s, lay) = (p.cfg.sim_dim, &cc.lay);
        let att = attention::forward_train(ctx, enc, v, &cc.t, lay, n_img)?;
        let nodes = scratch(ctx, &[n_img, lay.n_nodes(), s])?;
        let loc = similarity::local_forward(ctx, enc, &att.ctx, &cc.t, &p.sim_loc, lay, n_img, &nodes)?;
        let glo = similarity::global_forward(ctx, enc, v_glo, &cc.t_glo, &p.sim_glo, lay, n_img, &nodes)?;
        let loc_norms = row_norms(ctx, enc, &loc, s)?;
        let glo_norms = row_norms(ctx, enc, &glo, s)?;
        let (reasoning, sv) = match &p.reasoning {
            GpuReasoning::Sgr(steps) => {
                let mut caches: Vec<sgr::GpuStepCache> = Vec::with_capacity(steps.len());
                for st in steps {
                    let x = caches.last().map_or(&nodes, |c| &c.out);
                    let c = sgr::step_forward_train(ctx, enc, x, st, lay, n_img)?;
                    caches.push(c);
                }
                let last = caches.last().map_or(&nodes, |c| &c.out);
                let sv = sgr::global_nodes(ctx, enc, last, lay, n_img, s)?;
                (ChunkReasoning::Sgr(caches), sv)
            }
            GpuReasoning::Saf(sp) => {
                let o = saf::forward(ctx, enc, &nodes, sp, lay, n_img, mode)?;
                let sv = scratch(ctx, &o.s.shape)?;
                enc.copy_buffer_to_buffer(&o.s.buffer, 0, &sv.buffer, 0, o.s.size_bytes());
                (ChunkReasoning::Saf(Box::new(o)), sv)
            }
        };
        let (_, scores) = head::forward(ctx, enc, &sv, &p.sim_eval, n_img * lay.n_cap())?;
        Ok(ChunkForward { att, nodes, loc_norms, glo_norms, reasoning, sv, scores })
    }

    /// Backward of [`Self::chunk_forward`]: `dscore [B·n_cap]` → parameter
    /// gradients, `dv`, `dv_glo` (+=); returns the chunk's `dt [n_words, E]`
    /// and `dt_glo [n_cap, E]`.
    #[allow(clippy::too_many_arguments)]
    fn chunk_backward(
        &self,
        enc: &mut wgpu::CommandEncoder,
        cc: &ChunkCaptions,
        f: &ChunkForward,
        dscore: &GpuTensor,
        v: &GpuTensor,
        v_glo: &GpuTensor,
        mode: Mode,
        n_img: usize,
        dv: &GpuTensor,
        dv_glo: &GpuTensor,
    ) -> Result<(GpuTensor, GpuTensor)> {
        let (ctx, p, g) = (&*self.ctx, &self.params, &self.grads);
        let (s, e, lay) = (p.cfg.sim_dim, p.cfg.embed, &cc.lay);
        let (nn, nw, nc) = (lay.n_nodes(), lay.n_words(), lay.n_cap());
        let ds = zeros_in(ctx, enc, &[n_img, nc, s])?;
        head::backward(ctx, enc, dscore, &f.sv, &f.scores, &p.sim_eval, &g.sim_eval, Some(&ds), n_img * nc)?;
        let dnodes = zeros_in(ctx, enc, &[n_img, nn, s])?;
        match (&f.reasoning, &p.reasoning, &g.reasoning) {
            (ChunkReasoning::Sgr(caches), GpuReasoning::Sgr(steps), GpuReasoning::Sgr(dsteps)) => {
                // d: gradient of the current step's output, from the last step down
                let mut d = zeros_in(ctx, enc, &[n_img, nn, s])?;
                sgr::global_nodes_backward(ctx, enc, &ds, lay, n_img, s, &d)?;
                for (k, (c, (st, dst))) in caches.iter().zip(steps.iter().zip(dsteps)).enumerate().rev() {
                    let dx = if k == 0 { None } else { Some(zeros_in(ctx, enc, &[n_img, nn, s])?) };
                    sgr::step_backward(ctx, enc, &d, st, lay, n_img, c, dst, dx.as_ref().unwrap_or(&dnodes))?;
                    if let Some(dx) = dx {
                        d = dx;
                    }
                }
            }
            (ChunkReasoning::Saf(o), GpuReasoning::Saf(sp), GpuReasoning::Saf(dsp)) => {
                let (sp, dsp): (&GpuSaf, &GpuSaf) = (sp, dsp);
                saf::backward(ctx, enc, &ds, &f.nodes, sp, lay, n_img, mode, o, dsp, &dnodes)?;
            }
            _ => return Err(SgrafError::Gpu("train: the gradient container is for another module".into())),
        }
        let dctx = zeros_in(ctx, enc, &[n_img, nw, e])?;
        let dt = zeros_in(ctx, enc, &[nw, e])?;
        let dtg = zeros_in(ctx, enc, &[nc, e])?;
        similarity::local_backward(
            ctx,
            enc,
            &dnodes,
            &f.nodes,
            &f.loc_norms,
            &f.att.ctx,
            &cc.t,
            &p.sim_loc,
            lay,
            n_img,
            &g.sim_loc,
            &dctx,
            &dt,
        )?;
        similarity::global_backward(
            ctx,
            enc,
            &dnodes,
            &f.nodes,
            &f.glo_norms,
            v_glo,
            &cc.t_glo,
            &p.sim_glo,
            lay,
            n_img,
            &g.sim_glo,
            dv_glo,
            &dtg,
        )?;
        attention::backward(ctx, enc, &dctx, v, &cc.t, lay, n_img, &f.att, dv, &dt)?;
        Ok((dt, dtg))
    }
}

// ----------------------------------------------------------------------------
// Host-facing forms (tests, tools): the CPU twin's types.

fn bn_stats(v: &[f32], c: usize, count: usize) -> BnStats {
    BnStats { mean: v[..c].to_vec(), var_biased: v[c..2 * c].to_vec(), count }
}

impl GpuTrainer {
    /// [`GpuTrainer::forward_backward`] read back into the CPU twin's
    /// [`ForwardBackward`] (loss, sims, gradients,
    /// input gradient, BatchNorm batch statistics). `p` must be the model
    /// this trainer holds (its shapes are used for the gradient container).
    pub async fn forward_backward_host(
        &mut self,
        p: &Params,
        images: &[f32],
        captions: &[Vec<u32>],
        opts: &Options,
        rng: &mut Rng,
    ) -> Result<ForwardBackward> {
        let fb = self.forward_backward(images, captions, opts, rng)?;
        let ctx = self.ctx.clone();
        let n = fb.b;
        let e = p.cfg.embed;
        let mut grads = p.zeros_like();
        self.grads.download_into(&ctx, &mut grads).await?;
        let mut tensors = vec![&fb.loss.loss, &fb.sims];
        if let Some(d) = &fb.dimages {
            tensors.push(d);
        }
        let vs = [&fb.visual_stats.local, &fb.visual_stats.global];
        tensors.extend(vs.iter().filter_map(|s| s.as_ref()));
        tensors.extend(fb.saf_stats.iter().map(|(_, st)| st));
        let mut vals = read_f32_many(&ctx, &tensors).await?.into_iter();
        let mut next = || vals.next().unwrap_or_default();
        let (lv, sims) = (next(), next());
        let dimages = fb.dimages.as_ref().map(|_| next());
        let mut visual = crate::cpu::visual_sa::VisualSaStats::default();
        if fb.visual_stats.local.is_some() {
            visual.local = Some(bn_stats(&next(), N_REGIONS, n * e));
        }
        if fb.visual_stats.global.is_some() {
            visual.global = Some(bn_stats(&next(), e, n));
        }
        let mut saf_stats = Vec::new();
        for (lay, _) in &fb.saf_stats {
            let st = next();
            let nc = lay.n_cap();
            for c in 0..nc {
                let count = n * lay.host.nodes(c).len();
                saf_stats.push(BnStats { mean: vec![st[c]], var_biased: vec![st[nc + c]], count });
            }
        }
        let loss = lv.first().copied().unwrap_or(f32::NAN);
        Ok(ForwardBackward { loss, sims, grads, dimages, visual_stats: visual, saf_stats })
    }

    /// [`GpuTrainer::forward_backward_host`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward_backward_host_blocking(
        &mut self,
        p: &Params,
        images: &[f32],
        captions: &[Vec<u32>],
        opts: &Options,
        rng: &mut Rng,
    ) -> Result<ForwardBackward> {
        pollster::block_on(self.forward_backward_host(p, images, captions, opts, rng))
    }
}

#[cfg(test)]
mod tests {
    use super::caption_chunks;

    #[test]
    fn caption_chunks_cover_the_captions_in_order_within_the_budget() {
        let lengths = [11, 9, 9, 7, 5, 4, 30, 2];
        let (n_img, width) = (6, 64);
        let per_word = (n_img * width * 4) as u64;
        for words in [1, 10, 20, 40, 1000] {
            let chunks = caption_chunks(&lengths, n_img, width, words * per_word);
            let mut next = 0;
            for r in &chunks {
                assert_eq!(r.start, next, "chunks {chunks:?} leave a gap");
                assert!(!r.is_empty(), "empty chunk in {chunks:?}");
                let w: usize = lengths[r.clone()].iter().sum();
                assert!(w as u64 <= words || r.len() == 1, "chunk {r:?} of {w} words over {words}");
                next = r.end;
            }
            assert_eq!(next, lengths.len(), "chunks {chunks:?} miss captions");
        }
        assert_eq!(caption_chunks(&lengths, n_img, width, u64::MAX), vec![0..lengths.len()]);
        assert_eq!(caption_chunks(&lengths, n_img, width, 0).len(), lengths.len());
        assert!(caption_chunks(&[], n_img, width, 1 << 20).is_empty());
    }
}
