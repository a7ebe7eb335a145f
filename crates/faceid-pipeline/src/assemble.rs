//! One way to assemble a FaceID generator from resolved model files, used by the library, the
//! CLI and the server alike: the face stage (detector, recognizer and, for FaceID Plus, the CLIP
//! image encoder) and the diffusion stage (base model with the adapter installed), each loadable
//! on its own so that a front end can analyse the faces before it loads gigabytes of weights.

use std::path::PathBuf;
use std::sync::Arc;

use faceid_core::{ComponentMemory, Device, Precision, device_lock};
use faceid_face::{DetectorModel, FaceAnalyzer, RecognizerModel};
use faceid_hub::ModelFiles;
use faceid_ipadapter::{AdapterOptions, PlusOptions};

use crate::error::PipelineError;
use crate::face_encoder::{ClipImageEncoder, FaceCrop, FaceEncoder};
use crate::spec::{FaceIdSpec, ProjectionKind};
use crate::stable_diffusion::StableDiffusion;

/// How to assemble a generator.
#[derive(Debug, Clone)]
pub struct GeneratorOptions {
    /// What the model is made of (from the model type).
    pub spec: FaceIdSpec,
    /// Where it runs.
    pub device: Device,
    /// Precision of the text encoder, UNet, adapter and image encoder (the VAE stays f32).
    pub precision: Precision,
    /// IP scale, LoRA scale and LoRA source.
    pub adapter: AdapterOptions,
    /// Weight of the resampled tokens of FaceID Plus v2 (the reference's `s_scale`, 1.0).
    pub s_scale: f32,
    /// The channel order of the face crop the image encoder sees (FaceID Plus).
    pub crop: FaceCrop,
    /// A detector replacing the model type's (`None`: its file, else the built-in RetinaFace).
    pub detector: Option<DetectorModel>,
}

impl GeneratorOptions {
    /// The reference's settings for `spec` on `device` in `precision`.
    pub fn new(spec: FaceIdSpec, device: Device, precision: Precision) -> Self {
        Self {
            spec,
            device,
            precision,
            adapter: AdapterOptions::default(),
            s_scale: 1.0,
            crop: FaceCrop::default(),
            detector: None,
        }
    }

    /// The Plus projection's settings for this spec.
    pub fn plus(&self) -> PlusOptions {
        match self.spec.projection {
            ProjectionKind::Plus { shortcut: true } => PlusOptions::v2(self.s_scale),
            _ => PlusOptions::default(),
        }
    }
}

/// A FaceID model ready to generate: face photos in, images out.
#[derive(Debug)]
pub struct FaceIdGenerator {
    /// Face photos to face conditioning.
    pub faces: FaceEncoder,
    /// The diffusion model with the adapter installed.
    pub sd: StableDiffusion,
}

impl FaceIdGenerator {
    /// Loads everything `files` names for `options.spec`.
    pub fn assemble(files: &ModelFiles, options: &GeneratorOptions) -> Result<Self, PipelineError> {
        let faces = load_face_encoder(files, options, None)?;
        let sd = load_diffusion(files, options, faces.image_encoder().map(Arc::as_ref))?;
        Ok(Self { faces, sd })
    }

    /// What every component keeps on the device.
    pub fn memory(&self) -> Vec<ComponentMemory> {
        let mut out = self.sd.memory();
        if let Some(encoder) = self.faces.image_encoder() {
            out.push(encoder.memory());
        }
        out
    }
}

fn missing(component: &'static str, hint: &str) -> PipelineError {
    PipelineError::MissingComponent {
        component,
        hint: hint.to_string(),
    }
}

/// The model type's CLIP image encoder (`None` for models without one).
pub fn load_image_encoder(
    files: &ModelFiles,
    options: &GeneratorOptions,
) -> Result<Option<ClipImageEncoder>, PipelineError> {
    if !options.spec.needs_image_encoder() {
        return Ok(None);
    }
    let dir: &PathBuf = files.image_encoder.as_ref().ok_or_else(|| {
        missing(
            "image_encoder",
            "FaceID Plus needs a CLIP image encoder: pass --image-encoder DIR (h94/IP-Adapter models/image_encoder)",
        )
    })?;
    Ok(Some(ClipImageEncoder::from_dir_in(
        dir,
        &options.device,
        options.precision,
    )?))
}

/// The face stage: detector and recognizer from `files`, and for FaceID Plus the image
/// encoder (`shared` when the caller already holds one for the same folder). Loading on a GPU
/// waits for the device like any other work on it (see [`faceid_core::device_lock`]).
pub fn load_face_encoder(
    files: &ModelFiles,
    options: &GeneratorOptions,
    shared: Option<Arc<ClipImageEncoder>>,
) -> Result<FaceEncoder, PipelineError> {
    device_lock::exclusive(&options.device, || {
        build_face_encoder(files, options, shared)
    })
}

fn build_face_encoder(
    files: &ModelFiles,
    options: &GeneratorOptions,
    shared: Option<Arc<ClipImageEncoder>>,
) -> Result<FaceEncoder, PipelineError> {
    let recognizer = files.recognizer.clone().ok_or_else(|| {
        missing(
            "recognizer",
            "face photos need an ArcFace model: pass --recognizer w600k_r50.onnx",
        )
    })?;
    let detector = options.detector.clone().unwrap_or_else(|| {
        files
            .detector
            .clone()
            .map_or(DetectorModel::BuiltinRetinaFace, DetectorModel::File)
    });
    let analyzer = FaceAnalyzer::new(
        detector,
        Some(RecognizerModel::File(recognizer)),
        &options.device,
    )?;
    let image_encoder = match shared {
        Some(encoder) if options.spec.needs_image_encoder() => Some(encoder),
        _ => load_image_encoder(files, options)?.map(Arc::new),
    };
    Ok(FaceEncoder::new(analyzer, image_encoder, options.crop))
}

/// The diffusion stage: the base model (and VAE) of `files`, with the FaceID adapter installed
/// when `files` has one. FaceID Plus takes the `image_encoder` its faces are encoded with.
/// Loading on a GPU waits for the device like any other work on it.
pub fn load_diffusion(
    files: &ModelFiles,
    options: &GeneratorOptions,
    image_encoder: Option<&ClipImageEncoder>,
) -> Result<StableDiffusion, PipelineError> {
    device_lock::exclusive(&options.device, || {
        build_diffusion(files, options, image_encoder)
    })
}

fn build_diffusion(
    files: &ModelFiles,
    options: &GeneratorOptions,
    image_encoder: Option<&ClipImageEncoder>,
) -> Result<StableDiffusion, PipelineError> {
    let mut sd = StableDiffusion::from_dir_in(
        &files.base,
        files.vae.as_deref(),
        &options.device,
        options.precision,
    )?;
    if sd.family() != options.spec.base {
        return Err(PipelineError::NotAModel {
            path: files.base.clone(),
            reason: format!(
                "this is {} base model, but the model type runs on {}",
                sd.family().describe(),
                options.spec.base.describe()
            ),
        });
    }
    if let Some(checkpoint) = &files.ip_adapter {
        sd.install_faceid(checkpoint, &options.adapter, options.plus(), image_encoder)?;
        let plus = matches!(options.spec.projection, ProjectionKind::Plus { .. });
        if sd.is_faceid_plus() != plus {
            return Err(PipelineError::NotAModel {
                path: checkpoint.clone(),
                reason: format!(
                    "this is a FaceID {} checkpoint, but the model type is FaceID {}",
                    if sd.is_faceid_plus() { "Plus" } else { "v1" },
                    if plus { "Plus" } else { "v1" },
                ),
            });
        }
    }
    Ok(sd)
}
