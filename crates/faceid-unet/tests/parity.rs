//! The UNet against diffusers' output on the tiny fixtures (two different architectures:
//! SD-1.5-shaped f32, and SD-2-shaped with linear projections, per-block heads, fp16 shards).

use std::path::PathBuf;

use faceid_core::Device;
use faceid_core::testing::{max_abs_diff, read_reference};
use faceid_unet::{Conditioning, UNet2DConditionModel};

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/sd")
}

fn check(device: &Device) {
    for model in ["tiny-a", "tiny-b"] {
        let unet =
            UNet2DConditionModel::from_dir(&data().join(model).join("unet"), device).unwrap();
        let reference = read_reference(&data().join(model).join("reference.safetensors"));
        for case in ["unet", "unet2"] {
            let get = |k: &str| reference[&format!("{case}.{k}")].clone();
            let sample = get("sample").to_tensor::<4>(device);
            let context = get("encoder_hidden_states").to_tensor::<3>(device);
            let t = get("timestep").data[0];
            let out = unet
                .forward(sample, t, &Conditioning::text(context))
                .unwrap();
            let err = max_abs_diff(out, &get("out"));
            assert!(err < 1e-4, "{model} {case}: UNet max abs error {err}");
        }
    }
}

#[test]
fn unet_matches_diffusers_on_every_device() {
    for device in faceid_core::testing::devices() {
        check(&device);
    }
}

/// At 32×32 latents (batch 2) the first level's convolutions take the Winograd kernel and its
/// self-attention the host kernel over 1024 keys; burn's own kernels (an independent
/// implementation) must give the same prediction.
#[test]
fn host_kernels_agree_with_burns_on_larger_latents() {
    let device = Device::flex();
    let unet = UNet2DConditionModel::from_dir(&data().join("tiny-a/unet"), &device).unwrap();
    let normal = burn::tensor::Distribution::Normal(0.0, 1.0);
    let sample = faceid_core::Tensor::<4>::random([2, 4, 32, 32], normal, &device);
    let width = unet.config().cross_attention_dim.expand(1)[0];
    let context = faceid_core::Tensor::<3>::random([2, 7, width], normal, &device);
    let fast = unet
        .forward(sample.clone(), 501.0, &Conditioning::text(context.clone()))
        .unwrap();
    faceid_core::host::set_enabled(false);
    let plain = unet
        .forward(sample, 501.0, &Conditioning::text(context))
        .unwrap();
    faceid_core::host::set_enabled(true);
    let err: f32 = (fast - plain).abs().max().into_scalar();
    assert!(err < 1e-4, "max abs difference {err}");
}

#[test]
fn unet_rejects_wrong_input_shapes() {
    let device = Device::flex();
    let unet = UNet2DConditionModel::from_dir(&data().join("tiny-a/unet"), &device).unwrap();
    let sample = faceid_core::Tensor::<4>::zeros([1, 3, 8, 8], &device);
    let context = faceid_core::Tensor::<3>::zeros([1, 77, 32], &device);
    let err = unet
        .forward(sample, 1.0, &Conditioning::text(context))
        .unwrap_err();
    assert!(err.to_string().contains("sample"), "{err}");
    let sample = faceid_core::Tensor::<4>::zeros([1, 4, 8, 8], &device);
    let context = faceid_core::Tensor::<3>::zeros([1, 77, 16], &device);
    let err = unet
        .forward(sample, 1.0, &Conditioning::text(context))
        .unwrap_err();
    assert!(err.to_string().contains("encoder_hidden_states"), "{err}");
}

#[test]
fn unet_checkpoint_mismatch_names_the_tensor() {
    // tiny-b's weights under tiny-a's config: the first mismatching tensor is named.
    let device = Device::flex();
    let config =
        faceid_unet::UNetConfig::from_file(&data().join("tiny-a/unet/config.json")).unwrap();
    let files = faceid_core::weights::ComponentFiles::find(
        &data().join("tiny-b/unet"),
        "diffusion_pytorch_model",
        None,
    )
    .unwrap();
    let weights = faceid_core::Weights::from_safetensors(&files.files, &device).unwrap();
    let err = UNet2DConditionModel::load(&weights, config).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("`down_blocks.0.resnets.0.norm1.weight`") && msg.contains("expects [32]"),
        "{msg}"
    );
}
