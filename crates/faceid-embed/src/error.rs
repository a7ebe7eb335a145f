//! Errors of face alignment, recognition and identity building.

use std::path::PathBuf;

use faceid_onnx::OnnxError;

/// Everything that can go wrong aligning, embedding or averaging faces.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// A model file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The ONNX runtime failed (loading or running the model).
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    /// A model file is valid ONNX but not a face recognizer this crate reads.
    #[error("{model} is not a supported {kind}: {reason}")]
    WrongModel {
        /// Which model (path or name).
        model: String,
        /// What it was loaded as ("face recognizer").
        kind: &'static str,
        /// Why it does not fit.
        reason: String,
    },
    /// The model produced outputs of an unexpected shape.
    #[error("model output: {0}")]
    ModelOutput(String),
    /// Five keypoints that do not define a similarity transform (all at one point).
    #[error("degenerate face keypoints {0:?}")]
    DegenerateKeypoints([[f32; 2]; 5]),
    /// An option value is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// None of the images given for an identity has a face.
    #[error("no face found in any of the {} image(s): {}", .images.len(), .images.join(", "))]
    NoFaceInAny {
        /// The image names.
        images: Vec<String>,
    },
}
