//! Bad input gets a clear error, never a panic: corrupt, truncated, empty, extreme and bomb
//! images; detection options out of range; model files that are not detectors.

use std::io::Cursor;

use burn::tensor::Device;
use faceid_detect::testing::{fixture, photo};
use faceid_detect::{
    AttemptOutcome, DetectError, DetectOptions, Detector, FaceImage, ImageError, ImageLimit,
    ImageLimits,
};
use image::{ImageFormat, RgbImage};

fn decode(bytes: &[u8]) -> Result<FaceImage, ImageError> {
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

/// A PNG that declares `width` x `height` RGB pixels and carries no pixel data (an empty
/// `IDAT`, so that its header reads to the end).
fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    for (kind, data) in [(&b"IHDR"[..], &ihdr[..]), (b"IDAT", &[]), (b"IEND", &[])] {
        let mut chunk = kind.to_vec();
        chunk.extend(data);
        png.extend((data.len() as u32).to_be_bytes());
        png.extend(&chunk);
        png.extend(crc32(&chunk).to_be_bytes());
    }
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
            matches!(decode(bytes), Err(ImageError::Decode { .. })),
            "{} bytes",
            bytes.len()
        );
    }
    // A truncated JPEG may decode to a grey-filled image or fail; it must do one of the two.
    for cut in [200, jpeg.len() / 2] {
        match decode(&jpeg[..cut]) {
            Ok(image) => assert_eq!((image.width(), image.height()), (910, 1137)),
            Err(ImageError::Decode { .. }) => {}
            Err(other) => panic!("unexpected error {other}"),
        }
    }
}

#[test]
fn empty_images_are_refused() {
    assert!(matches!(
        FaceImage::from_rgb("empty", RgbImage::new(0, 0)),
        Err(ImageError::EmptyImage { .. })
    ));
    assert!(decode(&png_header(0, 0)).is_err());
}

#[test]
fn decompression_bombs_are_refused_from_the_header() {
    // Over a side, and within both sides but over the pixel count: refused with the size the
    // header declares, and the limit named.
    for (w, h, limit) in [
        (100_000, 100_000, ImageLimit::Width { max: 8192 }),
        (20_000, 20_000, ImageLimit::Width { max: 8192 }),
        (1, 4_000_000, ImageLimit::Height { max: 8192 }),
        (8192, 8192, ImageLimit::Pixels { max: 8192 * 6144 }),
    ] {
        match decode(&png_header(w, h)) {
            Err(ImageError::TooLarge {
                image,
                width,
                height,
                limit: got,
            }) => {
                assert_eq!((image.as_str(), width, height, got), ("test", w, h, limit));
            }
            other => panic!("{w}x{h}: {other:?}"),
        }
        assert!(matches!(
            FaceImage::probe("test", &png_header(w, h), &ImageLimits::default()),
            Err(ImageError::TooLarge { .. })
        ));
    }
    assert_eq!(
        FaceImage::probe("test", &png_header(8192, 6144), &ImageLimits::default()).unwrap(),
        (8192, 6144)
    );
    let tight = ImageLimits {
        max_width: 100,
        max_height: 100,
        max_pixels: 10_000,
        max_alloc: 1 << 20,
    };
    let err = FaceImage::open(photo("astronaut.png"), &tight).unwrap_err();
    assert!(err.to_string().contains("astronaut.png"), "{err}");
    assert!(err.to_string().contains("width limit of 100"), "{err}");
}

#[test]
fn decoding_memory_is_checked_before_decoding() {
    // 512x512 RGB needs 768 KiB decoded, and as much again when an orientation turns it.
    let png = encode(RgbImage::new(512, 512).into(), ImageFormat::Png);
    let limits = |max_alloc| ImageLimits {
        max_alloc,
        ..ImageLimits::default()
    };
    assert!(FaceImage::from_bytes("ok", &png, &limits(1 << 20)).is_ok());
    match FaceImage::from_bytes("small.png", &png, &limits(512 << 10)) {
        Err(ImageError::TooLarge {
            image,
            limit: ImageLimit::Memory { needed, max },
            ..
        }) => {
            assert_eq!(image, "small.png");
            assert_eq!((needed, max), (3 * 512 * 512, 512 << 10));
        }
        other => panic!("{other:?}"),
    }
    // A grey image needs its own buffer and the RGB one.
    let grey = encode(image::GrayImage::new(512, 512).into(), ImageFormat::Png);
    match FaceImage::from_bytes("grey.png", &grey, &limits(900 << 10)) {
        Err(ImageError::TooLarge {
            limit: ImageLimit::Memory { needed, .. },
            ..
        }) => assert_eq!(needed, 4 * 512 * 512),
        other => panic!("{other:?}"),
    }
}

#[test]
fn very_thin_image_reports_every_attempt() {
    let detector = Detector::retinaface(&Device::flex()).unwrap();
    let image = FaceImage::from_rgb("thin.png", RgbImage::new(1, 20_000)).unwrap();
    match detector.detect(&image, &DetectOptions::default()) {
        Err(DetectError::NoFace { image, attempts }) => {
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
            Err(DetectError::InvalidOption(_))
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

#[test]
fn models_that_are_not_detectors_are_refused() {
    let device = Device::flex();
    let err = Detector::from_file(fixture("arcface_r50_bn.onnx"), &device).unwrap_err();
    assert!(matches!(err, DetectError::WrongModel { .. }), "{err}");
    let err = Detector::from_file(photo("obama.jpg"), &device).unwrap_err();
    assert!(matches!(err, DetectError::Onnx(_)), "{err}");
    let err = Detector::from_file("/nonexistent.onnx", &device).unwrap_err();
    assert!(matches!(err, DetectError::Io { .. }), "{err}");
}
