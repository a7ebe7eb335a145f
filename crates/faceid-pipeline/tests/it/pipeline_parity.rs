//! Whole-pipeline images against diffusers' `StableDiffusionPipeline` on the tiny fixtures: every
//! scheduler, guidance on and off, several samples, non-square sizes, a replaced VAE, given
//! latents, and the v-prediction SD-2-shaped model.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::PathBuf;

use faceid_core::testing::read_reference;
use faceid_core::{Device, HostTensor};
use faceid_pipeline::{GenerateRequest, PipelineError, StableDiffusion};

use crate::images::worst_error;

fn data() -> PathBuf {
    crate::test_data().join("sd")
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    model: String,
    vae: Option<String>,
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
}

fn cases() -> Vec<Case> {
    serde_json::from_str(&std::fs::read_to_string(data().join("pipelines.json")).unwrap()).unwrap()
}

fn run_cases(device: &Device) {
    let reference = read_reference(&data().join("pipelines.safetensors"));
    let mut models: HashMap<(String, Option<String>), StableDiffusion> = HashMap::new();
    let mut report = Vec::new();
    for case in cases() {
        let key = (case.model.clone(), case.vae.clone());
        let sd = models.entry(key).or_insert_with(|| {
            let vae = case.vae.as_ref().map(|v| data().join(v));
            StableDiffusion::from_dir(&data().join(&case.model), vae.as_deref(), device).unwrap()
        });
        let request = GenerateRequest {
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
            latents: case
                .latents
                .then(|| reference[&format!("{}.latents_in", case.name)].clone()),
            face: None,
            size_conditioning: None,
        };
        let mut calls = 0;
        let out = sd
            .generate(&request, &mut |_| {
                calls += 1;
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(calls, case.steps + 1, "{}: progress callbacks", case.name);
        let worst = worst_error(&out.images, &reference[&format!("{}.images", case.name)]);
        report.push(format!("{}: {worst:.3}/255", case.name));
        // 1/255 plus the half-unit of rounding the float reference has not had.
        assert!(
            worst <= 1.5,
            "{}: worst channel error {worst}/255",
            case.name
        );
    }
    eprintln!("pipeline parity: {}", report.join(", "));
}

#[test]
fn pipeline_matches_diffusers_for_every_case() {
    for device in faceid_core::testing::devices() {
        run_cases(&device);
    }
}

#[test]
fn requests_out_of_range_are_refused_with_the_field_named() {
    let device = Device::flex();
    let sd = StableDiffusion::from_dir(&data().join("tiny-a"), None, &device).unwrap();
    let base = GenerateRequest {
        prompt: "x".into(),
        width: 32,
        height: 32,
        steps: 2,
        ..Default::default()
    };
    let cases: Vec<(&str, GenerateRequest)> = vec![
        (
            "width",
            GenerateRequest {
                width: 36,
                ..base.clone()
            },
        ),
        (
            "height",
            GenerateRequest {
                height: 0,
                ..base.clone()
            },
        ),
        (
            "num_inference_steps",
            GenerateRequest {
                steps: 0,
                ..base.clone()
            },
        ),
        (
            "num_samples",
            GenerateRequest {
                num_samples: 0,
                ..base.clone()
            },
        ),
        (
            "guidance_scale",
            GenerateRequest {
                guidance_scale: f32::NAN,
                ..base.clone()
            },
        ),
        (
            "latents",
            GenerateRequest {
                latents: Some(HostTensor::new(vec![1, 4, 2, 2], vec![0.0; 16])),
                ..base.clone()
            },
        ),
    ];
    for (field, request) in cases {
        match sd.generate(&request, &mut |_| ControlFlow::Continue(())) {
            Err(PipelineError::InvalidRequest { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: expected InvalidRequest, got {other:?}"),
        }
    }
}

#[test]
fn a_run_can_be_cancelled_between_steps() {
    let device = Device::flex();
    let sd = StableDiffusion::from_dir(&data().join("tiny-a"), None, &device).unwrap();
    let request = GenerateRequest {
        prompt: "x".into(),
        width: 32,
        height: 32,
        steps: 5,
        ..Default::default()
    };
    let err = sd
        .generate(&request, &mut |p| {
            if p.step == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap_err();
    assert!(
        matches!(err, PipelineError::Cancelled { step: 2 }),
        "{err:?}"
    );
}

#[test]
fn a_folder_without_a_vae_asks_for_one() {
    let device = Device::flex();
    let dir = std::env::temp_dir().join(format!("faceid-novae-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("unet")).unwrap();
    std::fs::write(dir.join("model_index.json"), "{}").unwrap();
    let err = StableDiffusion::from_dir(&dir, None, &device).unwrap_err();
    assert!(err.to_string().contains("separate VAE"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
