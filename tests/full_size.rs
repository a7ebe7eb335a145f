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

/// Loading the full-size SDXL UNet from its f32 safetensors file (written by
/// `tests/bench/gen_sdxl_unet.py DIR`, named by `FACEID_SDXL_UNET=DIR`): the file is mapped and
/// each tensor's pages are released once uploaded, so resident memory never holds a second copy
/// of the weights; then one guidance step at 1024×1024.
#[test]
fn sdxl_unet_loads_from_its_file_with_one_copy_of_the_weights() {
    let dir = PathBuf::from(std::env::var("FACEID_SDXL_UNET").expect(
        "FACEID_SDXL_UNET=DIR: the folder `python tests/bench/gen_sdxl_unet.py DIR` writes",
    ));
    let device = faceid::core::Device::flex();
    let before = faceid::core::testing::peak_rss_mib().unwrap();
    let start = Instant::now();
    let unet = UNet2DConditionModel::from_dir(&dir, &device).unwrap();
    let load = start.elapsed();
    let loaded = faceid::core::testing::peak_rss_mib().unwrap();
    let weights_mib = faceid::core::ComponentMemory::of("unet", &unet).mib();
    let normal = burn::tensor::Distribution::Normal(0.0, 1.0);
    let conditioning = Conditioning::text(Tensor::<3>::random([2, 77, 2048], normal, &device))
        .with_text_time(Some(TextTime {
            text_embeds: Tensor::<2>::random([2, 1280], normal, &device),
            time_ids: vec![[1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0]; 2],
        }));
    let sample = Tensor::<4>::random([2, 4, 128, 128], normal, &device);
    let start = Instant::now();
    let values: Vec<f32> = unet
        .forward(sample, 981.0, &conditioning)
        .unwrap()
        .try_into_vec_as::<f32>()
        .unwrap();
    let step = start.elapsed();
    assert!(
        values.iter().all(|v| v.is_finite()),
        "non-finite UNet output"
    );
    let stepped = faceid::core::testing::peak_rss_mib().unwrap();
    eprintln!(
        "SDXL UNet from {}: {weights_mib:.0} MiB of f32 weights loaded in {load:.2?}, peak RSS {before:.0} MiB before, {loaded:.0} MiB after loading, {stepped:.0} MiB after a batch-2 128x128 step ({step:.2?})",
        dir.display()
    );
    // A second copy would add another ~9.6 GiB; allow the process, a few tensors in flight and
    // the allocator's slack.
    assert!(
        loaded - before < weights_mib + 1024.0,
        "loading peaked at {:.0} MiB over the start for {weights_mib:.0} MiB of weights",
        loaded - before
    );
}
