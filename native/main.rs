//! `sgraf`: evaluate and benchmark SGRAF image-text matching models.

use std::path::{Path, PathBuf};
use std::time::Instant;

mod demo;
mod explain;
mod plot;
mod rank;
mod synth;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use sgraf::backend::{Backend, BackendChoice, Model};
use sgraf::data::{Split, Vocab};
use sgraf::eval::metrics::{self, Metrics};
use sgraf::eval::score;
use sgraf::model::init::{flops_per_pair, Rng};
use sgraf::model::params::{Config, Module, Params, N_REGIONS};

#[derive(Parser)]
#[command(
    name = "sgraf",
    version,
    about = "SGRAF image-text matching (Similarity Reasoning and Filtration) on WebGPU and CPU"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Evaluate one checkpoint, or the SGRAF ensemble of two, on a precomp split.
    Eval(EvalArgs),
    /// Train an SGR or SAF model on the `train` split of a precomp folder.
    Train(Box<TrainArgs>),
    /// Draw the loss and dev-rsum curves of a training run (<out>/loss.png, rsum.png).
    Plot {
        /// The run's output folder (holding metrics.jsonl).
        #[arg(long)]
        out: PathBuf,
    },
    /// Benchmarks on generated inputs at the official default sizes.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// The main job, on a fresh machine: generate the scenes dataset, train SAF and SGR, evaluate, explain, write the page's assets.
    Demo(demo::DemoArgs),
    /// Explain one image–caption pair word by word: SAF weights or SGR edges, and where each word looks.
    Explain(explain::ExplainArgs),
    /// Convert the authors' PyTorch checkpoint (model_best.pth.tar) to safetensors, without Python.
    Import(ImportArgs),
    /// Write the built-in teaching dataset of generated scenes (features, captions, vocabulary, pictures).
    Synth(synth::SynthArgs),
    /// Rank the images of a split for one sentence (the web page's search, natively).
    Rank(rank::RankArgs),
}

#[derive(Args)]
struct ImportArgs {
    /// SGRAF training checkpoint written by torch.save (zip or legacy container).
    path: PathBuf,
    /// Output safetensors file.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct EvalArgs {
    /// Checkpoint (.safetensors with the official keys, or the authors' .pth.tar); give two for the SGRAF ensemble.
    #[arg(long = "checkpoint", required = true, num_args = 1)]
    checkpoints: Vec<PathBuf>,
    /// Folder with <split>_ims.npy and <split>_caps.txt.
    #[arg(long)]
    data: PathBuf,
    /// Split name: test, testall, dev, ...
    #[arg(long, default_value = "test")]
    split: String,
    /// Vocabulary JSON (default: <data>/vocab.json).
    #[arg(long)]
    vocab: Option<PathBuf>,
    /// COCO 5-fold 1K protocol (on testall).
    #[arg(long)]
    fold5: bool,
    /// auto (hardware GPU if any, else CPU), gpu (any adapter, lavapipe included) or cpu.
    #[arg(long, default_value = "auto")]
    backend: BackendChoice,
    /// Write the [n_images, n_captions] float32 score matrix as .npy.
    #[arg(long)]
    save_sims: Option<PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct TrainArgs {
    /// Folder with train_ims.npy / train_caps.txt (and dev_* for validation).
    #[arg(long)]
    data: PathBuf,
    /// SGR or SAF (for a fresh model; --init and --resume take it from the checkpoint).
    #[arg(long, default_value = "SGR")]
    module: String,
    /// Vocabulary JSON (default: <data>/vocab.json).
    #[arg(long)]
    vocab: Option<PathBuf>,
    /// Start from this checkpoint (official keys) instead of a fresh initialisation.
    #[arg(long)]
    init: Option<PathBuf>,
    /// Epochs (default: the official recipe of --recipe and --module).
    #[arg(long, conflicts_with = "steps")]
    epochs: Option<usize>,
    /// Stop after this many steps instead.
    #[arg(long)]
    steps: Option<u64>,
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    #[arg(long, default_value_t = 2e-4)]
    lr: f32,
    /// Epochs between ×0.1 learning-rate decays (default: the recipe's).
    #[arg(long)]
    lr_update: Option<usize>,
    /// Official schedules: f30k (SGR 40/30, SAF 30/20 epochs) or coco (20/10).
    #[arg(long, default_value = "f30k")]
    recipe: String,
    #[arg(long, default_value_t = 2.0)]
    grad_clip: f32,
    #[arg(long, default_value_t = 0.2)]
    margin: f32,
    /// Sum over all violating negatives instead of the hardest one (official `--max_violation` flag).
    #[arg(long)]
    no_max_violation: bool,
    /// sgraf extension: use all negatives for the first N epochs, then the hardest (0 = official).
    #[arg(long, default_value_t = 0)]
    warmup_epochs: usize,
    #[arg(long, default_value_t = 0.4)]
    dropout: f32,
    /// Take the captions in file order.
    #[arg(long)]
    no_shuffle: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Validation on the first 1 000 dev images every this many steps (and every epoch).
    #[arg(long, default_value_t = 1000)]
    val_step: u64,
    #[arg(long, default_value_t = 10)]
    log_step: u64,
    /// Write last.* every this many steps.
    #[arg(long, default_value_t = 100)]
    checkpoint_step: u64,
    /// Backend of the training steps and validation: auto (hardware GPU if any, else CPU), gpu (any adapter) or cpu.
    #[arg(long, default_value = "auto")]
    backend: BackendChoice,
    /// Output folder (last/best checkpoints, optimizer state, metrics.jsonl).
    #[arg(long, default_value = "runs/sgraf")]
    out: PathBuf,
    /// Continue the run saved in --out.
    #[arg(long)]
    resume: bool,
    /// Sizes of a fresh model.
    #[arg(long, default_value_t = 1024)]
    embed_size: usize,
    #[arg(long, default_value_t = 256)]
    sim_dim: usize,
    #[arg(long, default_value_t = 300)]
    word_dim: usize,
    #[arg(long, default_value_t = 3)]
    sgr_step: usize,
}

#[derive(Subcommand)]
enum BenchCmd {
    /// All-pairs scoring throughput at default sizes (2048-d regions, E 1024, S 256, 14 tokens).
    Eval(BenchEvalArgs),
    /// Training steps at default sizes on generated data.
    Train(BenchTrainArgs),
}

#[derive(Args)]
struct BenchTrainArgs {
    #[arg(long, default_value = "cpu")]
    backend: BackendChoice,
    #[arg(long, default_value = "SGR")]
    module: String,
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 2)]
    steps: usize,
    /// GPU: only record one step without running it, to report its peak GPU memory.
    #[arg(long)]
    memory_only: bool,
}

#[derive(Args)]
struct BenchEvalArgs {
    #[arg(long, default_value = "cpu")]
    backend: BackendChoice,
    /// SGR or SAF.
    #[arg(long, default_value = "SGR")]
    module: String,
    /// Images in the generated gallery.
    #[arg(long, default_value_t = 100)]
    images: usize,
    /// Captions in the generated query set.
    #[arg(long, default_value_t = 100)]
    captions: usize,
    /// Tokens per caption, <start>/<end> included.
    #[arg(long, default_value_t = 14)]
    tokens: usize,
    /// Timed repetitions (after one warm-up).
    #[arg(long, default_value_t = 3)]
    reps: usize,
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Eval(a) => eval(a),
        Cmd::Train(a) => train(*a),
        Cmd::Plot { out } => plot::plot(&out).map(|files| {
            for f in files {
                println!("wrote {}", f.display());
            }
        }),
        Cmd::Bench(BenchCmd::Eval(a)) => bench_eval(a),
        Cmd::Bench(BenchCmd::Train(a)) => bench_train(a),
        Cmd::Import(a) => import(a),
        Cmd::Explain(a) => explain::run(a),
        Cmd::Demo(a) => demo::run(a),
        Cmd::Synth(a) => synth::run(a),
        Cmd::Rank(a) => rank::rank(a),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Loads a checkpoint by content, whatever its extension: a PyTorch
/// `.pth.tar` (zip or legacy container) or a safetensors file.
fn load_checkpoint(path: &Path) -> Result<Params> {
    let ctx = || format!("loading checkpoint {}", path.display());
    let bytes = std::fs::read(path).with_context(ctx)?;
    let name = path.display().to_string();
    let params = match sgraf::pth::detect(&bytes) {
        Some(_) => sgraf::pth::load_params(&bytes, &name),
        None => Params::from_safetensors_bytes(&bytes, &name),
    };
    params.with_context(ctx)
}

/// `sgraf import X.pth.tar --out Y.safetensors`.
fn import(a: ImportArgs) -> Result<()> {
    let name = a.path.display().to_string();
    let imported = sgraf::pth::open(&a.path)?;
    let params = imported.params(&name)?;
    let bytes = imported.to_safetensors(&name)?;
    std::fs::write(&a.out, bytes).with_context(|| format!("writing {}", a.out.display()))?;
    let c = &params.cfg;
    let m = |k: &str| imported.metadata.get(k).map(String::as_str).unwrap_or("?");
    println!(
        "imported {} model ({} container, epoch {}, best rsum {}): E {}, S {}, D_img {}, D_w {}, vocab {}, {} tensors -> {}",
        c.module.name(),
        imported.container.name(),
        m("epoch"),
        m("best_rsum"),
        c.embed,
        c.sim_dim,
        c.img_dim,
        c.word_dim,
        c.vocab,
        imported.tensors.len(),
        a.out.display()
    );
    Ok(())
}

fn progress_bar(json: bool, what: &str) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} tiles  {elapsed_precise} (eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

fn eval(a: EvalArgs) -> Result<()> {
    if a.checkpoints.len() > 2 {
        bail!("give one checkpoint, or two (an SGR and an SAF model) for the SGRAF ensemble");
    }
    let vocab_path = a.vocab.clone().unwrap_or_else(|| a.data.join("vocab.json"));
    let vocab = Vocab::load(&vocab_path).context("loading the vocabulary (use --vocab to point at it)")?;
    let split = Split::load(&a.data, &a.split)
        .with_context(|| format!("loading split '{}' from {}", a.split, a.data.display()))?;
    let captions = score::encode_captions(&split.captions, &vocab)?;
    let (backend, desc) = Backend::resolve(a.backend)?;
    if !a.json {
        eprintln!("{desc}");
    }
    let mut sims: Option<Vec<f32>> = None;
    for ck in &a.checkpoints {
        let params = load_checkpoint(ck)?;
        if params.cfg.vocab != vocab.len() {
            bail!(
                "checkpoint {} has a {}-word embedding but the vocabulary {} has {} words",
                ck.display(),
                params.cfg.vocab,
                vocab_path.display(),
                vocab.len()
            );
        }
        let module = params.cfg.module.name();
        let model = Model::new(params, &backend)?;
        let pb = progress_bar(a.json, &format!("{module} {}", ck.file_name().and_then(|s| s.to_str()).unwrap_or("")));
        let t0 = Instant::now();
        let s = score::score_split(&model, &split, &captions, &mut |done, total| {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
        })
        .with_context(|| format!("scoring with {}", ck.display()))?;
        pb.finish_and_clear();
        if !a.json {
            let pairs = (split.n_images * captions.len()) as f64;
            let dt = t0.elapsed().as_secs_f64();
            eprintln!(
                "{module}: scored {} × {} pairs in {:.2} s ({:.0} pairs/s)",
                split.n_images,
                captions.len(),
                dt,
                pairs / dt
            );
        }
        sims = Some(match sims {
            None => s,
            Some(prev) => metrics::ensemble(&prev, &s)?,
        });
    }
    let sims = sims.expect("at least one checkpoint");
    let (n_img, n_cap) = (split.n_images, captions.len());
    if let Some(p) = &a.save_sims {
        sgraf::data::write_f32(p, &[n_img, n_cap], &sims).with_context(|| format!("writing {}", p.display()))?;
    }
    let m = if a.fold5 {
        metrics::fold5(&sims, n_img, n_cap)?
    } else {
        metrics::evaluate(&sims, n_img, n_cap, split.im_div)?
    };
    if a.json {
        println!("{}", serde_json::to_string(&m)?);
    } else {
        print_metrics(&m, a.fold5);
    }
    Ok(())
}

fn print_metrics(m: &Metrics, fold5: bool) {
    let proto = if fold5 { " (mean of 5 folds)" } else { "" };
    println!(
        "{:<22} {:>6} {:>6} {:>6} {:>6} {:>8}",
        format!("retrieval{proto}"),
        "R@1",
        "R@5",
        "R@10",
        "medr",
        "meanr"
    );
    for (name, r) in [("image → text (i2t)", &m.i2t), ("text → image (t2i)", &m.t2i)] {
        println!("{:<22} {:>6.1} {:>6.1} {:>6.1} {:>6.1} {:>8.2}", name, r.r1, r.r5, r.r10, r.medr, r.meanr);
    }
    println!("rsum {:.1}", m.rsum);
}

/// Generated inputs at a config: images [n, 36, D] and captions of `tokens` ids.
fn generated_inputs(cfg: &Config, n_img: usize, n_cap: usize, tokens: usize, seed: u64) -> (Vec<f32>, Vec<Vec<u32>>) {
    let mut rng = Rng(seed);
    // Region features are non-negative, like ReLU'd detector features.
    let images = (0..n_img * N_REGIONS * cfg.img_dim).map(|_| rng.uniform()).collect();
    let captions = (0..n_cap)
        .map(|_| {
            let mut c = vec![1u32];
            c.extend((0..tokens.saturating_sub(2)).map(|_| 4 + rng.below(cfg.vocab - 4) as u32));
            c.push(2);
            c
        })
        .collect();
    (images, captions)
}

fn parse_module(m: &str, sgr_steps: usize) -> Result<Module> {
    match m.to_ascii_uppercase().as_str() {
        "SGR" => Ok(Module::Sgr { steps: sgr_steps }),
        "SAF" => Ok(Module::Saf),
        m => bail!("unknown module '{m}': use SGR or SAF"),
    }
}

/// `--backend` picks where the training steps and validation run.
fn train_backend(choice: BackendChoice) -> Result<Backend> {
    let (backend, desc) = Backend::resolve(choice)?;
    eprintln!("training steps and validation: {desc}");
    Ok(backend)
}

fn train(a: TrainArgs) -> Result<()> {
    use sgraf::train::run::{TrainData, TrainOptions, Trainer};
    let backend = train_backend(a.backend)?;
    let vocab_path = a.vocab.clone().unwrap_or_else(|| a.data.join("vocab.json"));
    let vocab = Vocab::load(&vocab_path).context("loading the vocabulary (use --vocab to point at it)")?;
    let data =
        TrainData::load(&a.data, &vocab).with_context(|| format!("loading training data from {}", a.data.display()))?;
    let mut trainer = if a.resume {
        let mut t = Trainer::resume(&a.out, backend).with_context(|| format!("resuming from {}", a.out.display()))?;
        // a resumed run may be given a new end
        if a.steps.is_some() {
            t.state.options.max_steps = a.steps;
        }
        if let Some(e) = a.epochs {
            t.state.options.epochs = e;
        }
        t
    } else {
        let params = match &a.init {
            Some(ck) => load_checkpoint(ck)?,
            None => {
                let module = parse_module(&a.module, a.sgr_step)?;
                let cfg = Config {
                    img_dim: data.train.img_dim,
                    word_dim: a.word_dim,
                    embed: a.embed_size,
                    sim_dim: a.sim_dim,
                    vocab: vocab.len(),
                    module,
                };
                Params::init(cfg, a.seed)
            }
        };
        if params.cfg.vocab != vocab.len() {
            bail!("the model has a {}-word embedding but the vocabulary has {} words", params.cfg.vocab, vocab.len());
        }
        if params.cfg.img_dim != data.train.img_dim {
            bail!("the model expects {}-d region features but the data has {}", params.cfg.img_dim, data.train.img_dim);
        }
        let sgr = matches!(params.cfg.module, Module::Sgr { .. });
        let (epochs, lr_update) = match (a.recipe.as_str(), sgr) {
            ("f30k", true) => (40, 30),
            ("f30k", false) => (30, 20),
            ("coco", _) => (20, 10),
            (r, _) => bail!("unknown recipe '{r}': use f30k or coco"),
        };
        let options = TrainOptions {
            epochs: a.epochs.unwrap_or(if a.steps.is_some() { usize::MAX } else { epochs }),
            max_steps: a.steps,
            batch_size: a.batch_size,
            lr: a.lr,
            lr_update: a.lr_update.unwrap_or(lr_update),
            grad_clip: a.grad_clip,
            margin: a.margin,
            max_violation: !a.no_max_violation,
            warmup_epochs: a.warmup_epochs,
            dropout: a.dropout,
            shuffle: !a.no_shuffle,
            seed: a.seed,
            log_step: a.log_step,
            val_step: a.val_step,
            checkpoint_step: a.checkpoint_step,
        };
        Trainer::new(&a.out, params, options, backend)?
    };
    if let Backend::Gpu(ctx) = &trainer.backend {
        let ctx = ctx.clone();
        trainer.use_gpu_steps(ctx).context("moving the model to the GPU for training")?;
    }
    let o = trainer.state.options.clone();
    let batches = data.captions.len().div_ceil(o.batch_size.max(1));
    let total = match o.max_steps {
        Some(s) => s,
        None => (o.epochs * batches) as u64,
    };
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] step {pos}/{len} {msg} ({elapsed_precise}, eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_position(trainer.state.step);
    trainer.run(&data, &mut |p| {
        pb.set_prefix(format!("{}", p.epoch));
        pb.set_position(p.step);
        let dev = p.dev.map(|m| format!(" dev rsum {:.1}", m.rsum)).unwrap_or_default();
        pb.set_message(format!("loss {:.4} {:.0} pairs/s{dev}", p.loss, p.pairs_per_s));
    })?;
    pb.finish();
    eprintln!(
        "done: {} steps; checkpoints in {} (best dev rsum {})",
        trainer.state.step,
        a.out.display(),
        trainer.state.best_rsum.map(|r| format!("{r:.1}")).unwrap_or_else(|| "n/a: no dev split".into())
    );
    Ok(())
}

fn bench_train(a: BenchTrainArgs) -> Result<()> {
    let module = parse_module(&a.module, 3)?;
    let cfg = Config::default_sizes(module);
    let mut p = Params::init(cfg, 1);
    let b = a.batch_size.max(2);
    let (images, captions) = generated_inputs(&cfg, b, b, 14, 3);
    let mut adam = sgraf::train::Adam::new(&p);
    let opts = sgraf::train::StepOptions::default();
    let (backend, desc) = Backend::resolve(a.backend)?;
    println!("{desc}");
    let mut times = Vec::new();
    match backend {
        Backend::Cpu => {
            if a.memory_only {
                bail!("--memory-only measures GPU memory: use --backend gpu");
            }
            for s in 0..a.steps.max(1) {
                let t = Instant::now();
                let rep = sgraf::train::train_step(&mut p, &mut adam, &images, &captions, &opts, &mut Rng(s as u64))?;
                times.push(t.elapsed().as_secs_f64());
                println!("  step {s}: loss {:.4}, grad norm {:.3}, {:.2} s", rep.loss, rep.grad_norm, times[s]);
            }
        }
        Backend::Gpu(ctx) => {
            use sgraf::gpu::train::GpuTrainer;
            ctx.pool().clear();
            ctx.pool().reset_peak();
            let mut t = GpuTrainer::new(ctx.clone(), &p, &adam)?;
            let resident = ctx.pool().in_use_bytes();
            let (peak, cbs) = t.measure_step_memory(&images, &captions, &opts, &mut Rng(0))?;
            let mib = |x: u64| x as f64 / (1u64 << 20) as f64;
            println!(
                "  peak GPU memory of one step (sum of tensor buffers in use at once): {:.0} MiB \
                 ({:.0} MiB parameters, gradients and Adam state; caption chunks of ≤ {:.0} MiB per-pair tensor; {cbs} command buffers); \
                 {:.0} MiB with the buffer pool's free buffers",
                mib(peak),
                mib(resident),
                mib(t.chunk_bytes),
                mib(ctx.pool().peak_live_bytes())
            );
            if a.memory_only {
                return Ok(());
            }
            ctx.pool().reset_peak();
            for s in 0..a.steps.max(1) {
                let t0 = Instant::now();
                let rep = t.step_blocking(&images, &captions, &opts, &mut Rng(s as u64))?;
                times.push(t0.elapsed().as_secs_f64());
                println!("  step {s}: loss {:.4}, grad norm {:.3}, {:.2} s", rep.loss, rep.grad_norm, times[s]);
            }
            println!(
                "  peak GPU memory over the timed steps: {:.0} MiB in use, {:.0} MiB with the pool's free buffers",
                mib(ctx.pool().peak_bytes()),
                mib(ctx.pool().peak_live_bytes())
            );
        }
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "bench train {} B={b}: {:.3} steps/s, {:.0} pairs/s (B² pairs per step)",
        cfg.module.name(),
        1.0 / mean,
        (b * b) as f64 / mean
    );
    Ok(())
}

fn bench_eval(a: BenchEvalArgs) -> Result<()> {
    let module = parse_module(&a.module, 3)?;
    if a.tokens < 2 || a.images == 0 || a.captions == 0 {
        bail!("need at least 1 image, 1 caption and 2 tokens per caption");
    }
    let cfg = Config::default_sizes(module);
    let (backend, desc) = Backend::resolve(a.backend)?;
    println!("{desc}");
    let model = Model::new(Params::init(cfg, 1), &backend)?;
    let (images, captions) = generated_inputs(&cfg, a.images, a.captions, a.tokens, 2);
    let t0 = Instant::now();
    let img = model.encode_images(&images, a.images)?;
    let cap = model.encode_captions(&captions)?;
    let enc = t0.elapsed().as_secs_f64();
    let mut times = Vec::new();
    for rep in 0..=a.reps.max(1) {
        let t = Instant::now();
        let s = score::score_all(&model, &img, &cap, &mut |_, _| {})?;
        std::hint::black_box(&s);
        if rep > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    times.sort_by(|x, y| x.total_cmp(y));
    let best = times[0];
    let pairs = (a.images * a.captions) as f64;
    let flops = flops_per_pair(&cfg, a.tokens) * pairs;
    let peak = matmul_peak(&backend)?;
    let gflops = flops / best / 1e9;
    println!(
        "bench eval {}: {} images × {} captions of {} tokens, E {} S {} D {}",
        cfg.module.name(),
        a.images,
        a.captions,
        a.tokens,
        cfg.embed,
        cfg.sim_dim,
        cfg.img_dim
    );
    println!("  encode (images + captions): {:.3} s", enc);
    println!("  scoring: best of {} = {:.3} s, median {:.3} s", times.len(), best, times[times.len() / 2]);
    println!("  pairs/s: {:.0}", pairs / best);
    println!(
        "  GFLOP/s: {:.1} (nominal {:.1} MFLOP per pair, as the official per-pair computation)",
        gflops,
        flops_per_pair(&cfg, a.tokens) / 1e6
    );
    println!("  measured matmul peak of this backend: {:.1} GFLOP/s; share: {:.0}%", peak, 100.0 * gflops / peak);
    Ok(())
}

/// Measured single-precision matmul throughput of the backend, GFLOP/s.
fn matmul_peak(backend: &Backend) -> Result<f64> {
    match backend {
        Backend::Cpu => {
            let n = 1024;
            let a = vec![0.5f32; n * n];
            let b = vec![0.25f32; n * n];
            let mut c = vec![0.0f32; n * n];
            sgraf::cpu::matmul_nt(&a, &b, &mut c, n, n, n, false);
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t = Instant::now();
                sgraf::cpu::matmul_nt(&a, &b, &mut c, n, n, n, false);
                best = best.min(t.elapsed().as_secs_f64());
            }
            Ok(2.0 * (n * n * n) as f64 / best / 1e9)
        }
        Backend::Gpu(ctx) => Ok(sgraf::gpu::model::measure_matmul_gflops(ctx)?),
    }
}
