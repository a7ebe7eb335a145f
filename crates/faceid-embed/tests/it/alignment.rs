//! Similarity estimate and warp against scikit-image / insightface's `norm_crop` (OpenCV).

use faceid_detect::testing::{fixture, json, max_pixel_diff, photo, points, rgb};
use faceid_embed::align::{ARCFACE_TEMPLATE, estimate_norm, norm_crop, similarity, template};

#[test]
fn similarity_matches_skimage() {
    let cases = json("align.json");
    let mut worst = 0.0f64;
    for case in cases.as_array().unwrap() {
        let kps = points(&case["kps"]);
        let size = case["size"].as_u64().unwrap() as u32;
        let m = estimate_norm(&kps, size).unwrap();
        for r in 0..2 {
            for c in 0..3 {
                let expected = case["matrix"][r][c].as_f64().unwrap();
                worst = worst.max((m.0[r][c] - expected).abs() / expected.abs().max(1.0));
            }
        }
    }
    // scikit-image estimates in the precision of its input, and insightface passes float32
    // keypoints: its matrices carry float32 rounding, ours are the exact (f64) solution.
    eprintln!("similarity: worst relative matrix error {worst:e}");
    assert!(worst < 1e-4, "worst relative matrix error {worst:e}");
}

#[test]
fn norm_crop_matches_insightface_within_one_level() {
    let cases = json("align.json");
    let mut checked = 0;
    for case in cases.as_array().unwrap() {
        let Some(crop) = case["crop"].as_str() else {
            continue;
        };
        let image = case["image"].as_str().unwrap();
        let src = if image == "noise_96.png" {
            rgb(fixture(image))
        } else {
            rgb(photo(image))
        };
        let size = case["size"].as_u64().unwrap() as u32;
        let got = norm_crop(&src, &points(&case["kps"]), size).unwrap();
        let expected = rgb(fixture(crop));
        let diff = max_pixel_diff(&got, &expected);
        let differing = got
            .as_raw()
            .iter()
            .zip(expected.as_raw())
            .filter(|(a, b)| a != b)
            .count();
        eprintln!("{crop}: max diff {diff}, {differing} differing values");
        assert!(diff <= 1, "{crop}: max diff {diff}");
        checked += 1;
    }
    assert_eq!(checked, 6);
}

#[test]
fn template_sizes_follow_estimate_norm() {
    assert_eq!(template(112).unwrap(), ARCFACE_TEMPLATE);
    let t224 = template(224).unwrap();
    assert_eq!(t224[0], [38.2946 * 2.0, 51.6963 * 2.0]);
    let t256 = template(256).unwrap();
    assert_eq!(t256[0], [38.2946 * 2.0 + 16.0, 51.6963 * 2.0]);
    assert!(template(100).is_err());
    assert!(template(0).is_err());
}

#[test]
fn template_maps_onto_itself() {
    let m = similarity(&ARCFACE_TEMPLATE, &ARCFACE_TEMPLATE).unwrap();
    let identity = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
    for (row, want) in m.0.iter().zip(&identity) {
        for (v, w) in row.iter().zip(want) {
            assert!((v - w).abs() < 1e-9, "{m:?}");
        }
    }
    assert!(similarity(&[[3.0, 4.0]; 5], &ARCFACE_TEMPLATE).is_none());
}
