//! Retrieval metrics of the official `evaluation.py` (spec §10.3–10.4) from a
//! score matrix `sims` `[n_images, n_captions]` (row-major, row = image);
//! caption `k` describes image `k / im_div`.
//!
//! * `i2t` (sentence retrieval): for image `i`, the rank is the best position
//!   among its captions `im_div·i … im_div·i + im_div − 1` in its row sorted by
//!   decreasing score.
//! * `t2i` (image retrieval): for caption `k`, the position of image
//!   `k / im_div` in its column sorted by decreasing score.
//!
//! **Ties.** The official code ranks with `numpy.argsort(scores)[::-1]`: an
//! ascending sort, reversed, so among equal scores the candidate with the
//! larger index comes first. NumPy's default sort is stable on short arrays
//! (insertion sort) and implementation-defined on long ones; here it is
//! always the stable order: the 0-based position of candidate `j` is
//! `#{k : s_k > s_j} + #{k > j : s_k = s_j}`. Ties are not resolved in favour
//! of the ground truth, so a collapsed model (all scores equal) scores near
//! chance, not 100%. For real-valued model scores ties do not occur.
//!
//! Then `R@K = 100 · #(rank < K) / #queries` (K = 1, 5, 10),
//! `medr = floor(median(rank)) + 1` (NumPy median: mean of the two middle
//! values for an even count), `meanr = mean(rank) + 1`, and
//! `rsum = R@1 + R@5 + R@10 (i2t) + R@1 + R@5 + R@10 (t2i)`.

use serde::{Deserialize, Serialize};

use crate::error::{Result, SgrafError};

/// Recall metrics of one direction. Serialised as `[r1, r5, r10, medr, meanr]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(into = "[f64; 5]", from = "[f64; 5]")]
pub struct Recall {
    /// R@1 in percent.
    pub r1: f64,
    /// R@5 in percent.
    pub r5: f64,
    /// R@10 in percent.
    pub r10: f64,
    /// Median rank, 1-based: `floor(median(rank)) + 1`.
    pub medr: f64,
    /// Mean rank, 1-based: `mean(rank) + 1`.
    pub meanr: f64,
}

impl Recall {
    /// `R@1 + R@5 + R@10`.
    pub fn sum(&self) -> f64 {
        self.r1 + self.r5 + self.r10
    }

    /// Metrics of 0-based ranks (one per query).
    pub fn from_ranks(ranks: &[usize]) -> Recall {
        let n = ranks.len().max(1) as f64;
        let recall_at = |k: usize| 100.0 * ranks.iter().filter(|&&r| r < k).count() as f64 / n;
        let mut sorted = ranks.to_vec();
        sorted.sort_unstable();
        let median = match sorted.len() {
            0 => 0.0,
            m if m % 2 == 1 => sorted[m / 2] as f64,
            m => (sorted[m / 2 - 1] as f64 + sorted[m / 2] as f64) / 2.0,
        };
        let mean = ranks.iter().map(|&r| r as f64).sum::<f64>() / n;
        Recall { r1: recall_at(1), r5: recall_at(5), r10: recall_at(10), medr: median.floor() + 1.0, meanr: mean + 1.0 }
    }

    /// Element-wise mean of several results (used by the 5-fold protocol).
    fn mean(all: &[Recall]) -> Recall {
        let n = all.len() as f64;
        let avg = |f: fn(&Recall) -> f64| all.iter().map(f).sum::<f64>() / n;
        Recall {
            r1: avg(|r| r.r1),
            r5: avg(|r| r.r5),
            r10: avg(|r| r.r10),
            medr: avg(|r| r.medr),
            meanr: avg(|r| r.meanr),
        }
    }
}

impl From<Recall> for [f64; 5] {
    fn from(r: Recall) -> Self {
        [r.r1, r.r5, r.r10, r.medr, r.meanr]
    }
}

impl From<[f64; 5]> for Recall {
    fn from(a: [f64; 5]) -> Self {
        Recall { r1: a[0], r5: a[1], r10: a[2], medr: a[3], meanr: a[4] }
    }
}

/// Both directions and their sum. Serialised as
/// `{"i2t": [r1, r5, r10, medr, meanr], "t2i": [...], "rsum": x}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub i2t: Recall,
    pub t2i: Recall,
    pub rsum: f64,
}

/// A block of a row-major matrix: `rows × cols` starting at `(r0, c0)`.
#[derive(Clone, Copy)]
struct Block<'a> {
    data: &'a [f32],
    stride: usize,
    r0: usize,
    c0: usize,
    rows: usize,
    cols: usize,
}

impl Block<'_> {
    fn row(&self, i: usize) -> &[f32] {
        let start = (self.r0 + i) * self.stride + self.c0;
        &self.data[start..start + self.cols]
    }
}

/// Checks the matrix size, the caption ↔ image layout and that no score is NaN.
fn check(sims: &[f32], n_images: usize, n_captions: usize, im_div: usize) -> Result<()> {
    if n_images == 0 || n_captions == 0 {
        return Err(SgrafError::Input(format!("empty score matrix ({n_images} images × {n_captions} captions)")));
    }
    if n_images.checked_mul(n_captions) != Some(sims.len()) {
        return Err(SgrafError::Input(format!(
            "score matrix has {} values but {n_images} images × {n_captions} captions need {}",
            sims.len(),
            n_images.saturating_mul(n_captions)
        )));
    }
    if im_div == 0 || n_images.checked_mul(im_div) != Some(n_captions) {
        return Err(SgrafError::Input(format!(
            "{n_captions} captions do not make {im_div} per image for {n_images} images \
             (caption k must describe image k / {im_div})"
        )));
    }
    if let Some(p) = sims.iter().position(|v| v.is_nan()) {
        return Err(SgrafError::Input(format!(
            "score matrix holds NaN at image {}, caption {}",
            p / n_captions,
            p % n_captions
        )));
    }
    Ok(())
}

/// Image → text ranks of a block whose captions are `im_div` per image.
fn i2t_ranks(b: Block, im_div: usize) -> Vec<usize> {
    (0..b.rows)
        .map(|i| {
            let row = b.row(i);
            // Best position among the image's captions.
            (im_div * i..im_div * (i + 1)).map(|j| position(row, j)).min().unwrap_or(0)
        })
        .collect()
}

/// 0-based position of candidate `j` in `argsort(scores)[::-1]` with a stable
/// ascending sort: higher scores first, equal scores by decreasing index.
fn position(scores: &[f32], j: usize) -> usize {
    let t = scores[j];
    scores.iter().enumerate().filter(|&(k, &s)| s > t || (s == t && k > j)).count()
}

/// Candidates in ranked order, best first: `argsort(scores)[::-1]` with a
/// stable ascending sort, so equal scores come by decreasing index (the
/// official tie rule, as in [`position`]). NaN scores rank last.
pub fn ranking(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (scores[a], scores[b]);
        match (x.is_nan(), y.is_nan()) {
            (true, true) => b.cmp(&a),
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            (false, false) => y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal).then(b.cmp(&a)),
        }
    });
    order
}

/// Text → image ranks of a block (one per caption).
fn t2i_ranks(b: Block, im_div: usize) -> Vec<usize> {
    let mut ranks = vec![0usize; b.cols];
    for (k, rank) in ranks.iter_mut().enumerate() {
        let truth = k / im_div;
        let t = b.row(truth)[k];
        *rank = (0..b.rows)
            .filter(|&i| {
                let s = b.row(i)[k];
                s > t || (s == t && i > truth)
            })
            .count();
    }
    ranks
}

fn metrics_of_block(b: Block, im_div: usize) -> Metrics {
    let i2t = Recall::from_ranks(&i2t_ranks(b, im_div));
    let t2i = Recall::from_ranks(&t2i_ranks(b, im_div));
    Metrics { i2t, t2i, rsum: i2t.sum() + t2i.sum() }
}

fn whole(sims: &[f32], n_images: usize, n_captions: usize) -> Block<'_> {
    Block { data: sims, stride: n_captions, r0: 0, c0: 0, rows: n_images, cols: n_captions }
}

/// Image → text recall (sentence retrieval) of `sims` `[n_images, n_captions]`.
pub fn i2t(sims: &[f32], n_images: usize, n_captions: usize, im_div: usize) -> Result<Recall> {
    check(sims, n_images, n_captions, im_div)?;
    Ok(Recall::from_ranks(&i2t_ranks(whole(sims, n_images, n_captions), im_div)))
}

/// Text → image recall (image retrieval) of `sims` `[n_images, n_captions]`.
pub fn t2i(sims: &[f32], n_images: usize, n_captions: usize, im_div: usize) -> Result<Recall> {
    check(sims, n_images, n_captions, im_div)?;
    Ok(Recall::from_ranks(&t2i_ranks(whole(sims, n_images, n_captions), im_div)))
}

/// Full evaluation of `sims` `[n_images, n_captions]` (Flickr30K test,
/// COCO 5K): both directions and rsum.
pub fn evaluate(sims: &[f32], n_images: usize, n_captions: usize, im_div: usize) -> Result<Metrics> {
    check(sims, n_images, n_captions, im_div)?;
    Ok(metrics_of_block(whole(sims, n_images, n_captions), im_div))
}

/// The COCO 1K protocol: the matrix is cut into 5 consecutive folds of
/// `n_images / 5` images and their captions (for COCO `testall`, 5 000 × 25 000:
/// fold `f` = images `1000f … 1000f+999`, captions `5000f … 5000f+4999`);
/// metrics are computed on each diagonal block and every number, rsum
/// included, is averaged over the folds. This is the true mean rsum; the
/// official 5-fold printout labels `6 × mean i2t recall` as rsum (spec §10.4).
pub fn fold5(sims: &[f32], n_images: usize, n_captions: usize) -> Result<Metrics> {
    Ok(fold5_each(sims, n_images, n_captions)?.1)
}

/// As [`fold5`], also returning the metrics of each fold.
pub fn fold5_each(sims: &[f32], n_images: usize, n_captions: usize) -> Result<(Vec<Metrics>, Metrics)> {
    if n_images == 0 || !n_images.is_multiple_of(5) || !n_captions.is_multiple_of(n_images) {
        return Err(SgrafError::Input(format!(
            "5-fold evaluation needs a number of images divisible by 5 and the same number of \
             captions per image; got {n_images} images and {n_captions} captions \
             (COCO 1K uses testall: 5000 images, 25000 captions)"
        )));
    }
    let im_div = n_captions / n_images;
    check(sims, n_images, n_captions, im_div)?;
    let (rows, cols) = (n_images / 5, n_captions / 5);
    let folds: Vec<Metrics> = (0..5)
        .map(|f| {
            let block = Block { data: sims, stride: n_captions, r0: f * rows, c0: f * cols, rows, cols };
            metrics_of_block(block, im_div)
        })
        .collect();
    let i2t: Vec<Recall> = folds.iter().map(|m| m.i2t).collect();
    let t2i: Vec<Recall> = folds.iter().map(|m| m.t2i).collect();
    let mean = Metrics {
        i2t: Recall::mean(&i2t),
        t2i: Recall::mean(&t2i),
        rsum: folds.iter().map(|m| m.rsum).sum::<f64>() / 5.0,
    };
    Ok((folds, mean))
}

/// The SGRAF ensemble (spec §10.6): the element-wise mean of the SGR and SAF
/// score matrices of the same split, `(a + b) / 2`.
pub fn ensemble(a: &[f32], b: &[f32]) -> Result<Vec<f32>> {
    if a.len() != b.len() {
        return Err(SgrafError::Input(format!("cannot average score matrices of {} and {} values", a.len(), b.len())));
    }
    Ok(a.iter().zip(b).map(|(&x, &y)| 0.5 * (x + y)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    fn assert_recall(got: Recall, want: [f64; 5], what: &str) {
        let g: [f64; 5] = got.into();
        let names = ["R@1", "R@5", "R@10", "medr", "meanr"];
        for k in 0..5 {
            assert!(close(g[k], want[k]), "{what} {}: got {}, want {}", names[k], g[k], want[k]);
        }
    }

    /// Identity-like scores plus chosen rank positions: builds an
    /// `[n, n·d]` matrix where the ground truth of query q sits at the given rank.
    fn one_per_image(n: usize, gt_rank: &[usize]) -> Vec<f32> {
        // Row i: caption i scores so that exactly gt_rank[i] other captions beat it.
        let mut s = vec![0.0f32; n * n];
        for i in 0..n {
            for j in 0..n {
                s[i * n + j] = if j == i { 100.0 } else { -(j as f32) - 1.0 };
            }
            // Raise gt_rank[i] other captions above the truth.
            let mut raised = 0;
            for j in 0..n {
                if raised == gt_rank[i] {
                    break;
                }
                if j != i {
                    s[i * n + j] = 200.0 + j as f32;
                    raised += 1;
                }
            }
        }
        s
    }

    #[test]
    fn one_caption_per_image_i2t() {
        // 4 images × 4 captions, im_div 1: i2t ranks 0, 1, 3, 0.
        let s = one_per_image(4, &[0, 1, 3, 0]);
        let r = i2t(&s, 4, 4, 1).unwrap();
        // R@1 = 2/4, R@5 = R@10 = 4/4; median of [0,0,1,3] = 0.5 -> floor 0 -> 1;
        // mean = 1.0 -> 2.0.
        assert_recall(r, [50.0, 100.0, 100.0, 1.0, 2.0], "i2t");
    }

    #[test]
    fn hand_checked_3x3_both_directions() {
        // rows = images, columns = captions (im_div 1).
        #[rustfmt::skip]
        let s = [
            0.9, 0.1, 0.8,   // image 0: caption 0 ranked first -> rank 0
            0.7, 0.2, 0.3,   // image 1: caption 1 (0.2) beaten by 0.7, 0.3 -> rank 2
            0.5, 0.6, 0.4,   // image 2: caption 2 (0.4) beaten by 0.5, 0.6 -> rank 2
        ];
        let m = evaluate(&s, 3, 3, 1).unwrap();
        // i2t ranks [0, 2, 2]: R@1 33.3.., R@5 100, medr 3, meanr 1 + 4/3.
        assert_recall(m.i2t, [100.0 / 3.0, 100.0, 100.0, 3.0, 1.0 + 4.0 / 3.0], "i2t");
        // t2i, column k vs image k: col 0 [0.9,0.7,0.5] -> 0; col 1 [0.1,0.2,0.6] -> 1;
        // col 2 [0.8,0.3,0.4] -> image 2 (0.4) beaten by 0.8 -> 1. Ranks [0,1,1].
        assert_recall(m.t2i, [100.0 / 3.0, 100.0, 100.0, 2.0, 1.0 + 2.0 / 3.0], "t2i");
        assert!(close(m.rsum, 100.0 / 3.0 + 200.0 + 100.0 / 3.0 + 200.0), "rsum {}", m.rsum);
    }

    #[test]
    fn five_captions_per_image() {
        // 2 images × 10 captions (captions 0-4 -> image 0, 5-9 -> image 1).
        #[rustfmt::skip]
        let s = [
            // image 0: its captions 0..5 score 0.1..0.5; caption 7 scores 0.45,
            // caption 8 0.9 -> best truth 0.5 is beaten by 0.9 only: rank 1.
            0.1, 0.2, 0.3, 0.4, 0.5,   0.0, 0.0, 0.45, 0.9, 0.0,
            // image 1: its captions score 0.6..1.0, everything else lower: rank 0.
            0.0, 0.0, 0.0, 0.0, 0.0,   0.6, 0.7, 0.8, 0.9, 1.0,
        ];
        let m = evaluate(&s, 2, 10, 5).unwrap();
        // i2t ranks [1, 0]: R@1 50, R@5 100, median 0.5 -> 1, mean 0.5 -> 1.5.
        assert_recall(m.i2t, [50.0, 100.0, 100.0, 1.0, 1.5], "i2t");
        // t2i: captions 0-4 vs image 0: image 1 scores 0 < 0.1..0.5 -> rank 0.
        // captions 5,6,9: image 1 wins (0 < 0.6, 0.7, 1.0) -> 0; caption 7:
        // image 0 has 0.45 < 0.8 -> 0; caption 8: image 0 has 0.9, image 1 0.9 ->
        // a tie, not strictly greater -> rank 0.
        assert_recall(m.t2i, [100.0, 100.0, 100.0, 1.0, 1.0], "t2i");
    }

    #[test]
    fn ranking_is_descending_with_ties_by_decreasing_index() {
        let s = [0.5, 0.9, 0.5, 0.1, 0.9, f32::NAN];
        assert_eq!(ranking(&s), vec![4, 1, 2, 0, 3, 5]);
        for (pos, &j) in ranking(&s[..5]).iter().enumerate() {
            assert_eq!(position(&s[..5], j), pos);
        }
    }

    #[test]
    fn ties_follow_the_reversed_stable_argsort() {
        // All scores equal (a collapsed model): numpy's argsort(..)[::-1] lists
        // the candidates by decreasing index, so with 3 images × 15 captions the
        // i2t rank of image i is 14 − (5i + 4) (its last caption comes first):
        // ranks [10, 5, 0]; t2i rank of caption k is 2 − k/5: [2]*5 + [1]*5 + [0]*5.
        let s = vec![0.5f32; 3 * 15];
        let m = evaluate(&s, 3, 15, 5).unwrap();
        assert_eq!(i2t_ranks(whole(&s, 3, 15), 5), vec![10, 5, 0], "i2t ranks, all ties");
        assert_recall(m.i2t, [100.0 / 3.0, 100.0 / 3.0, 200.0 / 3.0, 6.0, 6.0], "i2t all ties");
        assert_recall(m.t2i, [100.0 / 3.0, 100.0, 100.0, 2.0, 2.0], "t2i all ties");
        // One strictly larger competitor and one tie with a smaller index.
        //   image 0 row: [1.0, 1.0, 2.0] -> argsort asc [0, 1, 2] reversed [2, 1, 0]: caption 0 at position 2
        let s = [1.0f32, 1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let r = i2t(&s, 3, 3, 1).unwrap();
        assert_eq!(i2t_ranks(whole(&s, 3, 3), 1), vec![2, 1, 0], "ranks with ties, got r = {r:?}");
    }

    #[test]
    fn recall_at_k_and_median_of_many_ranks() {
        // Ranks 0..20 (21 queries): R@1 1/21, R@5 5/21, R@10 10/21,
        // median 10 -> 11, mean 10 -> 11.
        let ranks: Vec<usize> = (0..21).collect();
        assert_recall(
            Recall::from_ranks(&ranks),
            [100.0 / 21.0, 500.0 / 21.0, 1000.0 / 21.0, 11.0, 11.0],
            "ranks 0..=20",
        );
        // Even count: median of [2, 3, 8, 9] = 5.5 -> floor 5 -> 6; mean 5.5 -> 6.5.
        assert_recall(Recall::from_ranks(&[9, 2, 8, 3]), [0.0, 50.0, 100.0, 6.0, 6.5], "even count");
    }

    /// A block of `m` images × `5m` captions (5 per image) in which the i2t
    /// rank of image i is `i2t_rank[i]` and the t2i rank of every caption of
    /// image j is `t2i_rank[j]`.
    ///
    /// The truths of image i score `t_i = 10 + i`. A cell (i, k) of a caption
    /// of image j ≠ i beats only its row when it scores `t_i + 0.5` with
    /// j > i (it stays below its column's truth `t_j`), and only its column
    /// when it scores `t_j + 0.5` with i > j (it stays below `t_i`). So
    /// `i2t_rank[i] <= 5 (m - 1 - i)` and `t2i_rank[j] <= m - 1 - j`.
    fn block(m: usize, i2t_rank: &[usize], t2i_rank: &[usize]) -> Vec<f32> {
        let n = 5 * m;
        let truth = |i: usize| 10.0 + i as f32;
        let mut s = vec![0.0f32; m * n]; // [m, 5m]
        for i in 0..m {
            for k in 5 * i..5 * i + 5 {
                s[i * n + k] = truth(i);
            }
            // Row-only competitors: the first i2t_rank[i] captions of later images.
            assert!(i2t_rank[i] <= 5 * (m - 1 - i), "i2t rank {} impossible for image {i}", i2t_rank[i]);
            for k in 5 * (i + 1)..5 * (i + 1) + i2t_rank[i] {
                s[i * n + k] = truth(i) + 0.5;
            }
        }
        for (j, &rank) in t2i_rank.iter().enumerate() {
            // Column-only competitors: the first `rank` later images.
            assert!(rank < m - j, "t2i rank {rank} impossible for image {j}");
            for i in j + 1..j + 1 + rank {
                for k in 5 * j..5 * j + 5 {
                    s[i * n + k] = truth(j) + 0.5;
                }
            }
        }
        s
    }

    #[test]
    fn fold5_averages_five_blocks() {
        // 5 folds of 4 images / 20 captions each, inside a 20 × 100 matrix
        // whose off-diagonal blocks score higher than anything (to prove they
        // are ignored).
        let m = 4;
        let (n_img, n_cap) = (5 * m, 25 * m);
        let mut sims = vec![1000.0f32; n_img * n_cap]; // [20, 100]
                                                       // Per fold: (i2t rank per image, t2i rank of each image's captions).
        let specs: [([usize; 4], [usize; 4]); 5] = [
            ([0, 0, 0, 0], [0, 0, 0, 0]),
            ([3, 2, 1, 0], [0, 0, 0, 0]),
            ([0, 0, 0, 0], [1, 1, 1, 0]),
            ([6, 0, 0, 0], [2, 0, 0, 0]),
            ([12, 0, 5, 0], [0, 2, 0, 0]),
        ];
        let mut expected = Vec::new();
        for (f, (i2t_r, t2i_r)) in specs.iter().enumerate() {
            let b = block(m, i2t_r, t2i_r);
            // The builder gives the ranks asked for.
            assert_eq!(i2t_ranks(whole(&b, m, 5 * m), 5), i2t_r.to_vec(), "fold {f} i2t ranks");
            let want_t2i: Vec<usize> = (0..5 * m).map(|k| t2i_r[k / 5]).collect();
            assert_eq!(t2i_ranks(whole(&b, m, 5 * m), 5), want_t2i, "fold {f} t2i ranks");
            expected.push(evaluate(&b, m, 5 * m, 5).unwrap());
            for i in 0..m {
                let dst = (f * m + i) * n_cap + f * 5 * m;
                sims[dst..dst + 5 * m].copy_from_slice(&b[i * 5 * m..(i + 1) * 5 * m]);
            }
        }
        let (folds, mean) = fold5_each(&sims, n_img, n_cap).unwrap();
        for f in 0..5 {
            assert_eq!(folds[f], expected[f], "fold {f}");
        }
        assert_recall(folds[0].i2t, [100.0, 100.0, 100.0, 1.0, 1.0], "fold 0 i2t");
        // Fold 1: i2t ranks [3,2,1,0] -> R@1 25, medr floor(1.5)+1 = 2, meanr 2.5.
        assert_recall(folds[1].i2t, [25.0, 100.0, 100.0, 2.0, 2.5], "fold 1 i2t");
        // Fold 2: t2i 15 captions at rank 1, 5 at 0 -> R@1 25, medr 2, meanr 1.75.
        assert_recall(folds[2].t2i, [25.0, 100.0, 100.0, 2.0, 1.75], "fold 2 t2i");
        // Fold 3: i2t [6,0,0,0] -> R@1 75, R@5 75, R@10 100, medr 1, meanr 2.5;
        // t2i: 5 captions at rank 2, 15 at 0 -> R@1 75, medr 1, meanr 1.5.
        assert_recall(folds[3].i2t, [75.0, 75.0, 100.0, 1.0, 2.5], "fold 3 i2t");
        assert_recall(folds[3].t2i, [75.0, 100.0, 100.0, 1.0, 1.5], "fold 3 t2i");
        // Fold 4: i2t [12,0,5,0] -> R@1 50, R@5 50, R@10 75,
        // median (0+5)/2 = 2.5 -> 3, mean 17/4 -> 5.25.
        assert_recall(folds[4].i2t, [50.0, 50.0, 75.0, 3.0, 5.25], "fold 4 i2t");
        // Means over the folds.
        assert!(close(mean.i2t.r1, 70.0), "mean i2t R@1 {}, want 70", mean.i2t.r1);
        assert!(close(mean.i2t.r10, 95.0), "mean i2t R@10 {}, want 95", mean.i2t.r10);
        assert!(close(mean.i2t.medr, 1.6), "mean i2t medr {}, want 1.6", mean.i2t.medr);
        assert!(close(mean.t2i.r1, 75.0), "mean t2i R@1 {}, want 75", mean.t2i.r1);
        let true_rsum = expected.iter().map(|m| m.rsum).sum::<f64>() / 5.0;
        assert!(close(mean.rsum, true_rsum), "rsum {} vs mean of fold rsums {}", mean.rsum, true_rsum);
        assert!(close(mean.rsum, mean.i2t.sum() + mean.t2i.sum()), "rsum {} is not the sum of mean recalls", mean.rsum);
        // The official printout's "rsum" would be 6 × mean i2t average recall.
        assert!(!close(mean.rsum, 2.0 * mean.i2t.sum()), "test should separate the true rsum from the buggy one");
        assert_eq!(fold5(&sims, n_img, n_cap).unwrap(), mean);
    }

    #[test]
    fn size_errors() {
        let e = evaluate(&[0.0; 5], 2, 3, 1).unwrap_err().to_string();
        assert!(e.contains("5 values") && e.contains("6"), "{e}");
        let e = evaluate(&[0.0; 8], 2, 4, 5).unwrap_err().to_string();
        assert!(e.contains("4 captions") && e.contains("5 per image"), "{e}");
        let e = fold5(&[0.0; 4 * 20], 4, 20).unwrap_err().to_string();
        assert!(e.contains("divisible by 5") && e.contains("4 images"), "{e}");
        let mut s = vec![0.0f32; 9];
        s[5] = f32::NAN;
        let e = evaluate(&s, 3, 3, 1).unwrap_err().to_string();
        assert!(e.contains("NaN") && e.contains("image 1") && e.contains("caption 2"), "{e}");
        let e = ensemble(&[0.0; 3], &[0.0; 4]).unwrap_err().to_string();
        assert!(e.contains("3") && e.contains("4"), "{e}");
    }

    #[test]
    fn ensemble_averages() {
        let a = [1.0f32, 2.0, -3.0];
        let b = [3.0f32, 2.0, 1.0];
        assert_eq!(ensemble(&a, &b).unwrap(), vec![2.0, 2.0, -1.0]);
    }

    #[test]
    fn serialises_as_arrays() {
        let m = Metrics {
            i2t: Recall { r1: 1.0, r5: 2.0, r10: 3.0, medr: 4.0, meanr: 5.5 },
            t2i: Recall { r1: 6.0, r5: 7.0, r10: 8.0, medr: 1.0, meanr: 2.0 },
            rsum: 27.0,
        };
        let j = serde_json::to_string(&m).unwrap();
        assert_eq!(j, r#"{"i2t":[1.0,2.0,3.0,4.0,5.5],"t2i":[6.0,7.0,8.0,1.0,2.0],"rsum":27.0}"#);
        let back: Metrics = serde_json::from_str(&j).unwrap();
        assert_eq!(back, m);
    }
}
