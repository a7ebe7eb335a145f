//! Identities from detected faces: the embedding equals insightface's for the same photo, the
//! crop is `norm_crop(image, kps, 224)` of the face that gave it, and a zip streams into the
//! same identity as its images decoded up front.

use std::io::{Cursor, Write};

use crate::embedding::{analyzer, astronaut};
use burn::tensor::Device;
use faceid_detect::testing::{f32s, fixture, json, max_pixel_diff, photo, points, rgb};
use faceid_face::align::norm_crop;
use faceid_face::{
    AverageMode, DetectOptions, Detector, FaceAnalyzer, FaceError, FaceImage, ImageLimits,
    ZipLimits, cosine_similarity, for_each_zip_image,
};
use image::RgbImage;

#[test]
fn identity_keeps_the_detected_face_its_embedding_and_its_224_crop() {
    let analyzer = analyzer("arcface_r50_bn.onnx");
    let image = astronaut();
    let options = DetectOptions::default();
    let identity = analyzer
        .identity(
            std::slice::from_ref(&image),
            &options,
            AverageMode::NormalizedMean,
            Some(224),
        )
        .unwrap();
    assert_eq!(identity.faces.len(), 1);
    assert!(identity.skipped.is_empty());
    let face = &identity.faces[0];
    assert_eq!(face.face, analyzer.detect(&image, &options).unwrap()[0]);

    // The crop is norm_crop at 224 from the keypoints that gave the embedding...
    let crop = face.crop.as_ref().unwrap();
    assert_eq!(crop, &norm_crop(image.rgb(), &face.face.kps, 224).unwrap());
    // ...and those keypoints are insightface's (its RetinaFace decoding, det_size 640), so the
    // crop is insightface's norm_crop(image, kps, 224) up to the keypoints' last bits.
    let reference = &json("align.json")[1];
    assert_eq!(reference["size"], 224);
    let kps = points(&reference["kps"]);
    let dkps = face
        .face
        .kps
        .iter()
        .zip(&kps)
        .map(|(a, b)| (a[0] - b[0]).abs().max((a[1] - b[1]).abs()))
        .fold(0.0f32, f32::max);
    let expected = rgb(fixture("crop_astronaut_224.png"));
    let diff = max_pixel_diff(crop, &expected);
    let mean = mean_pixel_diff(crop, &expected);
    eprintln!(
        "identity crop vs insightface: keypoints {dkps:.5} px, max diff {diff}, mean {mean:.4}"
    );
    assert!(dkps <= 0.05, "keypoints off by {dkps}");
    assert!(mean <= 0.5, "mean difference {mean}");

    // The embedding is insightface's for this photo, and what `embed` and `average` give.
    let reference = f32s(&json("embeddings.json")[0]["embedding"]);
    let cosine = cosine_similarity(&identity.embedding, &reference);
    eprintln!("identity embedding vs insightface: cosine {cosine:.7}");
    assert!(cosine >= 0.9999, "cosine {cosine}");
    let single = analyzer.embed(&image, &options).unwrap();
    assert_eq!(face.embedding, single.embedding);
    assert_eq!(face.norm, single.norm);
    let averaged = analyzer
        .average(&[image], &options, AverageMode::NormalizedMean)
        .unwrap();
    assert_eq!(identity.embedding, averaged.embedding);
    assert_eq!(identity.used(), averaged.used);
}

fn mean_pixel_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

#[test]
fn identity_of_several_photos_averages_and_skips_faceless_ones() {
    let analyzer = analyzer("arcface_r100s_inner_norm.onnx");
    let options = DetectOptions {
        det_size: 320,
        ..DetectOptions::default()
    };
    let blank = FaceImage::from_rgb("blank.png", RgbImage::new(64, 64)).unwrap();
    let obama = FaceImage::open(photo("obama.jpg"), &ImageLimits::default()).unwrap();
    let images = [astronaut(), blank.clone(), obama.clone()];
    let identity = analyzer
        .identity(&images, &options, AverageMode::NormalizedMean, None)
        .unwrap();
    assert_eq!(identity.skipped, ["blank.png"]);
    assert_eq!(identity.faces.len(), 2);
    assert!(identity.faces.iter().all(|f| f.crop.is_none()));
    let a = analyzer.embed(&astronaut(), &options).unwrap().embedding;
    let b = analyzer.embed(&obama, &options).unwrap().embedding;
    let expected = faceid_face::average_embeddings(&[a, b], AverageMode::NormalizedMean).unwrap();
    assert_eq!(identity.embedding, expected);
    let norm: f32 = identity.embedding.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5);

    match analyzer.identity(
        &[blank.clone(), blank],
        &options,
        AverageMode::Mean,
        Some(224),
    ) {
        Err(FaceError::NoFaceInAny { images }) => assert_eq!(images, ["blank.png", "blank.png"]),
        other => panic!("expected NoFaceInAny, got {other:?}"),
    }
    assert!(matches!(
        analyzer.identity(&images, &options, AverageMode::Mean, Some(200)),
        Err(FaceError::InvalidOption(_))
    ));
    let no_recognizer =
        FaceAnalyzer::from_parts(Detector::retinaface(&Device::flex()).unwrap(), None);
    assert!(matches!(
        no_recognizer.identity(&images, &options, AverageMode::Mean, None),
        Err(FaceError::NoRecognizer)
    ));
}

#[test]
fn a_zip_streams_into_the_same_identity_as_its_images() {
    let analyzer = analyzer("arcface_r50_bn.onnx");
    let options = DetectOptions::default();
    let astronaut_png = std::fs::read(photo("astronaut.png")).unwrap();
    let obama_jpg = std::fs::read(photo("obama.jpg")).unwrap();
    let mut blank = Cursor::new(Vec::new());
    image::DynamicImage::from(RgbImage::new(64, 64))
        .write_to(&mut blank, image::ImageFormat::Png)
        .unwrap();
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in [
        ("1.png", &astronaut_png),
        ("2.png", blank.get_ref()),
        ("3.jpg", &obama_jpg),
    ] {
        writer
            .start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.write_all(data).unwrap();
    }
    let archive = writer.finish().unwrap().into_inner();

    let mut builder = analyzer
        .identity_builder(&options, AverageMode::NormalizedMean, Some(224))
        .unwrap();
    let count = for_each_zip_image(
        "faces.zip",
        &archive,
        &ZipLimits::default(),
        &ImageLimits::default(),
        |image| builder.add(&image),
    )
    .unwrap();
    assert_eq!((count, builder.len()), (3, 3));
    let streamed = builder.finish().unwrap();

    let limits = ImageLimits::default();
    let images = [
        FaceImage::from_bytes("faces.zip:1.png", &astronaut_png, &limits).unwrap(),
        FaceImage::from_bytes("faces.zip:2.png", blank.get_ref(), &limits).unwrap(),
        FaceImage::from_bytes("faces.zip:3.jpg", &obama_jpg, &limits).unwrap(),
    ];
    let direct = analyzer
        .identity(&images, &options, AverageMode::NormalizedMean, Some(224))
        .unwrap();
    assert_eq!(streamed, direct);
    assert_eq!(streamed.skipped, ["faces.zip:2.png"]);
    assert_eq!(streamed.crops().count(), 2);
}
