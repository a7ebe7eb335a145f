//! Kernels that run on the CPU backend's own memory, for the operations the denoising loop
//! spends its time on and that burn's generic CPU kernels do slowly.
//!
//! [`HostF32`] borrows a contiguous f32 tensor on flex without copying it, and [`tensor`] wraps a
//! `Vec<f32>` back into a burn tensor without copying it; the kernels work on plain slices in
//! between. Every caller falls back to burn's kernel when [`HostF32::of`] returns `None` (another
//! backend, another dtype).

pub mod attention;
pub mod conv;
pub mod linear;
pub mod math;
pub mod norm;
pub mod winograd;

use std::mem::MaybeUninit;
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

/// A fresh output of `len` floats that `fill` writes through the pointer it is given, without
/// zeroing it first: zeroing is a serial pass over memory that the large outputs of every step
/// would otherwise pay before their kernel writes them.
///
/// # Safety
/// `fill` must write all `len` elements, and read none before writing it.
pub(crate) unsafe fn fresh(len: usize, fill: impl FnOnce(SharedMut)) -> Vec<f32> {
    let mut out = Vec::<f32>::with_capacity(len);
    fill(SharedMut(out.as_mut_ptr()));
    // SAFETY: all `len` elements were written (the caller's contract).
    unsafe { out.set_len(len) };
    out
}

/// [`fresh`] written in parallel: `fill(i, part)` writes part `i`, elements `i·chunk..` (the
/// last part shorter).
///
/// # Safety
/// `fill` must write every element of each part it is given.
pub(crate) unsafe fn par_fresh(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    use rayon::prelude::*;
    let mut out = Vec::<f32>::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, part)| fill(i, part));
    // SAFETY: every part was written in full (the caller's contract).
    unsafe { out.set_len(len) };
    out
}

/// Threads the kernels split work over (rayon's pool, which burn's kernels share).
fn threads() -> usize {
    rayon::current_num_threads()
}

/// At most this many rows, a GEMM is split by columns into one single-threaded GEMM per thread
/// (see [`gemm_into`]).
const FEW_ROWS: usize = 256;
/// Columns of a band are a multiple of this (the microkernels' width in f32).
const BAND_ALIGN: usize = 16;

/// `dst[m, n] += lhs[m, k] · rhs[k, n]` (or `=` without `accumulate`), `lhs` and `rhs` contiguous
/// row-major, `dst` with row stride `dst_rs` and unit column stride.
///
/// With few rows (the text encoder's 2 × 77 tokens, a cross-attention's keys) and wide `rhs` (a
/// layer's weights), the columns are split into one band per thread, each a single-threaded
/// GEMM: every thread packs only its own band of `rhs` and the threads meet once, where gemm's
/// own threading packs the whole of `rhs` in each and synchronises per block.
///
/// # Safety
/// `dst` must cover `m` rows of `n` elements `dst_rs` apart (initialised if `accumulate`); `lhs`
/// and `rhs` must hold `m·k` and `k·n` elements.
pub(crate) unsafe fn gemm_into(
    dst: *mut f32,
    dst_rs: isize,
    lhs: &[f32],
    rhs: &[f32],
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
) {
    debug_assert!(lhs.len() >= m * k && rhs.len() >= k * n);
    let threads = threads();
    let band = n.div_ceil(threads).next_multiple_of(BAND_ALIGN);
    if threads > 1 && m <= FEW_ROWS && band < n {
        use rayon::prelude::*;
        let dst = SharedMut(dst);
        (0..n.div_ceil(band)).into_par_iter().for_each(|i| {
            let (first, width) = (i * band, band.min(n - i * band));
            // SAFETY: the band is columns `first..first + width` of `dst` (no other task
            // writes them) times the same columns of `rhs`, whose rows stay `n` apart.
            unsafe {
                gemm_f32(
                    dst.at(first),
                    dst_rs,
                    Strided::rows(lhs, k),
                    Strided::rows(&rhs[first..], n),
                    (m, width, k),
                    (accumulate, 1.0),
                    gemm::Parallelism::None,
                )
            }
        });
        return;
    }
    // SAFETY: the caller's contract.
    unsafe {
        gemm_f32(
            dst,
            dst_rs,
            Strided::rows(lhs, k),
            Strided::rows(rhs, n),
            (m, n, k),
            (accumulate, 1.0),
            gemm::Parallelism::Rayon(threads),
        )
    }
}

/// A matrix operand of [`gemm_f32`]: its first element and the strides between its rows and
/// between its columns.
#[derive(Clone, Copy)]
pub(crate) struct Strided {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}

impl Strided {
    /// Rows of `data`, `row_stride` apart, columns contiguous.
    pub(crate) fn rows(data: &[f32], row_stride: usize) -> Self {
        Self {
            ptr: data.as_ptr(),
            rs: row_stride as isize,
            cs: 1,
        }
    }

    /// The transpose of [`Strided::rows`]: element `(i, j)` is `data[j·row_stride + i]`.
    pub(crate) fn transposed(data: &[f32], row_stride: usize) -> Self {
        Self {
            ptr: data.as_ptr(),
            rs: 1,
            cs: row_stride as isize,
        }
    }
}

/// `dst[m, n] = scale · lhs[m, k] · rhs[k, n]`, or `dst += …` with `accumulate`; `dst`'s rows
/// `dst_rs` apart, its columns contiguous.
///
/// # Safety
/// `dst` must cover `m` rows of `n` elements `dst_rs` apart, and `lhs` and `rhs` the `m × k` and
/// `k × n` elements their strides reach.
pub(crate) unsafe fn gemm_f32(
    dst: *mut f32,
    dst_rs: isize,
    lhs: Strided,
    rhs: Strided,
    (m, n, k): (usize, usize, usize),
    (accumulate, scale): (bool, f32),
    parallelism: gemm::Parallelism,
) {
    // SAFETY: the caller's contract, in gemm's terms (column stride first; `1.0` keeps what
    // `dst` holds when it is read).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs,
            accumulate,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}
