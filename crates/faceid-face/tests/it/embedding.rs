//! ArcFace embeddings against insightface (`norm_crop` + onnxruntime), and averaging.

use crate::common::{f32s, fixture, json, photo, points};
use burn::tensor::Device;
use faceid_face::align::norm_crop;
use faceid_face::{
    AverageMode, DetectOptions, Detector, FaceAnalyzer, FaceError, FaceImage, ImageLimits,
    Recognizer, average_embeddings, cosine_similarity, l2_normalize,
};
use image::RgbImage;

fn astronaut() -> FaceImage {
    FaceImage::open(photo("astronaut.png"), &ImageLimits::default()).unwrap()
}

#[test]
fn embeddings_match_insightface() {
    let device = Device::flex();
    let cases = json("embeddings.json");
    let cases = cases.as_array().unwrap();
    assert_eq!(cases.len(), 3);
    let image = astronaut();
    for case in cases {
        let model = case["model"].as_str().unwrap();
        let recognizer = Recognizer::from_file(fixture(model), &device).unwrap();
        let (mean, std) = recognizer.normalisation();
        assert_eq!(
            f64::from(mean),
            case["input_mean"].as_f64().unwrap(),
            "{model}"
        );
        assert_eq!(
            f64::from(std),
            case["input_std"].as_f64().unwrap(),
            "{model}"
        );
        let crop = norm_crop(image.rgb(), &points(&case["kps"]), recognizer.input_size()).unwrap();
        let embedding = l2_normalize(&recognizer.embed_crop(&crop).unwrap());
        let cosine = cosine_similarity(&embedding, &f32s(&case["embedding"]));
        eprintln!("{model}: cosine {cosine:.7}");
        assert!(cosine >= 0.9999, "{model}: cosine {cosine}");
    }
}

fn analyzer(recognizer: &str) -> FaceAnalyzer {
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
fn average_modes() {
    let a = vec![1.0, 0.0];
    let b = vec![0.0, 1.0];
    let mean = average_embeddings(&[a.clone(), b.clone()], AverageMode::Mean).unwrap();
    assert_eq!(mean, [0.5, 0.5]);
    let unit = average_embeddings(&[a, b], AverageMode::NormalizedMean).unwrap();
    assert!((unit[0] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    assert!(average_embeddings(&[], AverageMode::Mean).is_none());
    assert!(average_embeddings(&[vec![1.0], vec![1.0, 2.0]], AverageMode::Mean).is_none());
}

#[test]
fn embedding_without_recognizer_is_an_error() {
    let analyzer = FaceAnalyzer::from_parts(Detector::retinaface(&Device::flex()).unwrap(), None);
    assert!(matches!(
        analyzer.embed(&astronaut(), &DetectOptions::default()),
        Err(FaceError::NoRecognizer)
    ));
}
