//! IP-Adapter FaceID (tencent-ailab/IP-Adapter `ip_adapter_faceid.py`; diffusers'
//! `IPAdapterFaceIDImageProjection` and `IPAdapterAttnProcessor2_0`): a 512-d ArcFace identity
//! becomes a few image tokens that every cross-attention layer of the UNet attends to through its
//! own `to_k_ip` / `to_v_ip`, next to the text; a LoRA on every attention layer is fused into the
//! UNet's weights when the adapter is installed.
#![deny(missing_docs)]

mod adapter;
mod lora;
mod projection;

pub use adapter::{AdapterError, AdapterOptions, FaceIdAdapter};
pub use lora::{LoraSource, kohya_name};
pub use projection::FaceIdProjection;
