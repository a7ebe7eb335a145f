//! 3×3 stride-1 convolution by Winograd's minimal filtering F(4×4, 3×3) (Lavin and Gray, 2016):
//! each 4×4 block of outputs comes from a 6×6 input patch with 36 multiplications per channel
//! pair instead of 144. Per block of tiles: the input patches are transformed (`Bᵀ d B`) into 36
//! matrices `[c_in, tiles]`, multiplied by the 36 transformed kernels `[c_out, c_in]`
//! (`G g Gᵀ`) in 36 GEMMs, and the products transformed back (`Aᵀ m A`) onto the bias. The
//! interpolation points are 0, ±1, ±2 and ∞, so the transforms use small integers (and the
//! kernel transform sixths, twelfths and twenty-fourths): the result stays within about 1e-6 of
//! the scale of the direct convolution's terms, well inside the parity tolerances.

use std::cell::RefCell;

use rayon::prelude::*;

use super::conv::ConvShape;
use super::math::vectorised;
use super::{SharedMut, Strided, gemm_f32};

/// Outputs per tile side.
const M: usize = 4;
/// Input elements per tile side (`M + 2`).
const R: usize = M + 2;
/// Transformed elements per tile (6×6).
const E: usize = R * R;
/// Floats of transformed input (and of products) per block of tiles: the block's matrices stay
/// in the last-level cache between the transform and the GEMMs.
const BLOCK_FLOATS: usize = 1 << 22;

thread_local! {
    /// The transformed kernels, the transformed inputs and the products of the last call on this
    /// thread, kept for the next: allocating them afresh for every convolution costs page faults
    /// comparable to the transforms themselves. The inputs and products take at most about
    /// `BLOCK_FLOATS` floats each; the kernels 4 times the largest weight (236 MB for the SD 1.5
    /// UNet's 1280-channel convolutions).
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>, Vec<f32>)> =
        const { RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

/// Whether Winograd pays off for this convolution: a 3×3 kernel at stride 1 over enough
/// output pixels (all images together) that transforming the kernels is cheap next to the GEMMs.
pub fn applies(s: &ConvShape) -> bool {
    s.kernel == 3 && s.stride == 1 && s.batch * s.out_height() * s.out_width() >= 2 * 32 * 32
}

/// `conv2d(x, weight) + bias` for a shape [`applies`] accepts; same contract as
/// [`super::conv::conv2d`].
pub fn conv2d(x: &[f32], weight: &[f32], bias: Option<&[f32]>, s: ConvShape) -> Vec<f32> {
    assert!(
        s.kernel == 3 && s.stride == 1,
        "Winograd F(4,3) needs a 3×3 kernel at stride 1"
    );
    let (c_in, c_out) = (s.c_in, s.c_out);
    let (oh, ow) = (s.out_height(), s.out_width());
    let (tiles_h, tiles_w) = (oh.div_ceil(M), ow.div_ceil(M));
    let tiles = tiles_h * tiles_w;
    assert_eq!(
        x.len(),
        s.batch * c_in * s.height * s.width,
        "conv input size"
    );
    assert_eq!(weight.len(), c_out * c_in * 9, "conv kernel size");

    // Tiles are numbered across the images, so small images still make long GEMMs.
    let total = s.batch * tiles;
    let block = (BLOCK_FLOATS / (E * c_in.max(c_out))).clamp(16, total);
    let (mut u, mut v, mut m) = SCRATCH.with_borrow_mut(std::mem::take);
    let stride = kernels_stride(c_in, c_out);
    let kernels = E * stride;
    u.resize(u.len().max(kernels), 0.0);
    transform_kernels(weight, c_in, c_out, &mut u[..kernels]);
    v.resize(v.len().max(E * c_in * block), 0.0);
    m.resize(m.len().max(E * c_out * block), 0.0);
    let fill = |out: SharedMut| {
        for first in (0..total).step_by(block) {
            let n = block.min(total - first);
            transform_inputs(x, &mut v, &s, first, n, tiles_w);
            // The 36 products, one GEMM each, split over the threads.
            let mp = SharedMut(m.as_mut_ptr());
            let vr = &v;
            (0..E).into_par_iter().for_each(|e| {
                // SAFETY: U_e is [c_out, c_in], V_e [c_in, n] and M_e [c_out, n], contiguous and
                // disjoint per e.
                unsafe {
                    gemm_f32(
                        mp.at(e * c_out * n),
                        n as isize,
                        Strided::rows(&u[e * stride..], c_in),
                        Strided::rows(&vr[e * c_in * n..], n),
                        (c_out, n, c_in),
                        (false, 1.0),
                        gemm::Parallelism::None,
                    );
                }
            });
            // SAFETY: `out` holds the outputs (`fresh`'s length below).
            unsafe { transform_outputs(&m, out, bias, &s, first, n, tiles_w) };
        }
    };
    // SAFETY: the blocks of tiles cover every output pixel, and `transform_outputs` writes each
    // pixel of its tiles without reading it.
    let out = unsafe { super::fresh(s.batch * c_out * oh * ow, fill) };
    SCRATCH.set((u, v, m));
    out
}

/// `Bᵀ d B` for tiles `first..first + n`, a row of tiles at a time: task `ci` writes row `ci`
/// (stride `n`) of each of the 36 matrices in `v`.
///
/// The 6 input rows under a row of tiles are read split by column modulo 4 (tile `k` starts at
/// column `4k`, so its 6 columns are phases 0 to 3 at `k` and phases 0 and 1 at `k + 1`): both
/// passes of the transform then run over contiguous arrays indexed by tile, which vectorise.
fn transform_inputs(
    x: &[f32],
    v: &mut [f32],
    s: &ConvShape,
    first: usize,
    n: usize,
    tiles_w: usize,
) {
    let c_in = s.c_in;
    let tiles = s.out_height().div_ceil(M) * tiles_w;
    let plane_in = s.height * s.width;
    let [top, _, left, _] = s.padding;
    let vp = SharedMut(v.as_mut_ptr());
    (0..c_in).into_par_iter().for_each_init(
        || vec![0f32; 2 * R * M * (tiles_w + 1)],
        |scratch, ci| {
            for seg in segments(first, n, tiles, tiles_w) {
                let plane = &x[(seg.image * c_in + ci) * plane_in..][..plane_in];
                let (len, phase) = (seg.len, seg.len + 1);
                let row_len = M * phase;
                let (rows, t) = scratch.split_at_mut(R * row_len);
                let rows = &mut rows[..R * row_len];
                let t = &mut t[..R * row_len];
                // Input column `c` of the row of tiles is image column `start + c - left`.
                let start = M * seg.tx;
                let lead = left.saturating_sub(start).min(M * len + 2);
                let from = start + lead - left;
                let count = s.width.saturating_sub(from).min(M * len + 2 - lead);
                for (i, row) in rows.chunks_mut(row_len).enumerate() {
                    row.fill(0.0);
                    let iy = (M * seg.ty + i).wrapping_sub(top);
                    if iy >= s.height || count == 0 {
                        continue;
                    }
                    deinterleave(&plane[iy * s.width + from..][..count], lead, row, phase);
                }
                vectorised!({
                    let r: [&[f32]; R] = std::array::from_fn(|i| &rows[i * row_len..][..row_len]);
                    let [t0, t1, t2, t3, t4, t5] = split_rows::<R>(t, row_len);
                    for c in 0..row_len {
                        let b = b_transpose(std::array::from_fn(|i| r[i][c]));
                        (t0[c], t1[c], t2[c], t3[c], t4[c], t5[c]) =
                            (b[0], b[1], b[2], b[3], b[4], b[5]);
                    }
                });
                for (i, ti) in t.chunks(row_len).enumerate() {
                    // SAFETY: row `ci` of matrices `6i..6i + 6`, columns `seg.offset..+len`:
                    // inside `v` and written by this task only.
                    let [o0, o1, o2, o3, o4, o5]: [&mut [f32]; R] =
                        std::array::from_fn(|j| unsafe {
                            std::slice::from_raw_parts_mut(
                                vp.at(((i * R + j) * c_in + ci) * n + seg.offset),
                                len,
                            )
                        });
                    let p: [&[f32]; M] = std::array::from_fn(|j| &ti[j * phase..][..phase]);
                    let (p0, p1, p2, p3) = (&p[0][..len], &p[1][..len], &p[2][..len], &p[3][..len]);
                    let (p4, p5) = (&p[0][1..], &p[1][1..]);
                    vectorised!({
                        for k in 0..len {
                            let b = b_transpose([p0[k], p1[k], p2[k], p3[k], p4[k], p5[k]]);
                            (o0[k], o1[k], o2[k], o3[k], o4[k], o5[k]) =
                                (b[0], b[1], b[2], b[3], b[4], b[5]);
                        }
                    });
                }
            }
        },
    );
}

/// Writes `src` as the columns `lead..lead + src.len()` of a row split by column modulo 4 into
/// `row`'s 4 phases of `phase` floats: column `c` goes to `row[(c % 4) · phase + c / 4]`.
fn deinterleave(src: &[f32], lead: usize, row: &mut [f32], phase: usize) {
    // Up to the first column of a tile and after the last whole tile, one column at a time;
    // whole tiles' 4 columns at a time in between.
    let head = (lead.next_multiple_of(M) - lead).min(src.len());
    let body = (src.len() - head) / M * M;
    for j in (0..head).chain(head + body..src.len()) {
        let c = lead + j;
        row[(c % M) * phase + c / M] = src[j];
    }
    let (first, tiles) = ((lead + head) / M, body / M);
    let [p0, p1, p2, p3] = split_rows::<M>(row, phase).map(|p| &mut p[first..first + tiles]);
    let chunks = &src[head..head + body];
    vectorised!({
        for (k, c) in chunks.chunks_exact(M).enumerate() {
            (p0[k], p1[k], p2[k], p3[k]) = (c[0], c[1], c[2], c[3]);
        }
    });
}

/// The first `K` rows of `row_len` floats of `t`.
fn split_rows<const K: usize>(t: &mut [f32], row_len: usize) -> [&mut [f32]; K] {
    let mut rows = t.chunks_mut(row_len);
    std::array::from_fn(|_| rows.next().expect("enough rows"))
}

/// `Aᵀ m A` plus the bias for tiles `first..first + n`, a row of tiles at a time: task `co`
/// writes channel `co` of every image. Both passes run over the products' tile index (contiguous
/// in `m`); the 4 outputs of each tile row are interleaved only when written.
///
/// # Safety
/// `out` must hold the `[batch, c_out, out_height, out_width]` outputs; they need not be
/// initialised (each is written, none read).
unsafe fn transform_outputs(
    m: &[f32],
    out: SharedMut,
    bias: Option<&[f32]>,
    s: &ConvShape,
    first: usize,
    n: usize,
    tiles_w: usize,
) {
    let c_out = s.c_out;
    let (oh, ow) = (s.out_height(), s.out_width());
    let tiles = oh.div_ceil(M) * tiles_w;
    (0..c_out).into_par_iter().for_each_init(
        || vec![0f32; (M * R + M + M) * tiles_w],
        |scratch, co| {
            let shift = bias.map_or(0.0, |b| b[co]);
            for seg in segments(first, n, tiles, tiles_w) {
                let len = seg.len;
                let product: [&[f32]; E] =
                    std::array::from_fn(|e| &m[(e * c_out + co) * n + seg.offset..][..len]);
                let (columns, rest) = scratch.split_at_mut(M * R * tiles_w);
                let (phases, row) = rest.split_at_mut(M * tiles_w);
                // Vertical pass: `columns[r][j]` is output row `r` of column `j`, per tile.
                let mut col = columns.chunks_mut(tiles_w);
                let columns: [[&mut [f32]; R]; M] = std::array::from_fn(|_| {
                    std::array::from_fn(|_| &mut col.next().expect("24 rows")[..len])
                });
                let [mut c0, mut c1, mut c2, mut c3] = columns;
                vectorised!({
                    for j in 0..R {
                        let p: [&[f32]; R] = std::array::from_fn(|i| product[i * R + j]);
                        let (d0, d1, d2, d3) = (&mut *c0[j], &mut *c1[j], &mut *c2[j], &mut *c3[j]);
                        for k in 0..len {
                            let a = a_transpose(std::array::from_fn(|i| p[i][k]));
                            (d0[k], d1[k], d2[k], d3[k]) = (a[0], a[1], a[2], a[3]);
                        }
                    }
                });
                let (oy, ox) = (M * seg.ty, M * seg.tx);
                let cols = (M * len).min(ow - ox);
                for (r, c) in [&c0, &c1, &c2, &c3].into_iter().enumerate() {
                    if oy + r >= oh {
                        break;
                    }
                    // Horizontal pass: the 4 outputs of each tile in this row, then interleaved.
                    let [q0, q1, q2, q3] = split_rows::<M>(phases, tiles_w).map(|q| &mut q[..len]);
                    vectorised!({
                        for k in 0..len {
                            let a = a_transpose(std::array::from_fn(|j| c[j][k]));
                            (q0[k], q1[k], q2[k], q3[k]) =
                                (a[0] + shift, a[1] + shift, a[2] + shift, a[3] + shift);
                        }
                    });
                    let row = &mut row[..M * len];
                    vectorised!({
                        for (k, o) in row.chunks_exact_mut(M).enumerate() {
                            (o[0], o[1], o[2], o[3]) = (q0[k], q1[k], q2[k], q3[k]);
                        }
                    });
                    let index = ((seg.image * c_out + co) * oh + oy + r) * ow + ox;
                    // SAFETY: `cols` outputs of one row of channel `co`, inside `out`; only this
                    // task writes channel `co`.
                    unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), out.at(index), cols) };
                }
            }
        },
    );
}

/// `Bᵀ d` for one column (or row) of 6 inputs.
#[inline(always)]
fn b_transpose(d: [f32; R]) -> [f32; R] {
    let (p, q) = (d[4] - d[2], d[3] - d[1]);
    [
        4.0 * d[0] - 5.0 * d[2] + d[4],
        (d[3] + d[4]) - 4.0 * (d[1] + d[2]),
        (d[4] - d[3]) + 4.0 * (d[1] - d[2]),
        p + 2.0 * q,
        p - 2.0 * q,
        4.0 * d[1] - 5.0 * d[3] + d[5],
    ]
}

/// `Aᵀ m` for one column (or row) of 6 products.
#[inline(always)]
fn a_transpose(m: [f32; R]) -> [f32; M] {
    let (sum12, diff12) = (m[1] + m[2], m[1] - m[2]);
    let (sum34, diff34) = (m[3] + m[4], m[3] - m[4]);
    [
        m[0] + sum12 + sum34,
        diff12 + 2.0 * diff34,
        sum12 + 4.0 * sum34,
        diff12 + 8.0 * diff34 + m[5],
    ]
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

/// Floats from one transformed kernel matrix to the next: `c_out · c_in` and 64 more, so that
/// the 36 rows a task writes at a time do not all fall into the same cache sets.
fn kernels_stride(c_in: usize, c_out: usize) -> usize {
    c_out * c_in + 64
}

/// `G g Gᵀ` for every kernel, with `G` the 6×3 matrix of rows `[¼,0,0]`, `-⅙[1,1,1]`,
/// `-⅙[1,-1,1]`, `[1/24,1/12,⅙]`, `[1/24,-1/12,⅙]`, `[0,0,1]`, into `u`, 36 matrices
/// `[c_out, c_in]` [`kernels_stride`] apart. Vectorised over 16 input channels at a time (this
/// runs for every convolution: the 36 matrices take 4 times the weight's memory, too much to
/// keep per layer).
fn transform_kernels(weight: &[f32], c_in: usize, c_out: usize, u: &mut [f32]) {
    const LANES: usize = 16;
    type Lanes = [f32; LANES];
    #[inline(always)]
    fn g_times(g: [Lanes; 3]) -> [Lanes; R] {
        const SIXTH: f32 = 1.0 / 6.0;
        const TWELFTH: f32 = 1.0 / 12.0;
        const TWENTY_FOURTH: f32 = 1.0 / 24.0;
        let mut rows = [[0f32; LANES]; R];
        for l in 0..LANES {
            let (g0, g1, g2) = (g[0][l], g[1][l], g[2][l]);
            rows[0][l] = 0.25 * g0;
            rows[1][l] = -SIXTH * (g0 + g1 + g2);
            rows[2][l] = -SIXTH * (g0 - g1 + g2);
            rows[3][l] = TWENTY_FOURTH * g0 + TWELFTH * g1 + SIXTH * g2;
            rows[4][l] = TWENTY_FOURTH * g0 - TWELFTH * g1 + SIXTH * g2;
            rows[5][l] = g2;
        }
        rows
    }
    let stride = kernels_stride(c_in, c_out);
    assert_eq!(u.len(), E * stride, "transformed kernels size");
    let up = SharedMut(u.as_mut_ptr());
    (0..c_out).into_par_iter().for_each(|co| {
        vectorised!({
            for first in (0..c_in).step_by(LANES) {
                let lanes = LANES.min(c_in - first);
                // g[k][l]: element k of the kernel from input channel `first + l`.
                let mut g = [[0f32; LANES]; 9];
                let kernels = &weight[(co * c_in + first) * 9..][..lanes * 9];
                for (l, kernel) in kernels.chunks_exact(9).enumerate() {
                    for (k, value) in kernel.iter().enumerate() {
                        g[k][l] = *value;
                    }
                }
                // G g: 6 rows of 3, one kernel column at a time; then each row times Gᵀ.
                let columns: [[Lanes; R]; 3] =
                    std::array::from_fn(|j| g_times([g[j], g[3 + j], g[6 + j]]));
                for i in 0..R {
                    let row = g_times([columns[0][i], columns[1][i], columns[2][i]]);
                    for (j, values) in row.iter().enumerate() {
                        // SAFETY: task `co` writes only row `co` of each matrix; `lanes`
                        // channels from `first` are inside it.
                        let dst = unsafe {
                            std::slice::from_raw_parts_mut(
                                up.at((i * R + j) * stride + co * c_in + first),
                                lanes,
                            )
                        };
                        dst.copy_from_slice(&values[..lanes]);
                    }
                }
            }
        })
    });
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
            // Inputs and weights are in [-1, 1]: each output sums `9 · c_in` terms of magnitude
            // at most 1, the scale the transforms' roundings are relative to (a wrong transform
            // is off by O(1)).
            let scale = (9 * s.c_in) as f64;
            assert!(
                worst < 1e-6 * scale,
                "case {i}: worst absolute error {worst:e}, {:e} of the scale",
                worst / scale
            );
        }
    }
}
