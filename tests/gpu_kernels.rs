//! GPU kernels against their CPU twins (`sgraf::cpu::<layer>`), on small
//! random inputs. Needs a GPU adapter; on headless Linux install lavapipe
//! (`apt-get install mesa-vulkan-drivers libvulkan1`) and run with
//! `WGPU_BACKEND=vulkan`. Without an adapter these tests FAIL (they never
//! skip silently).

use sgraf::gpu::linear::{self, Activation, Gemm};
use sgraf::gpu::tensor::{read_f32_many_blocking, GpuTensor};

mod gpu_common;
use gpu_common::*;

const TOL: f32 = 1e-5;

// ---------------------------------------------------------------------------
// linear

fn check_linear(m: usize, k: usize, n: usize, bias: bool, seed: u64) {
    let ctx = gpu();
    let mut rng = Lcg::new(seed);
    let x = rng.vec(m * k, 1.0);
    let w = rng.vec(n * k, 0.5);
    let b = rng.vec(n, 1.0);
    let mut want = vec![0.0; m * n];
    sgraf::cpu::linear::forward(&x, &w, bias.then_some(&b[..]), &mut want, m, k, n);

    let (gx, gw, gb) = (up(&x, &[m, k]), up(&w, &[n, k]), up(&b, &[n]));
    let gy = GpuTensor::zeros(ctx, &[m, n], sgraf::gpu::DType::F32).unwrap();
    let mut enc = ctx.encoder("test linear");
    linear::forward(ctx, &mut enc, &gx, &gw, bias.then_some(&gb), &gy).unwrap();
    ctx.submit(enc);
    assert_close(&format!("linear y (m={m} k={k} n={n} bias={bias})"), &read(&gy), &want, TOL);
}

#[test]
fn linear_matches_cpu() {
    check_linear(37, 50, 70, true, 1);
    check_linear(37, 50, 70, false, 2);
    // Exact tile multiples, a K that is a multiple of the K slice, and tiny sizes.
    check_linear(128, 64, 128, true, 3);
    check_linear(1, 1, 1, true, 4);
    check_linear(130, 9, 3, true, 5);
    check_linear(3, 300, 129, false, 6);
}

#[test]
fn linear_activations() {
    let ctx = gpu();
    let (m, k, n) = (19, 23, 29);
    let mut rng = Lcg::new(7);
    let x = rng.vec(m * k, 1.0);
    let w = rng.vec(n * k, 1.0);
    let b = rng.vec(n, 1.0);
    let mut lin = vec![0.0; m * n];
    sgraf::cpu::linear::forward(&x, &w, Some(&b), &mut lin, m, k, n);
    let (gx, gw, gb) = (up(&x, &[m, k]), up(&w, &[n, k]), up(&b, &[n]));
    for (act, f) in [
        (Activation::Relu, (|v: f32| v.max(0.0)) as fn(f32) -> f32),
        (Activation::Tanh, f32::tanh),
        (Activation::Sigmoid, sgraf::cpu::sigmoid),
    ] {
        let gy = GpuTensor::zeros(ctx, &[m, n], sgraf::gpu::DType::F32).unwrap();
        let mut enc = ctx.encoder("test act");
        linear::forward_act(ctx, &mut enc, &gx, &gw, Some(&gb), &gy, act).unwrap();
        ctx.submit(enc);
        let want: Vec<f32> = lin.iter().map(|&v| f(v)).collect();
        assert_close(&format!("linear y ({act:?})"), &read(&gy), &want, TOL);
    }
}

/// `ctx[i] = attn[i] (L×36) · v[i] (36×E)`: plain B, batch strides.
#[test]
fn batched_matches_cpu() {
    let ctx = gpu();
    let (batch, m, k, n) = (3, 37, 36, 50);
    let mut rng = Lcg::new(11);
    let x = rng.vec(batch * m * k, 1.0);
    let w = rng.vec(batch * k * n, 1.0);
    let mut want = vec![0.0; batch * m * n];
    for b in 0..batch {
        sgraf::cpu::matmul_nn(
            &x[b * m * k..(b + 1) * m * k],
            &w[b * k * n..(b + 1) * k * n],
            &mut want[b * m * n..(b + 1) * m * n],
            m,
            k,
            n,
            false,
        );
    }
    let (gx, gw) = (up(&x, &[batch, m, k]), up(&w, &[batch, k, n]));
    let gy = GpuTensor::zeros(ctx, &[batch, m, n], sgraf::gpu::DType::F32).unwrap();
    let mut enc = ctx.encoder("test batched");
    linear::batched_forward(ctx, &mut enc, &gx, &gw, &gy, false).unwrap();
    ctx.submit(enc);
    assert_close("batched y = x·w", &read(&gy), &want, TOL);

    // Shared x (batch stride 0) against transposed per-batch w.
    let x1 = &x[..m * k];
    let wt = rng.vec(batch * n * k, 1.0);
    let mut want = vec![0.0; batch * m * n];
    for b in 0..batch {
        sgraf::cpu::matmul_nt(
            x1,
            &wt[b * n * k..(b + 1) * n * k],
            &mut want[b * m * n..(b + 1) * m * n],
            m,
            k,
            n,
            false,
        );
    }
    let (gx1, gwt) = (up(x1, &[m, k]), up(&wt, &[batch, n, k]));
    let gy = GpuTensor::zeros(ctx, &[batch, m, n], sgraf::gpu::DType::F32).unwrap();
    let mut enc = ctx.encoder("test batched t");
    linear::batched_forward(ctx, &mut enc, &gx1, &gwt, &gy, true).unwrap();
    ctx.submit(enc);
    assert_close("batched y = x·w[b]ᵀ (shared x)", &read(&gy), &want, TOL);
}

/// Offsets, row strides and accumulation through [`linear::gemm`].
#[test]
fn gemm_strides_offsets_accumulate() {
    let ctx = gpu();
    let (m, k, n) = (5, 7, 6);
    let (ldx, ldw, ldy) = (11, 9, 8);
    let (xo, wo, yo, bo) = (3, 2, 4, 1);
    let mut rng = Lcg::new(13);
    let x = rng.vec(xo + m * ldx, 1.0);
    let w = rng.vec(wo + k * ldw, 1.0); // plain [k, n] with row stride ldw
    let b = rng.vec(bo + n, 1.0);
    let y0 = rng.vec(yo + m * ldy, 1.0);
    let mut want = y0.clone();
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f32;
            for kk in 0..k {
                s += x[xo + i * ldx + kk] * w[wo + kk * ldw + j];
            }
            want[yo + i * ldy + j] += s + b[bo + j];
        }
    }
    let (gx, gw, gb, gy) = (up(&x, &[x.len()]), up(&w, &[w.len()]), up(&b, &[b.len()]), up(&y0, &[y0.len()]));
    let g = Gemm {
        trans_w: false,
        x_off: xo,
        w_off: wo,
        y_off: yo,
        b_off: bo,
        ldx,
        ldw,
        ldy,
        accumulate: true,
        ..Gemm::linear(m, k, n)
    };
    let mut enc = ctx.encoder("test gemm");
    linear::gemm(ctx, &mut enc, &gx, &gw, Some(&gb), &gy, None, &g).unwrap();
    ctx.submit(enc);
    assert_close("gemm y (strided, accumulate)", &read(&gy), &want, TOL);

    // An access past the end is refused before anything is recorded.
    let mut enc = ctx.encoder("test gemm oob");
    let bad = Gemm { m: m + 1, ..g };
    assert!(linear::gemm(ctx, &mut enc, &gx, &gw, Some(&gb), &gy, None, &bad).is_err());
}

#[test]
fn readback_many() {
    let ctx = gpu();
    let a = up(&[1.0, 2.0, 3.0], &[3]);
    let b = up(&[], &[0, 4]);
    let c = up(&[-4.5], &[1, 1]);
    let got = read_f32_many_blocking(ctx, &[&a, &b, &c]).unwrap();
    assert_eq!(got, vec![vec![1.0, 2.0, 3.0], vec![], vec![-4.5]]);
    let u = GpuTensor::upload_u32(ctx, &[7, 8], &[2]).unwrap();
    assert_eq!(sgraf::gpu::tensor::read_u32_many_blocking(ctx, &[&u]).unwrap(), vec![vec![7, 8]]);
    assert!(!ctx.describe().is_empty());
}

// ---------------------------------------------------------------------------
// Layers: small random parameters and inputs, GPU vs `sgraf::cpu::<layer>`.

use sgraf::gpu::params::{
    GpuBatchNorm, GpuGruDirection, GpuLayout, GpuLinear, GpuSaf, GpuSgrStep, GpuTextSa, GpuVisualSa,
};
use sgraf::gpu::DType;
use sgraf::model::layout::TileLayout;
use sgraf::model::params::{BatchNorm, GruDirection, Linear, Mode, Saf, SgrStep, TextSa, VisualSa, N_REGIONS};

const E: usize = 40; // joint embedding (not a multiple of any tile)
const S: usize = 24; // similarity vector
const DW: usize = 12; // word embedding
const LENGTHS: [usize; 4] = [5, 2, 7, 3];
const N_IMG: usize = 3;

fn rand_linear(rng: &mut Lcg, n_out: usize, n_in: usize) -> Linear {
    let r = (6.0 / (n_in + n_out) as f32).sqrt();
    Linear { w: rng.vec(n_out * n_in, r), b: rng.vec(n_out, 0.5), n_out, n_in }
}

fn rand_bn(rng: &mut Lcg, c: usize) -> BatchNorm {
    BatchNorm {
        weight: (0..c).map(|_| 1.0 + 0.3 * rng.uniform()).collect(),
        bias: rng.vec(c, 0.3),
        running_mean: rng.vec(c, 0.2),
        running_var: (0..c).map(|_| 0.5 + 0.4 * rng.uniform().abs()).collect(),
        num_batches_tracked: 5,
    }
}

/// Rows of unit length, like the encoders' outputs.
fn unit_rows(rng: &mut Lcg, rows: usize, n: usize) -> Vec<f32> {
    let mut x = rng.vec(rows * n, 1.0);
    sgraf::cpu::l2norm::forward(&mut x, n);
    x
}

fn zeros(shape: &[usize]) -> GpuTensor {
    GpuTensor::zeros(gpu(), shape, DType::F32).unwrap()
}

/// Records with `f`, submits, reads `outs` back.
fn run<F>(f: F) -> Vec<Vec<f32>>
where
    F: FnOnce(&mut wgpu::CommandEncoder) -> Vec<GpuTensor>,
{
    let ctx = gpu();
    let mut enc = ctx.encoder("test");
    let outs = f(&mut enc);
    ctx.submit(enc);
    let refs: Vec<&GpuTensor> = outs.iter().collect();
    read_f32_many_blocking(ctx, &refs).unwrap()
}

fn layout() -> TileLayout {
    TileLayout::new(&LENGTHS)
}

#[test]
fn l2norm_matches_cpu() {
    let mut rng = Lcg::new(21);
    let (rows, n) = (13, 300);
    let mut x = rng.vec(rows * n, 2.0);
    x[5 * n..6 * n].fill(0.0); // a zero row stays zero
    let gx = up(&x, &[rows, n]);
    let got = run(|enc| {
        sgraf::gpu::l2norm::forward(gpu(), enc, &gx, n).unwrap();
        vec![gx]
    });
    sgraf::cpu::l2norm::forward(&mut x, n);
    assert_close("l2norm", &got[0], &x, TOL);
}

#[test]
fn embed_matches_cpu() {
    let mut rng = Lcg::new(22);
    let (v, n) = (30, 17);
    let table = rng.vec(v * DW, 0.1);
    let ids: Vec<u32> = (0..n).map(|_| rng.next_u32() % v as u32).collect();
    let gt = up(&table, &[v, DW]);
    let gi = GpuTensor::upload_u32(gpu(), &ids, &[n]).unwrap();
    let got = run(|enc| {
        let out = zeros(&[n, DW]);
        sgraf::gpu::embed::forward(gpu(), enc, &gi, &gt, &out).unwrap();
        vec![out]
    });
    assert_close("embed", &got[0], &sgraf::cpu::embed::forward(&ids, &table, DW), 0.0);
}

#[test]
fn image_fc_matches_cpu() {
    let mut rng = Lcg::new(23);
    let (rows, dimg) = (2 * N_REGIONS, 50);
    let x = rng.vec(rows * dimg, 1.0);
    let fc = rand_linear(&mut rng, E, dimg);
    let gfc = GpuLinear::upload(gpu(), &fc).unwrap();
    let gx = up(&x, &[rows, dimg]);
    let got = run(|enc| {
        let v = zeros(&[rows, E]);
        sgraf::gpu::image_fc::forward(gpu(), enc, &gx, &gfc, &v).unwrap();
        vec![v]
    });
    assert_close("image_fc v", &got[0], &sgraf::cpu::image_fc::forward(&x, &fc, rows), TOL);
}

#[test]
fn batchnorm_matches_cpu() {
    use sgraf::gpu::batchnorm::{self, BnAct};
    let ctx = gpu();
    for (n, c, l) in [(3, 5, 7), (4, 6, 1), (2, N_REGIONS, 9)] {
        let mut rng = Lcg::new(24 + c as u64);
        let x = rng.vec(n * c * l, 2.0);
        let bn = rand_bn(&mut rng, c);
        for mode in [Mode::Eval, Mode::Train] {
            for act in [BnAct::None, BnAct::Tanh] {
                let mut gbn = GpuBatchNorm::upload(ctx, &bn).unwrap();
                let gx = up(&x, &[n, c, l]);
                let mut enc = ctx.encoder("bn");
                let stats = batchnorm::forward(ctx, &mut enc, &gx, &gbn, mode, n, c, l, act).unwrap();
                if let Some(s) = &stats {
                    batchnorm::update_running(ctx, &mut enc, &mut gbn, s, n * l).unwrap();
                }
                ctx.submit(enc);
                let got = read_f32_many_blocking(ctx, &[&gx, &gbn.running_mean, &gbn.running_var]).unwrap();

                let mut want = x.clone();
                let mut cbn = bn.clone();
                let st = sgraf::cpu::batchnorm::forward(&mut want, &cbn, mode, n, c, l);
                if act == BnAct::Tanh {
                    want.iter_mut().for_each(|v| *v = v.tanh());
                }
                if let Some(st) = &st {
                    sgraf::cpu::batchnorm::update_running(&mut cbn, st);
                }
                let name = format!("batchnorm [{n},{c},{l}] {mode:?} {act:?}");
                assert_close(&format!("{name} y"), &got[0], &want, TOL);
                assert_close(&format!("{name} running_mean"), &got[1], &cbn.running_mean, TOL);
                assert_close(&format!("{name} running_var"), &got[2], &cbn.running_var, TOL);
                assert_eq!(gbn.num_batches_tracked, cbn.num_batches_tracked, "{name} num_batches_tracked");
            }
        }
    }
}

fn rand_gru(rng: &mut Lcg, e: usize, dw: usize) -> GruDirection {
    let k = 1.0 / (e as f32).sqrt();
    GruDirection {
        w_ih: rng.vec(3 * e * dw, 3.0 * k),
        w_hh: rng.vec(3 * e * e, 3.0 * k),
        b_ih: rng.vec(3 * e, k),
        b_hh: rng.vec(3 * e, k),
    }
}

#[test]
fn gru_matches_cpu() {
    let ctx = gpu();
    let mut rng = Lcg::new(25);
    let lay = layout();
    let (nc, l_max) = (LENGTHS.len(), 7);
    let x = rng.vec(nc * l_max * DW, 1.0);
    let (fwd, bwd) = (rand_gru(&mut rng, E, DW), rand_gru(&mut rng, E, DW));
    let (gf, gb) = (GpuGruDirection::upload(ctx, &fwd).unwrap(), GpuGruDirection::upload(ctx, &bwd).unwrap());
    let glay = GpuLayout::upload(ctx, &lay).unwrap();
    let gx = up(&x, &[nc, l_max, DW]);
    let got = run(|enc| {
        let hf = sgraf::gpu::gru::direction_forward(ctx, enc, &gx, &glay, &gf, l_max, false).unwrap();
        let hb = sgraf::gpu::gru::direction_forward(ctx, enc, &gx, &glay, &gb, l_max, true).unwrap();
        let padded = sgraf::gpu::gru::forward(ctx, enc, &gx, &glay, &gf, &gb, l_max).unwrap();
        let packed = sgraf::gpu::gru::forward_packed(ctx, enc, &gx, &glay, &gf, &gb, l_max).unwrap();
        vec![hf, hb, padded, packed]
    });
    let lengths = lay.lengths.clone();
    let hf = sgraf::cpu::gru::direction_forward(&x, &lengths, &fwd, l_max, DW, E, false);
    let hb = sgraf::cpu::gru::direction_forward(&x, &lengths, &bwd, l_max, DW, E, true);
    let padded = sgraf::cpu::gru::forward(&x, &lengths, &fwd, &bwd, l_max, DW, E);
    assert_close("gru h_fwd", &got[0], &hf, TOL);
    assert_close("gru h_bwd", &got[1], &hb, TOL);
    assert_close("gru cap_emb (padded)", &got[2], &padded, TOL);
    assert_close("gru t (packed)", &got[3], &lay.pack_words(&padded, l_max, E), TOL);
}

fn rand_visual_sa(rng: &mut Lcg) -> VisualSa {
    VisualSa {
        local: rand_linear(rng, E, E),
        local_bn: rand_bn(rng, N_REGIONS),
        global: rand_linear(rng, E, E),
        global_bn: rand_bn(rng, E),
        common: rand_linear(rng, 1, E),
    }
}

#[test]
fn visual_sa_matches_cpu() {
    let ctx = gpu();
    let mut rng = Lcg::new(26);
    let n = N_IMG;
    let v = unit_rows(&mut rng, n * N_REGIONS, E);
    let p = rand_visual_sa(&mut rng);
    for mode in [Mode::Eval, Mode::Train] {
        let mut gp = GpuVisualSa::upload(ctx, &p).unwrap();
        let gv = up(&v, &[n, N_REGIONS, E]);
        let mut enc = ctx.encoder("visual_sa");
        let out = sgraf::gpu::visual_sa::forward(ctx, &mut enc, &gv, &gp, mode, n).unwrap();
        sgraf::gpu::visual_sa::update_running(ctx, &mut enc, &mut gp, &out.stats, n).unwrap();
        ctx.submit(enc);
        let got = read_f32_many_blocking(
            ctx,
            &[&out.v_glo, &gp.local_bn.running_mean, &gp.local_bn.running_var, &gp.global_bn.running_var],
        )
        .unwrap();
        let (want, st) = sgraf::cpu::visual_sa::forward(&v, &p, mode, n, E);
        assert_close(&format!("visual_sa v_glo ({mode:?})"), &got[0], &want, TOL);
        let mut cp = p.clone();
        if let (Some(l), Some(g)) = (&st.local, &st.global) {
            sgraf::cpu::batchnorm::update_running(&mut cp.local_bn, l);
            sgraf::cpu::batchnorm::update_running(&mut cp.global_bn, g);
        }
        assert_close(&format!("visual_sa local running_mean ({mode:?})"), &got[1], &cp.local_bn.running_mean, TOL);
        assert_close(&format!("visual_sa local running_var ({mode:?})"), &got[2], &cp.local_bn.running_var, TOL);
        assert_close(&format!("visual_sa global running_var ({mode:?})"), &got[3], &cp.global_bn.running_var, TOL);
    }
}

#[test]
fn text_sa_matches_cpu() {
    let ctx = gpu();
    let mut rng = Lcg::new(27);
    let lay = layout();
    let t = unit_rows(&mut rng, lay.n_words(), E);
    let p = TextSa {
        local: rand_linear(&mut rng, E, E),
        global: rand_linear(&mut rng, E, E),
        common: rand_linear(&mut rng, 1, E),
    };
    let gp = GpuTextSa::upload(ctx, &p).unwrap();
    let glay = GpuLayout::upload(ctx, &lay).unwrap();
    let gt = up(&t, &[lay.n_words(), E]);
    let got = run(|enc| vec![sgraf::gpu::text_sa::forward(ctx, enc, &gt, &gp, &glay).unwrap().t_glo]);
    assert_close("text_sa t_glo", &got[0], &sgraf::cpu::text_sa::forward(&t, &p, &lay, E), TOL);
}

#[test]
fn attention_matches_cpu() {
    let ctx = gpu();
    let mut rng = Lcg::new(28);
    let lay = layout();
    let v = unit_rows(&mut rng, N_IMG * N_REGIONS, E);
    let t = unit_rows(&mut rng, lay.n_words(), E);
    let glay = GpuLayout::upload(ctx, &lay).unwrap();
    let (gv, gt) = (up(&v, &[N_IMG, N_REGIONS, E]), up(&t, &[lay.n_words(), E]));
    let got = run(|enc| {
        let o = sgraf::gpu::attention::forward(ctx, enc, &gv, &gt, &glay, N_IMG).unwrap();
        vec![o.ctx, o.attn]
    });
    let (want_ctx, want_attn) = sgraf::cpu::attention::forward(&v, &t, &lay, N_IMG, E, true);
    assert_close("attention attn", &got[1], &want_attn, TOL);
    assert_close("attention ctx", &got[0], &want_ctx, TOL);
}

#[test]
fn similarity_matches_cpu() {
    let ctx = gpu();
    let mut rng = Lcg::new(29);
    let lay = layout();
    let (nw, nc, nn) = (lay.n_words(), lay.n_cap(), lay.n_nodes());
    let attended = unit_rows(&mut rng, N_IMG * nw, E);
    let t = unit_rows(&mut rng, nw, E);
    let v_glo = unit_rows(&mut rng, N_IMG, E);
    let t_glo = unit_rows(&mut rng, nc, E);
    let (loc, glo) = (rand_linear(&mut rng, S, E), rand_linear(&mut rng, S, E));
    let (gloc, gglo) = (GpuLinear::upload(ctx, &loc).unwrap(), GpuLinear::upload(ctx, &glo).unwrap());
    let glay = GpuLayout::upload(ctx, &lay).unwrap();
    let (ga, gt) = (up(&attended, &[N_IMG, nw, E]), up(&t, &[nw, E]));
    let (gvg, gtg) = (up(&v_glo, &[N_IMG, E]), up(&t_glo, &[nc, E]));
    let got = run(|enc| {
        let nodes = zeros(&[N_IMG, nn, S]);
        let yl = sgraf::gpu::similarity::local_forward(ctx, enc, &ga, &gt, &gloc, &glay, N_IMG, &nodes).unwrap();
        let yg = sgraf::gpu::similarity::global_forward(ctx, enc, &gvg, &gtg, &gglo, &glay, N_IMG, &nodes).unwrap();
        vec![yl, yg, nodes]
    });
    let mut nodes = vec![0.0; N_IMG * nn * S];
    let yl = sgraf::cpu::similarity::local_forward(&attended, &t, &loc, &lay, N_IMG, &mut nodes, true);
    let yg = sgraf::cpu::similarity::global_forward(&v_glo, &t_glo, &glo, &lay, N_IMG, &mut nodes, true);
    assert_close("similarity local linear", &got[0], &yl, TOL);
    assert_close("similarity global linear", &got[1], &yg, TOL);
    assert_close("similarity nodes", &got[2], &nodes, TOL);
}

fn rand_nodes(rng: &mut Lcg, lay: &TileLayout) -> Vec<f32> {
    unit_rows(rng, N_IMG * lay.n_nodes(), S)
}

#[test]
fn sgr_matches_cpu() {
    let ctx = gpu();
    let mut rng = Lcg::new(30);
    // One long caption (> 16 nodes) exercises the multi-tile path.
    let lay = TileLayout::new(&[5, 2, 20, 3]);
    let x = rand_nodes(&mut rng, &lay);
    let steps: Vec<SgrStep> = (0..3)
        .map(|_| SgrStep {
            query: rand_linear(&mut rng, S, S),
            key: rand_linear(&mut rng, S, S),
            graph: rand_linear(&mut rng, S, S),
        })
        .collect();
    let gsteps: Vec<GpuSgrStep> = steps.iter().map(|s| GpuSgrStep::upload(ctx, s).unwrap()).collect();
    let glay = GpuLayout::upload(ctx, &lay).unwrap();
    let gx = up(&x, &[N_IMG, lay.n_nodes(), S]);
    let got = run(|enc| {
        let (s, mut kept) = sgraf::gpu::sgr::forward(ctx, enc, &gx, &gsteps, &glay, N_IMG, true).unwrap();
        kept.insert(0, s);
        kept
    });
    let (want, kept) = sgraf::cpu::sgr::forward(&x, &steps, &lay, N_IMG, true);
    for (k, (g, w)) in got[1..].iter().zip(&kept).enumerate() {
        assert_close(&format!("sgr nodes after step {k}"), g, w, TOL);
    }
    assert_eq!(got.len(), 1 + kept.len(), "sgr: number of kept steps");
    assert_close("sgr s (global nodes)", &got[0], &want, TOL);

    // Scores-only (eval) form: folded query/key, last step for the global node only.
    let folded: Vec<_> = steps.iter().map(sgraf::cpu::sgr::FoldedStep::new).collect();
    let gfolded: Vec<_> = folded.iter().map(|f| sgraf::gpu::sgr::GpuFoldedStep::upload(ctx, f).unwrap()).collect();
    let got =
        run(|enc| vec![sgraf::gpu::sgr::forward_scores_only(ctx, enc, &gx, &gsteps, &gfolded, &glay, N_IMG).unwrap()]);
    let want_folded = sgraf::cpu::sgr::forward_scores_only(&x, &steps, &folded, &lay, N_IMG);
    assert_close("sgr s (scores-only)", &got[0], &want_folded, TOL);
    assert_close("sgr s (scores-only vs full)", &got[0], &want, 1e-4);
}

#[test]
fn saf_matches_cpu() {
    let ctx = gpu();
    let mut rng = Lcg::new(31);
    let lay = layout();
    let x = rand_nodes(&mut rng, &lay);
    let p = Saf { attn: rand_linear(&mut rng, 1, S), bn: rand_bn(&mut rng, 1) };
    let glay = GpuLayout::upload(ctx, &lay).unwrap();
    for mode in [Mode::Eval, Mode::Train] {
        let mut gp = GpuSaf::upload(ctx, &p).unwrap();
        let gx = up(&x, &[N_IMG, lay.n_nodes(), S]);
        let mut enc = ctx.encoder("saf");
        let out = sgraf::gpu::saf::forward(ctx, &mut enc, &gx, &gp, &glay, N_IMG, mode).unwrap();
        if let Some(st) = &out.stats {
            sgraf::gpu::saf::update_running(ctx, &mut enc, &mut gp, st, &glay, N_IMG).unwrap();
        }
        ctx.submit(enc);
        let got =
            read_f32_many_blocking(ctx, &[&out.s, &out.bn_out, &out.weights, &gp.bn.running_mean, &gp.bn.running_var])
                .unwrap();
        let (want, tr) = sgraf::cpu::saf::forward(&x, &p, &lay, N_IMG, mode);
        let mut cp = p.clone();
        for st in &tr.bn_stats {
            sgraf::cpu::batchnorm::update_running(&mut cp.bn, st);
        }
        assert_close(&format!("saf bn_out ({mode:?})"), &got[1], &tr.bn_out, TOL);
        assert_close(&format!("saf weights ({mode:?})"), &got[2], &tr.weights, TOL);
        assert_close(&format!("saf s ({mode:?})"), &got[0], &want, TOL);
        assert_close(&format!("saf running_mean ({mode:?})"), &got[3], &cp.bn.running_mean, TOL);
        assert_close(&format!("saf running_var ({mode:?})"), &got[4], &cp.bn.running_var, TOL);
        assert_eq!(gp.bn.num_batches_tracked, cp.bn.num_batches_tracked, "saf num_batches_tracked ({mode:?})");
    }
}

#[test]
fn head_matches_cpu() {
    let ctx = gpu();
    let mut rng = Lcg::new(32);
    let pairs = 37;
    let s = rng.vec(pairs * S, 1.0);
    let lin = rand_linear(&mut rng, 1, S);
    let glin = GpuLinear::upload(ctx, &lin).unwrap();
    let gs = up(&s, &[pairs, S]);
    let got = run(|enc| {
        let (l, sc) = sgraf::gpu::head::forward(ctx, enc, &gs, &glin, pairs).unwrap();
        vec![l, sc]
    });
    let (logit, score) = sgraf::cpu::head::forward(&s, &lin, pairs);
    assert_close("head logits", &got[0], &logit, TOL);
    assert_close("head scores", &got[1], &score, TOL);
}

// ---------------------------------------------------------------------------
// Whole model: GpuModel against sgraf::cpu::model.

use sgraf::model::params::{Config, Module, Params, Reasoning};

/// Official initialisation, then non-zero biases and BatchNorm buffers so
/// that every parameter matters.
fn small_params(module: Module, seed: u64) -> Params {
    let cfg = Config { img_dim: 50, word_dim: DW, embed: E, sim_dim: S, vocab: 30, module };
    let mut p = Params::init(cfg, seed);
    let mut rng = Lcg::new(seed);
    let mut b = |l: &mut Linear| l.b = rng.vec(l.n_out, 0.2);
    b(&mut p.img_fc);
    b(&mut p.v_sa.local);
    b(&mut p.v_sa.global);
    b(&mut p.v_sa.common);
    b(&mut p.t_sa.local);
    b(&mut p.t_sa.global);
    b(&mut p.t_sa.common);
    b(&mut p.sim_loc);
    b(&mut p.sim_glo);
    b(&mut p.sim_eval);
    match &mut p.reasoning {
        Reasoning::Sgr(steps) => {
            for st in steps {
                b(&mut st.query);
                b(&mut st.key);
                b(&mut st.graph);
            }
        }
        Reasoning::Saf(saf) => b(&mut saf.attn),
    }
    let mut rng = Lcg::new(seed + 1);
    p.v_sa.local_bn = rand_bn(&mut rng, N_REGIONS);
    p.v_sa.global_bn = rand_bn(&mut rng, E);
    if let Reasoning::Saf(saf) = &mut p.reasoning {
        saf.bn = rand_bn(&mut rng, 1);
    }
    p
}

fn check_model(module: Module, mode: Mode, seed: u64) {
    let name = format!("model {} {mode:?}", module.name());
    let p = small_params(module, seed);
    let model = sgraf::gpu::model::GpuModel::new(gpu_shared().clone(), &p).unwrap();
    let mut rng = Lcg::new(seed + 2);
    let n = N_IMG;
    let images = rng.vec(n * N_REGIONS * p.cfg.img_dim, 1.0);
    let captions: Vec<Vec<u32>> = LENGTHS
        .iter()
        .map(|&l| {
            let mut c: Vec<u32> = (0..l).map(|_| 4 + rng.next_u32() % 26).collect();
            c[0] = 1;
            c[l - 1] = 2;
            c
        })
        .collect();

    let gimg = model.encode_images(&images, n, mode).unwrap();
    let (cimg, _) = sgraf::cpu::model::encode_images(&p, &images, n, mode);
    assert_close(&format!("{name} v"), &gimg.v, &cimg.v, TOL);
    assert_close(&format!("{name} v_glo"), &gimg.v_glo, &cimg.v_glo, TOL);

    let gcap = model.encode_captions(&captions).unwrap();
    let ccap = sgraf::cpu::model::encode_captions(&p, &captions);
    assert_eq!(gcap.layout, ccap.layout, "{name}: caption layout");
    assert_close(&format!("{name} t"), &gcap.t, &ccap.t, TOL);
    assert_close(&format!("{name} t_glo"), &gcap.t_glo, &ccap.t_glo, TOL);

    // Score the CPU embeddings on both, so each stage is compared on equal inputs.
    let (gs, gt) = model.score_tile(&cimg, &ccap, mode, true).unwrap();
    let (cs, ct) = sgraf::cpu::model::score_tile(&p, &cimg, &ccap, mode, true);
    let (gt, ct) = (gt.unwrap(), ct.unwrap());
    assert_close(&format!("{name} ctx"), &gt.ctx, &ct.ctx, TOL);
    assert_close(&format!("{name} attn"), &gt.attn, &ct.attn, TOL);
    assert_close(&format!("{name} sim_loc_linear"), &gt.sim_loc_linear, &ct.sim_loc_linear, TOL);
    assert_close(&format!("{name} sim_glo_linear"), &gt.sim_glo_linear, &ct.sim_glo_linear, TOL);
    assert_close(&format!("{name} nodes"), &gt.nodes, &ct.nodes, TOL);
    assert_eq!(gt.sgr_steps.len(), ct.sgr_steps.len(), "{name}: SGR steps kept");
    for (k, (g, c)) in gt.sgr_steps.iter().zip(&ct.sgr_steps).enumerate() {
        assert_close(&format!("{name} sgr step {k}"), g, c, TOL);
    }
    match (&gt.saf, &ct.saf) {
        (Some(g), Some(c)) => {
            assert_close(&format!("{name} saf bn_out"), &g.bn_out, &c.bn_out, TOL);
            assert_close(&format!("{name} saf weights"), &g.weights, &c.weights, TOL);
            assert_eq!(g.bn_stats.len(), c.bn_stats.len(), "{name}: SAF BatchNorm stats");
            for (k, (g, c)) in g.bn_stats.iter().zip(&c.bn_stats).enumerate() {
                assert_close(&format!("{name} saf bn mean {k}"), &g.mean, &c.mean, TOL);
                assert_close(&format!("{name} saf bn var {k}"), &g.var_biased, &c.var_biased, TOL);
                assert_eq!(g.count, c.count, "{name}: SAF BatchNorm count {k}");
            }
        }
        (None, None) => {}
        _ => panic!("{name}: SAF trace present on one backend only"),
    }
    assert_close(&format!("{name} sim_vec"), &gt.sim_vec, &ct.sim_vec, TOL);
    assert_close(&format!("{name} logit"), &gt.logit, &ct.logit, TOL);
    assert_close(&format!("{name} sims"), &gs, &cs, TOL);
    // Without a trace (eval: SGR's scores-only form on the CPU) the scores agree too.
    let (gs2, _) = model.score_tile(&cimg, &ccap, mode, false).unwrap();
    let (cs2, _) = sgraf::cpu::model::score_tile(&p, &cimg, &ccap, mode, false);
    assert_close(&format!("{name} sims (no trace)"), &gs2, &cs2, TOL);
    if mode == Mode::Eval {
        // All pairs in 2 × 3 tiles, pipelined, against one CPU tile.
        let mut calls = 0;
        let all = model.score_all_tiled(&cimg, &ccap, (2, 3), &mut |_, _| calls += 1).unwrap();
        assert_eq!(calls, 4, "{name}: score_all progress calls");
        assert_close(&format!("{name} score_all"), &all, &cs2, TOL);
    }
}

/// Captions are encoded in chunks on the GPU; the packed result is the same.
#[test]
fn encode_many_captions() {
    let p = small_params(Module::Saf, 45);
    let model = sgraf::gpu::model::GpuModel::new(gpu_shared().clone(), &p).unwrap();
    let mut rng = Lcg::new(46);
    let captions: Vec<Vec<u32>> =
        (0..150).map(|_| (0..2 + rng.next_u32() as usize % 9).map(|_| rng.next_u32() % 30).collect()).collect();
    let g = model.encode_captions(&captions).unwrap();
    let c = sgraf::cpu::model::encode_captions(&p, &captions);
    assert_eq!(g.layout, c.layout, "caption layout");
    assert_close("150 captions t", &g.t, &c.t, TOL);
    assert_close("150 captions t_glo", &g.t_glo, &c.t_glo, TOL);
}

#[test]
fn model_sgr_matches_cpu() {
    check_model(Module::Sgr { steps: 3 }, Mode::Eval, 41);
    check_model(Module::Sgr { steps: 2 }, Mode::Train, 42);
}

#[test]
fn model_saf_matches_cpu() {
    check_model(Module::Saf, Mode::Eval, 43);
    check_model(Module::Saf, Mode::Train, 44);
}
