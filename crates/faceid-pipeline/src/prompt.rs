//! The text side of a base model: prompts to the UNet's text tokens (and, for SDXL, the pooled
//! embedding of its added conditioning), as diffusers' `encode_prompt` does for
//! `StableDiffusionPipeline` and `StableDiffusionXLPipeline`.

use std::path::Path;

use burn::tensor::Tensor;
use faceid_clip::{ClipTextModel, ClipTokenizer};
use faceid_core::{ComponentMemory, Device, Precision, device_lock};

use crate::error::PipelineError;

/// What one prompt encodes to.
#[derive(Debug, Clone)]
pub struct PromptEmbeds {
    /// The UNet's text tokens `[1, 77, cross_attention_dim]` (`prompt_embeds`).
    pub tokens: Tensor<3>,
    /// SDXL's pooled embedding `[1, projection_dim]` (`pooled_prompt_embeds`); `None` for SD 1.x.
    pub pooled: Option<Tensor<2>>,
}

/// The tokenizers and text encoders of a base model.
#[derive(Debug)]
pub enum PromptEncoder {
    /// SD 1.x/2.x: one CLIP text encoder, conditioning on its `last_hidden_state`.
    Single {
        /// `tokenizer/`.
        tokenizer: ClipTokenizer,
        /// `text_encoder/` (`CLIPTextModel`).
        text_encoder: ClipTextModel,
    },
    /// SDXL: two encoders whose penultimate hidden states are concatenated (the first's first),
    /// and the second's projected pooled output.
    Dual {
        /// `tokenizer/` and `tokenizer_2/` (the second pads with its own pad token).
        tokenizers: [ClipTokenizer; 2],
        /// `text_encoder/` (`CLIPTextModel`) and `text_encoder_2/`
        /// (`CLIPTextModelWithProjection`).
        text_encoders: [ClipTextModel; 2],
        /// The pipeline's `force_zeros_for_empty_prompt`: without a negative prompt, the
        /// unconditional embeddings are zeros rather than the encoding of "".
        force_zeros_for_empty_prompt: bool,
    },
}

/// The hidden state SDXL conditions on: `hidden_states[-2]`.
const SDXL_SKIP: usize = 1;

impl PromptEncoder {
    /// Loads `tokenizer/` and `text_encoder/` of an SD 1.x/2.x folder.
    pub fn single_from_dir(
        dir: &Path,
        device: &Device,
        precision: Precision,
    ) -> Result<Self, PipelineError> {
        Ok(Self::Single {
            tokenizer: ClipTokenizer::from_dir(&dir.join("tokenizer"))?,
            text_encoder: ClipTextModel::from_dir_in(&dir.join("text_encoder"), device, precision)?,
        })
    }

    /// Loads both tokenizers and text encoders of an SDXL folder.
    pub fn dual_from_dir(
        dir: &Path,
        device: &Device,
        precision: Precision,
        force_zeros_for_empty_prompt: bool,
    ) -> Result<Self, PipelineError> {
        let second = ClipTextModel::from_dir_in(&dir.join("text_encoder_2"), device, precision)?;
        if !second.has_projection() {
            return Err(PipelineError::NotAModel {
                path: dir.join("text_encoder_2"),
                reason: "SDXL's second text encoder must be a CLIPTextModelWithProjection (no text_projection weight found)".into(),
            });
        }
        Ok(Self::Dual {
            tokenizers: [
                ClipTokenizer::from_dir(&dir.join("tokenizer"))?,
                ClipTokenizer::from_dir(&dir.join("tokenizer_2"))?,
            ],
            text_encoders: [
                ClipTextModel::from_dir_in(&dir.join("text_encoder"), device, precision)?,
                second,
            ],
            force_zeros_for_empty_prompt,
        })
    }

    /// Encodes a prompt; text beyond the encoders' 77 tokens is cut off (with a warning), as
    /// the reference does. On a GPU, one encoding at a time per device (see
    /// [`faceid_core::device_lock`]).
    pub fn encode(&self, prompt: &str) -> Result<PromptEmbeds, PipelineError> {
        device_lock::exclusive(&self.device(), || self.encode_text(prompt))
    }

    /// The device the text encoders run on.
    pub fn device(&self) -> Device {
        match self {
            Self::Single { text_encoder, .. } => text_encoder.device(),
            Self::Dual { text_encoders, .. } => text_encoders[0].device(),
        }
    }

    fn encode_text(&self, prompt: &str) -> Result<PromptEmbeds, PipelineError> {
        match self {
            Self::Single {
                tokenizer,
                text_encoder,
            } => {
                let ids = tokenize(tokenizer, prompt)?;
                Ok(PromptEmbeds {
                    tokens: text_encoder.encode(&[ids])?,
                    pooled: None,
                })
            }
            Self::Dual {
                tokenizers,
                text_encoders,
                ..
            } => {
                let mut states = Vec::with_capacity(2);
                let mut pooled = None;
                for (tokenizer, encoder) in tokenizers.iter().zip(text_encoders) {
                    let ids = tokenize(tokenizer, prompt)?;
                    let out = encoder.encode_hidden(&[ids], SDXL_SKIP)?;
                    states.push(out.hidden_states);
                    // The first encoder with a projection gives the pooled embedding, as in
                    // diffusers (SDXL's second; its first has none).
                    pooled = pooled.or(out.text_embeds);
                }
                Ok(PromptEmbeds {
                    tokens: Tensor::cat(states, 2),
                    pooled,
                })
            }
        }
    }

    /// Encodes the negative prompt: `None` is "" for SD 1.x, and zeros for SDXL models with
    /// `force_zeros_for_empty_prompt` (an empty string is encoded, as the reference does).
    pub fn encode_negative(&self, negative: Option<&str>) -> Result<PromptEmbeds, PipelineError> {
        match (self, negative) {
            (
                Self::Dual {
                    tokenizers,
                    text_encoders,
                    force_zeros_for_empty_prompt: true,
                },
                None,
            ) => {
                let [first, second] = text_encoders;
                let device = first.device();
                let width = first.hidden_size() + second.hidden_size();
                let len = tokenizers[0].max_length();
                Ok(PromptEmbeds {
                    tokens: Tensor::zeros([1, len, width], &device),
                    pooled: first
                        .projection_dim()
                        .or(second.projection_dim())
                        .map(|dim| Tensor::zeros([1, dim], &device)),
                })
            }
            (_, negative) => self.encode(negative.unwrap_or("")),
        }
    }

    /// The device memory of each text encoder.
    pub fn memory(&self) -> Vec<ComponentMemory> {
        match self {
            Self::Single { text_encoder, .. } => {
                vec![ComponentMemory::of("text_encoder", text_encoder)]
            }
            Self::Dual { text_encoders, .. } => vec![
                ComponentMemory::of("text_encoder", &text_encoders[0]),
                ComponentMemory::of("text_encoder_2", &text_encoders[1]),
            ],
        }
    }
}

fn tokenize(tokenizer: &ClipTokenizer, prompt: &str) -> Result<Vec<u32>, PipelineError> {
    let cut = tokenizer.truncated_tokens(prompt)?;
    if cut > 0 {
        tracing::warn!(
            tokens = cut,
            "the prompt is longer than the text encoder takes; its end is ignored"
        );
    }
    Ok(tokenizer.encode(prompt)?)
}
