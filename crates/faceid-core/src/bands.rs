//! Work split along one dimension so that what one part holds at once stays under a budget.

use std::ops::Range;

use burn::tensor::Tensor;

/// The most bytes one band may take on a GPU: 128 MiB, the storage-buffer binding size every
/// WebGPU device supports (wgpu's default limit, and the most Mesa's lavapipe allows). A larger
/// buffer fails to allocate on such a device ("can't allocate buffer"), which a 256 MiB band of
/// SD 1.5's 4096-token attention scores did on lavapipe.
pub const GPU_BAND_BYTES: usize = 128 << 20;

/// Runs `part` on consecutive ranges of `0..len`, each as long as `budget` bytes allow at
/// `bytes_per_index` bytes per index (at least one index), and concatenates the results along
/// `dim`. A single range's result is returned as it is: concatenating it would copy it.
pub fn in_bands<const D: usize>(
    len: usize,
    bytes_per_index: usize,
    budget: usize,
    dim: usize,
    mut part: impl FnMut(Range<usize>) -> Tensor<D>,
) -> Tensor<D> {
    let band = (budget / bytes_per_index.max(1)).clamp(1, len.max(1));
    if band >= len {
        return part(0..len);
    }
    let parts = (0..len)
        .step_by(band)
        .map(|first| part(first..(first + band).min(len)))
        .collect();
    Tensor::cat(parts, dim)
}
