//! `faceid generate`.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use faceid_core::{DeviceKind, Precision};
use faceid_face::{
    DetectOptions, DetectorModel, FaceChoice, FaceImage, Identity, ImageLimits, ZipLimits,
    for_each_zip_image,
};
use faceid_fal::ModelType;
use faceid_pipeline::{
    AdapterOptions, FaceConditioning, FaceCrop, FaceEncoder, GenerateRequest, GeneratorOptions,
    LoraSource, SchedulerKind, grid, load_diffusion, load_face_encoder, load_image_encoder,
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
    #[arg(long, default_value = faceid_fal::DEFAULT_NEGATIVE_PROMPT)]
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
    /// A face computed by `faceid embed` instead of photos: an identity ([1, 512] or [512],
    /// .npy or .safetensors) or, for the FaceID Plus model types, a .safetensors file with the
    /// identity and the face's CLIP features.
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
    /// FaceID Plus v2 (1_5-v2-plus): weight of the CLIP-refined tokens added to the identity
    /// tokens (the reference's s_scale; higher draws the photo's face more closely).
    #[arg(long, default_value_t = 1.0)]
    s_scale: f32,
    /// FaceID Plus: hand the CLIP image encoder the face crop in its true colours. By default
    /// it gets the crop with red and blue exchanged, as the reference implementation (and so
    /// the hosted endpoint) does.
    #[arg(long)]
    face_crop_rgb: bool,
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
    let seed = args.seed.unwrap_or_else(faceid_pipeline::random_seed);
    let model_type: ModelType = args.weights.model_type.parse()?;
    let precision = args
        .precision
        .unwrap_or_else(|| Precision::preferred_for(args.device));
    precision.check(&device)?;
    let photos = !args.faces.is_empty() || args.faces_zip.is_some();
    // A face file is read before anything is fetched or loaded: a Plus model needs its CLIP
    // features.
    let face_file = args
        .face_embedding
        .as_deref()
        .map(FaceConditioning::read)
        .transpose()?;
    let spec = model_type.spec();
    if let Some(face) = &face_file {
        if spec.needs_image_encoder() && face.clip_embeds.is_none() {
            return Err(format!(
                "{} holds an identity alone, but model type '{}' (FaceID Plus) also needs the face's CLIP features: write the file with `faceid embed --image-encoder DIR`, or pass --face photos",
                args.face_embedding.as_ref().expect("read above").display(),
                model_type.name(),
            )
            .into());
        }
    }
    let wants_face = photos || face_file.is_some();
    let files = args.weights.resolve(
        args.weights.local(None),
        wants_face || args.weights.ip_adapter.is_some(),
        photos,
    )?;
    if wants_face && files.ip_adapter.is_none() {
        return Err("a face needs an IP-Adapter FaceID checkpoint: pass --ip-adapter FILE".into());
    }
    let options = GeneratorOptions {
        adapter: AdapterOptions {
            ip_scale: args.ip_scale,
            lora_scale: args.lora_scale,
            lora: args
                .lora
                .clone()
                .map_or(LoraSource::Checkpoint, LoraSource::Kohya),
        },
        s_scale: args.s_scale,
        crop: if args.face_crop_rgb {
            FaceCrop::Rgb
        } else {
            FaceCrop::ReferenceBgr
        },
        detector: args.detector.clone(),
        ..GeneratorOptions::new(spec, device, precision)
    };

    // Faces first: a photo without a face fails before the diffusion weights load.
    let spinner = ProgressBar::new_spinner().with_message("analysing faces");
    let (face, image_encoder) = if photos {
        let encoder = load_face_encoder(&files, &options, None)?;
        let identity = identity(&args, &encoder)?;
        (
            Some(encoder.encode(&identity)?),
            encoder.image_encoder().cloned(),
        )
    } else if wants_face {
        let encoder = load_image_encoder(&files, &options)?.map(Arc::new);
        (face_file, encoder)
    } else {
        (None, None)
    };
    spinner.set_message("loading model");
    let sd = load_diffusion(&files, &options, image_encoder.as_deref())?;
    spinner.finish_and_clear();
    let request = GenerateRequest {
        prompt: args.prompt,
        negative_prompt: Some(args.negative_prompt),
        num_samples: args.num_samples,
        width: args.width,
        height: args.height,
        steps: args.steps,
        guidance_scale: args.guidance,
        seed,
        scheduler: args.scheduler,
        eta: 0.0,
        latents,
        face,
        size_conditioning: None,
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

/// The identity of the face photos (`--face`, `--faces-zip`), averaged; the zip's images are
/// decoded one at a time.
fn identity(args: &GenerateArgs, encoder: &FaceEncoder) -> Result<Identity, CliError> {
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
    let limits = ImageLimits::default();
    let mut builder = encoder.identity_builder(&options)?;
    for path in &args.faces {
        builder.add(&FaceImage::open(path, &limits)?)?;
    }
    if let Some(zip) = &args.faces_zip {
        let bytes = std::fs::read(zip)?;
        for_each_zip_image(
            &zip.display().to_string(),
            &bytes,
            &ZipLimits::default(),
            &limits,
            |image| builder.add(&image),
        )?;
    }
    Ok(builder.finish()?)
}
