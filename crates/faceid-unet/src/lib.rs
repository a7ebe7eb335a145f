//! diffusers' `UNet2DConditionModel` (models/unets/unet_2d_condition.py) for the Stable
//! Diffusion 1.x/2.x block types, built from the model's `config.json` and loaded from its
//! safetensors by diffusers' tensor names.
#![deny(missing_docs)]

mod blocks;
mod config;
mod model;
mod transformer;

pub use config::{BlockType, UNetConfig};
pub use model::{UNet2DConditionModel, UNetError};
