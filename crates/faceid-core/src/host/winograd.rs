//! 3×3 stride-1 convolution by Winograd's minimal filtering F(2×2, 3×3) (Lavin and Gray, 2016):
//! each 2×2 block of outputs comes from a 4×4 input patch with 16 multiplications per channel
//! pair instead of 36. Per block of tiles: the input patches are transformed (`Bᵀ d B`) into 16
//! matrices `[c_in, tiles]`, multiplied by the 16 transformed kernels `[c_out, c_in]`
//! (`G g Gᵀ`) in 16 GEMMs, and the products transformed back (`Aᵀ m A`) onto the bias. The
//! transforms use only additions and halvings, so the result stays within a few f32 roundings of
//! the direct convolution.

use rayon::prelude::*;

use super::SharedMut;
use super::conv::ConvShape;
use super::math::vectorised;

/// Transformed elements per tile (4×4).
const E: usize = 16;
/// Floats of transformed input (and of products) per block of tiles.
const BLOCK_FLOATS: usize = 1 << 22;

/// Whether Winograd pays off for this convolution: a 3×3 kernel at stride 1 over enough
/// output tiles (all images together) that transforming the kernels is cheap next to the GEMMs.
pub fn applies(s: &ConvShape) -> bool {
    s.kernel == 3 && s.stride == 1 && s.batch * s.out_height() * s.out_width() >= 2 * 32 * 32
}

/// `conv2d(x, weight) + bias` for a shape [`applies`] accepts; same contract as
/// [`super::conv::conv2d`].
pub fn conv2d(x: &[f32], weight: &[f32], bias: Option<&[f32]>, s: ConvShape) -> Vec<f32> {
    assert!(
        s.kernel == 3 && s.stride == 1,
        "Winograd F(2,3) needs a 3×3 kernel at stride 1"
    );
    let (c_in, c_out) = (s.c_in, s.c_out);
    let (oh, ow) = (s.out_height(), s.out_width());
    let (tiles_h, tiles_w) = (oh.div_ceil(2), ow.div_ceil(2));
    let tiles = tiles_h * tiles_w;
    assert_eq!(
        x.len(),
        s.batch * c_in * s.height * s.width,
        "conv input size"
    );
    assert_eq!(weight.len(), c_out * c_in * 9, "conv kernel size");

    let u = transform_kernels(weight, c_in, c_out);
    // Tiles are numbered across the images, so small images still make long GEMMs.
    let total = s.batch * tiles;
    let block = (BLOCK_FLOATS / (E * c_in.max(c_out))).clamp(16, total);
    let mut v = vec![0f32; E * c_in * block];
    let mut m = vec![0f32; E * c_out * block];
    let mut out = vec![0f32; s.batch * c_out * oh * ow];
    let plane_in = s.height * s.width;
    let [top, _, left, _] = s.padding;
    for first in (0..total).step_by(block) {
        let n = block.min(total - first);
        // Input transform, a row of tiles at a time: task `ci` writes row `ci` (stride `n`) of
        // each of the 16 matrices.
        let vp = SharedMut(v.as_mut_ptr());
        (0..c_in).into_par_iter().for_each_init(
            || vec![0f32; 8 * (tiles_w + 1) * 2],
            |scratch, ci| {
                for seg in segments(first, n, tiles, tiles_w) {
                    let plane = &x[(seg.image * c_in + ci) * plane_in..][..plane_in];
                    let width = 2 * seg.len + 2;
                    let (rows, t) = scratch.split_at_mut(4 * width);
                    // The 4 input rows under this row of tiles, zero-padded.
                    for (i, row) in rows.chunks_mut(width).enumerate() {
                        row.fill(0.0);
                        let iy = (2 * seg.ty + i).wrapping_sub(top);
                        if iy < s.height {
                            let src = &plane[iy * s.width..][..s.width];
                            let start = 2 * seg.tx;
                            for (c, value) in row.iter_mut().enumerate() {
                                let ix = (start + c).wrapping_sub(left);
                                if ix < s.width {
                                    *value = src[ix];
                                }
                            }
                        }
                    }
                    vectorised(|| {
                        let (r0, rest) = rows.split_at(width);
                        let (r1, rest) = rest.split_at(width);
                        let (r2, r3) = rest.split_at(width);
                        let (t0, rest) = t.split_at_mut(width);
                        let (t1, rest) = rest.split_at_mut(width);
                        let (t2, rest) = rest.split_at_mut(width);
                        let t3 = &mut rest[..width];
                        for c in 0..width {
                            t0[c] = r0[c] - r2[c];
                            t1[c] = r1[c] + r2[c];
                            t2[c] = r2[c] - r1[c];
                            t3[c] = r1[c] - r3[c];
                        }
                        for (i, ti) in [&*t0, &*t1, &*t2, &*t3].into_iter().enumerate() {
                            let out = |e: usize| {
                                // SAFETY: row `ci` of matrix `e`, columns `seg.offset..+len`:
                                // inside `v` and written by this task only.
                                unsafe {
                                    std::slice::from_raw_parts_mut(
                                        vp.at(((i * 4 + e) * c_in + ci) * n + seg.offset),
                                        seg.len,
                                    )
                                }
                            };
                            let (v0, v1, v2, v3) = (out(0), out(1), out(2), out(3));
                            for k in 0..seg.len {
                                let (a, b, c, d) =
                                    (ti[2 * k], ti[2 * k + 1], ti[2 * k + 2], ti[2 * k + 3]);
                                v0[k] = a - c;
                                v1[k] = b + c;
                                v2[k] = c - b;
                                v3[k] = b - d;
                            }
                        }
                    });
                }
            },
        );
        // The 16 products, one GEMM each, split over the threads.
        let mp = SharedMut(m.as_mut_ptr());
        let vr = &v;
        (0..E).into_par_iter().for_each(|e| {
            // SAFETY: U_e is [c_out, c_in], V_e [c_in, n] and M_e [c_out, n], contiguous and
            // disjoint per e.
            unsafe {
                gemm::gemm(
                    c_out,
                    n,
                    c_in,
                    mp.at(e * c_out * n),
                    1,
                    n as isize,
                    false,
                    u.as_ptr().add(e * c_out * c_in),
                    1,
                    c_in as isize,
                    vr.as_ptr().add(e * c_in * n),
                    1,
                    n as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        });
        // Output transform onto the bias, a row of tiles at a time: task `co` writes channel
        // `co` of every image.
        let op = SharedMut(out.as_mut_ptr());
        let mr = &m;
        (0..c_out).into_par_iter().for_each_init(
            || vec![0f32; 4 * (tiles_w + 1)],
            |scratch, co| {
                let shift = bias.map_or(0.0, |b| b[co]);
                for seg in segments(first, n, tiles, tiles_w) {
                    let product = |e: usize| &mr[(e * c_out + co) * n + seg.offset..][..seg.len];
                    let (row0, row1) = scratch.split_at_mut(2 * (tiles_w + 1));
                    vectorised(|| {
                        let m: [&[f32]; E] = std::array::from_fn(product);
                        for k in 0..seg.len {
                            let s0: [f32; 4] =
                                std::array::from_fn(|j| m[j][k] + m[4 + j][k] + m[8 + j][k]);
                            let s1: [f32; 4] =
                                std::array::from_fn(|j| m[4 + j][k] - m[8 + j][k] - m[12 + j][k]);
                            row0[2 * k] = s0[0] + s0[1] + s0[2] + shift;
                            row0[2 * k + 1] = s0[1] - s0[2] - s0[3] + shift;
                            row1[2 * k] = s1[0] + s1[1] + s1[2] + shift;
                            row1[2 * k + 1] = s1[1] - s1[2] - s1[3] + shift;
                        }
                    });
                    let (oy, ox) = (2 * seg.ty, 2 * seg.tx);
                    let cols = (2 * seg.len).min(ow - ox);
                    for (i, row) in [&*row0, &*row1].into_iter().enumerate() {
                        if oy + i < oh {
                            let index = ((seg.image * c_out + co) * oh + oy + i) * ow + ox;
                            // SAFETY: `cols` outputs of one row of channel `co`, inside `out`;
                            // only this task writes channel `co`.
                            let dst = unsafe { std::slice::from_raw_parts_mut(op.at(index), cols) };
                            dst.copy_from_slice(&row[..cols]);
                        }
                    }
                }
            },
        );
    }
    out
}

/// A run of consecutive tiles in one row of tiles of one image.
#[derive(Debug, Clone, Copy)]
struct Segment {
    image: usize,
    ty: usize,
    tx: usize,
    len: usize,
    /// Position of the first tile in the block.
    offset: usize,
}

/// The rows of tiles that tiles `first..first + n` (numbered across images) fall into.
fn segments(first: usize, n: usize, tiles: usize, tiles_w: usize) -> impl Iterator<Item = Segment> {
    let mut offset = 0;
    std::iter::from_fn(move || {
        (offset < n).then(|| {
            let tile = first + offset;
            let tx = tile % tiles_w;
            let len = (tiles_w - tx).min(n - offset);
            let segment = Segment {
                image: tile / tiles,
                ty: (tile % tiles) / tiles_w,
                tx,
                len,
                offset,
            };
            offset += len;
            segment
        })
    })
}

/// `G g Gᵀ` for every kernel, with `G = [[1,0,0],[½,½,½],[½,-½,½],[0,0,1]]`, laid out as 16
/// matrices `[c_out, c_in]`.
fn transform_kernels(weight: &[f32], c_in: usize, c_out: usize) -> Vec<f32> {
    let mut u = vec![0f32; E * c_out * c_in];
    let up = SharedMut(u.as_mut_ptr());
    (0..c_out).into_par_iter().for_each(|co| {
        for ci in 0..c_in {
            let g = &weight[(co * c_in + ci) * 9..][..9];
            let mut a = [0f32; 12];
            for j in 0..3 {
                let (g0, g1, g2) = (g[j], g[3 + j], g[6 + j]);
                a[j] = g0;
                a[3 + j] = 0.5 * (g0 + g1 + g2);
                a[6 + j] = 0.5 * (g0 - g1 + g2);
                a[9 + j] = g2;
            }
            for i in 0..4 {
                let (a0, a1, a2) = (a[i * 3], a[i * 3 + 1], a[i * 3 + 2]);
                let row = [a0, 0.5 * (a0 + a1 + a2), 0.5 * (a0 - a1 + a2), a2];
                for (j, value) in row.into_iter().enumerate() {
                    // SAFETY: task `co` writes only row `co` of each matrix.
                    unsafe { *up.at(((i * 4 + j) * c_out + co) * c_in + ci) = value };
                }
            }
        }
    });
    u
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::conv::tests::{direct, fill};

    #[test]
    fn matches_the_direct_convolution() {
        let cases = [
            // Odd output sizes (partial tiles), padding 1.
            ConvShape {
                batch: 2,
                c_in: 7,
                height: 37,
                width: 33,
                c_out: 5,
                kernel: 3,
                stride: 1,
                padding: [1; 4],
            },
            // No padding, several blocks of tiles.
            ConvShape {
                batch: 1,
                c_in: 70,
                height: 130,
                width: 66,
                c_out: 3,
                kernel: 3,
                stride: 1,
                padding: [0; 4],
            },
        ];
        for (i, s) in cases.into_iter().enumerate() {
            assert!(applies(&s));
            let x = fill(s.batch * s.c_in * s.height * s.width, 11 + i as u64);
            let w = fill(s.c_out * s.c_in * 9, 21 + i as u64);
            let bias = fill(s.c_out, 31 + i as u64);
            let got = conv2d(&x, &w, Some(&bias), s);
            let want = direct(&x, &w, &bias, s);
            let worst = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (*g as f64 - w).abs())
                .fold(0.0, f64::max);
            assert!(worst < 1e-4, "case {i}: worst absolute error {worst:e}");
        }
    }
}
