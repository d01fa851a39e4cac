//! Model parameters and tile layouts uploaded to the GPU, mirroring
//! `crate::model::params` and `crate::model::layout` field by field.

use super::context::GpuContext;
use super::tensor::{read_f32_many, DType, GpuTensor};
use crate::error::Result;
use crate::model::layout::TileLayout;
use crate::model::params::{BatchNorm, GruDirection, Linear, Params, Reasoning, Saf, SgrStep, TextSa, VisualSa};

/// `y = x·Wᵀ + b`: `w [n_out, n_in]`, `b [n_out]`.
#[derive(Debug)]
pub struct GpuLinear {
    pub w: GpuTensor,
    pub b: GpuTensor,
    pub n_out: usize,
    pub n_in: usize,
}

impl GpuLinear {
    pub fn upload(ctx: &GpuContext, l: &Linear) -> Result<Self> {
        Ok(GpuLinear {
            w: GpuTensor::upload_f32(ctx, &l.w, &[l.n_out, l.n_in])?,
            b: GpuTensor::upload_f32(ctx, &l.b, &[l.n_out])?,
            n_out: l.n_out,
            n_in: l.n_in,
        })
    }
}

/// BatchNorm1d parameters and running statistics, each `[C]`. The running
/// statistics are updated on the GPU in train mode; `num_batches_tracked`
/// is counted on the host.
#[derive(Debug)]
pub struct GpuBatchNorm {
    pub weight: GpuTensor,
    pub bias: GpuTensor,
    pub running_mean: GpuTensor,
    pub running_var: GpuTensor,
    pub num_batches_tracked: i64,
    pub channels: usize,
}

impl GpuBatchNorm {
    pub fn upload(ctx: &GpuContext, bn: &BatchNorm) -> Result<Self> {
        let c = bn.weight.len();
        Ok(GpuBatchNorm {
            weight: GpuTensor::upload_f32(ctx, &bn.weight, &[c])?,
            bias: GpuTensor::upload_f32(ctx, &bn.bias, &[c])?,
            running_mean: GpuTensor::upload_f32(ctx, &bn.running_mean, &[c])?,
            running_var: GpuTensor::upload_f32(ctx, &bn.running_var, &[c])?,
            num_batches_tracked: bn.num_batches_tracked,
            channels: c,
        })
    }

    /// Reads the parameters and running statistics back.
    pub async fn download(&self, ctx: &GpuContext) -> Result<BatchNorm> {
        let mut v = read_f32_many(ctx, &[&self.weight, &self.bias, &self.running_mean, &self.running_var]).await?;
        let running_var = v.pop().unwrap_or_default();
        let running_mean = v.pop().unwrap_or_default();
        let bias = v.pop().unwrap_or_default();
        let weight = v.pop().unwrap_or_default();
        Ok(BatchNorm { weight, bias, running_mean, running_var, num_batches_tracked: self.num_batches_tracked })
    }
}

/// One GRU direction: `w_ih [3E, D_w]`, `w_hh [3E, E]`, `b_ih`, `b_hh [3E]`.
#[derive(Debug)]
pub struct GpuGruDirection {
    pub w_ih: GpuTensor,
    pub w_hh: GpuTensor,
    pub b_ih: GpuTensor,
    pub b_hh: GpuTensor,
    pub hidden: usize,
    pub input: usize,
}

impl GpuGruDirection {
    pub fn upload(ctx: &GpuContext, g: &GruDirection) -> Result<Self> {
        let three_e = g.b_hh.len();
        let e = three_e / 3;
        let dw = g.w_ih.len().checked_div(three_e).unwrap_or(0);
        Ok(GpuGruDirection {
            w_ih: GpuTensor::upload_f32(ctx, &g.w_ih, &[three_e, dw])?,
            w_hh: GpuTensor::upload_f32(ctx, &g.w_hh, &[three_e, e])?,
            b_ih: GpuTensor::upload_f32(ctx, &g.b_ih, &[three_e])?,
            b_hh: GpuTensor::upload_f32(ctx, &g.b_hh, &[three_e])?,
            hidden: e,
            input: dw,
        })
    }
}

/// Visual self-attention (`v_global_w`).
#[derive(Debug)]
pub struct GpuVisualSa {
    pub local: GpuLinear,
    pub local_bn: GpuBatchNorm,
    pub global: GpuLinear,
    pub global_bn: GpuBatchNorm,
    pub common: GpuLinear,
}

impl GpuVisualSa {
    pub fn upload(ctx: &GpuContext, p: &VisualSa) -> Result<Self> {
        Ok(GpuVisualSa {
            local: GpuLinear::upload(ctx, &p.local)?,
            local_bn: GpuBatchNorm::upload(ctx, &p.local_bn)?,
            global: GpuLinear::upload(ctx, &p.global)?,
            global_bn: GpuBatchNorm::upload(ctx, &p.global_bn)?,
            common: GpuLinear::upload(ctx, &p.common)?,
        })
    }
}

/// Text self-attention (`t_global_w`).
#[derive(Debug)]
pub struct GpuTextSa {
    pub local: GpuLinear,
    pub global: GpuLinear,
    pub common: GpuLinear,
}

impl GpuTextSa {
    pub fn upload(ctx: &GpuContext, p: &TextSa) -> Result<Self> {
        Ok(GpuTextSa {
            local: GpuLinear::upload(ctx, &p.local)?,
            global: GpuLinear::upload(ctx, &p.global)?,
            common: GpuLinear::upload(ctx, &p.common)?,
        })
    }
}

/// One SGR step.
#[derive(Debug)]
pub struct GpuSgrStep {
    pub query: GpuLinear,
    pub key: GpuLinear,
    pub graph: GpuLinear,
}

impl GpuSgrStep {
    pub fn upload(ctx: &GpuContext, p: &SgrStep) -> Result<Self> {
        Ok(GpuSgrStep {
            query: GpuLinear::upload(ctx, &p.query)?,
            key: GpuLinear::upload(ctx, &p.key)?,
            graph: GpuLinear::upload(ctx, &p.graph)?,
        })
    }
}

/// SAF filtration.
#[derive(Debug)]
pub struct GpuSaf {
    pub attn: GpuLinear,
    pub bn: GpuBatchNorm,
}

impl GpuSaf {
    pub fn upload(ctx: &GpuContext, p: &Saf) -> Result<Self> {
        Ok(GpuSaf { attn: GpuLinear::upload(ctx, &p.attn)?, bn: GpuBatchNorm::upload(ctx, &p.bn)? })
    }
}

#[derive(Debug)]
pub enum GpuReasoning {
    Sgr(Vec<GpuSgrStep>),
    Saf(Box<GpuSaf>),
}

/// All parameters of one model on the GPU.
#[derive(Debug)]
pub struct GpuParams {
    pub cfg: crate::model::params::Config,
    pub img_fc: GpuLinear,
    pub embed: GpuTensor, // [V, D_w]
    pub gru_fwd: GpuGruDirection,
    pub gru_bwd: GpuGruDirection,
    pub v_sa: GpuVisualSa,
    pub t_sa: GpuTextSa,
    pub sim_loc: GpuLinear,
    pub sim_glo: GpuLinear,
    pub sim_eval: GpuLinear,
    pub reasoning: GpuReasoning,
}

impl GpuParams {
    pub fn upload(ctx: &GpuContext, p: &Params) -> Result<Self> {
        Ok(GpuParams {
            cfg: p.cfg,
            img_fc: GpuLinear::upload(ctx, &p.img_fc)?,
            embed: GpuTensor::upload_f32(ctx, &p.embed, &[p.cfg.vocab, p.cfg.word_dim])?,
            gru_fwd: GpuGruDirection::upload(ctx, &p.gru_fwd)?,
            gru_bwd: GpuGruDirection::upload(ctx, &p.gru_bwd)?,
            v_sa: GpuVisualSa::upload(ctx, &p.v_sa)?,
            t_sa: GpuTextSa::upload(ctx, &p.t_sa)?,
            sim_loc: GpuLinear::upload(ctx, &p.sim_loc)?,
            sim_glo: GpuLinear::upload(ctx, &p.sim_glo)?,
            sim_eval: GpuLinear::upload(ctx, &p.sim_eval)?,
            reasoning: match &p.reasoning {
                Reasoning::Sgr(steps) => {
                    GpuReasoning::Sgr(steps.iter().map(|s| GpuSgrStep::upload(ctx, s)).collect::<Result<_>>()?)
                }
                Reasoning::Saf(saf) => GpuReasoning::Saf(Box::new(GpuSaf::upload(ctx, saf)?)),
            },
        })
    }
}

impl GpuParams {
    /// The trainable tensors in the official order, the order of
    /// `train::grads::trainable` (clipping and Adam walk this list).
    pub fn trainable(&self) -> Vec<&GpuTensor> {
        let mut v: Vec<&GpuTensor> = vec![&self.img_fc.w, &self.img_fc.b, &self.embed];
        for g in [&self.gru_fwd, &self.gru_bwd] {
            v.extend([&g.w_ih, &g.w_hh, &g.b_ih, &g.b_hh]);
        }
        let s = &self.v_sa;
        v.extend([&s.local.w, &s.local.b, &s.local_bn.weight, &s.local_bn.bias]);
        v.extend([&s.global.w, &s.global.b, &s.global_bn.weight, &s.global_bn.bias, &s.common.w, &s.common.b]);
        let t = &self.t_sa;
        v.extend([&t.local.w, &t.local.b, &t.global.w, &t.global.b, &t.common.w, &t.common.b]);
        for l in [&self.sim_loc, &self.sim_glo, &self.sim_eval] {
            v.extend([&l.w, &l.b]);
        }
        match &self.reasoning {
            GpuReasoning::Sgr(steps) => {
                for st in steps {
                    for l in [&st.query, &st.key, &st.graph] {
                        v.extend([&l.w, &l.b]);
                    }
                }
            }
            GpuReasoning::Saf(saf) => v.extend([&saf.attn.w, &saf.attn.b, &saf.bn.weight, &saf.bn.bias]),
        }
        v
    }

    /// Every BatchNorm of the model (VisualSA local, global, then SAF's).
    fn batch_norms(&self) -> Vec<&GpuBatchNorm> {
        let mut v = vec![&self.v_sa.local_bn, &self.v_sa.global_bn];
        if let GpuReasoning::Saf(saf) = &self.reasoning {
            v.push(&saf.bn);
        }
        v
    }

    /// Reads every tensor back into `p`, which must have this model's
    /// configuration: the trainable tensors, the BatchNorm running statistics
    /// and `num_batches_tracked`. One readback.
    pub async fn download_into(&self, ctx: &GpuContext, p: &mut Params) -> Result<()> {
        let mut tensors = self.trainable();
        let bns = self.batch_norms();
        for bn in &bns {
            tensors.extend([&bn.running_mean, &bn.running_var]);
        }
        let mut vals = read_f32_many(ctx, &tensors).await?.into_iter();
        let dst = crate::train::grads::trainable_mut(p);
        if dst.len() + 2 * bns.len() != tensors.len() {
            return Err(crate::error::SgrafError::Input(format!(
                "download: the host model has {} trainable tensors, the GPU one {}",
                dst.len(),
                tensors.len() - 2 * bns.len()
            )));
        }
        for d in dst {
            let v = vals.next().unwrap_or_default();
            if v.len() != d.len() {
                return Err(crate::error::SgrafError::Input(format!(
                    "download: a tensor of {} values into one of {}",
                    v.len(),
                    d.len()
                )));
            }
            d.copy_from_slice(&v);
        }
        let mut host_bns = vec![&mut p.v_sa.local_bn, &mut p.v_sa.global_bn];
        if let Reasoning::Saf(saf) = &mut p.reasoning {
            host_bns.push(&mut saf.bn);
        }
        for (h, g) in host_bns.into_iter().zip(bns) {
            h.running_mean = vals.next().unwrap_or_default();
            h.running_var = vals.next().unwrap_or_default();
            h.num_batches_tracked = g.num_batches_tracked;
        }
        Ok(())
    }
}

/// A [`TileLayout`] with its index tables on the GPU (all `u32`).
#[derive(Debug)]
pub struct GpuLayout {
    pub host: TileLayout,
    pub lengths: GpuTensor,  // [n_cap]
    pub word_off: GpuTensor, // [n_cap + 1]
    pub node_off: GpuTensor, // [n_cap + 1]
    pub word_cap: GpuTensor, // [n_words], caption of each packed word row
    /// `[n_cap + 1]`: offset of caption c's `(L_c+1)²` SGR attention block
    /// among one image's blocks.
    pub sq_off: GpuTensor,
    /// `Σ_c (L_c+1)²`, attention entries per image.
    pub sq_total: usize,
}

impl GpuLayout {
    pub fn upload(ctx: &GpuContext, lay: &TileLayout) -> Result<Self> {
        let u = |v: &[usize]| v.iter().map(|&x| x as u32).collect::<Vec<u32>>();
        let n_cap = lay.n_cap();
        let mut sq_off = vec![0usize];
        for c in 0..n_cap {
            let m = lay.nodes(c).len();
            sq_off.push(sq_off[c] + m * m);
        }
        Ok(GpuLayout {
            sq_total: sq_off[n_cap],
            sq_off: GpuTensor::upload_u32(ctx, &u(&sq_off), &[n_cap + 1])?,
            host: lay.clone(),
            lengths: GpuTensor::upload_u32(ctx, &u(&lay.lengths), &[n_cap])?,
            word_off: GpuTensor::upload_u32(ctx, &u(&lay.word_off), &[n_cap + 1])?,
            node_off: GpuTensor::upload_u32(ctx, &u(&lay.node_off), &[n_cap + 1])?,
            word_cap: GpuTensor::upload_u32(ctx, &lay.caption_of_word(), &[lay.n_words()])?,
        })
    }

    pub fn n_cap(&self) -> usize {
        self.host.n_cap()
    }
    pub fn n_words(&self) -> usize {
        self.host.n_words()
    }
    pub fn n_nodes(&self) -> usize {
        self.host.n_nodes()
    }
}

/// An `f32` tensor with unspecified contents, for outputs that a kernel
/// writes completely (shorthand used by the layer wrappers).
pub(crate) fn scratch(ctx: &GpuContext, shape: &[usize]) -> Result<GpuTensor> {
    GpuTensor::scratch(ctx, shape, DType::F32)
}

/// An `f32` tensor cleared to zero by a command recorded into `encoder`.
pub(crate) fn zeros_in(ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder, shape: &[usize]) -> Result<GpuTensor> {
    GpuTensor::zeros_in(ctx, encoder, shape, DType::F32)
}
