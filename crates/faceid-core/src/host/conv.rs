//! 2-D convolution as one GEMM per tile of output rows: the kernel, read in PyTorch's own
//! `[out, in, kh, kw]` layout, is the left matrix `[out, in·kh·kw]`; the input patches of a tile
//! (im2col, rows ordered `(in, kh, kw)` like the kernel) are the right matrix; the product lands
//! directly in the NCHW output, on top of the bias. No layout changes of the input, the kernel or
//! the output. Small images are grouped so that one GEMM covers several of them.

use rayon::prelude::*;

/// Floats of im2col buffer per GEMM: large enough that the GEMM is efficient, small enough to
/// stay in the last-level cache.
const TILE_FLOATS: usize = 1 << 21;

/// Sizes of a convolution over `[batch, c_in, height, width]` with a `[c_out, c_in, k, k]`
/// kernel (one group, no dilation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    /// Images.
    pub batch: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height and width.
    pub kernel: usize,
    /// Stride in both directions.
    pub stride: usize,
    /// Zero padding `(top, bottom, left, right)`.
    pub padding: [usize; 4],
}

impl ConvShape {
    /// Output height.
    pub fn out_height(&self) -> usize {
        (self.height + self.padding[0] + self.padding[1] - self.kernel) / self.stride + 1
    }

    /// Output width.
    pub fn out_width(&self) -> usize {
        (self.width + self.padding[2] + self.padding[3] - self.kernel) / self.stride + 1
    }

    fn is_pointwise(&self) -> bool {
        self.kernel == 1 && self.stride == 1 && self.padding == [0; 4]
    }
}

/// `conv2d(x, weight) + bias`, all row-major (3×3 stride-1 convolutions over large images go to
/// [`super::winograd`]); returns `[batch, c_out, out_height, out_width]`.
pub fn conv2d(x: &[f32], weight: &[f32], bias: Option<&[f32]>, s: ConvShape) -> Vec<f32> {
    if super::winograd::applies(&s) {
        return super::winograd::conv2d(x, weight, bias, s);
    }
    let (oh, ow) = (s.out_height(), s.out_width());
    let plane_in = s.height * s.width;
    let plane_out = oh * ow;
    let k_len = s.c_in * s.kernel * s.kernel;
    assert_eq!(x.len(), s.batch * s.c_in * plane_in, "conv input size");
    assert_eq!(weight.len(), s.c_out * k_len, "conv kernel size");
    let mut out = vec![0f32; s.batch * s.c_out * plane_out];
    if let Some(bias) = bias {
        assert_eq!(bias.len(), s.c_out, "conv bias size");
        out.par_chunks_mut(plane_out)
            .enumerate()
            .for_each(|(i, plane)| plane.fill(bias[i % s.c_out]));
    }
    let dst_rs = plane_out as isize;
    if s.is_pointwise() {
        for (image, out) in x
            .chunks(s.c_in * plane_in)
            .zip(out.chunks_mut(s.c_out * plane_out))
        {
            // SAFETY: [c_out, c_in] kernel times [c_in, plane] image into [c_out, plane].
            unsafe {
                super::gemm_into(
                    out.as_mut_ptr(),
                    dst_rs,
                    weight,
                    image,
                    (s.c_out, plane_out, k_len),
                    true,
                )
            };
        }
        return out;
    }
    let images_per_tile = (TILE_FLOATS / (k_len * plane_out)).clamp(1, s.batch);
    if images_per_tile > 1 {
        // Whole images: im2col of several, one GEMM into a scratch `[c_out, images·plane]`,
        // then each image's block moved to its place.
        let mut cols = vec![0f32; k_len * images_per_tile * plane_out];
        let mut scratch = vec![0f32; s.c_out * images_per_tile * plane_out];
        for first in (0..s.batch).step_by(images_per_tile) {
            let images = images_per_tile.min(s.batch - first);
            let n = images * plane_out;
            let cols = &mut cols[..k_len * n];
            im2col(x, cols, &s, first, images, 0, oh);
            let scratch = &mut scratch[..s.c_out * n];
            for (c, row) in scratch.chunks_mut(n).enumerate() {
                for i in 0..images {
                    let dst = &out[((first + i) * s.c_out + c) * plane_out..][..plane_out];
                    row[i * plane_out..(i + 1) * plane_out].copy_from_slice(dst);
                }
            }
            // SAFETY: [c_out, k_len] kernel times [k_len, n] patches into [c_out, n].
            unsafe {
                super::gemm_into(
                    scratch.as_mut_ptr(),
                    n as isize,
                    weight,
                    cols,
                    (s.c_out, n, k_len),
                    true,
                )
            };
            for (c, row) in scratch.chunks(n).enumerate() {
                for i in 0..images {
                    out[((first + i) * s.c_out + c) * plane_out..][..plane_out]
                        .copy_from_slice(&row[i * plane_out..(i + 1) * plane_out]);
                }
            }
        }
        return out;
    }
    let rows_per_tile = (TILE_FLOATS / (k_len * ow)).clamp(1, oh);
    let mut cols = vec![0f32; k_len * rows_per_tile * ow];
    for b in 0..s.batch {
        for first_row in (0..oh).step_by(rows_per_tile) {
            let rows = rows_per_tile.min(oh - first_row);
            let n = rows * ow;
            let cols = &mut cols[..k_len * n];
            im2col(x, cols, &s, b, 1, first_row, rows);
            let dst = &mut out[b * s.c_out * plane_out + first_row * ow..];
            // SAFETY: [c_out, k_len] kernel times [k_len, n] patches into the rows
            // `first_row..first_row + rows` of every output channel (row stride `plane_out`).
            unsafe {
                super::gemm_into(
                    dst.as_mut_ptr(),
                    dst_rs,
                    weight,
                    cols,
                    (s.c_out, n, k_len),
                    true,
                )
            };
        }
    }
    out
}

/// Fills `cols` (`[c_in·k·k, images·rows·out_width]`) with the patches of output rows
/// `first_row..first_row + rows` of images `first..first + images`.
fn im2col(
    x: &[f32],
    cols: &mut [f32],
    s: &ConvShape,
    first: usize,
    images: usize,
    first_row: usize,
    rows: usize,
) {
    let ow = s.out_width();
    let n = images * rows * ow;
    let [top, _, left, _] = s.padding;
    let k = s.kernel;
    cols.par_chunks_mut(n).enumerate().for_each(|(r, col)| {
        let (ci, ky, kx) = (r / (k * k), (r / k) % k, r % k);
        for i in 0..images {
            let plane =
                &x[((first + i) * s.c_in + ci) * s.height * s.width..][..s.height * s.width];
            for (j, oy) in (first_row..first_row + rows).enumerate() {
                let dst = &mut col[(i * rows + j) * ow..][..ow];
                let iy = (oy * s.stride + ky).wrapping_sub(top);
                if iy >= s.height {
                    dst.fill(0.0);
                    continue;
                }
                let src = &plane[iy * s.width..][..s.width];
                if s.stride == 1 {
                    // Output column ox reads input column ox + kx - left.
                    let lead = left.saturating_sub(kx).min(ow);
                    let start = (kx + lead - left).min(s.width);
                    let len = (s.width - start).min(ow - lead);
                    dst[..lead].fill(0.0);
                    dst[lead..lead + len].copy_from_slice(&src[start..start + len]);
                    dst[lead + len..].fill(0.0);
                } else {
                    for (ox, d) in dst.iter_mut().enumerate() {
                        let ix = (ox * s.stride + kx).wrapping_sub(left);
                        *d = if ix < s.width { src[ix] } else { 0.0 };
                    }
                }
            }
        }
    });
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn fill(len: usize, seed: u64) -> Vec<f32> {
        crate::testing::uniform(len, seed, 1.0)
    }

    /// The definition, in f64.
    pub(crate) fn direct(x: &[f32], w: &[f32], bias: &[f32], s: ConvShape) -> Vec<f64> {
        let (oh, ow) = (s.out_height(), s.out_width());
        let mut out = vec![0f64; s.batch * s.c_out * oh * ow];
        for b in 0..s.batch {
            for co in 0..s.c_out {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = bias[co] as f64;
                        for ci in 0..s.c_in {
                            for ky in 0..s.kernel {
                                for kx in 0..s.kernel {
                                    let iy = (oy * s.stride + ky) as isize - s.padding[0] as isize;
                                    let ix = (ox * s.stride + kx) as isize - s.padding[2] as isize;
                                    if iy < 0
                                        || ix < 0
                                        || iy >= s.height as isize
                                        || ix >= s.width as isize
                                    {
                                        continue;
                                    }
                                    let xv = x[((b * s.c_in + ci) * s.height + iy as usize)
                                        * s.width
                                        + ix as usize];
                                    let wv =
                                        w[((co * s.c_in + ci) * s.kernel + ky) * s.kernel + kx];
                                    acc += xv as f64 * wv as f64;
                                }
                            }
                        }
                        out[((b * s.c_out + co) * oh + oy) * ow + ox] = acc;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_path_matches_the_definition() {
        let cases = [
            // 3×3, padding 1: whole images grouped into one GEMM.
            ConvShape {
                batch: 3,
                c_in: 5,
                height: 9,
                width: 7,
                c_out: 6,
                kernel: 3,
                stride: 1,
                padding: [1; 4],
            },
            // Pointwise.
            ConvShape {
                batch: 2,
                c_in: 8,
                height: 5,
                width: 6,
                c_out: 3,
                kernel: 1,
                stride: 1,
                padding: [0; 4],
            },
            // Stride 2 with the VAE encoder's asymmetric padding.
            ConvShape {
                batch: 2,
                c_in: 4,
                height: 10,
                width: 9,
                c_out: 5,
                kernel: 3,
                stride: 2,
                padding: [0, 1, 0, 1],
            },
            // Stride 2, padding 1 (the UNet's downsamplers).
            ConvShape {
                batch: 1,
                c_in: 3,
                height: 8,
                width: 8,
                c_out: 4,
                kernel: 3,
                stride: 2,
                padding: [1; 4],
            },
            // Large enough that images are cut into tiles of rows.
            ConvShape {
                batch: 2,
                c_in: 64,
                height: 200,
                width: 180,
                c_out: 2,
                kernel: 3,
                stride: 2,
                padding: [1; 4],
            },
            // Large enough for Winograd.
            ConvShape {
                batch: 1,
                c_in: 6,
                height: 40,
                width: 35,
                c_out: 4,
                kernel: 3,
                stride: 1,
                padding: [1; 4],
            },
        ];
        for (i, s) in cases.into_iter().enumerate() {
            let x = fill(s.batch * s.c_in * s.height * s.width, 1 + i as u64);
            let w = fill(s.c_out * s.c_in * s.kernel * s.kernel, 100 + i as u64);
            let bias = fill(s.c_out, 200 + i as u64);
            let got = conv2d(&x, &w, Some(&bias), s);
            let want = direct(&x, &w, &bias, s);
            assert_eq!(got.len(), want.len());
            let worst = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (*g as f64 - w).abs())
                .fold(0.0, f64::max);
            assert!(
                worst < 1e-4,
                "case {i} {s:?}: worst absolute error {worst:e}"
            );
        }
    }
}
