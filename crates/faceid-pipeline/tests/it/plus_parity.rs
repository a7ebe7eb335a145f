//! FaceID Plus (`1_5-v2-plus` and `1_5-v1-plus`) end to end from a real photo against the
//! Python chain of `tests/data/faceid_plus_e2e`: RetinaFace, ArcFace, the aligned crop through
//! the tiny CLIP vision tower, and diffusers with the tiny Plus adapters loaded.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

use faceid_core::testing::read_reference;
use faceid_core::{Device, HostTensor, Precision};
use faceid_face::{
    DetectOptions, DetectorModel, FaceAnalyzer, FaceImage, ImageLimits, RecognizerModel,
};
use faceid_pipeline::{
    AdapterOptions, ClipImageEncoder, FaceCrop, FaceEncoder, GenerateRequest, PlusOptions,
    SchedulerKind, StableDiffusion,
};

use crate::images::worst_error;

fn data() -> PathBuf {
    crate::test_data()
}

#[derive(serde::Deserialize)]
struct Settings {
    prompt: String,
    negative_prompt: String,
    steps: usize,
    guidance_scale: f32,
    num_images_per_prompt: usize,
    width: usize,
    height: usize,
    seed: u64,
}

fn max_abs_diff(a: &HostTensor, b: &HostTensor) -> f32 {
    assert_eq!(a.shape, b.shape);
    a.data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn faceid_plus_from_a_real_photo_matches_the_python_chain() {
    let device = Device::flex();
    let dir = data().join("faceid_plus_e2e");
    let settings: Settings =
        serde_json::from_str(&std::fs::read_to_string(dir.join("e2e.json")).unwrap()).unwrap();
    let expected = read_reference(&dir.join("e2e.safetensors"));

    let analyzer = FaceAnalyzer::new(
        DetectorModel::BuiltinRetinaFace,
        Some(RecognizerModel::File(
            data().join("face/arcface_r50_bn.onnx"),
        )),
        &device,
    )
    .unwrap();
    let clip = Arc::new(
        ClipImageEncoder::from_dir_in(
            &data().join("clip_vision/tiny-vit"),
            &device,
            Precision::F32,
        )
        .unwrap(),
    );
    let encoder = FaceEncoder::new(analyzer, Some(clip.clone()), FaceCrop::ReferenceBgr);
    let photo =
        FaceImage::open(data().join("faces/astronaut.png"), &ImageLimits::default()).unwrap();
    let (identity, face) = encoder
        .encode_images(&[photo], &DetectOptions::default())
        .unwrap();

    let cosine: f32 = face
        .id_embedding
        .data
        .iter()
        .zip(&expected["id_embedding"].data)
        .map(|(a, b)| a * b)
        .sum();
    let clip_diff = max_abs_diff(
        face.clip_embeds
            .as_ref()
            .expect("Plus conditioning has CLIP features"),
        &expected["clip_embeds"],
    );

    // The image encoder alone, on the very pixels the processor received in Python.
    let reference_crop = image::open(dir.join("crop_224.png")).unwrap().to_rgb8();
    let features = clip.mean_features(&[reference_crop.clone()]).unwrap();
    let shape = features.dims().to_vec();
    let features = HostTensor::new(shape, features.try_into_vec_as::<f32>().unwrap());
    let encoder_diff = max_abs_diff(&features, &expected["clip_embeds"]);

    // The aligned crop (true colours here; the reference's is BGR read as RGB).
    let crop = identity.crops().next().expect("one face crop");
    let (mut crop_max, mut crop_sum) = (0u8, 0u64);
    for (ours, theirs) in crop.pixels().zip(reference_crop.pixels()) {
        for c in 0..3 {
            let d = ours.0[c].abs_diff(theirs.0[2 - c]);
            crop_max = crop_max.max(d);
            crop_sum += u64::from(d);
        }
    }
    let crop_mean = crop_sum as f64 / (crop.len() as f64);
    println!(
        "identity cosine {cosine}; CLIP features max |diff| {clip_diff} (encoder on the reference \
         crop {encoder_diff}); crop vs reference max {crop_max}, mean {crop_mean:.4} levels"
    );
    assert!(cosine >= 0.9999, "identity cosine similarity {cosine}");
    assert!(
        encoder_diff <= 1e-3,
        "CLIP features of the reference crop: max |diff| {encoder_diff}"
    );
    // The crop is aligned from keypoints equal to the reference's up to their last bits, so a
    // few pixels may differ by a level; features of magnitude ~7 move by a few thousandths.
    assert!(clip_diff <= 1e-2, "CLIP features: max |diff| {clip_diff}");

    let model = data().join("faceid_plus");
    for (name, checkpoint, plus) in [
        (
            "plusv2",
            "ip-adapter-faceid-plusv2_tiny.bin",
            PlusOptions::v2(1.0),
        ),
        (
            "plus",
            "ip-adapter-faceid-plus_tiny.bin",
            PlusOptions::default(),
        ),
    ] {
        let mut sd = StableDiffusion::from_dir(&model.join("tiny-sd128"), None, &device).unwrap();
        sd.install_faceid(
            &model.join(checkpoint),
            &AdapterOptions::default(),
            plus,
            Some(&clip),
        )
        .unwrap();
        let request = GenerateRequest {
            prompt: settings.prompt.clone(),
            negative_prompt: Some(settings.negative_prompt.clone()),
            num_samples: settings.num_images_per_prompt,
            width: settings.width,
            height: settings.height,
            steps: settings.steps,
            guidance_scale: settings.guidance_scale,
            seed: settings.seed,
            scheduler: Some(SchedulerKind::Ddim),
            eta: 0.0,
            latents: None,
            face: Some(face.clone()),
            size_conditioning: None,
        };
        let out = sd
            .generate(&request, &mut |_| ControlFlow::Continue(()))
            .unwrap();
        let worst = worst_error(&out.images, &expected[&format!("{name}.images")]);
        println!("{name}: worst channel error {worst}/255");
        assert!(worst <= 1.5, "{name}: worst channel error {worst}/255");
    }
}
