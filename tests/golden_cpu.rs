//! The CPU forward against the official implementation's outputs
//! (`../shared/golden/small_float32`), caption by caption, eval and train mode.

mod common;
use common::*;
use sgraf::cpu::model::{encode_captions, encode_images, encode_words, score_tile};
use sgraf::model::params::{Mode, N_REGIONS};

const TOL: f32 = 2e-6;

fn check(module: &str, mode: Mode) {
    let p = load_params(&format!("small_float32/{module}/params.safetensors"));
    let out = load_tensors(&format!("small_float32/{module}/outputs.safetensors"));
    let out64 = load_tensors(&format!("small_float64/{module}/outputs.safetensors"));
    let mut widened = Vec::new();
    let mut total = 0usize;
    let mut assert_close = |name: &str, got: &[f32], want: &[f32], tol: f32| {
        let key = name.split(' ').nth(1).expect("name is '<module> <key>'");
        let used = assert_parity(name, got, want, f32s(&out64, key), tol);
        if let Some(t) = used {
            widened.push(format!("{key} (float64 within {t:.1e})"));
        }
        total += got.len();
    };
    let (images, n, captions) = golden_inputs(module);
    let pre = if mode == Mode::Eval { "eval" } else { "train" };
    let (e, s) = (p.cfg.embed, p.cfg.sim_dim);
    let (img, _) = encode_images(&p, &images, n, mode);
    assert_close(
        &format!("{module} {pre}.img_emb"),
        &img.v,
        f32s(&out, &format!("{pre}.img_emb")),
        TOL,
    );
    assert_close(
        &format!("{module} {pre}.img_glo"),
        &img.v_glo,
        f32s(&out, &format!("{pre}.img_glo")),
        TOL,
    );
    let (cap_emb, _) = encode_words(&p, &captions);
    assert_close(
        &format!("{module} {pre}.cap_emb"),
        &cap_emb,
        f32s(&out, &format!("{pre}.cap_emb")),
        TOL,
    );
    let cap = encode_captions(&p, &captions);
    let (sims, tr) = score_tile(&p, &img, &cap, mode, true);
    let tr = tr.expect("trace");
    let lay = &cap.layout;
    let (nw, nn, nc) = (lay.n_words(), lay.n_nodes(), lay.n_cap());
    for c in 0..nc {
        let k = |x: &str| format!("{pre}.cap{c}.{x}");
        let name = |x: &str| format!("{module} {}", k(x));
        assert_close(
            &name("cap_glo"),
            &cap.t_glo[c * e..(c + 1) * e],
            f32s(&out, &k("cap_glo")),
            TOL,
        );
        let per_img =
            |t: &[f32], rows: std::ops::Range<usize>, total: usize, width: usize| -> Vec<f32> {
                (0..n)
                    .flat_map(|i| {
                        t[(i * total + rows.start) * width..(i * total + rows.end) * width].to_vec()
                    })
                    .collect()
            };
        assert_close(
            &name("context_img"),
            &per_img(&tr.ctx, lay.words(c), nw, e),
            f32s(&out, &k("context_img")),
            TOL,
        );
        assert_close(
            &name("sim_loc_linear"),
            &per_img(&tr.sim_loc_linear, lay.words(c), nw, s),
            f32s(&out, &k("sim_loc_linear")),
            TOL,
        );
        assert_close(
            &name("sim_glo_linear"),
            &per_img(&tr.sim_glo_linear, c..c + 1, nc, s),
            f32s(&out, &k("sim_glo_linear")),
            TOL,
        );
        assert_close(
            &name("sim_emb"),
            &per_img(&tr.nodes, lay.nodes(c), nn, s),
            f32s(&out, &k("sim_emb")),
            TOL,
        );
        for (step, x) in tr.sgr_steps.iter().enumerate() {
            assert_close(
                &name(&format!("sgr_step{step}")),
                &per_img(x, lay.nodes(c), nn, s),
                f32s(&out, &k(&format!("sgr_step{step}"))),
                TOL,
            );
        }
        if let Some(saf) = &tr.saf {
            assert_close(
                &name("saf_bn_out"),
                &per_img(&saf.bn_out, lay.nodes(c), nn, 1),
                f32s(&out, &k("saf_bn_out")),
                TOL,
            );
            assert_close(
                &name("sim_vec"),
                &per_img(&tr.sim_vec, c..c + 1, nc, s),
                f32s(&out, &k("sim_vec")),
                TOL,
            );
        }
        assert_close(
            &name("logit"),
            &per_img(&tr.logit, c..c + 1, nc, 1),
            f32s(&out, &k("logit")),
            TOL,
        );
    }
    assert_close(
        &format!("{module} {pre}.sims"),
        &sims,
        f32s(&out, &format!("{pre}.sims")),
        TOL,
    );
    let _ = N_REGIONS;
    println!("{module} {pre}: {total} values within 2e-6 of the official float32 outputs, except tensors where the official float32 is >1e-6 from exact: {widened:?}");
}

#[test]
fn sgr_eval_matches_golden() {
    check("SGR", Mode::Eval);
}
#[test]
fn sgr_train_matches_golden() {
    check("SGR", Mode::Train);
}
#[test]
fn saf_eval_matches_golden() {
    check("SAF", Mode::Eval);
}
#[test]
fn saf_train_matches_golden() {
    check("SAF", Mode::Train);
}
