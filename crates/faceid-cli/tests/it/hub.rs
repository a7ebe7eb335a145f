//! `faceid generate` and `faceid fetch` against a mock of the Hugging Face hub on loopback, from
//! an empty cache to the image of the Python chain, then offline.

use std::path::Path;
use std::process::{Command, Output};

use faceid_hub::mock::{MockHub, publish_tiny_models};

use crate::generate::{data, faceid, temp, worst};

/// The binary with a clean Hugging Face environment pointing at `hub` (or nowhere).
fn faceid_with(home: &Path, hub: Option<&MockHub>) -> Command {
    let mut cmd = faceid();
    for var in [
        "HF_TOKEN",
        "HF_HUB_CACHE",
        "HF_TOKEN_PATH",
        "HF_HUB_OFFLINE",
        "XDG_CACHE_HOME",
        "FACEID_BASE_MODEL",
        "FACEID_IP_ADAPTER",
        "FACEID_RECOGNIZER",
        "FACEID_BASE_REPO",
        "FACEID_MANIFEST",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HF_HOME", home.join("hf"))
        .env("FACEID_INSIGHTFACE_ROOT", home.join("insightface"));
    match hub {
        Some(hub) => cmd
            .env("HF_ENDPOINT", hub.url())
            .env("FACEID_INSIGHTFACE_URL", format!("{}/releases", hub.url())),
        None => cmd
            .env("HF_ENDPOINT", "http://127.0.0.1:9")
            .env("FACEID_INSIGHTFACE_URL", "http://127.0.0.1:9"),
    };
    cmd
}

/// `generate` with a face photo and nothing else local: case e2e of tests/data/faceid.
fn generate_e2e(mut cmd: Command, out: &Path) -> Output {
    let e2e: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data().join("faceid/e2e.json")).unwrap())
            .unwrap();
    cmd.arg("generate")
        .args(["--prompt", e2e["prompt"].as_str().unwrap()])
        .args([
            "--negative-prompt",
            e2e["negative_prompt"].as_str().unwrap(),
        ])
        .args(["--scheduler", "ddim", "--num-samples", "1", "--steps", "3"])
        .args(["--width", "32", "--height", "32", "--seed", "3"])
        .arg("--face")
        .arg(data().join("faces/astronaut.png"))
        .arg("-o")
        .arg(out)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn generate_fetches_everything_on_first_use_then_works_offline() {
    let hub = MockHub::start();
    publish_tiny_models(&hub, &data().join("../..")).unwrap();
    let home = temp("hub-e2e");
    let expected = faceid_core::testing::read_reference(&data().join("faceid/e2e.safetensors"));

    let out = home.join("first.png");
    let output = generate_e2e(faceid_with(&home, Some(&hub)), &out);
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains("non-commercial"),
        "the licence notice is shown: {log}"
    );
    let err = worst(&out, &expected["e2e.images"], 0);
    assert!(err <= 1.5, "from the hub: {err}/255");
    assert!(
        home.join("hf/hub/models--h94--IP-Adapter-FaceID/refs/main")
            .is_file()
    );
    assert!(
        home.join("insightface/models/buffalo_l/w600k_r50.onnx")
            .is_file()
    );

    // `fetch` finds everything cached.
    let output = faceid_with(&home, Some(&hub))
        .args(["fetch", "--model-type", "1_5-v1", "--verify"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("0 file(s) downloaded"),
        "{}",
        stderr(&output)
    );
    let listing = String::from_utf8_lossy(&output.stdout);
    assert!(
        listing.contains("models--SG161222--Realistic_Vision_V4.0_noVAE/snapshots/"),
        "{listing}"
    );

    // Offline, with no server at all: the same image.
    drop(hub);
    let out = home.join("offline.png");
    let mut cmd = faceid_with(&home, None);
    cmd.env("HF_HUB_OFFLINE", "1");
    let output = generate_e2e(cmd, &out);
    assert!(output.status.success(), "{}", stderr(&output));
    let err = worst(&out, &expected["e2e.images"], 0);
    assert!(err <= 1.5, "offline: {err}/255");
}

#[test]
fn fetch_failures_are_explained_not_panicked() {
    let home = temp("hub-errors");
    // Offline with an empty cache.
    let mut cmd = faceid_with(&home, None);
    cmd.env("HF_HUB_OFFLINE", "1");
    let output = cmd
        .args(["fetch", "--model-type", "1_5-v1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let log = stderr(&output);
    assert!(
        log.contains("HF_HUB_OFFLINE is set") && !log.contains("panicked"),
        "{log}"
    );

    // A gated repository without a token.
    let hub = MockHub::start();
    publish_tiny_models(&hub, &data().join("../..")).unwrap();
    hub.gate("h94/IP-Adapter-FaceID", "hf_secret");
    let output = faceid_with(&home, Some(&hub))
        .args(["fetch", "--model-type", "1_5-v1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let log = stderr(&output);
    assert!(
        log.contains("gated or private") && log.contains("HF_TOKEN") && !log.contains("panicked"),
        "{log}"
    );
    // With the token it goes through.
    let output = faceid_with(&home, Some(&hub))
        .env("HF_TOKEN", "hf_secret")
        .args(["fetch", "--model-type", "1_5-v1"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));

    // A model type whose weights are not published.
    let output = faceid_with(&home, Some(&hub))
        .args(["fetch", "--model-type", "1_5-auraface-v1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("not published"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn sdxl_model_types_fetch_and_generate_from_a_photo() {
    let hub = MockHub::start();
    publish_tiny_models(&hub, &data().join("../..")).unwrap();
    let home = temp("hub-sdxl");
    let mut images = Vec::new();
    for model_type in ["SDXL-v1", "SDXL-v2-plus"] {
        let out = home.join(format!("{model_type}.png"));
        let output = faceid_with(&home, Some(&hub))
            .arg("generate")
            .args(["--model-type", model_type, "--prompt", "a portrait"])
            .args(["--num-samples", "1", "--steps", "2", "--seed", "5"])
            .args(["--width", "64", "--height", "64"])
            .arg("--face")
            .arg(data().join("faces/astronaut.png"))
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        assert!(output.status.success(), "{model_type}: {}", stderr(&output));
        let image = image::open(&out).unwrap().to_rgb8();
        assert_eq!(image.dimensions(), (64, 64), "{model_type}");
        images.push(image.into_raw());
    }
    assert!(
        home.join("hf/hub/models--SG161222--RealVisXL_V3.0/refs/main")
            .is_file()
    );
    assert!(
        home.join("hf/hub/models--h94--IP-Adapter/refs/main")
            .is_file()
    );
    assert_ne!(
        images[0], images[1],
        "the two SDXL adapters draw differently"
    );
}
