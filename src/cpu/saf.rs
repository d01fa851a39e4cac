//! Similarity Attention Filtration (spec §6.6): per-node weights
//! `l1norm(σ(BN(Linear_a(X))))`, then `l2norm(Σ β X)`.

use super::batchnorm::{self, BnStats};
use crate::model::layout::TileLayout;
use crate::model::params::{Mode, Saf};

/// What SAF computed besides its output.
#[derive(Clone, Debug, Default)]
pub struct SafTrace {
    pub bn_out: Vec<f32>,       // [n_img, n_nodes], BN output before σ
    pub weights: Vec<f32>,      // [n_img, n_nodes], normalised β
    pub bn_stats: Vec<BnStats>, // [n_cap] in caption order (train mode)
}

/// `nodes [n_img, n_nodes, S]` → `s [n_img, n_cap, S]`. In train mode the
/// BatchNorm statistics of caption c are taken over all n_img × (L_c+1) values.
pub fn forward(nodes: &[f32], p: &Saf, lay: &TileLayout, n_img: usize, mode: Mode) -> (Vec<f32>, SafTrace) {
    let (s, nn, nc) = (p.attn.n_in, lay.n_nodes(), lay.n_cap());
    let mut beta = vec![0.0; n_img * nn]; // [n_img, n_nodes]
    super::linear::forward(nodes, &p.attn.w, Some(&p.attn.b), &mut beta, n_img * nn, s, 1);
    let mut stats = Vec::new();
    let mut buf = Vec::new();
    for c in 0..nc {
        let r = lay.nodes(c);
        buf.clear();
        for i in 0..n_img {
            buf.extend_from_slice(&beta[i * nn + r.start..i * nn + r.end]);
        }
        // BatchNorm1d(1) on [n_img, 1, L+1]
        if let Some(st) = batchnorm::forward(&mut buf, &p.bn, mode, n_img, 1, r.len()) {
            stats.push(st);
        }
        for i in 0..n_img {
            beta[i * nn + r.start..i * nn + r.end].copy_from_slice(&buf[i * r.len()..(i + 1) * r.len()]);
        }
    }
    let bn_out = beta.clone();
    let mut out = vec![0.0; n_img * nc * s];
    for i in 0..n_img {
        for c in 0..nc {
            let r = lay.nodes(c);
            let b = &mut beta[i * nn + r.start..i * nn + r.end];
            b.iter_mut().for_each(|x| *x = super::sigmoid(*x));
            let sum = b.iter().map(|x| x.abs()).sum::<f32>() + 1e-8;
            b.iter_mut().for_each(|x| *x /= sum);
            let o = &mut out[(i * nc + c) * s..(i * nc + c + 1) * s];
            for (j, n) in r.enumerate() {
                let xn = &nodes[(i * nn + n) * s..(i * nn + n + 1) * s];
                for k in 0..s {
                    o[k] += b[j] * xn[k];
                }
            }
        }
    }
    super::l2norm::forward(&mut out, s);
    (out, SafTrace { bn_out, weights: beta, bn_stats: stats })
}
