//! Comparing generated images with the reference's float images.

use faceid_core::HostTensor;
use faceid_core::testing::max_pixel_error;

/// The worst channel error, in levels of 255, of 8-bit images against diffusers' float images
/// `[n, height, width, 3]` in [0, 1]; the count and every size must match.
pub fn worst_error(images: &[image::RgbImage], expected: &HostTensor) -> f32 {
    assert_eq!(images.len(), expected.shape[0], "image count");
    let per_image = expected.shape[1] * expected.shape[2] * 3;
    let mut worst = 0.0f32;
    for (img, want) in images.iter().zip(expected.data.chunks(per_image)) {
        assert_eq!(
            (img.height() as usize, img.width() as usize),
            (expected.shape[1], expected.shape[2]),
            "image size"
        );
        worst = worst.max(max_pixel_error(img.as_raw(), want));
    }
    worst
}
