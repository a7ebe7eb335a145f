//! [`IdentityBuilder`]: an identity built one image at a time (insightface's `FaceAnalysis.get`
//! per image, then the average), so that a caller streaming images holds one at a time.

use faceid_detect::{DetectOptions, FaceImage};
use faceid_embed::{AverageMode, Identity, IdentityFace, Recognizer, check_crop_size};

use crate::analyzer::FaceAnalyzer;
use crate::error::FaceError;

/// Collects the faces of an identity image by image; made by
/// [`FaceAnalyzer::identity_builder`].
///
/// ```no_run
/// # use faceid_face::*;
/// # fn run(analyzer: &FaceAnalyzer, zip: &[u8]) -> Result<Identity, FaceError> {
/// let options = DetectOptions::default();
/// let mut builder = analyzer.identity_builder(&options, AverageMode::NormalizedMean, Some(224))?;
/// // Each image is decoded, embedded and dropped before the next is decoded.
/// for_each_zip_image("faces.zip", zip, &ZipLimits::default(), &ImageLimits::default(), |image| {
///     builder.add(&image)
/// })?;
/// builder.finish()
/// # }
/// ```
#[derive(Debug)]
pub struct IdentityBuilder<'a> {
    analyzer: &'a FaceAnalyzer,
    recognizer: &'a Recognizer,
    options: DetectOptions,
    mode: AverageMode,
    crop_size: Option<u32>,
    faces: Vec<IdentityFace>,
    skipped: Vec<String>,
}

impl<'a> IdentityBuilder<'a> {
    pub(crate) fn new(
        analyzer: &'a FaceAnalyzer,
        options: &DetectOptions,
        mode: AverageMode,
        crop_size: Option<u32>,
    ) -> Result<Self, FaceError> {
        let recognizer = analyzer.recognizer().ok_or(FaceError::NoRecognizer)?;
        if let Some(size) = crop_size {
            check_crop_size(size)?;
        }
        Ok(Self {
            analyzer,
            recognizer,
            options: options.clone(),
            mode,
            crop_size,
            faces: Vec::new(),
            skipped: Vec::new(),
        })
    }

    /// Detects, aligns and embeds the face `options.choice` picks in the image, keeping its
    /// embedding, keypoints and (when asked) aligned crop, not the image. An image without a
    /// face is recorded as skipped, with a warning.
    pub fn add(&mut self, image: &FaceImage) -> Result<(), FaceError> {
        let face = match self.analyzer.pick(image, &self.options) {
            Ok(face) => face,
            Err(err @ FaceError::NoFace { .. }) => {
                tracing::warn!(image = image.name(), %err, "skipping image without a face");
                self.skipped.push(image.name().to_string());
                return Ok(());
            }
            Err(err) => return Err(err),
        };
        let embedded = self.recognizer.embed_face(image, &face, self.crop_size)?;
        self.faces.push(embedded);
        Ok(())
    }

    /// Images added so far (with or without a face).
    pub fn len(&self) -> usize {
        self.faces.len() + self.skipped.len()
    }

    /// Whether no image was added yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The identity; fails with [`FaceError::NoFaceInAny`] when no image had a face.
    pub fn finish(self) -> Result<Identity, FaceError> {
        Ok(Identity::from_faces(self.faces, self.skipped, self.mode)?)
    }
}
