//! faceid: zero-shot face personalisation of Stable Diffusion with IP-Adapter FaceID, on burn.
//!
//! This crate gathers the workspace's crates under one name for applications:
//!
//! - [`pipeline`]: load a diffusers model folder once, generate many times.
//! - [`face`]: insightface-compatible face detection, alignment and ArcFace embeddings.
//! - [`fal`]: the API of the hosted `fal-ai/ip-adapter-face-id` endpoint (model types, input
//!   schema, defaults, validation).
//! - [`clip`], [`unet`], [`vae`], [`scheduler`]: the Stable Diffusion components, and [`blocks`]
//!   the attention and resnet blocks they share.
//! - [`hub`]: the weights each fal model type needs, found in or fetched into the Hugging Face
//!   and insightface caches.
//! - [`onnx`]: the ONNX graph runtime the face models run on.
//! - [`core`]: devices, checkpoint loading, torch-compatible noise.
//!
//! See `faceid_pipeline::StableDiffusion` for a runnable example.
#![deny(missing_docs)]

pub use faceid_blocks as blocks;
pub use faceid_clip as clip;
pub use faceid_core as core;
pub use faceid_face as face;
pub use faceid_fal as fal;
pub use faceid_hub as hub;
pub use faceid_onnx as onnx;
pub use faceid_pipeline as pipeline;
pub use faceid_scheduler as scheduler;
pub use faceid_unet as unet;
pub use faceid_vae as vae;

pub use faceid_pipeline::{GenerateRequest, Generated, PipelineError, StableDiffusion};
