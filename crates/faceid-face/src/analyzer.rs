//! [`FaceAnalyzer`]: detection, alignment and embedding together, as insightface's
//! `FaceAnalysis.get` plus the averaging over several images.

use std::path::PathBuf;
use std::str::FromStr;

use burn::tensor::Device;

use crate::align::norm_crop;
use crate::detect::{DetectOptions, Detector, Face};
use crate::embed::{AverageMode, Recognizer, average_embeddings, l2_normalize};
use crate::error::FaceError;
use crate::image_input::FaceImage;

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
        self.detector.detect(image, options)
    }

    /// The embedding of the face `options.choice` picks.
    pub fn embed(
        &self,
        image: &FaceImage,
        options: &DetectOptions,
    ) -> Result<FaceEmbedding, FaceError> {
        let recognizer = self.recognizer.as_ref().ok_or(FaceError::NoRecognizer)?;
        let faces = self.detect(image, options)?;
        let face = options
            .choice
            .pick(&faces)
            .cloned()
            .ok_or_else(|| FaceError::NoFace {
                image: image.name().to_string(),
                attempts: Vec::new(),
            })?;
        let crop = norm_crop(image.rgb(), &face.kps, recognizer.input_size())?;
        let raw = recognizer.embed_crop(&crop)?;
        let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt();
        Ok(FaceEmbedding {
            face,
            embedding: l2_normalize(&raw),
            norm,
        })
    }

    /// The combined embedding of several images. Images without a face are skipped with a
    /// warning; it fails only when no image has a face (or on any other error).
    pub fn average(
        &self,
        images: &[FaceImage],
        options: &DetectOptions,
        mode: AverageMode,
    ) -> Result<AveragedEmbedding, FaceError> {
        let mut embeddings = Vec::new();
        let (mut used, mut skipped) = (Vec::new(), Vec::new());
        for image in images {
            match self.embed(image, options) {
                Ok(e) => {
                    embeddings.push(e.embedding);
                    used.push(image.name().to_string());
                }
                Err(err @ FaceError::NoFace { .. }) => {
                    tracing::warn!(image = image.name(), %err, "skipping image without a face");
                    skipped.push(image.name().to_string());
                }
                Err(err) => return Err(err),
            }
        }
        let embedding =
            average_embeddings(&embeddings, mode).ok_or_else(|| FaceError::NoFaceInAny {
                images: images.iter().map(|i| i.name().to_string()).collect(),
            })?;
        Ok(AveragedEmbedding {
            embedding,
            used,
            skipped,
        })
    }
}
