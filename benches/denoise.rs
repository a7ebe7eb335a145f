//! The denoising loop's cost, on the full-size SD 1.5 architectures with random weights (timing
//! needs no real weights): one classifier-free-guidance UNet step (batch 2) with and without
//! IP-Adapter FaceID's image tokens at 512×512 and 768×768, the 20-step loop, VAE decode, text
//! encoding, face detection and embedding.
//!
//! `cargo bench --bench denoise` runs the quick mode (latents of 16×16 and 24×24, the same
//! layers on smaller images); `FACEID_BENCH_FULL=1` runs the real sizes (64×64 and 96×96
//! latents; the 20-step loop then takes minutes per sample). GPU backends are synchronised before
//! a timer stops by reading one value back. `FACEID_BENCH_DEVICE` picks the backend (default
//! flex) when the binary is built with it, `FACEID_BENCH_PRECISION` the precision of the UNet and
//! text encoder (default: the device's preferred one; the VAE is always f32).

use std::ops::ControlFlow;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use faceid::StableDiffusion;
use faceid::blocks::IpAttention;
use faceid::clip::{ClipTextConfig, ClipTextModel, ClipTokenizer};
use faceid::core::nn::Linear;
use faceid::core::{Device, DeviceKind, Precision, Tensor, TorchGenerator, Weights};
use faceid::face::{
    DetectOptions, DetectorModel, FaceAnalyzer, FaceImage, ImageLimits, RecognizerModel,
};
use faceid::pipeline::{PromptEncoder, SchedulerKind};
use faceid::scheduler::SchedulerConfig;
use faceid::unet::{Conditioning, UNet2DConditionModel, UNetConfig};
use faceid::vae::{AutoencoderKL, VaeConfig};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn configs() -> PathBuf {
    root().join("weights/configs/sd15")
}

fn sync<const D: usize>(t: Tensor<D>) {
    // Reading one value back waits for the device, so GPU timings are complete.
    let _ = t.flatten::<1>(0, D - 1).narrow(0, 0, 1).into_data();
}

fn normal<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, burn::tensor::Distribution::Normal(0.0, 1.0), device)
}

struct Setup {
    device: Device,
    /// In the benchmark's precision.
    weights: Weights,
    /// In f32, for the VAE.
    vae_weights: Weights,
    /// Latent sides standing for 512×512 and 768×768.
    sides: [usize; 2],
}

fn unet(setup: &Setup, ip: bool) -> UNet2DConditionModel {
    let config = UNetConfig::from_file(&configs().join("unet/config.json")).expect("unet config");
    let mut unet = UNet2DConditionModel::load(&setup.weights, config).expect("unet");
    if ip {
        for (name, attention) in unet.attentions_mut() {
            if name.ends_with("attn2") {
                let (inner, _, _) = attention.dims();
                let scope = setup.weights.root().at(&name);
                let k = Linear::load(&scope.at("to_k_ip"), 768, inner, false).expect("to_k_ip");
                let v = Linear::load(&scope.at("to_v_ip"), 768, inner, false).expect("to_v_ip");
                attention.set_ip_adapter(IpAttention::new(k, v, 1.0));
            }
        }
    }
    unet
}

fn unet_steps(c: &mut Criterion, setup: &Setup) {
    let mut group = c.benchmark_group("unet_step");
    group.sample_size(10);
    let context = normal([2, 77, 768], &setup.device);
    let tokens = normal([2, 4, 768], &setup.device);
    for ip in [false, true] {
        let unet = unet(setup, ip);
        for side in setup.sides {
            let sample = normal([2, 4, side, side], &setup.device);
            let name = format!("batch2_{side}x{side}{}", if ip { "_ip" } else { "" });
            group.bench_function(name, |b| {
                let conditioning =
                    Conditioning::text(context.clone()).with_image(ip.then(|| tokens.clone()));
                b.iter(|| sync(unet.forward(sample.clone(), 981.0, &conditioning).unwrap()))
            });
        }
    }
    group.finish();
}

fn denoising_loop(c: &mut Criterion, setup: &Setup) {
    let weights = &setup.weights;
    let device = &setup.device;
    let text_config: ClipTextConfig =
        faceid::core::config::read_json(&configs().join("text_encoder/config.json")).unwrap();
    let vae_config = VaeConfig::from_file(&configs().join("vae/config.json")).unwrap();
    let scheduler_config =
        SchedulerConfig::from_file(configs().join("scheduler/scheduler_config.json")).unwrap();
    let prompts = PromptEncoder::Single {
        tokenizer: ClipTokenizer::from_dir(&root().join("tests/data/tokenizer")).unwrap(),
        text_encoder: ClipTextModel::load(weights, &text_config).unwrap(),
    };
    let sd = StableDiffusion::from_components(
        prompts,
        unet(setup, false),
        AutoencoderKL::load(&setup.vae_weights, vae_config).unwrap(),
        scheduler_config.clone(),
        device,
    )
    .unwrap();
    let side = setup.sides[0];
    let context = Conditioning::text(normal([2, 77, 768], device));
    let mut group = c.benchmark_group("denoising_loop");
    group.sample_size(10);
    group.bench_function(format!("ddim_20_steps_guided_{side}x{side}"), |b| {
        b.iter(|| {
            let mut scheduler = SchedulerKind::Ddim.build(&scheduler_config).unwrap();
            scheduler.set_timesteps(20).unwrap();
            let mut generator = TorchGenerator::new(0);
            let latents = generator.randn_tensor([1, 4, side, side], device);
            let out = sd
                .denoise(
                    scheduler.as_mut(),
                    latents,
                    &context,
                    7.5,
                    &mut generator,
                    &mut |_| ControlFlow::Continue(()),
                )
                .unwrap();
            sync(out)
        })
    });
    group.finish();
}

fn vae_and_text(c: &mut Criterion, setup: &Setup) {
    let mut group = c.benchmark_group("components");
    group.sample_size(10);
    let vae_config = VaeConfig::from_file(&configs().join("vae/config.json")).unwrap();
    let vae = AutoencoderKL::load(&setup.vae_weights, vae_config).unwrap();
    let side = setup.sides[0];
    let z = normal([1, 4, side, side], &setup.device);
    group.bench_function(format!("vae_decode_{side}x{side}"), |b| {
        b.iter(|| sync(vae.decode(z.clone()).unwrap()))
    });
    drop(vae);
    let text_config: ClipTextConfig =
        faceid::core::config::read_json(&configs().join("text_encoder/config.json")).unwrap();
    let text = ClipTextModel::load(&setup.weights, &text_config).unwrap();
    let ids = vec![vec![49406u32; 77]; 2];
    group.bench_function("clip_text_encode_batch2", |b| {
        b.iter(|| sync(text.encode(&ids).unwrap()))
    });
    group.finish();
}

fn faces(c: &mut Criterion, setup: &Setup, full: bool) {
    // The real RetinaFace detector that ships with faceid; ArcFace IResNet-50 at full size from
    // `tests/bench/gen_models.py` when present, else the reduced-width test model.
    let full_size = std::env::var_os("FACEID_BENCH_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/bench-models"))
        .join("insightface/models/buffalo_l/w600k_r50.onnx");
    let recognizer = if full && full_size.is_file() {
        full_size
    } else {
        root().join("tests/data/face/arcface_r50_bn.onnx")
    };
    let analyzer = FaceAnalyzer::new(
        DetectorModel::BuiltinRetinaFace,
        Some(RecognizerModel::File(recognizer)),
        &setup.device,
    )
    .unwrap();
    let photo = FaceImage::open(
        root().join("tests/data/faces/obama.jpg"),
        &ImageLimits::default(),
    )
    .unwrap();
    let options = DetectOptions::default();
    let mut group = c.benchmark_group("face");
    group.sample_size(10);
    group.bench_function("detect_640", |b| {
        b.iter(|| analyzer.detect(&photo, &options).unwrap())
    });
    group.bench_function("detect_align_embed", |b| {
        b.iter(|| analyzer.embed(&photo, &options).unwrap())
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    // As the `faceid` binary does.
    faceid::core::allocator::retain_freed_memory();
    let full = std::env::var("FACEID_BENCH_FULL").is_ok_and(|v| v == "1");
    let kind = std::env::var("FACEID_BENCH_DEVICE")
        .unwrap_or_else(|_| "flex".into())
        .parse::<DeviceKind>()
        .expect("FACEID_BENCH_DEVICE");
    let device = kind.device().expect("FACEID_BENCH_DEVICE");
    let precision = std::env::var("FACEID_BENCH_PRECISION")
        .map_or(Ok(Precision::preferred_for(kind)), |name| name.parse())
        .expect("FACEID_BENCH_PRECISION");
    precision.check(&device).expect("FACEID_BENCH_PRECISION");
    let setup = Setup {
        weights: Weights::random(0, &device).with_precision(precision),
        vae_weights: Weights::random(0, &device),
        device,
        sides: if full { [64, 96] } else { [16, 24] },
    };
    unet_steps(c, &setup);
    denoising_loop(c, &setup);
    vae_and_text(c, &setup);
    faces(c, &setup, full);
}

criterion_group!(denoise, benches);
criterion_main!(denoise);
