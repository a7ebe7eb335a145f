//! Fixture readers and test inputs shared by the integration tests of the face crates
//! (`faceid-detect`, `faceid-embed`, `faceid-face`); behind the `testing` feature, for tests
//! only (they panic with the path on failure).

use std::io::Write;
use std::path::PathBuf;

use image::RgbImage;
use serde_json::Value;

/// The repository's root folder (every face crate sits at `crates/<name>`).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Reference fixtures written by `tests/fixtures/gen_face.py`.
pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/data/face").join(name)
}

/// The real photos.
pub fn photo(name: &str) -> PathBuf {
    repo().join("tests/data/faces").join(name)
}

/// A JSON fixture of `tests/data/face`.
pub fn json(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixture(name)).unwrap()).unwrap()
}

/// A PNG written by OpenCV (BGR on disk order is handled by the PNG format itself).
pub fn rgb(path: PathBuf) -> RgbImage {
    image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

/// A JSON array of numbers.
pub fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// Five keypoints from a JSON array of `[x, y]` pairs.
pub fn points(v: &Value) -> [[f32; 2]; 5] {
    let rows: Vec<Vec<f32>> = v.as_array().unwrap().iter().map(f32s).collect();
    std::array::from_fn(|i| [rows[i][0], rows[i][1]])
}

/// Largest absolute difference between two images of the same size.
pub fn max_pixel_diff(a: &RgbImage, b: &RgbImage) -> u8 {
    assert_eq!(a.dimensions(), b.dimensions());
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

/// A black 1-bit greyscale PNG, written row by row (it never exists decoded here): a few tens
/// of kilobytes that declare `width` × `height` pixels.
pub fn one_bit_png(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::One);
    encoder.set_compression(png::Compression::High);
    let mut writer = encoder.write_header().unwrap();
    let mut stream = writer.stream_writer().unwrap();
    let row = vec![0u8; width.div_ceil(8) as usize];
    for _ in 0..height {
        stream.write_all(&row).unwrap();
    }
    stream.finish().unwrap();
    drop(writer);
    out
}
