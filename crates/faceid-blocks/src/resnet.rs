//! Ports of diffusers' `ResnetBlock2D` (models/resnet.py), `Downsample2D`
//! (models/downsampling.py) and `Upsample2D` (models/upsampling.py).

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::silu;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use faceid_core::nn::{Conv2d, GroupNorm, Linear};
use faceid_core::{Scope, WeightError};

/// Two conv layers with group norm and SiLU, an optional timestep projection, and a residual
/// (through a 1×1 conv when the channel count changes).
#[derive(Module, Debug)]
pub struct ResnetBlock2D {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
}

impl ResnetBlock2D {
    /// Loads a block from `d_in` to `d_out` channels; `temb` is the width of the timestep
    /// embedding, or `None` for the VAE's blocks, which have none.
    pub fn load(
        scope: &Scope,
        d_in: usize,
        d_out: usize,
        temb: Option<usize>,
        groups: usize,
        eps: f64,
    ) -> Result<Self, WeightError> {
        Ok(Self {
            norm1: GroupNorm::load(&scope.at("norm1"), groups, d_in, eps)?,
            conv1: Conv2d::load(&scope.at("conv1"), d_in, d_out, 3, 1, 1)?,
            time_emb_proj: temb
                .map(|t| Linear::load(&scope.at("time_emb_proj"), t, d_out, true))
                .transpose()?,
            norm2: GroupNorm::load(&scope.at("norm2"), groups, d_out, eps)?,
            conv2: Conv2d::load(&scope.at("conv2"), d_out, d_out, 3, 1, 1)?,
            conv_shortcut: (d_in != d_out)
                .then(|| Conv2d::load(&scope.at("conv_shortcut"), d_in, d_out, 1, 1, 0))
                .transpose()?,
        })
    }

    /// `x`: `[batch, d_in, h, w]`; `temb`: the timestep embedding `[batch, temb]` (already the
    /// UNet's `emb`, SiLU is applied here as diffusers does).
    pub fn forward(&self, x: Tensor<4>, temb: Option<&Tensor<2>>) -> Tensor<4> {
        let mut h = self.conv1.forward(self.norm1.forward_silu(x.clone()));
        if let (Some(proj), Some(temb)) = (&self.time_emb_proj, temb) {
            let t = proj.forward(silu(temb.clone()));
            let [b, c] = t.dims();
            h = h + t.reshape([b, c, 1, 1]);
        }
        let h = self.conv2.forward(self.norm2.forward_silu(h));
        let shortcut = match &self.conv_shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        shortcut + h
    }
}

/// A stride-2 3×3 conv (`downsamplers.0.conv`). The VAE's has no padding of its own and pads
/// one pixel at the bottom and right instead.
#[derive(Module, Debug)]
pub struct Downsample2D {
    conv: Conv2d,
}

impl Downsample2D {
    /// Loads `conv` with `padding` on every side (the UNet's `downsample_padding`, 1), or the
    /// VAE's asymmetric `(0, 1)` padding when `padding` is 0.
    pub fn load(scope: &Scope, channels: usize, padding: usize) -> Result<Self, WeightError> {
        let conv = Conv2d::load(&scope.at("conv"), channels, channels, 3, 2, padding)?;
        let conv = if padding == 0 {
            conv.with_padding([0, 1, 0, 1])
        } else {
            conv
        };
        Ok(Self { conv })
    }

    /// Halves height and width.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.conv.forward(x)
    }
}

/// Nearest-neighbour upsampling followed by a 3×3 conv (`upsamplers.0.conv`).
#[derive(Module, Debug)]
pub struct Upsample2D {
    conv: Conv2d,
}

impl Upsample2D {
    /// Loads `conv`.
    pub fn load(scope: &Scope, channels: usize) -> Result<Self, WeightError> {
        Ok(Self {
            conv: Conv2d::load(&scope.at("conv"), channels, channels, 3, 1, 1)?,
        })
    }

    /// Upsamples to `size` (`[h, w]`; twice the input unless a skip connection needs
    /// another size), then convolves.
    pub fn forward(&self, x: Tensor<4>, size: Option<[usize; 2]>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let size = size.unwrap_or([h * 2, w * 2]);
        let options = InterpolateOptions::new(InterpolateMode::Nearest).with_output_size(size);
        self.conv.forward(interpolate(x, options))
    }
}
