//! CLIP for Stable Diffusion and IP-Adapter FaceID Plus, read from the files a diffusers or
//! transformers folder holds:
//!
//! - the text side: the tokenizer (transformers' `CLIPTokenizer`, padded and truncated to the
//!   model length) and the text transformer (`CLIPTextModel`), from `tokenizer/` and
//!   `text_encoder/`;
//! - the image side: the image preprocessing (transformers' `CLIPImageProcessor`, its PIL
//!   implementation, bit for bit on 8-bit images) and the vision transformer
//!   (`CLIPVisionModelWithProjection`: hidden states after any number of layers, such as the
//!   penultimate one FaceID Plus reads, and the projected image embedding), from an
//!   `image_encoder/` folder.
//!
//! Both transformers share one encoder layer implementation (causal for text, full for images).
#![deny(missing_docs)]

mod encoder;
mod image_processor;
mod pil_resize;
mod text_model;
mod tokenizer;
mod vision_model;

pub use image_processor::{
    ClipImageProcessor, ClipImageProcessorConfig, CropSize, ImageProcessorError, PerChannel,
    Resample, ResizeSize,
};
pub use text_model::{ClipTextConfig, ClipTextModel, TextEncoderError, TextEncoding};
pub use tokenizer::{ClipTokenizer, TokenizerError};
pub use vision_model::{ClipVisionConfig, ClipVisionModel, VisionEncoderError};
