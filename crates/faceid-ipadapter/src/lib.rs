//! IP-Adapter FaceID (tencent-ailab/IP-Adapter `ip_adapter_faceid.py`; diffusers'
//! `IPAdapterFaceIDImageProjection`, `IPAdapterFaceIDPlusImageProjection` and
//! `IPAdapterAttnProcessor2_0`): a 512-d ArcFace identity becomes a few image tokens that every
//! cross-attention layer of the UNet attends to through its own `to_k_ip` / `to_v_ip`, next to
//! the text; a LoRA on every attention layer is fused into the UNet's weights when the adapter
//! is installed.
//!
//! The image projection ([`ImageProjection`]) is chosen from the checkpoint's tensors:
//!
//! - FaceID v1 ([`FaceIdProjection`], `MLPProjModel`): identity → MLP → LayerNorm tokens.
//! - FaceID Plus v1 / v2 ([`FaceIdPlusProjection`], `ProjPlusModel`): the same MLP tokens are
//!   refined by a [`FacePerceiverResampler`] that attends to the face's CLIP image features
//!   (the vision tower's penultimate hidden states); PlusV2 adds the MLP tokens back
//!   (`shortcut`, weighted by `s_scale`). The checkpoints do not say which version they are:
//!   [`PlusOptions`] do.
//!
//! [`FaceIdAdapter::image_tokens`] takes one [`ProjectionInput`] (identity embeddings, plus
//! CLIP features for Plus); a missing, unexpected or misshapen input is a [`ProjectionError`].
//! The unconditional branch of classifier-free guidance is the projection of a zero identity
//! ([`FaceIdAdapter::unconditional_tokens`]; for Plus with the CLIP features of an all-zero
//! pixel tensor).
#![deny(missing_docs)]

mod adapter;
mod image_projection;
mod lora;
mod perceiver;
mod plus;
mod projection;

pub use adapter::{AdapterError, AdapterOptions, FaceIdAdapter};
pub use image_projection::{ImageProjection, ProjectionError, ProjectionInput};
pub use lora::{LoraSource, kohya_name};
pub use perceiver::{FacePerceiverResampler, HEAD_DIM, PerceiverDims};
pub use plus::{FaceIdPlusProjection, PlusOptions};
pub use projection::{FaceIdProjection, ID_EMBEDDING_DIM, ProjectionDims};
