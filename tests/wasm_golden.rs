//! The whole forward through the browser's WebGPU (wasm, headless Chromium)
//! against the official outputs (`../shared/golden/small_float32`), with the
//! comparison of `tests/golden.rs`: every intermediate within 2e-6.
//!
//! ```sh
//! cargo test --release --target wasm32-unknown-unknown --test wasm_golden
//! ```
//! with `CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner`,
//! `CHROMEDRIVER=/usr/bin/chromedriver` and the browser flags of
//! `web/webdriver.json` (`.ci/run` sets all three). Natively this file is empty.
#![cfg(target_arch = "wasm32")]

mod common;

use std::sync::Arc;

use common::*;
use sgraf::gpu::model::GpuModel;
use sgraf::gpu::GpuContext;
use sgraf::model::params::{read_safetensors, Mode, Params};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

macro_rules! golden {
    ($path:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/golden/", $path))
    };
}

struct Case {
    params: &'static [u8],
    inputs: &'static [u8],
    outputs: &'static [u8],
    outputs64: &'static [u8],
}

const SGR: Case = Case {
    params: golden!("small_float32/SGR/params.safetensors"),
    inputs: golden!("small_float32/SGR/inputs.safetensors"),
    outputs: golden!("small_float32/SGR/outputs.safetensors"),
    outputs64: golden!("small_float64/SGR/outputs.safetensors"),
};
const SAF: Case = Case {
    params: golden!("small_float32/SAF/params.safetensors"),
    inputs: golden!("small_float32/SAF/inputs.safetensors"),
    outputs: golden!("small_float32/SAF/outputs.safetensors"),
    outputs64: golden!("small_float64/SAF/outputs.safetensors"),
};

/// The browser's WebGPU device (never WebGL, never the CPU).
#[allow(clippy::arc_with_non_send_sync)] // one thread on wasm; the model API takes an Arc
async fn webgpu() -> Arc<GpuContext> {
    let ctx = GpuContext::new(false).await.unwrap_or_else(|e| panic!("no WebGPU device in this browser: {e}"));
    assert_eq!(
        ctx.adapter_info.backend,
        wgpu::Backend::BrowserWebGpu,
        "expected browser WebGPU, got {}",
        ctx.describe()
    );
    Arc::new(ctx)
}

async fn check(module: &str, case: &Case, mode: Mode) {
    let p = Params::from_safetensors_bytes(case.params, "params.safetensors").expect("golden params");
    let out = read_safetensors(case.outputs, "outputs.safetensors").expect("golden outputs");
    let out64 = read_safetensors(case.outputs64, "float64 outputs.safetensors").expect("golden float64 outputs");
    let inputs = read_safetensors(case.inputs, "inputs.safetensors").expect("golden inputs");
    let (images, n, captions) = golden_inputs_from(&inputs);
    let ctx = webgpu().await;
    let g = GpuModel::new(ctx.clone(), &p).expect("upload the model");
    let img = g.encode_images_async(&images, n, mode).await.expect("WebGPU encode_images");
    let cap = g.encode_captions_async(&captions).await.expect("WebGPU encode_captions");
    let (sims, tr) = g.score_tile_async(&img, &cap, mode, true).await.expect("WebGPU score_tile");
    let label = format!("{module} on {}:", ctx.describe());
    compare_forward(&label, &p, &out, &out64, mode, &img, &cap, &sims, &tr.expect("trace"));
}

#[wasm_bindgen_test]
async fn webgpu_sgr_eval_matches_golden() {
    check("SGR", &SGR, Mode::Eval).await;
}

#[wasm_bindgen_test]
async fn webgpu_saf_eval_matches_golden() {
    check("SAF", &SAF, Mode::Eval).await;
}

#[wasm_bindgen_test]
async fn webgpu_sgr_train_matches_golden() {
    check("SGR", &SGR, Mode::Train).await;
}

#[wasm_bindgen_test]
async fn webgpu_saf_train_matches_golden() {
    check("SAF", &SAF, Mode::Train).await;
}

/// The page's engine on WebGPU: the ensemble ranking of a golden caption
/// equals the CPU backend's, and its scores agree within 2e-6.
#[wasm_bindgen_test]
async fn webgpu_engine_ranks_as_the_cpu_backend() {
    use sgraf::backend::Backend;
    use sgraf::data::{NpyF32, Split, Vocab};
    use sgraf::web::engine::Demo;
    let cli = |m: &str, f: &str| -> &'static [u8] {
        match (m, f) {
            ("SGR", "ck") => golden!("small_float32_cli/SGR/checkpoint.safetensors"),
            ("SAF", "ck") => golden!("small_float32_cli/SAF/checkpoint.safetensors"),
            (_, "ims") => golden!("small_float32_cli/SGR/data/test_ims.npy"),
            (_, "caps") => golden!("small_float32_cli/SGR/data/test_caps.txt"),
            _ => golden!("small_float32_cli/SGR/data/vocab.json"),
        }
    };
    let load = || {
        let params: Vec<Params> = ["SGR", "SAF"]
            .iter()
            .map(|m| Params::from_safetensors_bytes(cli(m, "ck"), m).expect("checkpoint"))
            .collect();
        let vocab = Vocab::from_json_str(std::str::from_utf8(cli("", "vocab")).expect("utf8")).expect("vocab");
        let images = NpyF32::from_bytes(cli("", "ims").to_vec()).expect("npy");
        let captions = sgraf::data::parse_captions(cli("", "caps"), "test_caps.txt").expect("captions");
        (params, vocab, Split::from_parts(images, captions).expect("split"))
    };
    let mut quiet = |_: &str, _: usize, _: usize| -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
        Box::pin(async {})
    };
    let (p, v, s) = load();
    let gpu = Demo::new(&Backend::Gpu(webgpu().await), p, v, s, &mut quiet).await.expect("WebGPU demo");
    let (p, v, s) = load();
    let cpu = Demo::new(&Backend::Cpu, p, v, s, &mut quiet).await.expect("CPU demo");
    for query in ["w35 w36 w46 w9 w44", "w6 w11 w17", "w41 qqunknownqq w43"] {
        let a = gpu.rank_images(query).await.expect("WebGPU ranking");
        let b = cpu.rank_images(query).await.expect("CPU ranking");
        assert_eq!(a.order, b.order, "{query}: WebGPU {:?} vs CPU {:?}", a.ensemble, b.ensemble);
        assert_close(&format!("{query}: ensemble"), &a.ensemble, &b.ensemble, 2e-6);
    }
    let a = gpu.rank_captions(2).await.expect("WebGPU caption ranking");
    let b = cpu.rank_captions(2).await.expect("CPU caption ranking");
    assert_eq!(a.order, b.order);
    assert_close("image 2 → captions", &a.ensemble, &b.ensemble, 2e-6);
}
