//! Turning detector outputs into faces in detector-input coordinates: SCRFD's `distance2bbox` /
//! `distance2kps` over its anchor centres, and RetinaFace's prior-box decoding.

use crate::error::DetectError;
use crate::face::{Face, KEYPOINTS};

/// Output layout of an SCRFD export (insightface's `scrfd.py`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ScrfdLayout {
    /// Feature strides, one per output group.
    pub strides: Vec<u32>,
    /// Anchors per feature-map location.
    pub anchors: usize,
}

/// RetinaFace prior boxes: (stride, the two prior sizes at that stride).
pub(crate) const RETINAFACE_PRIORS: [(u32, [f32; 2]); 3] =
    [(8, [16.0, 32.0]), (16, [64.0, 128.0]), (32, [256.0, 512.0])];
/// RetinaFace box-regression variances (centre, log-size).
pub(crate) const RETINAFACE_VARIANCES: [f32; 2] = [0.1, 0.2];

/// A model output read back as rows of `width` values.
pub(crate) struct Rows<'a> {
    pub values: &'a [f32],
    pub width: usize,
}

impl Rows<'_> {
    fn count(&self) -> usize {
        self.values.len() / self.width
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.width..(i + 1) * self.width]
    }
}

/// SCRFD: anchor centres `(x * stride, y * stride)` repeated per anchor, distances scaled by the
/// stride. Outputs are `[scores; strides] ++ [boxes; strides] ++ [keypoints; strides]`.
pub(crate) fn scrfd(
    layout: &ScrfdLayout,
    outputs: &[Rows<'_>],
    input: (u32, u32),
    threshold: f32,
) -> Result<Vec<Face>, DetectError> {
    let levels = layout.strides.len();
    let mut faces = Vec::new();
    for (level, &stride) in layout.strides.iter().enumerate() {
        let (scores, boxes, kps) = (
            &outputs[level],
            &outputs[level + levels],
            &outputs[level + 2 * levels],
        );
        let (h, w) = ((input.1 / stride) as usize, (input.0 / stride) as usize);
        let expected = h * w * layout.anchors;
        if scores.count() != expected || boxes.count() != expected || kps.count() != expected {
            return Err(DetectError::ModelOutput(format!(
                "stride {stride}: {} scores, {} boxes, {} keypoint rows for {expected} anchors of a {}x{} input",
                scores.count(),
                boxes.count(),
                kps.count(),
                input.0,
                input.1
            )));
        }
        let s = stride as f32;
        for i in 0..expected {
            let score = scores.row(i)[0];
            if score.is_nan() || score < threshold {
                continue;
            }
            let cell = i / layout.anchors;
            let (cx, cy) = ((cell % w) as f32 * s, (cell / w) as f32 * s);
            let d = boxes.row(i);
            let bbox = [cx - d[0] * s, cy - d[1] * s, cx + d[2] * s, cy + d[3] * s];
            let k = kps.row(i);
            let kps = std::array::from_fn(|p| [cx + k[2 * p] * s, cy + k[2 * p + 1] * s]);
            faces.push(Face { bbox, kps, score });
        }
    }
    Ok(faces)
}

/// RetinaFace (MobileNet-0.25 layout): priors on `ceil(H / stride) x ceil(W / stride)` grids,
/// centre `(x + 0.5) * stride`, decoded with variances 0.1 and 0.2.
pub(crate) fn retinaface(
    loc: &Rows<'_>,
    conf: &Rows<'_>,
    landmarks: &Rows<'_>,
    input: (u32, u32),
    threshold: f32,
) -> Result<Vec<Face>, DetectError> {
    let mut priors = Vec::new();
    for (stride, sizes) in RETINAFACE_PRIORS {
        for y in 0..input.1.div_ceil(stride) {
            for x in 0..input.0.div_ceil(stride) {
                for size in sizes {
                    let (cx, cy) = (
                        (x as f32 + 0.5) * stride as f32,
                        (y as f32 + 0.5) * stride as f32,
                    );
                    priors.push([cx, cy, size]);
                }
            }
        }
    }
    let n = priors.len();
    if loc.count() != n || conf.count() != n || landmarks.count() != n {
        return Err(DetectError::ModelOutput(format!(
            "{} boxes, {} scores, {} landmark rows for {n} priors of a {}x{} input",
            loc.count(),
            conf.count(),
            landmarks.count(),
            input.0,
            input.1
        )));
    }
    let [v_centre, v_size] = RETINAFACE_VARIANCES;
    let mut faces = Vec::new();
    for (i, &[px, py, ps]) in priors.iter().enumerate() {
        let score = conf.row(i)[1];
        if score.is_nan() || score < threshold {
            continue;
        }
        let l = loc.row(i);
        let (cx, cy) = (px + l[0] * v_centre * ps, py + l[1] * v_centre * ps);
        let (w, h) = (ps * (l[2] * v_size).exp(), ps * (l[3] * v_size).exp());
        let bbox = [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0];
        let m = landmarks.row(i);
        let kps: [[f32; 2]; KEYPOINTS] = std::array::from_fn(|k| {
            [
                px + m[2 * k] * v_centre * ps,
                py + m[2 * k + 1] * v_centre * ps,
            ]
        });
        faces.push(Face { bbox, kps, score });
    }
    Ok(faces)
}
