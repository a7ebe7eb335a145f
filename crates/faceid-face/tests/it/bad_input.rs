//! Bad input gets a clear error, never a panic: corrupt, truncated, empty, extreme and bomb
//! images; unsafe or oversized archives; model files of the wrong kind.

use std::io::{Cursor, Write};

use crate::common::{fixture, photo};
use burn::tensor::Device;
use faceid_face::{
    AttemptOutcome, DetectOptions, Detector, FaceError, FaceImage, ImageLimits, Recognizer,
    ZipLimits, read_zip,
};
use image::{ImageFormat, RgbImage};
use zip::write::SimpleFileOptions;

fn decode(bytes: &[u8]) -> Result<FaceImage, FaceError> {
    FaceImage::from_bytes("test", bytes, &ImageLimits::default())
}

fn encode(image: image::DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG that declares `width` x `height` RGB pixels and carries no pixel data.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = b"IHDR".to_vec();
    chunk.extend(width.to_be_bytes());
    chunk.extend(height.to_be_bytes());
    chunk.extend([8, 2, 0, 0, 0]);
    png.extend(13u32.to_be_bytes());
    png.extend(&chunk);
    png.extend(crc32(&chunk).to_be_bytes());
    png
}

#[test]
fn corrupt_and_truncated_images_are_decode_errors() {
    let png = std::fs::read(photo("astronaut.png")).unwrap();
    let jpeg = std::fs::read(photo("obama.jpg")).unwrap();
    for bytes in [
        &b""[..],
        b"not an image at all",
        &[0u8; 100],
        &png[..png.len() / 3],
        &png[..40],
    ] {
        assert!(
            matches!(decode(bytes), Err(FaceError::Decode { .. })),
            "{} bytes",
            bytes.len()
        );
    }
    // A truncated JPEG may decode to a grey-filled image or fail; it must do one of the two.
    for cut in [200, jpeg.len() / 2] {
        match decode(&jpeg[..cut]) {
            Ok(image) => assert_eq!((image.width(), image.height()), (910, 1137)),
            Err(FaceError::Decode { .. }) => {}
            Err(other) => panic!("unexpected error {other}"),
        }
    }
}

#[test]
fn empty_images_are_refused() {
    assert!(matches!(
        FaceImage::from_rgb("empty", RgbImage::new(0, 0)),
        Err(FaceError::EmptyImage { .. })
    ));
    assert!(decode(&png_header(0, 0)).is_err());
}

#[test]
fn decompression_bombs_are_stopped_by_the_limits() {
    // Over the dimension limit, and within it but over the allocation limit.
    for (w, h) in [(100_000, 100_000), (20_000, 20_000), (1, 4_000_000)] {
        let err = decode(&png_header(w, h)).unwrap_err();
        assert!(matches!(err, FaceError::Decode { .. }), "{w}x{h}: {err}");
    }
    let tight = ImageLimits {
        max_width: 100,
        max_height: 100,
        max_alloc: 1 << 20,
    };
    let err = FaceImage::open(photo("astronaut.png"), &tight).unwrap_err();
    assert!(err.to_string().contains("astronaut.png"), "{err}");
}

#[test]
fn very_thin_image_reports_every_attempt() {
    let detector = Detector::retinaface(&Device::flex()).unwrap();
    let image = FaceImage::from_rgb("thin.png", RgbImage::new(1, 20_000)).unwrap();
    match detector.detect(&image, &DetectOptions::default()) {
        Err(FaceError::NoFace { image, attempts }) => {
            assert_eq!(image, "thin.png");
            assert_eq!(attempts.len(), 8);
            assert!(
                attempts
                    .iter()
                    .all(|a| a.outcome == AttemptOutcome::ImageTooThin)
            );
        }
        other => panic!("expected NoFace, got {other:?}"),
    }
}

#[test]
fn no_face_error_names_the_image_and_attempts() {
    let detector = Detector::retinaface(&Device::flex()).unwrap();
    let image = FaceImage::from_rgb(
        "grey.png",
        RgbImage::from_pixel(80, 60, image::Rgb([128; 3])),
    )
    .unwrap();
    let options = DetectOptions {
        det_size: 384,
        ..DetectOptions::default()
    };
    let err = detector.detect(&image, &options).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("grey.png"), "{message}");
    assert!(
        message.contains("det_size 384") && message.contains("det_size 320"),
        "{message}"
    );
    assert!(message.contains("50% padding"), "{message}");
}

#[test]
fn bad_detect_options_are_refused() {
    let detector = Detector::retinaface(&Device::flex()).unwrap();
    let image = FaceImage::from_rgb("x", RgbImage::new(8, 8)).unwrap();
    for options in [
        DetectOptions {
            det_size: 100,
            ..DetectOptions::default()
        },
        DetectOptions {
            det_size: 0,
            ..DetectOptions::default()
        },
        DetectOptions {
            score_threshold: f32::NAN,
            ..DetectOptions::default()
        },
    ] {
        assert!(matches!(
            detector.detect(&image, &options),
            Err(FaceError::InvalidOption(_))
        ));
    }
}

#[test]
fn exif_orientation_grey_and_alpha_are_honoured() {
    // A 40x20 JPEG with an EXIF orientation of 6 (rotate 90 degrees clockwise) reads as 20x40.
    let jpeg = encode(
        RgbImage::from_pixel(40, 20, image::Rgb([200, 10, 10])).into(),
        ImageFormat::Jpeg,
    );
    let mut tiff = b"II*\0\x08\0\0\0\x01\0".to_vec();
    tiff.extend([0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0]);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend(tiff);
    let mut rotated = jpeg[..2].to_vec();
    rotated.extend([0xff, 0xe1]);
    rotated.extend(((app1.len() + 2) as u16).to_be_bytes());
    rotated.extend(app1);
    rotated.extend(&jpeg[2..]);
    let image = decode(&rotated).unwrap();
    assert_eq!((image.width(), image.height()), (20, 40));

    let grey = encode(
        image::GrayImage::from_pixel(4, 3, image::Luma([77])).into(),
        ImageFormat::Png,
    );
    assert_eq!(decode(&grey).unwrap().rgb().get_pixel(1, 1).0, [77, 77, 77]);
    let rgba = encode(
        image::RgbaImage::from_pixel(4, 3, image::Rgba([1, 2, 3, 0])).into(),
        ImageFormat::Png,
    );
    assert_eq!(decode(&rgba).unwrap().rgb().get_pixel(0, 0).0, [1, 2, 3]);
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        writer.start_file(*name, options).unwrap();
        writer.write_all(data).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

fn small_png() -> Vec<u8> {
    encode(
        RgbImage::from_pixel(8, 8, image::Rgb([9, 9, 9])).into(),
        ImageFormat::Png,
    )
}

#[test]
fn zip_images_are_read_and_other_entries_skipped() {
    let png = small_png();
    let archive = zip_of(&[
        ("b/face2.PNG", &png),
        ("a.png", &png),
        ("notes.txt", b"hello"),
        ("__MACOSX/._a.png", b"junk"),
        (".hidden.png", b"junk"),
    ]);
    let images = read_zip(
        "faces.zip",
        &archive,
        &ZipLimits::default(),
        &ImageLimits::default(),
    )
    .unwrap();
    let names: Vec<&str> = images.iter().map(|i| i.name()).collect();
    assert_eq!(names, ["faces.zip:a.png", "faces.zip:b/face2.PNG"]);
}

#[test]
fn zip_path_traversal_is_refused() {
    let png = small_png();
    for name in ["../evil.png", "/etc/evil.png", "a/../../evil.png"] {
        let archive = zip_of(&[("ok.png", &png), (name, &png)]);
        let err = read_zip(
            "x.zip",
            &archive,
            &ZipLimits::default(),
            &ImageLimits::default(),
        )
        .unwrap_err();
        assert!(matches!(err, FaceError::Archive { .. }), "{name}: {err}");
    }
}

#[test]
fn zip_bombs_and_oversized_archives_are_refused() {
    let zeros = vec![0u8; 8 << 20];
    let archive = zip_of(&[("bomb.png", &zeros)]);
    assert!(
        archive.len() < 100_000,
        "the test archive should be highly compressed"
    );
    let limits = ZipLimits {
        max_entries: 10,
        max_entry_bytes: 1 << 20,
        max_total_bytes: 4 << 20,
    };
    let err = read_zip("bomb.zip", &archive, &limits, &ImageLimits::default()).unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");

    // The total budget holds across entries that are each within their own limit.
    let chunk = vec![0u8; 900 << 10];
    let entries: Vec<(String, &[u8])> = (0..6).map(|i| (format!("{i}.png"), &chunk[..])).collect();
    let refs: Vec<(&str, &[u8])> = entries.iter().map(|(n, d)| (n.as_str(), *d)).collect();
    let err = read_zip("many.zip", &zip_of(&refs), &limits, &ImageLimits::default()).unwrap_err();
    assert!(matches!(err, FaceError::Archive { .. }), "{err}");

    let png = small_png();
    let names: Vec<String> = (0..11).map(|i| format!("{i}.png")).collect();
    let many: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &png[..])).collect();
    let err = read_zip(
        "count.zip",
        &zip_of(&many),
        &limits,
        &ImageLimits::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("11 entries"), "{err}");

    assert!(
        read_zip(
            "junk.zip",
            b"PK\x03\x04garbage",
            &limits,
            &ImageLimits::default()
        )
        .is_err()
    );
}

#[test]
fn models_of_the_wrong_kind_are_refused() {
    let device = Device::flex();
    let err = Detector::from_file(fixture("arcface_r50_bn.onnx"), &device).unwrap_err();
    assert!(matches!(err, FaceError::WrongModel { .. }), "{err}");
    let err = Recognizer::from_file(fixture("scrfd_bn_dynamic.onnx"), &device).unwrap_err();
    assert!(matches!(err, FaceError::WrongModel { .. }), "{err}");
    let err = Detector::from_file(photo("obama.jpg"), &device).unwrap_err();
    assert!(matches!(err, FaceError::Onnx(_)), "{err}");
    let err = Detector::from_file("/nonexistent.onnx", &device).unwrap_err();
    assert!(matches!(err, FaceError::Io { .. }), "{err}");
}
