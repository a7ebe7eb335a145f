//! The letterbox resize against OpenCV's `cv2.resize(..., INTER_LINEAR)`.

use faceid_detect::resize::resize_linear;
use faceid_detect::testing::{fixture, json, max_pixel_diff, rgb};

#[test]
fn resize_matches_cv2_inter_linear_exactly() {
    let cases = json("resize.json");
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 6);
    for case in cases {
        let src = rgb(fixture(case["source"].as_str().unwrap()));
        let expected = rgb(fixture(case["expected"].as_str().unwrap()));
        let (w, h) = (
            case["width"].as_u64().unwrap() as u32,
            case["height"].as_u64().unwrap() as u32,
        );
        let got = resize_linear(&src, w, h);
        assert_eq!(max_pixel_diff(&got, &expected), 0, "{case}");
    }
}
