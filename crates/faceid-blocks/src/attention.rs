//! Port of diffusers' `Attention` (models/attention_processor.py): multi-head scaled dot-product
//! attention over the projections `to_q`, `to_k`, `to_v` and `to_out.0`, run with
//! [`multi_head_attention`]. The default processor is `AttnProcessor2_0`; an IP-Adapter processor
//! (`IPAdapterAttnProcessor2_0`: decoupled cross-attention to image tokens through `to_k_ip` /
//! `to_v_ip`) can be installed on a loaded layer, and LoRA updates can be fused into its weights.

use burn::module::Module;
use burn::tensor::Tensor;
use faceid_core::attention::multi_head_attention;
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

/// The projections of an attention layer a LoRA can adapt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    /// `to_q`.
    Q,
    /// `to_k`.
    K,
    /// `to_v`.
    V,
    /// `to_out.0`.
    Out,
}

/// The image branch of IP-Adapter's decoupled cross-attention.
#[derive(Module, Debug)]
pub struct IpAttention {
    to_k_ip: Linear,
    to_v_ip: Linear,
    scale: f32,
}

impl IpAttention {
    /// From `to_k_ip` / `to_v_ip` (`[image_dim → inner]`, no bias) and the IP scale.
    pub fn new(to_k_ip: Linear, to_v_ip: Linear, scale: f32) -> Self {
        Self {
            to_k_ip,
            to_v_ip,
            scale,
        }
    }
}

/// One attention layer.
#[derive(Module, Debug)]
pub struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
    ip: Option<IpAttention>,
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
            ip: None,
        })
    }

    /// Installs IP-Adapter's image branch (replacing any previous one).
    pub fn set_ip_adapter(&mut self, ip: IpAttention) {
        self.ip = Some(ip);
    }

    /// Changes the weight of the image branch (0 turns it off).
    pub fn set_ip_scale(&mut self, scale: f32) {
        if let Some(ip) = &mut self.ip {
            ip.scale = scale;
        }
    }

    /// Whether an IP-Adapter image branch is installed.
    pub fn has_ip_adapter(&self) -> bool {
        self.ip.is_some()
    }

    /// `(inner, query_dim, context_dim)`: the widths LoRA and IP-Adapter weights must match.
    pub fn dims(&self) -> (usize, usize, usize) {
        (self.to_q.d_out(), self.to_q.d_in(), self.to_k.d_in())
    }

    /// The layer a projection names.
    pub fn projection_mut(&mut self, projection: Projection) -> &mut Linear {
        match projection {
            Projection::Q => &mut self.to_q,
            Projection::K => &mut self.to_k,
            Projection::V => &mut self.to_v,
            Projection::Out => &mut self.to_out,
        }
    }

    /// Attends from `x` (`[batch, seq, query_dim]`) to `context` (`[batch, ctx, context_dim]`),
    /// or to `x` itself when `context` is `None`.
    pub fn forward(&self, x: Tensor<3>, context: Option<&Tensor<3>>) -> Tensor<3> {
        self.forward_with_image(x, context, None)
    }

    /// Like [`Attention::forward`], plus, when an IP-Adapter branch is installed and
    /// `image_tokens` (`[batch, tokens, image_dim]`) are given, `scale ·` attention from the same
    /// queries to the image tokens, added before `to_out`.
    pub fn forward_with_image(
        &self,
        x: Tensor<3>,
        context: Option<&Tensor<3>>,
        image_tokens: Option<&Tensor<3>>,
    ) -> Tensor<3> {
        let context = context.cloned().unwrap_or_else(|| x.clone());
        let q = self.to_q.forward(x);
        let k = self.to_k.forward(context.clone());
        let v = self.to_v.forward(context);
        let mut attended = self.attend(q.clone(), k, v);
        if let (Some(ip), Some(tokens)) = (&self.ip, image_tokens) {
            if ip.scale != 0.0 {
                let k_ip = ip.to_k_ip.forward(tokens.clone());
                let v_ip = ip.to_v_ip.forward(tokens.clone());
                attended = attended + self.attend(q, k_ip, v_ip) * ip.scale;
            }
        }
        self.to_out.forward(attended)
    }

    /// Scaled dot-product attention of projected `[batch, seq, inner]` tensors, heads merged
    /// back into `[batch, seq, inner]` (before `to_out`).
    pub fn attend(&self, q: Tensor<3>, k: Tensor<3>, v: Tensor<3>) -> Tensor<3> {
        multi_head_attention(q, k, v, self.heads, false)
    }
}
