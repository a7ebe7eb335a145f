//! ArcFace embeddings and the aligned crops of an identity against insightface (`norm_crop` +
//! onnxruntime), on the keypoints insightface was given.

use burn::tensor::Device;
use faceid_detect::testing::{f32s, fixture, json, max_pixel_diff, photo, points, rgb};
use faceid_detect::{Face, FaceImage, ImageLimits};
use faceid_embed::align::norm_crop;
use faceid_embed::{
    AverageMode, EmbedError, Identity, Recognizer, average_embeddings, cosine_similarity,
    l2_normalize,
};

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

/// The astronaut's face with the keypoints insightface was given for the reference crops.
fn reference_face() -> Face {
    let case = &json("align.json")[1];
    assert_eq!(
        (case["image"].as_str(), case["size"].as_u64()),
        (Some("astronaut.png"), Some(224))
    );
    Face {
        bbox: [0.0; 4],
        kps: points(&case["kps"]),
        score: 1.0,
    }
}

#[test]
fn identity_face_keeps_the_embedding_and_the_224_crop_of_the_same_keypoints() {
    let recognizer =
        Recognizer::from_file(fixture("arcface_r50_bn.onnx"), &Device::flex()).unwrap();
    let image = astronaut();
    let face = reference_face();
    let with_crop = recognizer.embed_face(&image, &face, Some(224)).unwrap();
    assert_eq!(with_crop.face, face);
    assert!(with_crop.image.ends_with("astronaut.png"));

    // The crop is insightface's norm_crop(image, kps, 224), as cv2 wrote it.
    let crop = with_crop.crop.as_ref().unwrap();
    let expected = rgb(fixture("crop_astronaut_224.png"));
    let diff = max_pixel_diff(crop, &expected);
    eprintln!("identity crop 224 vs insightface: max diff {diff}");
    assert!(diff <= 1, "max diff {diff}");
    assert_eq!(crop, &norm_crop(image.rgb(), &face.kps, 224).unwrap());

    // The embedding is insightface's normed_embedding for the same keypoints.
    let reference = &json("embeddings.json")[0];
    assert_eq!(reference["model"], "arcface_r50_bn.onnx");
    assert_eq!(points(&reference["kps"]), face.kps);
    let cosine = cosine_similarity(&with_crop.embedding, &f32s(&reference["embedding"]));
    assert!(cosine >= 0.9999, "cosine {cosine}");

    // Without a crop, the same embedding; at the recognizer's own size, its aligned input.
    let without = recognizer.embed_face(&image, &face, None).unwrap();
    assert!(without.crop.is_none());
    assert_eq!(without.embedding, with_crop.embedding);
    assert_eq!(without.norm, with_crop.norm);
    let at_112 = recognizer.embed_face(&image, &face, Some(112)).unwrap();
    assert_eq!(
        at_112.crop.unwrap(),
        norm_crop(image.rgb(), &face.kps, 112).unwrap()
    );

    let identity =
        Identity::from_faces(vec![with_crop], Vec::new(), AverageMode::NormalizedMean).unwrap();
    assert!(cosine_similarity(&identity.embedding, &f32s(&reference["embedding"])) >= 0.9999);
    assert_eq!(identity.crops().count(), 1);

    for bad in [200, 0, 2240] {
        assert!(matches!(
            recognizer.embed_face(&image, &face, Some(bad)),
            Err(EmbedError::InvalidOption(_))
        ));
    }
    let degenerate = Face {
        kps: [[10.0, 10.0]; 5],
        ..face
    };
    assert!(matches!(
        recognizer.embed_face(&image, &degenerate, None),
        Err(EmbedError::DegenerateKeypoints(_))
    ));
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
fn models_that_are_not_recognizers_are_refused() {
    let device = Device::flex();
    let err = Recognizer::from_file(fixture("scrfd_bn_dynamic.onnx"), &device).unwrap_err();
    assert!(matches!(err, EmbedError::WrongModel { .. }), "{err}");
    let err = Recognizer::from_file("/nonexistent.onnx", &device).unwrap_err();
    assert!(matches!(err, EmbedError::Io { .. }), "{err}");
}
