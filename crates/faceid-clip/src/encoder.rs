//! Port of transformers' `CLIPEncoder` / `CLIPEncoderLayer` (models/clip/modeling_clip.py): the
//! pre-norm transformer layers shared by the text model (causal self-attention) and the vision
//! model (full self-attention), loaded from `encoder.layers.{i}`.

use burn::module::Module;
use burn::tensor::Tensor;
use faceid_core::attention::multi_head_attention;
use faceid_core::nn::{Activation, LayerNorm, Linear};
use faceid_core::{Scope, WeightError};

/// The sizes of a CLIP encoder, as both configs spell them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EncoderSizes {
    /// Width of the transformer (`hidden_size`).
    pub hidden: usize,
    /// Width of the MLP (`intermediate_size`).
    pub intermediate: usize,
    /// Number of layers (`num_hidden_layers`).
    pub layers: usize,
    /// Attention heads per layer (`num_attention_heads`).
    pub heads: usize,
    /// MLP activation (`hidden_act`).
    pub act: Activation,
    /// LayerNorm epsilon (`layer_norm_eps`).
    pub eps: f64,
}

/// `CLIPEncoder`: a stack of [`EncoderLayer`]s.
#[derive(Module, Debug)]
pub(crate) struct Encoder {
    layers: Vec<EncoderLayer>,
    #[module(skip)]
    heads: usize,
    #[module(skip)]
    act: Activation,
    #[module(skip)]
    causal: bool,
}

/// `CLIPEncoderLayer`: `x + attn(ln1(x))`, then `x + mlp(ln2(x))`.
#[derive(Module, Debug)]
struct EncoderLayer {
    layer_norm1: LayerNorm,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    layer_norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl Encoder {
    /// Loads `layers.{i}` of the `encoder` scope; `causal` masks attention to earlier positions
    /// (the text model) or not (the vision model).
    pub fn load(scope: &Scope, sizes: EncoderSizes, causal: bool) -> Result<Self, WeightError> {
        let layers = (0..sizes.layers)
            .map(|i| EncoderLayer::load(&scope.at("layers").at(i), sizes))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            layers,
            heads: sizes.heads,
            act: sizes.act,
            causal,
        })
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Runs the first `count` layers (all of them when `count` is at least [`Self::len`]).
    pub fn forward_layers(&self, mut x: Tensor<3>, count: usize) -> Tensor<3> {
        for layer in self.layers.iter().take(count) {
            x = layer.forward(x, self.heads, self.act, self.causal);
        }
        x
    }

    /// Runs the layers after the first `done` (the rest of [`Self::forward_layers`]).
    pub fn forward_rest(&self, mut x: Tensor<3>, done: usize) -> Tensor<3> {
        for layer in self.layers.iter().skip(done) {
            x = layer.forward(x, self.heads, self.act, self.causal);
        }
        x
    }

    /// Runs the first `count` layers and returns the input followed by each layer's output
    /// (transformers' `hidden_states` tuple, `count + 1` tensors).
    pub fn collect_layers(&self, mut x: Tensor<3>, count: usize) -> Vec<Tensor<3>> {
        let mut states = Vec::with_capacity(count.min(self.layers.len()) + 1);
        for layer in self.layers.iter().take(count) {
            states.push(x.clone());
            x = layer.forward(x, self.heads, self.act, self.causal);
        }
        states.push(x);
        states
    }
}

impl EncoderLayer {
    fn load(scope: &Scope, sizes: EncoderSizes) -> Result<Self, WeightError> {
        let (h, m, eps) = (sizes.hidden, sizes.intermediate, sizes.eps);
        let attn = scope.at("self_attn");
        let mlp = scope.at("mlp");
        Ok(Self {
            layer_norm1: LayerNorm::load(&scope.at("layer_norm1"), h, eps)?,
            q_proj: Linear::load(&attn.at("q_proj"), h, h, true)?,
            k_proj: Linear::load(&attn.at("k_proj"), h, h, true)?,
            v_proj: Linear::load(&attn.at("v_proj"), h, h, true)?,
            out_proj: Linear::load(&attn.at("out_proj"), h, h, true)?,
            layer_norm2: LayerNorm::load(&scope.at("layer_norm2"), h, eps)?,
            fc1: Linear::load(&mlp.at("fc1"), h, m, true)?,
            fc2: Linear::load(&mlp.at("fc2"), m, h, true)?,
        })
    }

    fn forward(&self, x: Tensor<3>, heads: usize, act: Activation, causal: bool) -> Tensor<3> {
        let normed = self.layer_norm1.forward(x.clone());
        let q = self.q_proj.forward(normed.clone());
        let k = self.k_proj.forward(normed.clone());
        let v = self.v_proj.forward(normed);
        let attended = multi_head_attention(q, k, v, heads, causal);
        let x = x + self.out_proj.forward(attended);
        let hidden = act.forward(self.fc1.forward(self.layer_norm2.forward(x.clone())));
        x + self.fc2.forward(hidden)
    }
}
