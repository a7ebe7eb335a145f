//! insightface-compatible face analysis on burn: detection (SCRFD, RetinaFace), five-point
//! alignment, ArcFace embeddings, and their average over several images.
//!
//! It reproduces what `insightface.app.FaceAnalysis` computes from the same ONNX files: the
//! letterbox uses OpenCV's fixed-point bilinear resize bit for bit, detections are decoded and
//! suppressed with insightface's conventions, crops follow `face_align.norm_crop` (OpenCV's
//! `warpAffine`), and the recognizer's input normalisation follows insightface's rule.
//!
//! ```no_run
//! use burn::tensor::Device;
//! use faceid_face::{DetectOptions, DetectorModel, FaceAnalyzer, FaceImage, ImageLimits, RecognizerModel};
//!
//! let device = Device::flex();
//! let analyzer = FaceAnalyzer::new(
//!     DetectorModel::BuiltinRetinaFace,
//!     Some(RecognizerModel::File("w600k_r50.onnx".into())),
//!     &device,
//! )?;
//! let image = FaceImage::open("portrait.jpg", &ImageLimits::default())?;
//! let faces = analyzer.detect(&image, &DetectOptions::default())?;
//! let embedding = analyzer.embed(&image, &DetectOptions::default())?;
//! assert_eq!(embedding.face, faces[0]);
//! # Ok::<(), faceid_face::FaceError>(())
//! ```
#![deny(missing_docs)]

pub mod align;
mod analyzer;
mod archive;
mod detect;
mod embed;
mod error;
mod image_input;
pub mod resize;

pub use analyzer::{
    AveragedEmbedding, DetectorModel, FaceAnalyzer, FaceEmbedding, RecognizerModel,
};
pub use archive::{IMAGE_EXTENSIONS, ZipLimits, read_zip};
pub use detect::{
    BUILTIN_RETINAFACE, DEFAULT_DET_SIZE, DEFAULT_NMS_THRESHOLD, DEFAULT_SCORE_THRESHOLD,
    DetectOptions, Detector, DetectorKind, Face, FaceChoice, KEYPOINTS, RETRY_MIN_SIZE,
    RETRY_PADDINGS, RETRY_SIZE_STEP,
};
pub use embed::{AverageMode, Recognizer, average_embeddings, cosine_similarity, l2_normalize};
pub use error::{Attempt, AttemptOutcome, FaceError};
pub use image_input::{FaceImage, ImageLimits};
