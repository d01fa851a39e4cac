//! Finite-difference checks, in float64, of every CPU backward
//! (`src/cpu/<layer>.rs`), of the loss, and of the whole forward–backward, at
//! small random sizes (E = 8, S = 6, D_w = 5, D_img = 7, captions of 4, 2 and
//! 3 tokens in that order, 36 regions).
//!
//! The CPU layers are generic over the float type (`sgraf::cpu::Real`), so
//! these checks run the very code of the model instantiated for `f64`:
//! inputs, parameters, forwards, backwards and central differences all in
//! float64.
//!
//! Each layer check takes a scalar `L = Σ r ⊙ y` (a fixed random projection
//! `r` of the layer output `y`), computes the analytic gradient with the
//! layer's backward (fed `dy = r`), and compares it with central differences
//! `(L(x + h) − L(x − h)) / 2h`, h = 1e-6, on (a sample of) the coordinates of
//! every input and parameter tensor. An entry passes when
//! `|analytic − numerical| ≤ 1e-8 + 1e-6·max(|analytic|, |numerical|)`
//! (truncation error O(h²) ~ 1e-12, rounding ~ 1e-16·|L|/h ~ 1e-10). Failure
//! messages name the tensor, the index and both values. Gradients that are
//! zero by construction (self-attention `common.b`, SGR `key.b`, and in train
//! mode the biases followed by a BatchNorm) must be exactly zero analytically,
//! and their central differences below 1e-8.
//!
//! Kinks: the forwards are piecewise smooth (LeakyReLU, ReLU, the hinge and
//! the hardest-negative max). A coordinate whose difference at h fails is
//! retried at h/2 and h/4 ([`fd_with`]): it passes if one of them is within
//! tolerance, fails if the three agree with each other (smooth there), and is
//! skipped as non-smooth otherwise (a kink within ±h), which only a small
//! share of coordinates may be.

mod common;
use common::Lcg;

use sgraf::cpu;
use sgraf::model::init::Rng;
use sgraf::model::layout::TileLayout;
use sgraf::model::params::*;
use sgraf::train::grads::trainable_mut;

/// The float type of every check.
type F = f64;

/// Step of the central differences.
const H: F = 1e-6;

/// How a finite-difference comparison is judged:
/// `|a − n| ≤ atol + rtol·max(|a|, |n|)`.
struct Crit {
    rtol: F,
    atol: F,
    /// Largest fraction of sampled coordinates that may be skipped as non-smooth.
    max_skipped: F,
}

/// The layer checks.
const LAYER: Crit = Crit { rtol: 1e-6, atol: 1e-8, max_skipped: 0.05 };
/// The whole model: the same tolerance; kinks (LeakyReLU in the attention
/// over 36 regions × words, dropout, hinges) are denser, more skips allowed.
const WHOLE: Crit = Crit { rtol: 1e-6, atol: 1e-8, max_skipped: 0.1 };
/// |numerical| allowed for a gradient that is zero by construction.
const ZERO_TOL: F = 1e-8;
/// Coordinates sampled per tensor.
const SAMPLES: usize = 40;

/// `n` uniform values in [−1, 1).
fn uni(l: &mut Lcg, n: usize) -> Vec<F> {
    l.vec(n).into_iter().map(F::from).collect()
}

fn proj(r: &[F], y: &[F]) -> F {
    assert_eq!(r.len(), y.len(), "projection length");
    r.iter().zip(y).map(|(a, b)| a * b).sum()
}

/// Central difference of `f` at coordinate `i` with step `h`.
fn central(f: &dyn Fn(&[F]) -> F, x0: &[F], i: usize, h: F) -> F {
    let (mut xp, mut xm) = (x0.to_vec(), x0.to_vec());
    xp[i] += h;
    xm[i] -= h;
    (f(&xp) - f(&xm)) / (xp[i] - xm[i])
}

/// Compares `analytic` with central differences of `f` around `x0`, on up to
/// [`SAMPLES`] coordinates, with the [`LAYER`] criterion.
fn fd(name: &str, x0: &[F], analytic: &[F], f: &dyn Fn(&[F]) -> F) {
    fd_with(name, x0, analytic, &LAYER, f);
}

/// [`fd`] with a given criterion; prints the largest absolute and relative
/// errors and returns the largest relative error.
///
/// A coordinate passes when the analytic value is within the tolerance of the
/// difference at h, or else of one at h/2 or h/4; it fails when it is not but
/// the three agree with each other (a smooth, well-resolved coordinate);
/// otherwise it is skipped as non-smooth (a kink within ±h; NaN from `f`
/// marks one too), and only `crit.max_skipped` of them may be.
fn fd_with(name: &str, x0: &[F], analytic: &[F], crit: &Crit, f: &dyn Fn(&[F]) -> F) -> F {
    assert_eq!(x0.len(), analytic.len(), "{name}: gradient length");
    let idx: Vec<usize> = if x0.len() <= SAMPLES {
        (0..x0.len()).collect()
    } else {
        let mut l = Lcg(x0.len() as u64 * 7919 + name.len() as u64);
        (0..SAMPLES).map(|_| ((l.next_f32() + 1.0) * 0.5 * x0.len() as f32) as usize % x0.len()).collect()
    };
    let scale = analytic.iter().fold(0.0, |m: F, v| m.max(v.abs()));
    let ok = |a: F, n: F| (a - n).abs() <= crit.atol + crit.rtol * a.abs().max(n.abs());
    let (mut worst_abs, mut worst_rel, mut skipped) = (0.0f64, 0.0f64, 0usize);
    for &i in &idx {
        let a = analytic[i];
        if scale == 0.0 {
            let num = central(f, x0, i, H);
            assert!(
                a == 0.0 && num.abs() <= ZERO_TOL,
                "{name}[{i}] (zero by construction): analytic {a:e}, numerical {num:e} (|numerical| > {ZERO_TOL:e})"
            );
            worst_abs = worst_abs.max(num.abs());
            continue;
        }
        let c0 = central(f, x0, i, H);
        let num = if ok(a, c0) {
            c0
        } else {
            let c = [c0, central(f, x0, i, H / 2.0), central(f, x0, i, H / 4.0)];
            match c.iter().find(|&&n| ok(a, n)) {
                Some(&n) => n,
                None => {
                    let smooth = ok(c[0], c[1]) && ok(c[1], c[2]) && ok(c[0], c[2]);
                    assert!(
                        !smooth,
                        "{name}[{i}]: analytic {a:e}, numerical {c:?} at h, h/2, h/4 (h = {H:e}; |diff| {:.2e} > \
                         {:e} + {:e}·|value|; max|g| {scale:.2e})",
                        (a - c0).abs(),
                        crit.atol,
                        crit.rtol
                    );
                    skipped += 1;
                    continue;
                }
            }
        };
        let d = (a - num).abs();
        worst_abs = worst_abs.max(d);
        worst_rel = worst_rel.max(d / a.abs().max(num.abs()).max(crit.atol / crit.rtol));
    }
    println!(
        "{name:<52} max|g| {scale:9.2e}  max abs err {worst_abs:.1e}  max rel err {worst_rel:.1e}  non-smooth skipped {skipped}/{}",
        idx.len()
    );
    assert!(
        skipped as F <= crit.max_skipped * idx.len().max(10) as F,
        "{name}: {skipped} of {} coordinates non-smooth (differences at h, h/2, h/4 disagree); choose another case",
        idx.len()
    );
    worst_rel
}

/// A named tensor of a parameter struct.
type Slot<T> = (&'static str, fn(&mut T) -> &mut Vec<F>);

/// Checks the gradients `g` of every slot of `p` against central differences of `loss`.
fn fd_params<T: Clone>(what: &str, p: &T, g: &T, slots: &[Slot<T>], loss: &dyn Fn(&T) -> F) {
    for (name, acc) in slots {
        let x0 = acc(&mut p.clone()).clone();
        let an = acc(&mut g.clone()).clone();
        fd(&format!("{what} {name}"), &x0, &an, &|x| {
            let mut q = p.clone();
            *acc(&mut q) = x.to_vec();
            loss(&q)
        });
    }
}

fn rnd(l: &mut Lcg, n: usize, scale: F) -> Vec<F> {
    uni(l, n).into_iter().map(|v| v * scale).collect()
}

fn lin(l: &mut Lcg, n_out: usize, n_in: usize) -> Linear<F> {
    let r = (3.0 / n_in as F).sqrt();
    Linear { w: rnd(l, n_out * n_in, r), b: rnd(l, n_out, 0.3), n_out, n_in }
}

fn bn(l: &mut Lcg, c: usize) -> BatchNorm<F> {
    BatchNorm {
        weight: uni(l, c).into_iter().map(|v| 1.0 + 0.5 * v).collect(),
        bias: rnd(l, c, 0.3),
        running_mean: rnd(l, c, 0.3),
        running_var: uni(l, c).into_iter().map(|v| 1.0 + 0.5 * v).collect(),
        num_batches_tracked: 0,
    }
}

fn zero_linear(x: &Linear<F>) -> Linear<F> {
    sgraf::train::grads::zeros_linear(x)
}

/// Rows of `x [m, n]` l2-normalised (the regime of the encoders' outputs).
fn unit_rows(mut x: Vec<F>, n: usize) -> Vec<F> {
    cpu::l2norm::forward(&mut x, n);
    x
}

/// Inverted-dropout mask with p = 0.4.
fn mask(l: &mut Lcg, n: usize) -> Vec<F> {
    uni(l, n).into_iter().map(|v| if v < -0.2 { 0.0 } else { 1.0 / 0.6 }).collect()
}

/// `|got − want| ≤ tol` everywhere (two float64 forwards that should agree).
fn assert_close64(name: &str, got: &[F], want: &[F], tol: F) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{name}[{i}]: got {g:e}, expected {w:e} (|diff| > {tol:e})");
    }
}

const LENGTHS: [usize; 3] = [4, 2, 3]; // deliberately not sorted

// ----------------------------------------------------------------------------

#[test]
fn linear_backward() {
    let mut l = Lcg(1);
    let (m, k, n) = (4, 5, 3);
    let (x, p) = (rnd(&mut l, m * k, 1.0), lin(&mut l, n, k));
    let r = uni(&mut l, m * n);
    let f = |x: &[F], p: &Linear<F>| {
        let mut y = vec![0.0; m * n];
        cpu::linear::forward(x, &p.w, Some(&p.b), &mut y, m, k, n);
        proj(&r, &y)
    };
    let (mut dx, mut g) = (vec![0.0; m * k], zero_linear(&p));
    cpu::linear::backward(&r, &x, &p.w, Some(&mut dx), &mut g.w, Some(&mut g.b), m, k, n);
    fd("linear x", &x, &dx, &|x| f(x, &p));
    fd_params("linear", &p, &g, &[("w", |p| &mut p.w), ("b", |p| &mut p.b)], &|p| f(&x, p));
}

#[test]
fn l2norm_backward() {
    let mut l = Lcg(2);
    let (m, n) = (3, 7);
    let x = rnd(&mut l, m * n, 1.0);
    let r = uni(&mut l, m * n);
    // float32 (the model) and float64: forward_keep_norms = forward, bit for bit
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let (mut y32, mut same32) = (x32.clone(), x32);
    cpu::l2norm::forward_keep_norms(&mut y32, n);
    cpu::l2norm::forward(&mut same32, n);
    assert_eq!(same32, y32, "float32 forward_keep_norms must equal forward bit for bit");
    let (mut y, mut same) = (x.clone(), x.clone());
    cpu::l2norm::forward_keep_norms(&mut y, n);
    cpu::l2norm::forward(&mut same, n);
    assert_eq!(same, y, "float64 forward_keep_norms must equal forward bit for bit");
    let mut y = x.clone();
    let norms = cpu::l2norm::forward_keep_norms(&mut y, n);
    let mut dx = vec![0.0; m * n];
    cpu::l2norm::backward(&r, &y, &norms, &mut dx, n);
    fd("l2norm x", &x, &dx, &|x| {
        let mut y = x.to_vec();
        cpu::l2norm::forward(&mut y, n);
        proj(&r, &y)
    });
    // Where the eps matters (‖x‖ ~ ε = 1e-8), against central differences of
    // an independent reference (step h relative to x ~ 1e-9): this pins
    // `dx = (dy − y(y·dy)(ν+ε)/ν)/(ν+ε)`. The layers' eps is the float32
    // constant 1e-8 (widened), and so is the reference's.
    let row: Vec<F> = x[..n].iter().map(|v| v * 2e-9).collect();
    let rr = &r[..n];
    let mut y = row.clone();
    let norms = cpu::l2norm::forward_keep_norms(&mut y, n);
    let mut dx = vec![0.0; n];
    cpu::l2norm::backward(rr, &y, &norms, &mut dx, n);
    let eps = 1e-8f32 as F;
    let reference = |x: &[F]| {
        let d = x.iter().map(|v| v * v).sum::<F>().sqrt() + eps;
        x.iter().zip(rr).map(|(v, w)| v / d * w).sum::<F>()
    };
    for (i, &a) in dx.iter().enumerate() {
        let h = 1e-6 * 2e-9;
        let num = central(&reference, &row, i, h);
        let layer = central(
            &|x| {
                let mut y = x.to_vec();
                cpu::l2norm::forward(&mut y, n);
                proj(rr, &y)
            },
            &row,
            i,
            h,
        );
        for (what, num) in [("reference", num), ("layer forward", layer)] {
            let err = (a - num).abs() / num.abs().max(1e-2 * 1e8);
            assert!(
                err < 1e-6,
                "l2norm x (‖x‖ ~ ε)[{i}]: analytic {a:e}, numerical ({what}) {num:e} (relative error {err:.1e})"
            );
        }
    }
}

#[test]
fn image_fc_backward() {
    let mut l = Lcg(3);
    let (rows, di, e) = (5, 7, 8);
    let (images, fc) = (rnd(&mut l, rows * di, 1.0), lin(&mut l, e, di));
    let r = uni(&mut l, rows * e);
    let (v, norms) = cpu::image_fc::forward_train(&images, &fc, rows);
    assert_eq!(v, cpu::image_fc::forward(&images, &fc, rows));
    let (mut g, mut dimg) = (zero_linear(&fc), vec![0.0; rows * di]);
    cpu::image_fc::backward(&r, &v, &norms, &images, &fc, &mut g, Some(&mut dimg), rows);
    fd("image_fc images", &images, &dimg, &|x| proj(&r, &cpu::image_fc::forward(x, &fc, rows)));
    fd_params("image_fc", &fc, &g, &[("w", |p| &mut p.w), ("b", |p| &mut p.b)], &|p| {
        proj(&r, &cpu::image_fc::forward(&images, p, rows))
    });
}

#[test]
fn embed_backward() {
    let mut l = Lcg(4);
    let (v, dw) = (6, 5);
    let table = rnd(&mut l, v * dw, 0.1);
    let ids = [1u32, 3, 1, 5, 0];
    let r = uni(&mut l, ids.len() * dw);
    let mut g = vec![0.0; v * dw];
    cpu::embed::backward(&r, &ids, &mut g, dw);
    fd("embed table", &table, &g, &|t| proj(&r, &cpu::embed::forward(&ids, t, dw)));
}

#[test]
fn gru_backward_through_time() {
    let mut l = Lcg(5);
    let (dw, e) = (5, 8);
    let lay = TileLayout::new(&LENGTHS);
    let nw = lay.n_words();
    let k = 1.0 / (e as F).sqrt();
    let dir = |l: &mut Lcg| GruDirection {
        w_ih: rnd(l, 3 * e * dw, 3.0 * k),
        w_hh: rnd(l, 3 * e * e, 3.0 * k),
        b_ih: rnd(l, 3 * e, k),
        b_hh: rnd(l, 3 * e, k),
    };
    let (fwd, bwd) = (dir(&mut l), dir(&mut l));
    let x = rnd(&mut l, nw * dw, 1.0);
    let r = uni(&mut l, nw * e);
    let loss =
        |x: &[F], f: &GruDirection<F>, b: &GruDirection<F>| proj(&r, &cpu::gru::forward_train(x, &lay, f, b, dw, e).0);
    // the packed training forward equals the padded official-layout forward
    let (t, cache) = cpu::gru::forward_train(&x, &lay, &fwd, &bwd, dw, e);
    let l_max = 4;
    let mut xp = vec![0.0; LENGTHS.len() * l_max * dw];
    for c in 0..LENGTHS.len() {
        let w = lay.words(c);
        xp[c * l_max * dw..(c * l_max + w.len()) * dw].copy_from_slice(&x[w.start * dw..w.end * dw]);
    }
    let padded = cpu::gru::forward(&xp, &LENGTHS, &fwd, &bwd, l_max, dw, e);
    let packed = lay.pack_words(&padded, l_max, e);
    assert_close64("gru packed vs padded forward", &t, &packed, 1e-14);
    let zero = |g: &GruDirection<F>| GruDirection {
        w_ih: vec![0.0; g.w_ih.len()],
        w_hh: vec![0.0; g.w_hh.len()],
        b_ih: vec![0.0; g.b_ih.len()],
        b_hh: vec![0.0; g.b_hh.len()],
    };
    let (mut gf, mut gb, mut dx) = (zero(&fwd), zero(&bwd), vec![0.0; nw * dw]);
    cpu::gru::backward(&r, &t, &x, &lay, &fwd, &bwd, &cache, &mut gf, &mut gb, &mut dx, dw, e);
    fd("gru x", &x, &dx, &|x| loss(x, &fwd, &bwd));
    let slots: [Slot<GruDirection<F>>; 4] =
        [("w_ih", |p| &mut p.w_ih), ("w_hh", |p| &mut p.w_hh), ("b_ih", |p| &mut p.b_ih), ("b_hh", |p| &mut p.b_hh)];
    fd_params("gru forward", &fwd, &gf, &slots, &|p| loss(&x, p, &bwd));
    fd_params("gru reverse", &bwd, &gb, &slots, &|p| loss(&x, &fwd, p));
}

#[test]
fn batchnorm_backward_train_and_eval() {
    for mode in [Mode::Train, Mode::Eval] {
        let mut l = Lcg(6);
        let (n, c, len) = (3, 4, 5);
        let (x, p) = (rnd(&mut l, n * c * len, 1.0), bn(&mut l, c));
        let r = uni(&mut l, n * c * len);
        let f = |x: &[F], p: &BatchNorm<F>| {
            let mut y = x.to_vec();
            cpu::batchnorm::forward(&mut y, p, mode, n, c, len);
            proj(&r, &y)
        };
        let stats = cpu::batchnorm::forward(&mut x.clone(), &p, mode, n, c, len);
        let (mut g, mut dx) = (sgraf::train::grads::zeros_bn(&p), vec![0.0; x.len()]);
        cpu::batchnorm::backward(&r, &x, &p, mode, stats.as_ref(), &mut g, &mut dx, n, c, len);
        let what = format!("batchnorm {mode:?}");
        fd(&format!("{what} x"), &x, &dx, &|x| f(x, &p));
        let slots: [Slot<BatchNorm<F>>; 2] = [("weight", |p| &mut p.weight), ("bias", |p| &mut p.bias)];
        fd_params(&what, &p, &g, &slots, &|p| f(&x, p));
    }
}

fn visual_sa_params(l: &mut Lcg, e: usize) -> VisualSa<F> {
    VisualSa {
        local: lin(l, e, e),
        local_bn: bn(l, N_REGIONS),
        global: lin(l, e, e),
        global_bn: bn(l, e),
        common: lin(l, 1, e),
    }
}

#[test]
fn visual_self_attention_backward() {
    for mode in [Mode::Train, Mode::Eval] {
        let mut l = Lcg(7);
        let (n, e) = (3, 8);
        let p = visual_sa_params(&mut l, e);
        let v = unit_rows(rnd(&mut l, n * N_REGIONS * e, 1.0), e);
        let (ml, mg) = (mask(&mut l, n * N_REGIONS * e), mask(&mut l, n * e));
        let r = uni(&mut l, n * e);
        let fwd = |v: &[F], p: &VisualSa<F>| {
            cpu::visual_sa::forward_train(v, p, mode, n, e, Some(ml.clone()), Some(mg.clone()))
        };
        let cache = fwd(&v, &p);
        let ones = Some(vec![1.0; n * N_REGIONS * e]);
        let plain = cpu::visual_sa::forward_train(&v, &p, mode, n, e, ones, Some(vec![1.0; n * e]));
        assert_eq!(plain.out, cpu::visual_sa::forward(&v, &p, mode, n, e).0, "forward_train without dropout = forward");
        let mut g = VisualSa {
            local: zero_linear(&p.local),
            local_bn: sgraf::train::grads::zeros_bn(&p.local_bn),
            global: zero_linear(&p.global),
            global_bn: sgraf::train::grads::zeros_bn(&p.global_bn),
            common: zero_linear(&p.common),
        };
        let mut dv = vec![0.0; v.len()];
        cpu::visual_sa::backward(&r, &v, &p, mode, &cache, &mut g, &mut dv, n, e);
        let what = format!("visual_sa {mode:?}");
        fd(&format!("{what} v"), &v, &dv, &|v| proj(&r, &fwd(v, &p).out));
        let slots: [Slot<VisualSa<F>>; 9] = [
            ("local.w", |p| &mut p.local.w),
            ("local.b", |p| &mut p.local.b),
            ("local_bn.weight", |p| &mut p.local_bn.weight),
            ("local_bn.bias", |p| &mut p.local_bn.bias),
            ("global.w", |p| &mut p.global.w),
            ("global.b (zero in train mode)", |p| &mut p.global.b),
            ("global_bn.weight", |p| &mut p.global_bn.weight),
            ("global_bn.bias", |p| &mut p.global_bn.bias),
            ("common.w", |p| &mut p.common.w),
        ];
        fd_params(&what, &p, &g, &slots, &|p| proj(&r, &fwd(&v, p).out));
        let zero: [Slot<VisualSa<F>>; 1] = [("common.b (zero)", |p| &mut p.common.b)];
        fd_params(&what, &p, &g, &zero, &|p| proj(&r, &fwd(&v, p).out));
    }
}

#[test]
fn text_self_attention_backward() {
    let mut l = Lcg(8);
    let e = 8;
    let lay = TileLayout::new(&LENGTHS);
    let (nw, nc) = (lay.n_words(), lay.n_cap());
    let p = TextSa { local: lin(&mut l, e, e), global: lin(&mut l, e, e), common: lin(&mut l, 1, e) };
    let t = unit_rows(rnd(&mut l, nw * e, 1.0), e);
    let (ml, mg) = (mask(&mut l, nw * e), mask(&mut l, nc * e));
    let r = uni(&mut l, nc * e);
    let fwd = |t: &[F], p: &TextSa<F>| cpu::text_sa::forward_train(t, p, &lay, e, Some(ml.clone()), Some(mg.clone()));
    let plain = cpu::text_sa::forward_train(&t, &p, &lay, e, None, None);
    assert_eq!(plain.out, cpu::text_sa::forward(&t, &p, &lay, e), "forward_train without dropout = forward");
    let cache = fwd(&t, &p);
    let mut g = TextSa { local: zero_linear(&p.local), global: zero_linear(&p.global), common: zero_linear(&p.common) };
    let mut dt = vec![0.0; t.len()];
    cpu::text_sa::backward(&r, &t, &p, &lay, &cache, &mut g, &mut dt, e);
    fd("text_sa t", &t, &dt, &|t| proj(&r, &fwd(t, &p).out));
    let slots: [Slot<TextSa<F>>; 6] = [
        ("local.w", |p| &mut p.local.w),
        ("local.b", |p| &mut p.local.b),
        ("global.w", |p| &mut p.global.w),
        ("global.b", |p| &mut p.global.b),
        ("common.w", |p| &mut p.common.w),
        ("common.b (zero)", |p| &mut p.common.b),
    ];
    fd_params("text_sa", &p, &g, &slots, &|p| proj(&r, &fwd(&t, p).out));
}

#[test]
fn text_to_image_attention_backward() {
    let mut l = Lcg(9);
    let e = 8;
    let lay = TileLayout::new(&LENGTHS);
    let nw = lay.n_words();
    let vi = unit_rows(rnd(&mut l, N_REGIONS * e, 1.0), e);
    let t = unit_rows(rnd(&mut l, nw * e, 1.0), e);
    let r = uni(&mut l, nw * e);
    let cache = cpu::attention::forward_image(&vi, &t, &lay, e);
    let (reference, _) = cpu::attention::forward(&vi, &t, &lay, 1, e, false);
    assert_eq!(cache.ctx, reference, "forward_image = forward");
    let (mut dv, mut dt) = (vec![0.0; vi.len()], vec![0.0; t.len()]);
    cpu::attention::backward_image(&r, &vi, &t, &lay, e, &cache, &mut dv, &mut dt);
    let f = |vi: &[F], t: &[F]| proj(&r, &cpu::attention::forward_image(vi, t, &lay, e).ctx);
    fd("attention v", &vi, &dv, &|x| f(x, &t));
    fd("attention t", &t, &dt, &|x| f(&vi, x));
}

#[test]
fn similarity_vectors_backward() {
    let mut l = Lcg(10);
    let (e, s) = (8, 6);
    let lay = TileLayout::new(&LENGTHS);
    let (nw, nc, nn) = (lay.n_words(), lay.n_cap(), lay.n_nodes());
    let (ctx, t) = (unit_rows(rnd(&mut l, nw * e, 1.0), e), unit_rows(rnd(&mut l, nw * e, 1.0), e));
    let (v_glo, t_glo) = (unit_rows(rnd(&mut l, e, 1.0), e), unit_rows(rnd(&mut l, nc * e, 1.0), e));
    let (pl, pg) = (lin(&mut l, s, e), lin(&mut l, s, e));
    let r = uni(&mut l, nn * s);
    // local
    let loc = |ctx: &[F], t: &[F], p: &Linear<F>| {
        let mut nodes = vec![0.0; nn * s];
        let norms = cpu::similarity::local_forward_image(ctx, t, p, &lay, &mut nodes);
        (nodes, norms)
    };
    let (nodes, norms) = loc(&ctx, &t, &pl);
    let mut reference = vec![0.0; nn * s];
    cpu::similarity::local_forward(&ctx, &t, &pl, &lay, 1, &mut reference, false);
    assert_eq!(nodes, reference, "local_forward_image = local_forward");
    let (mut g, mut dctx, mut dt) = (zero_linear(&pl), vec![0.0; ctx.len()], vec![0.0; t.len()]);
    cpu::similarity::local_backward_image(&r, &nodes, &norms, &ctx, &t, &pl, &lay, &mut g, &mut dctx, &mut dt);
    fd("similarity local ctx", &ctx, &dctx, &|x| proj(&r, &loc(x, &t, &pl).0));
    fd("similarity local t", &t, &dt, &|x| proj(&r, &loc(&ctx, x, &pl).0));
    fd_params("similarity local", &pl, &g, &[("w", |p| &mut p.w), ("b", |p| &mut p.b)], &|p| {
        proj(&r, &loc(&ctx, &t, p).0)
    });
    // global
    let glo = |v: &[F], tg: &[F], p: &Linear<F>| {
        let mut nodes = vec![0.0; nn * s];
        let norms = cpu::similarity::global_forward_image(v, tg, p, &lay, &mut nodes);
        (nodes, norms)
    };
    let (nodes, norms) = glo(&v_glo, &t_glo, &pg);
    let (mut g, mut dv, mut dtg) = (zero_linear(&pg), vec![0.0; e], vec![0.0; nc * e]);
    cpu::similarity::global_backward_image(&r, &nodes, &norms, &v_glo, &t_glo, &pg, &lay, &mut g, &mut dv, &mut dtg);
    fd("similarity global v_glo", &v_glo, &dv, &|x| proj(&r, &glo(x, &t_glo, &pg).0));
    fd("similarity global t_glo", &t_glo, &dtg, &|x| proj(&r, &glo(&v_glo, x, &pg).0));
    fd_params("similarity global", &pg, &g, &[("w", |p| &mut p.w), ("b", |p| &mut p.b)], &|p| {
        proj(&r, &glo(&v_glo, &t_glo, p).0)
    });
}

fn sgr_step(l: &mut Lcg, s: usize) -> SgrStep<F> {
    SgrStep { query: lin(l, s, s), key: lin(l, s, s), graph: lin(l, s, s) }
}

fn zero_step(p: &SgrStep<F>) -> SgrStep<F> {
    SgrStep { query: zero_linear(&p.query), key: zero_linear(&p.key), graph: zero_linear(&p.graph) }
}

const STEP_SLOTS: [Slot<SgrStep<F>>; 6] = [
    ("query.w", |p| &mut p.query.w),
    ("query.b", |p| &mut p.query.b),
    ("key.w", |p| &mut p.key.w),
    ("key.b (zero)", |p| &mut p.key.b),
    ("graph.w", |p| &mut p.graph.w),
    ("graph.b", |p| &mut p.graph.b),
];

#[test]
fn sgr_step_backward() {
    let mut l = Lcg(11);
    let (s, n_img) = (6, 2);
    let lay = TileLayout::new(&LENGTHS);
    let nn = lay.n_nodes();
    let mut p = sgr_step(&mut l, s);
    p.graph.b.iter_mut().for_each(|b| *b += 0.3); // fewer ReLU units near their kink
    let x = rnd(&mut l, n_img * nn * s, 1.0);
    let r = uni(&mut l, n_img * nn * s);
    let c = cpu::sgr::step_forward_train(&x, &p, &lay, n_img);
    assert_eq!(c.out, cpu::sgr::step_forward(&x, &p, &lay, n_img), "step_forward_train = step_forward");
    let (mut g, mut dx) = (zero_step(&p), vec![0.0; x.len()]);
    cpu::sgr::step_backward(&r, &p, &lay, n_img, &c, &mut g, &mut dx);
    let f = |x: &[F], p: &SgrStep<F>| proj(&r, &cpu::sgr::step_forward(x, p, &lay, n_img));
    fd("sgr step x", &x, &dx, &|x| f(x, &p));
    fd_params("sgr step", &p, &g, &STEP_SLOTS, &|p| f(&x, p));
}

#[test]
fn sgr_all_steps_backward() {
    let mut l = Lcg(12);
    let (s, n_img) = (6, 2);
    let lay = TileLayout::new(&LENGTHS);
    let (nn, nc) = (lay.n_nodes(), lay.n_cap());
    // graph biases shifted up, so that fewer ReLU units sit within ±h of their kink
    let steps: Vec<SgrStep<F>> = (0..3)
        .map(|_| {
            let mut st = sgr_step(&mut l, s);
            st.graph.b.iter_mut().for_each(|b| *b += 0.3);
            st
        })
        .collect();
    let nodes = unit_rows(rnd(&mut l, n_img * nn * s, 1.0), s);
    let r = uni(&mut l, n_img * nc * s);
    let (out, caches) = cpu::sgr::forward_train(&nodes, &steps, &lay, n_img);
    assert_eq!(out, cpu::sgr::forward(&nodes, &steps, &lay, n_img, false).0, "forward_train = forward");
    let mut g: Vec<SgrStep<F>> = steps.iter().map(zero_step).collect();
    let mut dnodes = vec![0.0; nodes.len()];
    cpu::sgr::backward(&r, &steps, &lay, n_img, &caches, &mut g, &mut dnodes);
    let f = |x: &[F], st: &[SgrStep<F>]| proj(&r, &cpu::sgr::forward(x, st, &lay, n_img, false).0);
    fd("sgr nodes", &nodes, &dnodes, &|x| f(x, &steps));
    for k in 0..steps.len() {
        fd_params(&format!("sgr step {k}"), &steps[k], &g[k], &STEP_SLOTS, &|p| {
            let mut st = steps.clone();
            st[k] = p.clone();
            f(&nodes, &st)
        });
    }
}

#[test]
fn saf_backward_train_and_eval() {
    for mode in [Mode::Train, Mode::Eval] {
        let mut l = Lcg(13);
        let (s, n_img) = (6, 3);
        let lay = TileLayout::new(&LENGTHS);
        let (nn, nc) = (lay.n_nodes(), lay.n_cap());
        let p = Saf { attn: lin(&mut l, 1, s), bn: bn(&mut l, 1) };
        let nodes = unit_rows(rnd(&mut l, n_img * nn * s, 1.0), s);
        let r = uni(&mut l, n_img * nc * s);
        // the three stages compose to the forward
        let stages = |x: &[F], p: &Saf<F>| {
            let beta = cpu::saf::attn_logits(x, p, n_img * nn);
            let (bn_out, stats) = cpu::saf::caption_batch_norm(&beta, p, &lay, n_img, mode);
            let f = cpu::saf::filter_forward(x, &bn_out, &lay, n_img, s);
            (beta, bn_out, stats, f)
        };
        let (beta, _, stats, f) = stages(&nodes, &p);
        assert_eq!(f.out, cpu::saf::forward(&nodes, &p, &lay, n_img, mode).0, "stages = forward");
        let (mut dnodes, mut dbn_out, mut dbeta) =
            (vec![0.0; nodes.len()], vec![0.0; n_img * nn], vec![0.0; n_img * nn]);
        let mut g = Saf { attn: zero_linear(&p.attn), bn: sgraf::train::grads::zeros_bn(&p.bn) };
        cpu::saf::filter_backward(&r, &nodes, &lay, n_img, s, &f, &mut dnodes, &mut dbn_out);
        cpu::saf::caption_batch_norm_backward(&dbn_out, &beta, &p, &lay, n_img, mode, &stats, &mut g.bn, &mut dbeta);
        cpu::saf::attn_logits_backward(&dbeta, &nodes, &p, mode, &mut g, &mut dnodes, n_img * nn);
        let what = format!("saf {mode:?}");
        let loss = |x: &[F], p: &Saf<F>| proj(&r, &stages(x, p).3.out);
        fd(&format!("{what} nodes"), &nodes, &dnodes, &|x| loss(x, &p));
        let slots: [Slot<Saf<F>>; 4] = [
            ("attn.w", |p| &mut p.attn.w),
            ("attn.b (zero in train mode)", |p| &mut p.attn.b),
            ("bn.weight", |p| &mut p.bn.weight),
            ("bn.bias", |p| &mut p.bn.bias),
        ];
        fd_params(&what, &p, &g, &slots, &|p| loss(&nodes, p));
    }
}

#[test]
fn score_head_backward() {
    let mut l = Lcg(14);
    let (n, s) = (4, 6);
    let (x, p) = (rnd(&mut l, n * s, 1.0), lin(&mut l, 1, s));
    let r = uni(&mut l, n);
    let (_, score) = cpu::head::forward(&x, &p, n);
    let (mut g, mut dx) = (zero_linear(&p), vec![0.0; x.len()]);
    cpu::head::backward(&r, &x, &score, &p, &mut g, &mut dx, n);
    fd("head s", &x, &dx, &|x| proj(&r, &cpu::head::forward(x, &p, n).1));
    fd_params("head", &p, &g, &[("w", |p| &mut p.w), ("b", |p| &mut p.b)], &|p| {
        proj(&r, &cpu::head::forward(&x, p, n).1)
    });
}

#[test]
fn triplet_loss_backward() {
    let mut l = Lcg(15);
    let b = 5;
    let sims: Vec<F> = uni(&mut l, b * b).into_iter().map(|v| 0.5 + 0.3 * v).collect();
    let margin = cpu::loss::MARGIN as F;
    let lo = cpu::loss::forward(&sims, b, margin);
    let d = cpu::loss::backward(&lo, b);
    // reference: the definition, summed directly
    let mut want = 0.0f64;
    for i in 0..b {
        let m =
            (0..b).filter(|&j| j != i).map(|j| (margin + sims[i * b + j] - sims[i * b + i]).max(0.0)).fold(0.0, F::max);
        want += m;
    }
    for j in 0..b {
        let m =
            (0..b).filter(|&i| i != j).map(|i| (margin + sims[i * b + j] - sims[j * b + j]).max(0.0)).fold(0.0, F::max);
        want += m;
    }
    assert!((lo.loss - want).abs() < 1e-12, "loss {} vs definition {want}", lo.loss);
    fd("triplet loss sims", &sims, &d, &|x| cpu::loss::forward(x, b, margin).loss);
    // ties: the first maximum gets the gradient
    let tie = vec![0.5, 0.6, 0.6, 0.6, 0.5, 0.6, 0.6, 0.6, 0.5];
    let lt = cpu::loss::forward(&tie, 3, cpu::loss::MARGIN);
    assert_eq!(lt.hardest_caption, vec![1, 0, 0], "first maximum per image row");
    assert_eq!(lt.hardest_image, vec![1, 0, 0], "first maximum per caption column");
}

#[test]
fn triplet_loss_all_negatives_backward() {
    use cpu::loss::{loss_and_grad, Negatives};
    let mut l = Lcg(16);
    let b = 6;
    let sims: Vec<F> = uni(&mut l, b * b).into_iter().map(|v| 0.5 + 0.3 * v).collect();
    let margin = cpu::loss::MARGIN as F;
    let (lo, d) = loss_and_grad(&sims, b, margin, Negatives::All);
    // reference: the definition (official `max_violation` off: the sum of both cost matrices)
    let mut want = 0.0f64;
    for i in 0..b {
        for j in (0..b).filter(|&j| j != i) {
            want += (margin + sims[i * b + j] - sims[i * b + i]).max(0.0);
            want += (margin + sims[i * b + j] - sims[j * b + j]).max(0.0);
        }
    }
    assert!((lo - want).abs() < 1e-12, "loss {lo} vs definition {want}");
    assert!(lo > 0.0, "the check needs active hinges");
    let (hard, _) = loss_and_grad(&sims, b, margin, Negatives::Hardest);
    assert!(lo > hard, "all negatives ({lo}) sum more than the hardest ones ({hard})");
    fd("all-negatives loss sims", &sims, &d, &|x| loss_and_grad(x, b, margin, Negatives::All).0);
}

// ----------------------------------------------------------------------------
// The whole forward–backward of a tiny model, in float64.

fn tiny_model(module: Module, seed: u64) -> Params<F> {
    let cfg = Config { img_dim: 7, word_dim: 5, embed: 8, sim_dim: 6, vocab: 11, module };
    let mut p = Params::init(cfg, seed);
    // non-trivial biases, BatchNorm affine and running statistics, and a steeper head
    let mut l = Lcg(seed + 100);
    for t in trainable_mut(&mut p) {
        if t.iter().all(|&v| v == 0.0) {
            t.iter_mut().for_each(|v| *v = 0.2 * l.next_f32());
        }
    }
    let mut bns: Vec<&mut BatchNorm> = vec![&mut p.v_sa.local_bn, &mut p.v_sa.global_bn];
    if let Reasoning::Saf(s) = &mut p.reasoning {
        bns.push(&mut s.bn);
    }
    for b in bns {
        for i in 0..b.weight.len() {
            b.weight[i] = 1.0 + 0.3 * l.next_f32();
            b.running_mean[i] = 0.2 * l.next_f32();
            b.running_var[i] = 1.0 + 0.4 * l.next_f32();
        }
    }
    p.sim_eval.w.iter_mut().for_each(|w| *w *= 3.0);
    // SGR graph biases shifted up, so that fewer ReLU units sit near their kink
    if let Reasoning::Sgr(steps) = &mut p.reasoning {
        steps.iter_mut().for_each(|st| st.graph.b.iter_mut().for_each(|b| *b += 0.3));
    }
    p.map(F::from)
}

/// Official state-dict names of the trainable tensors, for the messages.
fn trainable_names(p: &Params<F>) -> Vec<String> {
    sgraf::train::grads::trainable_keys(&p.map(|v| v as f32))
}

/// Coordinates sampled per parameter tensor of the whole model.
const WHOLE_SAMPLES: usize = 12;

/// The whole forward–backward ([`sgraf::cpu::train::forward_backward`],
/// instantiated for `f64`) of a tiny model, with dropout in train mode (the
/// masks come from a seeded generator, so every evaluation draws the same
/// ones). Checked: the input features, every trainable tensor (a sample of
/// [`WHOLE_SAMPLES`] coordinates each; the word embedding on the rows the
/// captions use) and the zero gradient of the unused embedding rows. The
/// paths run through the whole network (image encoder, VisualSA with
/// train-mode BatchNorm, attention, similarity, SGR/SAF with its per-caption
/// BatchNorm, head, loss; word dropout, GRU, TextSA).
fn whole_model(module: Module, mode: Mode, dropout: f32) {
    let p = tiny_model(module, 21);
    let mut l = Lcg(22);
    let n = LENGTHS.len();
    let images = rnd(&mut l, n * N_REGIONS * p.cfg.img_dim, 1.0);
    let captions: Vec<Vec<u32>> = LENGTHS
        .iter()
        .map(|&len| (0..len).map(|k| if k == 0 { 1 } else { 3 + (l.next_f32().abs() * 7.0) as u32 }).collect())
        .collect();
    let opts = sgraf::cpu::train::Options { mode, dropout, input_grad: true, ..Default::default() };
    let run = |p: &Params<F>, images: &[F]| {
        sgraf::cpu::train::forward_backward(p, images, &captions, &opts, &mut Rng(5)).expect("forward_backward")
    };
    let base = run(&p, &images);
    println!("{module:?} {mode:?} dropout {dropout}: loss {}", base.loss);
    assert!(base.loss > 0.0, "the check needs active hinges");
    // central differences are valid where the hardest negatives do not change within ±h
    let choice = |fb: &sgraf::cpu::train::ForwardBackward<F>| {
        let t = sgraf::cpu::loss::forward(&fb.sims, n, sgraf::cpu::loss::MARGIN as F);
        (t.hardest_caption, t.hardest_image)
    };
    let base_choice = choice(&base);
    // a change of hardest negative is a kink: NaN makes `fd_with` skip the coordinate
    let loss_at = |p: &Params<F>, images: &[F]| {
        let fb = run(p, images);
        if choice(&fb) != base_choice {
            return F::NAN;
        }
        fb.loss
    };
    let what = format!("{module:?} {mode:?}");
    let dimages = base.dimages.clone().expect("input grad");
    let mut worst = fd_with(&format!("{what} input images"), &images, &dimages, &WHOLE, &|x| loss_at(&p, x));
    // the rows of the words the captions use
    let used: Vec<usize> =
        (0..p.cfg.vocab).filter(|&w| captions.iter().flatten().any(|&id| id as usize == w)).collect();
    let dw = p.cfg.word_dim;
    let rows = |t: &[F]| -> Vec<F> { used.iter().flat_map(|&w| t[w * dw..(w + 1) * dw].to_vec()).collect() };
    let (table, dtable) = (rows(&p.embed), rows(&base.grads.embed));
    let e = fd_with(&format!("{what} txt_enc.embed.weight (used rows)"), &table, &dtable, &WHOLE, &|x| {
        let mut q = p.clone();
        for (k, &w) in used.iter().enumerate() {
            q.embed[w * dw..(w + 1) * dw].copy_from_slice(&x[k * dw..(k + 1) * dw]);
        }
        loss_at(&q, &images)
    });
    worst = worst.max(e);
    // and the rows no caption uses get exactly zero
    let unused = (0..p.cfg.vocab).filter(|w| !used.contains(w));
    for w in unused {
        assert!(
            base.grads.embed[w * dw..(w + 1) * dw].iter().all(|&g| g == 0.0),
            "embed row {w} is unused but has a gradient"
        );
    }
    // every other trainable tensor, WHOLE_SAMPLES coordinates each
    let names = trainable_names(&p);
    let mut grads = base.grads.clone();
    let analytic: Vec<Vec<F>> = trainable_mut(&mut grads).into_iter().map(|t| t.to_vec()).collect();
    for (k, name) in names.iter().enumerate() {
        if name.ends_with("embed.weight") {
            continue;
        }
        let x0 = trainable_mut(&mut p.clone()).swap_remove(k).to_vec();
        // a sample of the coordinates, as a tensor of their own
        let mut lcg = Lcg(k as u64 * 31 + 7);
        let mut idx: Vec<usize> = if x0.len() <= WHOLE_SAMPLES {
            (0..x0.len()).collect()
        } else {
            (0..WHOLE_SAMPLES).map(|_| ((lcg.next_f32() + 1.0) * 0.5 * x0.len() as f32) as usize % x0.len()).collect()
        };
        idx.sort_unstable();
        idx.dedup(); // each sampled coordinate written once below
        let xs: Vec<F> = idx.iter().map(|&i| x0[i]).collect();
        let an: Vec<F> = idx.iter().map(|&i| analytic[k][i]).collect();
        // zero by construction: the whole tensor, not only the sample
        if analytic[k].iter().all(|&g| g == 0.0) {
            assert!(an.iter().all(|&g| g == 0.0));
        }
        let e = fd_with(&format!("{what} {name}"), &xs, &an, &WHOLE, &|x| {
            let mut q = p.clone();
            let t = trainable_mut(&mut q).swap_remove(k);
            for (&i, &v) in idx.iter().zip(x) {
                t[i] = v;
            }
            loss_at(&q, &images)
        });
        worst = worst.max(e);
    }
    println!("{what}: largest relative error {worst:.1e}");
}

#[test]
fn whole_sgr_train_with_dropout() {
    whole_model(Module::Sgr { steps: 3 }, Mode::Train, 0.4);
}
#[test]
fn whole_sgr_eval() {
    whole_model(Module::Sgr { steps: 3 }, Mode::Eval, 0.0);
}
#[test]
fn whole_saf_train_with_dropout() {
    whole_model(Module::Saf, Mode::Train, 0.4);
}
#[test]
fn whole_saf_eval() {
    whole_model(Module::Saf, Mode::Eval, 0.0);
}
