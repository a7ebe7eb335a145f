//! insightface-compatible face analysis on burn, joining `faceid-detect` (detection, bounded
//! image decoding) and `faceid-embed` (alignment, ArcFace, identities) into
//! `insightface.app.FaceAnalysis`: detect, align, embed, and average over several images; plus
//! safe reading of zip archives of face photos, one image at a time.
//!
//! Every public item of both crates is re-exported here, with one error type, [`FaceError`],
//! into which theirs convert.
//!
//! ```no_run
//! use burn::tensor::Device;
//! use faceid_face::{
//!     AverageMode, DetectOptions, DetectorModel, FaceAnalyzer, FaceImage, ImageLimits,
//!     RecognizerModel,
//! };
//!
//! let device = Device::flex();
//! let analyzer = FaceAnalyzer::new(
//!     DetectorModel::BuiltinRetinaFace,
//!     Some(RecognizerModel::File("w600k_r50.onnx".into())),
//!     &device,
//! )?;
//! let image = FaceImage::open("portrait.jpg", &ImageLimits::default())?;
//! let options = DetectOptions::default();
//! let faces = analyzer.detect(&image, &options)?;
//! let embedding = analyzer.embed(&image, &options)?;
//! assert_eq!(embedding.face, faces[0]);
//! // The Plus models also need the face aligned at 224 for their CLIP image encoder.
//! let identity = analyzer.identity(&[image], &options, AverageMode::NormalizedMean, Some(224))?;
//! assert_eq!(identity.faces[0].crop.as_ref().map(|c| c.width()), Some(224));
//! # Ok::<(), faceid_face::FaceError>(())
//! ```
#![deny(missing_docs)]

mod analyzer;
mod archive;
mod error;
mod identity;

pub use faceid_detect::resize;
pub use faceid_embed::align;

pub use analyzer::{
    AveragedEmbedding, DetectorModel, FaceAnalyzer, FaceEmbedding, RecognizerModel,
};
pub use archive::{IMAGE_EXTENSIONS, ZipImages, ZipLimits, for_each_zip_image, read_zip};
pub use error::FaceError;
pub use faceid_detect::{
    Attempt, AttemptOutcome, BUILTIN_RETINAFACE, DEFAULT_DET_SIZE, DEFAULT_NMS_THRESHOLD,
    DEFAULT_SCORE_THRESHOLD, DetectError, DetectOptions, Detector, DetectorKind, Face, FaceChoice,
    FaceImage, ImageError, ImageLimit, ImageLimits, KEYPOINTS, RETRY_MIN_SIZE, RETRY_PADDINGS,
    RETRY_SIZE_STEP,
};
pub use faceid_embed::{
    AverageMode, EmbedError, Identity, IdentityFace, MAX_CROP_SIZE, Recognizer, average_embeddings,
    check_crop_size, cosine_similarity, l2_normalize,
};
pub use identity::IdentityBuilder;
