//! The `sgraf` binary end to end: `eval --save-sims` against the golden
//! command-line case on both backends, the JSON output, the ensemble, and
//! clear errors (no panic) on bad input.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn sgraf() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sgraf"));
    c.env("XDG_RUNTIME_DIR", "/tmp");
    c
}

fn cli_case(module: &str) -> PathBuf {
    golden_dir().join("small_float32_cli").join(module)
}

/// Copies the golden data folder into a fresh temp dir (to break it safely).
fn data_copy(module: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for f in ["test_ims.npy", "test_caps.txt", "vocab.json"] {
        std::fs::copy(cli_case(module).join("data").join(f), dir.path().join(f)).expect("copy");
    }
    dir
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = sgraf().args(args).output().expect("run sgraf");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn eval_sims(module: &str, backend: &str) {
    let case = cli_case(module);
    let out = tempfile::tempdir().expect("tempdir");
    let sims_path = out.path().join("sims.npy");
    let (ok, _, err) = run(&[
        "eval",
        "--checkpoint",
        case.join("checkpoint.safetensors").to_str().unwrap(),
        "--data",
        case.join("data").to_str().unwrap(),
        "--split",
        "test",
        "--backend",
        backend,
        "--save-sims",
        sims_path.to_str().unwrap(),
    ]);
    assert!(ok, "sgraf eval failed: {err}");
    let got = sgraf::data::NpyF32::open(&sims_path).expect("saved sims");
    assert_eq!(got.shape(), &[6, 6], "saved sims shape");
    let want = load_tensors(&format!("small_float32_cli/{module}/expected.safetensors"));
    assert_close(&format!("{module} eval.sims ({backend})"), got.data(), f32s(&want, "eval.sims"), 2e-6);
}

#[test]
fn eval_save_sims_matches_golden_cpu_sgr() {
    eval_sims("SGR", "cpu");
}
#[test]
fn eval_save_sims_matches_golden_cpu_saf() {
    eval_sims("SAF", "cpu");
}
#[test]
fn eval_save_sims_matches_golden_gpu_sgr() {
    eval_sims("SGR", "gpu");
}
#[test]
fn eval_save_sims_matches_golden_gpu_saf() {
    eval_sims("SAF", "gpu");
}

#[test]
fn eval_json_and_ensemble() {
    let sgr = cli_case("SGR");
    let saf = cli_case("SAF");
    // Both golden models share the data folder layout; the SGR data is used for both.
    let (ok, out, err) = run(&[
        "eval",
        "--checkpoint",
        sgr.join("checkpoint.safetensors").to_str().unwrap(),
        "--checkpoint",
        saf.join("checkpoint.safetensors").to_str().unwrap(),
        "--data",
        sgr.join("data").to_str().unwrap(),
        "--backend",
        "cpu",
        "--json",
    ]);
    assert!(ok, "ensemble eval failed: {err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    let i2t = v["i2t"].as_array().expect("i2t array");
    assert_eq!(i2t.len(), 5, "i2t has r1, r5, r10, medr, meanr");
    let rsum = v["rsum"].as_f64().expect("rsum");
    let sum: f64 =
        ["i2t", "t2i"].iter().flat_map(|k| v[k].as_array().unwrap()[..3].iter().map(|x| x.as_f64().unwrap())).sum();
    assert!((rsum - sum).abs() < 1e-9, "rsum {rsum} != sum of recalls {sum}");
    // With 6 images and 6 captions R@10 is 100 in both directions.
    assert_eq!(i2t[2].as_f64(), Some(100.0));
}

fn expect_error(args: &[&str], needle: &str) {
    let (ok, _, err) = run(args);
    assert!(!ok, "expected failure for {args:?}");
    assert!(!err.contains("panicked"), "panic instead of an error for {args:?}: {err}");
    assert!(err.contains(needle), "error for {args:?} should mention '{needle}', got: {err}");
}

fn eval_args<'a>(ck: &'a str, data: &'a str) -> Vec<&'a str> {
    vec!["eval", "--checkpoint", ck, "--data", data, "--backend", "cpu"]
}

#[test]
fn bad_inputs_give_clear_errors() {
    let ck_path = cli_case("SGR").join("checkpoint.safetensors");
    let ck = ck_path.to_str().unwrap();
    let write = |d: &Path, f: &str, bytes: &[u8]| std::fs::write(d.join(f), bytes).expect("write");

    // missing .npy
    let d = data_copy("SGR");
    std::fs::remove_file(d.path().join("test_ims.npy")).unwrap();
    expect_error(&eval_args(ck, d.path().to_str().unwrap()), "test_ims.npy");

    // truncated .npy
    let d = data_copy("SGR");
    let b = std::fs::read(d.path().join("test_ims.npy")).unwrap();
    write(d.path(), "test_ims.npy", &b[..b.len() - 100]);
    expect_error(&eval_args(ck, d.path().to_str().unwrap()), "trunc");

    // wrong dtype (float64)
    let d = data_copy("SGR");
    let hdr = b"{'descr': '<f8', 'fortran_order': False, 'shape': (6, 36, 48), }";
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let pad = 64 - (10 + hdr.len() + 1) % 64;
    let hlen = (hdr.len() + pad + 1) as u16;
    npy.extend_from_slice(&hlen.to_le_bytes());
    npy.extend_from_slice(hdr);
    npy.extend(std::iter::repeat_n(b' ', pad));
    npy.push(b'\n');
    npy.extend(std::iter::repeat_n(0u8, 6 * 36 * 48 * 8));
    write(d.path(), "test_ims.npy", &npy);
    expect_error(&eval_args(ck, d.path().to_str().unwrap()), "<f8");

    // feature size that does not match the checkpoint
    let d = data_copy("SGR");
    let wrong = sgraf::data::encode_f32(&[6, 36, 40], &vec![0.5; 6 * 36 * 40]).unwrap();
    write(d.path(), "test_ims.npy", &wrong);
    expect_error(&eval_args(ck, d.path().to_str().unwrap()), "expects 48");

    // wrong region count
    let d = data_copy("SGR");
    let wrong = sgraf::data::encode_f32(&[6, 30, 48], &vec![0.5; 6 * 30 * 48]).unwrap();
    write(d.path(), "test_ims.npy", &wrong);
    expect_error(&eval_args(ck, d.path().to_str().unwrap()), "36");

    // NaN features name the image
    let d = data_copy("SGR");
    let mut v = vec![0.5f32; 6 * 36 * 48];
    v[3 * 36 * 48 + 7] = f32::NAN;
    write(d.path(), "test_ims.npy", &sgraf::data::encode_f32(&[6, 36, 48], &v).unwrap());
    expect_error(&eval_args(ck, d.path().to_str().unwrap()), "image 3");

    // empty caption line
    let d = data_copy("SGR");
    let caps = std::fs::read_to_string(d.path().join("test_caps.txt")).unwrap();
    let mut lines: Vec<&str> = caps.lines().collect();
    lines[2] = "";
    write(d.path(), "test_caps.txt", lines.join("\n").as_bytes());
    expect_error(&eval_args(ck, d.path().to_str().unwrap()), "line 3");

    // caption longer than any buffer
    let d = data_copy("SGR");
    let long = vec!["w5"; 400].join(" ");
    let mut lines: Vec<String> = caps.lines().map(String::from).collect();
    lines[1] = long;
    write(d.path(), "test_caps.txt", lines.join("\n").as_bytes());
    expect_error(&eval_args(ck, d.path().to_str().unwrap()), "tokens");

    // vocabulary JSON that does not parse
    let d = data_copy("SGR");
    write(d.path(), "vocab.json", b"{\"idx2word\": {\"0\": ");
    expect_error(&eval_args(ck, d.path().to_str().unwrap()), "vocab");

    // checkpoint with a mis-shaped key, and one with a missing key
    let d = data_copy("SGR");
    let mut t = sgraf::model::params::read_safetensors(&std::fs::read(ck).unwrap(), ck).unwrap();
    t.insert(
        "sim_enc.sim_eval_w.weight".into(),
        sgraf::model::params::RawTensor::F32 { shape: vec![2, 32], data: vec![0.0; 64] },
    );
    let bad = d.path().join("bad.safetensors");
    std::fs::write(&bad, sgraf::model::params::write_safetensors(&t, None).unwrap()).unwrap();
    expect_error(
        &eval_args(bad.to_str().unwrap(), d.path().to_str().unwrap()),
        "sim_enc.sim_eval_w.weight has shape [2, 32] but [1, 32]",
    );
    t.remove("sim_enc.sim_eval_w.weight");
    std::fs::write(&bad, sgraf::model::params::write_safetensors(&t, None).unwrap()).unwrap();
    expect_error(
        &eval_args(bad.to_str().unwrap(), d.path().to_str().unwrap()),
        "missing key sim_enc.sim_eval_w.weight",
    );
    // a checkpoint carrying the other module's keys as well (SGR + SAF_module)
    let mut t = sgraf::model::params::read_safetensors(&std::fs::read(ck).unwrap(), ck).unwrap();
    let saf_ck = cli_case("SAF").join("checkpoint.safetensors");
    let saf = sgraf::model::params::read_safetensors(&std::fs::read(&saf_ck).unwrap(), "saf").unwrap();
    t.extend(saf.into_iter().filter(|(k, _)| k.contains("SAF_module")));
    std::fs::write(&bad, sgraf::model::params::write_safetensors(&t, None).unwrap()).unwrap();
    expect_error(&eval_args(bad.to_str().unwrap(), d.path().to_str().unwrap()), "both SGR_module and SAF_module");
    // not a checkpoint at all
    std::fs::write(&bad, b"not safetensors").unwrap();
    expect_error(&eval_args(bad.to_str().unwrap(), d.path().to_str().unwrap()), "not a valid safetensors");
}

#[test]
fn bench_eval_prints_figures() {
    let (ok, out, err) = run(&[
        "bench",
        "eval",
        "--backend",
        "cpu",
        "--module",
        "SAF",
        "--images",
        "3",
        "--captions",
        "4",
        "--reps",
        "1",
    ]);
    assert!(ok, "bench failed: {err}");
    for needle in ["pairs/s:", "GFLOP/s:", "share:"] {
        assert!(out.contains(needle), "bench output lacks '{needle}': {out}");
    }
}
