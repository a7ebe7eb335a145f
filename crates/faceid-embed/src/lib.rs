//! insightface-compatible face recognition on burn: five-point alignment (`norm_crop`), ArcFace
//! embeddings, and the identity of one or more photos (their averaged embedding, each face's
//! keypoints and, when asked, its aligned crop for image encoders).
#![deny(missing_docs)]

pub mod align;
mod average;
mod error;
mod identity;
mod recognizer;

pub use average::{AverageMode, average_embeddings, cosine_similarity, l2_normalize};
pub use error::EmbedError;
pub use identity::{Identity, IdentityFace, MAX_CROP_SIZE, check_crop_size};
pub use recognizer::Recognizer;
