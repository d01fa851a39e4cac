//! Importing the authors' PyTorch checkpoints (`.pth.tar`), both containers:
//! bit-identical tensors against the golden safetensors, `sgraf import` and
//! `sgraf eval --checkpoint X.pth.tar` through the binary, strided views into
//! shared storages (as a cuDNN-flattened GRU saves them), float64 storages,
//! and clear refusals (no panic, nothing executed) of malicious or broken files.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sgraf::model::params::{read_safetensors, RawTensor};

const FILES: [(&str, &str); 4] = [("SGR", "SGR_zip"), ("SGR", "SGR_legacy"), ("SAF", "SAF_zip"), ("SAF", "SAF_legacy")];

fn pth_path(name: &str) -> PathBuf {
    golden_dir().join("small_float32_pth").join(format!("{name}.pth.tar"))
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// Every key present in both, same shapes, same dtypes, values bit for bit.
fn assert_bit_identical(what: &str, got: &BTreeMap<String, RawTensor>, want: &BTreeMap<String, RawTensor>) {
    let gk: Vec<&String> = got.keys().collect();
    let wk: Vec<&String> = want.keys().collect();
    assert_eq!(gk, wk, "{what}: key sets differ");
    for (k, w) in want {
        match (&got[k], w) {
            (RawTensor::F32 { shape: gs, data: gd }, RawTensor::F32 { shape: ws, data: wd }) => {
                assert_eq!(gs, ws, "{what}: {k} shape");
                assert_eq!(gd.len(), wd.len(), "{what}: {k} length");
                for (i, (g, w)) in gd.iter().zip(wd).enumerate() {
                    assert_eq!(g.to_bits(), w.to_bits(), "{what}: {k}[{i}] = {g}, expected {w} (bitwise)");
                }
            }
            (RawTensor::I64 { shape: gs, data: gd }, RawTensor::I64 { shape: ws, data: wd }) => {
                assert_eq!((gs, gd), (ws, wd), "{what}: {k}");
            }
            (g, w) => panic!("{what}: {k} has dtype {g:?} vs expected {w:?}"),
        }
    }
}

fn golden_params(module: &str) -> BTreeMap<String, RawTensor> {
    load_tensors(&format!("small_float32/{module}/params.safetensors"))
}

// ---------------------------------------------------------------------------
// the golden checkpoints written by torch.save

#[test]
fn golden_pth_files_import_bit_identical() {
    for (module, name) in FILES {
        let path = pth_path(name);
        let imp = sgraf::pth::import(&read(&path), name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want_container = if name.ends_with("zip") { "zip" } else { "legacy" };
        assert_eq!(imp.container.name(), want_container, "{name}: container");
        assert_bit_identical(name, &imp.tensors, &golden_params(module));
        let m = &imp.metadata;
        assert_eq!(m.get("module_name").map(String::as_str), Some(module), "{name}: metadata {m:?}");
        for (k, v) in [("epoch", "7"), ("best_rsum", "123.5"), ("embed_size", "64"), ("vocab_size", "50")] {
            assert_eq!(m.get(k).map(String::as_str), Some(v), "{name}: metadata {k} in {m:?}");
        }
        assert_eq!(m.get("data_name").map(String::as_str), Some("f30k_precomp"));
        // and the model builds, with the saved options agreeing with the weights
        let p = imp.params(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(p.cfg.module.name(), module);
        assert_eq!(p, load_params(&format!("small_float32/{module}/params.safetensors")), "{name}: Params");
    }
}

fn sgraf_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sgraf"));
    c.env("XDG_RUNTIME_DIR", "/tmp");
    c
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = sgraf_bin().args(args).output().expect("run sgraf");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn cli_import_writes_the_golden_safetensors() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (module, name) in FILES {
        let out = dir.path().join(format!("{name}.safetensors"));
        let (ok, stdout, err) = run(&["import", pth_path(name).to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert!(ok, "sgraf import {name} failed: {err}");
        assert!(stdout.contains(&format!("imported {module} model")), "{name}: {stdout}");
        let bytes = read(&out);
        assert_bit_identical(name, &read_safetensors(&bytes, name).unwrap(), &golden_params(module));
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("safetensors header");
        let meta = meta.metadata().clone().expect("metadata written");
        assert_eq!(meta.get("module_name").map(String::as_str), Some(module));
        assert_eq!(meta.get("epoch").map(String::as_str), Some("7"));
        assert_eq!(meta.get("imported_from").map(String::as_str), Some(format!("{name}.pth.tar").as_str()));
    }
}

fn eval_pth(checkpoints: &[&str], module: &str) -> Vec<f32> {
    let case = golden_dir().join("small_float32_cli").join(module);
    let dir = tempfile::tempdir().expect("tempdir");
    let sims = dir.path().join("sims.npy");
    let mut args = vec!["eval".to_string()];
    for c in checkpoints {
        args.push("--checkpoint".into());
        args.push(pth_path(c).to_str().unwrap().into());
    }
    for a in ["--data", case.join("data").to_str().unwrap(), "--split", "test", "--backend", "cpu", "--save-sims"] {
        args.push(a.into());
    }
    args.push(sims.to_str().unwrap().into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, _, err) = run(&args);
    assert!(ok, "sgraf eval {checkpoints:?} failed: {err}");
    let got = sgraf::data::NpyF32::open(&sims).expect("saved sims");
    assert_eq!(got.shape(), &[6, 6]);
    got.data().to_vec()
}

#[test]
fn cli_eval_reads_pth_directly() {
    for (module, name) in FILES {
        let got = eval_pth(&[name], module);
        let want = load_tensors(&format!("small_float32_cli/{module}/expected.safetensors"));
        assert_close(&format!("{name} eval.sims"), &got, f32s(&want, "eval.sims"), 2e-6);
    }
    // SGRAF ensemble straight from the two .pth.tar files (both models share the data).
    let got = eval_pth(&["SGR_legacy", "SAF_zip"], "SGR");
    let sgr = load_tensors("small_float32_cli/SGR/expected.safetensors");
    let saf = load_tensors("small_float32_cli/SAF/expected.safetensors");
    let want: Vec<f32> =
        f32s(&sgr, "eval.sims").iter().zip(f32s(&saf, "eval.sims")).map(|(a, b)| (a + b) / 2.0).collect();
    assert_close("SGRAF ensemble of .pth.tar files", &got, &want, 4e-6);
}

// ---------------------------------------------------------------------------
// a small torch.save in the test: pickles and both containers, by hand

/// A protocol-2 pickle under construction.
#[derive(Default)]
struct Pickle(Vec<u8>);

impl Pickle {
    fn op(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.0.push(b'X');
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn int(&mut self, i: i64) -> &mut Self {
        if (0..256).contains(&i) {
            self.op(&[b'K', i as u8])
        } else if (0..65536).contains(&i) {
            self.op(b"M").op(&(i as u16).to_le_bytes())
        } else {
            self.op(&[0x8a, 8]).op(&i.to_le_bytes())
        }
    }
    fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.op(b"c").op(module.as_bytes()).op(b"\n").op(name.as_bytes()).op(b"\n")
    }
    fn ints(&mut self, v: &[u64]) -> &mut Self {
        self.op(b"(");
        for &x in v {
            self.int(x as i64);
        }
        self.op(b"t")
    }
}

/// One tensor of the crafted checkpoint: a view into a storage.
struct View {
    key: String,      // state-dict key, without the part prefix
    storage: String,  // storage key
    offset: u64,      // storage offset
    shape: Vec<u64>,  // size
    stride: Vec<u64>, // stride
}

/// One storage: type name (`FloatStorage`, …) and raw little-endian bytes.
struct Storage {
    ty: &'static str,
    elem: usize,
    bytes: Vec<u8>,
}

/// A checkpoint as SGRAF's train.py saves it, with the tensors given.
struct Crafted {
    parts: [Vec<View>; 3],
    storages: BTreeMap<String, Storage>,
    module: &'static str,
}

impl Crafted {
    /// The main pickle. `legacy` adds the 6th (view metadata) item to persistent ids.
    fn pickle(&self, legacy: bool) -> Vec<u8> {
        let mut p = Pickle::default();
        p.op(b"\x80\x02}q\x00(").str("epoch").int(9).str("model").op(b"](");
        let mut first = true;
        for part in &self.parts {
            p.global("collections", "OrderedDict").op(b")R(");
            for v in part {
                p.str(&v.key);
                if first {
                    p.global("torch._utils", "_rebuild_tensor_v2").op(b"q\x01"); // memoised …
                    first = false;
                } else {
                    p.op(b"h\x01"); // … and fetched back
                }
                let s = &self.storages[&v.storage];
                let numel = (s.bytes.len() / s.elem) as i64;
                p.op(b"((").str("storage").global("torch", s.ty).str(&v.storage).str("cuda:0").int(numel);
                if legacy {
                    p.op(b"N");
                }
                p.op(b"tQ").int(v.offset as i64).ints(&v.shape).ints(&v.stride);
                p.op(b"\x89").global("collections", "OrderedDict").op(b")R").op(b"tR");
            }
            p.op(b"u");
            // state_dict()._metadata, as torch attaches it: BUILD on the OrderedDict.
            p.op(b"}(").str("_metadata").global("collections", "OrderedDict").op(b")R(").str("");
            p.op(b"}(").str("version").int(1).op(b"uuub"); // version dict, _metadata, state dict
        }
        p.op(b"e").str("best_rsum").op(b"G").op(&480.25f64.to_be_bytes());
        p.str("opt").global("argparse", "Namespace").op(b")\x81}(");
        p.str("module_name").str(self.module).str("lr_update").int(15).str("max_violation").op(b"\x88");
        p.op(b"ub").str("Eiters").int(123_456).op(b"u.");
        p.0
    }

    fn legacy(&self) -> Vec<u8> {
        let mut f = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.".to_vec();
        f.extend_from_slice(b"\x80\x02M\xe9\x03.");
        let mut sys = Pickle::default();
        sys.op(b"\x80\x02}(").str("protocol_version").int(1001).str("little_endian").op(b"\x88");
        sys.str("type_sizes").op(b"}(").str("short").int(2).str("int").int(4).str("long").int(4).op(b"uu.");
        f.extend_from_slice(&sys.0);
        f.extend_from_slice(&self.pickle(true));
        let mut keys = Pickle::default();
        keys.op(b"\x80\x02](");
        for k in self.storages.keys() {
            keys.str(k);
        }
        keys.op(b"e.");
        f.extend_from_slice(&keys.0);
        for s in self.storages.values() {
            f.extend_from_slice(&((s.bytes.len() / s.elem) as u64).to_le_bytes());
            f.extend_from_slice(&s.bytes);
        }
        f
    }

    fn zip(&self, top: &str, method: zip::CompressionMethod) -> Vec<u8> {
        self.zip_cut(top, method, None)
    }

    /// The zip container; `cut = Some((key, n))` drops the last n bytes of that storage record.
    fn zip_cut(&self, top: &str, method: zip::CompressionMethod, cut: Option<(&str, usize)>) -> Vec<u8> {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opt = zip::write::SimpleFileOptions::default().compression_method(method);
        let mut put = |name: String, data: &[u8]| {
            w.start_file(name, opt).unwrap();
            w.write_all(data).unwrap();
        };
        put(format!("{top}/data.pkl"), &self.pickle(false));
        put(format!("{top}/byteorder"), b"little");
        for (k, s) in &self.storages {
            let n = match cut {
                Some((key, n)) if key == k => s.bytes.len() - n,
                _ => s.bytes.len(),
            };
            put(format!("{top}/data/{k}"), &s.bytes[..n]);
        }
        put(format!("{top}/version"), b"3\n");
        w.finish().unwrap().into_inner()
    }
}

/// The golden model saved the way a GPU run saves it: every float tensor of
/// a part is a view into one shared storage (with gaps), 2-d weights stored
/// transposed (column-major, stride (1, rows)); the sim_enc part in float64;
/// int64 counters at offset 1 of their own 3-element LongStorage.
fn crafted_from_golden(module: &'static str) -> Crafted {
    let golden = golden_params(module);
    let mut parts: [Vec<View>; 3] = Default::default();
    let mut storages = BTreeMap::new();
    for (pi, prefix) in ["img_enc.", "txt_enc.", "sim_enc."].iter().enumerate() {
        let f64_part = pi == 2;
        let shared = format!("{pi}");
        let mut flat: Vec<f32> = Vec::new();
        for (k, t) in golden.iter().filter(|(k, _)| k.starts_with(prefix)) {
            let key = k[prefix.len()..].to_string();
            match t {
                RawTensor::F32 { shape, data } => {
                    flat.extend([7.0, 7.0, 7.0]); // gap: not part of any view
                    let offset = flat.len() as u64;
                    let (shape_u, stride) = if shape.len() == 2 {
                        let (r, c) = (shape[0], shape[1]);
                        for j in 0..c {
                            for i in 0..r {
                                flat.push(data[i * c + j]); // column-major
                            }
                        }
                        (vec![r as u64, c as u64], vec![1, r as u64])
                    } else {
                        flat.extend_from_slice(data);
                        let st = if shape.is_empty() { vec![] } else { vec![1] };
                        (shape.iter().map(|&d| d as u64).collect(), st)
                    };
                    parts[pi].push(View { key, storage: shared.clone(), offset, shape: shape_u, stride });
                }
                RawTensor::I64 { shape, data } => {
                    let sk = format!("{pi}_{key}");
                    let bytes: Vec<u8> = [-5i64, data[0], -6].iter().flat_map(|x| x.to_le_bytes()).collect();
                    storages.insert(sk.clone(), Storage { ty: "LongStorage", elem: 8, bytes });
                    assert!(shape.is_empty());
                    parts[pi].push(View { key, storage: sk, offset: 1, shape: vec![], stride: vec![] });
                }
            }
        }
        flat.extend([7.0; 5]);
        let s = if f64_part {
            Storage {
                ty: "DoubleStorage",
                elem: 8,
                bytes: flat.iter().flat_map(|&x| (x as f64).to_le_bytes()).collect(),
            }
        } else {
            Storage { ty: "FloatStorage", elem: 4, bytes: flat.iter().flat_map(|x| x.to_le_bytes()).collect() }
        };
        storages.insert(shared, s);
    }
    Crafted { parts, storages, module }
}

#[test]
fn shared_storages_strided_views_and_float64_import_exactly() {
    for module in ["SGR", "SAF"] {
        let c = crafted_from_golden(module);
        let files = [
            ("legacy", c.legacy()),
            ("zip stored", c.zip("archive", zip::CompressionMethod::Stored)),
            ("zip deflated, other folder name", c.zip("model_best", zip::CompressionMethod::Deflated)),
        ];
        for (what, bytes) in files {
            let imp = sgraf::pth::import(&bytes, what).unwrap_or_else(|e| panic!("{module} {what}: {e}"));
            assert_bit_identical(&format!("{module} {what}"), &imp.tensors, &golden_params(module));
            assert_eq!(imp.metadata.get("epoch").map(String::as_str), Some("9"));
            assert_eq!(imp.metadata.get("best_rsum").map(String::as_str), Some("480.25"));
            assert_eq!(imp.metadata.get("Eiters").map(String::as_str), Some("123456"));
            imp.params(what).unwrap_or_else(|e| panic!("{module} {what}: {e}"));
        }
    }
}

#[test]
fn saved_options_must_match_the_weights() {
    let mut c = crafted_from_golden("SGR");
    c.module = "SAF";
    let imp = sgraf::pth::import(&c.legacy(), "x.pth.tar").expect("imports");
    let e = imp.params("x.pth.tar").unwrap_err().to_string();
    assert!(e.contains("opt.module_name is SAF but the weights have SGR"), "{e}");
}

// ---------------------------------------------------------------------------
// refusals: each a clear error, never a panic, never anything executed

fn import_err(bytes: &[u8]) -> String {
    match std::panic::catch_unwind(|| sgraf::pth::import(bytes, "evil.pth.tar")) {
        Ok(Ok(_)) => panic!("import of a bad file succeeded"),
        Ok(Err(e)) => e.to_string(),
        Err(_) => panic!("import panicked"),
    }
}

/// A legacy container around the given main pickle (no storages).
fn legacy_around(main: &[u8]) -> Vec<u8> {
    legacy_with(main, &[])
}

/// A legacy container: magic, version, sys info, `main`, then the storages (key, element size, bytes).
fn legacy_with(main: &[u8], storages: &[(&str, usize, Vec<u8>)]) -> Vec<u8> {
    let mut f = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.\x80\x02M\xe9\x03.\x80\x02}.".to_vec();
    f.extend_from_slice(main);
    let mut keys = Pickle::default();
    keys.op(b"\x80\x02](");
    for (k, _, _) in storages {
        keys.str(k);
    }
    f.extend_from_slice(&keys.op(b"e.").0);
    for (_, elem, bytes) in storages {
        f.extend_from_slice(&((bytes.len() / elem) as u64).to_le_bytes());
        f.extend_from_slice(bytes);
    }
    f
}

fn zip_around(main: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opt = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file("archive/data.pkl", opt).unwrap();
    w.write_all(main).unwrap();
    w.finish().unwrap().into_inner()
}

#[test]
fn malicious_globals_are_refused_by_name() {
    let marker = std::env::temp_dir().join(format!("sgraf_pth_pwned_{}", std::process::id()));
    let cmd = format!("touch {}", marker.display());
    let evil = |module: &str, name: &str, stack_global: bool| {
        let mut p = Pickle::default();
        p.op(b"\x80\x02");
        if stack_global {
            p.op(&[0x8c, module.len() as u8]).op(module.as_bytes());
            p.op(&[0x8c, name.len() as u8]).op(name.as_bytes()).op(&[0x93]);
        } else {
            p.global(module, name);
        }
        p.str(&cmd).op(b"\x85R.");
        p.0
    };
    for (module, name, sg) in [
        ("os", "system", false),
        ("posix", "system", false),
        ("builtins", "eval", true),
        ("__builtin__", "exec", false),
        ("subprocess", "Popen", true),
        ("torch", "load", false),
        ("torch.nn.modules.linear", "Linear", false),
    ] {
        let p = evil(module, name, sg);
        for (container, bytes) in [("legacy", legacy_around(&p)), ("zip", zip_around(&p))] {
            let e = import_err(&bytes);
            assert!(e.contains(&format!("`{module}.{name}`")), "{container} {module}.{name}: {e}");
            assert!(e.contains("Nothing from it was executed"), "{e}");
        }
    }
    // The global is refused before it could be called: REDUCE never runs.
    assert!(!marker.exists(), "a command from the pickle ran");
    // Also through the command line, with the exit code and message of any error.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("evil.pth.tar");
    std::fs::write(&f, zip_around(&evil("os", "system", false))).unwrap();
    let case = golden_dir().join("small_float32_cli/SGR/data");
    let (ok, _, err) = run(&["eval", "--checkpoint", f.to_str().unwrap(), "--data", case.to_str().unwrap()]);
    assert!(!ok && !err.contains("panicked") && err.contains("`os.system`"), "{err}");
    let (ok, _, err) = run(&["import", f.to_str().unwrap(), "--out", dir.path().join("o").to_str().unwrap()]);
    assert!(!ok && !err.contains("panicked") && err.contains("`os.system`"), "{err}");
    assert!(!marker.exists(), "a command from the pickle ran");
}

#[test]
fn code_running_opcodes_are_refused() {
    // INST and OBJ call classes; EXT uses the extension registry.
    for (p, needle) in [
        (&b"\x80\x02(ios\nsystem\n."[..], "INST"),
        (&b"\x80\x02(cos\nsystem\no."[..], "os.system"),
        (&b"\x80\x02\x82\x01."[..], "EXT"),
    ] {
        let e = import_err(&legacy_around(p));
        assert!(e.contains(needle), "{needle}: {e}");
    }
}

#[test]
fn truncated_files_are_errors() {
    for (_, name) in FILES {
        let b = read(&pth_path(name));
        for cut in [b.len() - 1, b.len() - 22, b.len() - 1000, b.len() / 2, 200, 30, 15, 5, 1] {
            let e = import_err(&b[..cut]);
            assert!(!e.is_empty(), "{name} cut at {cut}");
            if name.ends_with("legacy") && cut > 9000 {
                assert!(e.contains("truncated"), "{name} cut at {cut}: {e}");
            }
        }
    }
    let b = read(&pth_path("SGR_zip"));
    let e = import_err(&b[..b.len() / 2]);
    assert!(e.contains("zip"), "{e}");
}

#[test]
fn storage_shorter_than_the_tensor_is_an_error() {
    // A view reaching past its storage.
    let mut c = crafted_from_golden("SAF");
    c.parts[0][0].offset = 1 << 20;
    for bytes in [c.legacy(), c.zip("archive", zip::CompressionMethod::Stored)] {
        let e = import_err(&bytes);
        assert!(e.contains("img_enc.fc.bias") && e.contains("shorter than the tensor needs"), "{e}");
    }
    // A zip storage record shorter than the element count its pickle records.
    let c = crafted_from_golden("SAF");
    let e = import_err(&c.zip_cut("archive", zip::CompressionMethod::Stored, Some(("0", 4))));
    assert!(e.contains("shorter than recorded"), "{e}");
    // A storage (consistent with its header) whose last tensor reaches past its end:
    // cut the 5 padding elements and one element of the last view.
    let mut c = crafted_from_golden("SAF");
    let s = c.storages.get_mut("0").unwrap();
    s.bytes.truncate(s.bytes.len() - 6 * 4);
    for bytes in [c.legacy(), c.zip("archive", zip::CompressionMethod::Stored)] {
        let e = import_err(&bytes);
        assert!(e.contains("img_enc.fc.weight") && e.contains("shorter than the tensor needs"), "{e}");
    }
}

#[test]
fn overflowing_shapes_are_errors() {
    for shape in [vec![1u64 << 62, 1 << 62], vec![i64::MAX as u64, 3], vec![1 << 33, 1 << 33, 1 << 33]] {
        let mut c = crafted_from_golden("SAF");
        c.parts[0][0].stride = vec![1; shape.len()];
        c.parts[0][0].shape = shape.clone();
        let e = import_err(&c.legacy());
        assert!(e.contains("overflow") || e.contains("does not fit"), "{shape:?}: {e}");
    }
    // huge but not overflowing, stride 0: more elements than the storage holds
    let mut c = crafted_from_golden("SAF");
    c.parts[0][0].shape = vec![1 << 40];
    c.parts[0][0].stride = vec![0];
    let e = import_err(&c.zip("archive", zip::CompressionMethod::Stored));
    assert!(e.contains("holds only"), "{e}");
}

#[test]
fn unsupported_dtypes_are_refused_clearly() {
    let mut c = crafted_from_golden("SAF");
    let s = c.storages.get_mut("0").unwrap();
    (s.ty, s.elem) = ("HalfStorage", 2); // same bytes, now 2-byte elements
    let e = import_err(&c.legacy());
    assert!(e.contains("torch.HalfStorage") && e.contains("only float32"), "{e}");
}

#[test]
fn not_sgraf_checkpoints_are_explained() {
    // a bare state dict instead of SGRAF's {'model': [...]}
    let e = import_err(&legacy_around(b"\x80\x02ccollections\nOrderedDict\n)R."));
    assert!(e.contains("no 'model' entry"), "{e}");
    let e = import_err(&zip_around(b"\x80\x02}(X\x05\x00\x00\x00model]u."));
    assert!(e.contains("list of three state dicts"), "{e}");
    let e = import_err(b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
    assert!(e.contains("data.pkl"), "{e}");
}

#[test]
fn amplification_is_refused() {
    // OrderedDict(a 100k-item list) called 10k times through the memo: ~250 KB of
    // pickle asking for 10⁹ copied items.
    let mut p = Pickle::default();
    p.op(b"\x80\x02]q\x01(K\x00K\x00\x86q\x02");
    for _ in 0..100_000 {
        p.op(b"h\x02");
    }
    p.op(b"e\x85q\x04").global("collections", "OrderedDict").op(b"q\x05");
    for _ in 0..10_000 {
        p.op(b"h\x05h\x04R0");
    }
    p.op(b"N.");
    let e = import_err(&legacy_around(&p.0));
    assert!(e.contains("memory bomb"), "{e}");

    // One 40 KB tensor named 50k times in a state dict: 2 GB if materialised each time.
    let mut p = Pickle::default();
    p.op(b"\x80\x02}(").str("model").op(b"](").global("collections", "OrderedDict").op(b")R(");
    p.str("t0").global("torch._utils", "_rebuild_tensor_v2").op(b"((").str("storage");
    p.global("torch", "FloatStorage").str("0").str("cpu").int(10_000).op(b"NtQ");
    p.int(0).ints(&[10_000]).ints(&[1]).op(b"\x89").global("collections", "OrderedDict").op(b")RtRq\x07");
    for i in 1..50_000 {
        p.str(&format!("t{i}")).op(b"h\x07");
    }
    p.op(b"u}}eu.");
    let f = legacy_with(&p.0, &[("0", 4, vec![0u8; 40_000])]);
    let e = import_err(&f);
    assert!(e.contains("the same tensor named many times"), "{e}");
}

#[test]
fn random_garbage_is_an_error() {
    let mut rng = Lcg(42);
    let mut bytes = |n: usize| -> Vec<u8> { (0..n).map(|_| (rng.next_f32() * 127.0 + 128.0) as u8).collect() };
    for n in [0, 1, 7, 64, 1000, 100_000] {
        let g = bytes(n);
        import_err(&g);
        let mut z = b"PK\x03\x04".to_vec();
        z.extend(&g);
        import_err(&z);
        let mut l = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.".to_vec();
        l.extend(&g);
        import_err(&l);
    }
}

/// Bounded mutation fuzzing of both containers on every CI run (the
/// coverage-guided target lives in fuzz/). A few thousand inputs derived from
/// the golden and crafted files: bit flips, byte overwrites with interesting
/// values, cuts and splices. Every outcome must be Ok or Err, never a panic.
#[test]
fn mutated_checkpoints_never_panic() {
    let seeds: Vec<Vec<u8>> = vec![
        read(&pth_path("SAF_zip")),
        read(&pth_path("SAF_legacy")),
        crafted_from_golden("SAF").legacy(),
        crafted_from_golden("SAF").zip("a", zip::CompressionMethod::Deflated),
    ];
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let interesting = [0u8, 1, 0x7f, 0x80, 0xff, b'(', b'.', b'R', b'Q', b'c', b'h', 0x8a];
    let n_inputs = 3000;
    let mut ok = 0;
    for i in 0..n_inputs {
        let mut b = seeds[i % seeds.len()].clone();
        for _ in 0..1 + next() % 4 {
            // Mutate mostly the first 8 KiB: the pickles, headers, and small storages.
            let span = b.len().min(8192);
            let at = (next() as usize) % span;
            match next() % 5 {
                0 => b[at] ^= 1 << (next() % 8),
                1 => b[at] = interesting[(next() as usize) % interesting.len()],
                2 => b[at] = next() as u8,
                3 => b.truncate(at.max(1)),
                _ => {
                    let from = (next() as usize) % span;
                    let len = ((next() as usize) % 32).min(b.len() - from.max(at));
                    let chunk = b[from..from + len].to_vec();
                    b.splice(at..at, chunk);
                }
            }
        }
        let r = std::panic::catch_unwind(|| sgraf::pth::import(&b, "mutant").map(|imp| imp.params("mutant")));
        match r {
            Ok(Ok(Ok(_))) => ok += 1,
            Ok(_) => {}
            Err(_) => panic!("mutant {i} panicked; bytes: {:?}", &b[..b.len().min(64)]),
        }
    }
    eprintln!("{n_inputs} mutated checkpoints: {ok} still imported, the rest were clear errors");
}
