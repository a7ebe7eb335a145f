//! The VAE against diffusers' output on the tiny fixtures (f32, and fp16 weights).

use std::path::PathBuf;

use faceid_core::Device;
use faceid_core::testing::{max_abs_diff, read_reference};
use faceid_vae::AutoencoderKL;

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/sd")
}

#[test]
fn vae_decode_and_encode_match_diffusers() {
    let device = Device::flex();
    for model in ["tiny-a", "tiny-b"] {
        let vae = AutoencoderKL::from_dir(&data().join(model).join("vae"), &device).unwrap();
        let reference = read_reference(&data().join(model).join("reference.safetensors"));
        let decoded = vae
            .decode(reference["vae.latents"].clone().to_tensor(&device))
            .unwrap();
        let err = max_abs_diff(decoded, &reference["vae.decoded"]);
        assert!(err < 1e-4, "{model}: decode max abs error {err}");
        let posterior = vae
            .encode(reference["vae.image"].clone().to_tensor(&device))
            .unwrap();
        let err_mean = max_abs_diff(posterior.mean, &reference["vae.mean"]);
        let err_logvar = max_abs_diff(posterior.logvar, &reference["vae.logvar"]);
        assert!(
            err_mean < 1e-4 && err_logvar < 1e-4,
            "{model}: encode errors {err_mean} {err_logvar}"
        );
    }
}

/// At 128×128 the decoder's convolutions take the Winograd kernel and its attention the host
/// kernel; burn's own kernels (an independent implementation) must give the same image.
#[test]
fn host_kernels_agree_with_burns_on_a_larger_decode() {
    let device = Device::flex();
    let vae = AutoencoderKL::from_dir(&data().join("tiny-a/vae"), &device).unwrap();
    let latents = faceid_core::Tensor::<4>::random(
        [1, 4, 16, 16],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let fast = vae.decode(latents.clone()).unwrap();
    faceid_core::host::set_enabled(false);
    let plain = vae.decode(latents).unwrap();
    faceid_core::host::set_enabled(true);
    let err: f32 = (fast - plain).abs().max().into_scalar();
    assert!(err < 1e-4, "max abs difference {err}");
}

#[test]
fn vae_scaling_factor_comes_from_the_config() {
    let device = Device::flex();
    let a = AutoencoderKL::from_dir(&data().join("tiny-a/vae"), &device).unwrap();
    let b = AutoencoderKL::from_dir(&data().join("tiny-b/vae"), &device).unwrap();
    assert_eq!(a.config().scaling_factor, 0.18215);
    assert_eq!(b.config().scaling_factor, 0.13025);
    assert_eq!(a.config().scale_factor(), 8);
}

#[test]
fn vae_rejects_bad_inputs() {
    let device = Device::flex();
    let vae = AutoencoderKL::from_dir(&data().join("tiny-a/vae"), &device).unwrap();
    let err = vae
        .decode(faceid_core::Tensor::zeros([1, 3, 4, 4], &device))
        .unwrap_err();
    assert!(err.to_string().contains("latents"), "{err}");
    let err = vae
        .encode(faceid_core::Tensor::zeros([1, 3, 30, 32], &device))
        .unwrap_err();
    assert!(err.to_string().contains("divisible by 8"), "{err}");
}
