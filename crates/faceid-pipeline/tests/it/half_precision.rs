//! The f16 path against diffusers' and transformers' own f16 results (`tests/data/fp16`, the
//! tiny models run with `module.half()`), on every device of the build that computes in f16.
//!
//! Two f16 implementations round differently, so each output is held to two bounds: within
//! `HALF_MARGIN` of the reference's f16 output, and no further from the f32 reference than the
//! reference's own f16 output is, plus `EXTRA_ERROR`.
//!
//! The bounds hold because every sum runs in f32, as PyTorch's do: matrix products accumulate in
//! f32 on every backend, the GPU backends run convolutions as matrix products
//! (`faceid_core::im2col`) and attention in f32 (`faceid_core::attention::materialized`). burn's
//! direct convolution, which autotune picks where the device has no matrix cores, accumulates
//! f16 in f16 and put the UNet 4 to 5 times further from f32 than diffusers' f16 (9e-3 against
//! 2e-3 on Mesa's software Vulkan); these bounds would fail on it.

use std::collections::HashMap;
use std::path::PathBuf;

use faceid_clip::ClipTextModel;
use faceid_core::testing::{max_abs_diff, max_pixel_error, read_reference};
use faceid_core::{ComponentMemory, Device, HostTensor, Precision, Tensor};
use faceid_ipadapter::{AdapterOptions, FaceIdAdapter, PlusOptions, ProjectionInput};
use faceid_pipeline::{GenerateRequest, StableDiffusion};
use faceid_unet::{Conditioning, UNet2DConditionModel};

fn data() -> PathBuf {
    crate::test_data()
}

/// The f16 references, the f32 references they derive from, and the reference's f16 errors.
struct References {
    half: HashMap<String, HostTensor>,
    sd: HashMap<String, HostTensor>,
    faceid: HashMap<String, HostTensor>,
    errors: serde_json::Value,
}

impl References {
    fn load() -> Self {
        let errors = std::fs::read_to_string(data().join("fp16/errors.json")).unwrap();
        Self {
            half: read_reference(&data().join("fp16/reference.safetensors")),
            sd: read_reference(&data().join("sd/tiny-a/reference.safetensors")),
            faceid: read_reference(&data().join("faceid/reference.safetensors")),
            errors: serde_json::from_str(&errors).unwrap(),
        }
    }

    /// The f32 reference of `name` (`sd.<key>` or `faceid.<key>`).
    fn full(&self, name: &str) -> &HostTensor {
        match name.split_once('.') {
            Some(("sd", key)) => &self.sd[key],
            Some(("faceid", key)) => &self.faceid[key],
            _ => panic!("no f32 reference for {name}"),
        }
    }

    /// Checks an f16 output: within [`HALF_MARGIN`] of the reference's f16 output, and no
    /// further from the f32 reference than the reference's f16 output is, plus [`EXTRA_ERROR`].
    fn check<const D: usize>(&self, name: &str, actual: Tensor<D>) -> String {
        let vs_half = max_abs_diff(actual.clone(), &self.half[name]);
        let vs_full = max_abs_diff(actual, self.full(name));
        let theirs = self.errors[name]["max_abs_err_vs_f32"].as_f64().unwrap() as f32;
        assert!(
            vs_half <= HALF_MARGIN,
            "{name}: {vs_half} from the reference's f16 output"
        );
        assert!(
            vs_full <= theirs + EXTRA_ERROR,
            "{name}: {vs_full} from the f32 reference, the reference's f16 output is {theirs} away"
        );
        format!(
            "{name}: {vs_half:.2e} vs f16 reference, {vs_full:.2e} vs f32 (theirs {theirs:.2e})"
        )
    }
}

/// How far an f16 output may be from the reference's f16 output (outputs of magnitude ~1).
const HALF_MARGIN: f32 = 4e-3;
/// How much further from the f32 reference than the reference's own f16 output it may be.
const EXTRA_ERROR: f32 = 1.5e-3;

/// The devices of this build that compute in f16: wgpu (the CPU backend computes in f32 only,
/// which `the_cpu_refuses_half_precision_with_a_reason` checks).
fn half_devices() -> Vec<Device> {
    faceid_core::testing::devices()
        .into_iter()
        .filter(|d| Precision::F16.check(d).is_ok())
        .collect()
}

#[test]
fn unet_and_text_encoder_in_f16_match_the_references_f16_runs() {
    let refs = References::load();
    for device in half_devices() {
        let dir = data().join("sd/tiny-a");
        let unet =
            UNet2DConditionModel::from_dir_in(&dir.join("unet"), &device, Precision::F16).unwrap();
        assert_eq!(unet.precision(), Precision::F16);
        for case in ["sd.unet", "sd.unet2"] {
            let input = |key: &str| refs.half[&format!("{case}.{key}")].clone();
            let out = unet
                .forward(
                    input("sample").to_tensor::<4>(&device),
                    input("timestep").data[0],
                    &Conditioning::text(input("encoder_hidden_states").to_tensor::<3>(&device)),
                )
                .unwrap();
            assert_eq!(
                out.dtype(),
                Precision::F32.dtype(),
                "comes back in the input's type"
            );
            eprintln!("{device:?} {}", refs.check(&format!("{case}.out"), out));
        }

        let encoder =
            ClipTextModel::from_dir_in(&dir.join("text_encoder"), &device, Precision::F16).unwrap();
        assert_eq!(encoder.precision(), Precision::F16);
        let ids = &refs.half["sd.text.input_ids"];
        let rows: Vec<Vec<u32>> = ids
            .data
            .chunks(ids.shape[1])
            .map(|r| r.iter().map(|&v| v as u32).collect())
            .collect();
        let hidden = encoder.encode(&rows).unwrap();
        eprintln!(
            "{device:?} {}",
            refs.check("sd.text.last_hidden_state", hidden)
        );
    }
}

#[test]
fn faceid_unet_in_f16_matches_the_references_f16_run() {
    let refs = References::load();
    for device in half_devices() {
        let dir = data().join("sd/tiny-a/unet");
        let mut unet = UNet2DConditionModel::from_dir_in(&dir, &device, Precision::F16).unwrap();
        let adapter = FaceIdAdapter::install(
            &data().join("faceid/ip-adapter-faceid_tiny.bin"),
            &mut unet,
            &AdapterOptions::default(),
            &device,
        )
        .unwrap();
        let id = &refs.half["faceid.id.embedding"];
        let tokens = adapter
            .image_tokens(
                ProjectionInput::from_values(&id.data, &device),
                &PlusOptions::default(),
            )
            .unwrap();
        eprintln!(
            "{device:?} {}",
            refs.check("faceid.proj.out", tokens.clone())
        );
        let zero = adapter
            .unconditional_tokens(1, None, &PlusOptions::default())
            .unwrap();
        eprintln!(
            "{device:?} {}",
            refs.check("faceid.proj.zero", zero.clone())
        );
        let tokens = Tensor::cat(vec![zero, tokens], 0);
        let input = |key: &str| refs.half[&format!("faceid.unet.{key}")].clone();
        let run = |unet: &UNet2DConditionModel, name: &str| {
            let out = unet
                .forward(
                    input("sample").to_tensor::<4>(&device),
                    input("timestep").data[0],
                    &Conditioning::text(input("encoder_hidden_states").to_tensor::<3>(&device))
                        .with_image(Some(tokens.clone())),
                )
                .unwrap();
            eprintln!("{device:?} {}", refs.check(name, out));
        };
        run(&unet, "faceid.unet_ip_lora.out");
        FaceIdAdapter::set_ip_scale(&mut unet, 0.6);
        run(&unet, "faceid.unet_ip_lora_s06.out");
    }
}

#[test]
fn an_f16_pipeline_keeps_half_the_weights_and_draws_diffusers_f32_image() {
    // The `a_ddim` case of `tests/data/sd/pipelines.json` (diffusers, f32).
    let reference = read_reference(&data().join("sd/pipelines.safetensors"));
    let expected = &reference["a_ddim.images"];
    let request = GenerateRequest {
        prompt: "a photo of an astronaut riding a horse".into(),
        num_samples: 2,
        width: 32,
        height: 32,
        steps: 4,
        scheduler: Some(faceid_pipeline::SchedulerKind::Ddim),
        seed: 0,
        ..Default::default()
    };
    for device in half_devices() {
        let dir = data().join("sd/tiny-a");
        let full = StableDiffusion::from_dir(&dir, None, &device).unwrap();
        let half = StableDiffusion::from_dir_in(&dir, None, &device, Precision::F16).unwrap();
        assert_eq!(half.precision(), Precision::F16);
        let part = |sd: &StableDiffusion, name: &str| -> ComponentMemory {
            *sd.memory().iter().find(|m| m.name == name).unwrap()
        };
        for name in ["unet", "text_encoder"] {
            let (f32_part, f16_part) = (part(&full, name), part(&half, name));
            assert_eq!(f16_part.parameters, f32_part.parameters);
            assert_eq!(2 * f16_part.bytes, f32_part.bytes, "{name} in f16");
        }
        assert_eq!(part(&half, "vae"), part(&full, "vae"), "the VAE stays f32");

        let images = half
            .generate(&request, &mut |_| std::ops::ControlFlow::Continue(()))
            .unwrap()
            .images;
        let pixels: Vec<u8> = images.iter().flat_map(|i| i.as_raw().clone()).collect();
        let worst = max_pixel_error(&pixels, &expected.data);
        eprintln!("{device:?}: the f16 pipeline is {worst:.2}/255 from diffusers' f32 images");
        // Four steps of f16 UNets and a f32 VAE: within two levels of the f32 images (1.02 on
        // Mesa's software Vulkan; 4.51 when convolutions summed in f16).
        assert!(worst <= 2.0, "f16 images are {worst}/255 from the f32 ones");
    }
}

#[test]
fn an_f16_pipeline_on_the_cpu_is_refused_before_loading() {
    let err = StableDiffusion::from_dir_in(
        &data().join("sd/tiny-a"),
        None,
        &Device::flex(),
        Precision::F16,
    )
    .unwrap_err();
    assert!(
        matches!(err, faceid_pipeline::PipelineError::Precision(_)),
        "{err}"
    );
    assert!(err.to_string().contains("--precision f32"), "{err}");
}
