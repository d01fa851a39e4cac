//! Text self-attention `t_global_w` (spec §5.2), per caption over its own words.

use crate::model::layout::TileLayout;
use crate::model::params::TextSa;

/// `t [n_words, E]` (packed words) → `t_glo [n_cap, E]`.
pub fn forward(t: &[f32], p: &TextSa, lay: &TileLayout, e: usize) -> Vec<f32> {
    let (nw, nc) = (lay.n_words(), lay.n_cap());
    let mut l = vec![0.0; nw * e]; // [n_words, E]
    super::linear::forward(t, &p.local.w, Some(&p.local.b), &mut l, nw, e, e);
    l.iter_mut().for_each(|x| *x = x.tanh());
    let mut mean = vec![0.0; nc * e]; // [n_cap, E]
    for c in 0..nc {
        let m = &mut mean[c * e..(c + 1) * e];
        for w in lay.words(c) {
            for k in 0..e {
                m[k] += t[w * e + k];
            }
        }
        let len = lay.lengths[c] as f32;
        m.iter_mut().for_each(|x| *x /= len);
    }
    let mut g = vec![0.0; nc * e]; // [n_cap, E]
    super::linear::forward(&mean, &p.global.w, Some(&p.global.b), &mut g, nc, e, e);
    g.iter_mut().for_each(|x| *x = x.tanh());
    let mut out = vec![0.0; nc * e];
    for c in 0..nc {
        let gc = &g[c * e..(c + 1) * e];
        let mut w: Vec<f32> = lay
            .words(c)
            .map(|wi| {
                let lw = &l[wi * e..(wi + 1) * e];
                lw.iter().zip(gc).zip(&p.common.w).map(|((a, b), c)| a * b * c).sum::<f32>() + p.common.b[0]
            })
            .collect();
        super::softmax(&mut w);
        let o = &mut out[c * e..(c + 1) * e];
        for (j, wi) in lay.words(c).enumerate() {
            for k in 0..e {
                o[k] += w[j] * t[wi * e + k];
            }
        }
    }
    super::l2norm::forward(&mut out, e);
    out
}
