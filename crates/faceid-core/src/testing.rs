//! Support for comparing against reference tensors written by the fixture generator
//! (`tests/fixtures/`): reading a safetensors file of float and integer tensors, and error metrics.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::Tensor;
use safetensors::{Dtype, SafeTensors};

use crate::weights::HostTensor;

/// Reads every tensor of a reference safetensors file as f32 (integers converted exactly up to
/// 2^24). Panics with the path on failure: for tests only.
pub fn read_reference(path: &Path) -> HashMap<String, HostTensor> {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let file = SafeTensors::deserialize(&bytes)
        .unwrap_or_else(|e| panic!("{} is not safetensors: {e}", path.display()));
    file.iter()
        .map(|(name, view)| {
            let raw = view.data();
            let data: Vec<f32> = match view.dtype() {
                Dtype::F32 => raw
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect(),
                Dtype::I64 => raw
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f32)
                    .collect(),
                Dtype::I32 => raw
                    .chunks_exact(4)
                    .map(|b| i32::from_le_bytes(b.try_into().unwrap()) as f32)
                    .collect(),
                other => panic!(
                    "{}: tensor {name} has unsupported dtype {other:?}",
                    path.display()
                ),
            };
            (
                name.to_owned(),
                HostTensor::new(view.shape().to_vec(), data),
            )
        })
        .collect()
}

/// The largest absolute difference between a device tensor and reference values.
pub fn max_abs_diff<const D: usize>(actual: Tensor<D>, expected: &HostTensor) -> f32 {
    assert_eq!(actual.dims().to_vec(), expected.shape, "shape mismatch");
    let actual: Vec<f32> = actual.try_into_vec_as::<f32>().expect("f32 readback");
    actual
        .iter()
        .zip(&expected.data)
        .map(|(a, e)| (a - e).abs())
        .fold(0.0, f32::max)
}

/// The devices parity tests run on: flex always, plus wgpu when the build has it (the same
/// kernels as on a GPU; Mesa's software Vulkan is enough).
pub fn devices() -> Vec<burn::tensor::Device> {
    let mut devices = Vec::new();
    #[cfg(feature = "flex")]
    devices.push(burn::tensor::Device::flex());
    #[cfg(feature = "wgpu")]
    devices.push(burn::tensor::Device::wgpu(
        burn::tensor::DeviceKind::DefaultDevice,
    ));
    devices
}

/// The largest difference, in 8-bit levels, between 8-bit pixels and reference pixels in
/// `[0, 1]` (diffusers' `output_type="np"`), as `|p - x·255|`.
pub fn max_pixel_error(pixels: &[u8], expected: &[f32]) -> f32 {
    assert_eq!(pixels.len(), expected.len(), "pixel count mismatch");
    pixels
        .iter()
        .zip(expected)
        .map(|(p, x)| (*p as f32 - x * 255.0).abs())
        .fold(0.0, f32::max)
}

/// Peak resident memory of this process in MiB (Linux `VmHWM`), for reports next to timings.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// `len` deterministic pseudo-random values in `[-scale, scale)` (a linear congruential
/// generator): test inputs for kernels, checked against their definitions.
pub fn uniform(len: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}
