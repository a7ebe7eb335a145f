//! Attention on the CPU backend, reading the projections where `to_q`, `to_k` and `to_v` wrote
//! them (`[batch, seq, heads·dim]`: a head is a band of columns) and writing the output where
//! `to_out` reads it, so the heads are never split into or merged from separate tensors. Per head
//! and block of queries: the scores against every key in one GEMM, a vectorised exponential for
//! the softmax, then the weighted values in a second GEMM with the keys as the inner dimension.
//! The UNet's self-attention at 64×64 latents (4096 tokens, head size 40) is where this matters;
//! the CLIP text encoder's causal self-attention (77 tokens) runs here too.

use rayon::prelude::*;

use super::math::exp_le0;
use super::{SharedMut, Strided, gemm_f32};

/// Most queries per block. Long key sequences take whole blocks (fewer repacks of the keys and
/// values per head; the `QUERY_BLOCK × keys` scores stay in the last-level cache), short ones a
/// quarter (more tasks to share out).
const QUERY_BLOCK: usize = 256;
/// Keys from which a block takes `QUERY_BLOCK` queries.
const LONG_KEYS: usize = 1024;

/// Sizes of an attention call over `[batch, seq, heads·dim]` tensors.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Batch.
    pub batch: usize,
    /// Heads.
    pub heads: usize,
    /// Queries per head.
    pub queries: usize,
    /// Keys (and values) per head.
    pub keys: usize,
    /// Query and key size per head.
    pub dim: usize,
    /// Value size per head.
    pub value_dim: usize,
    /// Query `i` sees only keys `0..=i` (torch's `is_causal`, the mask aligned to the top left).
    pub causal: bool,
}

/// `softmax(q kᵀ · scale) v` per batch and head, for `q` `[batch, queries, heads·dim]`, `k`
/// `[batch, keys, heads·dim]` and `v` `[batch, keys, heads·value_dim]`; returns
/// `[batch, queries, heads·value_dim]`. All row-major.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], shape: Shape, scale: f32) -> Vec<f32> {
    let Shape {
        batch,
        heads,
        queries,
        keys,
        dim,
        value_dim,
        causal,
    } = shape;
    assert_eq!(q.len(), batch * queries * heads * dim, "query size");
    assert_eq!(k.len(), batch * keys * heads * dim, "key size");
    assert_eq!(v.len(), batch * keys * heads * value_dim, "value size");
    let (qk_stride, v_stride) = (heads * dim, heads * value_dim);
    let fill = |o: SharedMut| {
        let block_rows = if keys >= LONG_KEYS {
            QUERY_BLOCK
        } else {
            QUERY_BLOCK / 4
        };
        let blocks = queries.div_ceil(block_rows);
        (0..batch * heads * blocks).into_par_iter().for_each_init(
            || vec![0f32; block_rows * keys],
            |scores, task| {
                let (b, h, block) = (
                    task / (heads * blocks),
                    (task / blocks) % heads,
                    task % blocks,
                );
                let first = block * block_rows;
                let rows = block_rows.min(queries - first);
                let scores = &mut scores[..rows * keys];
                let q = &q[(b * queries + first) * qk_stride + h * dim..];
                let k = &k[b * keys * qk_stride + h * dim..];
                let v = &v[b * keys * v_stride + h * value_dim..];
                // SAFETY: the query block is `rows` rows of `dim` columns `qk_stride` apart
                // inside `q`; the keys (read transposed) `keys` rows of `dim` columns inside `k`;
                // the scores are `rows × keys` contiguous.
                unsafe {
                    gemm_f32(
                        scores.as_mut_ptr(),
                        keys as isize,
                        Strided::rows(q, qk_stride),
                        Strided::transposed(k, qk_stride),
                        (rows, keys, dim),
                        (false, scale),
                        gemm::Parallelism::None,
                    );
                }
                let mut sums = [0f32; QUERY_BLOCK];
                for (r, (row, sum)) in scores.chunks_mut(keys).zip(sums.iter_mut()).enumerate() {
                    // Masked scores are -inf, whose exponential is 0; the diagonal is always kept.
                    if causal {
                        row.iter_mut()
                            .skip(first + r + 1)
                            .for_each(|x| *x = f32::NEG_INFINITY);
                    }
                    *sum = softmax_numerators(row);
                }
                // SAFETY: this task's output block is `rows` rows of `value_dim` columns,
                // `v_stride` apart, starting at its (batch, first query, head) offset; no other
                // task touches it. The values are `keys` rows of `value_dim` columns inside `v`.
                unsafe {
                    let dst = o.at((b * queries + first) * v_stride + h * value_dim);
                    gemm_f32(
                        dst,
                        v_stride as isize,
                        Strided::rows(scores, keys),
                        Strided::rows(v, v_stride),
                        (rows, value_dim, keys),
                        (false, 1.0),
                        gemm::Parallelism::None,
                    );
                    for (r, sum) in sums.iter().take(rows).enumerate() {
                        let inv = 1.0 / sum;
                        let row = std::slice::from_raw_parts_mut(dst.add(r * v_stride), value_dim);
                        row.iter_mut().for_each(|x| *x *= inv);
                    }
                }
            },
        );
    };
    // SAFETY: the tasks write every (batch, query, head) block of the output once: its values'
    // GEMM without reading it, then the normalisation.
    unsafe { super::fresh(batch * queries * v_stride, fill) }
}

/// Replaces every score `x` of a row by `exp(x - max)` and returns their sum.
fn softmax_numerators(row: &mut [f32]) -> f32 {
    super::math::vectorised!(softmax_numerators_portable(row))
}

/// Lanes of the reductions: separate accumulators let the compiler vectorise them.
const LANES: usize = 16;

/// Written so that the compiler vectorises it: no branches, reductions over `LANES` independent
/// accumulators; the exponentials are summed as they are written.
#[inline(always)]
fn softmax_numerators_portable(row: &mut [f32]) -> f32 {
    let mut maxes = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for chunk in chunks {
        for (m, x) in maxes.iter_mut().zip(chunk) {
            *m = if *x > *m { *x } else { *m };
        }
    }
    let max = maxes.iter().copied().fold(tail, f32::max);
    let mut sums = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (s, x) in sums.iter_mut().zip(chunk) {
            *x = exp_le0(*x - max);
            *s += *x;
        }
    }
    let mut tail = 0f32;
    for x in chunks.into_remainder() {
        *x = exp_le0(*x - max);
        tail += *x;
    }
    sums.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(len: usize, seed: u64) -> Vec<f32> {
        crate::testing::uniform(len, seed, 2.0)
    }

    #[test]
    fn attention_matches_a_direct_f64_softmax() {
        // 130 queries (two full blocks and a partial one); long and short key sequences, and
        // causal self-attention (as many keys as queries).
        for (keys, causal) in [(1100, false), (77, false), (4, false), (130, true)] {
            let shape = Shape {
                batch: 2,
                heads: 3,
                queries: 130,
                keys,
                dim: 40,
                value_dim: 24,
                causal,
            };
            let (b, h, dim, vd) = (shape.batch, shape.heads, shape.dim, shape.value_dim);
            let q = fill(b * shape.queries * h * dim, 1);
            let k = fill(b * keys * h * dim, 2);
            let v = fill(b * keys * h * vd, 3);
            let scale = 1.0 / (dim as f32).sqrt();
            let got = attention(&q, &k, &v, shape, scale);
            let mut worst = 0f64;
            for bi in 0..b {
                for hi in 0..h {
                    for i in 0..shape.queries {
                        let qi = &q[(bi * shape.queries + i) * h * dim + hi * dim..][..dim];
                        let seen = if causal { i + 1 } else { keys };
                        let scores: Vec<f64> = (0..seen)
                            .map(|j| {
                                let kj = &k[(bi * keys + j) * h * dim + hi * dim..][..dim];
                                qi.iter()
                                    .zip(kj)
                                    .map(|(a, b)| *a as f64 * *b as f64)
                                    .sum::<f64>()
                                    * scale as f64
                            })
                            .collect();
                        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                        let total: f64 = weights.iter().sum();
                        for c in 0..vd {
                            let want: f64 = weights
                                .iter()
                                .enumerate()
                                .map(|(j, w)| w * v[(bi * keys + j) * h * vd + hi * vd + c] as f64)
                                .sum::<f64>()
                                / total;
                            let have = got[(bi * shape.queries + i) * h * vd + hi * vd + c] as f64;
                            worst = worst.max((have - want).abs());
                        }
                    }
                }
            }
            assert!(
                worst < 1e-5,
                "{keys} keys, causal {causal}: worst absolute error {worst:e}"
            );
        }
    }
}
