//! Fresh parameters as the official code initialises them (spec §7), from a
//! seed, and the nominal cost of scoring one pair.

use super::params::*;

/// SplitMix64: a small, well-mixed seeded generator.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Uniform in [−r, r).
    pub fn sym(&mut self, r: f32) -> f32 {
        (self.uniform() * 2.0 - 1.0) * r
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

fn xavier(rng: &mut Rng, n_out: usize, n_in: usize) -> Linear {
    let r = (6.0f32 / (n_in + n_out) as f32).sqrt();
    Linear { w: (0..n_out * n_in).map(|_| rng.sym(r)).collect(), b: vec![0.0; n_out], n_out, n_in }
}

fn bn(c: usize) -> BatchNorm {
    BatchNorm {
        weight: vec![1.0; c],
        bias: vec![0.0; c],
        running_mean: vec![0.0; c],
        running_var: vec![1.0; c],
        num_batches_tracked: 0,
    }
}

impl Params {
    /// The official initialisation: Xavier-uniform linears with zero bias,
    /// embedding U(−0.1, 0.1), GRU U(±1/sqrt(E)), BatchNorm identity.
    pub fn init(cfg: Config, seed: u64) -> Params {
        let mut rng = Rng(seed);
        let (e, s, dw, di, v) = (cfg.embed, cfg.sim_dim, cfg.word_dim, cfg.img_dim, cfg.vocab);
        let img_fc = xavier(&mut rng, e, di);
        let embed = (0..v * dw).map(|_| rng.sym(0.1)).collect();
        let k = 1.0 / (e as f32).sqrt();
        let gru = |rng: &mut Rng| GruDirection {
            w_ih: (0..3 * e * dw).map(|_| rng.sym(k)).collect(),
            w_hh: (0..3 * e * e).map(|_| rng.sym(k)).collect(),
            b_ih: (0..3 * e).map(|_| rng.sym(k)).collect(),
            b_hh: (0..3 * e).map(|_| rng.sym(k)).collect(),
        };
        let gru_fwd = gru(&mut rng);
        let gru_bwd = gru(&mut rng);
        let v_sa = VisualSa {
            local: xavier(&mut rng, e, e),
            local_bn: bn(N_REGIONS),
            global: xavier(&mut rng, e, e),
            global_bn: bn(e),
            common: xavier(&mut rng, 1, e),
        };
        let t_sa =
            TextSa { local: xavier(&mut rng, e, e), global: xavier(&mut rng, e, e), common: xavier(&mut rng, 1, e) };
        let sim_loc = xavier(&mut rng, s, e);
        let sim_glo = xavier(&mut rng, s, e);
        let sim_eval = xavier(&mut rng, 1, s);
        let reasoning = match cfg.module {
            Module::Sgr { steps } => Reasoning::Sgr(
                (0..steps)
                    .map(|_| SgrStep {
                        query: xavier(&mut rng, s, s),
                        key: xavier(&mut rng, s, s),
                        graph: xavier(&mut rng, s, s),
                    })
                    .collect(),
            ),
            Module::Saf => Reasoning::Saf(Saf { attn: xavier(&mut rng, 1, s), bn: bn(1) }),
        };
        Params { cfg, img_fc, embed, gru_fwd, gru_bwd, v_sa, t_sa, sim_loc, sim_glo, sim_eval, reasoning }
    }
}

/// Nominal floating-point operations to score one (image, caption) pair with a
/// caption of `l` tokens, as the official per-pair computation does them
/// (spec §10.5): attention, local and global similarity, SGR or SAF, head.
pub fn flops_per_pair(cfg: &Config, l: usize) -> f64 {
    let (e, s, r, l) = (cfg.embed as f64, cfg.sim_dim as f64, N_REGIONS as f64, l as f64);
    let attention = 2.0 * (2.0 * r * e * l);
    let local = 2.0 * l * e * s;
    let global = 2.0 * e * s;
    let reasoning = match cfg.module {
        Module::Sgr { steps } => 2.0 * steps as f64 * (3.0 * (l + 1.0) * s * s + 2.0 * (l + 1.0) * (l + 1.0) * s),
        Module::Saf => 2.0 * 2.0 * (l + 1.0) * s,
    };
    attention + local + global + reasoning + 2.0 * s
}
