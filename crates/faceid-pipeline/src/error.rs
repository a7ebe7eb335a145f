//! Everything a pipeline run can fail with, each naming the input at fault.

use std::path::PathBuf;

use faceid_clip::{ImageProcessorError, TextEncoderError, TokenizerError, VisionEncoderError};
use faceid_core::{ConfigError, WeightError};
use faceid_face::FaceError;
use faceid_ipadapter::AdapterError;
use faceid_scheduler::SchedulerError;
use faceid_unet::UNetError;
use faceid_vae::VaeError;

/// A pipeline that cannot be loaded, or a request it cannot run.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The model folder is not a diffusers Stable Diffusion folder.
    #[error("{path} is not a diffusers model folder: {reason}")]
    NotAModel {
        /// The folder.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// A file the model needs was not given.
    #[error("no {component}: {hint}")]
    MissingComponent {
        /// Which component.
        component: &'static str,
        /// What to pass.
        hint: String,
    },
    /// A request parameter is out of range.
    #[error("invalid `{field}`: {reason}")]
    InvalidRequest {
        /// The parameter.
        field: &'static str,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// The run was cancelled by the progress callback.
    #[error("generation cancelled at step {step}")]
    Cancelled {
        /// The step at which it stopped.
        step: usize,
    },
    /// A config file is unreadable or unsupported.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Weights do not match their config.
    #[error(transparent)]
    Weights(#[from] WeightError),
    /// The tokenizer failed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The text encoder failed.
    #[error(transparent)]
    TextEncoder(#[from] TextEncoderError),
    /// The UNet failed.
    #[error(transparent)]
    UNet(#[from] UNetError),
    /// The VAE failed.
    #[error(transparent)]
    Vae(#[from] VaeError),
    /// The FaceID adapter cannot be used.
    #[error(transparent)]
    Adapter(#[from] AdapterError),
    /// Face analysis failed (no face, unreadable image, ...).
    #[error(transparent)]
    Face(#[from] FaceError),
    /// The scheduler failed.
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    /// The CLIP image encoder cannot be loaded or run.
    #[error(transparent)]
    ImageEncoder(#[from] VisionEncoderError),
    /// A face crop cannot be preprocessed for the image encoder.
    #[error(transparent)]
    ImageProcessor(#[from] ImageProcessorError),
    /// A face file cannot be read or written.
    #[error(transparent)]
    FaceFile(#[from] crate::face_conditioning::FaceFileError),
    /// The device cannot compute in the precision asked for.
    #[error(transparent)]
    Precision(#[from] faceid_core::PrecisionError),
}
