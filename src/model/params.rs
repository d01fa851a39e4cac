//! SGRAF parameters under the official state-dict names, and their
//! safetensors checkpoint format.
//!
//! A checkpoint holds exactly the keys of the three official state dicts,
//! prefixed `img_enc.`, `txt_enc.`, `sim_enc.` (spec §11.2), BatchNorm
//! buffers included. Every size and the module are inferred from the keys
//! and shapes; a missing, extra or mis-shaped key is an error naming it.

use std::collections::BTreeMap;

use crate::error::{Result, SgrafError};

/// Number of regions per image; hard-coded in the official VisualSA.
pub const N_REGIONS: usize = 36;

/// Which reasoning module follows the similarity vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Module {
    /// Similarity Graph Reasoning with `steps` unshared steps.
    Sgr { steps: usize },
    /// Similarity Attention Filtration.
    Saf,
}

impl Module {
    pub fn name(&self) -> &'static str {
        match self {
            Module::Sgr { .. } => "SGR",
            Module::Saf => "SAF",
        }
    }
}

/// Sizes of one model, all inferred from a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub img_dim: usize,  // D_img, 2048 by default
    pub word_dim: usize, // D_w, 300
    pub embed: usize,    // E, 1024
    pub sim_dim: usize,  // S, 256
    pub vocab: usize,    // V
    pub module: Module,
}

impl Config {
    /// The official default sizes (Flickr30K vocabulary).
    pub fn default_sizes(module: Module) -> Config {
        Config { img_dim: 2048, word_dim: 300, embed: 1024, sim_dim: 256, vocab: 8481, module }
    }
}

/// Whether BatchNorm uses running statistics (eval) or batch statistics (train).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Eval,
    Train,
}

// The parameter structs are generic over the float type like the CPU layers
// (`crate::cpu::Real`): `f32` everywhere in the model, `f64` in the gradient
// checks ([`Params::map`] converts).

/// `y = x·Wᵀ + b`.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear<T = f32> {
    pub w: Vec<T>, // [n_out, n_in]
    pub b: Vec<T>, // [n_out]
    pub n_out: usize,
    pub n_in: usize,
}

/// BatchNorm1d affine parameters and running buffers.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm<T = f32> {
    pub weight: Vec<T>,       // [C]
    pub bias: Vec<T>,         // [C]
    pub running_mean: Vec<T>, // [C]
    pub running_var: Vec<T>,  // [C]
    pub num_batches_tracked: i64,
}

/// One direction of the bidirectional GRU; gate row blocks ordered r, z, n.
#[derive(Clone, Debug, PartialEq)]
pub struct GruDirection<T = f32> {
    pub w_ih: Vec<T>, // [3E, D_w]
    pub w_hh: Vec<T>, // [3E, E]
    pub b_ih: Vec<T>, // [3E]
    pub b_hh: Vec<T>, // [3E]
}

/// Visual self-attention (`v_global_w`).
#[derive(Clone, Debug, PartialEq)]
pub struct VisualSa<T = f32> {
    pub local: Linear<T>,        // [E, E]
    pub local_bn: BatchNorm<T>,  // C = 36 region slots
    pub global: Linear<T>,       // [E, E]
    pub global_bn: BatchNorm<T>, // C = E features
    pub common: Linear<T>,       // [1, E]
}

/// Text self-attention (`t_global_w`), no BatchNorm.
#[derive(Clone, Debug, PartialEq)]
pub struct TextSa<T = f32> {
    pub local: Linear<T>,  // [E, E]
    pub global: Linear<T>, // [E, E]
    pub common: Linear<T>, // [1, E]
}

/// One SGR reasoning step (`SGR_module.k`).
#[derive(Clone, Debug, PartialEq)]
pub struct SgrStep<T = f32> {
    pub query: Linear<T>, // [S, S]
    pub key: Linear<T>,   // [S, S]
    pub graph: Linear<T>, // [S, S]
}

/// SAF filtration (`SAF_module`).
#[derive(Clone, Debug, PartialEq)]
pub struct Saf<T = f32> {
    pub attn: Linear<T>,  // [1, S]
    pub bn: BatchNorm<T>, // C = 1
}

#[derive(Clone, Debug, PartialEq)]
pub enum Reasoning<T = f32> {
    Sgr(Vec<SgrStep<T>>),
    Saf(Saf<T>),
}

/// All parameters of one SGR or SAF model.
#[derive(Clone, Debug, PartialEq)]
pub struct Params<T = f32> {
    pub cfg: Config,
    pub img_fc: Linear<T>,        // [E, D_img]
    pub embed: Vec<T>,            // [V, D_w]
    pub gru_fwd: GruDirection<T>, // cap_rnn.*_l0
    pub gru_bwd: GruDirection<T>, // cap_rnn.*_l0_reverse
    pub v_sa: VisualSa<T>,
    pub t_sa: TextSa<T>,
    pub sim_loc: Linear<T>,  // [S, E]
    pub sim_glo: Linear<T>,  // [S, E]
    pub sim_eval: Linear<T>, // [1, S]
    pub reasoning: Reasoning<T>,
}

fn map_vec<T: Copy, U>(v: &[T], f: impl Fn(T) -> U) -> Vec<U> {
    v.iter().map(|&x| f(x)).collect()
}

impl<T: Copy> Linear<T> {
    /// The same layer with every value converted by `f`.
    pub fn map<U>(&self, f: impl Fn(T) -> U + Copy) -> Linear<U> {
        Linear { w: map_vec(&self.w, f), b: map_vec(&self.b, f), n_out: self.n_out, n_in: self.n_in }
    }
}

impl<T: Copy> BatchNorm<T> {
    /// The same layer (buffers included) with every value converted by `f`.
    pub fn map<U>(&self, f: impl Fn(T) -> U + Copy) -> BatchNorm<U> {
        BatchNorm {
            weight: map_vec(&self.weight, f),
            bias: map_vec(&self.bias, f),
            running_mean: map_vec(&self.running_mean, f),
            running_var: map_vec(&self.running_var, f),
            num_batches_tracked: self.num_batches_tracked,
        }
    }
}

impl<T: Copy> GruDirection<T> {
    /// The same direction with every value converted by `f`.
    pub fn map<U>(&self, f: impl Fn(T) -> U + Copy) -> GruDirection<U> {
        GruDirection {
            w_ih: map_vec(&self.w_ih, f),
            w_hh: map_vec(&self.w_hh, f),
            b_ih: map_vec(&self.b_ih, f),
            b_hh: map_vec(&self.b_hh, f),
        }
    }
}

impl<T: Copy> Params<T> {
    /// The same model with every value converted by `f` (e.g. `|x| x as f64`
    /// for the float64 gradient checks).
    pub fn map<U>(&self, f: impl Fn(T) -> U + Copy) -> Params<U> {
        let (v, t) = (&self.v_sa, &self.t_sa);
        Params {
            cfg: self.cfg,
            img_fc: self.img_fc.map(f),
            embed: map_vec(&self.embed, f),
            gru_fwd: self.gru_fwd.map(f),
            gru_bwd: self.gru_bwd.map(f),
            v_sa: VisualSa {
                local: v.local.map(f),
                local_bn: v.local_bn.map(f),
                global: v.global.map(f),
                global_bn: v.global_bn.map(f),
                common: v.common.map(f),
            },
            t_sa: TextSa { local: t.local.map(f), global: t.global.map(f), common: t.common.map(f) },
            sim_loc: self.sim_loc.map(f),
            sim_glo: self.sim_glo.map(f),
            sim_eval: self.sim_eval.map(f),
            reasoning: match &self.reasoning {
                Reasoning::Sgr(steps) => Reasoning::Sgr(
                    steps
                        .iter()
                        .map(|st| SgrStep { query: st.query.map(f), key: st.key.map(f), graph: st.graph.map(f) })
                        .collect(),
                ),
                Reasoning::Saf(saf) => Reasoning::Saf(Saf { attn: saf.attn.map(f), bn: saf.bn.map(f) }),
            },
        }
    }
}

/// A tensor as read from or written to a checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub enum RawTensor {
    F32 { shape: Vec<usize>, data: Vec<f32> },
    I64 { shape: Vec<usize>, data: Vec<i64> },
}

impl RawTensor {
    pub fn shape(&self) -> &[usize] {
        match self {
            RawTensor::F32 { shape, .. } | RawTensor::I64 { shape, .. } => shape,
        }
    }
}

/// Every key of a model with this config, in official order, with its shape.
/// `None` dtype flag marks the int64 `num_batches_tracked` scalars.
pub fn expected_keys(cfg: &Config) -> Vec<(String, Vec<usize>, bool)> {
    let (e, s, dw, di, v) = (cfg.embed, cfg.sim_dim, cfg.word_dim, cfg.img_dim, cfg.vocab);
    let mut k: Vec<(String, Vec<usize>, bool)> = Vec::new();
    let mut f = |name: &str, shape: &[usize]| k.push((name.to_string(), shape.to_vec(), false));
    f("img_enc.fc.weight", &[e, di]);
    f("img_enc.fc.bias", &[e]);
    f("txt_enc.embed.weight", &[v, dw]);
    for sfx in ["", "_reverse"] {
        f(&format!("txt_enc.cap_rnn.weight_ih_l0{sfx}"), &[3 * e, dw]);
        f(&format!("txt_enc.cap_rnn.weight_hh_l0{sfx}"), &[3 * e, e]);
        f(&format!("txt_enc.cap_rnn.bias_ih_l0{sfx}"), &[3 * e]);
        f(&format!("txt_enc.cap_rnn.bias_hh_l0{sfx}"), &[3 * e]);
    }
    let p = "sim_enc.v_global_w";
    f(&format!("{p}.embedding_local.0.weight"), &[e, e]);
    f(&format!("{p}.embedding_local.0.bias"), &[e]);
    for b in ["weight", "bias", "running_mean", "running_var"] {
        f(&format!("{p}.embedding_local.1.{b}"), &[N_REGIONS]);
    }
    k.push((format!("{p}.embedding_local.1.num_batches_tracked"), vec![], true));
    let mut f = |name: &str, shape: &[usize]| k.push((name.to_string(), shape.to_vec(), false));
    f(&format!("{p}.embedding_global.0.weight"), &[e, e]);
    f(&format!("{p}.embedding_global.0.bias"), &[e]);
    for b in ["weight", "bias", "running_mean", "running_var"] {
        f(&format!("{p}.embedding_global.1.{b}"), &[e]);
    }
    k.push((format!("{p}.embedding_global.1.num_batches_tracked"), vec![], true));
    let mut f = |name: &str, shape: &[usize]| k.push((name.to_string(), shape.to_vec(), false));
    f(&format!("{p}.embedding_common.0.weight"), &[1, e]);
    f(&format!("{p}.embedding_common.0.bias"), &[1]);
    let p = "sim_enc.t_global_w";
    f(&format!("{p}.embedding_local.0.weight"), &[e, e]);
    f(&format!("{p}.embedding_local.0.bias"), &[e]);
    f(&format!("{p}.embedding_global.0.weight"), &[e, e]);
    f(&format!("{p}.embedding_global.0.bias"), &[e]);
    f(&format!("{p}.embedding_common.0.weight"), &[1, e]);
    f(&format!("{p}.embedding_common.0.bias"), &[1]);
    f("sim_enc.sim_tranloc_w.weight", &[s, e]);
    f("sim_enc.sim_tranloc_w.bias", &[s]);
    f("sim_enc.sim_tranglo_w.weight", &[s, e]);
    f("sim_enc.sim_tranglo_w.bias", &[s]);
    f("sim_enc.sim_eval_w.weight", &[1, s]);
    f("sim_enc.sim_eval_w.bias", &[1]);
    match cfg.module {
        Module::Sgr { steps } => {
            for i in 0..steps {
                for l in ["graph_query_w", "graph_key_w", "sim_graph_w"] {
                    f(&format!("sim_enc.SGR_module.{i}.{l}.weight"), &[s, s]);
                    f(&format!("sim_enc.SGR_module.{i}.{l}.bias"), &[s]);
                }
            }
        }
        Module::Saf => {
            f("sim_enc.SAF_module.attn_sim_w.weight", &[1, s]);
            f("sim_enc.SAF_module.attn_sim_w.bias", &[1]);
            for b in ["weight", "bias", "running_mean", "running_var"] {
                f(&format!("sim_enc.SAF_module.bn.{b}"), &[1]);
            }
            k.push(("sim_enc.SAF_module.bn.num_batches_tracked".into(), vec![], true));
        }
    }
    k
}

fn shape_str(s: &[usize]) -> String {
    format!("{s:?}")
}

/// Infers sizes and module from the keys and shapes of a state dict.
pub fn infer_config(t: &BTreeMap<String, RawTensor>, path: &str) -> Result<Config> {
    let err = |msg: String| SgrafError::Checkpoint { path: path.to_string(), msg };
    let get2 = |key: &str| -> Result<(usize, usize)> {
        match t.get(key).map(|x| x.shape()) {
            Some([a, b]) => Ok((*a, *b)),
            Some(s) => Err(err(format!("key {key} has shape {} but a 2-d weight was expected", shape_str(s)))),
            None => Err(err(format!(
                "missing key {key}; is this an sgraf/SGRAF checkpoint with keys prefixed img_enc./txt_enc./sim_enc.?"
            ))),
        }
    };
    let (embed, img_dim) = get2("img_enc.fc.weight")?;
    let (vocab, word_dim) = get2("txt_enc.embed.weight")?;
    let (sim_dim, _) = get2("sim_enc.sim_tranloc_w.weight")?;
    let has_sgr = t.keys().any(|k| k.starts_with("sim_enc.SGR_module."));
    let has_saf = t.keys().any(|k| k.starts_with("sim_enc.SAF_module."));
    let module = match (has_sgr, has_saf) {
        (true, false) => {
            let mut steps = 0;
            while t.contains_key(&format!("sim_enc.SGR_module.{steps}.graph_query_w.weight")) {
                steps += 1;
            }
            if steps == 0 {
                return Err(err("SGR_module keys present but no SGR_module.0.graph_query_w.weight".into()));
            }
            Module::Sgr { steps }
        }
        (false, true) => Module::Saf,
        (true, true) => return Err(err("holds both SGR_module and SAF_module keys".into())),
        (false, false) => {
            return Err(err(
                "holds neither SGR_module nor SAF_module keys (the official code only implements SGR and SAF)".into(),
            ))
        }
    };
    Ok(Config { img_dim, word_dim, embed, sim_dim, vocab, module })
}

impl Params {
    /// Builds parameters from a full state dict, checking every key and shape.
    pub fn from_state(mut t: BTreeMap<String, RawTensor>, path: &str) -> Result<Params> {
        let cfg = infer_config(&t, path)?;
        let err = |msg: String| SgrafError::Checkpoint { path: path.to_string(), msg };
        let expected = expected_keys(&cfg);
        for (key, shape, is_int) in &expected {
            match t.get(key) {
                None => return Err(err(format!("missing key {key} (expected shape {})", shape_str(shape)))),
                Some(x) => {
                    // int64 scalars are written as [] by PyTorch-style exporters and [1] by some others
                    let scalar_ok = *is_int && (x.shape().is_empty() || x.shape() == [1]);
                    if x.shape() != shape.as_slice() && !scalar_ok {
                        return Err(err(format!(
                            "key {key} has shape {} but {} was expected for an {} model with embed {} and sim dim {}",
                            shape_str(x.shape()),
                            shape_str(shape),
                            cfg.module.name(),
                            cfg.embed,
                            cfg.sim_dim
                        )));
                    }
                    let ok = matches!((x, is_int), (RawTensor::F32 { .. }, false) | (RawTensor::I64 { .. }, true));
                    if !ok {
                        let want = if *is_int { "int64" } else { "float32" };
                        return Err(err(format!("key {key} must be {want}")));
                    }
                }
            }
        }
        if t.len() != expected.len() {
            let known: std::collections::BTreeSet<&String> = expected.iter().map(|x| &x.0).collect();
            let extra: Vec<&String> = t.keys().filter(|k| !known.contains(k)).collect();
            return Err(err(format!("unexpected key(s) for a {} model: {:?}", cfg.module.name(), extra)));
        }
        let mut f = |k: &str| -> Vec<f32> {
            match t.remove(k) {
                Some(RawTensor::F32 { data, .. }) => data,
                _ => unreachable!("checked above"),
            }
        };
        let lin = |f: &mut dyn FnMut(&str) -> Vec<f32>, p: &str, n_out: usize, n_in: usize| Linear {
            w: f(&format!("{p}.weight")),
            b: f(&format!("{p}.bias")),
            n_out,
            n_in,
        };
        let (e, s, di) = (cfg.embed, cfg.sim_dim, cfg.img_dim);
        let img_fc = lin(&mut f, "img_enc.fc", e, di);
        let embed = f("txt_enc.embed.weight");
        let gru = |f: &mut dyn FnMut(&str) -> Vec<f32>, sfx: &str| GruDirection {
            w_ih: f(&format!("txt_enc.cap_rnn.weight_ih_l0{sfx}")),
            w_hh: f(&format!("txt_enc.cap_rnn.weight_hh_l0{sfx}")),
            b_ih: f(&format!("txt_enc.cap_rnn.bias_ih_l0{sfx}")),
            b_hh: f(&format!("txt_enc.cap_rnn.bias_hh_l0{sfx}")),
        };
        let gru_fwd = gru(&mut f, "");
        let gru_bwd = gru(&mut f, "_reverse");
        let v_local = lin(&mut f, "sim_enc.v_global_w.embedding_local.0", e, e);
        let v_global = lin(&mut f, "sim_enc.v_global_w.embedding_global.0", e, e);
        let v_common = lin(&mut f, "sim_enc.v_global_w.embedding_common.0", 1, e);
        let t_sa = TextSa {
            local: lin(&mut f, "sim_enc.t_global_w.embedding_local.0", e, e),
            global: lin(&mut f, "sim_enc.t_global_w.embedding_global.0", e, e),
            common: lin(&mut f, "sim_enc.t_global_w.embedding_common.0", 1, e),
        };
        let sim_loc = lin(&mut f, "sim_enc.sim_tranloc_w", s, e);
        let sim_glo = lin(&mut f, "sim_enc.sim_tranglo_w", s, e);
        let sim_eval = lin(&mut f, "sim_enc.sim_eval_w", 1, s);
        let reasoning = match cfg.module {
            Module::Sgr { steps } => Reasoning::Sgr(
                (0..steps)
                    .map(|i| SgrStep {
                        query: lin(&mut f, &format!("sim_enc.SGR_module.{i}.graph_query_w"), s, s),
                        key: lin(&mut f, &format!("sim_enc.SGR_module.{i}.graph_key_w"), s, s),
                        graph: lin(&mut f, &format!("sim_enc.SGR_module.{i}.sim_graph_w"), s, s),
                    })
                    .collect(),
            ),
            Module::Saf => {
                let attn = lin(&mut f, "sim_enc.SAF_module.attn_sim_w", 1, s);
                Reasoning::Saf(Saf { attn, bn: take_bn(&mut t, "sim_enc.SAF_module.bn") })
            }
        };
        let v_sa = VisualSa {
            local: v_local,
            local_bn: take_bn(&mut t, "sim_enc.v_global_w.embedding_local.1"),
            global: v_global,
            global_bn: take_bn(&mut t, "sim_enc.v_global_w.embedding_global.1"),
            common: v_common,
        };
        Ok(Params { cfg, img_fc, embed, gru_fwd, gru_bwd, v_sa, t_sa, sim_loc, sim_glo, sim_eval, reasoning })
    }

    /// The full state dict under the official keys (inverse of [`Params::from_state`]).
    pub fn to_state(&self) -> BTreeMap<String, RawTensor> {
        let mut t = BTreeMap::new();
        let mut vals: Vec<RawTensor> = Vec::new();
        let f32s = |v: &Vec<f32>, shape: &[usize]| RawTensor::F32 { shape: shape.to_vec(), data: v.clone() };
        let push_lin = |vals: &mut Vec<RawTensor>, l: &Linear| {
            vals.push(f32s(&l.w, &[l.n_out, l.n_in]));
            vals.push(f32s(&l.b, &[l.n_out]));
        };
        let push_bn = |vals: &mut Vec<RawTensor>, b: &BatchNorm| {
            let c = b.weight.len();
            for v in [&b.weight, &b.bias, &b.running_mean, &b.running_var] {
                vals.push(f32s(v, &[c]));
            }
            vals.push(RawTensor::I64 { shape: vec![], data: vec![b.num_batches_tracked] });
        };
        let c = &self.cfg;
        push_lin(&mut vals, &self.img_fc);
        vals.push(f32s(&self.embed, &[c.vocab, c.word_dim]));
        for g in [&self.gru_fwd, &self.gru_bwd] {
            vals.push(f32s(&g.w_ih, &[3 * c.embed, c.word_dim]));
            vals.push(f32s(&g.w_hh, &[3 * c.embed, c.embed]));
            vals.push(f32s(&g.b_ih, &[3 * c.embed]));
            vals.push(f32s(&g.b_hh, &[3 * c.embed]));
        }
        push_lin(&mut vals, &self.v_sa.local);
        push_bn(&mut vals, &self.v_sa.local_bn);
        push_lin(&mut vals, &self.v_sa.global);
        push_bn(&mut vals, &self.v_sa.global_bn);
        push_lin(&mut vals, &self.v_sa.common);
        push_lin(&mut vals, &self.t_sa.local);
        push_lin(&mut vals, &self.t_sa.global);
        push_lin(&mut vals, &self.t_sa.common);
        push_lin(&mut vals, &self.sim_loc);
        push_lin(&mut vals, &self.sim_glo);
        push_lin(&mut vals, &self.sim_eval);
        match &self.reasoning {
            Reasoning::Sgr(steps) => {
                for st in steps {
                    push_lin(&mut vals, &st.query);
                    push_lin(&mut vals, &st.key);
                    push_lin(&mut vals, &st.graph);
                }
            }
            Reasoning::Saf(saf) => {
                push_lin(&mut vals, &saf.attn);
                push_bn(&mut vals, &saf.bn);
            }
        }
        let keys = expected_keys(c);
        debug_assert_eq!(keys.len(), vals.len());
        for ((k, _, _), v) in keys.into_iter().zip(vals) {
            t.insert(k, v);
        }
        t
    }

    /// Reads a safetensors checkpoint from memory.
    pub fn from_safetensors_bytes(bytes: &[u8], path: &str) -> Result<Params> {
        Params::from_state(read_safetensors(bytes, path)?, path)
    }

    /// Serialises to safetensors with optional metadata.
    pub fn to_safetensors_bytes(&self, metadata: Option<std::collections::HashMap<String, String>>) -> Result<Vec<u8>> {
        write_safetensors(&self.to_state(), metadata)
    }

    /// Reads a checkpoint file (safetensors).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(path: &std::path::Path) -> Result<Params> {
        let bytes = std::fs::read(path).map_err(|e| SgrafError::io(path, e))?;
        Params::from_safetensors_bytes(&bytes, &path.display().to_string())
    }

    /// Number of trainable parameters (BatchNorm running buffers excluded).
    pub fn n_trainable(&self) -> usize {
        self.to_state()
            .iter()
            .filter(|(k, _)| {
                !k.ends_with("running_mean") && !k.ends_with("running_var") && !k.ends_with("num_batches_tracked")
            })
            .map(|(_, v)| v.shape().iter().product::<usize>())
            .sum()
    }
}

fn take_bn(t: &mut BTreeMap<String, RawTensor>, p: &str) -> BatchNorm {
    let mut f = |k: &str| match t.remove(&format!("{p}.{k}")) {
        Some(RawTensor::F32 { data, .. }) => data,
        _ => unreachable!("checked"),
    };
    let weight = f("weight");
    let bias = f("bias");
    let running_mean = f("running_mean");
    let running_var = f("running_var");
    let num_batches_tracked = match t.remove(&format!("{p}.num_batches_tracked")) {
        Some(RawTensor::I64 { data, .. }) => data.first().copied().unwrap_or(0),
        _ => unreachable!("checked"),
    };
    BatchNorm { weight, bias, running_mean, running_var, num_batches_tracked }
}

/// Reads every tensor of a safetensors file (float32, float64 → float32, int64).
pub fn read_safetensors(bytes: &[u8], path: &str) -> Result<BTreeMap<String, RawTensor>> {
    use safetensors::{Dtype, SafeTensors};
    let err = |msg: String| SgrafError::Checkpoint { path: path.to_string(), msg };
    let st = SafeTensors::deserialize(bytes).map_err(|e| err(format!("not a valid safetensors file: {e}")))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let d = view.data();
        let t = match view.dtype() {
            Dtype::F32 => RawTensor::F32 {
                shape,
                data: d.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            },
            Dtype::F64 => RawTensor::F32 {
                shape,
                data: d.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect(),
            },
            Dtype::I64 => RawTensor::I64 {
                shape,
                data: d.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect(),
            },
            other => {
                return Err(err(format!("tensor {name} has dtype {other:?}; only F32, F64 and I64 are supported")))
            }
        };
        out.insert(name, t);
    }
    Ok(out)
}

/// Writes tensors as a safetensors file image.
pub fn write_safetensors(
    t: &BTreeMap<String, RawTensor>,
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<Vec<u8>> {
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    let bytes: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = t
        .iter()
        .map(|(k, v)| match v {
            RawTensor::F32 { shape, data } => {
                (k.clone(), Dtype::F32, shape.clone(), data.iter().flat_map(|x| x.to_le_bytes()).collect())
            }
            RawTensor::I64 { shape, data } => {
                (k.clone(), Dtype::I64, shape.clone(), data.iter().flat_map(|x| x.to_le_bytes()).collect())
            }
        })
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(k, dt, s, b)| (k.clone(), TensorView::new(*dt, s.clone(), b).expect("consistent shape")))
        .collect();
    safetensors::serialize(views, metadata)
        .map_err(|e| SgrafError::Checkpoint { path: "<memory>".into(), msg: e.to_string() })
}
