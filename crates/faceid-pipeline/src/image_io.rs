//! From decoded tensors to 8-bit RGB images, as diffusers' `numpy_to_pil` does.

use burn::tensor::Tensor;
use image::RgbImage;

/// Converts VAE output `[batch, 3, h, w]` (about `[-1, 1]`) to images:
/// `round(clamp(x / 2 + 0.5, 0, 1) · 255)`.
pub fn to_rgb_images(decoded: Tensor<4>) -> Vec<RgbImage> {
    let [batch, _, h, w] = decoded.dims();
    let pixels = (decoded / 2.0 + 0.5).clamp(0.0, 1.0).permute([0, 2, 3, 1]);
    let values: Vec<f32> = pixels.try_into_vec_as::<f32>().expect("image readback");
    values
        .chunks_exact(h * w * 3)
        .take(batch)
        .map(|chunk| {
            let bytes = chunk.iter().map(|v| (v * 255.0).round() as u8).collect();
            RgbImage::from_raw(w as u32, h as u32, bytes).expect("sized buffer")
        })
        .collect()
}

/// Tiles images of one size into a grid of `ceil(sqrt(n))` columns (2×2 for four).
pub fn grid(images: &[RgbImage]) -> RgbImage {
    let Some(first) = images.first() else {
        return RgbImage::new(0, 0);
    };
    let (w, h) = first.dimensions();
    let cols = (images.len() as f64).sqrt().ceil() as u32;
    let rows = (images.len() as u32).div_ceil(cols);
    let mut out = RgbImage::new(w * cols, h * rows);
    for (i, img) in images.iter().enumerate() {
        let (col, row) = (i as u32 % cols, i as u32 / cols);
        image::imageops::replace(&mut out, img, (col * w) as i64, (row * h) as i64);
    }
    out
}
