//! The `faceid` binary end to end on the tiny fixtures.

use std::path::PathBuf;
use std::process::Command;

pub fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data")
}

/// Points `cmd` at the tiny SD 1.5 model, FaceID checkpoint and ArcFace.
pub fn tiny_models(cmd: &mut Command) -> &mut Command {
    cmd.arg("--base-model")
        .arg(data().join("sd/tiny-a"))
        .arg("--ip-adapter")
        .arg(data().join("faceid/ip-adapter-faceid_tiny.bin"))
        .arg("--recognizer")
        .arg(data().join("face/arcface_r50_bn.onnx"))
}

/// The binary, offline with empty caches: these tests bring every file themselves.
pub fn faceid() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_faceid"));
    let empty = std::env::temp_dir().join(format!("faceid-cli-{}-no-cache", std::process::id()));
    cmd.env("HF_HUB_OFFLINE", "1")
        .env("HF_HOME", empty.join("hf"))
        .env("FACEID_INSIGHTFACE_ROOT", empty.join("insightface"))
        .env_remove("HF_HUB_CACHE");
    cmd
}

pub fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("faceid-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn generate_writes_the_diffusers_image_for_the_same_seed() {
    // Case `a_ddim` of tests/data/sd/pipelines.json: 2 samples, DDIM, 4 steps, seed 0.
    let dir = temp("generate");
    let out = dir.join("out.png");
    let status = faceid()
        .args([
            "generate",
            "--prompt",
            "a photo of an astronaut riding a horse",
            "--negative-prompt",
            "",
            "--scheduler",
            "ddim",
        ])
        .args([
            "--steps",
            "4",
            "--num-samples",
            "2",
            "--width",
            "32",
            "--height",
            "32",
            "--seed",
            "0",
        ])
        .arg("--base-model")
        .arg(data().join("sd/tiny-a"))
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let reference = faceid_core::testing::read_reference(&data().join("sd/pipelines.safetensors"));
    let expected = &reference["a_ddim.images"];
    for i in 0..2 {
        let worst = worst(&dir.join(format!("out-{i}.png")), expected, i);
        assert!(worst <= 1.5, "sample {i}: {worst}/255");
    }
    let grid = image::open(&out).unwrap();
    assert_eq!((grid.width(), grid.height()), (64, 32));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn generate_reports_bad_input_without_panicking() {
    let dir = temp("bad");
    let output = faceid()
        .args([
            "generate", "--prompt", "x", "--width", "30", "--height", "32", "--steps", "1",
        ])
        .arg("--base-model")
        .arg(data().join("sd/tiny-a"))
        .arg("-o")
        .arg(dir.join("x.png"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid `width`"), "{stderr}");
    let output = faceid()
        .args([
            "generate",
            "--prompt",
            "x",
            "--base-model",
            "/nonexistent",
            "-o",
        ])
        .arg(dir.join("x.png"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a diffusers model folder"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn detect_finds_the_one_face_in_a_real_photo() {
    let dir = temp("detect");
    let drawn = dir.join("drawn.png");
    let output = faceid()
        .arg("detect")
        .arg(data().join("faces/astronaut.png"))
        .arg("--json")
        .arg("--draw")
        .arg(&drawn)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["faces"].as_array().unwrap().len(), 1);
    assert!(json["faces"][0]["score"].as_f64().unwrap() > 0.9);
    assert_eq!(image::open(&drawn).unwrap().width(), 512);
    std::fs::remove_dir_all(&dir).unwrap();
}

pub fn worst(path: &std::path::Path, expected: &faceid_core::HostTensor, index: usize) -> f32 {
    let img = image::open(path).unwrap().to_rgb8();
    let per = expected.shape[1] * expected.shape[2] * 3;
    faceid_core::testing::max_pixel_error(
        img.as_raw(),
        &expected.data[index * per..(index + 1) * per],
    )
}

#[test]
fn generate_with_a_face_photo_matches_the_python_chain() {
    // tests/data/faceid/e2e.json: RetinaFace + a tiny ArcFace on a real photo, FaceID on tiny-a.
    let e2e: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data().join("faceid/e2e.json")).unwrap())
            .unwrap();
    let dir = temp("face");
    let out = dir.join("face.png");
    let output = faceid()
        .arg("generate")
        .args([
            "--prompt",
            e2e["prompt"].as_str().unwrap(),
            "--negative-prompt",
            e2e["negative_prompt"].as_str().unwrap(),
        ])
        .args([
            "--scheduler",
            "ddim",
            "--num-samples",
            "1",
            "--steps",
            "3",
            "--width",
            "32",
            "--height",
            "32",
            "--seed",
            "3",
        ])
        .arg("--base-model")
        .arg(data().join("sd/tiny-a"))
        .arg("--ip-adapter")
        .arg(data().join("faceid/ip-adapter-faceid_tiny.bin"))
        .arg("--face")
        .arg(data().join("faces/astronaut.png"))
        .arg("--recognizer")
        .arg(data().join("face/arcface_r50_bn.onnx"))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected = faceid_core::testing::read_reference(&data().join("faceid/e2e.safetensors"));
    let err = worst(&out, &expected["e2e.images"], 0);
    assert!(err <= 1.5, "{err}/255");

    // The same identity given as an embedding file, without the face models.
    let embedding = dir.join("id.npy");
    faceid_core::tensor_file::write_tensor(&embedding, &expected["e2e.embedding"]).unwrap();
    let out2 = dir.join("from-embedding.png");
    let status = faceid()
        .arg("generate")
        .args([
            "--prompt",
            e2e["prompt"].as_str().unwrap(),
            "--negative-prompt",
            e2e["negative_prompt"].as_str().unwrap(),
        ])
        .args([
            "--scheduler",
            "ddim",
            "--num-samples",
            "1",
            "--steps",
            "3",
            "--width",
            "32",
            "--height",
            "32",
            "--seed",
            "3",
        ])
        .arg("--base-model")
        .arg(data().join("sd/tiny-a"))
        .arg("--ip-adapter")
        .arg(data().join("faceid/ip-adapter-faceid_tiny.safetensors"))
        .arg("--face-embedding")
        .arg(&embedding)
        .arg("-o")
        .arg(&out2)
        .status()
        .unwrap();
    assert!(status.success());
    let err = worst(&out2, &expected["e2e.images"], 0);
    assert!(err <= 1.5, "from embedding: {err}/255");

    // A face without an adapter is refused with a hint.
    let output = faceid()
        .args([
            "generate", "--prompt", "x", "--steps", "1", "--width", "32", "--height", "32",
        ])
        .arg("--base-model")
        .arg(data().join("sd/tiny-a"))
        .arg("--face-embedding")
        .arg(&embedding)
        .arg("-o")
        .arg(dir.join("x.png"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--ip-adapter"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn embed_writes_the_normalised_identity() {
    let dir = temp("embed");
    for name in ["id.npy", "id.safetensors"] {
        let out = dir.join(name);
        let output = faceid()
            .arg("embed")
            .arg(data().join("faces/astronaut.png"))
            .arg("--recognizer")
            .arg(data().join("face/arcface_r50_bn.onnx"))
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let got = faceid_core::tensor_file::read_tensor(&out).unwrap();
        assert_eq!(got.shape, vec![1, 512]);
        let expected = faceid_core::testing::read_reference(&data().join("faceid/e2e.safetensors"));
        let cosine: f32 = got
            .data
            .iter()
            .zip(&expected["e2e.embedding"].data)
            .map(|(a, b)| a * b)
            .sum();
        assert!(cosine >= 0.9999, "{name}: cosine {cosine}");
    }
    let output = faceid()
        .arg("embed")
        .arg("--recognizer")
        .arg(data().join("face/arcface_r50_bn.onnx"))
        .arg("-o")
        .arg(dir.join("x.npy"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no images"));
    std::fs::remove_dir_all(&dir).unwrap();
}
