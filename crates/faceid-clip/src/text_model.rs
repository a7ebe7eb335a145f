//! Port of transformers' `CLIPTextModel` and `CLIPTextModelWithProjection`
//! (models/clip/modeling_clip.py): token + position embeddings, pre-norm transformer layers with
//! causal self-attention, final layer norm, and (with projection) `text_projection` of the state
//! at the pooled position. Stable Diffusion 1.x conditions on `last_hidden_state`; SDXL on the
//! penultimate hidden state of two encoders and the second one's projected pooled output.

use std::path::Path;

use burn::module::{Module, Param};
use burn::tensor::module::embedding;
use burn::tensor::{FloatDType, Int, Tensor, TensorData};
use faceid_core::nn::{Activation, LayerNorm, Linear};
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
    /// Width of `text_embeds` (`CLIPTextModelWithProjection`).
    #[serde(default)]
    pub projection_dim: Option<usize>,
    /// The end-of-text id the pooled output is read at; `2` is transformers' legacy value, which
    /// pools at the highest id of each row instead (transformers' default: 49407).
    #[serde(default = "default_eos")]
    pub eos_token_id: Option<i64>,
}

fn default_eos() -> Option<i64> {
    Some(49407)
}

/// `eos_token_id` of configs written before transformers read it (SD 1.x, SDXL): pooling takes
/// the position of each row's highest id (`<|endoftext|>` has the highest id of CLIP's vocabulary).
const LEGACY_EOS: i64 = 2;

/// What [`ClipTextModel::encode_hidden`] returns.
#[derive(Debug, Clone)]
pub struct TextEncoding {
    /// The hidden states asked for, `[batch, seq, hidden]`, in f32.
    pub hidden_states: Tensor<3>,
    /// `CLIPTextModelWithProjection`'s `text_embeds` `[batch, projection_dim]` in f32 (`None`
    /// for a model without `text_projection`).
    pub text_embeds: Option<Tensor<2>>,
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
    text_projection: Option<Linear>,
    #[module(skip)]
    eos_token_id: Option<i64>,
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
        let prefixed = !weights.contains("embeddings.token_embedding.weight");
        let root = if prefixed {
            weights.root().at("text_model")
        } else {
            weights.root()
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
            // `CLIPTextModelWithProjection` keeps it beside `text_model`, not inside.
            text_projection: match config.projection_dim {
                Some(dim) if weights.contains("text_projection.weight") => Some(Linear::load(
                    &weights.root().at("text_projection"),
                    h,
                    dim,
                    false,
                )?),
                _ => None,
            },
            eos_token_id: config.eos_token_id,
        })
    }

    /// The precision of the weights and activations.
    pub fn precision(&self) -> Precision {
        Precision::of(self.token_embedding.val().dtype()).unwrap_or(Precision::F32)
    }

    /// Encodes token ids (`[batch][seq]`) to `last_hidden_state` `[batch, seq, hidden]`, in f32
    /// whatever the model's precision.
    pub fn encode(&self, ids: &[Vec<u32>]) -> Result<Tensor<3>, TextEncoderError> {
        Ok(self.forward(self.ids_tensor(ids)?))
    }

    /// Encodes token ids to transformers' `hidden_states[-1 - skip]` (`skip` 1: the penultimate
    /// state SDXL reads: all layers but the last, no final layer norm), with `text_embeds` when
    /// the model has a projection (which runs the remaining layers and the final norm).
    pub fn encode_hidden(
        &self,
        ids: &[Vec<u32>],
        skip: usize,
    ) -> Result<TextEncoding, TextEncoderError> {
        let tensor = self.ids_tensor(ids)?;
        let done = self.encoder.len().saturating_sub(skip);
        let hidden = self.encoder.forward_layers(self.embed(tensor), done);
        let text_embeds = match &self.text_projection {
            Some(projection) => {
                let last = self
                    .final_layer_norm
                    .forward(self.encoder.forward_rest(hidden.clone(), done));
                let rows = ids
                    .iter()
                    .enumerate()
                    .map(|(row, ids)| {
                        let at = self.pooled_position(ids);
                        last.clone()
                            .narrow(0, row, 1)
                            .narrow(1, at, 1)
                            .squeeze_dim::<2>(1)
                    })
                    .collect();
                Some(
                    projection
                        .forward(Tensor::cat(rows, 0))
                        .cast(FloatDType::F32),
                )
            }
            None => None,
        };
        Ok(TextEncoding {
            hidden_states: hidden.cast(FloatDType::F32),
            text_embeds,
        })
    }

    /// Where transformers reads the pooled output of a row: the highest id under the legacy
    /// `eos_token_id` (2), else the first `eos_token_id` (position 0 when there is none).
    fn pooled_position(&self, ids: &[u32]) -> usize {
        if self.eos_token_id == Some(LEGACY_EOS) {
            // torch's argmax: the first of equal maxima.
            let max = ids.iter().copied().max().unwrap_or(0);
            ids.iter().position(|&id| id == max).unwrap_or(0)
        } else {
            ids.iter()
                .position(|&id| Some(i64::from(id)) == self.eos_token_id)
                .unwrap_or(0)
        }
    }

    /// Whether the model has `text_projection` (`CLIPTextModelWithProjection`).
    pub fn has_projection(&self) -> bool {
        self.text_projection.is_some()
    }

    /// Width of `text_embeds` (`None` without `text_projection`).
    pub fn projection_dim(&self) -> Option<usize> {
        self.text_projection.as_ref().map(|p| p.weight.shape()[1])
    }

    /// The device the weights are on.
    pub fn device(&self) -> Device {
        self.token_embedding.device()
    }

    fn ids_tensor(&self, ids: &[Vec<u32>]) -> Result<Tensor<2, Int>, TextEncoderError> {
        let device = self.token_embedding.device();
        let batch = ids.len();
        let seq = ids.first().map_or(0, Vec::len);
        let max = self.position_embedding.shape()[0];
        if seq > max || ids.iter().any(|row| row.len() != seq) {
            return Err(TextEncoderError::TooLong { found: seq, max });
        }
        let flat: Vec<i64> = ids.iter().flatten().map(|&id| id as i64).collect();
        Ok(Tensor::<2, Int>::from_data(
            TensorData::new(flat, [batch, seq]),
            &device,
        ))
    }

    /// Token plus position embeddings of an id tensor `[batch, seq]`.
    fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [_, seq] = ids.dims();
        let positions = self
            .position_embedding
            .val()
            .narrow(0, 0, seq)
            .unsqueeze::<3>();
        embedding(self.token_embedding.val(), ids) + positions
    }

    /// The forward pass on an id tensor `[batch, seq]` to `last_hidden_state`, in f32.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let x = self
            .encoder
            .forward_layers(self.embed(ids), self.encoder.len());
        self.final_layer_norm.forward(x).cast(FloatDType::F32)
    }

    /// Width of the hidden states.
    pub fn hidden_size(&self) -> usize {
        self.token_embedding.shape()[1]
    }
}
