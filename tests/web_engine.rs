//! The page's engine (`sgraf::web`) natively, on the golden command-line
//! case: its rankings equal the batch scorer's and `sgraf rank`'s, the
//! per-word explanation is well formed, and mismatched inputs get messages
//! that name the problem.

mod common;
use common::*;

use std::future::Future;
use std::pin::Pin;

use sgraf::backend::{Backend, Model};
use sgraf::data::{Split, Vocab};
use sgraf::eval::{metrics, score};
use sgraf::model::params::Params;
use sgraf::web::engine::{check_inputs, Demo};

fn cli(rel: &str) -> std::path::PathBuf {
    golden_dir().join("small_float32_cli").join(rel)
}

fn params() -> Vec<Params> {
    ["SAF", "SGR"]
        .iter()
        .map(|m| {
            let bytes = std::fs::read(cli(&format!("{m}/checkpoint.safetensors"))).expect("checkpoint");
            Params::from_safetensors_bytes(&bytes, m).expect("params")
        })
        .collect()
}

fn inputs() -> (Vocab, Split) {
    (Vocab::load(cli("SGR/data/vocab.json")).expect("vocab"), Split::load(cli("SGR/data"), "test").expect("split"))
}

fn quiet(_: &str, _: usize, _: usize) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(async {})
}

fn demo() -> Demo {
    let (vocab, split) = inputs();
    pollster::block_on(Demo::new(&Backend::Cpu, params(), vocab, split, &mut quiet)).expect("demo")
}

const QUERIES: [&str; 3] = ["w48 w42 w19 w48", "w35 w36 w46 w9 w44", "w41 qqunknownqq w43"];

#[test]
fn rank_images_equals_the_batch_scorer_and_the_ensemble() {
    let d = demo();
    assert_eq!(d.models.iter().map(|m| m.module).collect::<Vec<_>>(), ["SGR", "SAF"], "SGR first");
    let (vocab, split) = inputs();
    for q in QUERIES {
        let r = pollster::block_on(d.rank_images(q)).expect("rank");
        let ids = score::encode_captions(&[q.to_string()], &vocab).expect("ids");
        let per: Vec<Vec<f32>> = params()
            .into_iter()
            .rev() // SGR, SAF
            .map(|p| {
                let m = Model::new(p, &Backend::Cpu).expect("model");
                score::score_split(&m, &split, &ids, &mut |_, _| {}).expect("score")
            })
            .collect();
        let ens = metrics::ensemble(&per[0], &per[1]).expect("ensemble");
        assert_eq!(r.ensemble, ens, "{q}: ensemble");
        assert_eq!(r.order, metrics::ranking(&ens), "{q}: order");
        assert_eq!(r.tokens, sgraf::data::tokenize(q));
        assert_eq!(r.known, r.tokens.iter().map(|t| t != "qqunknownqq").collect::<Vec<_>>());
    }
}

#[test]
fn rank_captions_scores_every_caption_for_one_image() {
    let d = demo();
    let r = pollster::block_on(d.rank_captions(3)).expect("rank captions");
    assert_eq!(r.ensemble.len(), d.gallery.n_captions());
    let mut sorted = r.order.clone();
    sorted.sort();
    assert_eq!(sorted, (0..d.gallery.n_captions()).collect::<Vec<_>>());
    let err = pollster::block_on(d.rank_captions(6)).expect_err("image 6 of 6 is refused");
    assert!(err.to_string().contains("not in the gallery of 6 images"), "{err}");
}

#[test]
fn explanation_has_one_weight_and_one_attention_row_per_token() {
    let d = demo();
    let caption = "w48 w42 w19 w48".to_string();
    let ex = d.explain(1, std::slice::from_ref(&caption)).expect("explain");
    let r = pollster::block_on(d.rank_images(&caption)).expect("rank");
    for (m, per_model) in d.models.iter().zip(&ex) {
        let e = &per_model[0];
        assert_eq!(e.tokens, ["<start>", "w48", "w42", "w19", "w48", "<end>"]);
        let own = r.models.iter().find(|s| s.module == m.module).expect("module scores");
        assert!(
            (e.score - own.scores[1]).abs() < 1e-6,
            "{}: explained score {} vs ranked {}",
            m.module,
            e.score,
            own.scores[1]
        );
        assert_eq!(e.region_attention.len(), e.tokens.len());
        for row in &e.region_attention {
            assert_eq!(row.len(), 36);
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "attention over regions sums to 1");
        }
        match m.module {
            "SAF" => {
                let w = e.saf_weights.as_ref().expect("SAF weights");
                assert_eq!(w.len(), e.tokens.len());
                let sum: f32 = w.iter().sum();
                assert!(
                    w.iter().all(|&x| x > 0.0) && sum < 1.0,
                    "token weights leave the global node its share: {w:?}"
                );
                assert!(e.sgr_global_edges.is_none());
            }
            _ => {
                let g = e.sgr_global_edges.as_ref().expect("SGR edges");
                assert_eq!(g.len(), e.tokens.len());
                assert!(g.iter().all(|&x| x > 0.0) && g.iter().sum::<f32>() < 1.0);
                assert!(e.saf_weights.is_none());
            }
        }
    }
}

#[test]
fn mismatched_inputs_are_refused_with_a_message() {
    let (vocab, split) = inputs();
    let small = Vocab::from_json_str(r#"{"idx2word": {"0": "<pad>", "1": "<start>", "2": "<end>", "3": "<unk>"}, "word2idx": {"<pad>": 0, "<start>": 1, "<end>": 2, "<unk>": 3}, "idx": 4}"#).expect("small vocab");
    let e = check_inputs(&params(), &small, &split).expect_err("vocab mismatch");
    assert!(e.to_string().contains("50-word embedding") && e.to_string().contains("4 words"), "{e}");
    let p = params();
    let e = check_inputs(&[p[0].clone(), p[0].clone()], &vocab, &split).expect_err("two SAF");
    assert!(e.to_string().contains("both checkpoints are SAF"), "{e}");
    let e = check_inputs(&[], &vocab, &split).expect_err("none");
    assert!(e.to_string().contains("no checkpoint"), "{e}");
    let wide = sgraf::data::NpyF32::from_vec(vec![2, 36, 8], vec![0.5; 2 * 36 * 8]).expect("npy");
    let split8 = Split::from_parts(wide, vec!["w4 w5".into(), "w6".into()]).expect("split");
    let e = check_inputs(&params(), &vocab, &split8).expect_err("feature size");
    assert!(e.to_string().contains("8 dimensions") && e.to_string().contains("expects 48"), "{e}");
}

#[test]
fn sgraf_rank_json_equals_the_engine() {
    let d = demo();
    for q in QUERIES {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sgraf"))
            .env("XDG_RUNTIME_DIR", "/tmp")
            .args(["rank", "--backend", "cpu", "--json", "--data"])
            .arg(cli("SGR/data"))
            .arg("--checkpoint")
            .arg(cli("SGR/checkpoint.safetensors"))
            .arg("--checkpoint")
            .arg(cli("SAF/checkpoint.safetensors"))
            .args(["--query", q])
            .output()
            .expect("run sgraf rank");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let order: Vec<usize> = serde_json::from_value(v["order"].clone()).expect("order");
        let scores: Vec<f32> = serde_json::from_value(v["scores"].clone()).expect("scores");
        let r = pollster::block_on(d.rank_images(q)).expect("rank");
        assert_eq!(order, r.order, "{q}");
        assert_eq!(scores, r.ensemble, "{q}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sgraf"))
        .args(["rank", "--backend", "cpu", "--query", " ", "--data"])
        .arg(cli("SGR/data"))
        .arg("--checkpoint")
        .arg(cli("SGR/checkpoint.safetensors"))
        .output()
        .expect("run sgraf rank");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("the query has no words"));
}

/// The engine on a GPU (lavapipe here; images and captions stay on the device
/// between queries) ranks as on the CPU, scores within 2e-6.
#[test]
fn gpu_engine_ranks_as_the_cpu_engine() {
    let ctx = sgraf::gpu::GpuContext::new_blocking(false).unwrap_or_else(|e| {
        panic!("GPU engine test needs a GPU adapter (lavapipe: apt-get install mesa-vulkan-drivers): {e}")
    });
    let (vocab, split) = inputs();
    let gpu =
        pollster::block_on(Demo::new(&Backend::Gpu(std::sync::Arc::new(ctx)), params(), vocab, split, &mut quiet))
            .expect("GPU demo");
    let cpu = demo();
    for q in QUERIES {
        let a = pollster::block_on(gpu.rank_images(q)).expect("GPU rank");
        let b = pollster::block_on(cpu.rank_images(q)).expect("CPU rank");
        assert_eq!(a.order, b.order, "{q}");
        assert_close(&format!("{q}: ensemble"), &a.ensemble, &b.ensemble, 2e-6);
    }
    for image in [0, 5] {
        let a = pollster::block_on(gpu.rank_captions(image)).expect("GPU captions");
        let b = pollster::block_on(cpu.rank_captions(image)).expect("CPU captions");
        assert_eq!(a.order, b.order, "image {image}");
        assert_close(&format!("image {image} → captions"), &a.ensemble, &b.ensemble, 2e-6);
    }
}
