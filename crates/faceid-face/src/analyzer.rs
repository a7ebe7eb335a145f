//! [`FaceAnalyzer`]: detection, alignment and embedding together, as insightface's
//! `FaceAnalysis.get` plus the averaging over several images.

use std::path::PathBuf;
use std::str::FromStr;

use burn::tensor::Device;

use faceid_detect::{DetectOptions, Detector, Face, FaceImage};
use faceid_embed::{AverageMode, Identity, Recognizer};

use crate::error::FaceError;
use crate::identity::IdentityBuilder;

/// Where the detector comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DetectorModel {
    /// The bundled RetinaFace MobileNet-0.25.
    #[default]
    BuiltinRetinaFace,
    /// An SCRFD or RetinaFace ONNX file.
    File(PathBuf),
}

impl FromStr for DetectorModel {
    type Err = std::convert::Infallible;

    /// `retinaface` names the built-in detector; anything else is a path.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(if s.eq_ignore_ascii_case("retinaface") {
            DetectorModel::BuiltinRetinaFace
        } else {
            DetectorModel::File(PathBuf::from(s))
        })
    }
}

/// Where the recognizer comes from (there is no built-in one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecognizerModel {
    /// An ArcFace ONNX file (`w600k_r50.onnx`, `glintr100.onnx`, ...).
    File(PathBuf),
}

/// The embedding of one face.
#[derive(Clone, Debug, PartialEq)]
pub struct FaceEmbedding {
    /// The face it was computed from.
    pub face: Face,
    /// The L2-normalised embedding (insightface's `normed_embedding`).
    pub embedding: Vec<f32>,
    /// Length of the raw embedding before normalisation.
    pub norm: f32,
}

/// The combination of the embeddings of several images.
#[derive(Clone, Debug, PartialEq)]
pub struct AveragedEmbedding {
    /// The combined embedding.
    pub embedding: Vec<f32>,
    /// Images that contributed, in order.
    pub used: Vec<String>,
    /// Images skipped because no face was found in them.
    pub skipped: Vec<String>,
}

/// Face detection and recognition on one device.
#[derive(Debug)]
pub struct FaceAnalyzer {
    detector: Detector,
    recognizer: Option<Recognizer>,
}

impl FaceAnalyzer {
    /// Loads the detector and, when given, the recognizer.
    pub fn new(
        detector: DetectorModel,
        recognizer: Option<RecognizerModel>,
        device: &Device,
    ) -> Result<Self, FaceError> {
        let detector = match detector {
            DetectorModel::BuiltinRetinaFace => Detector::retinaface(device)?,
            DetectorModel::File(path) => Detector::from_file(path, device)?,
        };
        let recognizer = match recognizer {
            Some(RecognizerModel::File(path)) => Some(Recognizer::from_file(path, device)?),
            None => None,
        };
        Ok(Self::from_parts(detector, recognizer))
    }

    /// Builds an analyzer from loaded models.
    pub fn from_parts(detector: Detector, recognizer: Option<Recognizer>) -> Self {
        Self {
            detector,
            recognizer,
        }
    }

    /// The detector.
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// The recognizer, if one was loaded.
    pub fn recognizer(&self) -> Option<&Recognizer> {
        self.recognizer.as_ref()
    }

    /// Every face in the image, by descending score (see [`Detector::detect`]).
    pub fn detect(
        &self,
        image: &FaceImage,
        options: &DetectOptions,
    ) -> Result<Vec<Face>, FaceError> {
        Ok(self.detector.detect(image, options)?)
    }

    /// The face `options.choice` picks in the image.
    pub(crate) fn pick(
        &self,
        image: &FaceImage,
        options: &DetectOptions,
    ) -> Result<Face, FaceError> {
        let faces = self.detect(image, options)?;
        options
            .choice
            .pick(&faces)
            .cloned()
            .ok_or_else(|| FaceError::NoFace {
                image: image.name().to_string(),
                attempts: Vec::new(),
            })
    }

    /// The embedding of the face `options.choice` picks.
    pub fn embed(
        &self,
        image: &FaceImage,
        options: &DetectOptions,
    ) -> Result<FaceEmbedding, FaceError> {
        let recognizer = self.recognizer.as_ref().ok_or(FaceError::NoRecognizer)?;
        let face = self.pick(image, options)?;
        let embedded = recognizer.embed_face(image, &face, None)?;
        Ok(FaceEmbedding {
            face: embedded.face,
            embedding: embedded.embedding,
            norm: embedded.norm,
        })
    }

    /// The identity of one person from several photos: in each image the face `options.choice`
    /// picks, its normalised ArcFace embedding and, with `crop_size` (224 for the Plus models'
    /// CLIP image encoder), its `norm_crop` at that size from the same keypoints; the embeddings
    /// combined by `mode`. Images without a face are skipped with a warning; it fails only when
    /// no image has a face (or on any other error).
    pub fn identity(
        &self,
        images: &[FaceImage],
        options: &DetectOptions,
        mode: AverageMode,
        crop_size: Option<u32>,
    ) -> Result<Identity, FaceError> {
        let mut builder = self.identity_builder(options, mode, crop_size)?;
        for image in images {
            builder.add(image)?;
        }
        builder.finish()
    }

    /// An identity built one image at a time, so that each image can be dropped once its face
    /// is embedded (see [`crate::for_each_zip_image`]). Fails at once without a recognizer or
    /// with a crop size `norm_crop` does not take.
    pub fn identity_builder(
        &self,
        options: &DetectOptions,
        mode: AverageMode,
        crop_size: Option<u32>,
    ) -> Result<IdentityBuilder<'_>, FaceError> {
        IdentityBuilder::new(self, options, mode, crop_size)
    }

    /// The combined embedding of several images. Images without a face are skipped with a
    /// warning; it fails only when no image has a face (or on any other error).
    pub fn average(
        &self,
        images: &[FaceImage],
        options: &DetectOptions,
        mode: AverageMode,
    ) -> Result<AveragedEmbedding, FaceError> {
        let identity = self.identity(images, options, mode, None)?;
        Ok(AveragedEmbedding {
            used: identity.used(),
            embedding: identity.embedding,
            skipped: identity.skipped,
        })
    }
}
