//! `torch.nn.GroupNorm` (optionally followed by SiLU, as in every resnet block) in one pass over
//! memory: per image and group, the mean and variance in f64, then the normalisation, the affine
//! parameters and the activation written once.

use super::math::{silu, vectorised};

/// Sizes of a group norm over `[batch, channels, spatial]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupNormShape {
    /// Images.
    pub batch: usize,
    /// Channels (a multiple of `groups`).
    pub channels: usize,
    /// Elements per channel (height × width).
    pub spatial: usize,
    /// Groups.
    pub groups: usize,
}

/// Normalises `x` per image and group (biased variance, `eps` added), scales by `weight` and
/// shifts by `bias` per channel, then applies SiLU if `with_silu`.
pub fn group_norm(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    s: GroupNormShape,
    eps: f64,
    with_silu: bool,
) -> Vec<f32> {
    assert_eq!(
        x.len(),
        s.batch * s.channels * s.spatial,
        "group norm input size"
    );
    assert_eq!(s.channels % s.groups, 0, "channels per group");
    assert!(
        weight.len() == s.channels && bias.len() == s.channels,
        "affine sizes"
    );
    let per_group = s.channels / s.groups;
    let len = per_group * s.spatial;
    // SAFETY: each part is one (image, group) of `len` elements, zipped per channel with the
    // input's and written in full.
    unsafe {
        super::par_fresh(x.len(), len, |i, out| {
            let x = &x[i * len..][..len];
            let first_channel = (i % s.groups) * per_group;
            vectorised!({
                let (mean, var) = moments(x);
                let inv_std = 1.0 / (var + eps).sqrt();
                for (c, (out, x)) in out
                    .chunks_mut(s.spatial)
                    .zip(x.chunks(s.spatial))
                    .enumerate()
                {
                    let scale = (weight[first_channel + c] as f64 * inv_std) as f32;
                    let shift = (bias[first_channel + c] as f64 - mean * scale as f64) as f32;
                    if with_silu {
                        for (o, v) in out.iter_mut().zip(x) {
                            o.write(silu(v * scale + shift));
                        }
                    } else {
                        for (o, v) in out.iter_mut().zip(x) {
                            o.write(v * scale + shift);
                        }
                    }
                }
            })
        })
    }
}

/// Mean and biased variance in one pass over `x`: the sum and the sum of squares accumulated in
/// f64 over independent lanes (with 53 bits, `E[x²] - mean²` loses nothing that matters unless
/// the mean exceeds the spread by a factor of about 10⁵, far beyond any activation).
#[inline(always)]
pub(crate) fn moments(x: &[f32]) -> (f64, f64) {
    const LANES: usize = 8;
    let n = x.len() as f64;
    let (mut sums, mut squares) = ([0f64; LANES], [0f64; LANES]);
    let chunks = x.chunks_exact(LANES);
    let (mut tail, mut tail_squares) = (0f64, 0f64);
    for v in chunks.remainder() {
        let v = *v as f64;
        tail += v;
        tail_squares += v * v;
    }
    for chunk in chunks {
        for ((s, q), v) in sums.iter_mut().zip(squares.iter_mut()).zip(chunk) {
            let v = *v as f64;
            *s += v;
            *q += v * v;
        }
    }
    let mean = (sums.iter().sum::<f64>() + tail) / n;
    let mean_square = (squares.iter().sum::<f64>() + tail_squares) / n;
    (mean, (mean_square - mean * mean).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_definition_with_and_without_silu() {
        let s = GroupNormShape {
            batch: 2,
            channels: 12,
            spatial: 37,
            groups: 4,
        };
        let x: Vec<f32> = (0..s.batch * s.channels * s.spatial)
            .map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 3.0)
            .collect();
        let weight: Vec<f32> = (0..s.channels).map(|c| 0.5 + c as f32 * 0.1).collect();
        let bias: Vec<f32> = (0..s.channels).map(|c| c as f32 * 0.2 - 1.0).collect();
        for with_silu in [false, true] {
            let got = group_norm(&x, &weight, &bias, s, 1e-5, with_silu);
            let per = s.channels / s.groups * s.spatial;
            for (i, chunk) in x.chunks(per).enumerate() {
                let mean = chunk.iter().map(|v| *v as f64).sum::<f64>() / per as f64;
                let var = chunk
                    .iter()
                    .map(|v| (*v as f64 - mean).powi(2))
                    .sum::<f64>()
                    / per as f64;
                for (j, v) in chunk.iter().enumerate() {
                    let c = (i % s.groups) * (s.channels / s.groups) + j / s.spatial;
                    let mut want = (*v as f64 - mean) / (var + 1e-5).sqrt() * weight[c] as f64
                        + bias[c] as f64;
                    if with_silu {
                        want /= 1.0 + (-want).exp();
                    }
                    let have = got[i * per + j] as f64;
                    assert!(
                        (have - want).abs() < 2e-6,
                        "{with_silu} {i} {j}: {have} vs {want}"
                    );
                }
            }
        }
    }
}
