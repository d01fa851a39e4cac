//! GPU backward kernels of the encoders' sequence and attention stages
//! against their CPU twins: the bi-GRU through time, the visual and text
//! self-attention, and the text-to-image attention (`sgraf::cpu::<layer>`),
//! on small random inputs with captions of different lengths. Every test
//! runs the GPU's own train-mode forward, compares it, then the backward
//! with every gradient accumulating onto random starting values. Needs a GPU
//! adapter; on headless Linux install lavapipe (`apt-get install
//! mesa-vulkan-drivers libvulkan1`) and run with `WGPU_BACKEND=vulkan`.
//! Without an adapter these tests FAIL (they never skip).

use sgraf::gpu::params::{GpuGruDirection, GpuLayout, GpuTextSa, GpuVisualSa};
use sgraf::gpu::{attention, gru, text_sa, visual_sa};
use sgraf::model::layout::TileLayout;
use sgraf::model::params::{BatchNorm, GruDirection, Linear, Mode, TextSa, VisualSa, N_REGIONS};

mod gpu_common;
use gpu_common::*;

const TOL: f32 = 1e-5;

fn random_linear(rng: &mut Lcg, n_in: usize, n_out: usize, scale: f32) -> Linear {
    Linear { w: rng.vec(n_out * n_in, scale), b: rng.vec(n_out, scale), n_out, n_in }
}

fn random_bn(rng: &mut Lcg, c: usize) -> BatchNorm {
    BatchNorm {
        weight: rng.vec(c, 1.5),
        bias: rng.vec(c, 0.5),
        running_mean: rng.vec(c, 0.5),
        running_var: rng.vec(c, 0.4).iter().map(|v| v + 0.6).collect(),
        num_batches_tracked: 3,
    }
}

/// Inverted-dropout multipliers (0 or 1/(1−p)) with p = 0.4.
fn random_mask(rng: &mut Lcg, n: usize) -> Vec<f32> {
    (0..n).map(|_| if rng.uniform() < -0.2 { 0.0 } else { 1.0 / 0.6 }).collect()
}

/// Rows normalised to unit length (the encoders' outputs are unit vectors).
fn unit_rows(mut x: Vec<f32>, n: usize) -> Vec<f32> {
    sgraf::cpu::l2norm::forward(&mut x, n);
    x
}

// ---------------------------------------------------------------------------
// gru

fn random_gru(rng: &mut Lcg, dw: usize, e: usize, scale: f32) -> GruDirection {
    GruDirection {
        w_ih: rng.vec(3 * e * dw, scale),
        w_hh: rng.vec(3 * e * e, scale),
        b_ih: rng.vec(3 * e, scale),
        b_hh: rng.vec(3 * e, scale),
    }
}

/// Bi-GRU: the GPU's packed train forward (`t`, hidden states, gates) and its
/// backward through time against `cpu::gru::{forward_train, backward}`.
fn check_gru_backward(lengths: &[usize], dw: usize, e: usize, seed: u64) {
    let ctx = gpu();
    let mut rng = Lcg::new(seed);
    let lay = TileLayout::new(lengths);
    let nw = lay.n_words();
    let scale = 1.0 / (e as f32).sqrt();
    let (fwd, bwd) = (random_gru(&mut rng, dw, e, scale), random_gru(&mut rng, dw, e, scale));
    let x = rng.vec(nw * dw, 1.0);
    let dt = rng.vec(nw * e, 1.0);
    let (dfwd0, dbwd0) = (random_gru(&mut rng, dw, e, 1.0), random_gru(&mut rng, dw, e, 1.0));
    let dx0 = rng.vec(nw * dw, 1.0);

    let (t, cache) = sgraf::cpu::gru::forward_train(&x, &lay, &fwd, &bwd, dw, e);
    let (mut dfwd, mut dbwd, mut dx) = (dfwd0.clone(), dbwd0.clone(), dx0.clone());
    sgraf::cpu::gru::backward(&dt, &t, &x, &lay, &fwd, &bwd, &cache, &mut dfwd, &mut dbwd, &mut dx, dw, e);

    let (gf, gb) = (GpuGruDirection::upload(ctx, &fwd).unwrap(), GpuGruDirection::upload(ctx, &bwd).unwrap());
    let (gdf, gdb) = (GpuGruDirection::upload(ctx, &dfwd0).unwrap(), GpuGruDirection::upload(ctx, &dbwd0).unwrap());
    let glay = GpuLayout::upload(ctx, &lay).unwrap();
    let (gx, gdt, gdx) = (up(&x, &[nw, dw]), up(&dt, &[nw, e]), up(&dx0, &[nw, dw]));
    let mut enc = ctx.encoder("test gru backward");
    let (gt, gcache) = gru::forward_train(ctx, &mut enc, &gx, &glay, &gf, &gb).unwrap();
    gru::backward(ctx, &mut enc, &gdt, &gt, &gx, &glay, &gf, &gb, &gcache, &gdf, &gdb, &gdx).unwrap();
    ctx.submit(enc);
    let tag = format!("lengths={lengths:?} D_w={dw} E={e}");
    assert_close(&format!("gru t ({tag})"), &read(&gt), &t, TOL);
    assert_close(&format!("gru h_fwd ({tag})"), &read(&gcache.fwd.h), &cache.fwd.h, TOL);
    assert_close(&format!("gru gates_bwd ({tag})"), &read(&gcache.bwd.gates), &cache.bwd.gates, TOL);
    // Weight gradients sum over every word and time step, in other orders.
    let tol_sum = TOL * (nw as f32 / 16.0).max(1.0);
    assert_close(&format!("gru dx ({tag})"), &read(&gdx), &dx, tol_sum);
    for (dir, g, c) in [("fwd", &gdf, &dfwd), ("bwd", &gdb, &dbwd)] {
        assert_close(&format!("gru {dir} dw_ih ({tag})"), &read(&g.w_ih), &c.w_ih, tol_sum);
        assert_close(&format!("gru {dir} dw_hh ({tag})"), &read(&g.w_hh), &c.w_hh, tol_sum);
        assert_close(&format!("gru {dir} db_ih ({tag})"), &read(&g.b_ih), &c.b_ih, tol_sum);
        assert_close(&format!("gru {dir} db_hh ({tag})"), &read(&g.b_hh), &c.b_hh, tol_sum);
    }
}

#[test]
fn gru_backward_matches_cpu() {
    check_gru_backward(&[5, 2, 7, 3], 6, 8, 1);
    check_gru_backward(&[1], 3, 4, 2);
    check_gru_backward(&[4, 4, 1, 9, 2], 5, 40, 3);
    check_gru_backward(&[3, 6], 24, 33, 4);
    // more than one tile of 32 captions
    let many: Vec<usize> = (0..35).map(|c| 1 + (c * 5) % 7).collect();
    check_gru_backward(&many, 5, 36, 5);
}

// ---------------------------------------------------------------------------
// text-to-image attention

/// Attention: the GPU's train forward (`ctx`, `attn`) and its backward for
/// all images at once against `cpu::attention::{forward_image, backward_image}`
/// image by image.
fn check_attention_backward(lengths: &[usize], n_img: usize, e: usize, seed: u64) {
    let ctx = gpu();
    let mut rng = Lcg::new(seed);
    let lay = TileLayout::new(lengths);
    let (r, nw) = (N_REGIONS, lay.n_words());
    let v = unit_rows(rng.vec(n_img * r * e, 1.0), e); // [n_img, 36, E]
    let t = unit_rows(rng.vec(nw * e, 1.0), e); // [n_words, E]
    let dctx = rng.vec(n_img * nw * e, 1.0);
    let (dv0, dt0) = (rng.vec(n_img * r * e, 1.0), rng.vec(nw * e, 1.0));

    let (mut dv, mut dt) = (dv0.clone(), dt0.clone());
    let (mut ctx_all, mut attn_all) = (Vec::new(), Vec::new());
    for i in 0..n_img {
        let vi = &v[i * r * e..(i + 1) * r * e];
        let c = sgraf::cpu::attention::forward_image(vi, &t, &lay, e);
        let dci = &dctx[i * nw * e..(i + 1) * nw * e];
        sgraf::cpu::attention::backward_image(dci, vi, &t, &lay, e, &c, &mut dv[i * r * e..(i + 1) * r * e], &mut dt);
        ctx_all.extend_from_slice(&c.ctx);
        attn_all.extend_from_slice(&c.attn);
    }

    let glay = GpuLayout::upload(ctx, &lay).unwrap();
    let (gv, gt, gdctx) = (up(&v, &[n_img, r, e]), up(&t, &[nw, e]), up(&dctx, &[n_img, nw, e]));
    let (gdv, gdt) = (up(&dv0, &[n_img, r, e]), up(&dt0, &[nw, e]));
    let mut enc = ctx.encoder("test attention backward");
    let cache = attention::forward_train(ctx, &mut enc, &gv, &gt, &glay, n_img).unwrap();
    attention::backward(ctx, &mut enc, &gdctx, &gv, &gt, &glay, n_img, &cache, &gdv, &gdt).unwrap();
    ctx.submit(enc);
    let tag = format!("lengths={lengths:?} n_img={n_img} E={e}");
    assert_close(&format!("attention ctx ({tag})"), &read(&cache.ctx), &ctx_all, TOL);
    assert_close(&format!("attention attn ({tag})"), &read(&cache.attn), &attn_all, TOL);
    // λ = 9 and the per-caption norms amplify rounding; dt sums over images.
    assert_close(&format!("attention dv ({tag})"), &read(&gdv), &dv, 4.0 * TOL);
    assert_close(&format!("attention dt ({tag})"), &read(&gdt), &dt, 4.0 * TOL * (n_img as f32).max(1.0));
}

#[test]
fn attention_backward_matches_cpu() {
    check_attention_backward(&[5, 2, 7, 3], 3, 16, 1);
    check_attention_backward(&[1], 1, 4, 2);
    check_attention_backward(&[4, 9], 2, 40, 3);
    check_attention_backward(&[3, 1, 6, 2, 8], 4, 9, 4);
}

// ---------------------------------------------------------------------------
// text self-attention

/// TextSA: the GPU's train forward (with dropout masks or without) and its
/// backward against `cpu::text_sa::{forward_train, backward}`; the common
/// bias gradient must stay untouched.
fn check_text_sa_backward(lengths: &[usize], e: usize, dropout: bool, seed: u64) {
    let ctx = gpu();
    let mut rng = Lcg::new(seed);
    let lay = TileLayout::new(lengths);
    let (nw, nc) = (lay.n_words(), lay.n_cap());
    let s = 1.0 / (e as f32).sqrt();
    let p = TextSa {
        local: random_linear(&mut rng, e, e, s),
        global: random_linear(&mut rng, e, e, s),
        common: random_linear(&mut rng, e, 1, 4.0 * s),
    };
    let t = unit_rows(rng.vec(nw * e, 1.0), e);
    let dout = rng.vec(nc * e, 1.0);
    let dp0 = TextSa {
        local: random_linear(&mut rng, e, e, 1.0),
        global: random_linear(&mut rng, e, e, 1.0),
        common: random_linear(&mut rng, e, 1, 1.0),
    };
    let dt0 = rng.vec(nw * e, 1.0);
    let (lm, gm) =
        if dropout { (Some(random_mask(&mut rng, nw * e)), Some(random_mask(&mut rng, nc * e))) } else { (None, None) };

    let cache = sgraf::cpu::text_sa::forward_train(&t, &p, &lay, e, lm.clone(), gm.clone());
    let (mut dp, mut dt) = (dp0.clone(), dt0.clone());
    sgraf::cpu::text_sa::backward(&dout, &t, &p, &lay, &cache, &mut dp, &mut dt, e);

    let gp = GpuTextSa::upload(ctx, &p).unwrap();
    let gdp = GpuTextSa::upload(ctx, &dp0).unwrap();
    let glay = GpuLayout::upload(ctx, &lay).unwrap();
    let (gt, gdout, gdt) = (up(&t, &[nw, e]), up(&dout, &[nc, e]), up(&dt0, &[nw, e]));
    let glm = lm.as_ref().map(|m| up(m, &[nw, e]));
    let ggm = gm.as_ref().map(|m| up(m, &[nc, e]));
    let mut enc = ctx.encoder("test text_sa backward");
    let gc = text_sa::forward_train(ctx, &mut enc, &gt, &gp, &glay, glm.as_ref(), ggm.as_ref()).unwrap();
    text_sa::backward(ctx, &mut enc, &gdout, &gt, &gp, &glay, &gc, glm.as_ref(), ggm.as_ref(), &gdp, &gdt).unwrap();
    ctx.submit(enc);
    let tag = format!("lengths={lengths:?} E={e} dropout={dropout}");
    assert_close(&format!("text_sa t_glo ({tag})"), &read(&gc.out), &cache.out, TOL);
    assert_close(&format!("text_sa weights ({tag})"), &read(&gc.w), &cache.w, TOL);
    let tol_sum = TOL * (nw as f32 / 16.0).max(1.0);
    assert_close(&format!("text_sa dt ({tag})"), &read(&gdt), &dt, tol_sum);
    for (name, g, c) in [
        ("local.w", &gdp.local.w, &dp.local.w),
        ("local.b", &gdp.local.b, &dp.local.b),
        ("global.w", &gdp.global.w, &dp.global.w),
        ("global.b", &gdp.global.b, &dp.global.b),
        ("common.w", &gdp.common.w, &dp.common.w),
    ] {
        assert_close(&format!("text_sa d{name} ({tag})"), &read(g), c, tol_sum);
    }
    assert_eq!(dp.common.b, dp0.common.b, "CPU twin touched the common bias gradient");
    assert_eq!(read(&gdp.common.b), dp0.common.b, "text_sa dcommon.b ({tag}) must stay untouched");
}

#[test]
fn text_sa_backward_matches_cpu() {
    for dropout in [false, true] {
        let s0 = if dropout { 10 } else { 0 };
        check_text_sa_backward(&[5, 2, 7, 3], 16, dropout, s0 + 1);
        check_text_sa_backward(&[1], 4, dropout, s0 + 2);
        check_text_sa_backward(&[4, 9], 300, dropout, s0 + 3);
        check_text_sa_backward(&[3, 1, 6, 2, 8], 9, dropout, s0 + 4);
    }
}

// ---------------------------------------------------------------------------
// visual self-attention

/// VisualSA: the GPU's train forward (BatchNorms in train or eval mode,
/// with or without dropout) and its backward through both BatchNorms against
/// `cpu::visual_sa::{forward_train, backward}`; the common bias gradient
/// (and in train mode the global bias gradient) must stay untouched.
fn check_visual_sa_backward(n: usize, e: usize, mode: Mode, dropout: bool, seed: u64) {
    let ctx = gpu();
    let mut rng = Lcg::new(seed);
    let r = N_REGIONS;
    let s = 1.0 / (e as f32).sqrt();
    let p = VisualSa {
        local: random_linear(&mut rng, e, e, s),
        local_bn: random_bn(&mut rng, r),
        global: random_linear(&mut rng, e, e, s),
        global_bn: random_bn(&mut rng, e),
        common: random_linear(&mut rng, e, 1, 4.0 * s),
    };
    let v = unit_rows(rng.vec(n * r * e, 1.0), e);
    let dout = rng.vec(n * e, 1.0);
    let dp0 = VisualSa {
        local: random_linear(&mut rng, e, e, 1.0),
        local_bn: random_bn(&mut rng, r),
        global: random_linear(&mut rng, e, e, 1.0),
        global_bn: random_bn(&mut rng, e),
        common: random_linear(&mut rng, e, 1, 1.0),
    };
    let dv0 = rng.vec(n * r * e, 1.0);
    let (lm, gm) = if dropout {
        (Some(random_mask(&mut rng, n * r * e)), Some(random_mask(&mut rng, n * e)))
    } else {
        (None, None)
    };

    let cache = sgraf::cpu::visual_sa::forward_train(&v, &p, mode, n, e, lm.clone(), gm.clone());
    let (mut dp, mut dv) = (dp0.clone(), dv0.clone());
    sgraf::cpu::visual_sa::backward(&dout, &v, &p, mode, &cache, &mut dp, &mut dv, n, e);

    let gp = GpuVisualSa::upload(ctx, &p).unwrap();
    let gdp = GpuVisualSa::upload(ctx, &dp0).unwrap();
    let (gv, gdout, gdv) = (up(&v, &[n, r, e]), up(&dout, &[n, e]), up(&dv0, &[n, r, e]));
    let glm = lm.as_ref().map(|m| up(m, &[n, r, e]));
    let ggm = gm.as_ref().map(|m| up(m, &[n, e]));
    let mut enc = ctx.encoder("test visual_sa backward");
    let gc = visual_sa::forward_train(ctx, &mut enc, &gv, &gp, mode, n, glm.as_ref(), ggm.as_ref()).unwrap();
    visual_sa::backward(ctx, &mut enc, &gdout, &gv, &gp, mode, &gc, glm.as_ref(), ggm.as_ref(), &gdp, &gdv, n).unwrap();
    ctx.submit(enc);
    let tag = format!("n={n} E={e} {mode:?} dropout={dropout}");
    assert_close(&format!("visual_sa v_glo ({tag})"), &read(&gc.out), &cache.out, TOL);
    assert_close(&format!("visual_sa weights ({tag})"), &read(&gc.w), &cache.w, TOL);
    // BatchNorm-coupled gradients sum over n·E values per region slot.
    let tol_sum = TOL * ((n * e) as f32 / 64.0).max(1.0);
    assert_close(&format!("visual_sa dv ({tag})"), &read(&gdv), &dv, tol_sum);
    for (name, g, c) in [
        ("local.w", &gdp.local.w, &dp.local.w),
        ("local.b", &gdp.local.b, &dp.local.b),
        ("local_bn.weight", &gdp.local_bn.weight, &dp.local_bn.weight),
        ("local_bn.bias", &gdp.local_bn.bias, &dp.local_bn.bias),
        ("global.w", &gdp.global.w, &dp.global.w),
        ("global.b", &gdp.global.b, &dp.global.b),
        ("global_bn.weight", &gdp.global_bn.weight, &dp.global_bn.weight),
        ("global_bn.bias", &gdp.global_bn.bias, &dp.global_bn.bias),
        ("common.w", &gdp.common.w, &dp.common.w),
    ] {
        assert_close(&format!("visual_sa d{name} ({tag})"), &read(g), c, tol_sum);
    }
    assert_eq!(read(&gdp.common.b), dp0.common.b, "visual_sa dcommon.b ({tag}) must stay untouched");
    if mode == Mode::Train {
        assert_eq!(dp.global.b, dp0.global.b, "CPU twin touched the global bias gradient in train mode");
        assert_eq!(read(&gdp.global.b), dp0.global.b, "visual_sa dglobal.b ({tag}) must stay untouched");
    }
}

#[test]
fn visual_sa_backward_matches_cpu() {
    for (i, mode) in [Mode::Train, Mode::Eval].into_iter().enumerate() {
        for dropout in [false, true] {
            let s0 = 10 * i as u64 + if dropout { 5 } else { 0 };
            check_visual_sa_backward(2, 8, mode, dropout, s0 + 1);
            check_visual_sa_backward(5, 33, mode, dropout, s0 + 2);
            check_visual_sa_backward(3, 300, mode, dropout, s0 + 3);
        }
    }
}
