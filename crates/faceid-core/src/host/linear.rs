//! Row-wise layers over `[rows, features]`: the affine map of `torch.nn.Linear` as one GEMM on
//! top of the bias, `torch.nn.LayerNorm`, and diffusers' GEGLU gate.

use super::SharedMut;
use super::math::{gelu, vectorised};

/// Rows per parallel task of the elementwise kernels.
const ROWS_PER_TASK: usize = 16;

/// `x · weight + bias` for `x` `[rows, d_in]` and `weight` `[d_in, d_out]`, row-major.
pub fn linear(
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    d_in: usize,
    d_out: usize,
) -> Vec<f32> {
    assert_eq!(x.len() % d_in, 0, "linear input size");
    assert_eq!(weight.len(), d_in * d_out, "linear weight size");
    let rows = x.len() / d_in;
    let write = |dst: SharedMut, accumulate: bool| {
        // SAFETY: [rows, d_in] times [d_in, d_out] into (or onto) [rows, d_out], all contiguous
        // row-major: both calls below pass a buffer of `rows · d_out` elements.
        unsafe {
            super::gemm_into(
                dst.0,
                d_out as isize,
                x,
                weight,
                (rows, d_out, d_in),
                accumulate,
            )
        }
    };
    let Some(bias) = bias else {
        // SAFETY: the GEMM writes every output without reading it.
        return unsafe { super::fresh(rows * d_out, |dst| write(dst, false)) };
    };
    assert_eq!(bias.len(), d_out, "linear bias size");
    // SAFETY: each part is whole rows, each row written with the bias.
    let mut out = unsafe {
        super::par_fresh(rows * d_out, d_out * ROWS_PER_TASK, |_, part| {
            for row in part.chunks_mut(d_out) {
                for (o, b) in row.iter_mut().zip(bias) {
                    o.write(*b);
                }
            }
        })
    };
    write(SharedMut(out.as_mut_ptr()), true);
    out
}

/// Normalises each row of `[rows, dim]` (biased variance, `eps` added), then `· weight + bias`.
pub fn layer_norm(x: &[f32], weight: &[f32], bias: &[f32], eps: f64) -> Vec<f32> {
    let dim = weight.len();
    assert!(bias.len() == dim && x.len() % dim == 0, "layer norm sizes");
    let chunk = dim * ROWS_PER_TASK;
    // SAFETY: each part is whole rows, zipped with the input's and written in full.
    unsafe {
        super::par_fresh(x.len(), chunk, |i, out| {
            let x = &x[i * chunk..][..out.len()];
            vectorised!({
                for (out, x) in out.chunks_mut(dim).zip(x.chunks(dim)) {
                    let (mean, var) = super::norm::moments(x);
                    let inv_std = (1.0 / (var + eps).sqrt()) as f32;
                    let mean = mean as f32;
                    for (((o, v), w), b) in out.iter_mut().zip(x).zip(weight).zip(bias) {
                        o.write((v - mean) * inv_std * w + b);
                    }
                }
            })
        })
    }
}

/// diffusers' GEGLU after its projection: each row of `[rows, 2·inner]` is `[hidden, gate]`, and
/// the result `[rows, inner]` is `hidden · gelu(gate)` (exact, erf-based GELU).
pub fn geglu(projected: &[f32], inner: usize) -> Vec<f32> {
    assert_eq!(projected.len() % (2 * inner), 0, "GEGLU input size");
    let rows = projected.len() / (2 * inner);
    let chunk = inner * ROWS_PER_TASK;
    // SAFETY: each part is whole rows of `inner`, zipped with the input's rows of `2·inner` and
    // written in full.
    unsafe {
        super::par_fresh(rows * inner, chunk, |i, out| {
            let projected = &projected[2 * i * chunk..][..2 * out.len()];
            vectorised!({
                for (out, row) in out.chunks_mut(inner).zip(projected.chunks(2 * inner)) {
                    let (hidden, gate) = row.split_at(inner);
                    for ((o, h), g) in out.iter_mut().zip(hidden).zip(gate) {
                        o.write(h * gelu(*g));
                    }
                }
            })
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn fill(len: usize, seed: u64) -> Vec<f32> {
        crate::testing::uniform(len, seed, 2.0)
    }

    #[test]
    fn linear_matches_the_definition() {
        // 37 rows: few enough to split 53 columns into bands per thread (16 + 16 + 16 + 5 with
        // 3 threads, 32 + 21 with 2), and 300 rows: gemm's own threading.
        for (rows, threads) in [(37, 1), (37, 2), (37, 3), (300, 3)] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a thread pool");
            pool.install(|| check_linear(rows, 19, 53));
        }
    }

    fn check_linear(rows: usize, d_in: usize, d_out: usize) {
        let (x, w, b) = (fill(rows * d_in, 1), fill(d_in * d_out, 2), fill(d_out, 3));
        for bias in [None, Some(b.as_slice())] {
            let got = linear(&x, &w, bias, d_in, d_out);
            for r in 0..rows {
                for o in 0..d_out {
                    let want = (0..d_in)
                        .map(|i| x[r * d_in + i] as f64 * w[i * d_out + o] as f64)
                        .sum::<f64>()
                        + bias.map_or(0.0, |b| b[o] as f64);
                    assert!((got[r * d_out + o] as f64 - want).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    fn layer_norm_matches_the_definition() {
        let (rows, dim) = (40, 33);
        let (x, w, b) = (fill(rows * dim, 4), fill(dim, 5), fill(dim, 6));
        let got = layer_norm(&x, &w, &b, 1e-5);
        for (r, row) in x.chunks(dim).enumerate() {
            let mean = row.iter().map(|v| *v as f64).sum::<f64>() / dim as f64;
            let var = row.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / dim as f64;
            for (i, v) in row.iter().enumerate() {
                let want = (*v as f64 - mean) / (var + 1e-5).sqrt() * w[i] as f64 + b[i] as f64;
                assert!((got[r * dim + i] as f64 - want).abs() < 2e-6, "{r} {i}");
            }
        }
    }

    #[test]
    fn geglu_gates_the_first_half_with_the_gelu_of_the_second() {
        let (rows, inner) = (21, 17);
        let x: Vec<f32> = fill(rows * 2 * inner, 7).iter().map(|v| v * 3.0).collect();
        let got = geglu(&x, inner);
        for r in 0..rows {
            for i in 0..inner {
                let h = x[r * 2 * inner + i] as f64;
                let g = x[r * 2 * inner + inner + i] as f64;
                let want = h * 0.5 * g * (1.0 + erf(g / std::f64::consts::SQRT_2));
                assert!((got[r * inner + i] as f64 - want).abs() < 1e-5, "{r} {i}");
            }
        }
    }

    /// erf in f64, the reference for the vectorised one: its series up to 3, the continued
    /// fraction of erfc beyond.
    pub(crate) fn erf(x: f64) -> f64 {
        let z = x.abs();
        let value = if z <= 3.0 {
            let (mut term, mut sum) = (z, z);
            for n in 1..100 {
                term *= -z * z / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            let mut fraction = z;
            for n in (1..80).rev() {
                fraction = z + (n as f64 / 2.0) / fraction;
            }
            1.0 - (-z * z).exp() / (std::f64::consts::PI.sqrt() * fraction)
        };
        value.copysign(x)
    }
}
