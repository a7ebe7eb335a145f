//! ArcFace recognition: the aligned crop through an IResNet, L2-normalised; and averaging.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use faceid_onnx::{Dim, OnnxModel, OnnxTensor};
use image::RgbImage;

use crate::align::RECOGNITION_CROP;
use crate::error::FaceError;

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
    pub fn from_file(path: impl AsRef<Path>, device: &Device) -> Result<Self, FaceError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| FaceError::Io {
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
    ) -> Result<Self, FaceError> {
        let name = name.into();
        let model = OnnxModel::from_bytes(bytes, device)?;
        let wrong = |reason: String| FaceError::WrongModel {
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
    pub fn embed_crop(&self, crop: &RgbImage) -> Result<Vec<f32>, FaceError> {
        let (w, h) = crop.dimensions();
        if (w, h) != (self.input_size, self.input_size) {
            return Err(FaceError::InvalidOption(format!(
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
            return Err(FaceError::ModelOutput(format!(
                "embedding of shape {shape:?}, one vector expected"
            )));
        }
        Ok(out[0].to_vec()?)
    }
}

/// Scales a vector to unit length (a zero vector stays zero).
pub fn l2_normalize(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter().map(|x| x / norm).collect()
    } else {
        v.to_vec()
    }
}

/// Cosine similarity of two vectors.
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

/// How several normalised embeddings are combined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AverageMode {
    /// Mean of the normalised embeddings, normalised again (a unit vector).
    #[default]
    NormalizedMean,
    /// Plain mean of the normalised embeddings (its length shrinks as the faces disagree).
    Mean,
}

/// Combines normalised embeddings; `None` for an empty list or mismatched lengths.
pub fn average_embeddings(embeddings: &[Vec<f32>], mode: AverageMode) -> Option<Vec<f32>> {
    let first = embeddings.first()?;
    if embeddings.iter().any(|e| e.len() != first.len()) {
        return None;
    }
    let n = embeddings.len() as f32;
    let mean: Vec<f32> = (0..first.len())
        .map(|i| embeddings.iter().map(|e| e[i]).sum::<f32>() / n)
        .collect();
    Some(match mode {
        AverageMode::NormalizedMean => l2_normalize(&mean),
        AverageMode::Mean => mean,
    })
}
