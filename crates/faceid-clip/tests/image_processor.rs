//! The image preprocessing against transformers' `CLIPImageProcessor` (its PIL implementation,
//! what the pinned transformers 5.24 runs) on the cases of `tests/data/clip_vision`.

use std::path::PathBuf;

use faceid_clip::{ClipImageProcessor, ClipImageProcessorConfig, ImageProcessorError};
use faceid_core::testing::read_reference;
use faceid_core::{ConfigError, HostTensor};
use image::RgbImage;

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/clip_vision")
}

#[derive(serde::Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    input: String,
    lossless_input: bool,
    config: serde_json::Value,
    crop: String,
    pixel_values_shape: Vec<usize>,
    pixel_values: Option<String>,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(data().join("processor_cases.json")).unwrap();
    serde_json::from_str::<Cases>(&text).unwrap().cases
}

fn open(rel: &str) -> RgbImage {
    image::open(data().join(rel)).unwrap().to_rgb8()
}

fn processor(case: &Case) -> ClipImageProcessor {
    let config: ClipImageProcessorConfig = serde_json::from_value(case.config.clone()).unwrap();
    ClipImageProcessor::new(config).unwrap()
}

fn max_diff(actual: &HostTensor, expected: &HostTensor) -> f32 {
    assert_eq!(actual.shape, expected.shape, "shape mismatch");
    actual
        .data
        .iter()
        .zip(&expected.data)
        .map(|(a, e)| (a - e).abs())
        .fold(0.0, f32::max)
}

/// (largest difference in levels, number of differing values).
fn level_diff(actual: &RgbImage, expected: &RgbImage) -> (u8, usize) {
    assert_eq!(actual.dimensions(), expected.dimensions(), "crop size");
    actual
        .as_raw()
        .iter()
        .zip(expected.as_raw())
        .fold((0, 0), |(max, n), (a, e)| {
            let d = a.abs_diff(*e);
            (max.max(d), n + usize::from(d > 0))
        })
}

#[test]
fn resize_and_crop_are_bit_exact_and_pixel_values_within_1e_6() {
    let reference = read_reference(&data().join("reference.safetensors"));
    let cases = cases();
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    let mut checked_f32 = 0;
    for case in cases.iter().filter(|c| c.lossless_input) {
        let processor = processor(case);
        let image = open(&case.input);
        let crop = processor.resize_and_crop(&image).unwrap();
        let (levels, count) = level_diff(&crop, &open(&case.crop));
        if count > 0 {
            failures.push(format!(
                "{}: {count} values differ, by up to {levels}",
                case.name
            ));
        }
        let pixels = processor.preprocess(std::slice::from_ref(&image)).unwrap();
        assert_eq!(pixels.shape, case.pixel_values_shape, "{}", case.name);
        if let Some(key) = &case.pixel_values {
            let err = max_diff(&pixels, &reference[key]);
            println!("{}: pixel values max abs error {err:.3e}", case.name);
            if err > 1e-6 {
                failures.push(format!("{}: pixel values max abs error {err}", case.name));
            }
            checked_f32 += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked_f32 >= 13, "{checked_f32} cases with f32 references");
}

/// The JPEG photos: the reference decoded them with Pillow (libjpeg-turbo), this test with the
/// `image` crate, whose decoder rounds differently (by up to 3 levels on about 0.7% of values).
/// Downscaling spreads that over more pixels but keeps it to a few levels; everything after the
/// decoder is exact (the lossless cases above).
#[test]
fn jpeg_photos_differ_only_by_the_decoder() {
    for case in cases().iter().filter(|c| !c.lossless_input) {
        let processor = processor(case);
        let crop = processor.resize_and_crop(&open(&case.input)).unwrap();
        let expected = open(&case.crop);
        let (levels, _) = level_diff(&crop, &expected);
        let total: u64 = crop
            .as_raw()
            .iter()
            .zip(expected.as_raw())
            .map(|(a, e)| u64::from(a.abs_diff(*e)))
            .sum();
        let mean = total as f64 / crop.as_raw().len() as f64;
        println!(
            "{}: crop up to {levels} levels from the reference, {mean:.4} on average",
            case.name
        );
        assert!(
            levels <= 3 && mean < 0.25,
            "{}: up to {levels} levels apart, {mean:.3} on average",
            case.name
        );
    }
}

#[test]
fn defaults_are_clip_image_processor_and_the_saved_config() {
    let saved = ClipImageProcessor::from_dir(&data().join("tiny-vit")).unwrap();
    assert_eq!(saved, ClipImageProcessor::default());
    let legacy = cases()
        .into_iter()
        .find(|c| c.name == "legacy_config")
        .unwrap();
    assert_eq!(processor(&legacy), ClipImageProcessor::default());
}

#[test]
fn batches_stack_images_in_order() {
    let processor = ClipImageProcessor::default();
    let a = open("../faces/astronaut.png");
    let b = open("inputs/tall_90x333.png");
    let batch = processor.preprocess(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(batch.shape, vec![2, 3, 224, 224]);
    let one = processor.preprocess(&[a]).unwrap();
    let two = processor.preprocess(&[b]).unwrap();
    let expected: Vec<f32> = one.data.iter().chain(&two.data).copied().collect();
    assert_eq!(batch.data, expected);
}

#[test]
fn bad_inputs_are_typed_errors() {
    let processor = ClipImageProcessor::default();
    assert!(matches!(
        processor.preprocess(&[]),
        Err(ImageProcessorError::EmptyBatch)
    ));
    let err = processor
        .preprocess(&[RgbImage::new(4, 4), RgbImage::new(0, 3)])
        .unwrap_err();
    assert!(
        matches!(err, ImageProcessorError::EmptyImage { index: 1, .. }),
        "{err}"
    );
    let no_crop: ClipImageProcessorConfig =
        serde_json::from_value(serde_json::json!({"do_center_crop": false})).unwrap();
    let err = ClipImageProcessor::new(no_crop)
        .unwrap()
        .preprocess(&[RgbImage::new(20, 10), RgbImage::new(10, 20)])
        .unwrap_err();
    assert!(
        matches!(err, ImageProcessorError::MixedSizes { index: 1, .. }),
        "{err}"
    );
}

#[test]
fn unsupported_configs_name_the_field() {
    let cases = [
        (serde_json::json!({"size": {"longest_edge": 300}}), "size"),
        (
            serde_json::json!({"size": {"shortest_edge": 224, "longest_edge": 300}}),
            "size",
        ),
        (serde_json::json!({"size": 0}), "size"),
        (serde_json::json!({"resample": 0}), "resample"),
        (serde_json::json!({"crop_size": 0}), "crop_size"),
        (serde_json::json!({"image_mean": [0.5, 0.5]}), "image_mean"),
        (serde_json::json!({"image_std": [1, 2, 3, 4]}), "image_std"),
    ];
    for (json, field) in cases {
        let config: ClipImageProcessorConfig = serde_json::from_value(json.clone()).unwrap();
        match ClipImageProcessor::new(config) {
            Err(ConfigError::Unsupported { field: f, .. }) => assert_eq!(f, field, "{json}"),
            other => panic!("{json}: expected an unsupported `{field}`, got {other:?}"),
        }
    }
    // Not a filter number at all: a parse error.
    let dir = std::env::temp_dir().join(format!("faceid-clip-{}-processor", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("preprocessor_config.json"), r#"{"resample": 9}"#).unwrap();
    let err = ClipImageProcessor::from_dir(&dir).unwrap_err();
    assert!(
        matches!(err, ConfigError::Parse { .. }) && err.to_string().contains("resampling"),
        "{err}"
    );
    std::fs::write(dir.join("preprocessor_config.json"), r#"{"resample": 0}"#).unwrap();
    let err = ClipImageProcessor::from_dir(&dir).unwrap_err();
    assert!(err.to_string().contains("`resample`"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
