//! Detected faces and detection settings, with insightface's defaults (`FaceAnalysis.prepare`'s
//! `det_thresh`, `det_size` and SCRFD's `nms_thresh`).

/// Number of keypoints per face (eyes, nose, mouth corners).
pub const KEYPOINTS: usize = 5;
/// insightface's detection score threshold (`det_thresh`).
pub const DEFAULT_SCORE_THRESHOLD: f32 = 0.5;
/// insightface's NMS overlap threshold (`nms_thresh`).
pub const DEFAULT_NMS_THRESHOLD: f32 = 0.4;
/// insightface's default detector input size.
pub const DEFAULT_DET_SIZE: u32 = 640;
/// Retries go down from the requested size in steps of this many pixels...
pub const RETRY_SIZE_STEP: u32 = 64;
/// ...but not below this size.
pub const RETRY_MIN_SIZE: u32 = 320;
/// Borders tried, as fractions of the image's larger side, when no size found a face.
pub const RETRY_PADDINGS: [f32; 2] = [0.25, 0.5];

/// A detected face in image coordinates.
#[derive(Clone, Debug, PartialEq)]
pub struct Face {
    /// Box `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
    /// Keypoints: left eye, right eye, nose, left and right mouth corners.
    pub kps: [[f32; 2]; KEYPOINTS],
    /// Detection score.
    pub score: f32,
}

impl Face {
    /// Box area (without the +1 convention of NMS).
    pub fn area(&self) -> f32 {
        (self.bbox[2] - self.bbox[0]) * (self.bbox[3] - self.bbox[1])
    }
}

/// Which face to use when an image has several.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FaceChoice {
    /// The highest detection score (insightface's `faces[0]`).
    #[default]
    HighestScore,
    /// The largest box.
    Largest,
}

impl FaceChoice {
    /// Picks a face from score-sorted detections.
    pub fn pick<'a>(&self, faces: &'a [Face]) -> Option<&'a Face> {
        match self {
            FaceChoice::HighestScore => faces.first(),
            FaceChoice::Largest => faces
                .iter()
                .reduce(|best, f| if f.area() > best.area() { f } else { best }),
        }
    }
}

/// Detection settings.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectOptions {
    /// Square detector input size (a multiple of 32); ignored by models with a fixed input size.
    pub det_size: u32,
    /// Minimum detection score.
    pub score_threshold: f32,
    /// NMS overlap threshold.
    pub nms_threshold: f32,
    /// When nothing is found: retry at smaller sizes, then with padding around the image.
    pub retry: bool,
    /// Which face to use when several are found.
    pub choice: FaceChoice,
}

impl Default for DetectOptions {
    fn default() -> Self {
        Self {
            det_size: DEFAULT_DET_SIZE,
            score_threshold: DEFAULT_SCORE_THRESHOLD,
            nms_threshold: DEFAULT_NMS_THRESHOLD,
            retry: true,
            choice: FaceChoice::HighestScore,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_picks_score_or_area() {
        let face = |score, size| Face {
            bbox: [0.0, 0.0, size, size],
            kps: [[0.0; 2]; KEYPOINTS],
            score,
        };
        let faces = [face(0.9, 10.0), face(0.8, 50.0), face(0.7, 20.0)];
        assert_eq!(FaceChoice::HighestScore.pick(&faces).unwrap().score, 0.9);
        assert_eq!(FaceChoice::Largest.pick(&faces).unwrap().score, 0.8);
        assert!(FaceChoice::Largest.pick(&[]).is_none());
    }
}
