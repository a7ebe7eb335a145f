//! Port of transformers' `CLIPTextModel` (models/clip/modeling_clip.py): token + position
//! embeddings, pre-norm transformer layers with causal self-attention, final layer norm.
//! Stable Diffusion conditions on `last_hidden_state`.

use std::path::Path;

use burn::module::{Module, Param};
use burn::tensor::module::embedding;
use burn::tensor::{FloatDType, Int, Tensor, TensorData};
use faceid_core::nn::{Activation, LayerNorm};
use faceid_core::weights::ComponentFiles;
use faceid_core::{ConfigError, Device, Precision, WeightError, Weights};

use crate::encoder::{Encoder, EncoderSizes};

/// The fields of a `CLIPTextConfig` (`text_encoder/config.json`) the model is built from.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ClipTextConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the transformer.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Length of the position table (77).
    pub max_position_embeddings: usize,
    /// MLP activation (`quick_gelu` for OpenAI CLIP, `gelu` for OpenCLIP).
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
}

fn default_eps() -> f64 {
    1e-5
}

/// A text encoder that cannot be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum TextEncoderError {
    /// The config is unreadable or unsupported.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The weights do not match the config.
    #[error(transparent)]
    Weights(#[from] WeightError),
    /// An input has the wrong size.
    #[error("text encoder input has {found} tokens, the model takes at most {max}")]
    TooLong {
        /// Tokens given.
        found: usize,
        /// The position table's length.
        max: usize,
    },
}

/// `CLIPTextModel`: ids `[batch, seq]` to hidden states `[batch, seq, hidden]`.
#[derive(Module, Debug)]
pub struct ClipTextModel {
    token_embedding: Param<Tensor<2>>,
    position_embedding: Param<Tensor<2>>,
    encoder: Encoder,
    final_layer_norm: LayerNorm,
}

impl ClipTextModel {
    /// Loads `text_encoder/` of a diffusers folder: `config.json` and `model.safetensors`
    /// (or its `fp16` variant / shards), in f32.
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Self, TextEncoderError> {
        Self::from_dir_in(dir, device, Precision::F32)
    }

    /// [`Self::from_dir`] with weights and activations in `precision`.
    pub fn from_dir_in(
        dir: &Path,
        device: &Device,
        precision: Precision,
    ) -> Result<Self, TextEncoderError> {
        let config: ClipTextConfig = faceid_core::config::read_json(&dir.join("config.json"))?;
        let files = ComponentFiles::find(dir, "model", None)?;
        let weights = Weights::from_safetensors(&files.files, device)?
            .allow_unused_suffixes(&["embeddings.position_ids"])
            .with_precision(precision);
        let model = Self::load(&weights, &config)?;
        weights.finish()?;
        Ok(model)
    }

    /// Builds the model from checkpoint tensors named as transformers names them, with or without
    /// the `text_model.` prefix.
    pub fn load(weights: &Weights, config: &ClipTextConfig) -> Result<Self, WeightError> {
        let root = if weights.contains("embeddings.token_embedding.weight") {
            weights.root()
        } else {
            weights.root().at("text_model")
        };
        let h = config.hidden_size;
        let emb = root.at("embeddings");
        let sizes = EncoderSizes {
            hidden: h,
            intermediate: config.intermediate_size,
            layers: config.num_hidden_layers,
            heads: config.num_attention_heads,
            act: config.hidden_act,
            eps: config.layer_norm_eps,
        };
        Ok(Self {
            token_embedding: Param::from_tensor(
                emb.tensor("token_embedding.weight", [config.vocab_size, h])?,
            ),
            position_embedding: Param::from_tensor(emb.tensor(
                "position_embedding.weight",
                [config.max_position_embeddings, h],
            )?),
            encoder: Encoder::load(&root.at("encoder"), sizes, true)?,
            final_layer_norm: LayerNorm::load(
                &root.at("final_layer_norm"),
                h,
                config.layer_norm_eps,
            )?,
        })
    }

    /// The precision of the weights and activations.
    pub fn precision(&self) -> Precision {
        Precision::of(self.token_embedding.val().dtype()).unwrap_or(Precision::F32)
    }

    /// Encodes token ids (`[batch][seq]`) to `last_hidden_state` `[batch, seq, hidden]`, in f32
    /// whatever the model's precision.
    pub fn encode(&self, ids: &[Vec<u32>]) -> Result<Tensor<3>, TextEncoderError> {
        let device = self.token_embedding.device();
        let batch = ids.len();
        let seq = ids.first().map_or(0, Vec::len);
        let max = self.position_embedding.shape()[0];
        if seq > max || ids.iter().any(|row| row.len() != seq) {
            return Err(TextEncoderError::TooLong { found: seq, max });
        }
        let flat: Vec<i64> = ids.iter().flatten().map(|&id| id as i64).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(flat, [batch, seq]), &device);
        Ok(self.forward(ids))
    }

    /// The forward pass on an id tensor `[batch, seq]`; the hidden states come back in f32.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [_, seq] = ids.dims();
        let positions = self
            .position_embedding
            .val()
            .narrow(0, 0, seq)
            .unsqueeze::<3>();
        let x = embedding(self.token_embedding.val(), ids) + positions;
        let x = self.encoder.forward_layers(x, self.encoder.len());
        self.final_layer_norm.forward(x).cast(FloatDType::F32)
    }

    /// Width of the hidden states.
    pub fn hidden_size(&self) -> usize {
        self.token_embedding.shape()[1]
    }
}
