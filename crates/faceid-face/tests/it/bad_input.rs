//! Unsafe or oversized archives get a clear error, never a panic; archives are read one image
//! at a time.

use std::io::{Cursor, Write};

use faceid_face::{
    FaceError, ImageLimit, ImageLimits, ZipImages, ZipLimits, for_each_zip_image, read_zip,
};
use image::{ImageFormat, RgbImage};
use zip::write::SimpleFileOptions;

fn encode(image: image::DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
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
        ..ZipLimits::default()
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
fn zip_images_come_one_at_a_time_after_every_check() {
    let png = small_png();
    let archive = zip_of(&[("b.png", &png), ("a.png", &png), ("c.txt", b"x")]);
    let mut images = ZipImages::new(
        "faces.zip",
        &archive,
        &ZipLimits::default(),
        &ImageLimits::default(),
    )
    .unwrap();
    assert_eq!(images.remaining(), 2);
    assert_eq!(images.next().unwrap().unwrap().name(), "faces.zip:a.png");
    assert_eq!(images.remaining(), 1);
    assert_eq!(images.next().unwrap().unwrap().name(), "faces.zip:b.png");
    assert!(images.next().is_none());

    let mut seen = Vec::new();
    let count = for_each_zip_image(
        "faces.zip",
        &archive,
        &ZipLimits::default(),
        &ImageLimits::default(),
        |image| {
            seen.push((image.name().to_string(), image.width()));
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(count, 2);
    assert_eq!(
        seen,
        [
            ("faces.zip:a.png".to_string(), 8),
            ("faces.zip:b.png".to_string(), 8)
        ]
    );

    // The visitor's error stops the walk and comes back as it was.
    let mut calls = 0;
    let err = for_each_zip_image(
        "faces.zip",
        &archive,
        &ZipLimits::default(),
        &ImageLimits::default(),
        |_| {
            calls += 1;
            Err(FaceError::NoRecognizer)
        },
    )
    .unwrap_err();
    assert!(matches!(err, FaceError::NoRecognizer));
    assert_eq!(calls, 1);
}

#[test]
fn zip_image_limits_are_checked_before_any_image_is_decoded() {
    // A corrupt image after a good one, or an oversized one, fails before the visitor runs.
    let png = small_png();
    let big = encode(RgbImage::new(300, 200).into(), ImageFormat::Png);
    let small_images = ImageLimits {
        max_width: 100,
        ..ImageLimits::default()
    };
    let archive = zip_of(&[("a.png", &png), ("b.png", &big)]);
    let mut calls = 0;
    let err = for_each_zip_image(
        "x.zip",
        &archive,
        &ZipLimits::default(),
        &small_images,
        |_| {
            calls += 1;
            Ok(())
        },
    )
    .unwrap_err();
    assert_eq!(calls, 0);
    match err {
        FaceError::ImageTooLarge {
            image,
            width,
            height,
            limit,
        } => {
            assert_eq!(image, "x.zip:b.png");
            assert_eq!((width, height), (300, 200));
            assert_eq!(limit, ImageLimit::Width { max: 100 });
        }
        other => panic!("{other:?}"),
    }
    let archive = zip_of(&[("a.png", &png), ("b.png", b"not a png")]);
    let err = read_zip(
        "x.zip",
        &archive,
        &ZipLimits::default(),
        &ImageLimits::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, FaceError::Decode { image, .. } if image == "x.zip:b.png"),
        "{err}"
    );

    // The archive's pixel budget counts every image's header.
    let limits = ZipLimits {
        max_total_pixels: 300 * 200 + 63,
        ..ZipLimits::default()
    };
    let archive = zip_of(&[("a.png", &png), ("b.png", &big)]);
    let err = read_zip("x.zip", &archive, &limits, &ImageLimits::default()).unwrap_err();
    assert!(matches!(err, FaceError::Archive { .. }), "{err}");
    assert!(err.to_string().contains("60063 pixels in all"), "{err}");
    let limits = ZipLimits {
        max_total_pixels: 300 * 200 + 64,
        ..ZipLimits::default()
    };
    assert_eq!(
        read_zip("x.zip", &archive, &limits, &ImageLimits::default())
            .unwrap()
            .len(),
        2
    );
}
