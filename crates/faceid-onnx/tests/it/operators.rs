//! Single-operator graphs with the attribute variants real exports rarely exercise, against
//! onnxruntime (`tests/data/face/ops/`, written by `tests/fixtures/gen_face.py`).

use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use faceid_onnx::{OnnxModel, OnnxTensor};
use safetensors::SafeTensors;

fn ops_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/face/ops")
}

fn tensor(st: &SafeTensors<'_>, key: &str) -> (Vec<usize>, Vec<f32>) {
    let view = st.tensor(key).unwrap();
    let values = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (view.shape().to_vec(), values)
}

fn input(shape: Vec<usize>, values: Vec<f32>, device: &Device) -> OnnxTensor {
    match shape.len() {
        2 => OnnxTensor::from_tensor(Tensor::<2>::from_data(
            TensorData::new(values, shape),
            device,
        )),
        3 => OnnxTensor::from_tensor(Tensor::<3>::from_data(
            TensorData::new(values, shape),
            device,
        )),
        _ => OnnxTensor::from_tensor(Tensor::<4>::from_data(
            TensorData::new(values, shape),
            device,
        )),
    }
    .unwrap()
}

#[test]
fn operators_match_onnxruntime() {
    let device = Device::flex();
    let bytes = std::fs::read(ops_dir().join("reference.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let names: Vec<String> =
        serde_json::from_slice(&std::fs::read(ops_dir().join("cases.json")).unwrap()).unwrap();
    assert!(names.len() >= 20);
    let mut failures = Vec::new();
    for name in &names {
        let model = OnnxModel::from_file(ops_dir().join(format!("{name}.onnx")), &device).unwrap();
        let (shape, values) = tensor(&st, &format!("{name}/input"));
        let outputs = match model.run(vec![input(shape, values, &device)]) {
            Ok(o) => o,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let (shape, expected) = tensor(&st, &format!("{name}/output"));
        if outputs[0].shape() != shape {
            failures.push(format!(
                "{name}: shape {:?}, expected {shape:?}",
                outputs[0].shape()
            ));
            continue;
        }
        let got = outputs[0].to_vec().unwrap();
        let worst = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        eprintln!("{name}: worst abs error {worst:e}");
        if worst > 1e-5 {
            failures.push(format!("{name}: worst abs error {worst:e}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
