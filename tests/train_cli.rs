//! `sgraf train` end to end: one official training step through the binary
//! (golden `step.*`) on the CPU and on the GPU backend, and `--resume` after a
//! kill equal to an uninterrupted run. The GPU cases need an adapter (lavapipe:
//! run with `WGPU_BACKEND=vulkan`) and fail without one.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

fn sgraf() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sgraf"));
    c.env("XDG_RUNTIME_DIR", "/tmp");
    c
}

/// The golden command-line data with `test_*` renamed to `train_*`.
fn train_dir(module: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    let src = golden_dir().join("small_float32_cli").join(module).join("data");
    for (from, to) in
        [("test_ims.npy", "train_ims.npy"), ("test_caps.txt", "train_caps.txt"), ("vocab.json", "vocab.json")]
    {
        std::fs::copy(src.join(from), d.path().join(to)).expect("copy");
    }
    d
}

fn run_ok(args: &[&str]) {
    let out = sgraf().args(args).output().expect("run sgraf");
    assert!(out.status.success(), "sgraf {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn golden_step(module: &str, backend: &str) {
    let data = train_dir(module);
    let out = tempfile::tempdir().unwrap();
    let ck = golden_dir().join("small_float32_cli").join(module).join("checkpoint.safetensors");
    run_ok(&[
        "train",
        "--data",
        data.path().to_str().unwrap(),
        "--init",
        ck.to_str().unwrap(),
        "--steps",
        "1",
        "--batch-size",
        "6",
        "--no-shuffle",
        "--dropout",
        "0",
        "--backend",
        backend,
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let got =
        sgraf::model::params::read_safetensors(&std::fs::read(out.path().join("last.safetensors")).unwrap(), "last")
            .unwrap();
    let want = load_tensors(&format!("small_float32_cli/{module}/expected.safetensors"));
    let mut compared = 0;
    for (k, v) in &got {
        let wk = format!("step.{k}");
        match v {
            sgraf::model::params::RawTensor::F32 { data, .. } => {
                let w = f32s(&want, &wk);
                let grad = want.get(&format!("grad.{k}"));
                for (i, (&g, &x)) in data.iter().zip(w).enumerate() {
                    let gi = match grad {
                        Some(sgraf::model::params::RawTensor::F32 { data, .. }) => data[i].abs(),
                        _ => f32::INFINITY, // BatchNorm buffers: always compared
                    };
                    let tol = if gi > 1e-6 { 2e-6 } else { 2e-4 + 2e-6 }; // first Adam step moves by ≤ lr
                    assert!(
                        (g - x).abs() <= tol,
                        "{module} ({backend}) {wk}[{i}]: got {g}, expected {x} (|grad| {gi:e})"
                    );
                    compared += 1;
                }
            }
            sgraf::model::params::RawTensor::I64 { data, .. } => {
                assert_eq!(data[0], i64s(&want, &wk)[0], "{module} ({backend}) {wk}");
            }
        }
    }
    assert!(compared > 10_000, "{module}: compared only {compared} values");
}

#[test]
fn train_one_step_matches_golden_sgr() {
    golden_step("SGR", "cpu");
}

#[test]
fn train_one_step_matches_golden_saf() {
    golden_step("SAF", "cpu");
}

#[test]
fn gpu_train_one_step_matches_golden_sgr() {
    golden_step("SGR", "gpu");
}

#[test]
fn gpu_train_one_step_matches_golden_saf() {
    golden_step("SAF", "gpu");
}

/// `sgraf bench train --backend gpu --memory-only` records one default-size
/// B = 128 step without running it and reports its peak GPU memory, which
/// must exceed what the model, its gradients and Adam state take.
#[test]
fn gpu_bench_train_reports_step_memory() {
    let out = sgraf().args(["bench", "train", "--backend", "gpu", "--memory-only"]).output().expect("run sgraf");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench failed: {}{}", text, String::from_utf8_lossy(&out.stderr));
    let line = text.lines().find(|l| l.contains("peak GPU memory of one step")).expect("memory line");
    let mib: Vec<f64> = line
        .split_whitespace()
        .zip(line.split_whitespace().skip(1))
        .filter(|(_, unit)| unit.starts_with("MiB"))
        .filter_map(|(v, _)| v.trim_start_matches('(').parse().ok())
        .collect();
    assert!(mib.len() >= 2, "no MiB figures in {line:?}");
    let (peak, resident) = (mib[0], mib[1]);
    println!("{line}");
    // SGR at default sizes: ~18.1 M parameters × 4 copies ≈ 276 MiB resident
    assert!((250.0..300.0).contains(&resident), "resident {resident} MiB in {line:?}");
    assert!(peak > resident + 256.0, "peak {peak} MiB should exceed the resident {resident} MiB by the activations");
}

fn last_state_step(out: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(out.join("last.state.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["step"].as_u64()
}

/// Kill a run after it has checkpointed, resume it, and compare with a run
/// that was never interrupted: the parameters must be identical.
#[test]
fn resume_after_kill_equals_uninterrupted_run() {
    resume_after_kill("cpu", "40");
}

/// The same on the GPU backend: the model and Adam state go to the device
/// and back through every checkpoint, and the resumed run ends bit-identical.
#[test]
fn gpu_resume_after_kill_equals_uninterrupted_run() {
    resume_after_kill("gpu", "12"); // lavapipe: slower steps
}

fn resume_after_kill(backend: &str, steps: &str) {
    let data = train_dir("SAF");
    let ck = golden_dir().join("small_float32_cli/SAF/checkpoint.safetensors");
    let base = |out: &Path, steps: &str| -> Vec<String> {
        [
            "train",
            "--data",
            data.path().to_str().unwrap(),
            "--init",
            ck.to_str().unwrap(),
            "--steps",
            steps,
            "--batch-size",
            "2",
            "--dropout",
            "0.4",
            "--seed",
            "7",
            "--checkpoint-step",
            "1",
            "--log-step",
            "1",
            "--backend",
            backend,
            "--out",
            out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let full = tempfile::tempdir().unwrap();
    run_ok(&base(full.path(), steps).iter().map(|s| s.as_str()).collect::<Vec<_>>());

    let cut = tempfile::tempdir().unwrap();
    let mut child = sgraf().args(base(cut.path(), steps)).spawn().expect("spawn");
    let t0 = std::time::Instant::now();
    loop {
        if last_state_step(cut.path()).is_some_and(|s| s >= 3) {
            break;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("training ended ({st}) before it could be killed; make the run longer");
        }
        assert!(t0.elapsed().as_secs() < 120, "no checkpoint within 120 s");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().expect("kill");
    let _ = child.wait();
    let killed_at = last_state_step(cut.path()).unwrap();
    let mut args = base(cut.path(), steps);
    args.push("--resume".into());
    run_ok(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    let a = std::fs::read(full.path().join("last.safetensors")).unwrap();
    let b = std::fs::read(cut.path().join("last.safetensors")).unwrap();
    let ta = sgraf::model::params::read_safetensors(&a, "full").unwrap();
    let tb = sgraf::model::params::read_safetensors(&b, "resumed").unwrap();
    assert_eq!(ta.len(), tb.len());
    for (k, v) in &ta {
        assert!(
            tb.get(k) == Some(v),
            "{k} differs between the uninterrupted run and the run killed at step {killed_at} and resumed ({backend})"
        );
    }
    assert!(killed_at < steps.parse::<u64>().unwrap(), "the run was not interrupted");
}

/// A run with a dev split validates, logs R@K into metrics.jsonl, keeps
/// best.safetensors, and `sgraf plot` draws both curves to PNG.
#[test]
fn train_with_dev_then_plot() {
    let data = train_dir("SAF");
    for (from, to) in [("train_ims.npy", "dev_ims.npy"), ("train_caps.txt", "dev_caps.txt")] {
        std::fs::copy(data.path().join(from), data.path().join(to)).unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    run_ok(&[
        "train",
        "--data",
        data.path().to_str().unwrap(),
        "--module",
        "SAF",
        "--embed-size",
        "16",
        "--sim-dim",
        "8",
        "--word-dim",
        "8",
        "--steps",
        "6",
        "--batch-size",
        "3",
        "--val-step",
        "2",
        "--log-step",
        "1",
        "--backend",
        "cpu",
        "--out",
        o,
    ]);
    let metrics = std::fs::read_to_string(out.path().join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(lines.iter().filter(|v| v["loss"].is_number()).count(), 6, "one loss line per step: {metrics}");
    let devs: Vec<u64> =
        lines.iter().filter(|v| v["dev"]["rsum"].is_number()).map(|v| v["step"].as_u64().unwrap()).collect();
    assert_eq!(devs, vec![2, 4, 6], "validation every 2 steps, once per step: {metrics}");
    assert!(out.path().join("best.safetensors").is_file(), "best checkpoint kept");
    run_ok(&["plot", "--out", o]);
    for f in ["loss.png", "rsum.png"] {
        let b = std::fs::read(out.path().join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(b.starts_with(b"\x89PNG") && b.len() > 5_000, "{f} is not a drawn PNG ({} bytes)", b.len());
    }
}
