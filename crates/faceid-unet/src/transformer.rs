//! Ports of diffusers' `Transformer2DModel` (models/transformers/transformer_2d.py) and
//! `BasicTransformerBlock` / `FeedForward` / `GEGLU` (models/attention.py) as SD uses them:
//! self-attention, cross-attention to the text, GEGLU feed-forward, each pre-norm and residual.

use burn::module::Module;
use burn::tensor::Tensor;
use faceid_blocks::{Attention, AttentionShape};

use crate::Context;
use faceid_core::nn::{Conv2d, GroupNorm, LayerNorm, Linear, geglu};
use faceid_core::{Scope, WeightError};

/// Epsilon of the transformer's input GroupNorm (fixed in diffusers).
const TRANSFORMER_GROUP_NORM_EPS: f64 = 1e-6;
/// Epsilon of the transformer blocks' LayerNorms (diffusers' `norm_eps` default).
const BLOCK_LAYER_NORM_EPS: f64 = 1e-5;
/// Feed-forward width multiplier.
const FF_MULT: usize = 4;

/// The sizes of one `Transformer2DModel`.
#[derive(Debug, Clone, Copy)]
pub struct TransformerShape {
    /// Channels in and out (= heads × head_dim).
    pub channels: usize,
    /// Attention heads.
    pub heads: usize,
    /// Width of the text embedding.
    pub context_dim: usize,
    /// Number of transformer blocks.
    pub depth: usize,
    /// GroupNorm groups.
    pub groups: usize,
    /// Linear (SD 2) instead of 1×1 conv (SD 1) projections.
    pub linear_projection: bool,
}

/// The projection into or out of the token sequence.
#[derive(Module, Debug)]
enum Projection {
    Conv(Conv2d),
    Linear(Linear),
}

/// `Transformer2DModel` with continuous input.
#[derive(Module, Debug)]
pub struct Transformer2DModel {
    norm: GroupNorm,
    proj_in: Projection,
    transformer_blocks: Vec<BasicTransformerBlock>,
    proj_out: Projection,
}

impl Transformer2DModel {
    /// Loads `norm`, `proj_in`, `transformer_blocks.*` and `proj_out`.
    pub fn load(scope: &Scope, shape: TransformerShape) -> Result<Self, WeightError> {
        let c = shape.channels;
        let projection = |name: &str| -> Result<Projection, WeightError> {
            Ok(if shape.linear_projection {
                Projection::Linear(Linear::load(&scope.at(name), c, c, true)?)
            } else {
                Projection::Conv(Conv2d::load(&scope.at(name), c, c, 1, 1, 0)?)
            })
        };
        Ok(Self {
            norm: GroupNorm::load(
                &scope.at("norm"),
                shape.groups,
                c,
                TRANSFORMER_GROUP_NORM_EPS,
            )?,
            proj_in: projection("proj_in")?,
            transformer_blocks: (0..shape.depth)
                .map(|i| BasicTransformerBlock::load(&scope.at("transformer_blocks").at(i), shape))
                .collect::<Result<_, _>>()?,
            proj_out: projection("proj_out")?,
        })
    }

    /// Every attention layer with its path below this model (`transformer_blocks.K.attn1`, ...),
    /// self-attention before cross-attention in each block.
    pub fn attentions_mut<'a>(
        &'a mut self,
        prefix: &str,
        out: &mut Vec<(String, &'a mut Attention)>,
    ) {
        for (k, block) in self.transformer_blocks.iter_mut().enumerate() {
            out.push((
                format!("{prefix}.transformer_blocks.{k}.attn1"),
                &mut block.attn1,
            ));
            out.push((
                format!("{prefix}.transformer_blocks.{k}.attn2"),
                &mut block.attn2,
            ));
        }
    }

    /// `x`: `[batch, channels, h, w]`; `context`: the text tokens and optional image tokens.
    pub fn forward(&self, x: Tensor<4>, context: Context) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let residual = x.clone();
        let x = self.norm.forward(x);
        let to_tokens = |t: Tensor<4>| t.reshape([b, c, h * w]).swap_dims(1, 2);
        let mut tokens = match &self.proj_in {
            Projection::Conv(conv) => to_tokens(conv.forward(x)),
            Projection::Linear(linear) => linear.forward(to_tokens(x)),
        };
        for block in &self.transformer_blocks {
            tokens = block.forward(tokens, context);
        }
        let to_image = |t: Tensor<3>| t.swap_dims(1, 2).reshape([b, c, h, w]);
        let out = match &self.proj_out {
            Projection::Conv(conv) => conv.forward(to_image(tokens)),
            Projection::Linear(linear) => to_image(linear.forward(tokens)),
        };
        out + residual
    }
}

/// Self-attention, cross-attention, feed-forward.
#[derive(Module, Debug)]
pub struct BasicTransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff_proj: Linear,
    ff_out: Linear,
}

impl BasicTransformerBlock {
    fn load(scope: &Scope, shape: TransformerShape) -> Result<Self, WeightError> {
        let c = shape.channels;
        let attn = |context_dim| AttentionShape {
            query_dim: c,
            context_dim,
            heads: shape.heads,
            head_dim: c / shape.heads,
            qkv_bias: false,
        };
        let norm = |name: &str| LayerNorm::load(&scope.at(name), c, BLOCK_LAYER_NORM_EPS);
        Ok(Self {
            norm1: norm("norm1")?,
            attn1: Attention::load(&scope.at("attn1"), attn(c))?,
            norm2: norm("norm2")?,
            attn2: Attention::load(&scope.at("attn2"), attn(shape.context_dim))?,
            norm3: norm("norm3")?,
            ff_proj: Linear::load(&scope.at("ff.net.0.proj"), c, c * FF_MULT * 2, true)?,
            ff_out: Linear::load(&scope.at("ff.net.2"), c * FF_MULT, c, true)?,
        })
    }

    fn forward(&self, x: Tensor<3>, context: Context) -> Tensor<3> {
        let x = self.attn1.forward(self.norm1.forward(x.clone()), None) + x;
        let x = self.attn2.forward_with_image(
            self.norm2.forward(x.clone()),
            Some(context.text),
            context.image,
        ) + x;
        // GEGLU: the projection's first half gated by GELU of its second half.
        let projected = self.ff_proj.forward(self.norm3.forward(x.clone()));
        self.ff_out.forward(geglu(projected)) + x
    }
}
