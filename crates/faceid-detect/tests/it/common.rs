//! Paths and readers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use image::RgbImage;
use serde_json::Value;

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

pub fn json(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixture(name)).unwrap()).unwrap()
}

/// A PNG written by OpenCV (BGR on disk order is handled by the PNG format itself).
pub fn rgb(path: PathBuf) -> RgbImage {
    image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

pub fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

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
