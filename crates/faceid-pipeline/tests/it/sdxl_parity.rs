//! SDXL against diffusers' `StableDiffusionXLPipeline` on the tiny SDXL-shaped fixture
//! (`tests/data/sdxl`, three blocks, mixed transformer depths, per-block heads, linear
//! projections): both tokenizers and text encoders, the UNet with its added conditioning, and
//! whole pipelines for every scheduler case, with and without a negative prompt.

use std::ops::ControlFlow;
use std::path::PathBuf;

use faceid_core::testing::{max_abs_diff, read_reference};
use faceid_core::{Device, HostTensor, Precision};
use faceid_pipeline::{
    AdapterOptions, BaseFamily, ClipImageEncoder, FaceConditioning, GenerateRequest, LoraSource,
    PlusOptions, PromptEncoder, SizeConditioning, StableDiffusion,
};
use faceid_unet::{Conditioning, TextTime, UNet2DConditionModel};

use crate::images::worst_error;

fn data() -> PathBuf {
    crate::test_data().join("sdxl")
}

fn model() -> PathBuf {
    data().join("tiny-xl")
}

fn ids(tensor: &HostTensor) -> Vec<u32> {
    tensor.data.iter().map(|&v| v as u32).collect()
}

fn check_text(device: &Device) {
    let reference = read_reference(&data().join("reference.safetensors"));
    let prompts: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(data().join("text_cases.json")).unwrap())
            .unwrap();
    let encoder = PromptEncoder::dual_from_dir(&model(), device, Precision::F32, true).unwrap();
    let PromptEncoder::Dual {
        tokenizers,
        text_encoders,
        ..
    } = &encoder
    else {
        panic!("an SDXL folder gives two text encoders");
    };
    let mut worst = 0.0f32;
    for (i, prompt) in prompts.iter().enumerate() {
        let get = |k: &str| reference[&format!("text.{i}.{k}")].clone();
        for (n, tokenizer) in tokenizers.iter().enumerate() {
            let expected = ids(&get(&format!("ids_{}", n + 1)));
            assert_eq!(
                tokenizer.encode(prompt).unwrap(),
                expected,
                "tokenizer {} on {prompt:?}",
                n + 1
            );
        }
        for (n, text_encoder) in text_encoders.iter().enumerate() {
            let out = text_encoder
                .encode_hidden(&[ids(&get(&format!("ids_{}", n + 1)))], 1)
                .unwrap();
            worst = worst.max(max_abs_diff(
                out.hidden_states,
                &get(&format!("hidden_{}", n + 1)),
            ));
            match (n, out.text_embeds) {
                (0, None) => {}
                (1, Some(pooled)) => worst = worst.max(max_abs_diff(pooled, &get("pooled_2"))),
                (n, pooled) => panic!("encoder {n}: text_embeds {:?}", pooled.is_some()),
            }
        }
        let embeds = encoder.encode(prompt).unwrap();
        worst = worst.max(max_abs_diff(embeds.tokens, &get("prompt_embeds")));
        worst = worst.max(max_abs_diff(
            embeds.pooled.unwrap(),
            &get("pooled_prompt_embeds"),
        ));
    }
    eprintln!("sdxl text encoders: max abs error {worst:e}");
    assert!(worst < 1e-4, "text encoders: max abs error {worst}");

    // No negative prompt: zeros of the same shapes (force_zeros_for_empty_prompt).
    let zeros = encoder.encode_negative(None).unwrap();
    let like = encoder.encode("").unwrap();
    assert_eq!(zeros.tokens.dims(), like.tokens.dims());
    let max: f32 = zeros.tokens.abs().max().into_scalar();
    assert_eq!(max, 0.0);
    assert_eq!(
        zeros.pooled.unwrap().dims(),
        like.pooled.clone().unwrap().dims()
    );
    // An empty string is encoded, not zeroed.
    let empty = encoder.encode_negative(Some("")).unwrap();
    let err: f32 = (empty.tokens - like.tokens).abs().max().into_scalar();
    assert_eq!(err, 0.0);
}

#[test]
fn sdxl_text_encoders_match_transformers() {
    for device in faceid_core::testing::devices() {
        check_text(&device);
    }
}

fn check_unet(device: &Device) {
    let reference = read_reference(&data().join("reference.safetensors"));
    let unet = UNet2DConditionModel::from_dir(&model().join("unet"), device).unwrap();
    let mut worst = 0.0f32;
    for case in 0.. {
        let key = |k: &str| format!("unet.{case}.{k}");
        if !reference.contains_key(&key("out")) {
            assert!(case >= 2, "two UNet cases");
            break;
        }
        let get = |k: &str| reference[&key(k)].clone();
        let time_ids = get("time_ids");
        let conditioning = Conditioning::text(get("encoder_hidden_states").to_tensor::<3>(device))
            .with_text_time(Some(TextTime {
                text_embeds: get("text_embeds").to_tensor::<2>(device),
                time_ids: time_ids
                    .data
                    .chunks(6)
                    .map(|c| c.try_into().unwrap())
                    .collect(),
            }));
        let out = unet
            .forward(
                get("sample").to_tensor::<4>(device),
                get("timestep").data[0],
                &conditioning,
            )
            .unwrap();
        worst = worst.max(max_abs_diff(out, &get("out")));
    }
    eprintln!("sdxl unet: max abs error {worst:e}");
    assert!(worst < 1e-4, "SDXL UNet: max abs error {worst}");
}

#[test]
fn sdxl_unet_with_added_conditioning_matches_diffusers() {
    for device in faceid_core::testing::devices() {
        check_unet(&device);
    }
}

#[test]
fn an_sdxl_unet_needs_its_added_conditioning_and_sd15_refuses_it() {
    let device = Device::flex();
    let unet = UNet2DConditionModel::from_dir(&model().join("unet"), &device).unwrap();
    let sample = faceid_core::Tensor::<4>::zeros([1, 4, 8, 8], &device);
    let text = faceid_core::Tensor::<3>::zeros([1, 77, 128], &device);
    let err = unet
        .forward(sample.clone(), 1.0, &Conditioning::text(text.clone()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("text_time"), "{err}");
    let wrong = Conditioning::text(text).with_text_time(Some(TextTime {
        text_embeds: faceid_core::Tensor::<2>::zeros([1, 31], &device),
        time_ids: vec![[8.0, 8.0, 0.0, 0.0, 8.0, 8.0]],
    }));
    let err = unet.forward(sample, 1.0, &wrong).unwrap_err().to_string();
    assert!(
        err.contains("text_embeds") && err.contains("[1, 32]"),
        "{err}"
    );
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    prompt: String,
    negative_prompt: Option<String>,
    steps: usize,
    guidance_scale: f32,
    num_images_per_prompt: usize,
    width: usize,
    height: usize,
    latents: bool,
    scheduler: String,
    seed: u64,
    /// Given only where the case sets SDXL's sizes; `time_ids` is what the reference built.
    original_size: Option<[f32; 2]>,
    time_ids: [f32; 6],
}

fn run_pipelines(device: &Device) {
    let cases: Vec<Case> =
        serde_json::from_str(&std::fs::read_to_string(data().join("pipelines.json")).unwrap())
            .unwrap();
    let reference = read_reference(&data().join("pipelines.safetensors"));
    let sd = StableDiffusion::from_dir(&model(), None, device).unwrap();
    assert_eq!(sd.family(), BaseFamily::Sdxl);
    let mut report = Vec::new();
    for case in cases {
        let request = GenerateRequest {
            prompt: case.prompt.clone(),
            negative_prompt: case.negative_prompt.clone(),
            num_samples: case.num_images_per_prompt,
            width: case.width,
            height: case.height,
            steps: case.steps,
            guidance_scale: case.guidance_scale,
            seed: case.seed,
            scheduler: Some(case.scheduler.parse().unwrap()),
            eta: 0.0,
            latents: case
                .latents
                .then(|| reference[&format!("{}.latents_in", case.name)].clone()),
            face: None,
            // The default sizes are the pipeline's to build; explicit ones are passed on.
            size_conditioning: case.original_size.map(|_| {
                let t = case.time_ids;
                SizeConditioning {
                    original_size: (t[0], t[1]),
                    crops_coords_top_left: (t[2], t[3]),
                    target_size: (t[4], t[5]),
                }
            }),
        };
        if case.original_size.is_none() {
            assert_eq!(
                SizeConditioning::for_size(case.height, case.width).time_ids(),
                case.time_ids,
                "{}: default time ids",
                case.name
            );
        }
        let out = sd
            .generate(&request, &mut |_| ControlFlow::Continue(()))
            .unwrap();
        let worst = worst_error(&out.images, &reference[&format!("{}.images", case.name)]);
        report.push(format!("{}: {worst:.3}/255", case.name));
        assert!(
            worst <= 1.5,
            "{}: worst channel error {worst}/255",
            case.name
        );
    }
    eprintln!("sdxl pipeline parity: {}", report.join(", "));
}

#[test]
fn sdxl_pipelines_match_diffusers() {
    for device in faceid_core::testing::devices() {
        run_pipelines(&device);
    }
}

#[derive(serde::Deserialize)]
struct FaceIdCase {
    name: String,
    checkpoint: String,
    projection: String,
    prompt: String,
    negative_prompt: Option<String>,
    steps: usize,
    guidance_scale: f32,
    num_images_per_prompt: usize,
    width: usize,
    height: usize,
    scheduler: String,
    seed: u64,
    ip_scale: f32,
    lora: bool,
    lora_scale: f32,
    embedding: String,
    clip_embeds: Option<String>,
    s_scale: Option<f32>,
}

/// FaceID on SDXL (`SDXL-v1`: MLP tokens; `SDXL-v2-plus`: the Plus projection with the
/// shortcut, the tiny CLIP vision tower for its unconditional features) against diffusers'
/// `StableDiffusionXLPipeline` with the adapter loaded (cross-checked in the generator against
/// the original tencent classes), at IP scale 1 and 0.6 and s_scale 1 and 0.5.
fn run_faceid_pipelines(device: &Device) -> Vec<String> {
    let cases: Vec<FaceIdCase> = serde_json::from_str(
        &std::fs::read_to_string(data().join("faceid_pipelines.json")).unwrap(),
    )
    .unwrap();
    let reference = read_reference(&data().join("faceid_pipelines.safetensors"));
    let clip = ClipImageEncoder::from_dir_in(
        &data().join("../clip_vision/tiny-vit"),
        device,
        Precision::F32,
    )
    .unwrap();
    let mut report = Vec::new();
    for case in cases {
        let plus = case.projection == "plus";
        let mut sd = StableDiffusion::from_dir(&model(), None, device).unwrap();
        let options = AdapterOptions {
            ip_scale: case.ip_scale,
            lora_scale: case.lora_scale,
            lora: if case.lora {
                LoraSource::Checkpoint
            } else {
                LoraSource::None
            },
        };
        let plus_options = match case.s_scale {
            Some(s) => PlusOptions::v2(s),
            None => PlusOptions::default(),
        };
        sd.install_faceid(
            &data().join(&case.checkpoint),
            &options,
            plus_options,
            plus.then_some(&clip),
        )
        .unwrap();
        assert_eq!(sd.is_faceid_plus(), plus, "{}", case.name);
        let face = FaceConditioning {
            id_embedding: reference[&case.embedding].clone(),
            clip_embeds: case.clip_embeds.as_ref().map(|k| reference[k].clone()),
        };
        let request = GenerateRequest {
            prompt: case.prompt.clone(),
            negative_prompt: case.negative_prompt.clone(),
            num_samples: case.num_images_per_prompt,
            width: case.width,
            height: case.height,
            steps: case.steps,
            guidance_scale: case.guidance_scale,
            seed: case.seed,
            scheduler: Some(case.scheduler.parse().unwrap()),
            face: Some(face),
            ..Default::default()
        };
        let out = sd
            .generate(&request, &mut |_| ControlFlow::Continue(()))
            .unwrap();
        let worst = worst_error(&out.images, &reference[&format!("{}.images", case.name)]);
        report.push(format!("{}: {worst:.3}/255", case.name));
        assert!(
            worst <= 1.5,
            "{}: worst channel error {worst}/255",
            case.name
        );
    }
    report
}

#[test]
fn faceid_sdxl_pipelines_match_diffusers() {
    for device in faceid_core::testing::devices() {
        let report = run_faceid_pipelines(&device);
        eprintln!("sdxl faceid pipeline parity: {}", report.join(", "));
    }
}
