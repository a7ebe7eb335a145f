//! Five-point face alignment as insightface's `face_align.norm_crop`: a similarity transform
//! (Umeyama, with scale) from the detected keypoints to the ArcFace template, then OpenCV's
//! bilinear `warpAffine` with a black border.

use image::RgbImage;

use crate::error::EmbedError;

/// The ArcFace keypoint template in a 112x112 crop: left eye, right eye, nose, left and right
/// mouth corners (`arcface_dst` of insightface, float32 as there).
pub const ARCFACE_TEMPLATE: [[f32; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// Crop size of the recognition models.
pub const RECOGNITION_CROP: u32 = 112;

/// A 2x3 affine matrix mapping image coordinates to crop coordinates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine(pub [[f64; 3]; 2]);

impl Affine {
    /// Applies the transform to a point.
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        let m = &self.0;
        [
            m[0][0] * p[0] + m[0][1] * p[1] + m[0][2],
            m[1][0] * p[0] + m[1][1] * p[1] + m[1][2],
        ]
    }
}

/// The template scaled to a crop of `size` pixels, as insightface's `estimate_norm` builds it:
/// sizes divisible by 112 scale it by `size / 112`; sizes divisible by 128 scale it by
/// `size / 128` and shift it right by `8 * size / 128`.
pub fn template(size: u32) -> Result<[[f32; 2]; 5], EmbedError> {
    let (ratio, shift) = if size > 0 && size.is_multiple_of(112) {
        (size as f32 / 112.0, 0.0)
    } else if size > 0 && size.is_multiple_of(128) {
        let ratio = size as f32 / 128.0;
        (ratio, 8.0 * ratio)
    } else {
        return Err(EmbedError::InvalidOption(format!(
            "crop size {size} is not a multiple of 112 or 128"
        )));
    };
    Ok(ARCFACE_TEMPLATE.map(|[x, y]| [x * ratio + shift, y * ratio]))
}

/// Least-squares similarity transform (rotation, uniform scale, translation; no reflection)
/// taking `src` onto `dst`. In two dimensions Umeyama's SVD solution reduces to this closed form.
pub fn similarity(src: &[[f32; 2]; 5], dst: &[[f32; 2]; 5]) -> Option<Affine> {
    let n = src.len() as f64;
    let mean = |pts: &[[f32; 2]; 5]| {
        let (sx, sy) = pts.iter().fold((0.0, 0.0), |(a, b), p| {
            (a + f64::from(p[0]), b + f64::from(p[1]))
        });
        [sx / n, sy / n]
    };
    let (ms, md) = (mean(src), mean(dst));
    let (mut var, mut dot, mut cross) = (0.0, 0.0, 0.0);
    for (s, d) in src.iter().zip(dst) {
        let (sx, sy) = (f64::from(s[0]) - ms[0], f64::from(s[1]) - ms[1]);
        let (dx, dy) = (f64::from(d[0]) - md[0], f64::from(d[1]) - md[1]);
        var += sx * sx + sy * sy;
        dot += sx * dx + sy * dy;
        cross += sx * dy - sy * dx;
    }
    if !var.is_finite() || var <= 1e-12 {
        return None;
    }
    let (a, b) = (dot / var, cross / var);
    let tx = md[0] - (a * ms[0] - b * ms[1]);
    let ty = md[1] - (b * ms[0] + a * ms[1]);
    Some(Affine([[a, -b, tx], [b, a, ty]]))
}

/// insightface's `estimate_norm`: the transform from keypoints to the template of `size`.
pub fn estimate_norm(kps: &[[f32; 2]; 5], size: u32) -> Result<Affine, EmbedError> {
    similarity(kps, &template(size)?).ok_or(EmbedError::DegenerateKeypoints(*kps))
}

/// insightface's `norm_crop`: the aligned `size` x `size` crop of a face.
pub fn norm_crop(image: &RgbImage, kps: &[[f32; 2]; 5], size: u32) -> Result<RgbImage, EmbedError> {
    Ok(warp_affine(image, &estimate_norm(kps, size)?, size, size))
}

/// `cv2.warpAffine(src, m, (width, height), flags=INTER_LINEAR, borderValue=0)` on 8-bit RGB.
///
/// Follows OpenCV's (4.11 and later) float kernel: the matrix is inverted in double precision,
/// source coordinates are computed in single precision with fused multiply-adds, taps outside
/// the image read 0, and the blend is rounded half to even.
pub fn warp_affine(src: &RgbImage, m: &Affine, width: u32, height: u32) -> RgbImage {
    let inv = invert(m);
    let f = inv.map(|v| v as f32);
    let (sw, sh) = (i64::from(src.width()), i64::from(src.height()));
    let pixel = |x: i64, y: i64, c: usize| -> f32 {
        if (0..sw).contains(&x) && (0..sh).contains(&y) {
            f32::from(src.get_pixel(x as u32, y as u32)[c])
        } else {
            0.0
        }
    };
    let mut out = RgbImage::new(width, height);
    for y in 0..height {
        let yf = y as f32;
        let base_x = f[1] * yf + f[2];
        let base_y = f[4] * yf + f[5];
        for x in 0..width {
            let xf = x as f32;
            let sx = f[0].mul_add(xf, base_x);
            let sy = f[3].mul_add(xf, base_y);
            let (fx, fy) = (sx.floor(), sy.floor());
            let (ax, ay) = (sx - fx, sy - fy);
            let (ix, iy) = (fx as i64, fy as i64);
            let mut px = [0u8; 3];
            for (c, v) in px.iter_mut().enumerate() {
                let (p00, p01) = (pixel(ix, iy, c), pixel(ix + 1, iy, c));
                let (p10, p11) = (pixel(ix, iy + 1, c), pixel(ix + 1, iy + 1, c));
                let top = ax.mul_add(p01 - p00, p00);
                let bottom = ax.mul_add(p11 - p10, p10);
                let blended = ay.mul_add(bottom - top, top);
                *v = blended.round_ties_even().clamp(0.0, 255.0) as u8;
            }
            out.put_pixel(x, y, image::Rgb(px));
        }
    }
    out
}

/// OpenCV's inversion of a 2x3 affine matrix (as `warpAffine` does without `WARP_INVERSE_MAP`).
fn invert(m: &Affine) -> [f64; 6] {
    let [[m0, m1, m2], [m3, m4, m5]] = m.0;
    let det = m0 * m4 - m1 * m3;
    let d = if det != 0.0 { 1.0 / det } else { 0.0 };
    let (a11, a22) = (m4 * d, m0 * d);
    let (a12, a21) = (-m1 * d, -m3 * d);
    let b1 = -a11 * m2 - a12 * m5;
    let b2 = -a21 * m2 - a22 * m5;
    [a11, a12, b1, a21, a22, b2]
}
