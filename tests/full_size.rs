//! Full-size Stable Diffusion 1.5 architectures with random weights (the real configs in
//! `weights/configs/sd15`): one classifier-free-guidance UNet step at 512×512.
//! Heavy: `cargo test --release --features full-size --test full_size -- --nocapture`.
#![cfg(feature = "full-size")]

use std::path::PathBuf;
use std::time::Instant;

use faceid::core::{Tensor, Weights};
use faceid::unet::{Conditioning, UNet2DConditionModel, UNetConfig};

fn configs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("weights/configs/sd15")
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
