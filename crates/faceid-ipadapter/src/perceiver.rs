//! tencent-ailab's `FacePerceiverResampler` (`ip_adapter/ip_adapter_faceid.py`, built from
//! `PerceiverAttention` and `FeedForward` of `ip_adapter/resampler.py`), the resampler of FaceID
//! Plus; diffusers runs the same computation as the blocks of
//! `IPAdapterFaceIDPlusImageProjection`.
//!
//! The latents (the identity's MLP tokens) attend to the projected CLIP features and to
//! themselves, `depth` times, each attention and feed-forward with a residual; then `proj_out`
//! and `norm_out`. Tensor names are the original checkpoint's, under
//! `image_proj.perceiver_resampler`.

use burn::module::Module;
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::{FloatDType, Tensor};
use faceid_core::nn::{LayerNorm, Linear};
use faceid_core::{Scope, WeightError};

/// Width of every attention head (`dim_head` in the original; the checkpoints do not store it).
pub const HEAD_DIM: usize = 64;
/// LayerNorm epsilon of every norm in the resampler (PyTorch's default).
const NORM_EPS: f64 = 1e-5;

/// The sizes of a resampler, as read from a checkpoint's tensor shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerceiverDims {
    /// Width of the CLIP features (`proj_in`'s input: 1280 for ViT-H/14).
    pub embedding_dim: usize,
    /// Width of the latents (the UNet's cross-attention width).
    pub dim: usize,
    /// `heads · 64` (`to_q`'s output).
    pub inner: usize,
    /// Hidden width of each feed-forward (`4 · dim`).
    pub ff_inner: usize,
    /// Number of [attention, feed-forward] layers (4).
    pub depth: usize,
}

impl PerceiverDims {
    /// Attention heads: `inner / 64`.
    pub fn heads(&self) -> usize {
        self.inner / HEAD_DIM
    }
}

/// `PerceiverAttention`: the latents attend to `[context; latents]`.
#[derive(Module, Debug)]
struct PerceiverAttention {
    norm1: LayerNorm,
    norm2: LayerNorm,
    to_q: Linear,
    to_kv: Linear,
    to_out: Linear,
    heads: usize,
}

impl PerceiverAttention {
    /// Loads `norm1`, `norm2`, `to_q`, `to_kv`, `to_out` under `scope` (`layers.{i}.0`).
    fn load(scope: &Scope, dims: PerceiverDims) -> Result<Self, WeightError> {
        let PerceiverDims { dim, inner, .. } = dims;
        Ok(Self {
            norm1: LayerNorm::load(&scope.at("norm1"), dim, NORM_EPS)?,
            norm2: LayerNorm::load(&scope.at("norm2"), dim, NORM_EPS)?,
            to_q: Linear::load(&scope.at("to_q"), dim, inner, false)?,
            to_kv: Linear::load(&scope.at("to_kv"), dim, 2 * inner, false)?,
            to_out: Linear::load(&scope.at("to_out"), inner, dim, false)?,
            heads: dims.heads(),
        })
    }

    /// `x` `[b, n1, dim]` (projected CLIP features), `latents` `[b, n2, dim]` → `[b, n2, dim]`
    /// (without the residual).
    fn forward(&self, x: Tensor<3>, latents: Tensor<3>) -> Tensor<3> {
        let x = self.norm1.forward(x);
        let latents = self.norm2.forward(latents);
        let [batch, queries, _] = latents.dims();
        let q = self.to_q.forward(latents.clone());
        let kv = self.to_kv.forward(Tensor::cat(vec![x, latents], 1));
        let inner = q.dims()[2];
        let k = kv.clone().narrow(2, 0, inner);
        let v = kv.narrow(2, inner, inner);
        let heads = self.heads;
        let split = |t: Tensor<3>| {
            let [b, n, _] = t.dims();
            t.reshape([b, n, heads, inner / heads]).swap_dims(1, 2)
        };
        // Both sides scaled by dim_head^-1/4, as the original (steadier in f16).
        let scale = 1.0 / ((inner / heads) as f64).sqrt().sqrt();
        let q = split(q) * scale;
        let k = split(k) * scale;
        let weight = q.matmul(k.swap_dims(2, 3));
        let dtype = weight.dtype();
        let weight = softmax(weight.cast(FloatDType::F32), 3).cast(dtype);
        let out = weight
            .matmul(split(v))
            .swap_dims(1, 2)
            .reshape([batch, queries, inner]);
        self.to_out.forward(out)
    }
}

/// `FeedForward`: LayerNorm, Linear (no bias), exact GELU, Linear (no bias); checkpoint indices
/// `0`, `1`, `3` of the `nn.Sequential`.
#[derive(Module, Debug)]
struct FeedForward {
    norm: LayerNorm,
    up: Linear,
    down: Linear,
}

impl FeedForward {
    /// Loads `0` (LayerNorm), `1` and `3` under `scope` (`layers.{i}.1`).
    fn load(scope: &Scope, dims: PerceiverDims) -> Result<Self, WeightError> {
        let PerceiverDims { dim, ff_inner, .. } = dims;
        Ok(Self {
            norm: LayerNorm::load(&scope.at(0), dim, NORM_EPS)?,
            up: Linear::load(&scope.at(1), dim, ff_inner, false)?,
            down: Linear::load(&scope.at(3), ff_inner, dim, false)?,
        })
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.down
            .forward(gelu(self.up.forward(self.norm.forward(x))))
    }
}

/// One `[PerceiverAttention, FeedForward]` pair of `layers`.
#[derive(Module, Debug)]
struct PerceiverLayer {
    attention: PerceiverAttention,
    feed_forward: FeedForward,
}

/// `FacePerceiverResampler`.
#[derive(Module, Debug)]
pub struct FacePerceiverResampler {
    proj_in: Linear,
    layers: Vec<PerceiverLayer>,
    proj_out: Linear,
    norm_out: LayerNorm,
    #[module(skip)]
    dims: PerceiverDims,
}

impl FacePerceiverResampler {
    /// Loads `proj_in`, `layers.{i}.{0,1}`, `proj_out` and `norm_out` under `scope`
    /// (`image_proj.perceiver_resampler`).
    pub fn load(scope: &Scope, dims: PerceiverDims) -> Result<Self, WeightError> {
        let PerceiverDims {
            embedding_dim, dim, ..
        } = dims;
        let layers = (0..dims.depth)
            .map(|i| {
                let layer = scope.at("layers").at(i);
                Ok(PerceiverLayer {
                    attention: PerceiverAttention::load(&layer.at(0), dims)?,
                    feed_forward: FeedForward::load(&layer.at(1), dims)?,
                })
            })
            .collect::<Result<Vec<_>, WeightError>>()?;
        Ok(Self {
            proj_in: Linear::load(&scope.at("proj_in"), embedding_dim, dim, true)?,
            layers,
            proj_out: Linear::load(&scope.at("proj_out"), dim, dim, true)?,
            norm_out: LayerNorm::load(&scope.at("norm_out"), dim, NORM_EPS)?,
            dims,
        })
    }

    /// `latents` `[b, tokens, dim]` and CLIP features `x` `[b, n, embedding_dim]` (in the
    /// resampler's precision) → `[b, tokens, dim]`.
    pub fn forward(&self, latents: Tensor<3>, x: Tensor<3>) -> Tensor<3> {
        let x = self.proj_in.forward(x);
        let mut latents = latents;
        for layer in &self.layers {
            latents = layer.attention.forward(x.clone(), latents.clone()) + latents;
            latents = layer.feed_forward.forward(latents.clone()) + latents;
        }
        self.norm_out.forward(self.proj_out.forward(latents))
    }

    /// The sizes it was loaded with.
    pub fn dims(&self) -> PerceiverDims {
        self.dims
    }
}
