//! Bidirectional hardest-negative triplet loss (spec §8, VSE++ "max violation"):
//! for the training score matrix `s [B, B]` (row = image, column = caption,
//! positives on the diagonal, margin m = 0.2)
//!
//! `loss = Σ_i max_{j≠i} [m + s[i,j] − s[i,i]]₊ + Σ_j max_{i≠j} [m + s[i,j] − s[j,j]]₊`,
//!
//! a SUM over the batch. Duplicate images in a batch are still negatives.
//!
//! Ties: as the official `cost.max(dim)` (whose gradient goes to the index it
//! returns), the hardest negative is the *first* maximum in index order; the
//! masked diagonal (cost 0) takes part in the maximum like any other entry, so
//! a row whose every cost is 0 gets no gradient. A hinge exactly at 0 passes no
//! gradient.

use super::Real;

/// Margin of the official code.
pub const MARGIN: f32 = 0.2;

/// Which negatives the loss sums (official `--max_violation`, on by default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Negatives {
    /// The hardest negative of every query (official default, VSE++ "max violation").
    #[default]
    Hardest,
    /// Every violating negative (official `--max_violation` flag given: the sum of both cost matrices).
    All,
}

/// The loss and which entries it picked.
#[derive(Clone, Debug, PartialEq)]
pub struct TripletLoss<T = f32> {
    pub loss: T,
    pub hardest_caption: Vec<usize>, // [B] per image i: argmax_j of C_s[i, ·]
    pub cost_s: Vec<T>,              // [B] max_j C_s[i, j]
    pub hardest_image: Vec<usize>,   // [B] per caption j: argmax_i of C_im[·, j]
    pub cost_im: Vec<T>,             // [B] max_i C_im[i, j]
}

/// First index of the maximum (ties: the first, as `torch.max(dim)` returns).
fn first_argmax<T: Real>(x: impl Iterator<Item = T>) -> (usize, T) {
    let mut best = (0, T::NEG_INFINITY);
    for (i, v) in x.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best
}

/// `sims [B, B]` → loss with the hardest negatives.
pub fn forward<T: Real>(sims: &[T], b: usize, margin: T) -> TripletLoss<T> {
    assert_eq!(sims.len(), b * b, "loss::forward: sims must be [B, B]");
    let s = |i: usize, j: usize| sims[i * b + j];
    // C_s[i, j] = [m + s[i,j] − s[i,i]]₊, diagonal 0 (image i as query)
    let c_s = |i: usize, j: usize| if i == j { T::ZERO } else { (margin + s(i, j) - s(i, i)).max(T::ZERO) };
    // C_im[i, j] = [m + s[i,j] − s[j,j]]₊, diagonal 0 (caption j as query)
    let c_im = |i: usize, j: usize| if i == j { T::ZERO } else { (margin + s(i, j) - s(j, j)).max(T::ZERO) };
    let (mut hardest_caption, mut cost_s, mut hardest_image, mut cost_im) = (vec![], vec![], vec![], vec![]);
    for i in 0..b {
        let (j, v) = first_argmax((0..b).map(|j| c_s(i, j)));
        hardest_caption.push(j);
        cost_s.push(v);
    }
    for j in 0..b {
        let (i, v) = first_argmax((0..b).map(|i| c_im(i, j)));
        hardest_image.push(i);
        cost_im.push(v);
    }
    let loss = T::from_f64(cost_s.iter().chain(&cost_im).map(|&v| v.to_f64()).sum::<f64>());
    TripletLoss { loss, hardest_caption, cost_s, hardest_image, cost_im }
}

/// Backward of [`forward`]: `dsims [B, B]` (overwritten) for `dloss = 1`.
pub fn backward<T: Real>(l: &TripletLoss<T>, b: usize) -> Vec<T> {
    let mut d = vec![T::ZERO; b * b]; // [B, B]
    for i in 0..b {
        if l.cost_s[i] > T::ZERO {
            d[i * b + l.hardest_caption[i]] += T::ONE;
            d[i * b + i] -= T::ONE;
        }
    }
    for j in 0..b {
        if l.cost_im[j] > T::ZERO {
            d[l.hardest_image[j] * b + j] += T::ONE;
            d[j * b + j] -= T::ONE;
        }
    }
    d
}

/// The loss and `dsims [B, B]` (for `dloss = 1`) with either form of negatives.
pub fn loss_and_grad<T: Real>(sims: &[T], b: usize, margin: T, negatives: Negatives) -> (T, Vec<T>) {
    match negatives {
        Negatives::Hardest => {
            let l = forward(sims, b, margin);
            let d = backward(&l, b);
            (l.loss, d)
        }
        Negatives::All => all_negatives(sims, b, margin),
    }
}

/// Sum of every entry of both cost matrices (`max_violation` off) and its gradient `dsims [B, B]`.
pub fn all_negatives<T: Real>(sims: &[T], b: usize, margin: T) -> (T, Vec<T>) {
    assert_eq!(sims.len(), b * b, "loss::all_negatives: sims must be [B, B]");
    let mut d = vec![T::ZERO; b * b]; // [B, B]
    let mut loss = 0.0f64;
    for i in 0..b {
        for j in 0..b {
            if i == j {
                continue;
            }
            let c_s = margin + sims[i * b + j] - sims[i * b + i]; // image i as query
            if c_s > T::ZERO {
                loss += c_s.to_f64();
                d[i * b + j] += T::ONE;
                d[i * b + i] -= T::ONE;
            }
            let c_im = margin + sims[i * b + j] - sims[j * b + j]; // caption j as query
            if c_im > T::ZERO {
                loss += c_im.to_f64();
                d[i * b + j] += T::ONE;
                d[j * b + j] -= T::ONE;
            }
        }
    }
    (T::from_f64(loss), d)
}
