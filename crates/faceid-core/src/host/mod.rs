//! Kernels that run on the CPU backend's own memory, for the operations the denoising loop
//! spends its time on and that burn's generic CPU kernels do slowly.
//!
//! [`HostF32`] borrows a contiguous f32 tensor on flex without copying it, and [`tensor`] wraps a
//! `Vec<f32>` back into a burn tensor without copying it; the kernels work on plain slices in
//! between. Every caller falls back to burn's kernel when [`HostF32::of`] returns `None` (another
//! backend, another dtype).

pub mod conv;
pub mod linear;
pub mod math;
pub mod norm;
pub mod winograd;

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::{DType, Tensor, TensorData};
use burn_flex::{Flex, FlexTensor};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the host kernels on or off for the whole process (on by default). Off, every layer runs
/// burn's own kernels: a way to compare the two paths, which must agree within the parity
/// tolerances.
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// Whether the host kernels are on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// An f32 tensor living on the CPU backend, readable as a contiguous row-major slice.
pub struct HostF32 {
    tensor: FlexTensor,
    offset: usize,
    len: usize,
}

impl HostF32 {
    /// Borrows `t`'s memory (a reference-count increment, no copy), or for a strided view
    /// (a transpose, say) a contiguous copy of it; `None` unless `t` is an f32 tensor on flex in
    /// an aligned buffer and the host kernels are [`enabled`].
    pub fn of<const D: usize>(t: &Tensor<D>) -> Option<Self> {
        if t.dtype() != DType::F32 || !enabled() {
            return None;
        }
        let mut tensor = t.clone().try_into_primitive::<Flex>().ok()?;
        if !tensor.layout().is_contiguous() {
            tensor = tensor.to_contiguous();
        }
        let layout = tensor.layout();
        let (offset, len) = (layout.start_offset(), layout.num_elements());
        if !layout.is_contiguous() {
            return None;
        }
        bytemuck::try_cast_slice::<u8, f32>(tensor.bytes())
            .ok()
            .filter(|s| s.len() >= offset + len)?;
        Some(Self {
            tensor,
            offset,
            len,
        })
    }

    /// The elements, row-major.
    pub fn data(&self) -> &[f32] {
        // `of` checked the alignment and the length.
        &bytemuck::cast_slice::<u8, f32>(self.tensor.bytes())[self.offset..self.offset + self.len]
    }
}

/// Wraps `data` (row-major, `shape`) as a tensor on flex, without copying it.
pub fn tensor<const D: usize>(data: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
    debug_assert_eq!(data.len(), shape.iter().product::<usize>());
    Tensor::from_primitive::<Flex>(FlexTensor::from_data(TensorData::new(data, shape)))
}

/// The base pointer of a buffer whose disjoint parts parallel tasks write (each call site says
/// which part is whose).
#[derive(Clone, Copy)]
pub struct SharedMut(pub *mut f32);
// SAFETY: the pointer is only dereferenced by tasks writing disjoint elements.
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The element `offset` past the base (a method, so that closures capture the whole
    /// wrapper rather than its raw pointer field).
    pub fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// Threads the kernels split work over (rayon's pool, which burn's kernels share).
fn threads() -> usize {
    rayon::current_num_threads()
}

/// `dst[m, n] += lhs[m, k] · rhs[k, n]`, `lhs` and `rhs` contiguous row-major, `dst` with row
/// stride `dst_rs` and unit column stride.
///
/// # Safety
/// `dst` must cover `m` rows of `n` elements `dst_rs` apart; `lhs` and `rhs` must hold `m·k` and
/// `k·n` elements.
pub(crate) unsafe fn gemm_into(
    dst: *mut f32,
    dst_rs: isize,
    lhs: &[f32],
    rhs: &[f32],
    m: usize,
    n: usize,
    k: usize,
) {
    debug_assert!(lhs.len() >= m * k && rhs.len() >= k * n);
    // SAFETY: the caller's contract, in gemm's terms (column stride first).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs,
            true,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(threads()),
        );
    }
}
