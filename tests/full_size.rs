//! Full-size Stable Diffusion 1.5 and SDXL architectures with random weights (the real configs
//! in `weights/configs`): one classifier-free-guidance UNet step at 512×512 (SD 1.5) and at
//! 1024×1024 (SDXL, with its added conditioning).
//! Heavy: `cargo test --release --features full-size --test full_size -- --nocapture`.
#![cfg(feature = "full-size")]

use std::path::PathBuf;
use std::time::Instant;

use faceid::core::{Tensor, Weights};
use faceid::unet::{Conditioning, TextTime, UNet2DConditionModel, UNetConfig};

fn configs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("weights/configs/sd15")
}

fn sdxl_configs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("weights/configs/sdxl")
}

#[test]
fn sd15_unet_runs_one_guidance_step() {
    // On flex only: a full-size step on a software GPU would take far too long.
    for device in [faceid::core::Device::flex()] {
        let config = UNetConfig::from_file(&configs().join("unet/config.json")).unwrap();
        let weights = Weights::random(0, &device);
        let start = Instant::now();
        let unet = UNet2DConditionModel::load(&weights, config).unwrap();
        let load = start.elapsed();
        let params: usize = burn::module::Module::num_params(&unet);
        assert_eq!(params, 859_520_964, "SD 1.5 UNet parameter count");
        let sample = Tensor::<4>::random(
            [2, 4, 64, 64],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let context = Tensor::<3>::random(
            [2, 77, 768],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let _ = unet
            .forward(sample.clone(), 999.0, &Conditioning::text(context.clone()))
            .unwrap()
            .into_data(); // warm-up
        let start = Instant::now();
        let out = unet
            .forward(sample, 981.0, &Conditioning::text(context))
            .unwrap();
        let values: Vec<f32> = out.try_into_vec_as::<f32>().unwrap();
        let step = start.elapsed();
        assert_eq!(values.len(), 2 * 4 * 64 * 64);
        assert!(
            values.iter().all(|v| v.is_finite()),
            "non-finite UNet output"
        );
        eprintln!(
            "{device:?}: SD 1.5 UNet ({params} params) built in {load:.2?}, batch-2 64x64 step {step:.2?}, peak RSS {:.0} MiB",
            faceid::core::testing::peak_rss_mib().unwrap_or(f64::NAN)
        );
    }
}

#[test]
fn sdxl_unet_runs_one_guidance_step() {
    let device = faceid::core::Device::flex();
    let config = UNetConfig::from_file(&sdxl_configs().join("unet/config.json")).unwrap();
    let weights = Weights::random(0, &device);
    let start = Instant::now();
    let unet = UNet2DConditionModel::load(&weights, config).unwrap();
    let load = start.elapsed();
    let params: usize = burn::module::Module::num_params(&unet);
    // diffusers' count for this config (`UNet2DConditionModel.from_config`).
    assert_eq!(params, 2_567_463_684, "SDXL UNet parameter count");
    let normal = burn::tensor::Distribution::Normal(0.0, 1.0);
    let sample = Tensor::<4>::random([2, 4, 128, 128], normal, &device);
    let conditioning = Conditioning::text(Tensor::<3>::random([2, 77, 2048], normal, &device))
        .with_text_time(Some(TextTime {
            text_embeds: Tensor::<2>::random([2, 1280], normal, &device),
            time_ids: vec![[1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0]; 2],
        }));
    // No warm-up: one step takes minutes here, and flex has nothing to tune.
    let start = Instant::now();
    let out = unet.forward(sample, 981.0, &conditioning).unwrap();
    let values: Vec<f32> = out.try_into_vec_as::<f32>().unwrap();
    let step = start.elapsed();
    assert_eq!(values.len(), 2 * 4 * 128 * 128);
    assert!(
        values.iter().all(|v| v.is_finite()),
        "non-finite UNet output"
    );
    eprintln!(
        "{device:?}: SDXL UNet ({params} params) built in {load:.2?}, batch-2 128x128 step {step:.2?}, peak RSS {:.0} MiB",
        faceid::core::testing::peak_rss_mib().unwrap_or(f64::NAN)
    );
}
