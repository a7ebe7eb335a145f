//! The SDXL model types over HTTP on the tiny SDXL-shaped fixtures (`tests/data/sdxl`): each
//! answers a fal request from a real photo, with fal's SDXL base field.

use faceid_hub::{HubSettings, LocalFiles, Manifest, Weights};
use faceid_server::{ModelPolicy, Models};
use serde_json::{Value, json};

use crate::common::{input, root, send, start_with};

const RUN: &str = "/fal-ai/ip-adapter-face-id";

/// A server's models with the tiny SDXL folder as the base and `adapter` as the checkpoint.
fn sdxl_models(adapter: &str) -> Models {
    let manifest = Manifest::builtin();
    let dir =
        std::env::temp_dir().join(format!("faceid-server-{}-sdxl-nocache", std::process::id()));
    let mut settings = HubSettings::from(&[("HOME", dir.to_str().unwrap())], &manifest);
    settings.offline = true;
    let data = root().join("tests/data");
    let local = LocalFiles {
        base: Some(data.join("sdxl/tiny-xl")),
        ip_adapter: Some(data.join("sdxl").join(adapter)),
        image_encoder: Some(data.join("clip_vision/tiny-vit")),
        recognizer: Some(data.join("face/arcface_r50_bn.onnx")),
        ..Default::default()
    };
    Models::new(
        Weights::new(manifest, settings).unwrap(),
        local,
        faceid_core::Device::flex(),
        faceid_core::Precision::F32,
        ModelPolicy::default(),
    )
}

fn image_bytes(out: &Value) -> Vec<u8> {
    let uri = out["image"]["url"].as_str().unwrap();
    let data = uri.split_once(',').unwrap().1;
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, data).unwrap()
}

#[test]
fn both_sdxl_model_types_answer_a_fal_request() {
    let mut images = Vec::new();
    for (model_type, adapter) in [
        ("SDXL-v1", "ip-adapter-faceid_sdxl_tiny.bin"),
        ("SDXL-v2-plus", "ip-adapter-faceid-plusv2_sdxl_tiny.bin"),
    ] {
        let server = start_with(sdxl_models(adapter), |_| {});
        let mut body = input(1);
        body["model_type"] = json!(model_type);
        body["sync_mode"] = json!(true);
        body["height"] = json!(576);
        body["base_sdxl_model_repo"] = json!("SG161222/RealVisXL_V3.0");
        let (status, _, out) = send("POST", &format!("{}{RUN}", server.url), Some(&body), None);
        assert_eq!(status, 200, "{model_type}: {out}");
        assert_eq!(out["seed"], 7);
        assert_eq!(
            (
                out["image"]["width"].clone(),
                out["image"]["height"].clone()
            ),
            (json!(512), json!(576)),
            "{model_type}: {out}"
        );
        images.push(image_bytes(&out));

        // The SD 1.5 base field does not apply to SDXL types, and another SDXL base is refused.
        let mut body = input(1);
        body["model_type"] = json!(model_type);
        body["base_sdxl_model_repo"] = json!("someone/else");
        let (status, _, out) = send("POST", &format!("{}{RUN}", server.url), Some(&body), None);
        assert_eq!(status, 422, "{model_type}: {out}");
        assert_eq!(
            out["detail"][0]["loc"],
            json!(["body", "base_sdxl_model_repo"]),
            "{out}"
        );
    }
    assert_ne!(images[0], images[1]);
}

#[test]
fn an_sd15_model_type_on_an_sdxl_base_is_refused_with_the_reason() {
    let server = start_with(sdxl_models("ip-adapter-faceid_sdxl_tiny.bin"), |_| {});
    let mut body = input(1);
    body["model_type"] = json!("1_5-v1");
    body["sync_mode"] = json!(true);
    let (status, _, out) = send("POST", &format!("{}{RUN}", server.url), Some(&body), None);
    assert!(status >= 400, "{out}");
    let text = out.to_string();
    assert!(text.contains("SDXL base model"), "{text}");
}
