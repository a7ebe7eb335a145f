//! Score ordering and non-maximum suppression with insightface's conventions.

use crate::face::Face;

/// Sorts by descending score and keeps the faces that overlap no better-scored kept face by more
/// than `iou_threshold`, computing areas with the +1 pixel convention of insightface's `nms`
/// (`(x2 - x1 + 1) * (y2 - y1 + 1)`), in single precision as there.
pub(crate) fn nms(mut faces: Vec<Face>, iou_threshold: f32) -> Vec<Face> {
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    let area = |f: &Face| (f.bbox[2] - f.bbox[0] + 1.0) * (f.bbox[3] - f.bbox[1] + 1.0);
    let mut kept: Vec<Face> = Vec::new();
    let mut suppressed = vec![false; faces.len()];
    for i in 0..faces.len() {
        if suppressed[i] {
            continue;
        }
        let a = &faces[i];
        for j in i + 1..faces.len() {
            if suppressed[j] {
                continue;
            }
            let b = &faces[j];
            let w = (a.bbox[2].min(b.bbox[2]) - a.bbox[0].max(b.bbox[0]) + 1.0).max(0.0);
            let h = (a.bbox[3].min(b.bbox[3]) - a.bbox[1].max(b.bbox[1]) + 1.0).max(0.0);
            let inter = w * h;
            let iou = inter / (area(a) + area(b) - inter);
            // insightface keeps `ovr <= thresh`; a NaN overlap (degenerate boxes) is dropped too.
            if iou.is_nan() || iou > iou_threshold {
                suppressed[j] = true;
            }
        }
        kept.push(faces[i].clone());
    }
    kept
}
