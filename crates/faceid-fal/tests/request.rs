//! The endpoint's input schema (../shared/spec): defaults, ranges, and fal-style errors.

use faceid_fal::{DEFAULT_NEGATIVE_PROMPT, FalRequest, ModelType};
use serde_json::json;

#[test]
fn the_required_example_gets_every_default_of_the_spec() {
    let r = FalRequest::from_json(&json!({"prompt": "Man cyberpunk"})).unwrap();
    assert_eq!(r.model_type, ModelType::Sd15V1);
    assert_eq!(r.negative_prompt, DEFAULT_NEGATIVE_PROMPT);
    assert_eq!(
        (r.guidance_scale, r.num_inference_steps, r.num_samples),
        (7.5, 50, 4)
    );
    assert_eq!((r.width, r.height, r.face_id_det_size), (512, 512, 640));
    assert_eq!(
        r.base_1_5_model_repo,
        "SG161222/Realistic_Vision_V4.0_noVAE"
    );
    assert_eq!(r.base_sdxl_model_repo, "SG161222/RealVisXL_V3.0");
    assert_eq!(r.seed, None);
}

#[test]
fn the_full_example_is_read_as_given_and_unknown_fields_are_ignored() {
    let body = json!({
        "model_type": "SDXL-v2-plus", "prompt": "p", "face_image_url": "data:image/png;base64,AA==",
        "negative_prompt": "n", "seed": 42, "guidance_scale": 0, "num_inference_steps": 200,
        "num_samples": 1, "width": 1024, "height": 768, "face_id_det_size": 64,
        "base_1_5_model_repo": "a/b", "base_sdxl_model_repo": "c/d", "something_new": true
    });
    let r = FalRequest::from_json(&body).unwrap();
    assert_eq!(r.model_type, ModelType::SdxlV2Plus);
    assert!(r.model_type.is_sdxl());
    assert_eq!(
        (
            r.seed,
            r.guidance_scale,
            r.num_inference_steps,
            r.num_samples
        ),
        (Some(42), 0.0, 200, 1)
    );
    assert_eq!((r.width, r.height, r.face_id_det_size), (1024, 768, 64));
    let request = r.to_generate_request(42, None);
    assert_eq!(
        (
            request.width,
            request.height,
            request.steps,
            request.num_samples
        ),
        (1024, 768, 200, 1)
    );
}

#[test]
fn every_bad_field_is_reported_with_its_location() {
    let body = json!({
        "model_type": "2_0", "guidance_scale": 16.5, "num_inference_steps": 0, "num_samples": 5,
        "width": 511, "height": 1030, "face_id_det_size": "big", "seed": -1
    });
    let errors = FalRequest::from_json(&body).unwrap_err();
    let by_field = |f: &str| {
        errors
            .iter()
            .find(|e| e.loc == ["body", f])
            .map(|e| e.kind.as_str())
    };
    assert_eq!(by_field("model_type"), Some("enum"));
    assert_eq!(by_field("prompt"), Some("missing"));
    assert_eq!(by_field("guidance_scale"), Some("less_than_equal"));
    assert_eq!(by_field("num_inference_steps"), Some("greater_than_equal"));
    assert_eq!(by_field("num_samples"), Some("less_than_equal"));
    assert_eq!(by_field("width"), Some("greater_than_equal"));
    assert_eq!(by_field("height"), Some("less_than_equal"));
    assert_eq!(by_field("face_id_det_size"), Some("int_type"));
    assert_eq!(by_field("seed"), Some("int_type"));
    assert_eq!(errors.len(), 9, "{errors:?}");
    let json = serde_json::to_value(&errors[0]).unwrap();
    assert!(json.get("loc").is_some() && json.get("msg").is_some() && json.get("type").is_some());
    assert_eq!(
        FalRequest::from_json(&json!({"prompt": "p", "width": 516})).unwrap_err()[0].kind,
        "multiple_of"
    );
    assert_eq!(
        FalRequest::from_json(&json!([1, 2])).unwrap_err()[0].kind,
        "dict_type"
    );
}

#[test]
fn the_field_table_covers_the_request_and_the_model_types() {
    use faceid_fal::{FIELDS, MODEL_TYPES};
    let names: Vec<&str> = ModelType::ALL.iter().map(|m| m.name()).collect();
    assert_eq!(names, MODEL_TYPES);
    let request = FalRequest::from_json(&json!({"prompt": "x", "seed": 1})).unwrap();
    let serialized = serde_json::to_value(&request).unwrap();
    let mut keys: Vec<&str> = serialized
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut fields: Vec<&str> = FIELDS.iter().map(|f| f.name).collect();
    keys.sort();
    fields.sort();
    assert_eq!(keys, fields);
}
