//! Errors of face analysis: one type for the whole chain (image, detection, alignment,
//! embedding, archive), into which the errors of `faceid-detect` and `faceid-embed` convert
//! variant for variant, with the same messages.

use std::path::PathBuf;

use faceid_detect::{Attempt, DetectError, ImageError, ImageLimit};
use faceid_embed::EmbedError;
use faceid_onnx::OnnxError;

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
    /// An image could not be decoded (corrupt, truncated or unsupported).
    #[error("cannot decode image {image}: {message}")]
    Decode {
        /// Image name (file name or archive entry).
        image: String,
        /// What the decoder said.
        message: String,
    },
    /// An image header declares a size over one of the image limits; nothing was decoded.
    #[error(
        "image {image} is {width}x{height}, over {limit}; scale it down (faces are detected at \
         640x640) and send it again"
    )]
    ImageTooLarge {
        /// Image name.
        image: String,
        /// Width in pixels, as the header declares it.
        width: u32,
        /// Height in pixels, as the header declares it.
        height: u32,
        /// The limit it is over.
        limit: ImageLimit,
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

impl From<ImageError> for FaceError {
    fn from(e: ImageError) -> Self {
        match e {
            ImageError::Io { path, source } => FaceError::Io { path, source },
            ImageError::Decode { image, message } => FaceError::Decode { image, message },
            ImageError::EmptyImage {
                image,
                width,
                height,
            } => FaceError::EmptyImage {
                image,
                width,
                height,
            },
            ImageError::TooLarge {
                image,
                width,
                height,
                limit,
            } => FaceError::ImageTooLarge {
                image,
                width,
                height,
                limit,
            },
        }
    }
}

impl From<DetectError> for FaceError {
    fn from(e: DetectError) -> Self {
        match e {
            DetectError::Io { path, source } => FaceError::Io { path, source },
            DetectError::NoFace { image, attempts } => FaceError::NoFace { image, attempts },
            DetectError::Onnx(e) => FaceError::Onnx(e),
            DetectError::WrongModel {
                model,
                kind,
                reason,
            } => FaceError::WrongModel {
                model,
                kind,
                reason,
            },
            DetectError::ModelOutput(m) => FaceError::ModelOutput(m),
            DetectError::InvalidOption(m) => FaceError::InvalidOption(m),
        }
    }
}

impl From<EmbedError> for FaceError {
    fn from(e: EmbedError) -> Self {
        match e {
            EmbedError::Io { path, source } => FaceError::Io { path, source },
            EmbedError::Onnx(e) => FaceError::Onnx(e),
            EmbedError::WrongModel {
                model,
                kind,
                reason,
            } => FaceError::WrongModel {
                model,
                kind,
                reason,
            },
            EmbedError::ModelOutput(m) => FaceError::ModelOutput(m),
            EmbedError::DegenerateKeypoints(kps) => FaceError::DegenerateKeypoints(kps),
            EmbedError::InvalidOption(m) => FaceError::InvalidOption(m),
            EmbedError::NoFaceInAny { images } => FaceError::NoFaceInAny { images },
        }
    }
}
