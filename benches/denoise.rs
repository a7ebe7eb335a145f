//! The denoising loop's cost: one classifier-free-guidance UNet step (batch 2) of the full-size
//! SD 1.5 architecture with random weights, plus VAE decode and text encoding.
//!
//! `cargo bench --bench denoise` runs the quick mode (16×16 latents); set `FACEID_BENCH_FULL=1`
//! for 512×512 (64×64 latents) and the full VAE decode.

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use faceid::clip::{ClipTextConfig, ClipTextModel};
use faceid::core::{Device, Tensor, Weights};
use faceid::unet::{UNet2DConditionModel, UNetConfig};
use faceid::vae::{AutoencoderKL, VaeConfig};

fn configs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("weights/configs/sd15")
}

fn sync<const D: usize>(t: Tensor<D>) {
    // Reading one value back waits for the device, so GPU timings are complete.
    let _ = t.narrow(0, 0, 1).into_data();
}

fn benches(c: &mut Criterion) {
    let device = Device::flex();
    let full = std::env::var("FACEID_BENCH_FULL").is_ok_and(|v| v == "1");
    let latent = if full { 64 } else { 16 };
    let weights = Weights::random(0, &device);
    let unet = UNet2DConditionModel::load(
        &weights,
        UNetConfig::from_file(&configs().join("unet/config.json")).unwrap(),
    )
    .unwrap();
    let sample = Tensor::<4>::random(
        [2, 4, latent, latent],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let context = Tensor::<3>::random(
        [2, 77, 768],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let mut group = c.benchmark_group("sd15");
    group.sample_size(10);
    group.bench_function(format!("unet_step_batch2_{latent}x{latent}"), |b| {
        b.iter(|| sync(unet.forward(sample.clone(), 981.0, &context).unwrap()))
    });
    drop(unet);

    let vae_config: VaeConfig = VaeConfig::from_file(&configs().join("vae/config.json")).unwrap();
    let vae = AutoencoderKL::load(&weights, vae_config).unwrap();
    let z = Tensor::<4>::random(
        [1, 4, latent, latent],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    group.bench_function(format!("vae_decode_{latent}x{latent}"), |b| {
        b.iter(|| sync(vae.decode(z.clone()).unwrap()))
    });

    let text_config: ClipTextConfig =
        faceid::core::config::read_json(&configs().join("text_encoder/config.json")).unwrap();
    let text = ClipTextModel::load(&weights, &text_config).unwrap();
    let ids = vec![vec![49406u32; 77]; 2];
    group.bench_function("clip_text_encode_batch2", |b| {
        b.iter(|| sync(text.encode(&ids).unwrap()))
    });
    group.finish();
}

criterion_group!(denoise, benches);
criterion_main!(denoise);
