//! One timed workload on full-size SD 1.5 architectures with random weights (timing needs no
//! real weights), printed as one JSON line: the Rust side of `cargo xtask bench`, whose PyTorch
//! side is `tests/bench/torch_workload.py`. The two define the same workloads:
//!
//! - `unet-64`, `unet-96`: one classifier-free-guidance UNet step (batch 2, 64×64 or 96×96
//!   latents, i.e. 512×512 or 768×768 images, 77 text tokens, timestep 981).
//! - `unet-64-ip`, `unet-96-ip`: the same with IP-Adapter FaceID's image branch in all 16
//!   cross-attention layers and 4 image tokens per sample (its LoRA is fused into the weights, so
//!   it costs nothing here).
//! - `vae-decode-64`: VAE decode of one 64×64 latent to a 512×512 image.
//! - `text-encode`: CLIP ViT-L text encoder, batch 2 × 77 tokens.
//! - `clip-vision`: the CLIP ViT-H/14 image encoder of the FaceID Plus model types
//!   (`weights/configs/image_encoder`) on two 224×224 images, to the penultimate hidden state
//!   the Plus projection reads.
//! - `sdxl-unet-128`: one classifier-free-guidance step of the SDXL UNet
//!   (`weights/configs/sdxl/unet`) at 1024×1024 (batch 2, 128×128 latents, 77 tokens of width
//!   2048, the pooled embedding and size ids of its added conditioning, timestep 981).
//! - `sdxl-text-encode`: SDXL's two text encoders (CLIP ViT-L/14 and OpenCLIP ViT-bigG/14) on
//!   ids [2, 77]: both penultimate hidden states and the second one's pooled projection, as its
//!   prompt encoding reads them.
//! - `loop-20` (or `loop-N`, e.g. `loop-50`): 20 (N) DDIM steps of the guidance loop at 64×64
//!   (one time per loop), on the diffusers folder `tests/bench/gen_models.py` writes.
//! - `faceid-pipeline`: the whole FaceID pipeline at 512×512 as an application runs it: load the
//!   folder, the FaceID checkpoint and the insightface models, then detect, embed, encode the
//!   prompt, 2 denoising steps with guidance (`faceid-pipeline-N`: N steps, after a 1-step
//!   warm-up), decode. Loading is outside the timing and inside
//!   the peak memory.
//!
//! `cargo run --example bench_workload -- WORKLOAD RUNS`; the generated models are read from
//! `FACEID_BENCH_MODELS` (default `target/bench-models`), the configs and the face photo from
//! `FACEID_BENCH_ROOT` (default: this workspace; the GPU pack's copy of them). `FACEID_BENCH_DEVICE` (flex, wgpu,
//! cuda) and `FACEID_BENCH_PRECISION` (f32, f16; default: the device's preferred one) choose
//! where and how the UNet, text encoder and adapter run; the VAE is always f32. Every timing
//! ends with a read-back of the result, so GPU work is finished inside it.
//!
//! `faceid-pipeline`, `clip-vision` and the SDXL workloads also report the weights each
//! component keeps on the device (`weights`: name, parameters, MiB as loaded, MiB in f16).
//! With `FACEID_BENCH_KERNELS` set, one more run follows the timed ones with every GPU kernel
//! launch counted and timed on the device (`kernels`: that run's wall time and
//! `faceid::core::kernels::KernelProfile`); on flex it is empty.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use faceid::blocks::IpAttention;
use faceid::clip::{ClipTextConfig, ClipTextModel, ClipVisionConfig, ClipVisionModel};
use faceid::core::nn::Linear;
use faceid::core::{
    ComponentMemory, Device, DeviceKind, Precision, Tensor, TorchGenerator, Weights,
};
use faceid::face::{
    DetectOptions, DetectorModel, FaceAnalyzer, FaceImage, ImageLimits, RecognizerModel,
};
use faceid::pipeline::{AdapterOptions, FaceCrop, FaceEncoder, PlusOptions, SchedulerKind};
use faceid::scheduler::SchedulerConfig;
use faceid::unet::{Conditioning, TextTime, UNet2DConditionModel, UNetConfig};
use faceid::vae::{AutoencoderKL, VaeConfig};
use faceid::{GenerateRequest, StableDiffusion};

fn root() -> PathBuf {
    std::env::var_os("FACEID_BENCH_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

fn configs() -> PathBuf {
    root().join("weights/configs/sd15")
}

fn models() -> PathBuf {
    std::env::var_os("FACEID_BENCH_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/bench-models"))
}

fn normal<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, burn::tensor::Distribution::Normal(0.0, 1.0), device)
}

type Work = Box<dyn FnMut() -> Result<(), Box<dyn std::error::Error>>>;

/// What the workloads run on.
#[derive(Clone)]
struct Target {
    device: Device,
    precision: Precision,
}

impl Target {
    fn from_env() -> Result<Self, Box<dyn std::error::Error>> {
        let kind: DeviceKind = std::env::var("FACEID_BENCH_DEVICE")
            .unwrap_or_else(|_| "flex".into())
            .parse()?;
        let precision = match std::env::var("FACEID_BENCH_PRECISION") {
            Ok(name) => name.parse()?,
            Err(_) => Precision::preferred_for(kind),
        };
        let device = kind.device()?;
        precision.check(&device)?;
        Ok(Self { device, precision })
    }

    fn weights(&self) -> Weights {
        Weights::random(0, &self.device).with_precision(self.precision)
    }
}

fn unet_step(side: usize, ip: bool, target: &Target) -> Result<Work, Box<dyn std::error::Error>> {
    let device = &target.device;
    let weights = target.weights();
    let mut unet = UNet2DConditionModel::load(
        &weights,
        UNetConfig::from_file(&configs().join("unet/config.json"))?,
    )?;
    let tokens = if ip {
        let image_dim = 768;
        for (name, attention) in unet.attentions_mut() {
            if name.ends_with("attn2") {
                let (inner, _, _) = attention.dims();
                let scope = weights.root().at(&name);
                let to_k_ip = Linear::load(&scope.at("to_k_ip"), image_dim, inner, false)?;
                let to_v_ip = Linear::load(&scope.at("to_v_ip"), image_dim, inner, false)?;
                attention.set_ip_adapter(IpAttention::new(to_k_ip, to_v_ip, 1.0));
            }
        }
        Some(normal([2, 4, image_dim], device))
    } else {
        None
    };
    let sample = normal([2, 4, side, side], device);
    let context = normal([2, 77, 768], device);
    let conditioning = Conditioning::text(context).with_image(tokens);
    Ok(Box::new(move || {
        let out = unet.forward(sample.clone(), 981.0, &conditioning)?;
        let _ = out.into_data();
        Ok(())
    }))
}

fn sdxl_configs() -> PathBuf {
    root().join("weights/configs/sdxl")
}

fn sdxl_unet_step(
    target: &Target,
    weights: &mut Vec<serde_json::Value>,
) -> Result<Work, Box<dyn std::error::Error>> {
    let device = &target.device;
    let unet = UNet2DConditionModel::load(
        &target.weights(),
        UNetConfig::from_file(&sdxl_configs().join("unet/config.json"))?,
    )?;
    report_weights(&ComponentMemory::of("unet", &unet), weights);
    let sample = normal([2, 4, 128, 128], device);
    let conditioning =
        Conditioning::text(normal([2, 77, 2048], device)).with_text_time(Some(TextTime {
            text_embeds: normal([2, 1280], device),
            time_ids: vec![[1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0]; 2],
        }));
    Ok(Box::new(move || {
        let out = unet.forward(sample.clone(), 981.0, &conditioning)?;
        let _ = out.into_data();
        Ok(())
    }))
}

fn sdxl_text_encode(
    target: &Target,
    report: &mut Vec<serde_json::Value>,
) -> Result<Work, Box<dyn std::error::Error>> {
    let weights = target.weights();
    // SDXL's first encoder is a plain `CLIPTextModel` (random weights would offer a projection).
    let mut first: ClipTextConfig =
        faceid::core::config::read_json(&configs().join("text_encoder/config.json"))?;
    first.projection_dim = None;
    let second: ClipTextConfig =
        faceid::core::config::read_json(&sdxl_configs().join("text_encoder_2/config.json"))?;
    let encoders = [
        ClipTextModel::load(&weights, &first)?,
        ClipTextModel::load(&weights, &second)?,
    ];
    report_weights(&ComponentMemory::of("text_encoder", &encoders[0]), report);
    report_weights(&ComponentMemory::of("text_encoder_2", &encoders[1]), report);
    let ids = vec![vec![49406u32; 77]; 2];
    Ok(Box::new(move || {
        for encoder in &encoders {
            let out = encoder.encode_hidden(&ids, 1)?;
            let _ = out.hidden_states.into_data();
            if let Some(pooled) = out.text_embeds {
                let _ = pooled.into_data();
            }
        }
        Ok(())
    }))
}

/// N of `PREFIX-N`, or `default` for `PREFIX` alone; None for another workload.
fn steps_of(workload: &str, prefix: &str, default: Option<usize>) -> Option<usize> {
    if workload == prefix {
        return default;
    }
    let steps: usize = workload
        .strip_prefix(prefix)?
        .strip_prefix('-')?
        .parse()
        .ok()?;
    (steps > 0).then_some(steps)
}

fn guidance_loop(steps: usize, target: &Target) -> Result<Work, Box<dyn std::error::Error>> {
    let dir = models().join("sd15");
    let device = &target.device;
    let sd = StableDiffusion::from_dir_in(&dir, None, device, target.precision)?;
    let config = SchedulerConfig::from_file(dir.join("scheduler/scheduler_config.json"))?;
    let context = Conditioning::text(normal([2, 77, 768], device));
    Ok(Box::new(move || {
        let mut scheduler = SchedulerKind::Ddim.build(&config)?;
        scheduler.set_timesteps(steps)?;
        let mut generator = TorchGenerator::new(0);
        let latents = generator.randn_tensor([1, 4, 64, 64], sd.device());
        let out = sd.denoise(
            scheduler.as_mut(),
            latents,
            &context,
            7.5,
            &mut generator,
            &mut |_| ControlFlow::Continue(()),
        )?;
        let _ = out.into_data();
        Ok(())
    }))
}

/// One component's weights on the device, as loaded and in f16 (the VAE stays f32 in every
/// precision).
fn report_weights(part: &ComponentMemory, weights: &mut Vec<serde_json::Value>) {
    let half = if part.name == "vae" {
        part.bytes
    } else {
        part.parameters * Precision::F16.bytes()
    };
    weights.push(serde_json::json!({
        "name": part.name,
        "parameters": part.parameters,
        "mib": part.mib(),
        "mib_f16": half as f64 / (1024.0 * 1024.0),
    }));
}

/// The FaceID Plus image encoder (CLIP ViT-H/14) on a batch of two 224×224 images, to the
/// penultimate hidden state (its last layer is not run).
fn clip_vision(
    target: &Target,
    weights: &mut Vec<serde_json::Value>,
) -> Result<Work, Box<dyn std::error::Error>> {
    let config =
        ClipVisionConfig::from_file(&root().join("weights/configs/image_encoder/config.json"))?;
    let model = ClipVisionModel::load(&target.weights(), &config)?;
    report_weights(&ComponentMemory::of("image_encoder", &model), weights);
    let pixels = normal([2, 3, 224, 224], &target.device);
    Ok(Box::new(move || {
        let _ = model.penultimate_hidden_state(pixels.clone())?.into_data();
        Ok(())
    }))
}

/// The warm-up call (when it is not the timed call itself) and the timed call.
type Workload = (Option<Work>, Work);

fn faceid_pipeline(
    steps: usize,
    target: &Target,
    weights: &mut Vec<serde_json::Value>,
) -> Result<Workload, Box<dyn std::error::Error>> {
    let models = models();
    let device = &target.device;
    let mut sd =
        StableDiffusion::from_dir_in(&models.join("sd15"), None, device, target.precision)?;
    sd.install_faceid(
        &models.join("ip-adapter-faceid_sd15.bin"),
        &AdapterOptions::default(),
        PlusOptions::default(),
        None,
    )?;
    for part in sd.memory() {
        report_weights(&part, weights);
    }
    let pack = models.join("insightface/models/buffalo_l");
    let faces = FaceEncoder::new(
        FaceAnalyzer::new(
            DetectorModel::File(pack.join("det_10g.onnx")),
            Some(RecognizerModel::File(pack.join("w600k_r50.onnx"))),
            device,
        )?,
        None,
        FaceCrop::default(),
    );
    let photo = root().join("tests/data/faces/astronaut.png");
    let generate = std::rc::Rc::new(
        move |steps: usize| -> Result<(), Box<dyn std::error::Error>> {
            let image = FaceImage::open(&photo, &ImageLimits::default())?;
            let (_, face) = faces.encode_images(&[image], &DetectOptions::default())?;
            let request = GenerateRequest {
                prompt: "a photo of a person, best quality, high quality".into(),
                negative_prompt: Some(
                    "monochrome, lowres, bad anatomy, worst quality, low quality".into(),
                ),
                steps,
                seed: 42,
                scheduler: Some(SchedulerKind::Ddim),
                face: Some(face),
                ..Default::default()
            };
            let out = sd.generate(&request, &mut |_| ControlFlow::Continue(()))?;
            assert_eq!(out.images.len(), 1);
            Ok(())
        },
    );
    let warm = generate.clone();
    let warmup: Option<Work> = (steps > 2).then(|| Box::new(move || warm(1)) as Work);
    Ok((warmup, Box::new(move || generate(steps))))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // As the `faceid` binary does.
    faceid::core::allocator::retain_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let workload = args.first().map(String::as_str).unwrap_or("unet-64");
    let runs: usize = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(3);
    let target = Target::from_env()?;
    let device = target.device.clone();
    let mut weights = Vec::new();
    let mut warmup: Option<Work> = None;
    let mut work: Work = match workload {
        "unet-64" => unet_step(64, false, &target)?,
        "unet-96" => unet_step(96, false, &target)?,
        "unet-64-ip" => unet_step(64, true, &target)?,
        "unet-96-ip" => unet_step(96, true, &target)?,
        "vae-decode-64" => {
            let weights = Weights::random(0, &device);
            let vae = AutoencoderKL::load(
                &weights,
                VaeConfig::from_file(&configs().join("vae/config.json"))?,
            )?;
            let z = normal([1, 4, 64, 64], &device);
            Box::new(move || {
                let _ = vae.decode(z.clone())?.into_data();
                Ok(())
            })
        }
        "text-encode" => {
            let weights = target.weights();
            let config: ClipTextConfig =
                faceid::core::config::read_json(&configs().join("text_encoder/config.json"))?;
            let text = ClipTextModel::load(&weights, &config)?;
            let ids = vec![vec![49406u32; 77]; 2];
            Box::new(move || {
                let _ = text.encode(&ids)?.into_data();
                Ok(())
            })
        }
        "clip-vision" => clip_vision(&target, &mut weights)?,
        "sdxl-unet-128" => sdxl_unet_step(&target, &mut weights)?,
        "sdxl-text-encode" => sdxl_text_encode(&target, &mut weights)?,
        other => {
            if let Some(steps) = steps_of(other, "loop", None) {
                guidance_loop(steps, &target)?
            } else if let Some(steps) = steps_of(other, "faceid-pipeline", Some(2)) {
                let (first, work) = faceid_pipeline(steps, &target, &mut weights)?;
                warmup = first;
                work
            } else {
                return Err(format!("unknown workload '{other}'").into());
            }
        }
    };
    let loaded_rss = faceid::core::testing::peak_rss_mib().unwrap_or(f64::NAN);
    match warmup.as_mut() {
        Some(first) => first()?,
        None => work()?,
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        work()?;
        times.push(start.elapsed().as_secs_f64());
    }
    // One more run with every GPU kernel launch counted and timed on the device.
    let kernels = match std::env::var_os("FACEID_BENCH_KERNELS") {
        Some(_) => {
            let start = Instant::now();
            let (done, profile) = faceid::core::kernels::profile_kernels(&mut work);
            done?;
            serde_json::json!({ "observed_s": start.elapsed().as_secs_f64(), "profile": profile })
        }
        None => serde_json::Value::Null,
    };
    println!(
        "{}",
        serde_json::json!({
            "impl": "faceid",
            "workload": workload,
            "device": format!("{device:?}"),
            "runtime": faceid::core::runtime_name(&device),
            "precision": target.precision.to_string(),
            "times": times,
            "peak_rss_mib": faceid::core::testing::peak_rss_mib().unwrap_or(f64::NAN),
            "loading_peak_rss_mib": loaded_rss,
            "weights": weights,
            "kernels": kernels,
        })
    );
    Ok(())
}
