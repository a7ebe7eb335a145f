//! Boxes and keypoints drawn on an image for `faceid detect --draw`.

use faceid_face::Face;
use image::{Rgb, RgbImage};

const BOX_COLOUR: Rgb<u8> = Rgb([0, 255, 0]);
const KEYPOINT_COLOURS: [Rgb<u8>; 5] = [
    Rgb([255, 0, 0]),
    Rgb([0, 0, 255]),
    Rgb([255, 255, 0]),
    Rgb([255, 0, 255]),
    Rgb([0, 255, 255]),
];

/// Draws each face's box (2 px) and its five keypoints (5×5 squares).
pub fn faces(image: &mut RgbImage, faces: &[Face]) {
    for face in faces {
        let [x1, y1, x2, y2] = face.bbox.map(|v| v.round() as i64);
        for t in 0..2 {
            for x in x1..=x2 {
                put(image, x, y1 + t, BOX_COLOUR);
                put(image, x, y2 - t, BOX_COLOUR);
            }
            for y in y1..=y2 {
                put(image, x1 + t, y, BOX_COLOUR);
                put(image, x2 - t, y, BOX_COLOUR);
            }
        }
        for (k, [x, y]) in face.kps.iter().enumerate() {
            let (cx, cy) = (x.round() as i64, y.round() as i64);
            for dy in -2..=2 {
                for dx in -2..=2 {
                    put(
                        image,
                        cx + dx,
                        cy + dy,
                        KEYPOINT_COLOURS[k % KEYPOINT_COLOURS.len()],
                    );
                }
            }
        }
    }
}

fn put(image: &mut RgbImage, x: i64, y: i64, colour: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < image.width() && (y as u32) < image.height() {
        image.put_pixel(x as u32, y as u32, colour);
    }
}
