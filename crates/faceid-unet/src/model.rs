//! `UNet2DConditionModel`: timestep embedding, `conv_in`, down blocks, mid block, up blocks with
//! skip connections, `conv_norm_out` + SiLU + `conv_out`.

use std::path::Path;

use burn::module::Module;
use burn::tensor::activation::silu;
use burn::tensor::{Tensor, TensorData};
use faceid_core::nn::{Conv2d, GroupNorm, Linear};
use faceid_core::weights::ComponentFiles;
use faceid_core::{ConfigError, Device, Precision, WeightError, Weights};

use crate::Context;
use crate::blocks::{BlockShape, DownBlock, MidBlock, ResnetShape, UpBlock};
use crate::conditioning::Conditioning;
use crate::config::{TIME_IDS, UNetConfig};
use crate::transformer::TransformerShape;
use faceid_blocks::Attention;

/// Period of the sinusoidal timestep embedding.
const MAX_PERIOD: f64 = 10_000.0;

/// A UNet that cannot be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum UNetError {
    /// The config is unreadable or unsupported.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The weights do not match the config.
    #[error(transparent)]
    Weights(#[from] WeightError),
    /// An input has the wrong shape.
    #[error("UNet input `{input}` has shape {found:?}, expected {expected}")]
    Input {
        /// Which input.
        input: &'static str,
        /// Its shape.
        found: Vec<usize>,
        /// What the model takes.
        expected: String,
    },
}

/// diffusers' `TimestepEmbedding`: `linear_2(silu(linear_1(x)))`.
#[derive(Module, Debug)]
struct TimestepEmbedding {
    linear_1: Linear,
    linear_2: Linear,
}

impl TimestepEmbedding {
    fn load(
        scope: &faceid_core::weights::Scope<'_>,
        d_in: usize,
        d_out: usize,
    ) -> Result<Self, WeightError> {
        Ok(Self {
            linear_1: Linear::load(&scope.at("linear_1"), d_in, d_out, true)?,
            linear_2: Linear::load(&scope.at("linear_2"), d_out, d_out, true)?,
        })
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.linear_2.forward(silu(self.linear_1.forward(x)))
    }
}

/// The Stable Diffusion noise predictor.
#[derive(Module, Debug)]
pub struct UNet2DConditionModel {
    time_embedding: TimestepEmbedding,
    /// SDXL's `add_embedding` (`addition_embed_type = "text_time"`).
    add_embedding: Option<TimestepEmbedding>,
    conv_in: Conv2d,
    down_blocks: Vec<DownBlock>,
    mid_block: MidBlock,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    #[module(skip)]
    config: UNetConfig,
}

impl UNet2DConditionModel {
    /// Loads `unet/` of a diffusers folder: `config.json` and the safetensors weights
    /// (plain, `fp16` variant or sharded), in f32.
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Self, UNetError> {
        Self::from_dir_in(dir, device, Precision::F32)
    }

    /// [`Self::from_dir`] with weights and activations in `precision`.
    pub fn from_dir_in(
        dir: &Path,
        device: &Device,
        precision: Precision,
    ) -> Result<Self, UNetError> {
        let config = UNetConfig::from_file(&dir.join("config.json"))?;
        let files = ComponentFiles::find(dir, "diffusion_pytorch_model", None)?;
        let weights = Weights::from_safetensors(&files.files, device)?.with_precision(precision);
        let model = Self::load(&weights, config)?;
        weights.finish()?;
        Ok(model)
    }

    /// Builds the network described by `config` from `weights` (diffusers names).
    pub fn load(weights: &Weights, config: UNetConfig) -> Result<Self, WeightError> {
        let root = weights.root();
        let n = config.block_out_channels.len();
        let channels = &config.block_out_channels;
        let heads = config.heads();
        let layers = config.layers_per_block.expand(n);
        let depth = config.transformer_layers_per_block.expand(n);
        let context = config.cross_attention_dim.expand(n);
        let temb = config.time_embed_dim();
        let r = ResnetShape {
            temb,
            groups: config.norm_num_groups,
            eps: config.norm_eps,
        };
        let transformer = |i: usize| TransformerShape {
            channels: channels[i],
            heads: heads[i],
            context_dim: context[i],
            depth: depth[i],
            groups: config.norm_num_groups,
            linear_projection: config.use_linear_projection,
        };

        // Down path; `skips` follows the channel count of every skip connection it leaves.
        let mut skips = vec![channels[0]];
        let mut down_blocks = Vec::with_capacity(n);
        for (i, block_type) in config.down_block_types.iter().enumerate() {
            let shape = BlockShape {
                d_in: if i == 0 { channels[0] } else { channels[i - 1] },
                d_out: channels[i],
                layers: layers[i],
                attention: block_type.has_attention(),
                resample: i + 1 < n,
                transformer: transformer(i),
            };
            let scope = root.at("down_blocks").at(i);
            down_blocks.push(DownBlock::load(
                &scope,
                shape,
                r,
                config.downsample_padding,
            )?);
            skips.extend(std::iter::repeat_n(
                channels[i],
                layers[i] + usize::from(shape.resample),
            ));
        }
        let mid_block = MidBlock::load(
            &root.at("mid_block"),
            channels[n - 1],
            r,
            transformer(n - 1),
        )?;

        // Up path: block i mirrors down block n-1-i and has one more resnet.
        let mut up_blocks = Vec::with_capacity(n);
        let mut prev = channels[n - 1];
        for (i, block_type) in config.up_block_types.iter().enumerate() {
            let mirror = n - 1 - i;
            let count = layers[mirror] + 1;
            let shape = BlockShape {
                d_in: prev,
                d_out: channels[mirror],
                layers: count,
                attention: block_type.has_attention(),
                resample: i + 1 < n,
                transformer: transformer(mirror),
            };
            let taken: Vec<usize> = (0..count)
                .map(|_| skips.pop().expect("skip channels"))
                .collect();
            up_blocks.push(UpBlock::load(
                &root.at("up_blocks").at(i),
                shape,
                r,
                prev,
                &taken,
            )?);
            prev = channels[mirror];
        }

        let add_embedding = match config.text_time_shape() {
            Some(shape) => Some(TimestepEmbedding::load(
                &root.at("add_embedding"),
                shape.text_embeds_dim + TIME_IDS * shape.time_embed_dim,
                temb,
            )?),
            None => None,
        };
        Ok(Self {
            time_embedding: TimestepEmbedding::load(&root.at("time_embedding"), channels[0], temb)?,
            add_embedding,
            conv_in: Conv2d::load(
                &root.at("conv_in"),
                config.in_channels,
                channels[0],
                3,
                1,
                1,
            )?,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: GroupNorm::load(
                &root.at("conv_norm_out"),
                config.norm_num_groups,
                channels[0],
                config.norm_eps,
            )?,
            conv_out: Conv2d::load(
                &root.at("conv_out"),
                channels[0],
                config.out_channels,
                3,
                1,
                1,
            )?,
            config,
        })
    }

    /// The config the model was built from.
    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// Every attention layer with its module path, in the order of diffusers'
    /// `unet.attn_processors`: down blocks, then up blocks, then the mid block; `attn1` before
    /// `attn2` in each transformer block. IP-Adapter checkpoints number their layers this way.
    pub fn attentions_mut(&mut self) -> Vec<(String, &mut Attention)> {
        let mut out = Vec::new();
        for (i, block) in self.down_blocks.iter_mut().enumerate() {
            block.attentions_mut(&format!("down_blocks.{i}"), &mut out);
        }
        for (i, block) in self.up_blocks.iter_mut().enumerate() {
            block.attentions_mut(&format!("up_blocks.{i}"), &mut out);
        }
        self.mid_block.attentions_mut("mid_block", &mut out);
        out
    }

    /// The precision of the weights and activations.
    pub fn precision(&self) -> Precision {
        Precision::of(self.conv_in.weight.val().dtype()).unwrap_or(Precision::F32)
    }

    /// Predicts the noise (or v) of `sample` (`[batch, in_channels, h, w]`) at `timestep`,
    /// conditioned on `conditioning` (text tokens `[batch, tokens, cross_attention_dim]`, and
    /// IP-Adapter image tokens for the attention layers that have an image branch installed).
    /// The inputs are converted to the model's precision; the prediction comes back in
    /// `sample`'s.
    pub fn forward(
        &self,
        sample: Tensor<4>,
        timestep: f32,
        conditioning: &Conditioning,
    ) -> Result<Tensor<4>, UNetError> {
        let [batch, channels, h, w] = sample.dims();
        if channels != self.config.in_channels || h == 0 || w == 0 {
            return Err(UNetError::Input {
                input: "sample",
                found: sample.dims().to_vec(),
                expected: format!("[batch, {}, height, width]", self.config.in_channels),
            });
        }
        let context_dim = self.config.cross_attention_dim.expand(1)[0];
        let [cb, _, cd] = conditioning.text.dims();
        if cb != batch || cd != context_dim {
            return Err(UNetError::Input {
                input: "encoder_hidden_states",
                found: conditioning.text.dims().to_vec(),
                expected: format!("[{batch}, tokens, {context_dim}]"),
            });
        }
        if let Some(tokens) = &conditioning.image {
            if tokens.dims()[0] != batch {
                return Err(UNetError::Input {
                    input: "image_tokens",
                    found: tokens.dims().to_vec(),
                    expected: format!("[{batch}, tokens, dim]"),
                });
            }
        }
        let shape = self.config.text_time_shape();
        match (&conditioning.text_time, shape) {
            (None, None) => {}
            (Some(added), None) => {
                return Err(UNetError::Input {
                    input: "added_cond_kwargs",
                    found: added.text_embeds.dims().to_vec(),
                    expected: "none: this UNet's config has no `addition_embed_type`".into(),
                });
            }
            (None, Some(_)) => {
                return Err(UNetError::Input {
                    input: "added_cond_kwargs",
                    found: Vec::new(),
                    expected: "text_embeds and time_ids: this UNet's config has `addition_embed_type` \"text_time\"".into(),
                });
            }
            (Some(added), Some(shape)) => {
                if added.text_embeds.dims() != [batch, shape.text_embeds_dim] {
                    return Err(UNetError::Input {
                        input: "text_embeds",
                        found: added.text_embeds.dims().to_vec(),
                        expected: format!("[{batch}, {}]", shape.text_embeds_dim),
                    });
                }
                if added.time_ids.len() != batch {
                    return Err(UNetError::Input {
                        input: "time_ids",
                        found: vec![added.time_ids.len(), TIME_IDS],
                        expected: format!("[{batch}, {TIME_IDS}]"),
                    });
                }
            }
        }
        let device = sample.device();
        let (out_dtype, dtype) = (sample.dtype(), self.precision().dtype());
        let sample = sample.cast(dtype);
        let context = &conditioning.text.clone().cast(dtype);
        let image = conditioning.image.clone().map(|tokens| tokens.cast(dtype));
        let image = image.as_ref();
        // Built in f32 like torch's, then converted as diffusers does (`t_emb.to(sample.dtype)`).
        let dim = self.config.block_out_channels[0];
        let t_emb = self
            .sinusoidal(&vec![timestep; batch], dim, &device)
            .cast(dtype);
        let mut temb = self.time_embedding.forward(t_emb);
        if let (Some(add_embedding), Some(added), Some(shape)) =
            (&self.add_embedding, &conditioning.text_time, shape)
        {
            // diffusers' `get_aug_embed`: every time id embedded on its own (in f32), the six
            // embeddings of a sample side by side after the pooled text embedding.
            let ids: Vec<f32> = added.time_ids.iter().flatten().copied().collect();
            let time_embeds = self
                .sinusoidal(&ids, shape.time_embed_dim, &device)
                .reshape([batch, TIME_IDS * shape.time_embed_dim]);
            let add = Tensor::cat(vec![added.text_embeds.clone(), time_embeds], 1).cast(dtype);
            temb = temb + add_embedding.forward(add);
        }

        let context = Context {
            text: context,
            image,
        };
        let mut x = self.conv_in.forward(sample);
        let mut skips = vec![x.clone()];
        for block in &self.down_blocks {
            x = block.forward(x, &temb, context, &mut skips);
        }
        x = self.mid_block.forward(x, &temb, context);
        for block in &self.up_blocks {
            let next = skips.len().checked_sub(block.layers() + 1).map(|i| {
                let [_, _, h, w] = skips[i].dims();
                [h, w]
            });
            x = block.forward(x, &temb, context, &mut skips, next);
        }
        let out = self.conv_out.forward(self.conv_norm_out.forward_silu(x));
        Ok(out.cast(out_dtype))
    }

    /// diffusers' `get_timestep_embedding` of each value, in f32 like torch: `[values, dim]`.
    fn sinusoidal(&self, values: &[f32], dim: usize, device: &Device) -> Tensor<2> {
        let half = dim / 2;
        let log_period = -(MAX_PERIOD.ln() as f32);
        let denominator = (half as f64 - self.config.freq_shift) as f32;
        let frequencies: Vec<f32> = (0..half)
            .map(|i| ((log_period * i as f32) / denominator).exp())
            .collect();
        let mut data = Vec::with_capacity(values.len() * dim);
        for &value in values {
            let (sin, cos): (Vec<f32>, Vec<f32>) = frequencies
                .iter()
                .map(|f| {
                    let a = value * f;
                    (a.sin(), a.cos())
                })
                .unzip();
            let start = data.len();
            if self.config.flip_sin_to_cos {
                data.extend(cos.into_iter().chain(sin));
            } else {
                data.extend(sin.into_iter().chain(cos));
            }
            data.resize(start + dim, 0.0); // odd widths are zero-padded, as diffusers does
        }
        Tensor::from_data(TensorData::new(data, [values.len(), dim]), device)
    }
}
