//! IP-Adapter FaceID against diffusers (and the original tencent-ailab classes, cross-checked in
//! the generator) on the tiny fixtures of `tests/data/faceid`.

use std::path::PathBuf;

use faceid_core::testing::{max_abs_diff, read_reference};
use faceid_core::{Device, HostTensor};
use faceid_ipadapter::{AdapterOptions, FaceIdAdapter, LoraSource, PlusOptions, ProjectionInput};
use faceid_unet::{Conditioning, UNet2DConditionModel, UNetConfig};

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data")
}

fn unet(device: &Device) -> UNet2DConditionModel {
    UNet2DConditionModel::from_dir(&data().join("sd/tiny-a/unet"), device).unwrap()
}

#[derive(serde::Deserialize)]
struct Site {
    name: String,
}

fn diffusers_order(model: &str) -> Vec<String> {
    diffusers_order_in("faceid", model)
}

/// diffusers' processor order for `model` as `tests/data/<part>/processor_index.json` lists it.
fn diffusers_order_in(part: &str, model: &str) -> Vec<String> {
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data().join(part).join("processor_index.json")).unwrap(),
    )
    .unwrap();
    let sites: Vec<Site> = serde_json::from_value(index[model]["processors"].clone()).unwrap();
    sites
        .into_iter()
        .map(|s| s.name.trim_end_matches(".processor").to_owned())
        .collect()
}

#[test]
fn processor_index_follows_diffusers_for_tiny_and_sd15() {
    let device = Device::flex();
    let mut tiny = unet(&device);
    let built: Vec<String> = tiny.attentions_mut().into_iter().map(|(p, _)| p).collect();
    assert_eq!(built, diffusers_order("tiny-a"));
    assert_eq!(built, tiny.config().attention_paths());
    let sd15 =
        UNetConfig::from_file(&data().join("../../weights/configs/sd15/unet/config.json")).unwrap();
    let paths = sd15.attention_paths();
    assert_eq!(paths.len(), 32);
    assert_eq!(paths, diffusers_order("sd15"));
}

/// SDXL: the tiny SDXL-shaped UNet (mixed transformer depths, 56 processors) as built, and the
/// SDXL base config's 140, in the order diffusers numbers FaceID SDXL checkpoints.
#[test]
fn processor_index_follows_diffusers_for_sdxl() {
    let device = Device::flex();
    let mut tiny =
        UNet2DConditionModel::from_dir(&data().join("sdxl/tiny-xl/unet"), &device).unwrap();
    let built: Vec<String> = tiny.attentions_mut().into_iter().map(|(p, _)| p).collect();
    assert_eq!(built.len(), 56);
    assert_eq!(built, diffusers_order_in("sdxl", "tiny-xl"));
    assert_eq!(built, tiny.config().attention_paths());
    let sdxl =
        UNetConfig::from_file(&data().join("../../weights/configs/sdxl/unet/config.json")).unwrap();
    let paths = sdxl.attention_paths();
    assert_eq!(paths.len(), 140);
    assert_eq!(paths, diffusers_order_in("sdxl", "sdxl"));
}

fn run_unet(
    unet: &UNet2DConditionModel,
    adapter: &FaceIdAdapter,
    reference: &std::collections::HashMap<String, HostTensor>,
    device: &Device,
) -> faceid_core::Tensor<4> {
    let sample = reference["unet.sample"].clone().to_tensor::<4>(device);
    let context = reference["unet.encoder_hidden_states"]
        .clone()
        .to_tensor::<3>(device);
    let t = reference["unet.timestep"].data[0];
    // The guidance batch as diffusers forms it: [projection of zeros; projection of the identity].
    let id = &reference["id.embedding"];
    let tokens = faceid_core::Tensor::cat(
        vec![
            adapter
                .unconditional_tokens(1, None, &PlusOptions::default())
                .unwrap(),
            adapter
                .image_tokens(
                    ProjectionInput::from_values(&id.data, device),
                    &PlusOptions::default(),
                )
                .unwrap(),
        ],
        0,
    );
    let err = max_abs_diff(tokens.clone(), &reference["unet.ip_tokens"]);
    assert!(err < 1e-4, "image tokens error {err}");
    unet.forward(
        sample,
        t,
        &Conditioning::text(context).with_image(Some(tokens)),
    )
    .unwrap()
}

#[test]
fn projection_and_unet_match_diffusers_for_bin_and_safetensors() {
    let reference = read_reference(&data().join("faceid/reference.safetensors"));
    for device in faceid_core::testing::devices() {
        for file in [
            "ip-adapter-faceid_tiny.bin",
            "ip-adapter-faceid_tiny.safetensors",
        ] {
            let mut unet = unet(&device);
            let adapter = FaceIdAdapter::install(
                &data().join("faceid").join(file),
                &mut unet,
                &AdapterOptions::default(),
                &device,
            )
            .unwrap();
            let id = &reference["id.embedding"];
            let err = max_abs_diff(
                adapter
                    .image_tokens(
                        ProjectionInput::from_values(&id.data, &device),
                        &PlusOptions::default(),
                    )
                    .unwrap(),
                &reference["proj.out"],
            );
            assert!(err < 1e-4, "{file}: projection error {err}");
            let zero = adapter
                .unconditional_tokens(1, None, &PlusOptions::default())
                .unwrap();
            let err = max_abs_diff(zero, &reference["proj.zero"]);
            assert!(err < 1e-4, "{file}: zero projection error {err}");
            let err = max_abs_diff(
                run_unet(&unet, &adapter, &reference, &device),
                &reference["unet_ip_lora.out"],
            );
            assert!(err < 1e-4, "{file}: UNet with IP + LoRA error {err}");
            FaceIdAdapter::set_ip_scale(&mut unet, 0.6);
            let err = max_abs_diff(
                run_unet(&unet, &adapter, &reference, &device),
                &reference["unet_ip_lora_s06.out"],
            );
            assert!(err < 1e-4, "{file}: UNet at IP scale 0.6 error {err}");
        }
    }
}

#[test]
fn kohya_lora_file_and_no_lora_match_diffusers() {
    let device = Device::flex();
    let reference = read_reference(&data().join("faceid/reference.safetensors"));
    let checkpoint = data().join("faceid/ip-adapter-faceid_tiny.bin");
    let kohya = AdapterOptions {
        lora: LoraSource::Kohya(data().join("faceid/ip-adapter-faceid_tiny_lora.safetensors")),
        ..Default::default()
    };
    let mut with_kohya = unet(&device);
    let adapter = FaceIdAdapter::install(&checkpoint, &mut with_kohya, &kohya, &device).unwrap();
    let err = max_abs_diff(
        run_unet(&with_kohya, &adapter, &reference, &device),
        &reference["unet_ip_lora.out"],
    );
    assert!(err < 1e-4, "kohya LoRA: error {err}");

    let none = AdapterOptions {
        lora: LoraSource::None,
        ..Default::default()
    };
    let mut without = unet(&device);
    let adapter = FaceIdAdapter::install(&checkpoint, &mut without, &none, &device).unwrap();
    let err = max_abs_diff(
        run_unet(&without, &adapter, &reference, &device),
        &reference["unet_ip_only.out"],
    );
    assert!(err < 1e-4, "IP without LoRA: error {err}");
}

#[test]
fn a_checkpoint_for_another_unet_is_refused() {
    let device = Device::flex();
    let mut other =
        UNet2DConditionModel::from_dir(&data().join("sd/tiny-b/unet"), &device).unwrap();
    let err = FaceIdAdapter::install(
        &data().join("faceid/ip-adapter-faceid_tiny.bin"),
        &mut other,
        &AdapterOptions::default(),
        &device,
    )
    .unwrap_err();
    assert!(err.to_string().contains("attention layers"), "{err}");
    let err = FaceIdAdapter::install(
        &data().join("sd/tiny-a/vae/diffusion_pytorch_model.safetensors"),
        &mut unet(&device),
        &AdapterOptions::default(),
        &device,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("not an IP-Adapter checkpoint"),
        "{err}"
    );
}
