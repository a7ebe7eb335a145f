//! From face photos to the identity a FaceID model draws: detect, align, embed with ArcFace, and
//! average several photos (the normalised mean, as for fal's `face_images_data_url`).

use faceid_core::HostTensor;
use faceid_face::{AverageMode, DetectOptions, FaceAnalyzer, FaceError, FaceImage};

/// The `[1, 512]` identity embedding of one or more photos of the same person. Photos without a
/// face are skipped with a warning; it fails when none has one.
pub fn identity_from_images(
    analyzer: &FaceAnalyzer,
    images: &[FaceImage],
    options: &DetectOptions,
) -> Result<HostTensor, FaceError> {
    let averaged = analyzer.average(images, options, AverageMode::NormalizedMean)?;
    let dim = averaged.embedding.len();
    Ok(HostTensor::new(vec![1, dim], averaged.embedding))
}
