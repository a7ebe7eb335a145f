//! `faceid generate`.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use clap::Args;
use faceid_core::{DeviceKind, HostTensor, Precision};
use faceid_face::{
    DetectOptions, DetectorModel, FaceAnalyzer, FaceChoice, FaceImage, ImageLimits,
    RecognizerModel, ZipLimits, read_zip,
};
use faceid_hub::ModelFiles;
use faceid_pipeline::fal::ModelType;
use faceid_pipeline::{
    AdapterOptions, GenerateRequest, LoraSource, SchedulerKind, StableDiffusion, grid,
    identity_from_images,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::CliError;
use crate::fetch::WeightsArgs;

#[derive(Args)]
pub struct GenerateArgs {
    /// What to draw.
    #[arg(long)]
    prompt: String,
    /// What to steer away from (default: fal's negative prompt).
    #[arg(long, default_value = faceid_pipeline::fal::DEFAULT_NEGATIVE_PROMPT)]
    negative_prompt: String,
    /// Where the weights come from.
    #[command(flatten)]
    weights: WeightsArgs,
    /// ddim, euler, euler-a, dpmpp-2m or dpmpp-2m-karras (default: the model's own, else ddim).
    #[arg(long)]
    scheduler: Option<SchedulerKind>,
    /// Denoising steps.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Classifier-free guidance scale (1 or less disables guidance).
    #[arg(long, default_value_t = 7.5)]
    guidance: f32,
    /// Images to generate (fal's default: 4, written with their grid).
    #[arg(long, default_value_t = 4)]
    num_samples: usize,
    /// Width in pixels (a multiple of 8).
    #[arg(long, default_value_t = 512)]
    width: usize,
    /// Height in pixels (a multiple of 8).
    #[arg(long, default_value_t = 512)]
    height: usize,
    /// Seed; the same seed draws the same noise as diffusers with
    /// torch.Generator("cpu").manual_seed(seed). Random when absent.
    #[arg(long)]
    seed: Option<u64>,
    /// Initial latents [num_samples, 4, height/8, width/8] from a .npy or .safetensors file.
    #[arg(long)]
    latents: Option<PathBuf>,
    /// A kohya-style LoRA file replacing the checkpoint's own LoRA
    /// (ip-adapter-faceid_sd15_lora.safetensors).
    #[arg(long)]
    lora: Option<PathBuf>,
    /// A photo of the face to draw (repeatable: the identities are averaged).
    #[arg(long = "face")]
    faces: Vec<PathBuf>,
    /// A zip archive of face photos, averaged with any --face.
    #[arg(long)]
    faces_zip: Option<PathBuf>,
    /// A precomputed identity ([1, 512] or [512], .npy or .safetensors) instead of photos.
    #[arg(long, conflicts_with_all = ["faces", "faces_zip"])]
    face_embedding: Option<PathBuf>,
    /// `retinaface` (built in) or an SCRFD / RetinaFace ONNX file. Default: the model type's
    /// detector (buffalo_l's det_10g.onnx) when its recognizer is used too, else `retinaface`.
    #[arg(long)]
    detector: Option<DetectorModel>,
    /// Face detector input size (64-640).
    #[arg(long, default_value_t = faceid_face::DEFAULT_DET_SIZE)]
    det_size: u32,
    /// Which face when a photo has several.
    #[arg(long, value_parser = ["highest-score", "largest"], default_value = "highest-score")]
    face_choice: String,
    /// Weight of the face in every cross-attention layer.
    #[arg(long, default_value_t = 1.0)]
    ip_scale: f32,
    /// Weight of the adapter's LoRA (1.0 as the reference; 0.6-0.8 follows the prompt more).
    #[arg(long, default_value_t = 1.0)]
    lora_scale: f32,
    /// flex (CPU), wgpu or cuda.
    #[arg(long, default_value = "flex")]
    device: DeviceKind,
    /// f32 or f16 for the text encoder and UNet (the VAE stays f32); default: f16 on GPUs,
    /// f32 on the CPU.
    #[arg(long)]
    precision: Option<Precision>,
    /// Output PNG; several samples are written as OUT-0.png, OUT-1.png, ... plus a grid in OUT.
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run(args: GenerateArgs) -> Result<(), CliError> {
    let device = args.device.device()?;
    let latents = args
        .latents
        .as_deref()
        .map(faceid_core::tensor_file::read_tensor)
        .transpose()?;
    let seed = args.seed.unwrap_or_else(faceid_pipeline::fal::random_seed);
    let model_type: ModelType = args.weights.model_type.parse()?;
    if !model_type.generates() {
        return Err(format!(
            "model type '{}' cannot generate yet (supported: {}); `faceid fetch` downloads its weights",
            model_type.name(),
            ModelType::generating().join(", ")
        )
        .into());
    }
    let photos = !args.faces.is_empty() || args.faces_zip.is_some();
    let wants_face = photos || args.face_embedding.is_some();
    let files = args.weights.resolve(
        args.weights.local(None),
        wants_face || args.weights.ip_adapter.is_some(),
        photos,
    )?;
    let spinner = ProgressBar::new_spinner().with_message("loading model");
    let precision = args
        .precision
        .unwrap_or_else(|| Precision::preferred_for(args.device));
    let mut sd =
        StableDiffusion::from_dir_in(&files.base, files.vae.as_deref(), &device, precision)?;
    match (&files.ip_adapter, wants_face) {
        (Some(checkpoint), _) => {
            let options = AdapterOptions {
                ip_scale: args.ip_scale,
                lora_scale: args.lora_scale,
                lora: args
                    .lora
                    .clone()
                    .map_or(LoraSource::Checkpoint, LoraSource::Kohya),
            };
            sd.install_faceid(checkpoint, &options)?;
        }
        (None, true) => {
            return Err(
                "a face needs an IP-Adapter FaceID checkpoint: pass --ip-adapter FILE".into(),
            );
        }
        (None, false) => {}
    }
    let face_embedding = identity(&args, &files, &device)?;
    spinner.finish_and_clear();
    let request = GenerateRequest {
        prompt: args.prompt,
        negative_prompt: args.negative_prompt,
        num_samples: args.num_samples,
        width: args.width,
        height: args.height,
        steps: args.steps,
        guidance_scale: args.guidance,
        seed,
        scheduler: args.scheduler,
        eta: 0.0,
        latents,
        face_embedding,
    };
    sd.check(&request)?;
    let bar = ProgressBar::new(args.steps as u64).with_style(
        ProgressStyle::with_template(
            "{spinner} denoising [{bar:30}] {pos}/{len} steps, {elapsed} elapsed, {eta} left",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let out = sd.generate(&request, &mut |p| {
        bar.set_length(p.total as u64);
        bar.set_position(p.step as u64);
        ControlFlow::Continue(())
    })?;
    bar.finish_and_clear();
    write_images(&args.output, &out.images)?;
    eprintln!(
        "seed {} ({} scheduler): wrote {}",
        out.seed,
        out.scheduler,
        args.output.display()
    );
    Ok(())
}

/// One image goes to `output`; several go to `output-i.png` with their grid in `output`.
fn write_images(output: &Path, images: &[image::RgbImage]) -> Result<(), CliError> {
    if let [single] = images {
        single.save(output)?;
        return Ok(());
    }
    let stem = output.file_stem().and_then(|s| s.to_str()).unwrap_or("out");
    let ext = output.extension().and_then(|s| s.to_str()).unwrap_or("png");
    for (i, img) in images.iter().enumerate() {
        img.save(output.with_file_name(format!("{stem}-{i}.{ext}")))?;
    }
    grid(images).save(output)?;
    Ok(())
}

/// The identity to draw: a given embedding, or the averaged embedding of the face photos.
fn identity(
    args: &GenerateArgs,
    files: &ModelFiles,
    device: &faceid_core::Device,
) -> Result<Option<HostTensor>, CliError> {
    if let Some(path) = &args.face_embedding {
        return Ok(Some(faceid_core::tensor_file::read_tensor(path)?));
    }
    if args.faces.is_empty() && args.faces_zip.is_none() {
        return Ok(None);
    }
    let recognizer = files
        .recognizer
        .clone()
        .ok_or("--face needs an ArcFace model: pass --recognizer w600k_r50.onnx")?;
    let detector = args.detector.clone().unwrap_or_else(|| {
        files
            .detector
            .clone()
            .map_or(DetectorModel::BuiltinRetinaFace, DetectorModel::File)
    });
    let analyzer = FaceAnalyzer::new(detector, Some(RecognizerModel::File(recognizer)), device)?;
    let limits = ImageLimits::default();
    let mut images = args
        .faces
        .iter()
        .map(|p| FaceImage::open(p, &limits))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(zip) = &args.faces_zip {
        let bytes = std::fs::read(zip)?;
        images.extend(read_zip(
            &zip.display().to_string(),
            &bytes,
            &ZipLimits::default(),
            &limits,
        )?);
    }
    let choice = if args.face_choice == "largest" {
        FaceChoice::Largest
    } else {
        FaceChoice::HighestScore
    };
    let options = DetectOptions {
        det_size: args.det_size,
        choice,
        ..DetectOptions::default()
    };
    Ok(Some(identity_from_images(&analyzer, &images, &options)?))
}
