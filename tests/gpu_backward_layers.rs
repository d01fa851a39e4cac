//! GPU backward kernels of the matching layers against their CPU twins
//! (`sgraf::cpu::<layer>::backward`), on small random inputs. Needs a GPU
//! adapter; on headless Linux install lavapipe (`apt-get install
//! mesa-vulkan-drivers libvulkan1`) and run with `WGPU_BACKEND=vulkan`.
//! Without an adapter these tests FAIL (they never skip).

use sgraf::gpu::params::{GpuBatchNorm, GpuLayout, GpuLinear, GpuSaf, GpuSgrStep};
use sgraf::gpu::{batchnorm, saf, sgr, similarity};
use sgraf::model::layout::TileLayout;
use sgraf::model::params::{BatchNorm, Linear, Mode, Saf, SgrStep};

mod gpu_common;
use gpu_common::*;

const TOL: f32 = 1e-5;

// ---------------------------------------------------------------------------
// batchnorm

fn random_bn(rng: &mut Lcg, c: usize) -> BatchNorm {
    BatchNorm {
        weight: rng.vec(c, 1.5),
        bias: rng.vec(c, 0.5),
        running_mean: rng.vec(c, 0.5),
        running_var: rng.vec(c, 0.4).iter().map(|v| v + 0.6).collect(),
        num_batches_tracked: 3,
    }
}

/// `dx`, `dweight`, `dbias` (all accumulating onto random starting values)
/// against `cpu::batchnorm::backward`; in train mode the GPU uses the batch
/// statistics of its own forward.
fn check_batchnorm_backward(n: usize, c: usize, l: usize, mode: Mode, seed: u64) {
    let ctx = gpu();
    let mut rng = Lcg::new(seed);
    let bn = random_bn(&mut rng, c);
    let x: Vec<f32> = rng.vec(n * c * l, 2.0).iter().map(|v| v + 0.3).collect();
    let dy = rng.vec(n * c * l, 1.0);
    let dx0 = rng.vec(n * c * l, 1.0);
    let dbn0 = random_bn(&mut rng, c);

    let mut y = x.clone();
    let stats = sgraf::cpu::batchnorm::forward(&mut y, &bn, mode, n, c, l);
    let (mut dbn, mut dx) = (dbn0.clone(), dx0.clone());
    sgraf::cpu::batchnorm::backward(&dy, &x, &bn, mode, stats.as_ref(), &mut dbn, &mut dx, n, c, l);

    let gbn = GpuBatchNorm::upload(ctx, &bn).unwrap();
    let gdbn = GpuBatchNorm::upload(ctx, &dbn0).unwrap();
    let (gx, gy, gdy, gdx) = (up(&x, &[n, c, l]), up(&x, &[n, c, l]), up(&dy, &[n, c, l]), up(&dx0, &[n, c, l]));
    let mut enc = ctx.encoder("test batchnorm backward");
    let gstats = batchnorm::forward(ctx, &mut enc, &gy, &gbn, mode, n, c, l, batchnorm::BnAct::None).unwrap();
    batchnorm::backward(ctx, &mut enc, &gdy, &gx, &gbn, mode, gstats.as_ref(), &gdbn, &gdx, n, c, l).unwrap();
    ctx.submit(enc);
    let tag = format!("n={n} c={c} l={l} {mode:?}");
    // dweight/dbias are sums of n·l terms: float32 tree sum vs float64.
    let tol_sum = TOL * ((n * l) as f32 / 256.0).max(1.0);
    assert_close(&format!("batchnorm dx ({tag})"), &read(&gdx), &dx, TOL);
    assert_close(&format!("batchnorm dweight ({tag})"), &read(&gdbn.weight), &dbn.weight, tol_sum);
    assert_close(&format!("batchnorm dbias ({tag})"), &read(&gdbn.bias), &dbn.bias, tol_sum);
}

#[test]
fn batchnorm_backward_matches_cpu() {
    for (i, mode) in [Mode::Train, Mode::Eval].into_iter().enumerate() {
        let s = 10 * i as u64;
        check_batchnorm_backward(4, 3, 5, mode, s + 1);
        check_batchnorm_backward(1, 7, 1, mode, s + 2);
        check_batchnorm_backward(2, 5, 300, mode, s + 3);
        check_batchnorm_backward(128, 1, 36, mode, s + 4);
        check_batchnorm_backward(3, 64, 2, mode, s + 5);
    }
}

// ---------------------------------------------------------------------------
// similarity

fn random_linear(rng: &mut Lcg, n_in: usize, n_out: usize, scale: f32) -> Linear {
    Linear { w: rng.vec(n_out * n_in, scale), b: rng.vec(n_out, scale), n_out, n_in }
}

/// Local and global similarity backward (all images at once on the GPU)
/// against `cpu::similarity::{local,global}_backward_image` image by image,
/// every gradient accumulating onto random starting values.
fn check_similarity_backward(lengths: &[usize], n_img: usize, e: usize, s: usize, seed: u64) {
    let ctx = gpu();
    let mut rng = Lcg::new(seed);
    let lay = TileLayout::new(lengths);
    let (nw, nc, nn) = (lay.n_words(), lay.n_cap(), lay.n_nodes());
    let lin = random_linear(&mut rng, e, s, 0.3);
    let attended = rng.vec(n_img * nw * e, 1.0); // [n_img, n_words, E]
    let t = rng.vec(nw * e, 1.0); // [n_words, E]
    let v_glo = rng.vec(n_img * e, 1.0); // [n_img, E]
    let t_glo = rng.vec(nc * e, 1.0); // [n_cap, E]
    let dnodes = rng.vec(n_img * nn * s, 1.0);
    let dlin0 = random_linear(&mut rng, e, s, 1.0);
    let (dctx0, dt0) = (rng.vec(n_img * nw * e, 1.0), rng.vec(nw * e, 1.0));
    let (dv0, dtg0) = (rng.vec(n_img * e, 1.0), rng.vec(nc * e, 1.0));

    // CPU: forward and backward image by image.
    let mut nodes = vec![0.0; n_img * nn * s];
    let (mut norms_l, mut norms_g) = (Vec::new(), Vec::new());
    for i in 0..n_img {
        let ni = &mut nodes[i * nn * s..(i + 1) * nn * s];
        norms_l.extend(sgraf::cpu::similarity::local_forward_image(
            &attended[i * nw * e..(i + 1) * nw * e],
            &t,
            &lin,
            &lay,
            ni,
        ));
        norms_g.extend(sgraf::cpu::similarity::global_forward_image(
            &v_glo[i * e..(i + 1) * e],
            &t_glo,
            &lin,
            &lay,
            ni,
        ));
    }
    let (mut dlin_l, mut dctx, mut dt) = (dlin0.clone(), dctx0.clone(), dt0.clone());
    let (mut dlin_g, mut dv, mut dtg) = (dlin0.clone(), dv0.clone(), dtg0.clone());
    for i in 0..n_img {
        let (dni, ni) = (&dnodes[i * nn * s..(i + 1) * nn * s], &nodes[i * nn * s..(i + 1) * nn * s]);
        sgraf::cpu::similarity::local_backward_image(
            dni,
            ni,
            &norms_l[i * nw..(i + 1) * nw],
            &attended[i * nw * e..(i + 1) * nw * e],
            &t,
            &lin,
            &lay,
            &mut dlin_l,
            &mut dctx[i * nw * e..(i + 1) * nw * e],
            &mut dt,
        );
        sgraf::cpu::similarity::global_backward_image(
            dni,
            ni,
            &norms_g[i * nc..(i + 1) * nc],
            &v_glo[i * e..(i + 1) * e],
            &t_glo,
            &lin,
            &lay,
            &mut dlin_g,
            &mut dv[i * e..(i + 1) * e],
            &mut dtg,
        );
    }

    let glin = GpuLinear::upload(ctx, &lin).unwrap();
    let glay = GpuLayout::upload(ctx, &lay).unwrap();
    let (gdn, gn) = (up(&dnodes, &[n_img, nn, s]), up(&nodes, &[n_img, nn, s]));
    let (gnl, gng) = (up(&norms_l, &[n_img, nw]), up(&norms_g, &[n_img, nc]));
    let (ga, gt, gv, gtg) =
        (up(&attended, &[n_img, nw, e]), up(&t, &[nw, e]), up(&v_glo, &[n_img, e]), up(&t_glo, &[nc, e]));
    let (gdl_l, gdl_g) = (GpuLinear::upload(ctx, &dlin0).unwrap(), GpuLinear::upload(ctx, &dlin0).unwrap());
    let (gdctx, gdt) = (up(&dctx0, &[n_img, nw, e]), up(&dt0, &[nw, e]));
    let (gdv, gdtg) = (up(&dv0, &[n_img, e]), up(&dtg0, &[nc, e]));
    let mut enc = ctx.encoder("test similarity backward");
    similarity::local_backward(ctx, &mut enc, &gdn, &gn, &gnl, &ga, &gt, &glin, &glay, n_img, &gdl_l, &gdctx, &gdt)
        .unwrap();
    similarity::global_backward(ctx, &mut enc, &gdn, &gn, &gng, &gv, &gtg, &glin, &glay, n_img, &gdl_g, &gdv, &gdtg)
        .unwrap();
    ctx.submit(enc);
    let tag = format!("lengths={lengths:?} n_img={n_img} E={e} S={s}");
    // dW, db sum over n_img·rows; dt over n_img terms: float32 in other orders.
    let tol_sum = TOL * ((n_img * nw) as f32 / 64.0).max(1.0);
    assert_close(&format!("similarity local dctx ({tag})"), &read(&gdctx), &dctx, TOL);
    assert_close(&format!("similarity local dt ({tag})"), &read(&gdt), &dt, tol_sum);
    assert_close(&format!("similarity local dW ({tag})"), &read(&gdl_l.w), &dlin_l.w, tol_sum);
    assert_close(&format!("similarity local db ({tag})"), &read(&gdl_l.b), &dlin_l.b, tol_sum);
    assert_close(&format!("similarity global dv_glo ({tag})"), &read(&gdv), &dv, TOL);
    assert_close(&format!("similarity global dt_glo ({tag})"), &read(&gdtg), &dtg, tol_sum);
    assert_close(&format!("similarity global dW ({tag})"), &read(&gdl_g.w), &dlin_g.w, tol_sum);
    assert_close(&format!("similarity global db ({tag})"), &read(&gdl_g.b), &dlin_g.b, tol_sum);
}

#[test]
fn similarity_backward_matches_cpu() {
    check_similarity_backward(&[5, 2, 20, 3], 3, 12, 7, 1);
    check_similarity_backward(&[1], 1, 1, 1, 2);
    check_similarity_backward(&[4, 9], 5, 40, 260, 3);
    check_similarity_backward(&[3, 1, 6, 2, 8], 2, 33, 17, 4);
}

// ---------------------------------------------------------------------------
// sgr

fn random_step(rng: &mut Lcg, s: usize, scale: f32) -> SgrStep {
    SgrStep {
        query: random_linear(rng, s, s, scale),
        key: random_linear(rng, s, s, scale),
        graph: random_linear(rng, s, s, scale),
    }
}

/// One SGR step: the GPU's own train forward and backward against
/// `cpu::sgr::{step_forward_train, step_backward}`, gradients accumulating
/// onto random starting values; the key bias gradient must stay untouched.
fn check_sgr_step_backward(lengths: &[usize], n_img: usize, s: usize, seed: u64) {
    let ctx = gpu();
    let mut rng = Lcg::new(seed);
    let lay = TileLayout::new(lengths);
    let nn = lay.n_nodes();
    let step = random_step(&mut rng, s, 1.0 / (s as f32).sqrt());
    let x = rng.vec(n_img * nn * s, 1.0);
    let dout = rng.vec(n_img * nn * s, 1.0);
    let dp0 = random_step(&mut rng, s, 1.0);
    let dx0 = rng.vec(n_img * nn * s, 1.0);

    let cache = sgraf::cpu::sgr::step_forward_train(&x, &step, &lay, n_img);
    let (mut dp, mut dx) = (dp0.clone(), dx0.clone());
    sgraf::cpu::sgr::step_backward(&dout, &step, &lay, n_img, &cache, &mut dp, &mut dx);
    assert_eq!(dp.key.b, dp0.key.b, "CPU twin touched the key bias gradient");

    let gstep = GpuSgrStep::upload(ctx, &step).unwrap();
    let gdp = GpuSgrStep::upload(ctx, &dp0).unwrap();
    let glay = GpuLayout::upload(ctx, &lay).unwrap();
    let (gx, gdout, gdx) = (up(&x, &[n_img, nn, s]), up(&dout, &[n_img, nn, s]), up(&dx0, &[n_img, nn, s]));
    let mut enc = ctx.encoder("test sgr step backward");
    let gcache = sgr::step_forward_train(ctx, &mut enc, &gx, &gstep, &glay, n_img).unwrap();
    sgr::step_backward(ctx, &mut enc, &gdout, &gstep, &glay, n_img, &gcache, &gdp, &gdx).unwrap();
    ctx.submit(enc);
    let tag = format!("lengths={lengths:?} n_img={n_img} S={s}");
    assert_close(&format!("sgr out ({tag})"), &read(&gcache.out), &cache.out, TOL);
    assert_close(&format!("sgr attn ({tag})"), &read(&gcache.attn), &cache.a, TOL);
    let tol_sum = TOL * ((n_img * nn) as f32 / 64.0).max(1.0);
    assert_close(&format!("sgr dx ({tag})"), &read(&gdx), &dx, TOL);
    for (name, g, c) in [
        ("graph.w", &gdp.graph.w, &dp.graph.w),
        ("graph.b", &gdp.graph.b, &dp.graph.b),
        ("query.w", &gdp.query.w, &dp.query.w),
        ("query.b", &gdp.query.b, &dp.query.b),
        ("key.w", &gdp.key.w, &dp.key.w),
    ] {
        assert_close(&format!("sgr d{name} ({tag})"), &read(g), c, tol_sum);
    }
    assert_eq!(read(&gdp.key.b), dp0.key.b, "sgr dkey.b ({tag}) must stay untouched");
}

#[test]
fn sgr_step_backward_matches_cpu() {
    check_sgr_step_backward(&[5, 2, 20, 3], 3, 16, 1);
    check_sgr_step_backward(&[1], 1, 1, 2);
    check_sgr_step_backward(&[4, 9], 2, 40, 3);
    check_sgr_step_backward(&[3, 1, 6, 2, 8], 4, 9, 4);
}

// ---------------------------------------------------------------------------
// saf

/// SAF: the GPU's forward and backward against `cpu::saf::{attn_logits,
/// caption_batch_norm, filter_forward}` and their backwards in reverse,
/// gradients accumulating onto random starting values; in train mode the
/// attn bias gradient must stay untouched.
fn check_saf_backward(lengths: &[usize], n_img: usize, s: usize, mode: Mode, seed: u64) {
    use sgraf::cpu::saf as cs;
    let ctx = gpu();
    let mut rng = Lcg::new(seed);
    let lay = TileLayout::new(lengths);
    let (nn, nc) = (lay.n_nodes(), lay.n_cap());
    let p = Saf { attn: random_linear(&mut rng, s, 1, 1.0 / (s as f32).sqrt()), bn: random_bn(&mut rng, 1) };
    let nodes = rng.vec(n_img * nn * s, 1.0);
    let ds = rng.vec(n_img * nc * s, 1.0);
    let dp0 = Saf { attn: random_linear(&mut rng, s, 1, 1.0), bn: random_bn(&mut rng, 1) };
    let dnodes0 = rng.vec(n_img * nn * s, 1.0);

    let beta = cs::attn_logits(&nodes, &p, n_img * nn);
    let (bn_out, stats) = cs::caption_batch_norm(&beta, &p, &lay, n_img, mode);
    let f = cs::filter_forward(&nodes, &bn_out, &lay, n_img, s);
    let (mut dp, mut dnodes) = (dp0.clone(), dnodes0.clone());
    let mut dbn_out = vec![0.0; n_img * nn];
    cs::filter_backward(&ds, &nodes, &lay, n_img, s, &f, &mut dnodes, &mut dbn_out);
    let mut dbeta = vec![0.0; n_img * nn];
    cs::caption_batch_norm_backward(&dbn_out, &beta, &p, &lay, n_img, mode, &stats, &mut dp.bn, &mut dbeta);
    cs::attn_logits_backward(&dbeta, &nodes, &p, mode, &mut dp, &mut dnodes, n_img * nn);

    let gp = GpuSaf::upload(ctx, &p).unwrap();
    let gdp = GpuSaf::upload(ctx, &dp0).unwrap();
    let glay = GpuLayout::upload(ctx, &lay).unwrap();
    let (gnodes, gds, gdn) = (up(&nodes, &[n_img, nn, s]), up(&ds, &[n_img, nc, s]), up(&dnodes0, &[n_img, nn, s]));
    let mut enc = ctx.encoder("test saf backward");
    let fwd = saf::forward(ctx, &mut enc, &gnodes, &gp, &glay, n_img, mode).unwrap();
    saf::backward(ctx, &mut enc, &gds, &gnodes, &gp, &glay, n_img, mode, &fwd, &gdp, &gdn).unwrap();
    ctx.submit(enc);
    let tag = format!("lengths={lengths:?} n_img={n_img} S={s} {mode:?}");
    assert_close(&format!("saf s ({tag})"), &read(&fwd.s), &f.out, TOL);
    let tol_sum = TOL * ((n_img * nn) as f32 / 64.0).max(1.0);
    assert_close(&format!("saf dnodes ({tag})"), &read(&gdn), &dnodes, TOL);
    assert_close(&format!("saf dattn.w ({tag})"), &read(&gdp.attn.w), &dp.attn.w, tol_sum);
    assert_close(&format!("saf dattn.b ({tag})"), &read(&gdp.attn.b), &dp.attn.b, tol_sum);
    assert_close(&format!("saf dbn.weight ({tag})"), &read(&gdp.bn.weight), &dp.bn.weight, tol_sum);
    assert_close(&format!("saf dbn.bias ({tag})"), &read(&gdp.bn.bias), &dp.bn.bias, tol_sum);
    if mode == Mode::Train {
        assert_eq!(dp.attn.b, dp0.attn.b, "CPU twin touched the attn bias gradient in train mode");
        assert_eq!(read(&gdp.attn.b), dp0.attn.b, "saf dattn.b ({tag}) must stay untouched in train mode");
    }
}

#[test]
fn saf_backward_matches_cpu() {
    for (i, mode) in [Mode::Train, Mode::Eval].into_iter().enumerate() {
        let s0 = 10 * i as u64;
        check_saf_backward(&[5, 2, 20, 3], 3, 16, mode, s0 + 1);
        check_saf_backward(&[1], 2, 1, mode, s0 + 2);
        check_saf_backward(&[4, 9], 2, 300, mode, s0 + 3);
        check_saf_backward(&[3, 1, 6, 2, 8], 5, 9, mode, s0 + 4);
    }
}
