//! `cv2.resize(..., interpolation=INTER_LINEAR)` on 8-bit images, bit for bit.
//!
//! insightface letterboxes the detector input with OpenCV's bilinear resize, which works in fixed
//! point: horizontal weights are rounded to 1/2048, rows are blended with 11-bit vertical weights
//! and rounded as OpenCV's vector kernel does. A resize by exactly one half in both directions
//! becomes OpenCV's 2x2 area average, as `cv::resize` itself decides. Matching this exactly keeps
//! the detector input identical to insightface's, not merely close.

use image::RgbImage;

/// Weight scale of OpenCV's fixed-point resize (`INTER_RESIZE_COEF_SCALE`).
const COEF_SCALE: f32 = 2048.0;

/// Source index and the two fixed-point weights for each destination coordinate.
fn taps(src: u32, dst: u32, clamp_weight: bool) -> Vec<(i64, i32, i32)> {
    let scale = 1.0 / (f64::from(dst) / f64::from(src));
    (0..dst)
        .map(|d| {
            let f = ((f64::from(d) + 0.5) * scale - 0.5) as f32;
            let floor = f.floor();
            let mut frac = f - floor;
            let mut s = floor as i64;
            if clamp_weight {
                if s < 0 {
                    frac = 0.0;
                    s = 0;
                }
                if s >= i64::from(src) - 1 {
                    frac = 0.0;
                    s = i64::from(src) - 1;
                }
            }
            let w0 = ((1.0 - frac) * COEF_SCALE).round_ties_even() as i32;
            let w1 = (frac * COEF_SCALE).round_ties_even() as i32;
            (s, w0, w1)
        })
        .collect()
}

/// Resizes with OpenCV's `INTER_LINEAR` semantics for 8-bit images.
pub fn resize_linear(src: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (sw, sh) = src.dimensions();
    if (sw, sh) == (width, height) {
        return src.clone();
    }
    if u64::from(width) * 2 == u64::from(sw) && u64::from(height) * 2 == u64::from(sh) {
        return area_half(src);
    }
    let last_x = i64::from(sw) - 1;
    let last_y = i64::from(sh) - 1;
    // Horizontal pass: one row of weighted sums (scaled by 2048) per source row.
    let xt = taps(sw, width, true);
    let rows: Vec<Vec<i32>> = (0..sh)
        .map(|y| {
            let mut row = Vec::with_capacity(width as usize * 3);
            for &(s, w0, w1) in &xt {
                let s1 = (s + 1).min(last_x);
                for c in 0..3 {
                    let p0 = i32::from(src.get_pixel(s as u32, y)[c]);
                    let p1 = i32::from(src.get_pixel(s1 as u32, y)[c]);
                    row.push(p0 * w0 + p1 * w1);
                }
            }
            row
        })
        .collect();
    let mut out = RgbImage::new(width, height);
    for (dy, (s, b0, b1)) in taps(sh, height, false).into_iter().enumerate() {
        let r0 = &rows[s.clamp(0, last_y) as usize];
        let r1 = &rows[(s + 1).clamp(0, last_y) as usize];
        let line = &mut out.as_mut()[dy * width as usize * 3..(dy + 1) * width as usize * 3];
        for (i, v) in line.iter_mut().enumerate() {
            let blended = (((r0[i] >> 4) * b0) >> 16) + (((r1[i] >> 4) * b1) >> 16) + 2;
            *v = (blended >> 2).clamp(0, 255) as u8;
        }
    }
    out
}

/// OpenCV's fast 2x2 area average, used for an exact 2x reduction.
fn area_half(src: &RgbImage) -> RgbImage {
    let (w, h) = (src.width() / 2, src.height() / 2);
    RgbImage::from_fn(w, h, |x, y| {
        let mut px = [0u8; 3];
        for (c, v) in px.iter_mut().enumerate() {
            let sum: u32 = [(0, 0), (1, 0), (0, 1), (1, 1)]
                .iter()
                .map(|&(dx, dy)| u32::from(src.get_pixel(2 * x + dx, 2 * y + dy)[c]))
                .sum();
            *v = ((sum + 2) >> 2) as u8;
        }
        image::Rgb(px)
    })
}
