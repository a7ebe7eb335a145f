//! One timed workload on full-size SD 1.5 architectures with random weights (timing needs no
//! real weights), printed as one JSON line: the Rust side of `cargo xtask bench`, whose PyTorch
//! side is `tests/bench/torch_workload.py`.
//!
//! `cargo run --example bench_workload -- WORKLOAD RUNS` with WORKLOAD one of `unet-64`
//! (guidance step: batch 2, 64×64 latents, 77 tokens), `unet-96` (768×768), `vae-decode-64`,
//! `text-encode`.

use std::path::PathBuf;
use std::time::Instant;

use faceid::clip::{ClipTextConfig, ClipTextModel};
use faceid::core::{Device, Tensor, Weights};
use faceid::unet::{UNet2DConditionModel, UNetConfig};
use faceid::vae::{AutoencoderKL, VaeConfig};

fn configs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("weights/configs/sd15")
}

fn normal<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, burn::tensor::Distribution::Normal(0.0, 1.0), device)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let workload = args.first().map(String::as_str).unwrap_or("unet-64");
    let runs: usize = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(3);
    let device = Device::flex();
    let weights = Weights::random(0, &device);
    let mut work: Box<dyn FnMut()> = match workload {
        "unet-64" | "unet-96" => {
            let side = if workload == "unet-64" { 64 } else { 96 };
            let unet = UNet2DConditionModel::load(
                &weights,
                UNetConfig::from_file(&configs().join("unet/config.json"))?,
            )?;
            let sample = normal([2, 4, side, side], &device);
            let context = normal([2, 77, 768], &device);
            Box::new(move || {
                let out = unet
                    .forward(sample.clone(), 981.0, &context)
                    .expect("forward");
                let _ = out.into_data();
            })
        }
        "vae-decode-64" => {
            let vae = AutoencoderKL::load(
                &weights,
                VaeConfig::from_file(&configs().join("vae/config.json"))?,
            )?;
            let z = normal([1, 4, 64, 64], &device);
            Box::new(move || {
                let _ = vae.decode(z.clone()).expect("decode").into_data();
            })
        }
        "text-encode" => {
            let config: ClipTextConfig =
                faceid::core::config::read_json(&configs().join("text_encoder/config.json"))?;
            let text = ClipTextModel::load(&weights, &config)?;
            let ids = vec![vec![49406u32; 77]; 2];
            Box::new(move || {
                let _ = text.encode(&ids).expect("encode").into_data();
            })
        }
        other => return Err(format!("unknown workload '{other}'").into()),
    };
    work(); // warm-up
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        work();
        times.push(start.elapsed().as_secs_f64());
    }
    println!(
        "{}",
        serde_json::json!({
            "impl": "faceid",
            "workload": workload,
            "times": times,
            "peak_rss_mib": faceid::core::testing::peak_rss_mib().unwrap_or(f64::NAN),
        })
    );
    Ok(())
}
