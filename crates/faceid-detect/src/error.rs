//! Errors of face detection, and the record of what was tried when no face was found.

use std::fmt;
use std::path::PathBuf;

use faceid_onnx::OnnxError;

/// One detection attempt, as reported when no face was found.
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    /// Square detector input size in pixels.
    pub det_size: u32,
    /// Border added around the image, as a fraction of its larger side (0 for none).
    pub padding: f32,
    /// Why the attempt gave nothing: no detection above the threshold, or no room for the image.
    pub outcome: AttemptOutcome,
}

/// How a detection attempt ended without a face.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The detector ran and found nothing above the score threshold.
    NothingAboveThreshold,
    /// The image is so elongated that it shrinks to zero pixels at this size.
    ImageTooThin,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "det_size {}", self.det_size)?;
        if self.padding > 0.0 {
            write!(f, " with {:.0}% padding", self.padding * 100.0)?;
        }
        match self.outcome {
            AttemptOutcome::NothingAboveThreshold => Ok(()),
            AttemptOutcome::ImageTooThin => write!(f, " (image too thin to resize)"),
        }
    }
}

/// The attempts as one comma-separated list.
pub(crate) fn list(attempts: &[Attempt]) -> String {
    attempts
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Everything that can go wrong loading or running a face detector.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// A model file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// No face was found in an image after every attempt.
    #[error("no face found in {image} (tried {})", list(.attempts))]
    NoFace {
        /// Image name.
        image: String,
        /// The attempts, in order.
        attempts: Vec<Attempt>,
    },
    /// The ONNX runtime failed (loading or running the model).
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    /// A model file is valid ONNX but not a face detector this crate reads.
    #[error("{model} is not a supported {kind}: {reason}")]
    WrongModel {
        /// Which model (path or name).
        model: String,
        /// What it was loaded as ("face detector").
        kind: &'static str,
        /// Why it does not fit.
        reason: String,
    },
    /// The model produced outputs of an unexpected shape.
    #[error("model output: {0}")]
    ModelOutput(String),
    /// An option value is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
}
