//! Detection against insightface (SCRFD exports) and against an independent onnxruntime + numpy
//! decoding of the real RetinaFace model on real photos.

use burn::tensor::Device;
use faceid_detect::testing::{f32s, fixture, json, photo, points};
use faceid_detect::{DetectOptions, Detector, DetectorKind, FaceImage, ImageLimits};
use serde_json::Value;

/// Worst differences over a case: (box, keypoint, score).
fn compare_case(detector: &Detector, case: &Value) -> (f32, f32, f32) {
    let image_name = case["image"].as_str().unwrap();
    let image = FaceImage::open(photo(image_name), &ImageLimits::default()).unwrap();
    let options = DetectOptions {
        det_size: case["det_size"].as_u64().unwrap() as u32,
        retry: false,
        ..DetectOptions::default()
    };
    let faces = detector.detect(&image, &options).unwrap();
    let expected = case["faces"].as_array().unwrap();
    assert_eq!(
        faces.len(),
        expected.len(),
        "{} {image_name} {}",
        case["model"],
        options.det_size
    );
    let (mut dbox, mut dkps, mut dscore) = (0.0f32, 0.0f32, 0.0f32);
    for (face, want) in faces.iter().zip(expected) {
        let bbox = f32s(&want["bbox"]);
        for (got, want) in face.bbox.iter().zip(&bbox) {
            dbox = dbox.max((got - want).abs());
        }
        let kps = points(&want["kps"]);
        for (p, q) in face.kps.iter().zip(&kps) {
            dkps = dkps.max((p[0] - q[0]).abs()).max((p[1] - q[1]).abs());
        }
        dscore = dscore.max((face.score - want["score"].as_f64().unwrap() as f32).abs());
    }
    (dbox, dkps, dscore)
}

fn cases(model: &str) -> Vec<Value> {
    json("detections.json")["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["model"] == model)
        .cloned()
        .collect()
}

#[test]
fn retinaface_on_real_photos_matches_reference_decoding() {
    let detector = Detector::retinaface(&Device::flex()).unwrap();
    assert_eq!(detector.kind(), DetectorKind::RetinaFace);
    let cases = cases("retinaface");
    assert_eq!(cases.len(), 5);
    for case in &cases {
        assert_eq!(
            case["faces"].as_array().unwrap().len(),
            1,
            "one face per portrait"
        );
        let (dbox, dkps, dscore) = compare_case(&detector, case);
        eprintln!(
            "retinaface {} @{}: box {dbox:.4} px, keypoints {dkps:.4} px, score {dscore:e}",
            case["image"], case["det_size"]
        );
        assert!(dkps <= 1.0, "keypoints off by {dkps}");
        assert!(dbox <= 1.0, "box off by {dbox}");
        assert!(dscore <= 1e-3, "score off by {dscore}");
        // PNG decodes identically on both sides, so there the match is tighter.
        if case["image"] == "astronaut.png" {
            assert!(
                dbox <= 0.5 && dkps <= 0.5 && dscore <= 1e-4,
                "{dbox} {dkps} {dscore}"
            );
        }
    }
}

#[test]
fn scrfd_exports_match_insightface() {
    let device = Device::flex();
    let variants = json("detections.json")["scrfd_variants"].clone();
    let names: Vec<&String> = variants.as_object().unwrap().keys().collect();
    assert_eq!(names.len(), 3);
    for name in names {
        let file = format!("{name}.onnx");
        let detector = Detector::from_file(fixture(&file), &device).unwrap();
        assert_eq!(detector.kind(), DetectorKind::Scrfd);
        let cases = cases(&file);
        assert!(!cases.is_empty());
        for case in &cases {
            assert!(
                case["faces"].as_array().unwrap().len() >= 3,
                "too few detections to compare"
            );
            let (dbox, dkps, dscore) = compare_case(&detector, case);
            eprintln!(
                "{file} @{}: box {dbox:.5} px, keypoints {dkps:.5} px, score {dscore:e}",
                case["det_size"]
            );
            assert!(
                dbox <= 0.5 && dkps <= 0.5,
                "{file}: box {dbox}, keypoints {dkps}"
            );
            assert!(dscore <= 1e-4, "{file}: score {dscore}");
        }
    }
}

#[test]
fn fixed_size_model_ignores_det_size_like_insightface() {
    let detector =
        Detector::from_file(fixture("scrfd_folded_batched.onnx"), &Device::flex()).unwrap();
    assert_eq!(detector.fixed_input(), Some((640, 640)));
    let image = FaceImage::open(photo("astronaut.png"), &ImageLimits::default()).unwrap();
    let at = |det_size| {
        let options = DetectOptions {
            det_size,
            retry: false,
            ..DetectOptions::default()
        };
        detector.detect(&image, &options).unwrap()
    };
    assert_eq!(at(320), at(640));
}
