//! The FaceID Plus model types through the `faceid` binary on the tiny fixtures: a real photo
//! through detection, ArcFace, the aligned 224 crop and the CLIP image encoder into a Plus
//! adapter on an SD-1.5-shaped model whose cross-attention width takes two perceiver heads.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::generate::{data, faceid, temp};

/// `generate --model-type MODEL` with the tiny Plus files, 2 steps at 32x32, seed 3.
fn generate(model_type: &str, checkpoint: &str, out: &Path) -> Command {
    let mut cmd = faceid();
    cmd.args([
        "generate",
        "--model-type",
        model_type,
        "--prompt",
        "a portrait",
    ])
    .args([
        "--steps",
        "2",
        "--num-samples",
        "1",
        "--width",
        "32",
        "--height",
        "32",
    ])
    .args(["--seed", "3"])
    .arg("--base-model")
    .arg(data().join("faceid_plus/tiny-sd128"))
    .arg("--ip-adapter")
    .arg(data().join("faceid_plus").join(checkpoint))
    .arg("--image-encoder")
    .arg(data().join("clip_vision/tiny-vit"))
    .arg("--recognizer")
    .arg(data().join("face/arcface_r50_bn.onnx"))
    .arg("-o")
    .arg(out);
    cmd
}

fn photo() -> PathBuf {
    data().join("faces/astronaut.png")
}

fn pixels(path: &Path) -> Vec<u8> {
    image::open(path).unwrap().to_rgb8().into_raw()
}

fn run(cmd: &mut Command) {
    let output = cmd.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn plus_v2_generates_from_a_photo_and_its_options_change_the_image() {
    let dir = temp("plus-v2");
    let v2 = "ip-adapter-faceid-plusv2_tiny.bin";
    let base = dir.join("base.png");
    run(generate("1_5-v2-plus", v2, &base)
        .arg("--face")
        .arg(photo()));
    assert_eq!(image::open(&base).unwrap().to_rgb8().dimensions(), (32, 32));
    // The same run again is the same image (seeded noise, deterministic kernels).
    let again = dir.join("again.png");
    run(generate("1_5-v2-plus", v2, &again)
        .arg("--face")
        .arg(photo()));
    assert_eq!(pixels(&base), pixels(&again));
    // s_scale weighs the CLIP-refined tokens; the true-colour crop changes the CLIP features.
    for (name, extra) in [("s0", ["--s-scale", "0"]), ("s2", ["--s-scale", "2"])] {
        let out = dir.join(format!("{name}.png"));
        run(generate("1_5-v2-plus", v2, &out)
            .arg("--face")
            .arg(photo())
            .args(extra));
        assert_ne!(pixels(&base), pixels(&out), "{name} gave the default image");
    }
    let rgb = dir.join("rgb.png");
    run(generate("1_5-v2-plus", v2, &rgb)
        .arg("--face")
        .arg(photo())
        .arg("--face-crop-rgb"));
    assert_ne!(
        pixels(&base),
        pixels(&rgb),
        "the RGB crop gave the BGR crop's image"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_face_file_from_embed_reproduces_the_photo_run() {
    let dir = temp("plus-embed");
    let v1 = "ip-adapter-faceid-plus_tiny.bin";
    let from_photo = dir.join("photo.png");
    run(generate("1_5-v1-plus", v1, &from_photo)
        .arg("--face")
        .arg(photo()));
    let face = dir.join("face.safetensors");
    run(faceid()
        .arg("embed")
        .arg(photo())
        .arg("--recognizer")
        .arg(data().join("face/arcface_r50_bn.onnx"))
        .arg("--image-encoder")
        .arg(data().join("clip_vision/tiny-vit"))
        .arg("-o")
        .arg(&face));
    let from_file = dir.join("file.png");
    run(generate("1_5-v1-plus", v1, &from_file)
        .arg("--face-embedding")
        .arg(&face));
    assert_eq!(pixels(&from_photo), pixels(&from_file));

    // An identity alone cannot drive a Plus model: refused before any model loads.
    let plain = dir.join("plain.npy");
    run(faceid()
        .arg("embed")
        .arg(photo())
        .arg("--recognizer")
        .arg(data().join("face/arcface_r50_bn.onnx"))
        .arg("-o")
        .arg(&plain));
    let output = generate("1_5-v1-plus", v1, &dir.join("never.png"))
        .arg("--face-embedding")
        .arg(&plain)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("CLIP features"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_plus_model_type_refuses_a_v1_checkpoint() {
    let dir = temp("plus-mismatch");
    let output = faceid()
        .args([
            "generate",
            "--model-type",
            "1_5-v2-plus",
            "--prompt",
            "a portrait",
        ])
        .args([
            "--steps",
            "1",
            "--num-samples",
            "1",
            "--width",
            "32",
            "--height",
            "32",
        ])
        .arg("--base-model")
        .arg(data().join("sd/tiny-a"))
        .arg("--ip-adapter")
        .arg(data().join("faceid/ip-adapter-faceid_tiny.bin"))
        .arg("--image-encoder")
        .arg(data().join("clip_vision/tiny-vit"))
        .arg("--recognizer")
        .arg(data().join("face/arcface_r50_bn.onnx"))
        .arg("--face")
        .arg(photo())
        .arg("-o")
        .arg(dir.join("x.png"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("FaceID v1 checkpoint"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
