//! diffusers' `AutoencoderKL` (models/autoencoders/autoencoder_kl.py and vae.py): the encoder to
//! a diagonal Gaussian over latents and the decoder back to pixels, built from `vae/config.json`.
#![deny(missing_docs)]

mod autoencoder;
mod config;

pub use autoencoder::{AutoencoderKL, LatentDistribution, VaeError};
pub use config::VaeConfig;
