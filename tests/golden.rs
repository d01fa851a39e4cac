//! The whole forward, on the CPU and on the GPU (lavapipe here), against the
//! official implementation's outputs (`../shared/golden/small_float32`),
//! caption by caption, in eval mode and in train mode (dropout off).

mod common;
use common::*;
use sgraf::cpu::model::{CaptionEmb, ImageEmb, Trace};
use sgraf::model::params::{Mode, Params};

#[derive(Clone, Copy, Debug)]
enum On {
    Cpu,
    Gpu,
}

/// The forward of one backend: image embeddings, caption embeddings, and a
/// traced scoring of all 6 × 6 pairs.
fn forward(
    on: On,
    p: &Params,
    images: &[f32],
    n: usize,
    captions: &[Vec<u32>],
    mode: Mode,
) -> (ImageEmb, CaptionEmb, Vec<f32>, Trace) {
    match on {
        On::Cpu => {
            let (img, _) = sgraf::cpu::model::encode_images(p, images, n, mode);
            let cap = sgraf::cpu::model::encode_captions(p, captions);
            let (sims, tr) = sgraf::cpu::model::score_tile(p, &img, &cap, mode, true);
            (img, cap, sims, tr.expect("trace"))
        }
        On::Gpu => {
            let ctx = sgraf::gpu::GpuContext::new_blocking(false).unwrap_or_else(|e| {
                panic!("GPU parity test needs a GPU adapter (lavapipe: apt-get install mesa-vulkan-drivers): {e}")
            });
            let g = sgraf::gpu::model::GpuModel::new(std::sync::Arc::new(ctx), p).expect("upload model");
            let img = g.encode_images(images, n, mode).expect("GPU encode_images");
            let cap = g.encode_captions(captions).expect("GPU encode_captions");
            let (sims, tr) = g.score_tile(&img, &cap, mode, true).expect("GPU score_tile");
            (img, cap, sims, tr.expect("trace"))
        }
    }
}

const TOL: f32 = 2e-6;

fn check(on: On, module: &str, mode: Mode) {
    let p = load_params(&format!("small_float32/{module}/params.safetensors"));
    let out = load_tensors(&format!("small_float32/{module}/outputs.safetensors"));
    let out64 = load_tensors(&format!("small_float64/{module}/outputs.safetensors"));
    let (images, n, captions) = golden_inputs(module);
    let (img, cap, sims, tr) = forward(on, &p, &images, n, &captions, mode);
    compare_forward(&format!("{module} on {on:?}:"), &p, &out, &out64, mode, &img, &cap, &sims, &tr);
}

#[test]
fn cpu_sgr_eval_matches_golden() {
    check(On::Cpu, "SGR", Mode::Eval);
}
#[test]
fn cpu_sgr_train_matches_golden() {
    check(On::Cpu, "SGR", Mode::Train);
}
#[test]
fn cpu_saf_eval_matches_golden() {
    check(On::Cpu, "SAF", Mode::Eval);
}
#[test]
fn cpu_saf_train_matches_golden() {
    check(On::Cpu, "SAF", Mode::Train);
}
#[test]
fn gpu_sgr_eval_matches_golden() {
    check(On::Gpu, "SGR", Mode::Eval);
}
#[test]
fn gpu_sgr_train_matches_golden() {
    check(On::Gpu, "SGR", Mode::Train);
}
#[test]
fn gpu_saf_eval_matches_golden() {
    check(On::Gpu, "SAF", Mode::Eval);
}
#[test]
fn gpu_saf_train_matches_golden() {
    check(On::Gpu, "SAF", Mode::Train);
}

/// The scores-only eval path (folded SGR, parallel over images) equals the
/// traced forward on the golden case, and the golden scores.
#[test]
fn cpu_fast_eval_path_matches_golden() {
    for module in ["SGR", "SAF"] {
        let p = load_params(&format!("small_float32/{module}/params.safetensors"));
        let out = load_tensors(&format!("small_float32/{module}/outputs.safetensors"));
        let (images, n, captions) = golden_inputs(module);
        let (img, _) = sgraf::cpu::model::encode_images(&p, &images, n, Mode::Eval);
        let cap = sgraf::cpu::model::encode_captions(&p, &captions);
        let fast = sgraf::cpu::model::score_tile_parallel(&p, &img, &cap);
        assert_close(&format!("{module} fast eval.sims"), &fast, f32s(&out, "eval.sims"), TOL);
    }
}
