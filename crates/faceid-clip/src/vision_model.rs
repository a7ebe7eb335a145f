//! Port of transformers' `CLIPVisionModelWithProjection` (models/clip/modeling_clip.py): patch
//! embedding (a strided convolution without bias), class token, position embeddings,
//! `pre_layrnorm`, pre-norm transformer layers with full self-attention, then `post_layernorm` of
//! the class token and `visual_projection`.
//!
//! IP-Adapter FaceID Plus conditions on `hidden_states[-2]`: the output of every encoder layer
//! but the last, before any final norm ([`ClipVisionModel::penultimate_hidden_state`]); the
//! layers after it are not run.

use std::path::Path;

use burn::module::{Module, Param};
use burn::tensor::{FloatDType, Tensor};
use faceid_core::nn::{Activation, Conv2d, LayerNorm, Linear};
use faceid_core::weights::ComponentFiles;
use faceid_core::{ConfigError, Device, Precision, WeightError, Weights};

use crate::encoder::{Encoder, EncoderSizes};

/// The fields of a `CLIPVisionConfig` (`image_encoder/config.json`) the model is built from.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ClipVisionConfig {
    /// Width of the transformer.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Side of the (square) input image in pixels (224).
    pub image_size: usize,
    /// Side of a patch in pixels (14 for ViT-H/14).
    pub patch_size: usize,
    /// Input channels (3).
    #[serde(default = "default_channels")]
    pub num_channels: usize,
    /// MLP activation (`gelu` for OpenCLIP's ViT-H, `quick_gelu` for OpenAI CLIP).
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Width of `image_embeds` (the output of `visual_projection`).
    pub projection_dim: usize,
}

fn default_channels() -> usize {
    3
}

fn default_eps() -> f64 {
    1e-5
}

impl ClipVisionConfig {
    /// Reads `config.json` and checks that the model can be built from it.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = faceid_core::config::read_json(path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// Rejects sizes the model cannot be built with, naming the field (`path` is the file they
    /// were read from, for the message).
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        use faceid_core::config::unsupported;
        let positive = [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_attention_heads", self.num_attention_heads),
            ("image_size", self.image_size),
            ("patch_size", self.patch_size),
            ("num_channels", self.num_channels),
            ("projection_dim", self.projection_dim),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(unsupported(path, field, value, "must be positive"));
            }
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(unsupported(
                path,
                "num_attention_heads",
                self.num_attention_heads,
                "must divide hidden_size",
            ));
        }
        if self.patch_size > self.image_size {
            return Err(unsupported(
                path,
                "patch_size",
                self.patch_size,
                "must not exceed image_size",
            ));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(unsupported(
                path,
                "layer_norm_eps",
                self.layer_norm_eps,
                "must be a positive number",
            ));
        }
        Ok(())
    }

    /// Patches along each side of the image (`image_size / patch_size`, rounded down as the
    /// strided convolution does).
    pub fn patches_per_side(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Tokens per image: one per patch plus the class token (257 for 224 / 14).
    pub fn num_positions(&self) -> usize {
        self.patches_per_side() * self.patches_per_side() + 1
    }
}

/// A vision encoder that cannot be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum VisionEncoderError {
    /// The config is unreadable or unsupported.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The weights do not match the config.
    #[error(transparent)]
    Weights(#[from] WeightError),
    /// The pixel values are not `[batch, num_channels, image_size, image_size]` with at least one
    /// image.
    #[error(
        "vision encoder input has shape {found:?}, the model takes [batch, {channels}, {size}, {size}]"
    )]
    InputShape {
        /// The shape given.
        found: Vec<usize>,
        /// The channels the model takes.
        channels: usize,
        /// The image side the model takes.
        size: usize,
    },
    /// More layers were asked for than the model has.
    #[error("hidden state after {requested} layers asked for, the model has {available}")]
    Layers {
        /// Layers asked for.
        requested: usize,
        /// Layers the model has.
        available: usize,
    },
}

/// `CLIPVisionModelWithProjection`: pixel values `[batch, 3, 224, 224]` to hidden states
/// `[batch, 257, hidden]` and image embeddings `[batch, projection_dim]`.
#[derive(Module, Debug)]
pub struct ClipVisionModel {
    patch_embedding: Conv2d,
    class_embedding: Param<Tensor<1>>,
    position_embedding: Param<Tensor<2>>,
    pre_layrnorm: LayerNorm,
    encoder: Encoder,
    post_layernorm: LayerNorm,
    visual_projection: Linear,
    #[module(skip)]
    image_size: usize,
}

impl ClipVisionModel {
    /// Loads a transformers `CLIPVisionModelWithProjection` folder (`image_encoder/`):
    /// `config.json` and `model.safetensors` (f32 or f16, or its `fp16` variant / shards), in
    /// f32.
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Self, VisionEncoderError> {
        Self::from_dir_in(dir, device, Precision::F32)
    }

    /// [`Self::from_dir`] with weights and activations in `precision`.
    pub fn from_dir_in(
        dir: &Path,
        device: &Device,
        precision: Precision,
    ) -> Result<Self, VisionEncoderError> {
        let config = ClipVisionConfig::from_file(&dir.join("config.json"))?;
        let files = ComponentFiles::find(dir, "model", None)?;
        let weights = Weights::from_safetensors(&files.files, device)?
            .allow_unused_suffixes(&["embeddings.position_ids"])
            .with_precision(precision);
        let model = Self::load(&weights, &config)?;
        weights.finish()?;
        Ok(model)
    }

    /// Builds the model from checkpoint tensors named as transformers saves them
    /// (`vision_model.embeddings.patch_embedding.weight`, ..., `visual_projection.weight`).
    /// The config is taken as valid (see [`ClipVisionConfig::validate`]).
    pub fn load(weights: &Weights, config: &ClipVisionConfig) -> Result<Self, WeightError> {
        let (h, c, p) = (config.hidden_size, config.num_channels, config.patch_size);
        let eps = config.layer_norm_eps;
        let root = weights.root().at("vision_model");
        let emb = root.at("embeddings");
        let sizes = EncoderSizes {
            hidden: h,
            intermediate: config.intermediate_size,
            layers: config.num_hidden_layers,
            heads: config.num_attention_heads,
            act: config.hidden_act,
            eps,
        };
        Ok(Self {
            patch_embedding: Conv2d {
                weight: Param::from_tensor(
                    emb.at("patch_embedding").tensor("weight", [h, c, p, p])?,
                ),
                bias: None,
                stride: p,
                padding: [0; 4],
            },
            class_embedding: Param::from_tensor(emb.tensor("class_embedding", [h])?),
            position_embedding: Param::from_tensor(
                emb.tensor("position_embedding.weight", [config.num_positions(), h])?,
            ),
            pre_layrnorm: LayerNorm::load(&root.at("pre_layrnorm"), h, eps)?,
            encoder: Encoder::load(&root.at("encoder"), sizes, false)?,
            post_layernorm: LayerNorm::load(&root.at("post_layernorm"), h, eps)?,
            visual_projection: Linear::load(
                &weights.root().at("visual_projection"),
                h,
                config.projection_dim,
                false,
            )?,
            image_size: config.image_size,
        })
    }

    /// The precision of the weights and activations.
    pub fn precision(&self) -> Precision {
        Precision::of(self.class_embedding.val().dtype()).unwrap_or(Precision::F32)
    }

    /// Width of the hidden states.
    pub fn hidden_size(&self) -> usize {
        self.class_embedding.shape()[0]
    }

    /// Number of encoder layers.
    pub fn num_layers(&self) -> usize {
        self.encoder.len()
    }

    /// Side of the square input image in pixels.
    pub fn image_size(&self) -> usize {
        self.image_size
    }

    /// Width of [`Self::image_embeds`].
    pub fn projection_dim(&self) -> usize {
        self.visual_projection.d_out()
    }

    /// transformers' `hidden_states[layers]`: the embeddings after `pre_layrnorm` (`layers` =
    /// 0) run through the first `layers` encoder layers, `[batch, tokens, hidden]` in f32. The
    /// remaining layers are not run.
    pub fn hidden_state(
        &self,
        pixel_values: Tensor<4>,
        layers: usize,
    ) -> Result<Tensor<3>, VisionEncoderError> {
        self.check_layers(layers)?;
        let x = self.embed(pixel_values)?;
        Ok(self.encoder.forward_layers(x, layers).cast(FloatDType::F32))
    }

    /// transformers' `hidden_states[-2]` (what IP-Adapter Plus reads): the output of all encoder
    /// layers but the last, `[batch, tokens, hidden]` in f32; the last layer is not run.
    pub fn penultimate_hidden_state(
        &self,
        pixel_values: Tensor<4>,
    ) -> Result<Tensor<3>, VisionEncoderError> {
        let layers = self
            .num_layers()
            .checked_sub(1)
            .ok_or(VisionEncoderError::Layers {
                requested: 0,
                available: 0,
            })?;
        self.hidden_state(pixel_values, layers)
    }

    /// transformers' `hidden_states` tuple, truncated after `layers` encoder layers: the
    /// embeddings after `pre_layrnorm`, then each layer's output (`layers + 1` tensors
    /// `[batch, tokens, hidden]` in f32).
    pub fn hidden_states(
        &self,
        pixel_values: Tensor<4>,
        layers: usize,
    ) -> Result<Vec<Tensor<3>>, VisionEncoderError> {
        self.check_layers(layers)?;
        let x = self.embed(pixel_values)?;
        Ok(self
            .encoder
            .collect_layers(x, layers)
            .into_iter()
            .map(|t| t.cast(FloatDType::F32))
            .collect())
    }

    /// `last_hidden_state`: the output of every encoder layer, `[batch, tokens, hidden]` in f32
    /// (no final norm, as in transformers).
    pub fn last_hidden_state(
        &self,
        pixel_values: Tensor<4>,
    ) -> Result<Tensor<3>, VisionEncoderError> {
        self.hidden_state(pixel_values, self.num_layers())
    }

    /// `image_embeds`: `visual_projection(post_layernorm(last_hidden_state[:, 0]))`,
    /// `[batch, projection_dim]` in f32.
    pub fn image_embeds(&self, pixel_values: Tensor<4>) -> Result<Tensor<2>, VisionEncoderError> {
        let x = self.embed(pixel_values)?;
        let x = self.encoder.forward_layers(x, self.num_layers());
        let [batch, _, hidden] = x.dims();
        let pooled = x.narrow(1, 0, 1).reshape([batch, hidden]);
        let pooled = self.post_layernorm.forward(pooled);
        Ok(self.visual_projection.forward(pooled).cast(FloatDType::F32))
    }

    fn check_layers(&self, layers: usize) -> Result<(), VisionEncoderError> {
        if layers > self.num_layers() {
            return Err(VisionEncoderError::Layers {
                requested: layers,
                available: self.num_layers(),
            });
        }
        Ok(())
    }

    /// `CLIPVisionEmbeddings` then `pre_layrnorm`: `[batch, tokens, hidden]` in the model's
    /// precision.
    fn embed(&self, pixel_values: Tensor<4>) -> Result<Tensor<3>, VisionEncoderError> {
        let [batch, channels, height, width] = pixel_values.dims();
        let [hidden, expected_channels, _, _] = self.patch_embedding.weight.dims();
        if batch == 0
            || channels != expected_channels
            || height != self.image_size
            || width != self.image_size
        {
            return Err(VisionEncoderError::InputShape {
                found: vec![batch, channels, height, width],
                channels: expected_channels,
                size: self.image_size,
            });
        }
        let dtype = self.precision().float_dtype();
        let patches = self.patch_embedding.forward(pixel_values.cast(dtype));
        let [_, _, rows, cols] = patches.dims();
        let patches = patches
            .reshape([batch, hidden, rows * cols])
            .swap_dims(1, 2);
        let class = self
            .class_embedding
            .val()
            .reshape([1, 1, hidden])
            .expand([batch, 1, hidden]);
        let x =
            Tensor::cat(vec![class, patches], 1) + self.position_embedding.val().unsqueeze::<3>();
        Ok(self.pre_layrnorm.forward(x))
    }
}
