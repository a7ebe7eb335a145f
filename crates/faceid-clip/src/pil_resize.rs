//! Port of Pillow's `Image.resize` for 8-bit RGB images (`libImaging/Resample.c`): a separable
//! convolution with the filter stretched by the scale when downscaling (antialiasing), weights
//! in 22-bit fixed point, a horizontal pass then a vertical pass, each rounded and clipped to
//! 8 bits. A pass whose size does not change is skipped, as in Pillow.

/// Pillow's resampling filters, numbered as Pillow (and transformers' `resample`) number them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resample {
    /// `Image.NEAREST` (0).
    Nearest,
    /// `Image.LANCZOS` (1): windowed sinc, support 3.
    Lanczos,
    /// `Image.BILINEAR` (2): triangle, support 1.
    Bilinear,
    /// `Image.BICUBIC` (3): Keys cubic with a = -0.5, support 2.
    Bicubic,
    /// `Image.BOX` (4): box, support 0.5.
    Box,
    /// `Image.HAMMING` (5): Hamming-windowed sinc, support 1.
    Hamming,
}

impl Resample {
    /// The filter with Pillow's number, if there is one.
    pub fn from_pil(number: u64) -> Option<Self> {
        Some(match number {
            0 => Self::Nearest,
            1 => Self::Lanczos,
            2 => Self::Bilinear,
            3 => Self::Bicubic,
            4 => Self::Box,
            5 => Self::Hamming,
            _ => return None,
        })
    }

    /// Pillow's number for the filter.
    pub fn pil_number(self) -> u64 {
        match self {
            Self::Nearest => 0,
            Self::Lanczos => 1,
            Self::Bilinear => 2,
            Self::Bicubic => 3,
            Self::Box => 4,
            Self::Hamming => 5,
        }
    }

    /// The filter's support and kernel, or `None` for nearest (which Pillow does not resample
    /// by convolution).
    fn kernel(self) -> Option<(f64, fn(f64) -> f64)> {
        match self {
            Self::Nearest => None,
            Self::Lanczos => Some((3.0, lanczos)),
            Self::Bilinear => Some((1.0, bilinear)),
            Self::Bicubic => Some((2.0, bicubic)),
            Self::Box => Some((0.5, box_filter)),
            Self::Hamming => Some((1.0, hamming)),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Resample {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = u64::deserialize(deserializer)?;
        Self::from_pil(number).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown PIL resampling filter {number} (expected 0 to 5)"
            ))
        })
    }
}

fn box_filter(x: f64) -> f64 {
    if x > -0.5 && x <= 0.5 { 1.0 } else { 0.0 }
}

fn bilinear(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

fn hamming(x: f64) -> f64 {
    let x = x.abs();
    if x == 0.0 {
        1.0
    } else if x >= 1.0 {
        0.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x * (0.54 + 0.46 * x.cos())
    }
}

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

fn lanczos(x: f64) -> f64 {
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// The taps of one axis: for output index `i`, input indices `first[i]..first[i] + count[i]`
/// with fixed-point weights `weights[i * ksize..]`.
struct Taps {
    ksize: usize,
    first: Vec<usize>,
    count: Vec<usize>,
    weights: Vec<i32>,
}

/// `precompute_coeffs` + `normalize_coeffs_8bpc` for the whole axis (`box` = `0..in_size`).
fn taps(in_size: usize, out_size: usize, support: f64, filter: fn(f64) -> f64) -> Taps {
    // Pillow keeps the box in single precision: in1 - in0 = (float)in_size.
    let scale = (in_size as f32) as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = support * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut first = Vec::with_capacity(out_size);
    let mut count = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0.0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C casts truncate toward zero; the lower bound is clamped at 0 anyway.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let mut ww = 0.0;
        for (x, slot) in k.iter_mut().enumerate().take(n) {
            let w = filter(((x + xmin) as f64 - center + 0.5) * ss);
            *slot = w;
            ww += w;
        }
        for x in 0..n {
            if ww != 0.0 {
                k[x] /= ww;
            }
            let scaled = k[x] * (1u32 << PRECISION_BITS) as f64;
            weights[xx * ksize + x] = if k[x] < 0.0 {
                (-0.5 + scaled) as i32
            } else {
                (0.5 + scaled) as i32
            };
        }
        first.push(xmin);
        count.push(n);
    }
    Taps {
        ksize,
        first,
        count,
        weights,
    }
}

fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes an RGB image stored row-major (`[height][width][3]`) to `out_w` x `out_h` as
/// `PIL.Image.resize((out_w, out_h), resample)` does; `None` for [`Resample::Nearest`].
pub(crate) fn resize_rgb(
    pixels: &[u8],
    (in_w, in_h): (usize, usize),
    (out_w, out_h): (usize, usize),
    resample: Resample,
) -> Option<Vec<u8>> {
    if (in_w, in_h) == (out_w, out_h) {
        return Some(pixels.to_vec());
    }
    let (support, filter) = resample.kernel()?;
    let horizontal = taps(in_w, out_w, support, filter);
    let vertical = taps(in_h, out_h, support, filter);
    let need_horizontal = out_w != in_w;
    let need_vertical = out_h != in_h;
    // Rows the vertical pass reads; the horizontal pass only computes those.
    let row_first = vertical.first[0];
    let row_last = vertical.first[out_h - 1] + vertical.count[out_h - 1];
    let (mut data, mut width, mut height, mut row_offset) = (pixels.to_vec(), in_w, in_h, 0);
    if need_horizontal {
        data = horizontal_pass(pixels, in_w, row_first..row_last, &horizontal, out_w);
        width = out_w;
        height = row_last - row_first;
        row_offset = row_first;
    }
    if need_vertical {
        data = vertical_pass(&data, width, row_offset, &vertical, out_h);
        height = out_h;
    }
    debug_assert_eq!(data.len(), width * height * 3);
    Some(data)
}

fn horizontal_pass(
    pixels: &[u8],
    in_w: usize,
    rows: std::ops::Range<usize>,
    taps: &Taps,
    out_w: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * out_w * 3);
    for y in rows {
        let row = &pixels[y * in_w * 3..(y + 1) * in_w * 3];
        for xx in 0..out_w {
            let k = &taps.weights[xx * taps.ksize..xx * taps.ksize + taps.count[xx]];
            let start = taps.first[xx];
            let mut sums = [1i32 << (PRECISION_BITS - 1); 3];
            for (x, &w) in k.iter().enumerate() {
                let p = &row[(start + x) * 3..(start + x) * 3 + 3];
                for c in 0..3 {
                    sums[c] = sums[c].wrapping_add((p[c] as i32).wrapping_mul(w));
                }
            }
            out.extend(sums.map(clip8));
        }
    }
    out
}

fn vertical_pass(
    pixels: &[u8],
    width: usize,
    row_offset: usize,
    taps: &Taps,
    out_h: usize,
) -> Vec<u8> {
    let stride = width * 3;
    let mut out = Vec::with_capacity(out_h * stride);
    let mut sums = vec![0i32; stride];
    for yy in 0..out_h {
        let k = &taps.weights[yy * taps.ksize..yy * taps.ksize + taps.count[yy]];
        let start = taps.first[yy] - row_offset;
        sums.fill(1i32 << (PRECISION_BITS - 1));
        for (y, &w) in k.iter().enumerate() {
            let row = &pixels[(start + y) * stride..(start + y + 1) * stride];
            for (sum, &p) in sums.iter_mut().zip(row) {
                *sum = sum.wrapping_add((p as i32).wrapping_mul(w));
            }
        }
        out.extend(sums.iter().map(|&s| clip8(s)));
    }
    out
}
