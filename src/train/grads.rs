//! Gradients live in a [`Params`]: the *gradient container* of a model is a
//! `Params` of the same shape ([`Params::zeros_like`]) whose trainable tensors
//! hold ∂loss/∂parameter. Its BatchNorm running buffers are not parameters:
//! they stay zero and are ignored. The Adam moments use the same container.
//!
//! [`trainable`] / [`trainable_mut`] list the trainable tensors in the official
//! state-dict order (the optimizer's parameter order up to a permutation, which
//! Adam and global-norm clipping do not depend on), under their official keys.

use crate::cpu::Real;
use crate::model::params::{expected_keys, BatchNorm, GruDirection, Linear, Params, Reasoning, Saf, SgrStep};

/// `true` for BatchNorm running buffers (state-dict keys that are not parameters).
pub fn is_buffer(key: &str) -> bool {
    key.ends_with("running_mean") || key.ends_with("running_var") || key.ends_with("num_batches_tracked")
}

/// A zero Linear of the same shape.
pub fn zeros_linear<T: Real>(l: &Linear<T>) -> Linear<T> {
    Linear { w: vec![T::ZERO; l.w.len()], b: vec![T::ZERO; l.b.len()], n_out: l.n_out, n_in: l.n_in }
}

/// A zero BatchNorm of the same shape (weight, bias and buffers all 0).
pub fn zeros_bn<T: Real>(b: &BatchNorm<T>) -> BatchNorm<T> {
    let c = b.weight.len();
    BatchNorm {
        weight: vec![T::ZERO; c],
        bias: vec![T::ZERO; c],
        running_mean: vec![T::ZERO; c],
        running_var: vec![T::ZERO; c],
        num_batches_tracked: 0,
    }
}

/// Zero SGR steps or SAF of the same shape.
pub fn zeros_reasoning<T: Real>(r: &Reasoning<T>) -> Reasoning<T> {
    match r {
        Reasoning::Sgr(steps) => Reasoning::Sgr(
            steps
                .iter()
                .map(|s| SgrStep {
                    query: zeros_linear(&s.query),
                    key: zeros_linear(&s.key),
                    graph: zeros_linear(&s.graph),
                })
                .collect(),
        ),
        Reasoning::Saf(s) => Reasoning::Saf(Saf { attn: zeros_linear(&s.attn), bn: zeros_bn(&s.bn) }),
    }
}

/// A zero GRU direction of the same shape.
pub fn zeros_gru<T: Real>(g: &GruDirection<T>) -> GruDirection<T> {
    GruDirection {
        w_ih: vec![T::ZERO; g.w_ih.len()],
        w_hh: vec![T::ZERO; g.w_hh.len()],
        b_ih: vec![T::ZERO; g.b_ih.len()],
        b_hh: vec![T::ZERO; g.b_hh.len()],
    }
}

impl<T: Real> Params<T> {
    /// A gradient container (or Adam moment) for this model: every tensor zero.
    pub fn zeros_like(&self) -> Params<T> {
        use crate::model::params::{TextSa, VisualSa};
        Params {
            cfg: self.cfg,
            img_fc: zeros_linear(&self.img_fc),
            embed: vec![T::ZERO; self.embed.len()],
            gru_fwd: zeros_gru(&self.gru_fwd),
            gru_bwd: zeros_gru(&self.gru_bwd),
            v_sa: VisualSa {
                local: zeros_linear(&self.v_sa.local),
                local_bn: zeros_bn(&self.v_sa.local_bn),
                global: zeros_linear(&self.v_sa.global),
                global_bn: zeros_bn(&self.v_sa.global_bn),
                common: zeros_linear(&self.v_sa.common),
            },
            t_sa: TextSa {
                local: zeros_linear(&self.t_sa.local),
                global: zeros_linear(&self.t_sa.global),
                common: zeros_linear(&self.t_sa.common),
            },
            sim_loc: zeros_linear(&self.sim_loc),
            sim_glo: zeros_linear(&self.sim_glo),
            sim_eval: zeros_linear(&self.sim_eval),
            reasoning: zeros_reasoning(&self.reasoning),
        }
    }
}

/// Keys of the trainable tensors, official order.
pub fn trainable_keys(p: &Params) -> Vec<String> {
    expected_keys(&p.cfg).into_iter().map(|(k, _, _)| k).filter(|k| !is_buffer(k)).collect()
}

/// The trainable tensors, official order (same order as [`trainable_keys`]).
pub fn trainable<T>(p: &Params<T>) -> Vec<&[T]> {
    let mut v: Vec<&[T]> = vec![&p.img_fc.w, &p.img_fc.b, &p.embed];
    for g in [&p.gru_fwd, &p.gru_bwd] {
        v.extend([&g.w_ih[..], &g.w_hh, &g.b_ih, &g.b_hh]);
    }
    let s = &p.v_sa;
    v.extend([&s.local.w[..], &s.local.b, &s.local_bn.weight, &s.local_bn.bias]);
    v.extend([&s.global.w[..], &s.global.b, &s.global_bn.weight, &s.global_bn.bias, &s.common.w, &s.common.b]);
    let t = &p.t_sa;
    v.extend([&t.local.w[..], &t.local.b, &t.global.w, &t.global.b, &t.common.w, &t.common.b]);
    for l in [&p.sim_loc, &p.sim_glo, &p.sim_eval] {
        v.extend([&l.w[..], &l.b]);
    }
    match &p.reasoning {
        Reasoning::Sgr(steps) => {
            for st in steps {
                for l in [&st.query, &st.key, &st.graph] {
                    v.extend([&l.w[..], &l.b]);
                }
            }
        }
        Reasoning::Saf(saf) => v.extend([&saf.attn.w[..], &saf.attn.b, &saf.bn.weight, &saf.bn.bias]),
    }
    v
}

/// Mutable form of [`trainable`], same order.
pub fn trainable_mut<T>(p: &mut Params<T>) -> Vec<&mut [T]> {
    let mut v: Vec<&mut [T]> = vec![&mut p.img_fc.w, &mut p.img_fc.b, &mut p.embed];
    for g in [&mut p.gru_fwd, &mut p.gru_bwd] {
        v.extend([&mut g.w_ih[..], &mut g.w_hh, &mut g.b_ih, &mut g.b_hh]);
    }
    let s = &mut p.v_sa;
    v.extend([&mut s.local.w[..], &mut s.local.b, &mut s.local_bn.weight, &mut s.local_bn.bias]);
    v.extend([
        &mut s.global.w[..],
        &mut s.global.b,
        &mut s.global_bn.weight,
        &mut s.global_bn.bias,
        &mut s.common.w,
        &mut s.common.b,
    ]);
    let t = &mut p.t_sa;
    v.extend([&mut t.local.w[..], &mut t.local.b, &mut t.global.w, &mut t.global.b, &mut t.common.w, &mut t.common.b]);
    for l in [&mut p.sim_loc, &mut p.sim_glo, &mut p.sim_eval] {
        v.extend([&mut l.w[..], &mut l.b]);
    }
    match &mut p.reasoning {
        Reasoning::Sgr(steps) => {
            for st in steps {
                for l in [&mut st.query, &mut st.key, &mut st.graph] {
                    v.extend([&mut l.w[..], &mut l.b]);
                }
            }
        }
        Reasoning::Saf(saf) => v.extend([&mut saf.attn.w[..], &mut saf.attn.b, &mut saf.bn.weight, &mut saf.bn.bias]),
    }
    v
}

/// `dst += src` over every trainable tensor.
pub fn add_grads(dst: &mut Params, src: &Params) {
    for (d, s) in trainable_mut(dst).into_iter().zip(trainable(src)) {
        crate::cpu::add_into(d, s);
    }
}
