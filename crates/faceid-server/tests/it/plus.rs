//! The FaceID Plus model types over HTTP, and the base-model allow-list, on the tiny Plus
//! fixtures (an SD-1.5-shaped model with two perceiver heads, the tiny CLIP image encoder).

use faceid_hub::{HubSettings, LocalFiles, Manifest, Weights};
use faceid_server::{ModelPolicy, Models};
use serde_json::{Value, json};

use crate::common::{input, root, send, start_with};

const RUN: &str = "/fal-ai/ip-adapter-face-id";

fn plus_models(policy: ModelPolicy) -> Models {
    let manifest = Manifest::builtin();
    let dir =
        std::env::temp_dir().join(format!("faceid-server-{}-plus-nocache", std::process::id()));
    let mut settings = HubSettings::from(&[("HOME", dir.to_str().unwrap())], &manifest);
    settings.offline = true;
    let data = root().join("tests/data");
    let local = LocalFiles {
        base: Some(data.join("faceid_plus/tiny-sd128")),
        ip_adapter: Some(data.join("faceid_plus/ip-adapter-faceid-plusv2_tiny.bin")),
        image_encoder: Some(data.join("clip_vision/tiny-vit")),
        recognizer: Some(data.join("face/arcface_r50_bn.onnx")),
        ..Default::default()
    };
    Models::new(
        Weights::new(manifest, settings).unwrap(),
        local,
        faceid_core::Device::flex(),
        faceid_core::Precision::F32,
        policy,
    )
}

fn image_bytes(out: &Value) -> Vec<u8> {
    let uri = out["image"]["url"].as_str().unwrap();
    let data = uri.split_once(',').unwrap().1;
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, data).unwrap()
}

#[test]
fn both_plus_model_types_answer_a_fal_request() {
    let server = start_with(plus_models(ModelPolicy::default()), |_| {});
    let mut images = Vec::new();
    for model_type in ["1_5-v1-plus", "1_5-v2-plus"] {
        let mut body = input(1);
        body["model_type"] = json!(model_type);
        body["sync_mode"] = json!(true);
        let (status, _, out) = send("POST", &format!("{}{RUN}", server.url), Some(&body), None);
        assert_eq!(status, 200, "{model_type}: {out}");
        assert_eq!(out["seed"], 7);
        assert_eq!(out["image"]["width"], 512);
        images.push(image_bytes(&out));
    }
    // v2's shortcut adds the identity tokens back: another image from the same checkpoint.
    assert_ne!(images[0], images[1]);
}

#[test]
fn base_models_off_the_allow_list_are_refused_with_the_field_named() {
    // A local base model pins the base model: only the default value (which stands for it).
    let server = start_with(plus_models(ModelPolicy::default()), |_| {});
    for repo in ["someone/else", "../../etc", "a/b?x=1#frag"] {
        let mut body = input(1);
        body["model_type"] = json!("1_5-v2-plus");
        body["base_1_5_model_repo"] = json!(repo);
        let (status, _, out) = send("POST", &format!("{}{RUN}", server.url), Some(&body), None);
        assert_eq!(status, 422, "{repo}: {out}");
        assert_eq!(
            out["detail"][0]["loc"],
            json!(["body", "base_1_5_model_repo"]),
            "{out}"
        );
    }
}

#[test]
fn the_allow_list_and_repository_ids_are_checked_before_anything_loads() {
    let manifest = Manifest::builtin();
    let settings = HubSettings::from(&[("HOME", "/nonexistent")], &manifest);
    let models = Models::new(
        Weights::new(manifest, settings).unwrap(),
        LocalFiles::default(),
        faceid_core::Device::flex(),
        faceid_core::Precision::F32,
        ModelPolicy {
            allowed_base_repos: vec!["org/allowed".into()],
            ..ModelPolicy::default()
        },
    );
    let model_type = faceid_fal::ModelType::Sd15V2Plus;
    assert!(models.check_base(model_type, "org/allowed").is_ok());
    for repo in [
        "org/other",
        "SG161222/Realistic_Vision_V4.0_noVAE",
        "../../etc",
        "a/b?x=1#frag",
    ] {
        let err = models.check_base(model_type, repo).unwrap_err();
        assert!(err.to_string().starts_with("base_1_5_model_repo"), "{err}");
    }
    assert_eq!(models.loaded_bytes(), 0);
}

#[test]
fn loaded_models_stay_under_the_byte_budget_and_share_the_image_encoder() {
    use faceid_fal::{DEFAULT_BASE_1_5_REPO, ModelType};
    let roomy = plus_models(ModelPolicy::default());
    let one = roomy
        .get(ModelType::Sd15V1Plus, DEFAULT_BASE_1_5_REPO)
        .unwrap();
    let first = roomy.loaded_bytes();
    let two = roomy
        .get(ModelType::Sd15V2Plus, DEFAULT_BASE_1_5_REPO)
        .unwrap();
    let both = roomy.loaded_bytes();
    let encoder = one.image_encoder_bytes();
    assert!(encoder > 0);
    // The second generator adds its own weights, not a second image encoder.
    assert_eq!(both, 2 * first - encoder);
    assert!(one.shares_image_encoder_with(&two));

    // A budget smaller than two models keeps only the most recently used one.
    let tight = plus_models(ModelPolicy {
        memory_budget_bytes: first + first / 2,
        ..ModelPolicy::default()
    });
    tight
        .get(ModelType::Sd15V1Plus, DEFAULT_BASE_1_5_REPO)
        .unwrap();
    tight
        .get(ModelType::Sd15V2Plus, DEFAULT_BASE_1_5_REPO)
        .unwrap();
    assert_eq!(tight.loaded_bytes(), first);
    // The evicted one loads again on its next use.
    tight
        .get(ModelType::Sd15V1Plus, DEFAULT_BASE_1_5_REPO)
        .unwrap();
    assert_eq!(tight.loaded_bytes(), first);
}
