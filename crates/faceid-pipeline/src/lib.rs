//! Stable Diffusion pipelines: the components of a diffusers folder joined into prompt-to-image
//! generation that reproduces diffusers' `StableDiffusionPipeline` and
//! `StableDiffusionXLPipeline` image for image, seed for seed.
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

mod assemble;
mod error;
mod face_conditioning;
mod face_encoder;
mod image_io;
mod prompt;
mod request;
mod seed;
mod spec;
mod stable_diffusion;

pub use assemble::{
    FaceIdGenerator, GeneratorOptions, load_diffusion, load_face_encoder, load_image_encoder,
};
pub use error::PipelineError;
pub use face_conditioning::{CLIP_EMBEDS, FaceConditioning, FaceFileError, ID_EMBEDDING};
pub use face_encoder::{ClipImageEncoder, FaceCrop, FaceEncoder};
pub use faceid_ipadapter::{AdapterOptions, FaceIdAdapter, LoraSource, PlusOptions};
pub use faceid_scheduler::SchedulerKind;
pub use image_io::{grid, to_rgb_images};
pub use prompt::{PromptEmbeds, PromptEncoder};
pub use request::{GenerateRequest, Generated, Progress, SizeConditioning};
pub use seed::random_seed;
pub use spec::{BaseFamily, FaceIdSpec, ProjectionKind};
pub use stable_diffusion::StableDiffusion;
