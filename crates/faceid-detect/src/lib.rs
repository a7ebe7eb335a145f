//! insightface-compatible face detection on burn: SCRFD and RetinaFace ONNX models (and a
//! built-in RetinaFace MobileNet-0.25), and the bounded image decoding in front of them.
//!
//! It reproduces what insightface's `SCRFD.detect` / RetinaFace decoding compute from the same
//! ONNX files: the letterbox uses OpenCV's fixed-point bilinear resize bit for bit
//! ([`resize`]), anchors are decoded and suppressed with insightface's conventions, and the
//! keypoints come back in image coordinates for alignment.
//!
//! Images are decoded by [`FaceImage`] within [`ImageLimits`]: dimensions and pixel count are
//! read from the header and checked before any pixel is decoded, and the decoder's allocations
//! are bounded.
//!
//! ```no_run
//! use burn::tensor::Device;
//! use faceid_detect::{DetectOptions, Detector, FaceImage, ImageLimits};
//!
//! let detector = Detector::retinaface(&Device::flex())?;
//! let image = FaceImage::open("portrait.jpg", &ImageLimits::default())?;
//! let faces = detector.detect(&image, &DetectOptions::default())?;
//! println!("{} face(s), best score {}", faces.len(), faces[0].score);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod decode;
mod detector;
mod error;
mod face;
mod image_input;
mod letterbox;
mod limits;
mod nms;
pub mod resize;
#[cfg(feature = "testing")]
pub mod testing;

pub use detector::{BUILTIN_RETINAFACE, Detector, DetectorKind};
pub use error::{Attempt, AttemptOutcome, DetectError};
pub use face::{
    DEFAULT_DET_SIZE, DEFAULT_NMS_THRESHOLD, DEFAULT_SCORE_THRESHOLD, DetectOptions, Face,
    FaceChoice, KEYPOINTS, RETRY_MIN_SIZE, RETRY_PADDINGS, RETRY_SIZE_STEP,
};
pub use image_input::FaceImage;
pub use limits::{ImageError, ImageLimit, ImageLimits};
