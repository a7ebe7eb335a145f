//! diffusers' `UNet2DConditionModel` (models/unets/unet_2d_condition.py) for the Stable
//! Diffusion 1.x/2.x and SDXL block types (SDXL's `text_time` added conditioning included), built from the model's `config.json` and loaded from its
//! safetensors by diffusers' tensor names.
#![deny(missing_docs)]

mod blocks;
mod conditioning;
mod config;
mod model;
mod transformer;

pub use conditioning::{Conditioning, TextTime};
pub use config::{AdditionEmbedType, BlockType, TIME_IDS, TextTimeShape, UNetConfig};
pub use model::{UNet2DConditionModel, UNetError};

use burn::tensor::Tensor;

/// What the cross-attention layers attend to: the text tokens, and IP-Adapter's image tokens for
/// layers with an image branch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    pub text: &'a Tensor<3>,
    pub image: Option<&'a Tensor<3>>,
}
