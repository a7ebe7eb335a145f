//! The layers every model here is made of, built from checkpoint tensors.
//!
//! Each layer's `load` takes the [`Scope`] of the PyTorch module it replaces and the sizes the
//! config implies; the tensor names (`weight`, `bias`) are PyTorch's. Linear weights are stored
//! transposed (`[in, out]`) once at load time, the layout burn's `linear` wants.

use burn::module::{Module, Param};
use burn::tensor::module::{conv2d, layer_norm, linear};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, FloatDType, Tensor};

use crate::im2col;
use crate::weights::{Scope, WeightError};

/// `torch.nn.Linear`.
#[derive(Module, Debug)]
pub struct Linear {
    /// `[in, out]` (PyTorch's weight transposed).
    pub weight: Param<Tensor<2>>,
    /// `[out]`.
    pub bias: Option<Param<Tensor<1>>>,
}

impl Linear {
    /// Loads `weight` (`[out, in]` in the checkpoint) and, if `bias`, `bias`.
    pub fn load(scope: &Scope, d_in: usize, d_out: usize, bias: bool) -> Result<Self, WeightError> {
        let weight = scope.host("weight", &[d_out, d_in])?.transpose_2d();
        let weight = Param::from_tensor(scope.upload(weight));
        let bias = if bias {
            Some(Param::from_tensor(scope.tensor("bias", [d_out])?))
        } else {
            None
        };
        Ok(Self { weight, bias })
    }

    /// Builds the layer from a `[in, out]` weight already on the device.
    pub fn from_parts(weight: Tensor<2>, bias: Option<Tensor<1>>) -> Self {
        Self {
            weight: Param::from_tensor(weight),
            bias: bias.map(Param::from_tensor),
        }
    }

    /// `x @ W + b` over the last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        #[cfg(feature = "flex")]
        if let Some(out) = self.forward_on_host(&x) {
            return out;
        }
        linear(x, self.weight.val(), self.bias.as_ref().map(Param::val))
    }

    /// The f32 CPU path: one GEMM on flex's memory; `None` on other backends.
    #[cfg(feature = "flex")]
    fn forward_on_host<const D: usize>(&self, x: &Tensor<D>) -> Option<Tensor<D>> {
        use crate::host::{self, HostF32};
        let input = HostF32::of(x)?;
        let weight = HostF32::of(&self.weight.val())?;
        let bias = match &self.bias {
            Some(bias) => Some(HostF32::of(&bias.val())?),
            None => None,
        };
        let (d_in, d_out) = (self.d_in(), self.d_out());
        let out = host::linear::linear(
            input.data(),
            weight.data(),
            bias.as_ref().map(HostF32::data),
            d_in,
            d_out,
        );
        let mut dims = x.dims();
        dims[D - 1] = d_out;
        Some(host::tensor(out, dims))
    }

    /// Adds a low-rank update to the weight: `W += scale · up · down` in PyTorch's `[out, in]`
    /// terms, with `down` `[rank, in]` and `up` `[out, rank]` (a LoRA fused into the layer).
    /// The sum is formed in f32 and stored back in the weight's own precision.
    pub fn fuse_low_rank(&mut self, down: Tensor<2>, up: Tensor<2>, scale: f32) {
        let weight = self.weight.val();
        let dtype = weight.dtype();
        let delta = down
            .cast(FloatDType::F32)
            .transpose()
            .matmul(up.cast(FloatDType::F32).transpose())
            * scale;
        let weight = (weight.cast(FloatDType::F32) + delta).cast(dtype);
        self.weight = Param::from_tensor(weight);
    }

    /// Input features.
    pub fn d_in(&self) -> usize {
        self.weight.shape()[0]
    }

    /// Output features.
    pub fn d_out(&self) -> usize {
        self.weight.shape()[1]
    }
}

/// `torch.nn.Conv2d` (square kernel, symmetric or explicit padding).
#[derive(Module, Debug)]
pub struct Conv2d {
    /// `[out, in / groups, k, k]`.
    pub weight: Param<Tensor<4>>,
    /// `[out]`.
    pub bias: Option<Param<Tensor<1>>>,
    /// Stride in both directions.
    pub stride: usize,
    /// Padding `(top, bottom, left, right)`.
    pub padding: [usize; 4],
}

impl Conv2d {
    /// Loads a conv with a `kernel`×`kernel` kernel, `padding` on every side, and a bias.
    pub fn load(
        scope: &Scope,
        d_in: usize,
        d_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self, WeightError> {
        Ok(Self {
            weight: Param::from_tensor(scope.tensor("weight", [d_out, d_in, kernel, kernel])?),
            bias: Some(Param::from_tensor(scope.tensor("bias", [d_out])?)),
            stride,
            padding: [padding; 4],
        })
    }

    /// Replaces the padding with an explicit `(top, bottom, left, right)`.
    pub fn with_padding(mut self, padding: [usize; 4]) -> Self {
        self.padding = padding;
        self
    }

    /// Applies the convolution to `[batch, channels, height, width]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        #[cfg(feature = "flex")]
        if let Some(out) = self.forward_on_host(&x) {
            return out;
        }
        let kernel = self.weight.dims()[2];
        if kernel > 1 && crate::device_lock::is_gpu(&x.device()) {
            let window = im2col::Window {
                stride: self.stride,
                padding: self.padding,
            };
            return im2col::conv2d(
                x,
                self.weight.val(),
                self.bias.as_ref().map(Param::val),
                window,
                im2col::UNFOLD_BUDGET,
            );
        }
        let [top, bottom, left, right] = self.padding;
        let options = ConvOptions {
            stride: [self.stride; 2],
            padding: [(top, bottom), (left, right)],
            dilation: [1, 1],
            groups: 1,
        };
        conv2d(
            x,
            self.weight.val(),
            self.bias.as_ref().map(Param::val),
            options,
        )
    }

    /// The f32 CPU path: [`crate::host::conv`] on flex's memory; `None` on other backends.
    #[cfg(feature = "flex")]
    fn forward_on_host(&self, x: &Tensor<4>) -> Option<Tensor<4>> {
        use crate::host::{self, HostF32, conv};
        let input = HostF32::of(x)?;
        let weight = HostF32::of(&self.weight.val())?;
        let bias = match &self.bias {
            Some(bias) => Some(HostF32::of(&bias.val())?),
            None => None,
        };
        let [batch, c_in, height, width] = x.dims();
        let [c_out, _, kernel, _] = self.weight.dims();
        let shape = conv::ConvShape {
            batch,
            c_in,
            height,
            width,
            c_out,
            kernel,
            stride: self.stride,
            padding: self.padding,
        };
        let out = conv::conv2d(
            input.data(),
            weight.data(),
            bias.as_ref().map(HostF32::data),
            shape,
        );
        Some(host::tensor(
            out,
            [batch, c_out, shape.out_height(), shape.out_width()],
        ))
    }
}

/// `torch.nn.GroupNorm` with affine parameters.
#[derive(Module, Debug)]
pub struct GroupNorm {
    /// `[channels]`.
    pub weight: Param<Tensor<1>>,
    /// `[channels]`.
    pub bias: Param<Tensor<1>>,
    /// Number of groups.
    pub groups: usize,
    /// Added to the variance.
    pub eps: f64,
}

impl GroupNorm {
    /// Loads `weight` and `bias` for `channels` channels.
    pub fn load(
        scope: &Scope,
        groups: usize,
        channels: usize,
        eps: f64,
    ) -> Result<Self, WeightError> {
        Ok(Self {
            weight: Param::from_tensor(scope.tensor("weight", [channels])?),
            bias: Param::from_tensor(scope.tensor("bias", [channels])?),
            groups,
            eps,
        })
    }

    /// Normalises `[batch, channels, ...]` per group (biased variance, as PyTorch).
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.forward_then(x, false)
    }

    /// `silu(self.forward(x))`, in one pass on the CPU backend.
    pub fn forward_silu<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.forward_then(x, true)
    }

    fn forward_then<const D: usize>(&self, x: Tensor<D>, with_silu: bool) -> Tensor<D> {
        #[cfg(feature = "flex")]
        if let Some(out) = self.forward_on_host(&x, with_silu) {
            return out;
        }
        // Half-precision inputs are normalised in f32, as PyTorch's kernels accumulate.
        let dtype = x.dtype();
        let x = x.cast(FloatDType::F32);
        let shape = x.dims();
        let [batch, channels] = [shape[0], shape[1]];
        let per_group = shape.iter().product::<usize>() / (batch * self.groups);
        let grouped = x.reshape([batch, self.groups, per_group]);
        let (var, mean) = grouped.clone().var_mean_bias(2);
        let normed = (grouped - mean) / (var + self.eps).sqrt();
        let mut affine_shape = [1usize; D];
        affine_shape[1] = channels;
        let out = normed.reshape(shape) * f32_of(&self.weight).reshape(affine_shape)
            + f32_of(&self.bias).reshape(affine_shape);
        let out = if with_silu {
            burn::tensor::activation::silu(out)
        } else {
            out
        };
        out.cast(dtype)
    }

    /// The f32 CPU path: [`crate::host::norm`] on flex's memory; `None` on other backends.
    #[cfg(feature = "flex")]
    fn forward_on_host<const D: usize>(&self, x: &Tensor<D>, with_silu: bool) -> Option<Tensor<D>> {
        use crate::host::{self, HostF32, norm};
        let input = HostF32::of(x)?;
        let weight = HostF32::of(&self.weight.val())?;
        let bias = HostF32::of(&self.bias.val())?;
        let dims = x.dims();
        let shape = norm::GroupNormShape {
            batch: dims[0],
            channels: dims[1],
            spatial: dims[2..].iter().product(),
            groups: self.groups,
        };
        let out = norm::group_norm(
            input.data(),
            weight.data(),
            bias.data(),
            shape,
            self.eps,
            with_silu,
        );
        Some(host::tensor(out, dims))
    }
}

/// `torch.nn.LayerNorm` over the last dimension, with affine parameters.
#[derive(Module, Debug)]
pub struct LayerNorm {
    /// `[dim]`.
    pub weight: Param<Tensor<1>>,
    /// `[dim]`.
    pub bias: Param<Tensor<1>>,
    /// Added to the variance.
    pub eps: f64,
}

impl LayerNorm {
    /// Loads `weight` and `bias` of size `dim`.
    pub fn load(scope: &Scope, dim: usize, eps: f64) -> Result<Self, WeightError> {
        Ok(Self {
            weight: Param::from_tensor(scope.tensor("weight", [dim])?),
            bias: Param::from_tensor(scope.tensor("bias", [dim])?),
            eps,
        })
    }

    /// Normalises over the last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        #[cfg(feature = "flex")]
        if let Some(out) = self.forward_on_host(&x) {
            return out;
        }
        if x.dtype() == DType::F32 {
            return layer_norm(x, self.weight.val(), Some(self.bias.val()), self.eps);
        }
        // Half-precision inputs are normalised in f32, as PyTorch's kernels accumulate.
        let dtype = x.dtype();
        let weight = f32_of(&self.weight);
        let bias = f32_of(&self.bias);
        layer_norm(x.cast(FloatDType::F32), weight, Some(bias), self.eps).cast(dtype)
    }

    /// The f32 CPU path: [`crate::host::linear::layer_norm`]; `None` on other backends.
    #[cfg(feature = "flex")]
    fn forward_on_host<const D: usize>(&self, x: &Tensor<D>) -> Option<Tensor<D>> {
        use crate::host::{self, HostF32};
        let input = HostF32::of(x)?;
        let weight = HostF32::of(&self.weight.val())?;
        let bias = HostF32::of(&self.bias.val())?;
        let out = host::linear::layer_norm(input.data(), weight.data(), bias.data(), self.eps);
        Some(host::tensor(out, x.dims()))
    }
}

/// A parameter's value in f32 (a no-op for f32 parameters).
fn f32_of<const D: usize>(param: &Param<Tensor<D>>) -> Tensor<D> {
    param.val().cast(FloatDType::F32)
}

/// diffusers' GEGLU gate after its projection: the last dimension `[hidden, gate]` (two equal
/// halves) becomes `hidden · gelu(gate)` (exact GELU).
pub fn geglu<const D: usize>(projected: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if let Some(input) = crate::host::HostF32::of(&projected) {
        let mut dims = projected.dims();
        dims[D - 1] /= 2;
        let out = crate::host::linear::geglu(input.data(), dims[D - 1]);
        return crate::host::tensor(out, dims);
    }
    let [hidden, gate]: [Tensor<D>; 2] = projected
        .chunk(2, D - 1)
        .try_into()
        .expect("an even split in two");
    hidden * burn::tensor::activation::gelu(gate)
}

/// The activation functions named in Hugging Face configs (`hidden_act`, `act_fn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x * sigmoid(x)`.
    Silu,
    /// Same as silu (`swish` in some configs).
    Swish,
    /// Exact GELU (erf).
    Gelu,
    /// `x * sigmoid(1.702 x)` (OpenAI CLIP).
    QuickGelu,
    /// Tanh-approximated GELU.
    #[serde(alias = "gelu_pytorch_tanh")]
    GeluNew,
    /// `max(x, 0)`.
    Relu,
}

impl Activation {
    /// Applies the activation.
    pub fn forward<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        use burn::tensor::activation as act;
        #[cfg(feature = "flex")]
        if let Some(out) = self.forward_on_host(&x) {
            return out;
        }
        match self {
            Self::Silu | Self::Swish => act::silu(x),
            Self::Gelu => act::gelu(x),
            Self::QuickGelu => x.clone() * act::sigmoid(x * 1.702),
            Self::GeluNew => act::gelu_approximate(x),
            Self::Relu => act::relu(x),
        }
    }

    /// The f32 CPU path for the smooth activations ([`crate::host::math`]); `None` on other
    /// backends and for ReLU and the tanh GELU, which burn's kernels do well.
    #[cfg(feature = "flex")]
    fn forward_on_host<const D: usize>(self, x: &Tensor<D>) -> Option<Tensor<D>> {
        use crate::host::{self, HostF32, math};
        let input = || HostF32::of(x);
        // One `map` per function, so that each is inlined into its vectorised loop.
        let out = match self {
            Self::Silu | Self::Swish => math::map(input()?.data(), math::silu),
            Self::Gelu => math::map(input()?.data(), math::gelu),
            Self::QuickGelu => math::map(input()?.data(), math::quick_gelu),
            Self::GeluNew | Self::Relu => return None,
        };
        Some(host::tensor(out, x.dims()))
    }
}
