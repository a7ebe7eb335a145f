//! IP-Adapter FaceID Plus (v1 and v2) against diffusers (and the original tencent-ailab classes,
//! cross-checked in the generator) on the tiny fixtures of `tests/data/faceid_plus`.

use std::collections::HashMap;
use std::path::PathBuf;

use faceid_core::testing::{max_abs_diff, read_reference};
use faceid_core::{Device, HostTensor, Tensor};
use faceid_ipadapter::{
    AdapterError, AdapterOptions, FaceIdAdapter, ImageProjection, PlusOptions, ProjectionError,
    ProjectionInput,
};
use faceid_unet::{Conditioning, UNet2DConditionModel};

const TOLERANCE: f32 = 1e-4;

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/faceid_plus")
}

type Reference = HashMap<String, HostTensor>;

fn install(file: &str, device: &Device) -> (UNet2DConditionModel, FaceIdAdapter) {
    let mut unet = UNet2DConditionModel::from_dir(&data().join("tiny-sd128/unet"), device).unwrap();
    let adapter = FaceIdAdapter::install(
        &data().join(file),
        &mut unet,
        &AdapterOptions::default(),
        device,
    )
    .unwrap();
    (unet, adapter)
}

fn face(reference: &Reference, device: &Device) -> ProjectionInput {
    ProjectionInput::from_values(&reference["id.embedding"].data, device)
        .with_clip_embeds(reference["clip.embeds"].clone().to_tensor(device))
}

fn uncond_clip(reference: &Reference, device: &Device) -> Tensor<3> {
    reference["clip.uncond_embeds"].clone().to_tensor(device)
}

fn check(actual: Tensor<3>, reference: &Reference, key: &str, what: &str) {
    let err = max_abs_diff(actual, &reference[key]);
    eprintln!("{what}: {key} max error {err:e}");
    assert!(err < TOLERANCE, "{what}: {key} error {err}");
}

/// The guidance batch as diffusers forms it ([unconditional; face]), then the UNet.
fn run_unet(
    unet: &UNet2DConditionModel,
    adapter: &FaceIdAdapter,
    options: &PlusOptions,
    reference: &Reference,
    prefix: &str,
    device: &Device,
) -> Tensor<4> {
    let tokens = Tensor::cat(
        vec![
            adapter
                .unconditional_tokens(1, Some(uncond_clip(reference, device)), options)
                .unwrap(),
            adapter
                .image_tokens(face(reference, device), options)
                .unwrap(),
        ],
        0,
    );
    let err = max_abs_diff(
        tokens.clone(),
        &reference[&format!("{prefix}.unet.ip_tokens")],
    );
    assert!(err < TOLERANCE, "{prefix}: image tokens error {err}");
    let sample = reference["unet.sample"].clone().to_tensor::<4>(device);
    let text = reference["unet.encoder_hidden_states"]
        .clone()
        .to_tensor::<3>(device);
    let t = reference["unet.timestep"].data[0];
    unet.forward(
        sample,
        t,
        &Conditioning::text(text).with_image(Some(tokens)),
    )
    .unwrap()
}

#[test]
fn plus_v1_projection_and_unet_match_diffusers() {
    let reference = read_reference(&data().join("reference.safetensors"));
    for device in faceid_core::testing::devices() {
        let what = format!("{device:?} plus");
        let (mut unet, adapter) = install("ip-adapter-faceid-plus_tiny.bin", &device);
        assert!(adapter.is_plus());
        assert_eq!(adapter.projection().clip_width(), Some(64));
        assert_eq!(adapter.projection().tokens(), 4);
        assert_eq!(adapter.projection().dim(), 128);
        let v1 = PlusOptions::default();
        let out = adapter
            .image_tokens(face(&reference, &device), &v1)
            .unwrap();
        check(out, &reference, "plus.proj.out", &what);
        let zero = adapter
            .unconditional_tokens(1, Some(uncond_clip(&reference, &device)), &v1)
            .unwrap();
        check(zero, &reference, "plus.proj.zero", &what);

        let out = run_unet(&unet, &adapter, &v1, &reference, "plus", &device);
        let err = max_abs_diff(out, &reference["plus.unet_ip_lora.out"]);
        eprintln!("{what}: UNet IP 1.0 max error {err:e}");
        assert!(err < TOLERANCE, "{what}: UNet with IP + LoRA error {err}");
        FaceIdAdapter::set_ip_scale(&mut unet, 0.6);
        let out = run_unet(&unet, &adapter, &v1, &reference, "plus", &device);
        let err = max_abs_diff(out, &reference["plus.unet_ip_lora_s06.out"]);
        eprintln!("{what}: UNet IP 0.6 max error {err:e}");
        assert!(err < TOLERANCE, "{what}: UNet at IP scale 0.6 error {err}");
    }
}

#[test]
fn plus_v2_projection_with_shortcut_and_unet_match_diffusers() {
    let reference = read_reference(&data().join("reference.safetensors"));
    for device in faceid_core::testing::devices() {
        let what = format!("{device:?} plusv2");
        let (mut unet, adapter) = install("ip-adapter-faceid-plusv2_tiny.bin", &device);
        for (s_scale, suffix) in [(1.0, "s10"), (0.5, "s05")] {
            let v2 = PlusOptions::v2(s_scale);
            let out = adapter
                .image_tokens(face(&reference, &device), &v2)
                .unwrap();
            check(out, &reference, &format!("plusv2.proj.out_{suffix}"), &what);
            let zero = adapter
                .unconditional_tokens(1, Some(uncond_clip(&reference, &device)), &v2)
                .unwrap();
            check(
                zero,
                &reference,
                &format!("plusv2.proj.zero_{suffix}"),
                &what,
            );
        }
        // Without the shortcut the same checkpoint gives the v1 computation.
        let out = adapter
            .image_tokens(face(&reference, &device), &PlusOptions::default())
            .unwrap();
        check(out, &reference, "plusv2.proj.out_noshortcut", &what);

        let v2 = PlusOptions::v2(1.0);
        let out = run_unet(&unet, &adapter, &v2, &reference, "plusv2", &device);
        let err = max_abs_diff(out, &reference["plusv2.unet_ip_lora.out"]);
        eprintln!("{what}: UNet IP 1.0 max error {err:e}");
        assert!(err < TOLERANCE, "{what}: UNet with IP + LoRA error {err}");
        FaceIdAdapter::set_ip_scale(&mut unet, 0.6);
        let out = run_unet(&unet, &adapter, &v2, &reference, "plusv2", &device);
        let err = max_abs_diff(out, &reference["plusv2.unet_ip_lora_s06.out"]);
        eprintln!("{what}: UNet IP 0.6 max error {err:e}");
        assert!(err < TOLERANCE, "{what}: UNet at IP scale 0.6 error {err}");
    }
}

#[test]
fn unconditional_clip_features_of_one_row_serve_every_image() {
    let device = Device::flex();
    let reference = read_reference(&data().join("reference.safetensors"));
    let (_, adapter) = install("ip-adapter-faceid-plus_tiny.bin", &device);
    let options = PlusOptions::default();
    let tokens = adapter
        .unconditional_tokens(3, Some(uncond_clip(&reference, &device)), &options)
        .unwrap();
    assert_eq!(tokens.dims(), [3, 4, 128]);
    for row in 0..3 {
        check(
            tokens.clone().narrow(0, row, 1),
            &reference,
            "plus.proj.zero",
            "repeated row",
        );
    }
}

#[test]
fn wrong_projection_inputs_are_typed_errors() {
    let device = Device::flex();
    let reference = read_reference(&data().join("reference.safetensors"));
    let (_, plus) = install("ip-adapter-faceid-plus_tiny.bin", &device);
    let options = PlusOptions::default();
    let id = || ProjectionInput::from_values(&reference["id.embedding"].data, &device);

    // Plus without CLIP features, for the face and for the unconditional branch.
    let err = plus.image_tokens(id(), &options).unwrap_err();
    assert!(
        matches!(
            err,
            AdapterError::Projection(ProjectionError::MissingClipEmbeds {
                batch: 1,
                width: 64
            })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("clip_embeds"), "{err}");
    let err = plus.unconditional_tokens(1, None, &options).unwrap_err();
    assert!(
        matches!(
            err,
            AdapterError::Projection(ProjectionError::MissingClipEmbeds { .. })
        ),
        "{err}"
    );

    // CLIP features of the wrong width (ViT-H's 1280 for a 64-wide adapter) or batch.
    let wide = Tensor::<3>::zeros([1, 257, 1280], &device);
    let err = plus
        .image_tokens(id().with_clip_embeds(wide), &options)
        .unwrap_err();
    assert!(
        matches!(
            &err,
            AdapterError::Projection(ProjectionError::ClipEmbeds { found, batch: 1, width: 64 })
                if found == &[1, 257, 1280]
        ),
        "{err}"
    );
    let two = Tensor::<3>::zeros([2, 257, 64], &device);
    let err = plus
        .image_tokens(id().with_clip_embeds(two), &options)
        .unwrap_err();
    assert!(
        matches!(
            err,
            AdapterError::Projection(ProjectionError::ClipEmbeds { .. })
        ),
        "{err}"
    );

    // Identity embeddings of the wrong width.
    let err = plus
        .image_tokens(
            ProjectionInput::from_values(&[0.5; 100], &device)
                .with_clip_embeds(uncond_clip(&reference, &device)),
            &options,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            AdapterError::Projection(ProjectionError::IdEmbedding { .. })
        ),
        "{err}"
    );

    // The v1 MLP projection given CLIP features.
    let mut unet =
        UNet2DConditionModel::from_dir(&data().join("../sd/tiny-a/unet"), &device).unwrap();
    let v1 = FaceIdAdapter::install(
        &data().join("../faceid/ip-adapter-faceid_tiny.bin"),
        &mut unet,
        &AdapterOptions::default(),
        &device,
    )
    .unwrap();
    assert!(!v1.is_plus());
    assert!(matches!(v1.projection(), ImageProjection::Mlp(_)));
    let err = v1
        .image_tokens(
            id().with_clip_embeds(uncond_clip(&reference, &device)),
            &options,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            AdapterError::Projection(ProjectionError::UnexpectedClipEmbeds)
        ),
        "{err}"
    );
    let err = v1
        .unconditional_tokens(1, Some(uncond_clip(&reference, &device)), &options)
        .unwrap_err();
    assert!(
        matches!(
            err,
            AdapterError::Projection(ProjectionError::UnexpectedClipEmbeds)
        ),
        "{err}"
    );
}

#[test]
fn a_plus_checkpoint_for_another_unet_is_refused() {
    let device = Device::flex();
    // tiny-a's cross-attention width is 32: the Plus tokens (128 wide) do not fit its layers.
    let mut other =
        UNet2DConditionModel::from_dir(&data().join("../sd/tiny-a/unet"), &device).unwrap();
    let err = FaceIdAdapter::install(
        &data().join("ip-adapter-faceid-plus_tiny.bin"),
        &mut other,
        &AdapterOptions::default(),
        &device,
    )
    .unwrap_err();
    assert!(err.to_string().contains("attention layers"), "{err}");
}

#[test]
fn plus_checkpoints_are_told_from_their_tensor_names_alone() {
    let faceid = data().join("../faceid");
    let sdxl = data().join("../sdxl");
    for (path, plus) in [
        (data().join("ip-adapter-faceid-plus_tiny.bin"), true),
        (data().join("ip-adapter-faceid-plusv2_tiny.bin"), true),
        (sdxl.join("ip-adapter-faceid-plusv2_sdxl_tiny.bin"), true),
        (sdxl.join("ip-adapter-faceid_sdxl_tiny.bin"), false),
        (faceid.join("ip-adapter-faceid_tiny.bin"), false),
        (faceid.join("ip-adapter-faceid_tiny.safetensors"), false),
    ] {
        assert_eq!(
            FaceIdAdapter::is_plus_checkpoint(&path).unwrap(),
            plus,
            "{}",
            path.display()
        );
        // The names read without the data are the ones the loader gives.
        let device = Device::flex();
        let loaded = if path.extension().unwrap() == "bin" {
            faceid_core::Weights::from_pytorch(&path, &device)
        } else {
            faceid_core::Weights::from_safetensors(std::slice::from_ref(&path), &device)
        };
        let mut expected = loaded.unwrap().names();
        let mut names = faceid_core::Weights::names_in_file(&path).unwrap();
        expected.sort();
        names.sort();
        assert_eq!(names, expected, "{}", path.display());
    }
    let not_an_adapter = faceid.join("reference.safetensors");
    assert!(matches!(
        FaceIdAdapter::is_plus_checkpoint(&not_an_adapter),
        Err(AdapterError::Unsupported { .. })
    ));
}
