//! Integration tests of faceid-pipeline, in one binary.

use std::path::PathBuf;

mod concurrent;
mod faceid_parity;
mod half_precision;
mod images;
mod pipeline_parity;
mod plus_parity;
mod sdxl_parity;

/// The fixtures: `FACEID_TEST_DATA` where set (the binary run away from its workspace, as the GPU
/// pack runs it), else the workspace's `tests/data`.
fn test_data() -> PathBuf {
    std::env::var_os("FACEID_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data"))
}
