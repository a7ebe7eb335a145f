//! insightface's detector input: the image resized into the top-left of a black square
//! (`SCRFD.detect`'s `det_img`), optionally behind a virtual border, and the way back from
//! detector-input to image coordinates.

use image::RgbImage;

use crate::face::Face;
use crate::resize::resize_linear;

/// Where detection letterboxed the image: `det = image * scale + offset`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Placement {
    pub scale: f32,
    pub offset: [f32; 2],
}

/// insightface's letterbox: resize keeping the aspect ratio to fit `width` x `height` (sizes
/// truncated to integers, `det_scale = new_height / image_height`) and paste at the top-left of
/// a black canvas. With `padding > 0` the image is first surrounded (virtually) by a black border
/// of that fraction of its larger side. `None` when the image shrinks to nothing.
pub(crate) fn letterbox(
    rgb: &RgbImage,
    width: u32,
    height: u32,
    padding: f32,
) -> Option<(RgbImage, Placement)> {
    let pad = (f64::from(padding) * f64::from(rgb.width().max(rgb.height()))).round();
    let (img_w, img_h) = (
        f64::from(rgb.width()) + 2.0 * pad,
        f64::from(rgb.height()) + 2.0 * pad,
    );
    let im_ratio = img_h / img_w;
    let model_ratio = f64::from(height) / f64::from(width);
    let (new_w, new_h) = if im_ratio > model_ratio {
        ((f64::from(height) / im_ratio) as u32, height)
    } else {
        (width, (f64::from(width) * im_ratio) as u32)
    };
    let scale = f64::from(new_h) / img_h;
    let (content_w, content_h, offset) = if pad == 0.0 {
        (new_w, new_h, 0.0)
    } else {
        (
            (f64::from(rgb.width()) * scale) as u32,
            (f64::from(rgb.height()) * scale) as u32,
            (pad * scale).floor(),
        )
    };
    if content_w == 0 || content_h == 0 || scale <= 0.0 {
        return None;
    }
    let resized = resize_linear(rgb, content_w, content_h);
    let mut canvas = RgbImage::new(width, height);
    image::imageops::replace(&mut canvas, &resized, offset as i64, offset as i64);
    Some((
        canvas,
        Placement {
            scale: scale as f32,
            offset: [offset as f32; 2],
        },
    ))
}

/// Maps a face from detector-input to image coordinates (single precision, as insightface).
pub(crate) fn to_image(face: Face, p: Placement) -> Face {
    let x = |v: f32| (v - p.offset[0]) / p.scale;
    let y = |v: f32| (v - p.offset[1]) / p.scale;
    Face {
        bbox: [
            x(face.bbox[0]),
            y(face.bbox[1]),
            x(face.bbox[2]),
            y(face.bbox[3]),
        ],
        kps: face.kps.map(|[kx, ky]| [x(kx), y(ky)]),
        score: face.score,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_follows_insightface_sizes() {
        let img = RgbImage::new(910, 1137);
        let (canvas, p) = letterbox(&img, 640, 640, 0.0).unwrap();
        assert_eq!(canvas.dimensions(), (640, 640));
        // new_h = 640, new_w = int(640 / (1137 / 910)) = 512, det_scale = 640 / 1137.
        assert_eq!(p.scale, (640.0f64 / 1137.0) as f32);
        assert!(letterbox(&RgbImage::new(1, 20000), 640, 640, 0.0).is_none());
        assert!(letterbox(&RgbImage::new(1, 20000), 640, 640, 0.5).is_none());
    }
}
