//! Embedding faceid in an application: load a Stable Diffusion folder and a FaceID adapter once,
//! compute an identity from a photo, generate. Runs as it is on the tiny test models:
//!
//! ```sh
//! cargo run --example faceid_tiny -- out.png
//! ```
//!
//! With real weights, point the paths at a diffusers SD 1.5 folder, `ip-adapter-faceid_sd15.bin`
//! and insightface's `w600k_r50.onnx`, and use 512×512.

use std::ops::ControlFlow;
use std::path::PathBuf;

use faceid::face::{
    DetectOptions, DetectorModel, FaceAnalyzer, FaceImage, ImageLimits, RecognizerModel,
};
use faceid::pipeline::{AdapterOptions, FaceCrop, FaceEncoder, PlusOptions};
use faceid::{GenerateRequest, StableDiffusion};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let output = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "faceid_tiny.png".into());
    let device = faceid::core::DeviceKind::Flex.device()?;

    // Load once.
    let mut sd = StableDiffusion::from_dir(&data.join("sd/tiny-a"), None, &device)?;
    sd.install_faceid(
        &data.join("faceid/ip-adapter-faceid_tiny.bin"),
        &AdapterOptions::default(),
        PlusOptions::default(),
        None,
    )?;
    let analyzer = FaceAnalyzer::new(
        DetectorModel::BuiltinRetinaFace,
        Some(RecognizerModel::File(data.join("face/arcface_r50_bn.onnx"))),
        &device,
    )?;
    let faces = FaceEncoder::new(analyzer, None, FaceCrop::default());

    // Generate as often as needed.
    let photo = FaceImage::open(data.join("faces/astronaut.png"), &ImageLimits::default())?;
    let (_, face) = faces.encode_images(&[photo], &DetectOptions::default())?;
    let request = GenerateRequest {
        prompt: "a photo of an astronaut, best quality".into(),
        width: 32,
        height: 32,
        steps: 4,
        seed: 42,
        face: Some(face),
        ..Default::default()
    };
    let out = sd.generate(&request, &mut |p| {
        eprintln!("step {}/{}", p.step, p.total);
        ControlFlow::Continue(())
    })?;
    out.images[0].save(&output)?;
    eprintln!("seed {}: wrote {output}", out.seed);
    Ok(())
}
