//! `TorchGenerator` against `torch.randn` with a seeded CPU generator
//! (fixtures written by `tests/fixtures/gen_noise.py`).

use std::path::PathBuf;

use faceid_core::{Device, TorchGenerator};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

/// torch computes the vectorised Box-Muller with AVX2 polynomials, replicated bit for bit; the
/// bound leaves room for the last-bit differences of builds that use libm instead.
const TOLERANCE: f32 = 1e-6;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/noise")
}

fn read_f32(st: &SafeTensors<'_>, key: &str) -> (Vec<usize>, Vec<f32>) {
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

fn shape_of(draw: &Value) -> Vec<usize> {
    draw["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|d| d.as_u64().expect("dim") as usize)
        .collect()
}

#[test]
fn randn_matches_torch() {
    let dir = data_dir();
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("noise.json"))
            .expect("run tests/fixtures/generate.py --only noise"),
    )
    .expect("noise.json");
    let bytes = std::fs::read(dir.join("noise.safetensors")).expect("noise.safetensors");
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");

    let mut worst = 0f32;
    let mut exact = 0usize;
    let mut total = 0usize;
    let cases = meta["cases"].as_array().expect("cases");
    assert!(cases.len() >= 30);
    for case in cases {
        let seed = case["seed"].as_u64().expect("seed");
        let mut generator = TorchGenerator::new(seed);
        for draw in case["draws"].as_array().expect("draws") {
            let key = draw["key"].as_str().expect("key");
            let shape = shape_of(draw);
            let (stored_shape, expected) = read_f32(&st, key);
            assert_eq!(stored_shape, shape, "{key}");
            let n = shape.iter().product();
            let got = generator.randn(n);
            assert_eq!(got.len(), expected.len(), "{key}");
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                let err = (g - e).abs();
                assert!(err <= TOLERANCE, "{key}[{i}]: got {g}, torch {e}");
                worst = worst.max(err);
                exact += usize::from(g.to_bits() == e.to_bits());
                total += 1;
            }
        }
    }
    eprintln!("noise: {total} values, {exact} bit-identical, max abs error {worst:e}");
}

#[test]
fn randn_tensor_is_row_major_and_continues_the_stream() {
    let device = Device::flex();
    let mut a = TorchGenerator::new(42);
    let mut b = TorchGenerator::new(42);
    let t = a.randn_tensor([2, 4, 3, 5], &device);
    assert_eq!(t.dims(), [2, 4, 3, 5]);
    let values: Vec<f32> = t.try_into_vec_as::<f32>().expect("f32 data");
    assert_eq!(values, b.randn(120));
    let next = a
        .randn_tensor([7], &device)
        .try_into_vec_as::<f32>()
        .expect("f32 data");
    assert_eq!(next, b.randn(7));
}

#[test]
fn empty_draw_leaves_the_state_alone() {
    let mut a = TorchGenerator::new(3);
    let mut b = TorchGenerator::new(3);
    assert!(a.randn(0).is_empty());
    assert_eq!(a.randn(40), b.randn(40));
}
