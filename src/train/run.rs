//! The training loop of `sgraf train` (spec §9.3): epochs over the `train`
//! split in batches, the official step schedule, validation on the first
//! 1 000 `dev` images, and checkpoints that let `--resume` continue exactly.
//!
//! Files in the output folder (all written atomically: temp file, then rename):
//! - `last.safetensors`, `best.safetensors`: parameters under the official keys;
//! - `last.optim.safetensors`: Adam moments (`adam.m.<key>`, `adam.v.<key>`);
//! - `last.state.json`: where training stands (epoch, step, best rsum, options);
//! - `metrics.jsonl`: one JSON object per logged step and per validation.
//!
//! Determinism: the caption order of epoch `e` and the dropout masks of global
//! step `s` are drawn from generators seeded by (`seed`, `e`) and (`seed`, `s`),
//! so a resumed run takes exactly the steps an uninterrupted one would.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{train_step, Adam, StepOptions};
use crate::backend::{Backend, Model};
use crate::cpu::loss::Negatives;
use crate::data::{Split, Vocab};
use crate::error::{Result, SgrafError};
use crate::eval::metrics::{self, Metrics};
use crate::eval::score;
use crate::model::init::Rng;
use crate::model::params::{read_safetensors, write_safetensors, Params, RawTensor, N_REGIONS};

/// Options of a training run (the official defaults, spec §9.1).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainOptions {
    pub epochs: usize,          // 40 (F30K SGR recipe)
    pub max_steps: Option<u64>, // stop after this many global steps
    pub batch_size: usize,      // 128
    pub lr: f32,                // 2e-4
    pub lr_update: usize,       // ×0.1 every lr_update epochs (30)
    pub grad_clip: f32,         // 2.0
    pub margin: f32,            // 0.2
    /// Hardest negatives (official `--max_violation`, default true); false: all violating negatives.
    #[serde(default = "yes")]
    pub max_violation: bool,
    /// sgraf extension (0 = official): the first this many epochs use all negatives,
    /// then hardest ones, a warm-up that leaves the official plateau early on small data.
    #[serde(default)]
    pub warmup_epochs: usize,
    pub dropout: f32,  // 0.4
    pub shuffle: bool, // true
    pub seed: u64,
    pub log_step: u64,        // 10
    pub val_step: u64,        // 1000
    pub checkpoint_step: u64, // write last.* every this many steps (and at every validation)
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            epochs: 40,
            max_steps: None,
            batch_size: 128,
            lr: 2e-4,
            lr_update: 30,
            grad_clip: 2.0,
            margin: 0.2,
            max_violation: true,
            warmup_epochs: 0,
            dropout: 0.4,
            shuffle: true,
            seed: 0,
            log_step: 10,
            val_step: 1000,
            checkpoint_step: 100,
        }
    }
}

fn yes() -> bool {
    true
}

/// The negatives of the loss in `epoch` (0-based).
pub fn negatives_at(o: &TrainOptions, epoch: usize) -> Negatives {
    if o.max_violation && epoch >= o.warmup_epochs {
        Negatives::Hardest
    } else {
        Negatives::All
    }
}

/// Where a run stands; saved beside `last.safetensors`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainState {
    pub epoch: usize,          // current epoch (0-based)
    pub batch_in_epoch: usize, // batches of this epoch already taken
    pub step: u64,             // global steps taken
    pub best_rsum: Option<f64>,
    pub options: TrainOptions,
}

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MetricsLine {
    pub step: u64,
    pub epoch: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss: Option<f32>,
    pub lr: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pairs_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dev: Option<Metrics>,
}

/// What the caller sees after each step (for a progress bar).
pub struct Progress<'a> {
    pub epoch: usize,
    pub step: u64,
    pub batch_in_epoch: usize,
    pub batches_per_epoch: usize,
    pub loss: f32,
    pub pairs_per_s: f64,
    pub dev: Option<&'a Metrics>,
}

/// The training data: the `train` split, tokenised, and the optional `dev` subset.
pub struct TrainData {
    pub train: Split,
    pub captions: Vec<Vec<u32>>, // [n_captions] token ids of the train split
    pub dev: Option<(Split, Vec<Vec<u32>>)>,
}

impl TrainData {
    /// Loads `<dir>/train_*` and, when present, `<dir>/dev_*`.
    pub fn load(dir: &Path, vocab: &Vocab) -> Result<TrainData> {
        let train = Split::load(dir, "train")?;
        train.check_finite()?;
        let captions = score::encode_captions(&train.captions, vocab)?;
        let dev = if dir.join("dev_ims.npy").exists() {
            let d = Split::load(dir, "dev")?;
            let caps = score::encode_captions(&d.captions, vocab)?;
            Some((d, caps))
        } else {
            None
        };
        Ok(TrainData { train, captions, dev })
    }
}

/// Caption order of one epoch: file order, or a permutation seeded by (seed, epoch).
pub fn epoch_order(n: usize, seed: u64, epoch: usize, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        let mut rng = Rng(seed ^ (epoch as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F));
        for i in (1..n).rev() {
            order.swap(i, rng.below(i + 1));
        }
    }
    order
}

/// Learning rate of an epoch: `lr · 0.1^(epoch / lr_update)`.
pub fn lr_at(o: &TrainOptions, epoch: usize) -> f32 {
    o.lr * 0.1f32.powi((epoch / o.lr_update.max(1)) as i32)
}

/// Gathers a batch: captions sorted by length, descending and stable (the
/// official collate), and their images `[B, 36, D]`.
pub fn gather_batch(data: &Split, captions: &[Vec<u32>], idx: &[usize]) -> (Vec<f32>, Vec<Vec<u32>>) {
    let mut idx = idx.to_vec();
    idx.sort_by_key(|&k| std::cmp::Reverse(captions[k].len()));
    let d = data.img_dim;
    let mut images = Vec::with_capacity(idx.len() * N_REGIONS * d);
    for &k in &idx {
        images.extend_from_slice(data.image(data.image_of_caption(k)));
    }
    (images, idx.iter().map(|&k| captions[k].clone()).collect())
}

/// Dev evaluation on the first 1 000 images (5 000 captions), spec §2.2.
pub fn validate(p: &Params, dev: &(Split, Vec<Vec<u32>>), backend: &Backend) -> Result<Metrics> {
    let (split, caps) = dev;
    let n_img = split.n_images.min(1000);
    let n_cap = (n_img * split.im_div).min(caps.len());
    let model = Model::new(p.clone(), backend)?;
    let d = split.img_dim;
    let img = model.encode_images(&split.images.data()[..n_img * N_REGIONS * d], n_img)?;
    let cap = model.encode_captions(&caps[..n_cap])?;
    let sims = score::score_all(&model, &img, &cap, &mut |_, _| {})?;
    metrics::evaluate(&sims, n_img, n_cap, split.im_div)
}

fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| SgrafError::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| SgrafError::io(&tmp, e))?;
    f.sync_all().map_err(|e| SgrafError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| SgrafError::io(path, e))
}

fn optim_bytes(adam: &Adam) -> Result<Vec<u8>> {
    let mut t = std::collections::BTreeMap::new();
    for (prefix, ps) in [("adam.m.", &adam.m), ("adam.v.", &adam.v)] {
        for (k, v) in ps.to_state() {
            if matches!(v, RawTensor::F32 { .. }) {
                t.insert(format!("{prefix}{k}"), v);
            }
        }
    }
    let meta = [("step".to_string(), adam.step.to_string())].into_iter().collect();
    write_safetensors(&t, Some(meta))
}

fn load_optim(path: &Path, p: &Params) -> Result<Adam> {
    let bytes = std::fs::read(path).map_err(|e| SgrafError::io(path, e))?;
    let name = path.display().to_string();
    let st = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| SgrafError::Checkpoint { path: name.clone(), msg: e.to_string() })?;
    let step =
        st.1.metadata()
            .as_ref()
            .and_then(|m| m.get("step"))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| SgrafError::Checkpoint { path: name.clone(), msg: "no step in the metadata".into() })?;
    let t = read_safetensors(&bytes, &name)?;
    let mut adam = Adam::new(p);
    adam.step = step;
    for (prefix, dst) in [("adam.m.", &mut adam.m), ("adam.v.", &mut adam.v)] {
        let mut state = p.to_state(); // buffers (running stats) taken from the model, moments from the file
        for (k, v) in t.iter().filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k, v))) {
            state.insert(k.to_string(), v.clone());
        }
        *dst = Params::from_state(state, &name)?;
    }
    Ok(adam)
}

/// A training run writing into `out`.
pub struct Trainer {
    pub out: PathBuf,
    /// The model; while steps run on the GPU ([`Trainer::use_gpu_steps`]) the
    /// device holds the current values and these are refreshed before every
    /// validation and checkpoint.
    pub params: Params,
    pub adam: Adam,
    pub state: TrainState,
    pub backend: Backend,
    /// Training steps on the GPU (model, gradients, Adam state on the device).
    pub gpu: Option<crate::gpu::train::GpuTrainer>,
}

impl Trainer {
    /// A fresh run from `params`.
    pub fn new(out: &Path, params: Params, options: TrainOptions, backend: Backend) -> Result<Trainer> {
        std::fs::create_dir_all(out).map_err(|e| SgrafError::io(out, e))?;
        let mut adam = Adam::new(&params);
        adam.lr = options.lr;
        let state = TrainState { epoch: 0, batch_in_epoch: 0, step: 0, best_rsum: None, options };
        Ok(Trainer { out: out.to_path_buf(), params, adam, state, backend, gpu: None })
    }

    /// Runs the training steps on the GPU of `ctx` from now on: the model and
    /// the optimizer state move to the device (validation still runs on
    /// [`Trainer::backend`]).
    pub fn use_gpu_steps(&mut self, ctx: std::sync::Arc<crate::gpu::GpuContext>) -> Result<()> {
        self.gpu = Some(crate::gpu::train::GpuTrainer::new(ctx, &self.params, &self.adam)?);
        Ok(())
    }

    /// Copies the device's model and optimizer state into `params`/`adam` (GPU steps only).
    fn sync_from_gpu(&mut self) -> Result<()> {
        if let Some(g) = &self.gpu {
            g.download_into_blocking(&mut self.params, &mut self.adam)?;
        }
        Ok(())
    }

    /// Continues the run saved in `out` (`last.*`).
    pub fn resume(out: &Path, backend: Backend) -> Result<Trainer> {
        let sp = out.join("last.state.json");
        let text = std::fs::read_to_string(&sp).map_err(|e| SgrafError::io(&sp, e))?;
        let state: TrainState = serde_json::from_str(&text)
            .map_err(|e| SgrafError::Checkpoint { path: sp.display().to_string(), msg: e.to_string() })?;
        let params = Params::load(&out.join("last.safetensors"))?;
        let adam = load_optim(&out.join("last.optim.safetensors"), &params)?;
        Ok(Trainer { out: out.to_path_buf(), params, adam, state, backend, gpu: None })
    }

    /// Writes `last.*` (and `best.safetensors` when `best`).
    pub fn save(&self, best: bool) -> Result<()> {
        let meta = [
            ("module_name".to_string(), self.params.cfg.module.name().to_string()),
            ("step".to_string(), self.state.step.to_string()),
            ("epoch".to_string(), self.state.epoch.to_string()),
        ];
        let bytes = self.params.to_safetensors_bytes(Some(meta.into_iter().collect()))?;
        atomic_write(&self.out.join("last.safetensors"), &bytes)?;
        atomic_write(&self.out.join("last.optim.safetensors"), &optim_bytes(&self.adam)?)?;
        let state = serde_json::to_vec_pretty(&self.state).expect("state serialises");
        atomic_write(&self.out.join("last.state.json"), &state)?;
        if best {
            atomic_write(&self.out.join("best.safetensors"), &bytes)?;
        }
        Ok(())
    }

    fn log(&self, line: &MetricsLine) -> Result<()> {
        let p = self.out.join("metrics.jsonl");
        let mut f =
            std::fs::OpenOptions::new().create(true).append(true).open(&p).map_err(|e| SgrafError::io(&p, e))?;
        let s = serde_json::to_string(line).expect("metrics serialise");
        writeln!(f, "{s}").map_err(|e| SgrafError::io(&p, e))
    }

    fn validate_and_save(&mut self, data: &TrainData, lr: f32) -> Result<Option<Metrics>> {
        self.sync_from_gpu()?;
        let m = match &data.dev {
            Some(dev) => Some(validate(&self.params, dev, &self.backend)?),
            None => None,
        };
        let best = match (&m, self.state.best_rsum) {
            (Some(m), Some(b)) => m.rsum > b,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if best {
            self.state.best_rsum = m.as_ref().map(|m| m.rsum);
        }
        if let Some(m) = &m {
            self.log(&MetricsLine {
                step: self.state.step,
                epoch: self.state.epoch,
                loss: None,
                lr,
                grad_norm: None,
                pairs_per_s: None,
                dev: Some(*m),
            })?;
        }
        self.save(best)?;
        Ok(m)
    }

    /// Runs until `epochs` or `max_steps`; `on_step` sees every step.
    pub fn run(&mut self, data: &TrainData, on_step: &mut dyn FnMut(Progress)) -> Result<()> {
        let o = self.state.options.clone();
        let n = data.captions.len();
        let b = o.batch_size.max(1);
        let batches = n.div_ceil(b);
        if n == 0 {
            return Err(SgrafError::Input("the train split has no captions".into()));
        }
        while self.state.epoch < o.epochs {
            let epoch = self.state.epoch;
            let step_opts = StepOptions {
                dropout: o.dropout,
                grad_clip: o.grad_clip,
                margin: o.margin,
                negatives: negatives_at(&o, epoch),
            };
            let lr = lr_at(&o, epoch);
            self.adam.lr = lr;
            if let Some(g) = &mut self.gpu {
                g.adam.lr = lr;
            }
            let order = epoch_order(n, o.seed, epoch, o.shuffle);
            while self.state.batch_in_epoch < batches {
                if o.max_steps.is_some_and(|m| self.state.step >= m) {
                    self.sync_from_gpu()?;
                    return self.save(false);
                }
                let k = self.state.batch_in_epoch;
                let idx = &order[k * b..((k + 1) * b).min(n)];
                let (images, caps) = gather_batch(&data.train, &data.captions, idx);
                let t0 = std::time::Instant::now();
                let mut rng = Rng(o.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ self.state.step);
                let rep = match &mut self.gpu {
                    Some(g) => g.step_blocking(&images, &caps, &step_opts, &mut rng)?,
                    None => train_step(&mut self.params, &mut self.adam, &images, &caps, &step_opts, &mut rng)?,
                };
                if !rep.loss.is_finite() {
                    return Err(SgrafError::Input(format!(
                        "the loss is {} at step {} (epoch {}); stopped without saving. The last good checkpoint is {} (step of its last.state.json)",
                        rep.loss,
                        self.state.step + 1,
                        epoch,
                        self.out.join("last.safetensors").display()
                    )));
                }
                let pairs_per_s = (idx.len() * idx.len()) as f64 / t0.elapsed().as_secs_f64();
                self.state.step += 1;
                self.state.batch_in_epoch += 1;
                if self.state.step.is_multiple_of(o.log_step.max(1)) {
                    self.log(&MetricsLine {
                        step: self.state.step,
                        epoch,
                        loss: Some(rep.loss),
                        lr,
                        grad_norm: Some(rep.grad_norm),
                        pairs_per_s: Some(pairs_per_s),
                        dev: None,
                    })?;
                }
                let dev = if self.state.step.is_multiple_of(o.val_step.max(1)) {
                    self.validate_and_save(data, lr)?
                } else {
                    if self.state.step.is_multiple_of(o.checkpoint_step.max(1)) {
                        self.sync_from_gpu()?;
                        self.save(false)?;
                    }
                    None
                };
                on_step(Progress {
                    epoch,
                    step: self.state.step,
                    batch_in_epoch: self.state.batch_in_epoch,
                    batches_per_epoch: batches,
                    loss: rep.loss,
                    pairs_per_s,
                    dev: dev.as_ref(),
                });
            }
            self.state.epoch += 1;
            self.state.batch_in_epoch = 0;
            if self.state.step.is_multiple_of(o.val_step.max(1)) {
                self.sync_from_gpu()?;
                self.save(false)?; // just validated at this step
            } else {
                self.validate_and_save(data, lr)?;
            }
        }
        Ok(())
    }
}
