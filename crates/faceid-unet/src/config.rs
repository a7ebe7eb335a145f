//! `unet/config.json`: the fields that shape the network, with diffusers' defaults, and a check
//! that rejects every option this implementation does not build.

use std::path::Path;

use faceid_core::ConfigError;
use faceid_core::config::unsupported;
use faceid_core::nn::Activation;
use serde::Deserialize;

/// A value given either once for every block or as one value per block.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PerBlock<T> {
    /// The same value for every block.
    One(T),
    /// One value per down block.
    Each(Vec<T>),
}

impl<T: Copy> PerBlock<T> {
    /// The value of each of `n` blocks.
    pub fn expand(&self, n: usize) -> Vec<T> {
        match self {
            Self::One(v) => vec![*v; n],
            Self::Each(v) => v.clone(),
        }
    }
}

/// The down and up block types of SD 1.x/2.x UNets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum BlockType {
    /// Resnets with cross-attention transformers, then a downsampler.
    CrossAttnDownBlock2D,
    /// Resnets, then a downsampler.
    DownBlock2D,
    /// Resnets with cross-attention transformers, then an upsampler.
    CrossAttnUpBlock2D,
    /// Resnets, then an upsampler.
    UpBlock2D,
}

impl BlockType {
    /// Whether the block has transformers.
    pub fn has_attention(self) -> bool {
        matches!(self, Self::CrossAttnDownBlock2D | Self::CrossAttnUpBlock2D)
    }
}

/// The kinds of `addition_embed_type` this implementation builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AdditionEmbedType {
    /// SDXL's micro-conditioning: `add_embedding(concat(text_embeds, add_time_proj(time_ids)))`
    /// added to the time embedding.
    #[serde(rename = "text_time")]
    TextTime,
}

/// The sizes of SDXL's added conditioning, from the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextTimeShape {
    /// Width of each time id's sinusoidal embedding.
    pub time_embed_dim: usize,
    /// Width of the pooled text embedding (`projection_class_embeddings_input_dim - 6 ×
    /// time_embed_dim`).
    pub text_embeds_dim: usize,
}

/// Number of SDXL time ids: original size, crop top-left, target size (height, width each).
pub const TIME_IDS: usize = 6;

/// The fields of `UNet2DConditionModel`'s config that this implementation reads.
#[derive(Debug, Clone, Deserialize)]
pub struct UNetConfig {
    /// Latent channels in.
    #[serde(default = "four")]
    pub in_channels: usize,
    /// Latent channels out.
    #[serde(default = "four")]
    pub out_channels: usize,
    /// Whether the sinusoidal embedding puts cosines first.
    #[serde(default = "yes")]
    pub flip_sin_to_cos: bool,
    /// Frequency shift of the sinusoidal embedding.
    #[serde(default)]
    pub freq_shift: f64,
    /// Down block types.
    pub down_block_types: Vec<BlockType>,
    /// Mid block type (only `UNetMidBlock2DCrossAttn`).
    #[serde(default = "mid_block")]
    pub mid_block_type: Option<String>,
    /// Up block types.
    pub up_block_types: Vec<BlockType>,
    /// Channels of each down block.
    pub block_out_channels: Vec<usize>,
    /// Resnets per down block (up blocks have one more).
    #[serde(default = "two")]
    pub layers_per_block: PerBlock<usize>,
    /// Padding of the downsampling convs.
    #[serde(default = "one")]
    pub downsample_padding: usize,
    /// Activation between layers (only silu).
    #[serde(default = "silu")]
    pub act_fn: Activation,
    /// Groups of every GroupNorm of the resnets.
    #[serde(default = "thirty_two")]
    pub norm_num_groups: usize,
    /// Epsilon of the resnets' GroupNorm.
    #[serde(default = "norm_eps")]
    pub norm_eps: f64,
    /// Width of the text embedding.
    pub cross_attention_dim: PerBlock<usize>,
    /// Transformer blocks in each transformer.
    #[serde(default = "one_per_block")]
    pub transformer_layers_per_block: PerBlock<usize>,
    /// Despite its name, the number of heads (a diffusers legacy).
    #[serde(default = "eight_per_block")]
    pub attention_head_dim: PerBlock<usize>,
    /// Number of heads when given explicitly (overrides `attention_head_dim`).
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock<usize>>,
    /// Linear instead of 1×1 conv projections into and out of the transformers (SD 2).
    #[serde(default)]
    pub use_linear_projection: bool,
    /// Computing attention in f32 (affects half precision only).
    #[serde(default)]
    pub upcast_attention: Option<bool>,
    /// Extra conditioning added to the time embedding: only `"text_time"` (SDXL: the pooled
    /// text embedding and the size/crop ids).
    #[serde(default)]
    pub addition_embed_type: Option<AdditionEmbedType>,
    /// Width of the sinusoidal embedding of each of the six `time_ids` (SDXL: 256).
    #[serde(default)]
    pub addition_time_embed_dim: Option<usize>,
    /// Width of `add_embedding`'s input: the pooled text embedding plus six time-id embeddings
    /// (SDXL: 1280 + 6 × 256 = 2816).
    #[serde(default)]
    pub projection_class_embeddings_input_dim: Option<usize>,
    /// Unsupported options, checked by [`UNetConfig::validate`].
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

fn four() -> usize {
    4
}
fn two() -> PerBlock<usize> {
    PerBlock::One(2)
}
fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn thirty_two() -> usize {
    32
}
fn norm_eps() -> f64 {
    1e-5
}
fn silu() -> Activation {
    Activation::Silu
}
fn mid_block() -> Option<String> {
    Some("UNetMidBlock2DCrossAttn".into())
}
fn one_per_block() -> PerBlock<usize> {
    PerBlock::One(1)
}
fn eight_per_block() -> PerBlock<usize> {
    PerBlock::One(8)
}

/// Options that must have their default (no-op) value: `(field, allowed values)`.
const MUST_BE_DEFAULT: &[(&str, &[&str])] = &[
    ("center_input_sample", &["false"]),
    ("class_embed_type", &["null"]),
    ("encoder_hid_dim", &["null"]),
    ("time_cond_proj_dim", &["null"]),
    ("timestep_post_act", &["null"]),
    ("time_embedding_act_fn", &["null"]),
    ("time_embedding_dim", &["null"]),
    ("time_embedding_type", &["\"positional\""]),
    ("resnet_time_scale_shift", &["\"default\""]),
    ("dual_cross_attention", &["false"]),
    ("only_cross_attention", &["false"]),
    ("conv_in_kernel", &["3"]),
    ("conv_out_kernel", &["3"]),
    ("mid_block_scale_factor", &["1", "1.0"]),
    ("resnet_out_scale_factor", &["1", "1.0"]),
    ("attention_type", &["\"default\""]),
    ("num_class_embeds", &["null"]),
    ("cross_attention_norm", &["null"]),
    ("resnet_skip_time_act", &["false"]),
    ("reverse_transformer_layers_per_block", &["null"]),
    ("class_embeddings_concat", &["false"]),
    ("encoder_hid_dim_type", &["null"]),
    ("mid_block_only_cross_attention", &["null", "false"]),
];

impl UNetConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = faceid_core::config::read_json(path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// Rejects options that would change the network in ways this implementation does not build.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        for (field, allowed) in MUST_BE_DEFAULT {
            if let Some(value) = self.rest.get(*field) {
                let text = value.to_string();
                if !allowed.contains(&text.as_str()) {
                    return Err(unsupported(
                        path,
                        field,
                        text,
                        "only the SD 1.x/2.x default is built",
                    ));
                }
            }
        }
        let n = self.block_out_channels.len();
        if self.down_block_types.len() != n || self.up_block_types.len() != n {
            return Err(unsupported(
                path,
                "down_block_types",
                (&self.down_block_types, &self.up_block_types),
                "one down and one up block per entry of block_out_channels",
            ));
        }
        if self
            .down_block_types
            .iter()
            .any(|b| matches!(b, BlockType::CrossAttnUpBlock2D | BlockType::UpBlock2D))
        {
            return Err(unsupported(
                path,
                "down_block_types",
                &self.down_block_types,
                "down blocks only",
            ));
        }
        if self
            .up_block_types
            .iter()
            .any(|b| matches!(b, BlockType::CrossAttnDownBlock2D | BlockType::DownBlock2D))
        {
            return Err(unsupported(
                path,
                "up_block_types",
                &self.up_block_types,
                "up blocks only",
            ));
        }
        if self.mid_block_type.as_deref() != Some("UNetMidBlock2DCrossAttn") {
            return Err(unsupported(
                path,
                "mid_block_type",
                &self.mid_block_type,
                "UNetMidBlock2DCrossAttn",
            ));
        }
        if !matches!(self.act_fn, Activation::Silu | Activation::Swish) {
            return Err(unsupported(path, "act_fn", self.act_fn, "silu"));
        }
        for (field, value) in [
            ("layers_per_block", &self.layers_per_block),
            (
                "transformer_layers_per_block",
                &self.transformer_layers_per_block,
            ),
            ("attention_head_dim", &self.attention_head_dim),
            ("cross_attention_dim", &self.cross_attention_dim),
        ] {
            if value.expand(n).len() != n {
                return Err(unsupported(
                    path,
                    field,
                    value,
                    "one value, or one per block",
                ));
            }
        }
        self.text_time(path)?;
        let heads = self.heads();
        for (i, (&c, &h)) in self.block_out_channels.iter().zip(&heads).enumerate() {
            if h == 0 || c % h != 0 || c % self.norm_num_groups != 0 {
                let _ = i;
                return Err(unsupported(
                    path,
                    "block_out_channels",
                    &self.block_out_channels,
                    "channels divisible by the head count and by norm_num_groups",
                ));
            }
        }
        Ok(())
    }

    /// Heads of each down block's transformers (diffusers reads `attention_head_dim` as the
    /// head count unless `num_attention_heads` is set).
    pub fn heads(&self) -> Vec<usize> {
        let n = self.block_out_channels.len();
        self.num_attention_heads
            .as_ref()
            .unwrap_or(&self.attention_head_dim)
            .expand(n)
    }

    /// The module path of every attention layer, in the order of diffusers'
    /// `unet.attn_processors` (down blocks, up blocks, mid block; `attn1` then `attn2`), which is
    /// how IP-Adapter checkpoints number them. Matches [`crate::UNet2DConditionModel::attentions_mut`].
    pub fn attention_paths(&self) -> Vec<String> {
        let n = self.block_out_channels.len();
        let layers = self.layers_per_block.expand(n);
        let depth = self.transformer_layers_per_block.expand(n);
        let mut paths = Vec::new();
        let mut add = |block: String, attentions: usize, depth: usize| {
            for j in 0..attentions {
                for k in 0..depth {
                    for attn in ["attn1", "attn2"] {
                        paths.push(format!(
                            "{block}.attentions.{j}.transformer_blocks.{k}.{attn}"
                        ));
                    }
                }
            }
        };
        for (i, block) in self.down_block_types.iter().enumerate() {
            if block.has_attention() {
                add(format!("down_blocks.{i}"), layers[i], depth[i]);
            }
        }
        for (i, block) in self.up_block_types.iter().enumerate() {
            let mirror = n - 1 - i;
            if block.has_attention() {
                add(format!("up_blocks.{i}"), layers[mirror] + 1, depth[mirror]);
            }
        }
        add("mid_block".into(), 1, depth[n - 1]);
        paths
    }

    /// The sizes of the added conditioning (`None` without `addition_embed_type`).
    pub fn text_time_shape(&self) -> Option<TextTimeShape> {
        self.text_time(Path::new("config.json")).ok().flatten()
    }

    fn text_time(&self, path: &Path) -> Result<Option<TextTimeShape>, ConfigError> {
        let Some(AdditionEmbedType::TextTime) = self.addition_embed_type else {
            return Ok(None);
        };
        match (
            self.addition_time_embed_dim,
            self.projection_class_embeddings_input_dim,
        ) {
            (Some(t), Some(input)) if t > 0 && input > TIME_IDS * t => Ok(Some(TextTimeShape {
                time_embed_dim: t,
                text_embeds_dim: input - TIME_IDS * t,
            })),
            (t, input) => Err(unsupported(
                path,
                "projection_class_embeddings_input_dim",
                (t, input),
                "addition_embed_type \"text_time\" needs addition_time_embed_dim and a projection_class_embeddings_input_dim wider than 6 × addition_time_embed_dim",
            )),
        }
    }

    /// Width of the timestep embedding (`4 ×` the first block's channels).
    pub fn time_embed_dim(&self) -> usize {
        self.block_out_channels[0] * 4
    }
}
