//! The FaceID pipeline (`1_5-v1`) against diffusers with the adapter loaded, on the tiny
//! fixtures of `tests/data/faceid`, and end to end from a real photo.

use std::ops::ControlFlow;
use std::path::PathBuf;

use faceid_core::testing::read_reference;
use faceid_core::{Device, HostTensor};
use faceid_face::{
    DetectOptions, DetectorModel, FaceAnalyzer, FaceImage, ImageLimits, RecognizerModel,
};
use faceid_pipeline::{
    AdapterOptions, FaceConditioning, FaceCrop, FaceEncoder, GenerateRequest, LoraSource,
    PlusOptions, StableDiffusion,
};

use crate::images::worst_error;

fn data() -> PathBuf {
    crate::test_data()
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    prompt: String,
    negative_prompt: String,
    steps: usize,
    guidance_scale: f32,
    num_images_per_prompt: usize,
    width: usize,
    height: usize,
    latents: bool,
    scheduler: String,
    seed: u64,
    ip_scale: f32,
    lora: bool,
    lora_scale: f32,
}

fn load(device: &Device, case: &Case) -> StableDiffusion {
    let mut sd = StableDiffusion::from_dir(&data().join("sd/tiny-a"), None, device).unwrap();
    let options = AdapterOptions {
        ip_scale: case.ip_scale,
        lora_scale: case.lora_scale,
        lora: if case.lora {
            LoraSource::Checkpoint
        } else {
            LoraSource::None
        },
    };
    sd.install_faceid(
        &data().join("faceid/ip-adapter-faceid_tiny.bin"),
        &options,
        PlusOptions::default(),
        None,
    )
    .unwrap();
    sd
}

fn request(case: &Case, embedding: HostTensor, latents: Option<HostTensor>) -> GenerateRequest {
    GenerateRequest {
        prompt: case.prompt.clone(),
        negative_prompt: Some(case.negative_prompt.clone()),
        num_samples: case.num_images_per_prompt,
        width: case.width,
        height: case.height,
        steps: case.steps,
        guidance_scale: case.guidance_scale,
        seed: case.seed,
        scheduler: Some(case.scheduler.parse().unwrap()),
        eta: 0.0,
        latents,
        face: Some(FaceConditioning::identity(embedding)),
        size_conditioning: None,
    }
}

#[test]
fn faceid_pipeline_matches_diffusers_for_every_case() {
    let cases: Vec<Case> = serde_json::from_str(
        &std::fs::read_to_string(data().join("faceid/pipelines.json")).unwrap(),
    )
    .unwrap();
    let images = read_reference(&data().join("faceid/pipelines.safetensors"));
    let reference = read_reference(&data().join("faceid/reference.safetensors"));
    let mut report = Vec::new();
    for device in faceid_core::testing::devices() {
        for case in &cases {
            let sd = load(&device, case);
            let latents = case
                .latents
                .then(|| images[&format!("{}.latents_in", case.name)].clone());
            let out = sd
                .generate(
                    &request(case, reference["id.embedding"].clone(), latents),
                    &mut |_| ControlFlow::Continue(()),
                )
                .unwrap();
            let worst = worst_error(&out.images, &images[&format!("{}.images", case.name)]);
            report.push(format!("{}: {worst:.2}/255", case.name));
            assert!(
                worst <= 1.5,
                "{}: worst channel error {worst}/255",
                case.name
            );
        }
    }
    eprintln!("faceid pipeline parity: {}", report.join(", "));
}

#[test]
fn faceid_from_a_real_photo_matches_the_python_chain() {
    let device = Device::flex();
    let e2e: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data().join("faceid/e2e.json")).unwrap())
            .unwrap();
    let case: Case = serde_json::from_value(e2e.clone()).unwrap();
    let expected = read_reference(&data().join("faceid/e2e.safetensors"));
    let analyzer = FaceAnalyzer::new(
        DetectorModel::BuiltinRetinaFace,
        Some(RecognizerModel::File(
            data().join("face/arcface_r50_bn.onnx"),
        )),
        &device,
    )
    .unwrap();
    let photo =
        FaceImage::open(data().join("faces/astronaut.png"), &ImageLimits::default()).unwrap();
    let faces = FaceEncoder::new(analyzer, None, FaceCrop::default());
    let (_, face) = faces
        .encode_images(&[photo], &DetectOptions::default())
        .unwrap();
    let identity = face.id_embedding;
    let cosine: f32 = identity
        .data
        .iter()
        .zip(&expected["e2e.embedding"].data)
        .map(|(a, b)| a * b)
        .sum();
    assert!(cosine >= 0.9999, "identity cosine similarity {cosine}");
    let sd = load(&device, &case);
    let out = sd
        .generate(&request(&case, identity, None), &mut |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
    let worst = worst_error(&out.images, &expected["e2e.images"]);
    assert!(worst <= 1.5, "end to end: worst channel error {worst}/255");
}

#[test]
fn a_face_embedding_without_an_adapter_is_refused() {
    let device = Device::flex();
    let sd = StableDiffusion::from_dir(&data().join("sd/tiny-a"), None, &device).unwrap();
    let request = GenerateRequest {
        prompt: "x".into(),
        width: 32,
        height: 32,
        steps: 1,
        face: Some(FaceConditioning::identity(HostTensor::new(
            vec![1, 512],
            vec![0.0; 512],
        ))),
        ..Default::default()
    };
    let err = sd
        .generate(&request, &mut |_| ControlFlow::Continue(()))
        .unwrap_err();
    assert!(err.to_string().contains("`face`"), "{err}");
}

#[test]
fn a_batch_of_requests_gives_each_the_images_it_gets_alone() {
    let device = Device::flex();
    let e2e: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data().join("faceid/e2e.json")).unwrap())
            .unwrap();
    let case: Case = serde_json::from_value(e2e).unwrap();
    let expected = read_reference(&data().join("faceid/e2e.safetensors"));
    let sd = load(&device, &case);
    let first = request(&case, expected["e2e.embedding"].clone(), None);
    let mut other_identity = expected["e2e.embedding"].clone();
    other_identity.data.reverse();
    let second = GenerateRequest {
        prompt: "a portrait in the rain".into(),
        seed: 11,
        num_samples: 2,
        face: Some(FaceConditioning::identity(other_identity)),
        ..first.clone()
    };
    let batch = sd
        .generate_batch(&[first.clone(), second.clone()], &mut |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!((batch[0].images.len(), batch[1].images.len()), (1, 2));
    assert_eq!((batch[0].seed, batch[1].seed), (case.seed, 11));
    // The first is diffusers' e2e image; the second is what it gives alone.
    let worst = worst_error(&batch[0].images, &expected["e2e.images"]);
    assert!(worst <= 1.5, "batched e2e: {worst}/255");
    let alone = sd
        .generate(&second, &mut |_| ControlFlow::Continue(()))
        .unwrap();
    for (a, b) in alone.images.iter().zip(&batch[1].images) {
        let diff = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| x.abs_diff(*y))
            .max()
            .unwrap();
        assert!(diff <= 1, "batched vs alone: {diff}/255");
    }

    // Requests of different shapes, and noise-drawing schedulers, are refused as batches.
    let taller = GenerateRequest {
        height: 40,
        ..second.clone()
    };
    let err = sd
        .generate_batch(&[first.clone(), taller], &mut |_| ControlFlow::Continue(()))
        .unwrap_err();
    assert!(err.to_string().contains("same width, height"), "{err}");
    let ancestral = |r: &GenerateRequest| GenerateRequest {
        scheduler: Some("euler-a".parse().unwrap()),
        ..r.clone()
    };
    let err = sd
        .generate_batch(&[ancestral(&first), ancestral(&second)], &mut |_| {
            ControlFlow::Continue(())
        })
        .unwrap_err();
    assert!(err.to_string().contains("one at a time"), "{err}");
    assert!(
        sd.generate_batch(&[], &mut |_| ControlFlow::Continue(()))
            .is_err()
    );
}
