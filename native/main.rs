//! `sgraf`: evaluate and benchmark SGRAF image-text matching models.

use std::path::{Path, PathBuf};
use std::time::Instant;

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
    /// Benchmarks on generated inputs at the official default sizes.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Convert the authors' PyTorch checkpoint (model_best.pth.tar) to safetensors, without Python.
    Import(ImportArgs),
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

#[derive(Subcommand)]
enum BenchCmd {
    /// All-pairs scoring throughput at default sizes (2048-d regions, E 1024, S 256, 14 tokens).
    Eval(BenchEvalArgs),
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
        Cmd::Bench(BenchCmd::Eval(a)) => bench_eval(a),
        Cmd::Import(a) => import(a),
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

fn bench_eval(a: BenchEvalArgs) -> Result<()> {
    let module = match a.module.to_ascii_uppercase().as_str() {
        "SGR" => Module::Sgr { steps: 3 },
        "SAF" => Module::Saf,
        m => bail!("unknown module '{m}': use SGR or SAF"),
    };
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
    for rep in 0..=a.reps {
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
    println!("  scoring: best of {} = {:.3} s, median {:.3} s", a.reps, best, times[times.len() / 2]);
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
