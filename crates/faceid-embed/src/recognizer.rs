//! ArcFace recognition as insightface's `ArcFaceONNX`: the input normalisation chosen by its rule,
//! the aligned crop through the network, and one detected face from keypoints to embedding.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use faceid_detect::{Face, FaceImage};
use faceid_onnx::{Dim, OnnxModel, OnnxTensor};
use image::RgbImage;

use crate::align::{RECOGNITION_CROP, norm_crop};
use crate::average::l2_normalize;
use crate::error::EmbedError;
use crate::identity::{IdentityFace, check_crop_size};

/// insightface's ArcFace input normalisation when the graph does not normalise itself:
/// `(rgb - 127.5) / 127.5`.
const ARCFACE_MEAN: f32 = 127.5;
const ARCFACE_STD: f32 = 127.5;
/// How many leading nodes insightface inspects for in-graph normalisation.
const NORMALISATION_PROBE_NODES: usize = 8;

/// A face recognition (embedding) model loaded from an ONNX file.
#[derive(Debug)]
pub struct Recognizer {
    name: String,
    model: OnnxModel,
    input_size: u32,
    mean: f32,
    std: f32,
}

impl Recognizer {
    /// Loads an ArcFace ONNX file.
    pub fn from_file(path: impl AsRef<Path>, device: &Device) -> Result<Self, EmbedError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| EmbedError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(path.display().to_string(), &bytes, device)
    }

    /// Loads an ArcFace model from the bytes of an ONNX file.
    pub fn from_bytes(
        name: impl Into<String>,
        bytes: &[u8],
        device: &Device,
    ) -> Result<Self, EmbedError> {
        let name = name.into();
        let model = OnnxModel::from_bytes(bytes, device)?;
        let wrong = |reason: String| EmbedError::WrongModel {
            model: name.clone(),
            kind: "face recognizer",
            reason,
        };
        let ([input], [_]) = (model.inputs(), model.outputs()) else {
            return Err(wrong(format!(
                "{} inputs and {} outputs, one of each expected",
                model.inputs().len(),
                model.outputs().len()
            )));
        };
        let input_size = match input.dims.as_deref() {
            Some([_, _, Dim::Fixed(h), Dim::Fixed(w)]) if h == w => *h as u32,
            Some([_, _, Dim::Fixed(h), Dim::Fixed(w)]) => {
                return Err(wrong(format!("input of {w}x{h}, a square crop expected")));
            }
            Some([_, _, _, _]) | None => RECOGNITION_CROP,
            Some(d) => return Err(wrong(format!("input of rank {}, NCHW expected", d.len()))),
        };
        // insightface's rule (arcface_onnx.py): MXNet-converted models whose first nodes are
        // named Sub/_minus and Mul/_mul normalise inside the graph and take raw pixels.
        let probe = &model.nodes()[..model.nodes().len().min(NORMALISATION_PROBE_NODES)];
        let has = |prefixes: [&str; 2]| {
            probe
                .iter()
                .any(|n| prefixes.iter().any(|p| n.name.starts_with(p)))
        };
        let (mean, std) = if has(["Sub", "_minus"]) && has(["Mul", "_mul"]) {
            (0.0, 1.0)
        } else {
            (ARCFACE_MEAN, ARCFACE_STD)
        };
        tracing::debug!(model = %name, input_size, mean, std, "loaded face recognizer");
        Ok(Self {
            name,
            model,
            input_size,
            mean,
            std,
        })
    }

    /// The model name used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Side of the aligned crop the model takes.
    pub fn input_size(&self) -> u32 {
        self.input_size
    }

    /// Input normalisation `(mean, std)` chosen by insightface's rule.
    pub fn normalisation(&self) -> (f32, f32) {
        (self.mean, self.std)
    }

    /// The raw (not normalised) embedding of an aligned crop of [`Recognizer::input_size`].
    pub fn embed_crop(&self, crop: &RgbImage) -> Result<Vec<f32>, EmbedError> {
        let (w, h) = crop.dimensions();
        if (w, h) != (self.input_size, self.input_size) {
            return Err(EmbedError::InvalidOption(format!(
                "crop of {w}x{h} for a recognizer taking {0}x{0}",
                self.input_size
            )));
        }
        let plane = (w * h) as usize;
        let mut data = vec![0f32; 3 * plane];
        let scale = 1.0 / self.std;
        for (i, px) in crop.pixels().enumerate() {
            for c in 0..3 {
                data[c * plane + i] = (f32::from(px[c]) - self.mean) * scale;
            }
        }
        let input = Tensor::<4>::from_data(
            TensorData::new(data, [1, 3, h as usize, w as usize]),
            self.model.device(),
        );
        let out = self.model.run(vec![OnnxTensor::from_tensor(input)?])?;
        let shape = out[0].shape();
        let dim: usize = shape.iter().product();
        if dim < 2 || shape.iter().rev().skip(1).any(|&d| d != 1) {
            return Err(EmbedError::ModelOutput(format!(
                "embedding of shape {shape:?}, one vector expected"
            )));
        }
        Ok(out[0].to_vec()?)
    }

    /// Aligns and embeds one detected face of an image: `norm_crop` at
    /// [`Recognizer::input_size`] from the face's keypoints, the network, L2 normalisation. With
    /// `crop_size`, the face is also aligned at that size (`norm_crop(image, kps, crop_size)`,
    /// RGB) from the same keypoints, for models that encode the face image as well.
    pub fn embed_face(
        &self,
        image: &FaceImage,
        face: &Face,
        crop_size: Option<u32>,
    ) -> Result<IdentityFace, EmbedError> {
        if let Some(size) = crop_size {
            check_crop_size(size)?;
        }
        let aligned = norm_crop(image.rgb(), &face.kps, self.input_size)?;
        let raw = self.embed_crop(&aligned)?;
        let crop = match crop_size {
            Some(size) if size == self.input_size => Some(aligned),
            Some(size) => Some(norm_crop(image.rgb(), &face.kps, size)?),
            None => None,
        };
        Ok(IdentityFace {
            image: image.name().to_string(),
            face: face.clone(),
            norm: raw.iter().map(|x| x * x).sum::<f32>().sqrt(),
            embedding: l2_normalize(&raw),
            crop,
        })
    }
}
