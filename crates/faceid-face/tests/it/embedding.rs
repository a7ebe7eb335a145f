//! The whole chain (detect, align, embed) against insightface's embeddings, and averaging.

use burn::tensor::Device;
use faceid_detect::testing::{f32s, fixture, json, photo};
use faceid_face::{
    AverageMode, DetectOptions, Detector, FaceAnalyzer, FaceError, FaceImage, ImageLimits,
    Recognizer, cosine_similarity,
};
use image::RgbImage;

pub fn astronaut() -> FaceImage {
    FaceImage::open(photo("astronaut.png"), &ImageLimits::default()).unwrap()
}

pub fn analyzer(recognizer: &str) -> FaceAnalyzer {
    let device = Device::flex();
    FaceAnalyzer::from_parts(
        Detector::retinaface(&device).unwrap(),
        Some(Recognizer::from_file(fixture(recognizer), &device).unwrap()),
    )
}

#[test]
fn analyzer_embeds_the_detected_face() {
    let analyzer = analyzer("arcface_r50_bn.onnx");
    let image = astronaut();
    let options = DetectOptions::default();
    let result = analyzer.embed(&image, &options).unwrap();
    assert_eq!(result.face, analyzer.detect(&image, &options).unwrap()[0]);
    let norm: f32 = result.embedding.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5);
    let reference = json("embeddings.json")[0]["embedding"].clone();
    let cosine = cosine_similarity(&result.embedding, &f32s(&reference));
    eprintln!("full pipeline vs insightface: cosine {cosine:.7}");
    assert!(cosine >= 0.9999, "cosine {cosine}");
}

#[test]
fn averaging_skips_faceless_images_and_fails_when_none_has_a_face() {
    let analyzer = analyzer("arcface_r100s_inner_norm.onnx");
    let blank = FaceImage::from_rgb("blank.png", RgbImage::new(64, 64)).unwrap();
    let options = DetectOptions {
        det_size: 320,
        ..DetectOptions::default()
    };
    let single = analyzer.embed(&astronaut(), &options).unwrap();
    let averaged = analyzer
        .average(
            &[astronaut(), blank.clone()],
            &options,
            AverageMode::NormalizedMean,
        )
        .unwrap();
    assert_eq!(averaged.skipped, ["blank.png"]);
    assert_eq!(averaged.used.len(), 1);
    assert!(cosine_similarity(&averaged.embedding, &single.embedding) > 0.99999);
    match analyzer.average(&[blank.clone(), blank], &options, AverageMode::Mean) {
        Err(FaceError::NoFaceInAny { images }) => assert_eq!(images.len(), 2),
        other => panic!("expected NoFaceInAny, got {other:?}"),
    }
}

#[test]
fn embedding_without_recognizer_is_an_error() {
    let analyzer = FaceAnalyzer::from_parts(Detector::retinaface(&Device::flex()).unwrap(), None);
    assert!(matches!(
        analyzer.embed(&astronaut(), &DetectOptions::default()),
        Err(FaceError::NoRecognizer)
    ));
}
