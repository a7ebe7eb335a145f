//! Stable Diffusion pipelines: the components of a diffusers folder joined into prompt-to-image
//! generation that reproduces diffusers' `StableDiffusionPipeline` image for image, seed for seed.
//!
//! ```no_run
//! use faceid_pipeline::{GenerateRequest, StableDiffusion};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = faceid_core::DeviceKind::Flex.device()?;
//! let sd = StableDiffusion::from_dir("models/sd15".as_ref(), None, &device)?;
//! let request = GenerateRequest { prompt: "a lighthouse at dusk".into(), seed: 42, ..Default::default() };
//! let out = sd.generate(&request, &mut |_| std::ops::ControlFlow::Continue(()))?;
//! out.images[0].save("lighthouse.png")?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod error;
pub mod fal;
mod fal_schema;
mod identity;
mod image_io;
mod stable_diffusion;

pub use error::PipelineError;
pub use faceid_ipadapter::{AdapterOptions, LoraSource};
pub use faceid_scheduler::SchedulerKind;
pub use identity::identity_from_images;
pub use image_io::{grid, to_rgb_images};
pub use stable_diffusion::{GenerateRequest, Generated, Progress, StableDiffusion};
