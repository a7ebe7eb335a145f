//! CLIP text side for Stable Diffusion: the tokenizer (transformers' `CLIPTokenizer`, padded and
//! truncated to the model length) and the text transformer (`CLIPTextModel`), both read from the
//! files a diffusers pipeline folder holds (`tokenizer/`, `text_encoder/`).
#![deny(missing_docs)]

mod text_model;
mod tokenizer;

pub use text_model::{ClipTextConfig, ClipTextModel, TextEncoderError};
pub use tokenizer::{ClipTokenizer, TokenizerError};
