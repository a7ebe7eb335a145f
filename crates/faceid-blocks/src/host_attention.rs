//! Attention over long sequences on the CPU backend: per head and block of 64 queries, the
//! scores against every key in one GEMM, a vectorised exponential for the softmax, then the
//! weighted values in a second GEMM with the keys as the long inner dimension. This is what the
//! UNet's self-attention at 64×64 latents (4096 tokens, head size 40) spends its time on; the
//! generic kernel tiles the keys into short blocks and takes a scalar `exp`.

use rayon::prelude::*;

/// Queries per block: the score block (`QUERY_BLOCK × keys` floats) stays in L2.
const QUERY_BLOCK: usize = 64;

/// Shapes of a contiguous `[batch, heads, seq, dim]` attention call.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// `batch × heads`.
    pub heads: usize,
    /// Queries per head.
    pub queries: usize,
    /// Keys (and values) per head.
    pub keys: usize,
    /// Query and key size.
    pub dim: usize,
    /// Value size.
    pub value_dim: usize,
}

/// `softmax(q kᵀ · scale) v` for every head; inputs and output contiguous, row-major.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], shape: Shape, scale: f32) -> Vec<f32> {
    let Shape {
        heads,
        queries,
        keys,
        dim,
        value_dim,
    } = shape;
    assert_eq!(q.len(), heads * queries * dim, "query size");
    assert_eq!(k.len(), heads * keys * dim, "key size");
    assert_eq!(v.len(), heads * keys * value_dim, "value size");
    let mut out = vec![0f32; heads * queries * value_dim];
    let blocks_per_head = queries.div_ceil(QUERY_BLOCK);
    out.par_chunks_mut(queries * value_dim)
        .enumerate()
        .flat_map_iter(|(h, head_out)| {
            head_out
                .chunks_mut(QUERY_BLOCK * value_dim)
                .enumerate()
                .map(move |(block, o)| (h, block, o))
        })
        .for_each_init(
            || vec![0f32; QUERY_BLOCK * keys],
            |scores, (h, block, o)| {
                let first = block * QUERY_BLOCK;
                let rows = o.len() / value_dim;
                debug_assert!(block < blocks_per_head);
                let q = &q[(h * queries + first) * dim..(h * queries + first + rows) * dim];
                let k = &k[h * keys * dim..(h + 1) * keys * dim];
                let v = &v[h * keys * value_dim..(h + 1) * keys * value_dim];
                let scores = &mut scores[..rows * keys];
                // SAFETY: every pointer covers the matrix its strides describe (rows × keys
                // scores, rows × dim queries, keys × dim keys read transposed).
                unsafe {
                    gemm::gemm(
                        rows,
                        keys,
                        dim,
                        scores.as_mut_ptr(),
                        1,
                        keys as isize,
                        false,
                        q.as_ptr(),
                        1,
                        dim as isize,
                        k.as_ptr(),
                        dim as isize,
                        1,
                        0.0,
                        scale,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                let mut sums = [0f32; QUERY_BLOCK];
                for (row, sum) in scores.chunks_mut(keys).zip(sums.iter_mut()) {
                    *sum = softmax_numerators(row);
                }
                // SAFETY: rows × keys weights times keys × value_dim values into rows ×
                // value_dim outputs, all row-major.
                unsafe {
                    gemm::gemm(
                        rows,
                        value_dim,
                        keys,
                        o.as_mut_ptr(),
                        1,
                        value_dim as isize,
                        false,
                        scores.as_ptr(),
                        1,
                        keys as isize,
                        v.as_ptr(),
                        1,
                        value_dim as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                for (row, sum) in o.chunks_mut(value_dim).zip(sums) {
                    let inv = 1.0 / sum;
                    row.iter_mut().for_each(|x| *x *= inv);
                }
            },
        );
    out
}

/// Replaces every score `x` of a row by `exp(x - max)` and returns their sum.
fn softmax_numerators(row: &mut [f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { softmax_numerators_avx512(row) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { softmax_numerators_avx2(row) };
        }
    }
    softmax_numerators_portable(row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_numerators_avx512(row: &mut [f32]) -> f32 {
    softmax_numerators_portable(row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_numerators_avx2(row: &mut [f32]) -> f32 {
    softmax_numerators_portable(row)
}

/// Lanes of the reductions: separate accumulators let the compiler vectorise them.
const LANES: usize = 16;

/// Written so that the compiler vectorises it: no branches, no library calls, reductions over
/// `LANES` independent accumulators.
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
    for x in row.iter_mut() {
        *x = exp_le0(*x - max);
    }
    let mut sums = [0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (s, x) in sums.iter_mut().zip(chunk) {
            *s += *x;
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// `exp(x)` for `x ≤ 0` (smaller than about -87 gives 0), relative error below 3e-7 (2.5 ulp):
/// `x = n·ln2
/// + f` with `|f| ≤ ln2/2`, a degree-6 polynomial for `exp(f)`, and `2ⁿ` built in the exponent
/// bits.
#[inline(always)]
fn exp_le0(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2²³ rounds to the nearest integer n and leaves n in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let below = x < -87.0;
    let x = if below { -87.0 } else { x };
    let biased = x * LOG2E + ROUND;
    let n = biased - ROUND;
    let n_int = biased.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let f = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0 / 720.0;
    let p = p * f + 1.0 / 120.0;
    let p = p * f + 1.0 / 24.0;
    let p = p * f + 1.0 / 6.0;
    let p = p * f + 0.5;
    let p = p * f + 1.0;
    let p = p * f + 1.0;
    let scale = f32::from_bits((n_int.wrapping_add(127) as u32) << 23);
    if below { 0.0 } else { p * scale }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exponential_is_within_3e_7_relative() {
        let mut worst = 0f64;
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            let want = (x as f64).exp();
            let got = exp_le0(x) as f64;
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 3e-7, "worst relative error {worst:e}");
        assert_eq!(exp_le0(-100.0), 0.0);
        assert_eq!(exp_le0(0.0), 1.0);
    }

    /// A deterministic pseudo-random fill in [-2, 2).
    fn fill(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    #[test]
    fn attention_matches_a_direct_f64_softmax() {
        // Two heads; 130 queries (two full blocks and a partial one); 1100 keys.
        let shape = Shape {
            heads: 2,
            queries: 130,
            keys: 1100,
            dim: 40,
            value_dim: 24,
        };
        let q = fill(shape.heads * shape.queries * shape.dim, 1);
        let k = fill(shape.heads * shape.keys * shape.dim, 2);
        let v = fill(shape.heads * shape.keys * shape.value_dim, 3);
        let scale = 1.0 / (shape.dim as f32).sqrt();
        let got = attention(&q, &k, &v, shape, scale);
        let mut worst = 0f64;
        for h in 0..shape.heads {
            for i in 0..shape.queries {
                let qi = &q[(h * shape.queries + i) * shape.dim..][..shape.dim];
                let scores: Vec<f64> = (0..shape.keys)
                    .map(|j| {
                        let kj = &k[(h * shape.keys + j) * shape.dim..][..shape.dim];
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
                for c in 0..shape.value_dim {
                    let want: f64 = weights
                        .iter()
                        .enumerate()
                        .map(|(j, w)| w * v[(h * shape.keys + j) * shape.value_dim + c] as f64)
                        .sum::<f64>()
                        / total;
                    let have = got[(h * shape.queries + i) * shape.value_dim + c] as f64;
                    worst = worst.max((have - want).abs());
                }
            }
        }
        assert!(worst < 1e-5, "worst absolute error {worst:e}");
    }
}
