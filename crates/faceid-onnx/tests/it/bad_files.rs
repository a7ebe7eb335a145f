//! Files that are not models, or not models this runtime can run, give errors and never panic.

use std::path::PathBuf;

use burn::tensor::Device;
use faceid_onnx::{OnnxError, OnnxModel};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load(bytes: &[u8]) -> Result<OnnxModel, OnnxError> {
    OnnxModel::from_bytes(bytes, &Device::flex())
}

#[test]
fn non_onnx_bytes_are_refused() {
    let jpeg = std::fs::read(repo().join("tests/data/faces/obama.jpg")).unwrap();
    for bytes in [&b""[..], b"hello world", &[0xff; 64], &jpeg] {
        match load(bytes) {
            Err(OnnxError::NotOnnx(_)) => {}
            other => panic!("expected NotOnnx, got {other:?}"),
        }
    }
}

#[test]
fn missing_file_is_an_io_error() {
    let err = OnnxModel::from_file("/nonexistent/model.onnx", &Device::flex()).unwrap_err();
    assert!(matches!(err, OnnxError::Io { .. }), "{err}");
}

#[test]
fn truncated_and_corrupted_models_never_panic() {
    let bytes = std::fs::read(repo().join("weights/retinaface_mnet025.onnx")).unwrap();
    for cut in [1, 10, 100, 1000, bytes.len() / 2, bytes.len() - 1] {
        assert!(load(&bytes[..cut]).is_err(), "truncated at {cut} loaded");
    }
    // Flip bytes across the file (deterministic positions): each load either fails cleanly or
    // gives a model; either way nothing panics.
    let mut state = 0x2545_f491_u64;
    for _ in 0..40 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut corrupted = bytes.clone();
        let at = (state % bytes.len() as u64) as usize;
        corrupted[at] ^= 0x5a;
        let _ = load(&corrupted);
    }
}

#[test]
fn unsupported_operator_names_the_operator_and_node() {
    let bytes = std::fs::read(repo().join("tests/data/face/unsupported_op.onnx")).unwrap();
    match load(&bytes) {
        Err(OnnxError::UnsupportedOp { op_type, node, .. }) => {
            assert_eq!(op_type, "Hardmax");
            assert_eq!(node, "odd_one");
        }
        other => panic!("expected UnsupportedOp, got {other:?}"),
    }
}

#[test]
fn dangling_value_is_invalid() {
    let bytes = std::fs::read(repo().join("tests/data/face/dangling_input.onnx")).unwrap();
    match load(&bytes) {
        Err(OnnxError::Invalid(message)) => assert!(message.contains("nowhere"), "{message}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
}
