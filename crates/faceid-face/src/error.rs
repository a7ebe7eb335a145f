//! Errors of face analysis.

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

fn list(attempts: &[Attempt]) -> String {
    attempts
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Everything that can go wrong in face analysis.
#[derive(Debug, thiserror::Error)]
pub enum FaceError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An image could not be decoded (corrupt, truncated, unsupported, or over the limits).
    #[error("cannot decode image {image}: {message}")]
    Decode {
        /// Image name (file name or archive entry).
        image: String,
        /// What the decoder said.
        message: String,
    },
    /// An image has no pixels.
    #[error("image {image} is empty ({width}x{height})")]
    EmptyImage {
        /// Image name.
        image: String,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// No face was found in an image after every attempt.
    #[error("no face found in {image} (tried {})", list(.attempts))]
    NoFace {
        /// Image name.
        image: String,
        /// The attempts, in order.
        attempts: Vec<Attempt>,
    },
    /// None of the images given for averaging has a face.
    #[error("no face found in any of the {} image(s): {}", .images.len(), .images.join(", "))]
    NoFaceInAny {
        /// The image names.
        images: Vec<String>,
    },
    /// The ONNX runtime failed (loading or running a model).
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    /// A model file is valid ONNX but not a model of the expected kind.
    #[error("{model} is not a supported {kind}: {reason}")]
    WrongModel {
        /// Which model (path or name).
        model: String,
        /// What it was loaded as ("face detector", "face recognizer").
        kind: &'static str,
        /// Why it does not fit.
        reason: String,
    },
    /// A model produced outputs of an unexpected shape.
    #[error("model output: {0}")]
    ModelOutput(String),
    /// Five keypoints that do not define a similarity transform (all at one point).
    #[error("degenerate face keypoints {0:?}")]
    DegenerateKeypoints([[f32; 2]; 5]),
    /// An option value is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// Embedding needs a recognizer, and the analyzer was built without one.
    #[error("no face recognizer was loaded")]
    NoRecognizer,
    /// A zip archive is unreadable or breaks a safety limit.
    #[error("archive {archive}: {message}")]
    Archive {
        /// Archive name.
        archive: String,
        /// What is wrong.
        message: String,
    },
}
