//! Work split along one dimension so that what one part holds at once stays under a budget.

use std::ops::Range;

use burn::tensor::Tensor;

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
