//! Property tests over what clients send: arbitrary request bodies and data URIs get a 4xx
//! with fal's `detail`, or a result; never a 5xx, a panic or a hang.

use std::io::Cursor;
use std::time::Duration;

use base64::Engine;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};

use crate::common::start;

const RUN: &str = "/fal-ai/ip-adapter-face-id";

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        prop_oneof![
            Just(0u32),
            Just(1),
            Just(4),
            Just(200),
            Just(512),
            Just(1024),
            Just(100_000)
        ]
        .prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A small image without a face, as PNG bytes.
fn blank_png(size: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(size, size, image::Rgb([120, 90, 60]));
    let mut png = Vec::new();
    img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png
}

/// Data URIs and other strings given as images: valid and broken base64, wrong prefixes,
/// images without faces, refused URLs.
fn any_image_url() -> impl Strategy<Value = String> {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let blank = b64(&blank_png(16));
    let mime = prop_oneof![
        Just("image/png"),
        Just("image/jpeg"),
        Just("application/zip"),
        Just(""),
        Just("text/plain"),
    ];
    prop_oneof![
        (mime.clone(), prop::collection::vec(any::<u8>(), 0..256))
            .prop_map(move |(m, bytes)| format!("data:{m};base64,{}", b64(&bytes))),
        (mime.clone(), "[A-Za-z0-9+/=@!%\\- ]{0,64}")
            .prop_map(|(m, text)| format!("data:{m};base64,{text}")),
        (mime, ".{0,32}").prop_map(|(m, text)| format!("data:{m},{text}")),
        Just(format!("data:image/png;base64,{blank}")),
        Just(format!(
            "data:image/png;base64,{}",
            &blank[..blank.len() / 2]
        )),
        Just("data:image/png;base64".to_string()),
        Just("http://127.0.0.1:9/face.png".to_string()),
        Just("http://[::ffff:127.0.0.1]:9/face.png".to_string()),
        ".{0,24}",
    ]
}

/// A request: a valid one with some fields replaced by arbitrary values, unknown fields added,
/// or a body that is not an object at all. The base model fields keep their defaults (other
/// repositories mean loading other models).
fn any_body() -> impl Strategy<Value = Vec<u8>> {
    let fields: Vec<&'static str> = faceid_fal::FIELDS
        .iter()
        .map(|f| f.name)
        .filter(|name| !name.starts_with("base_") && *name != "model_type")
        .collect();
    let replaced = prop::collection::vec((prop::sample::select(fields), any_json()), 0..4);
    let request = (
        any_image_url(),
        prop::option::of(any_image_url()),
        replaced,
        prop::collection::vec(("[a-z]{1,8}", any_json()), 0..3),
        any::<bool>(),
    )
        .prop_map(|(face, zip, replaced, unknown, keep_face)| {
            let mut body = json!({
                "prompt": "a portrait",
                "num_samples": 1,
                "num_inference_steps": 1,
                "width": 512,
                "height": 512,
            });
            if keep_face {
                body["face_image_url"] = json!(face);
            }
            if let Some(zip) = zip {
                body["face_images_data_url"] = json!(zip);
            }
            for (field, value) in replaced {
                body[field] = value;
            }
            for (field, value) in unknown {
                body[format!("x_{field}")] = value;
            }
            body.to_string().into_bytes()
        });
    prop_oneof![
        8 => request,
        1 => any_json().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

#[test]
fn any_body_gets_a_4xx_with_detail_or_a_result() {
    let server = start(|c| {
        c.connections.body_timeout = Duration::from_secs(10);
    });
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let url = format!("{}{RUN}", server.url);
    let mut runner = TestRunner::new(Config {
        cases: 96,
        max_shrink_iters: 64,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&any_body(), |body| {
            let mut response = agent
                .post(&url)
                .header("content-type", "application/json")
                .send(&body[..])
                .map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?;
            let status = response.status().as_u16();
            let text = response.body_mut().read_to_string().unwrap_or_default();
            let out: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let shown = String::from_utf8_lossy(&body);
            prop_assert!(status < 500, "{status} for {shown}: {text}");
            if status == 200 {
                prop_assert!(out["image"]["url"].is_string(), "{shown}: {text}");
            } else {
                prop_assert!((400..500).contains(&status), "{status} for {shown}");
                prop_assert!(!out["detail"].is_null(), "{status} for {shown}: {text}");
            }
            Ok(())
        })
        .unwrap();
    // Still healthy afterwards.
    let health = agent.get(&format!("{}/health", server.url)).call().unwrap();
    assert_eq!(health.status().as_u16(), 200);
}
