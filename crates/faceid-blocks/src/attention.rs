//! Port of diffusers' `Attention` with the default `AttnProcessor2_0`
//! (models/attention_processor.py): multi-head scaled dot-product attention over the
//! projections `to_q`, `to_k`, `to_v` and `to_out.0`, run with burn's fused attention.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use faceid_core::nn::Linear;
use faceid_core::{Scope, WeightError};

/// The sizes of one attention layer.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    /// Width of the queries (and of the output).
    pub query_dim: usize,
    /// Width of the keys/values source (the text embedding for cross-attention).
    pub context_dim: usize,
    /// Number of heads.
    pub heads: usize,
    /// Width of each head.
    pub head_dim: usize,
    /// Whether `to_q`, `to_k`, `to_v` have biases (the VAE's do, the UNet's don't).
    pub qkv_bias: bool,
}

/// One attention layer.
#[derive(Module, Debug)]
pub struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
}

impl Attention {
    /// Loads `to_q`, `to_k`, `to_v` and `to_out.0`.
    pub fn load(scope: &Scope, shape: AttentionShape) -> Result<Self, WeightError> {
        let inner = shape.heads * shape.head_dim;
        Ok(Self {
            to_q: Linear::load(&scope.at("to_q"), shape.query_dim, inner, shape.qkv_bias)?,
            to_k: Linear::load(&scope.at("to_k"), shape.context_dim, inner, shape.qkv_bias)?,
            to_v: Linear::load(&scope.at("to_v"), shape.context_dim, inner, shape.qkv_bias)?,
            to_out: Linear::load(&scope.at("to_out.0"), inner, shape.query_dim, true)?,
            heads: shape.heads,
        })
    }

    /// Attends from `x` (`[batch, seq, query_dim]`) to `context` (`[batch, ctx, context_dim]`),
    /// or to `x` itself when `context` is `None`.
    pub fn forward(&self, x: Tensor<3>, context: Option<&Tensor<3>>) -> Tensor<3> {
        let context = context.cloned().unwrap_or_else(|| x.clone());
        let q = self.to_q.forward(x);
        let k = self.to_k.forward(context.clone());
        let v = self.to_v.forward(context);
        self.to_out.forward(self.attend(q, k, v))
    }

    /// Scaled dot-product attention of projected `[batch, seq, inner]` tensors, heads merged
    /// back into `[batch, seq, inner]` (before `to_out`).
    pub fn attend(&self, q: Tensor<3>, k: Tensor<3>, v: Tensor<3>) -> Tensor<3> {
        let [b, s, inner] = q.dims();
        let split = |t: Tensor<3>| {
            let [b, n, _] = t.dims();
            t.reshape([b, n, self.heads, inner / self.heads]).swap_dims(1, 2)
        };
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: false,
        };
        attention(split(q), split(k), split(v), None, None, options)
            .swap_dims(1, 2)
            .reshape([b, s, inner])
    }
}
