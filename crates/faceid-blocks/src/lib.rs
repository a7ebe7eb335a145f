//! Blocks that diffusers' UNet and VAE share (`models/resnet.py`, `models/upsampling.py`,
//! `models/downsampling.py`, `models/attention_processor.py`), loaded by checkpoint name.
#![deny(missing_docs)]

mod attention;
mod resnet;

pub use attention::{Attention, AttentionShape, IpAttention, Projection};
pub use resnet::{Downsample2D, ResnetBlock2D, Upsample2D};
