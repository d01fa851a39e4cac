//! GPU backward and training kernels against their CPU twins
//! (`sgraf::cpu::<layer>::backward`, `cpu::loss`, `train::clip`, `train::adam`),
//! on small random inputs. Needs a GPU adapter; on headless Linux install
//! lavapipe (`apt-get install mesa-vulkan-drivers libvulkan1`) and run with
//! `WGPU_BACKEND=vulkan`. Without an adapter these tests FAIL (they never skip).

use sgraf::gpu::linear::{self, Gemm};
use sgraf::gpu::optim::{self, GpuAdam};
use sgraf::gpu::params::GpuLinear;
use sgraf::gpu::tensor::{read_f32_many_blocking, GpuTensor};
use sgraf::gpu::DType;
use sgraf::model::params::{Config, Linear, Module, Params};

mod gpu_common;
use gpu_common::*;

const TOL: f32 = 1e-5;

// ---------------------------------------------------------------------------
// linear

/// `dx`, `dw`, `db` against `cpu::linear::backward` (which accumulates); the
/// GPU `dx` is tested both overwriting (`dx0 = 0` on the CPU side) and
/// accumulating onto non-zero starting values.
fn check_linear_backward(m: usize, k: usize, n: usize, accumulate: bool, with_db: bool, seed: u64) {
    let ctx = gpu();
    let mut rng = Lcg::new(seed);
    let x = rng.vec(m * k, 1.0);
    let w = rng.vec(n * k, 0.5);
    let dy = rng.vec(m * n, 1.0);
    let dx0 = if accumulate { rng.vec(m * k, 1.0) } else { vec![0.0; m * k] };
    let dw0 = rng.vec(n * k, 1.0);
    let db0 = rng.vec(n, 1.0);
    let (mut dx, mut dw, mut db) = (dx0.clone(), dw0.clone(), db0.clone());
    sgraf::cpu::linear::backward(&dy, &x, &w, Some(&mut dx), &mut dw, with_db.then_some(&mut db[..]), m, k, n);

    let (gx, gw, gdy) = (up(&x, &[m, k]), up(&w, &[n, k]), up(&dy, &[m, n]));
    let (gdx, gdw, gdb) = (up(&dx0, &[m, k]), up(&dw0, &[n, k]), up(&db0, &[n]));
    if !accumulate {
        // Garbage that an overwriting dx must not see.
        gdx.write_f32(ctx, &rng.vec(m * k, 100.0)).unwrap();
    }
    let mut enc = ctx.encoder("test linear backward");
    linear::backward(ctx, &mut enc, &gdy, &gx, &gw, Some(&gdx), accumulate, &gdw, with_db.then_some(&gdb)).unwrap();
    ctx.submit(enc);
    let tag = format!("m={m} k={k} n={n} acc={accumulate}");
    assert_close(&format!("linear dx ({tag})"), &read(&gdx), &dx, TOL);
    // dw and db are sums of m terms of size ~1 that cancel: both twins round
    // them (in different orders), by up to ~m·ulp(partial sum).
    let tol_sum = TOL * (m as f32 / 256.0).max(1.0);
    assert_close(&format!("linear dw ({tag})"), &read(&gdw), &dw, tol_sum);
    let got_db = read(&gdb);
    assert_close(&format!("linear db ({tag})"), &got_db, &db, tol_sum);
    if with_db {
        // Which twin rounds more: both against a float64 sum.
        let exact: Vec<f64> =
            (0..n).map(|j| db0[j] as f64 + (0..m).map(|i| dy[i * n + j] as f64).sum::<f64>()).collect();
        let worst = |v: &[f32]| v.iter().zip(&exact).map(|(&a, &e)| (a as f64 - e).abs()).fold(0.0, f64::max);
        eprintln!("linear db ({tag}) vs float64: GPU {:e}, CPU {:e}", worst(&got_db), worst(&db));
    }
}

#[test]
fn linear_backward_matches_cpu() {
    check_linear_backward(37, 50, 70, false, true, 1);
    check_linear_backward(37, 50, 70, true, true, 2);
    check_linear_backward(128, 64, 128, true, false, 3);
    check_linear_backward(1, 1, 1, false, true, 4);
    check_linear_backward(130, 9, 3, true, true, 5);
    check_linear_backward(3, 300, 129, false, true, 6);
    check_linear_backward(300, 17, 33, false, true, 7);
    // Many rows: the weight gradient splits the rows (3 splits of 333 and a
    // leftover row; 19 splits of 263 and 3 leftover rows), the bias gradient too.
    check_linear_backward(1000, 30, 20, false, true, 8);
    check_linear_backward(5000, 8, 24, true, true, 9);
}

/// [`linear::column_sum`] over more column blocks than one grid dimension
/// allows (lavapipe: 65535), with offsets and a row stride, against a naive
/// reference written here.
#[test]
fn column_sum_many_columns() {
    let ctx = gpu();
    let (rows, n, ldx, xo, yo) = (3, (1 << 20) + 37, (1 << 20) + 40, 2, 1);
    let mut rng = Lcg::new(61);
    let x = rng.vec(xo + (rows - 1) * ldx + n, 1.0);
    let y0 = rng.vec(yo + n, 1.0);
    let want: Vec<f32> =
        (0..yo + n)
            .map(|j| {
                if j < yo {
                    y0[j]
                } else {
                    y0[j] + ((x[xo + j - yo] + x[xo + ldx + j - yo]) + x[xo + 2 * ldx + j - yo])
                }
            })
            .collect();
    let (gx, gy) = (up(&x, &[x.len()]), up(&y0, &[y0.len()]));
    let mut enc = ctx.encoder("test column sum");
    linear::column_sum(ctx, &mut enc, &gx, &gy, rows, n, ldx, xo, yo, true).unwrap();
    ctx.submit(enc);
    assert_close("column sum (naive reference)", &read(&gy), &want, TOL);
}

/// [`linear::gemm_tn`] with offsets, strides, a batch and a transposed B,
/// against a naive reference written here (there is no CPU twin of the
/// general strided product).
#[test]
fn gemm_tn_strides_batch_transposed_b() {
    let ctx = gpu();
    let (batch, m, k, n) = (2, 5, 11, 6);
    let (ldx, ldw, ldy) = (m + 3, k + 2, n + 1);
    let (xo, wo, yo) = (4, 3, 2);
    let (xbs, wbs, ybs) = (k * ldx + 1, n * ldw + 2, m * ldy + 3);
    let mut rng = Lcg::new(21);
    let x = rng.vec(xo + batch * xbs, 1.0); // A[b][i, kk] = x[xo + b·xbs + kk·ldx + i]
    let w = rng.vec(wo + batch * wbs, 1.0); // B[b][kk, j] = w[wo + b·wbs + j·ldw + kk]
    let y0 = rng.vec(yo + batch * ybs, 1.0);
    let mut want = y0.clone();
    for b in 0..batch {
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for kk in 0..k {
                    s += x[xo + b * xbs + kk * ldx + i] as f64 * w[wo + b * wbs + j * ldw + kk] as f64;
                }
                want[yo + b * ybs + i * ldy + j] += s as f32;
            }
        }
    }
    let (gx, gw, gy) = (up(&x, &[x.len()]), up(&w, &[w.len()]), up(&y0, &[y0.len()]));
    let g = Gemm {
        trans_w: true,
        x_off: xo,
        w_off: wo,
        y_off: yo,
        ldx,
        ldw,
        ldy,
        x_bstride: xbs,
        w_bstride: wbs,
        y_bstride: ybs,
        accumulate: true,
        batch,
        ..Gemm::linear(m, k, n)
    };
    let mut enc = ctx.encoder("test gemm_tn");
    linear::gemm_tn(ctx, &mut enc, &gx, &gw, &gy, &g).unwrap();
    ctx.submit(enc);
    assert_close("gemm_tn y += Aᵀ·Bᵀ (naive reference)", &read(&gy), &want, TOL);
    // An operand too small for the description is refused before recording.
    let need = xo + (batch - 1) * xbs + (k - 1) * ldx + m;
    let short = up(&x[..need - 1], &[need - 1]);
    let mut enc = ctx.encoder("test gemm_tn short");
    assert!(linear::gemm_tn(ctx, &mut enc, &short, &gw, &gy, &g).is_err());
}

// ---------------------------------------------------------------------------
// l2norm

#[test]
fn l2norm_backward_matches_cpu() {
    let ctx = gpu();
    for (rows, n, accumulate, seed) in [(7, 33, false, 1), (5, 600, true, 2), (3, 1, false, 3)] {
        let mut rng = Lcg::new(seed);
        let mut x = rng.vec(rows * n, 2.0);
        // A zero row: dx = dy / ε on both sides.
        x[..n].iter_mut().for_each(|v| *v = 0.0);
        let dy = rng.vec(rows * n, 1.0);
        let dx0 = if accumulate { rng.vec(rows * n, 1.0) } else { vec![0.0; rows * n] };
        let mut y = x.clone();
        let norms = sgraf::cpu::l2norm::forward_keep_norms(&mut y, n);
        let mut dx = dx0.clone();
        sgraf::cpu::l2norm::backward(&dy, &y, &norms, &mut dx, n);

        let gx = up(&x, &[rows, n]);
        let gnorms = GpuTensor::zeros(ctx, &[rows], DType::F32).unwrap();
        let (gdy, gdx) = (up(&dy, &[rows, n]), up(&dx0, &[rows, n]));
        let mut enc = ctx.encoder("test l2norm backward");
        sgraf::gpu::l2norm::forward_keep_norms(ctx, &mut enc, &gx, n, &gnorms).unwrap();
        sgraf::gpu::l2norm::backward(ctx, &mut enc, &gdy, &gx, &gnorms, &gdx, n, accumulate).unwrap();
        ctx.submit(enc);
        let tag = format!("rows={rows} n={n} acc={accumulate}");
        assert_close(&format!("l2norm y ({tag})"), &read(&gx), &y, TOL);
        assert_close(&format!("l2norm norms ({tag})"), &read(&gnorms), &norms, TOL);
        // The zero row's dx is dy/1e-8 ~ 1e8: relative tolerance.
        assert_close(&format!("l2norm dx ({tag})"), &read(&gdx), &dx, TOL);
    }
}

// ---------------------------------------------------------------------------
// head

#[test]
fn head_backward_matches_cpu() {
    // 45 pairs; 1000 pairs (the weight gradient splits the pairs over workgroups).
    check_head_backward(45, 20, 31);
    check_head_backward(1000, 20, 32);
}

fn check_head_backward(p: usize, s: usize, seed: u64) {
    let ctx = gpu();
    let mut rng = Lcg::new(seed);
    let sv = rng.vec(p * s, 1.0);
    let lin = Linear { w: rng.vec(s, 0.5), b: rng.vec(1, 0.5), n_out: 1, n_in: s };
    let dscore = rng.vec(p, 1.0);
    let ds0 = rng.vec(p * s, 1.0);
    let mut dlin = Linear { w: rng.vec(s, 1.0), b: rng.vec(1, 1.0), n_out: 1, n_in: s };
    let gdlin = GpuLinear::upload(ctx, &dlin).unwrap();
    let (_, score) = sgraf::cpu::head::forward(&sv, &lin, p);
    let mut ds = ds0.clone();
    sgraf::cpu::head::backward(&dscore, &sv, &score, &lin, &mut dlin, &mut ds, p);

    let glin = GpuLinear::upload(ctx, &lin).unwrap();
    let gs = up(&sv, &[p, s]);
    let (gdscore, gds) = (up(&dscore, &[p]), up(&ds0, &[p, s]));
    let mut enc = ctx.encoder("test head backward");
    let (_, gscore) = sgraf::gpu::head::forward(ctx, &mut enc, &gs, &glin, p).unwrap();
    sgraf::gpu::head::backward(ctx, &mut enc, &gdscore, &gs, &gscore, &glin, &gdlin, Some(&gds), p).unwrap();
    ctx.submit(enc);
    let tol_sum = TOL * (p as f32 / 256.0).max(1.0); // sums over p pairs, see linear
    assert_close(&format!("head ds (p={p})"), &read(&gds), &ds, TOL);
    assert_close(&format!("head dw (p={p})"), &read(&gdlin.w), &dlin.w, tol_sum);
    assert_close(&format!("head db (p={p})"), &read(&gdlin.b), &dlin.b, tol_sum);
}

// ---------------------------------------------------------------------------
// embed

#[test]
fn embed_backward_matches_cpu() {
    let ctx = gpu();
    let (vocab, dim, n) = (13, 7, 300);
    let mut rng = Lcg::new(41);
    // Many repeats (300 tokens over 13 rows), some rows unused.
    let ids: Vec<u32> = (0..n).map(|_| rng.next_u32() % (vocab as u32 - 3)).collect();
    let dx = rng.vec(n * dim, 1.0);
    let dtable0 = rng.vec(vocab * dim, 1.0);
    let mut dtable = dtable0.clone();
    sgraf::cpu::embed::backward(&dx, &ids, &mut dtable, dim);

    let (gids, gdx, gdt) = (up_u32(&ids, &[n]), up(&dx, &[n, dim]), up(&dtable0, &[vocab, dim]));
    let mut enc = ctx.encoder("test embed backward");
    sgraf::gpu::embed::backward(ctx, &mut enc, &gdx, &gids, &gdt).unwrap();
    ctx.submit(enc);
    let got = read(&gdt);
    // Same additions in the same (token) order: bit-identical.
    let diff = assert_close("embed dtable", &got, &dtable, TOL);
    assert_eq!(diff, 0.0, "embed backward should add in the CPU twin's order");
}

// ---------------------------------------------------------------------------
// loss

fn check_loss(sims: &[f32], b: usize, what: &str) {
    let ctx = gpu();
    let margin = sgraf::cpu::loss::MARGIN;
    let want = sgraf::cpu::loss::forward(sims, b, margin);
    let want_d = sgraf::cpu::loss::backward(&want, b);

    let gs = up(sims, &[b, b]);
    let gd = GpuTensor::zeros(ctx, &[b, b], DType::F32).unwrap();
    let mut enc = ctx.encoder("test loss");
    let l = sgraf::gpu::loss::forward(ctx, &mut enc, &gs, b, margin).unwrap();
    sgraf::gpu::loss::backward(ctx, &mut enc, &gs, &l, &gd).unwrap();
    ctx.submit(enc);
    let hardest = read_u32(&l.hardest);
    let cost = read(&l.cost);
    let want_h: Vec<u32> = want.hardest_caption.iter().chain(&want.hardest_image).map(|&v| v as u32).collect();
    assert_eq!(hardest, want_h, "{what}: hardest negatives");
    let want_c: Vec<f32> = want.cost_s.iter().chain(&want.cost_im).copied().collect();
    assert_eq!(cost, want_c, "{what}: costs (same f32 arithmetic)");
    assert_close(&format!("loss ({what})"), &read(&l.loss), &[want.loss], 1e-6);
    assert_eq!(read(&gd), want_d, "{what}: dsims");
    eprintln!("loss ({what}): {} (CPU {})", read(&l.loss)[0], want.loss);
}

/// The official `--max_violation` switched off: every violating negative.
#[test]
fn loss_all_negatives_matches_cpu() {
    use sgraf::cpu::loss::{loss_and_grad, Negatives};
    let ctx = gpu();
    let margin = sgraf::cpu::loss::MARGIN;
    for (b, seed) in [(1, 1), (7, 2), (33, 3), (130, 4)] {
        let mut rng = Lcg::new(seed);
        let sims: Vec<f32> = rng.vec(b * b, 0.5).iter().map(|v| v + 0.5).collect();
        let (want, want_d) = loss_and_grad(&sims, b, margin, Negatives::All);
        let gs = up(&sims, &[b, b]);
        let gd = GpuTensor::zeros(ctx, &[b, b], DType::F32).unwrap();
        let mut enc = ctx.encoder("test loss all negatives");
        let l = sgraf::gpu::loss::forward_with(ctx, &mut enc, &gs, b, margin, Negatives::All).unwrap();
        sgraf::gpu::loss::backward(ctx, &mut enc, &gs, &l, &gd).unwrap();
        ctx.submit(enc);
        // float32 row sums (the CPU sums in float64): relative 1e-5 above 1
        assert_close(&format!("all-negatives loss B={b}"), &read(&l.loss), &[want], 1e-5);
        assert_eq!(read(&gd), want_d, "all-negatives dsims B={b} (same f32 hinge tests)");
        eprintln!("all-negatives loss B={b}: {} (CPU {want})", read(&l.loss)[0]);
    }
}

#[test]
fn loss_matches_cpu() {
    for (b, seed) in [(1, 1), (7, 2), (32, 3), (130, 4)] {
        let mut rng = Lcg::new(seed);
        let sims: Vec<f32> = rng.vec(b * b, 0.5).iter().map(|v| v + 0.5).collect();
        check_loss(&sims, b, &format!("random B={b}"));
    }
    // Ties: duplicate columns and rows (first maximum wins), and an easy batch
    // whose every cost is 0 (no gradient).
    let b = 9;
    let mut rng = Lcg::new(5);
    let mut sims = rng.vec(b * b, 0.3);
    for i in 0..b {
        sims[i * b + 5] = sims[i * b + 2];
        sims[7 * b + i] = sims[3 * b + i];
    }
    check_loss(&sims, b, "ties");
    let easy: Vec<f32> = (0..b * b).map(|q| if q / b == q % b { 1.0 } else { 0.1 }).collect();
    check_loss(&easy, b, "all costs 0");
}

// ---------------------------------------------------------------------------
// optimizer: clipping and Adam

fn small_params(module: Module, seed: u64) -> Params {
    let cfg = Config { img_dim: 12, word_dim: 6, embed: 8, sim_dim: 5, vocab: 11, module };
    Params::init(cfg, seed)
}

fn random_grads(p: &Params, rng: &mut Lcg, scale: f32) -> Params {
    let mut g = p.zeros_like();
    for t in sgraf::train::grads::trainable_mut(&mut g) {
        t.iter_mut().for_each(|v| *v = rng.uniform() * scale);
    }
    g
}

fn upload_all(ts: &[&[f32]]) -> Vec<GpuTensor> {
    ts.iter().map(|t| up(t, &[t.len()])).collect()
}

fn read_all(ts: &[GpuTensor]) -> Vec<Vec<f32>> {
    read_f32_many_blocking(gpu(), &ts.iter().collect::<Vec<_>>()).unwrap()
}

#[test]
fn clip_matches_cpu() {
    use sgraf::train::grads::trainable;
    let ctx = gpu();
    // Tensors of up to 100 000 values (the embedding table), so the norm takes
    // several partial sums per tensor.
    let cfg =
        Config { img_dim: 300, word_dim: 50, embed: 64, sim_dim: 16, vocab: 2000, module: Module::Sgr { steps: 3 } };
    let p = Params::init(cfg, 1);
    let mut rng = Lcg::new(51);
    // (max_norm, whether it clips): a large gradient is clipped, a small one is not.
    for (scale, max_norm, clips) in [(1.0f32, 2.0f32, true), (1e-5, 2.0, false)] {
        let g0 = random_grads(&p, &mut rng, scale);
        let mut g = g0.clone();
        let norm = sgraf::train::clip_grad_norm(&mut g, max_norm);
        assert_eq!(norm > max_norm, clips, "test premise: norm {norm}");

        let gg = upload_all(&trainable(&g0));
        let mut enc = ctx.encoder("test clip");
        let gnorm = optim::clip_grad_norm(ctx, &mut enc, &gg.iter().collect::<Vec<_>>(), max_norm).unwrap();
        ctx.submit(enc);
        let nc = read(&gnorm);
        assert_close(&format!("clip norm (scale {scale})"), &nc[..1], &[norm], 1e-6);
        eprintln!("clip coef (scale {scale}): GPU {} CPU {}", nc[1], max_norm / (norm + 1e-6));
        let got: Vec<f32> = read_all(&gg).concat();
        let want: Vec<f32> = trainable(&g).concat();
        assert_close(&format!("clipped gradients (scale {scale})"), &got, &want, 1e-6);
    }
}

#[test]
fn clip_and_adam_steps_match_cpu() {
    use sgraf::train::grads::trainable;
    let ctx = gpu();
    for (module, seed) in [(Module::Sgr { steps: 3 }, 2), (Module::Saf, 3)] {
        let mut p = small_params(module, seed);
        let mut adam = sgraf::train::Adam::new(&p);
        let gp = upload_all(&trainable(&p));
        let mut gadam = GpuAdam::new(ctx, &gp.iter().collect::<Vec<_>>()).unwrap();
        let mut rng = Lcg::new(seed + 100);
        for step in 0..3 {
            if step == 2 {
                // A changed learning rate is honoured (and the state persists).
                adam.lr = 2e-5;
                gadam.lr = 2e-5;
            }
            let g0 = random_grads(&p, &mut rng, 1.0);
            let mut g = g0.clone();
            sgraf::train::clip_grad_norm(&mut g, 2.0);
            adam.update(&mut p, &g);

            let gg = upload_all(&trainable(&g0));
            let gg_refs: Vec<&GpuTensor> = gg.iter().collect();
            let mut enc = ctx.encoder("test step");
            optim::clip_grad_norm(ctx, &mut enc, &gg_refs, 2.0).unwrap();
            gadam.update(ctx, &mut enc, &gp.iter().collect::<Vec<_>>(), &gg_refs).unwrap();
            ctx.submit(enc);
            let tag = format!("{module:?} step {}", step + 1);
            assert_close(&format!("params after Adam ({tag})"), &read_all(&gp).concat(), &trainable(&p).concat(), 1e-6);
            assert_close(&format!("Adam m ({tag})"), &read_all(&gadam.m).concat(), &trainable(&adam.m).concat(), 1e-5);
            assert_close(&format!("Adam v ({tag})"), &read_all(&gadam.v).concat(), &trainable(&adam.v).concat(), 1e-5);
        }
    }
}
