//! Convolutions with a `k`×`k` kernel as one matrix product on the GPU backends: the input is
//! unfolded into its `k²` shifted windows (`[batch, c_in·k², pixels]`, "im2col") and multiplied
//! by the weight seen as `[c_out, c_in·k²]`.
//!
//! Why not burn's `conv2d`: where the device compiles WGSL (no cooperative matrices), its
//! autotune has only a direct convolution for kernels above 1×1. On an H200 that ran SD 1.5's
//! 3×3 convolutions 15 to 20 times slower per FLOP than burn's 1×1 convolutions, which are
//! matrix products (90 ms for 1280→1280 channels at 32×32: 0.7 TFLOP/s), and it sums f16 in
//! f16, where matrix products sum in f32 as PyTorch's do. The unfolded input is `k²` times the
//! input; above [`UNFOLD_BUDGET`] bytes it is unfolded a band of output rows at a time.

use burn::tensor::ops::PadMode;
use burn::tensor::{Tensor, s};

use crate::bands::{GPU_BAND_BYTES, in_bands};

/// Bytes the unfolded input may take at once (one band of output rows).
pub const UNFOLD_BUDGET: usize = GPU_BAND_BYTES;

/// Where a convolution reads and writes: stride and `(top, bottom, left, right)` zero padding.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Stride in both directions.
    pub stride: usize,
    /// Zero padding `(top, bottom, left, right)`.
    pub padding: [usize; 4],
}

/// `torch.nn.functional.conv2d(x, weight, bias, stride, padding)` for `x` `[batch, c_in, h, w]`
/// and `weight` `[c_out, c_in, k, k]` (one group), unfolding at most `budget` bytes at once.
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    window: Window,
    budget: usize,
) -> Tensor<4> {
    let [batch, c_in, height, width] = x.dims();
    let [c_out, _, kernel, _] = weight.dims();
    let Window { stride, padding } = window;
    let [top, bottom, left, right] = padding;
    let out_height = (height + top + bottom - kernel) / stride + 1;
    let out_width = (width + left + right - kernel) / stride + 1;
    let x = x.pad([(top, bottom), (left, right)], PadMode::Constant(0.0));
    let weight = weight.reshape([1, c_out, c_in * kernel * kernel]);

    let row_bytes = batch * c_in * kernel * kernel * out_width * x.dtype().size();
    let out = in_bands(out_height, row_bytes, budget, 2, |band| {
        let rows = band.len();
        // The padded input rows this band's windows cover.
        let source = x.clone().slice(s![
            ..,
            ..,
            band.start * stride..(band.end - 1) * stride + kernel
        ]);
        let windows: Vec<Tensor<4>> = (0..kernel * kernel)
            .map(|offset| {
                let (dy, dx) = (offset / kernel, offset % kernel);
                source.clone().slice(s![
                    ..,
                    ..,
                    dy..dy + (rows - 1) * stride + 1;stride,
                    dx..dx + (out_width - 1) * stride + 1;stride
                ])
            })
            .collect();
        // `[batch, c_in, k², rows, out_width]`: the column order of the weight's rows.
        let columns = Tensor::stack::<5>(windows, 2).reshape([
            batch,
            c_in * kernel * kernel,
            rows * out_width,
        ]);
        weight
            .clone()
            .matmul(columns)
            .reshape([batch, c_out, rows, out_width])
    });
    match bias {
        Some(bias) => out + bias.reshape([1, c_out, 1, 1]),
        None => out,
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::module::conv2d as burn_conv2d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Device, Distribution};

    use super::*;

    fn devices() -> Vec<Device> {
        let mut devices = Vec::new();
        #[cfg(feature = "flex")]
        devices.push(Device::flex());
        #[cfg(feature = "wgpu")]
        devices.push(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice));
        devices
    }

    #[test]
    fn the_matrix_product_is_burns_convolution_in_bands_or_not() {
        // (c_in, c_out, kernel, stride, padding, height, width): the UNet's and the VAE's 3×3
        // convolutions, the VAE encoder's asymmetric stride-2 one, and a 1×1.
        let cases = [
            (5, 7, 3, 1, [1, 1, 1, 1], 9, 11),
            (4, 6, 3, 2, [0, 1, 0, 1], 10, 8),
            (3, 4, 3, 2, [1, 1, 1, 1], 7, 7),
            (6, 5, 1, 1, [0, 0, 0, 0], 5, 6),
        ];
        for device in devices() {
            for (c_in, c_out, kernel, stride, padding, height, width) in cases {
                let normal = Distribution::Normal(0.0, 1.0);
                let x = Tensor::<4>::random([2, c_in, height, width], normal, &device);
                let weight = Tensor::<4>::random([c_out, c_in, kernel, kernel], normal, &device);
                let bias = Tensor::<1>::random([c_out], normal, &device);
                let [top, bottom, left, right] = padding;
                let options = ConvOptions {
                    stride: [stride; 2],
                    padding: [(top, bottom), (left, right)],
                    dilation: [1, 1],
                    groups: 1,
                };
                let reference = burn_conv2d(x.clone(), weight.clone(), Some(bias.clone()), options);
                let window = Window { stride, padding };
                // Whole, then one output row per band.
                for budget in [UNFOLD_BUDGET, 1] {
                    let ours = conv2d(
                        x.clone(),
                        weight.clone(),
                        Some(bias.clone()),
                        window,
                        budget,
                    );
                    assert_eq!(ours.dims(), reference.dims());
                    let diff: f32 = (ours - reference.clone()).abs().max().into_scalar();
                    assert!(
                        diff < 1e-4,
                        "{device:?} {c_in}->{c_out} k{kernel} s{stride} {padding:?}, budget \
                         {budget}: max abs difference {diff}"
                    );
                }
            }
        }
    }
}
