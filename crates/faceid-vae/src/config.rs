//! `vae/config.json`.

use std::path::Path;

use faceid_core::ConfigError;
use faceid_core::config::unsupported;
use faceid_core::nn::Activation;
use serde::Deserialize;

/// The fields of `AutoencoderKL`'s config that this implementation reads.
#[derive(Debug, Clone, Deserialize)]
pub struct VaeConfig {
    /// Image channels in.
    #[serde(default = "three")]
    pub in_channels: usize,
    /// Image channels out.
    #[serde(default = "three")]
    pub out_channels: usize,
    /// Encoder block types (only `DownEncoderBlock2D`).
    pub down_block_types: Vec<String>,
    /// Decoder block types (only `UpDecoderBlock2D`).
    pub up_block_types: Vec<String>,
    /// Channels per block.
    pub block_out_channels: Vec<usize>,
    /// Resnets per encoder block (decoder blocks have one more).
    #[serde(default = "one")]
    pub layers_per_block: usize,
    /// Activation (only silu).
    #[serde(default = "silu")]
    pub act_fn: Activation,
    /// Latent channels.
    #[serde(default = "four")]
    pub latent_channels: usize,
    /// GroupNorm groups.
    #[serde(default = "thirty_two")]
    pub norm_num_groups: usize,
    /// Latents are multiplied by this before the UNet (0.18215 for SD 1.x, 0.13025 for SDXL).
    #[serde(default = "scaling_factor")]
    pub scaling_factor: f32,
    /// Subtracted before scaling (SD 3 / Flux VAEs; absent for SD).
    #[serde(default)]
    pub shift_factor: Option<f32>,
    /// Per-channel mean of the latents (some SDXL VAEs): SDXL pipelines decode
    /// `latents · latents_std / scaling_factor + latents_mean`.
    #[serde(default)]
    pub latents_mean: Option<Vec<f32>>,
    /// Per-channel standard deviation of the latents, with `latents_mean`.
    #[serde(default)]
    pub latents_std: Option<Vec<f32>>,
    /// Whether the reference runs this VAE in f32 when the pipeline is in f16 (SDXL's overflows
    /// in f16). This implementation always keeps the VAE in f32.
    #[serde(default)]
    pub force_upcast: bool,
    /// Whether the 1×1 `quant_conv` exists.
    #[serde(default = "yes")]
    pub use_quant_conv: bool,
    /// Whether the 1×1 `post_quant_conv` exists.
    #[serde(default = "yes")]
    pub use_post_quant_conv: bool,
    /// Whether the mid blocks have self-attention.
    #[serde(default = "yes")]
    pub mid_block_add_attention: bool,
}

fn three() -> usize {
    3
}
fn four() -> usize {
    4
}
fn one() -> usize {
    1
}
fn thirty_two() -> usize {
    32
}
fn yes() -> bool {
    true
}
fn silu() -> Activation {
    Activation::Silu
}
fn scaling_factor() -> f32 {
    0.18215
}

impl VaeConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = faceid_core::config::read_json(path)?;
        let n = config.block_out_channels.len();
        if n == 0 || config.down_block_types.len() != n || config.up_block_types.len() != n {
            return Err(unsupported(
                path,
                "block_out_channels",
                &config.block_out_channels,
                "one down and one up block per entry",
            ));
        }
        if config
            .down_block_types
            .iter()
            .any(|b| b != "DownEncoderBlock2D")
        {
            return Err(unsupported(
                path,
                "down_block_types",
                &config.down_block_types,
                "DownEncoderBlock2D",
            ));
        }
        if config
            .up_block_types
            .iter()
            .any(|b| b != "UpDecoderBlock2D")
        {
            return Err(unsupported(
                path,
                "up_block_types",
                &config.up_block_types,
                "UpDecoderBlock2D",
            ));
        }
        for (field, stats) in [
            ("latents_mean", &config.latents_mean),
            ("latents_std", &config.latents_std),
        ] {
            if stats
                .as_ref()
                .is_some_and(|v| v.len() != config.latent_channels)
            {
                return Err(unsupported(
                    path,
                    field,
                    stats,
                    "one value per latent channel",
                ));
            }
        }
        if !matches!(config.act_fn, Activation::Silu | Activation::Swish) {
            return Err(unsupported(path, "act_fn", config.act_fn, "silu"));
        }
        if config
            .block_out_channels
            .iter()
            .any(|c| c % config.norm_num_groups != 0)
        {
            return Err(unsupported(
                path,
                "norm_num_groups",
                config.norm_num_groups,
                "a divisor of every block's channels",
            ));
        }
        Ok(config)
    }

    /// How much smaller latents are than images (`2^(blocks - 1)`).
    pub fn scale_factor(&self) -> usize {
        1 << (self.block_out_channels.len() - 1)
    }
}
