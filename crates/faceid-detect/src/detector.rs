//! Face detection as insightface's `SCRFD.detect` does it (and RetinaFace's decoding): letterbox,
//! normalise, run, decode anchors, threshold, NMS, map back to image coordinates; plus retries
//! when nothing is found.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use faceid_onnx::{Dim, OnnxModel, OnnxTensor};
use image::RgbImage;

use crate::decode::{self, Rows, ScrfdLayout};
use crate::error::{Attempt, AttemptOutcome, DetectError};
use crate::face::{DetectOptions, Face, RETRY_MIN_SIZE, RETRY_PADDINGS, RETRY_SIZE_STEP};
use crate::image_input::FaceImage;
use crate::letterbox::{letterbox, to_image};
use crate::nms;

/// The built-in detector: RetinaFace MobileNet-0.25 (MIT), see `weights/PROVENANCE.md`.
pub const BUILTIN_RETINAFACE: &[u8] = include_bytes!("../../../weights/retinaface_mnet025.onnx");

/// SCRFD input normalisation: `(rgb - 127.5) / 128`.
const SCRFD_MEAN: f32 = 127.5;
const SCRFD_STD: f32 = 128.0;
/// RetinaFace input normalisation: BGR minus these means, no scaling.
const RETINAFACE_BGR_MEAN: [f32; 3] = [104.0, 117.0, 127.0];

/// Which detector family a model belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetectorKind {
    /// SCRFD with keypoints (insightface's `det_10g.onnx` and its kin).
    Scrfd,
    /// RetinaFace with a `loc` / `conf` / `landmarks` output triple.
    RetinaFace,
}

#[derive(Clone, Debug)]
enum Layout {
    Scrfd(ScrfdLayout),
    RetinaFace,
}

/// A face detector loaded from an ONNX file.
#[derive(Debug)]
pub struct Detector {
    name: String,
    model: OnnxModel,
    layout: Layout,
    fixed_input: Option<(u32, u32)>,
}

impl Detector {
    /// The built-in RetinaFace MobileNet-0.25 detector.
    pub fn retinaface(device: &Device) -> Result<Self, DetectError> {
        Self::from_bytes("built-in RetinaFace", BUILTIN_RETINAFACE, device)
    }

    /// Loads an SCRFD or RetinaFace ONNX file.
    pub fn from_file(path: impl AsRef<Path>, device: &Device) -> Result<Self, DetectError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| DetectError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(path.display().to_string(), &bytes, device)
    }

    /// Loads an SCRFD or RetinaFace model from the bytes of an ONNX file.
    pub fn from_bytes(
        name: impl Into<String>,
        bytes: &[u8],
        device: &Device,
    ) -> Result<Self, DetectError> {
        let name = name.into();
        let model = OnnxModel::from_bytes(bytes, device)?;
        let wrong = |reason: String| DetectError::WrongModel {
            model: name.clone(),
            kind: "face detector",
            reason,
        };
        let [input] = model.inputs() else {
            return Err(wrong(format!(
                "{} inputs, one expected",
                model.inputs().len()
            )));
        };
        let fixed_input = match input.dims.as_deref() {
            None => None,
            Some([_, c, h, w]) => {
                if !matches!(c, Dim::Fixed(3) | Dim::Dynamic(_)) {
                    return Err(wrong(format!("input has {c} channels")));
                }
                match (h, w) {
                    (Dim::Fixed(h), Dim::Fixed(w)) => Some((*w as u32, *h as u32)),
                    _ => None,
                }
            }
            Some(d) => return Err(wrong(format!("input of rank {}, NCHW expected", d.len()))),
        };
        let outputs = model.outputs();
        let last_dims: Vec<Option<usize>> = outputs
            .iter()
            .map(|o| match o.dims.as_deref().and_then(|d| d.last()) {
                Some(Dim::Fixed(n)) => Some(*n),
                _ => None,
            })
            .collect();
        let names: Vec<&str> = outputs.iter().map(|o| o.name.as_str()).collect();
        let layout = match outputs.len() {
            3 if last_dims == [Some(4), Some(2), Some(10)]
                || names == ["loc", "conf", "landmarks"] =>
            {
                Layout::RetinaFace
            }
            9 => Layout::Scrfd(ScrfdLayout {
                strides: vec![8, 16, 32],
                anchors: 2,
            }),
            15 => Layout::Scrfd(ScrfdLayout {
                strides: vec![8, 16, 32, 64, 128],
                anchors: 1,
            }),
            6 | 10 => {
                return Err(wrong(
                    "an SCRFD model without keypoints cannot align faces".into(),
                ));
            }
            n => {
                return Err(wrong(format!(
                    "{n} outputs: neither SCRFD (9 or 15) nor RetinaFace (loc, conf, landmarks)"
                )));
            }
        };
        tracing::debug!(model = %name, ?layout, ?fixed_input, "loaded face detector");
        Ok(Self {
            name,
            model,
            layout,
            fixed_input,
        })
    }

    /// The detector family.
    pub fn kind(&self) -> DetectorKind {
        match self.layout {
            Layout::Scrfd(_) => DetectorKind::Scrfd,
            Layout::RetinaFace => DetectorKind::RetinaFace,
        }
    }

    /// The model name used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The input size fixed by the model, if any (`(width, height)`).
    pub fn fixed_input(&self) -> Option<(u32, u32)> {
        self.fixed_input
    }

    /// Detects faces, sorted by descending score, retrying as `options` allow. Fails with
    /// [`DetectError::NoFace`], listing the attempts, when nothing is found.
    pub fn detect(
        &self,
        image: &FaceImage,
        options: &DetectOptions,
    ) -> Result<Vec<Face>, DetectError> {
        validate(options)?;
        let mut attempts = Vec::new();
        for (det_size, padding) in self.plan(options) {
            let outcome = match self.detect_once(image.rgb(), det_size, padding, options)? {
                Some(faces) if !faces.is_empty() => {
                    if !attempts.is_empty() {
                        tracing::info!(
                            image = image.name(),
                            det_size,
                            padding,
                            "face found on retry"
                        );
                    }
                    return Ok(faces);
                }
                Some(_) => AttemptOutcome::NothingAboveThreshold,
                None => AttemptOutcome::ImageTooThin,
            };
            attempts.push(Attempt {
                det_size,
                padding,
                outcome,
            });
        }
        Err(DetectError::NoFace {
            image: image.name().to_string(),
            attempts,
        })
    }

    /// The attempts to make for `options` with this model.
    fn plan(&self, options: &DetectOptions) -> Vec<(u32, f32)> {
        match self.fixed_input {
            Some((w, h)) => retry_plan(w.max(h), false, options.retry),
            None => retry_plan(options.det_size, true, options.retry),
        }
    }

    /// One detection pass; `None` when the image does not fit at this size.
    fn detect_once(
        &self,
        rgb: &RgbImage,
        det_size: u32,
        padding: f32,
        options: &DetectOptions,
    ) -> Result<Option<Vec<Face>>, DetectError> {
        let (width, height) = self.fixed_input.unwrap_or((det_size, det_size));
        let Some((canvas, placement)) = letterbox(rgb, width, height, padding) else {
            return Ok(None);
        };
        let input = self.blob(&canvas);
        let outputs = self.model.run(vec![OnnxTensor::from_tensor(input)?])?;
        let read: Vec<(Vec<f32>, usize)> = outputs
            .iter()
            .map(|o| {
                let width = o.shape().last().copied().unwrap_or(1).max(1);
                Ok((o.to_vec()?, width))
            })
            .collect::<Result<_, DetectError>>()?;
        let rows: Vec<Rows<'_>> = read
            .iter()
            .map(|(values, width)| Rows {
                values,
                width: *width,
            })
            .collect();
        let threshold = options.score_threshold;
        let faces = match &self.layout {
            Layout::Scrfd(layout) => {
                check_widths(&rows, layout.strides.len(), &[1, 4, 10])?;
                decode::scrfd(layout, &rows, (width, height), threshold)?
            }
            Layout::RetinaFace => {
                check_widths(&rows, 1, &[4, 2, 10])?;
                decode::retinaface(&rows[0], &rows[1], &rows[2], (width, height), threshold)?
            }
        };
        let faces = faces.into_iter().map(|f| to_image(f, placement)).collect();
        Ok(Some(nms::nms(faces, options.nms_threshold)))
    }

    /// The normalised NCHW input of the model.
    fn blob(&self, canvas: &RgbImage) -> Tensor<4> {
        let (w, h) = canvas.dimensions();
        let plane = (w * h) as usize;
        let mut data = vec![0f32; 3 * plane];
        for (i, px) in canvas.pixels().enumerate() {
            for c in 0..3 {
                data[c * plane + i] = match self.layout {
                    Layout::Scrfd(_) => (f32::from(px[c]) - SCRFD_MEAN) * (1.0 / SCRFD_STD),
                    Layout::RetinaFace => f32::from(px[2 - c]) - RETINAFACE_BGR_MEAN[c],
                };
            }
        }
        Tensor::from_data(
            TensorData::new(data, [1, 3, h as usize, w as usize]),
            self.model.device(),
        )
    }
}

/// Attempts `(det_size, padding)` in order: the requested size; then, when retrying, smaller sizes
/// (only for models that accept any size) and paddings at the requested size.
fn retry_plan(first: u32, resizable: bool, retry: bool) -> Vec<(u32, f32)> {
    let mut plan = vec![(first, 0.0)];
    if !retry {
        return plan;
    }
    if resizable {
        let mut size = first;
        while size >= RETRY_MIN_SIZE + RETRY_SIZE_STEP {
            size -= RETRY_SIZE_STEP;
            plan.push((size, 0.0));
        }
    }
    plan.extend(RETRY_PADDINGS.iter().map(|&p| (first, p)));
    plan
}

fn validate(options: &DetectOptions) -> Result<(), DetectError> {
    if options.det_size < 32 || options.det_size > 4096 || !options.det_size.is_multiple_of(32) {
        return Err(DetectError::InvalidOption(format!(
            "det_size {} must be a multiple of 32 between 32 and 4096",
            options.det_size
        )));
    }
    let unit = 0.0..=1.0;
    if !unit.contains(&options.score_threshold) || !unit.contains(&options.nms_threshold) {
        return Err(DetectError::InvalidOption(format!(
            "thresholds must lie in [0, 1] (score {}, nms {})",
            options.score_threshold, options.nms_threshold
        )));
    }
    Ok(())
}

/// Checks the row width of each output group (`groups` outputs per width).
fn check_widths(rows: &[Rows<'_>], groups: usize, widths: &[usize]) -> Result<(), DetectError> {
    for (i, r) in rows.iter().enumerate() {
        let expected = widths[i / groups];
        if r.width != expected || r.values.len() % expected != 0 {
            return Err(DetectError::ModelOutput(format!(
                "output {i} has rows of {} values, {expected} expected",
                r.width
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_plan_goes_down_in_steps_then_pads() {
        let sizes: Vec<u32> = retry_plan(640, true, true).iter().map(|a| a.0).collect();
        assert_eq!(sizes, [640, 576, 512, 448, 384, 320, 640, 640]);
        let pads: Vec<f32> = retry_plan(640, true, true).iter().map(|a| a.1).collect();
        assert_eq!(&pads[6..], RETRY_PADDINGS);
        assert_eq!(retry_plan(640, true, false), [(640, 0.0)]);
        assert_eq!(retry_plan(256, true, true).len(), 1 + RETRY_PADDINGS.len());
        assert_eq!(retry_plan(640, false, true).len(), 1 + RETRY_PADDINGS.len());
    }
}
