//! The encoder, decoder and their shared mid block.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{DType, Tensor};
use faceid_blocks::{Attention, AttentionShape, Downsample2D, ResnetBlock2D, Upsample2D};
use faceid_core::nn::{Conv2d, GroupNorm};
use faceid_core::weights::ComponentFiles;
use faceid_core::{ConfigError, Device, Scope, WeightError, Weights};

use crate::config::VaeConfig;

/// Epsilon of every GroupNorm in the VAE (fixed in diffusers).
const VAE_NORM_EPS: f64 = 1e-6;
/// diffusers clamps the posterior's log-variance to this range.
const LOGVAR_RANGE: (f64, f64) = (-30.0, 20.0);

/// A VAE that cannot be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum VaeError {
    /// The config is unreadable or unsupported.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The weights do not match the config.
    #[error(transparent)]
    Weights(#[from] WeightError),
    /// An input has the wrong shape.
    #[error("VAE input `{input}` has shape {found:?}, expected {expected}")]
    Input {
        /// Which input.
        input: &'static str,
        /// Its shape.
        found: Vec<usize>,
        /// What the model takes.
        expected: String,
    },
}

/// The posterior over latents the encoder returns.
#[derive(Debug, Clone)]
pub struct LatentDistribution {
    /// `[batch, latent, h, w]`.
    pub mean: Tensor<4>,
    /// Clamped log-variance, same shape.
    pub logvar: Tensor<4>,
}

/// Self-attention over pixels with a GroupNorm in front and a residual around it.
#[derive(Module, Debug)]
struct SpatialAttention {
    group_norm: GroupNorm,
    attention: Attention,
}

impl SpatialAttention {
    fn load(scope: &Scope, channels: usize, groups: usize) -> Result<Self, WeightError> {
        let shape = AttentionShape {
            query_dim: channels,
            context_dim: channels,
            heads: 1,
            head_dim: channels,
            qkv_bias: true,
        };
        Ok(Self {
            group_norm: GroupNorm::load(&scope.at("group_norm"), groups, channels, VAE_NORM_EPS)?,
            attention: Attention::load(scope, shape)?,
        })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let tokens = self
            .group_norm
            .forward(x.clone())
            .reshape([b, c, h * w])
            .swap_dims(1, 2);
        let out = self.attention.forward(tokens, None);
        out.swap_dims(1, 2).reshape([b, c, h, w]) + x
    }
}

/// `UNetMidBlock2D` without timestep: resnet, (attention), resnet.
#[derive(Module, Debug)]
struct MidBlock {
    resnets: Vec<ResnetBlock2D>,
    attention: Option<SpatialAttention>,
}

impl MidBlock {
    fn load(scope: &Scope, channels: usize, config: &VaeConfig) -> Result<Self, WeightError> {
        let groups = config.norm_num_groups;
        Ok(Self {
            resnets: (0..2)
                .map(|i| {
                    ResnetBlock2D::load(
                        &scope.at("resnets").at(i),
                        channels,
                        channels,
                        None,
                        groups,
                        VAE_NORM_EPS,
                    )
                })
                .collect::<Result<_, _>>()?,
            attention: config
                .mid_block_add_attention
                .then(|| SpatialAttention::load(&scope.at("attentions.0"), channels, groups))
                .transpose()?,
        })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.resnets[0].forward(x, None);
        if let Some(attention) = &self.attention {
            x = attention.forward(x);
        }
        self.resnets[1].forward(x, None)
    }
}

/// Resnets followed by an optional resampler (encoder: down, decoder: up).
#[derive(Module, Debug)]
struct Stage {
    resnets: Vec<ResnetBlock2D>,
    down: Option<Downsample2D>,
    up: Option<Upsample2D>,
}

impl Stage {
    fn forward(&self, mut x: Tensor<4>) -> Tensor<4> {
        for resnet in &self.resnets {
            x = resnet.forward(x, None);
        }
        if let Some(down) = &self.down {
            x = down.forward(x);
        }
        if let Some(up) = &self.up {
            x = up.forward(x, None);
        }
        x
    }
}

#[derive(Module, Debug)]
struct Coder {
    conv_in: Conv2d,
    stages: Vec<Stage>,
    mid_block: MidBlock,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    /// The decoder runs the mid block before the stages, the encoder after.
    mid_first: bool,
}

impl Coder {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.conv_in.forward(x);
        if self.mid_first {
            x = self.mid_block.forward(x);
        }
        for stage in &self.stages {
            x = stage.forward(x);
        }
        if !self.mid_first {
            x = self.mid_block.forward(x);
        }
        self.conv_out.forward(self.conv_norm_out.forward_silu(x))
    }
}

/// The Stable Diffusion autoencoder.
#[derive(Module, Debug)]
pub struct AutoencoderKL {
    encoder: Coder,
    decoder: Coder,
    quant_conv: Option<Conv2d>,
    post_quant_conv: Option<Conv2d>,
    #[module(skip)]
    config: VaeConfig,
}

impl AutoencoderKL {
    /// Loads `vae/` of a diffusers folder (or a standalone VAE folder such as
    /// stabilityai/sd-vae-ft-mse).
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Self, VaeError> {
        let config = VaeConfig::from_file(&dir.join("config.json"))?;
        let files = ComponentFiles::find(dir, "diffusion_pytorch_model", None)?;
        let weights = Weights::from_safetensors(&files.files, device)?;
        let model = Self::load(&weights, config)?;
        weights.finish()?;
        Ok(model)
    }

    /// Builds the autoencoder described by `config` from `weights` (diffusers names).
    pub fn load(weights: &Weights, config: VaeConfig) -> Result<Self, WeightError> {
        let root = weights.root();
        let ch = &config.block_out_channels;
        let (n, groups, latent) = (ch.len(), config.norm_num_groups, config.latent_channels);
        let last = ch[n - 1];
        let resnet = |scope: &Scope, d_in, d_out| {
            ResnetBlock2D::load(scope, d_in, d_out, None, groups, VAE_NORM_EPS)
        };

        let enc = root.at("encoder");
        let mut stages = Vec::with_capacity(n);
        for i in 0..n {
            let scope = enc.at("down_blocks").at(i);
            let d_in = if i == 0 { ch[0] } else { ch[i - 1] };
            let resnets = (0..config.layers_per_block)
                .map(|j| {
                    resnet(
                        &scope.at("resnets").at(j),
                        if j == 0 { d_in } else { ch[i] },
                        ch[i],
                    )
                })
                .collect::<Result<_, _>>()?;
            let down = (i + 1 < n)
                .then(|| Downsample2D::load(&scope.at("downsamplers.0"), ch[i], 0))
                .transpose()?;
            stages.push(Stage {
                resnets,
                down,
                up: None,
            });
        }
        let encoder = Coder {
            conv_in: Conv2d::load(&enc.at("conv_in"), config.in_channels, ch[0], 3, 1, 1)?,
            stages,
            mid_block: MidBlock::load(&enc.at("mid_block"), last, &config)?,
            conv_norm_out: GroupNorm::load(&enc.at("conv_norm_out"), groups, last, VAE_NORM_EPS)?,
            conv_out: Conv2d::load(&enc.at("conv_out"), last, 2 * latent, 3, 1, 1)?,
            mid_first: false,
        };

        let dec = root.at("decoder");
        let mut stages = Vec::with_capacity(n);
        let mut prev = last;
        for i in 0..n {
            let scope = dec.at("up_blocks").at(i);
            let out = ch[n - 1 - i];
            let resnets = (0..=config.layers_per_block)
                .map(|j| {
                    resnet(
                        &scope.at("resnets").at(j),
                        if j == 0 { prev } else { out },
                        out,
                    )
                })
                .collect::<Result<_, _>>()?;
            let up = (i + 1 < n)
                .then(|| Upsample2D::load(&scope.at("upsamplers.0"), out))
                .transpose()?;
            stages.push(Stage {
                resnets,
                down: None,
                up,
            });
            prev = out;
        }
        let decoder = Coder {
            conv_in: Conv2d::load(&dec.at("conv_in"), latent, last, 3, 1, 1)?,
            stages,
            mid_block: MidBlock::load(&dec.at("mid_block"), last, &config)?,
            conv_norm_out: GroupNorm::load(&dec.at("conv_norm_out"), groups, ch[0], VAE_NORM_EPS)?,
            conv_out: Conv2d::load(&dec.at("conv_out"), ch[0], config.out_channels, 3, 1, 1)?,
            mid_first: true,
        };
        Ok(Self {
            encoder,
            decoder,
            quant_conv: config
                .use_quant_conv
                .then(|| Conv2d::load(&root.at("quant_conv"), 2 * latent, 2 * latent, 1, 1, 0))
                .transpose()?,
            post_quant_conv: config
                .use_post_quant_conv
                .then(|| Conv2d::load(&root.at("post_quant_conv"), latent, latent, 1, 1, 0))
                .transpose()?,
            config,
        })
    }

    /// The config the model was built from.
    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// The type of the weights and activations. [`Self::from_dir`] loads f32, whatever the
    /// pipeline's precision: some VAEs (SDXL's) overflow in f16, and the VAE runs once per image.
    pub fn dtype(&self) -> DType {
        self.decoder.conv_in.weight.val().dtype()
    }

    /// Decodes raw latents (already divided by the scaling factor) `[batch, latent, h, w]` to
    /// images `[batch, 3, h·f, w·f]` in about `[-1, 1]`, in the latents' type.
    pub fn decode(&self, latents: Tensor<4>) -> Result<Tensor<4>, VaeError> {
        let [_, c, h, w] = latents.dims();
        if c != self.config.latent_channels || h == 0 || w == 0 {
            return Err(VaeError::Input {
                input: "latents",
                found: latents.dims().to_vec(),
                expected: format!("[batch, {}, height, width]", self.config.latent_channels),
            });
        }
        let dtype = latents.dtype();
        let latents = latents.cast(self.dtype());
        let z = match &self.post_quant_conv {
            Some(conv) => conv.forward(latents),
            None => latents,
        };
        Ok(self.decoder.forward(z).cast(dtype))
    }

    /// Encodes images `[batch, 3, h, w]` in `[-1, 1]` (sides divisible by the scale factor).
    pub fn encode(&self, images: Tensor<4>) -> Result<LatentDistribution, VaeError> {
        let [_, c, h, w] = images.dims();
        let f = self.config.scale_factor();
        if c != self.config.in_channels || h == 0 || w == 0 || h % f != 0 || w % f != 0 {
            return Err(VaeError::Input {
                input: "images",
                found: images.dims().to_vec(),
                expected: format!(
                    "[batch, {}, height, width] with sides divisible by {f}",
                    self.config.in_channels
                ),
            });
        }
        let dtype = images.dtype();
        let moments = self.encoder.forward(images.cast(self.dtype()));
        let moments = match &self.quant_conv {
            Some(conv) => conv.forward(moments),
            None => moments,
        }
        .cast(dtype);
        let [mean, logvar]: [Tensor<4>; 2] = moments.chunk(2, 1).try_into().expect("two halves");
        Ok(LatentDistribution {
            mean,
            logvar: logvar.clamp(LOGVAR_RANGE.0, LOGVAR_RANGE.1),
        })
    }
}
