//! Loading the diffusers reference data written by `tests/fixtures/gen_schedulers.py`.

#![allow(dead_code)]

use std::path::PathBuf;

use burn::tensor::{Tensor, TensorData};
use faceid_core::Device;
use faceid_scheduler::{Scheduler, SchedulerConfig, SchedulerKind};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

/// The reference data: the JSON case list and the raw safetensors bytes.
pub struct Fixtures {
    pub meta: Value,
    bytes: Vec<u8>,
}

impl Fixtures {
    pub fn load() -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/schedulers");
        let text = std::fs::read_to_string(dir.join("schedulers.json"))
            .expect("missing fixtures: run tests/fixtures/generate.py --only schedulers");
        let meta = serde_json::from_str(&text).expect("schedulers.json");
        let bytes =
            std::fs::read(dir.join("schedulers.safetensors")).expect("schedulers.safetensors");
        Self { meta, bytes }
    }

    pub fn cases(&self, group: &str) -> &Vec<Value> {
        self.meta[group].as_array().expect("case group")
    }

    pub fn config(&self, name: &str) -> SchedulerConfig {
        SchedulerConfig::from_json_value(&self.meta["configs"][name])
            .expect("fixture config parses")
    }

    pub fn shape(&self) -> [usize; 4] {
        let dims: Vec<usize> = self.meta["shape"]
            .as_array()
            .expect("shape")
            .iter()
            .map(|d| d.as_u64().expect("dim") as usize)
            .collect();
        dims.try_into().expect("4-d shape")
    }

    /// A stored float32 tensor as (shape, values).
    pub fn tensor(&self, key: &str) -> (Vec<usize>, Vec<f32>) {
        let st = SafeTensors::deserialize(&self.bytes).expect("safetensors");
        let view = st
            .tensor(key)
            .unwrap_or_else(|e| panic!("missing tensor {key}: {e}"));
        assert_eq!(view.dtype(), Dtype::F32, "{key}");
        let values = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (view.shape().to_vec(), values)
    }

    /// Builds the scheduler a case describes (`kind` + `config` keys).
    pub fn build(&self, case: &Value) -> Box<dyn Scheduler> {
        let kind: SchedulerKind = case["kind"]
            .as_str()
            .expect("kind")
            .parse()
            .expect("known kind");
        let config = self.config(case["config"].as_str().expect("config"));
        kind.build(&config)
            .unwrap_or_else(|e| panic!("building {} / {}: {e}", case["kind"], case["config"]))
    }
}

pub fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .expect("list")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect()
}

pub fn to_tensor(values: &[f32], shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

pub fn to_vec(tensor: Tensor<4>) -> Vec<f32> {
    tensor.try_into_vec_as::<f32>().expect("f32 tensor")
}

/// Largest absolute difference; a NaN on either side counts as infinitely wrong.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = (x - y).abs();
            if d.is_nan() { f32::INFINITY } else { d }
        })
        .fold(0.0, f32::max)
}

/// Whether a config uses the zero-terminal-SNR rescale.
pub fn is_zero_snr(fixtures: &Fixtures, case: &Value) -> bool {
    fixtures.meta["configs"][case["config"].as_str().expect("config")]["rescale_betas_zero_snr"]
        == Value::Bool(true)
}
