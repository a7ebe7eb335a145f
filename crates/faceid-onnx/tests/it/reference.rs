//! The runtime against onnxruntime on the reference models of `tests/data/face/`
//! (written by `tests/fixtures/gen_face.py`) and on the bundled RetinaFace model.

use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use faceid_onnx::{OnnxError, OnnxModel, OnnxTensor};
use safetensors::SafeTensors;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixtures() -> PathBuf {
    repo().join("tests/data/face")
}

/// A tensor of `raw.safetensors` as (shape, values).
fn raw(st: &SafeTensors<'_>, key: &str) -> (Vec<usize>, Vec<f32>) {
    let view = st.tensor(key).unwrap_or_else(|e| panic!("{key}: {e}"));
    let values = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (view.shape().to_vec(), values)
}

/// Runs `model` on the stored input of `key` and returns the worst error of each output relative
/// to that output's largest magnitude.
fn compare(model_path: PathBuf, key: &str) -> Vec<f32> {
    // Every backend the build has (flex, and wgpu when enabled): the worst of them.
    let per_device: Vec<Vec<f32>> = faceid_core::testing::devices()
        .iter()
        .map(|device| compare_on(&model_path, key, device))
        .collect();
    (0..per_device[0].len())
        .map(|i| per_device.iter().map(|e| e[i]).fold(0.0, f32::max))
        .collect()
}

fn compare_on(model_path: &PathBuf, key: &str, device: &Device) -> Vec<f32> {
    let device = device.clone();
    let bytes = std::fs::read(fixtures().join("raw.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let model = OnnxModel::from_file(&model_path, &device).unwrap();
    let (shape, values) = raw(&st, &format!("{key}/input"));
    let input = Tensor::<4>::from_data(TensorData::new(values, shape), &device);
    let outputs = model
        .run(vec![OnnxTensor::from_tensor(input).unwrap()])
        .unwrap();
    assert_eq!(outputs.len(), model.outputs().len());
    outputs
        .iter()
        .enumerate()
        .map(|(i, out)| {
            let (shape, expected) = raw(&st, &format!("{key}/output/{i}"));
            assert_eq!(out.shape(), shape, "{key} output {i}");
            let got = out.to_vec().unwrap();
            let scale = expected.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
            let worst = got
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            worst / scale
        })
        .collect()
}

fn assert_close(errors: &[f32], tolerance: f32, what: &str) {
    let worst = errors.iter().copied().fold(0.0, f32::max);
    eprintln!("{what}: worst relative error {worst:e}");
    assert!(
        worst <= tolerance,
        "{what}: worst relative error {worst:e} over {tolerance:e} ({errors:?})"
    );
}

#[test]
fn retinaface_matches_onnxruntime() {
    let errors = compare(repo().join("weights/retinaface_mnet025.onnx"), "retinaface");
    assert_eq!(errors.len(), 3);
    assert_close(&errors, 1e-4, "retinaface");
}

#[test]
fn scrfd_exports_match_onnxruntime() {
    for key in ["scrfd_bn_dynamic", "scrfd_opset13"] {
        let errors = compare(fixtures().join(format!("{key}.onnx")), key);
        assert_eq!(errors.len(), 9, "{key}: insightface's 9-output layout");
        assert_close(&errors, 1e-4, key);
    }
}

#[test]
fn arcface_exports_match_onnxruntime() {
    for key in [
        "arcface_r50_bn",
        "arcface_r50_folded_dynbatch",
        "arcface_r100s_inner_norm",
    ] {
        let errors = compare(fixtures().join(format!("{key}.onnx")), key);
        assert_close(&errors, 1e-4, key);
    }
}

#[test]
fn retinaface_declares_its_interface() {
    let model = OnnxModel::from_file(
        repo().join("weights/retinaface_mnet025.onnx"),
        &Device::flex(),
    )
    .unwrap();
    assert_eq!(model.opset(), 11);
    assert_eq!(model.inputs().len(), 1);
    assert_eq!(model.inputs()[0].name, "input");
    let names: Vec<&str> = model.outputs().iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["loc", "conf", "landmarks"]);
    assert!(model.nodes().iter().any(|n| n.op_type == "Resize"));
}

#[test]
fn folded_and_unfolded_exports_differ_only_in_layout() {
    let device = Device::flex();
    let count = |file: &str| {
        OnnxModel::from_file(fixtures().join(file), &device)
            .unwrap()
            .nodes()
            .iter()
            .filter(|n| n.op_type == "BatchNormalization")
            .count()
    };
    assert!(count("arcface_r50_bn.onnx") > count("arcface_r50_folded_dynbatch.onnx"));
}

#[test]
fn wrong_input_shape_is_reported() {
    let device = Device::flex();
    let model = OnnxModel::from_file(fixtures().join("arcface_r50_bn.onnx"), &device).unwrap();
    let input = OnnxTensor::from_tensor(Tensor::<4>::zeros([1, 3, 64, 64], &device)).unwrap();
    match model.run(vec![input]) {
        Err(OnnxError::InputShape { name, got, .. }) => {
            assert_eq!(name, "input.1");
            assert_eq!(got, [1, 3, 64, 64]);
        }
        other => panic!("expected an input shape error, got {other:?}"),
    }
    let rank3 = OnnxTensor::from_tensor(Tensor::<3>::zeros([3, 112, 112], &device)).unwrap();
    assert!(matches!(
        model.run(vec![rank3]),
        Err(OnnxError::InputShape { .. })
    ));
    assert!(matches!(
        model.run(vec![]),
        Err(OnnxError::InputCount {
            expected: 1,
            got: 0
        })
    ));
}
