//! What a FaceID model is made of: the base architecture it runs on and how an identity becomes
//! the adapter's image tokens. Front ends name their model types and map each onto one of these
//! (fal's `model_type` in `faceid-fal`); everything below reads only this.

/// The base model's architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BaseFamily {
    /// Stable Diffusion 1.x (one CLIP text encoder, cross-attention width 768).
    Sd15,
    /// Stable Diffusion XL (two text encoders, added time/text conditioning).
    Sdxl,
}

impl BaseFamily {
    /// The family in words, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Sd15 => "an SD 1.x",
            Self::Sdxl => "an SDXL",
        }
    }
}

/// How an identity becomes image tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProjectionKind {
    /// FaceID v1: an MLP on the ArcFace identity alone.
    Mlp,
    /// FaceID Plus: the MLP tokens refined by a perceiver resampler that attends to the CLIP
    /// image features of the aligned face; with `shortcut` (Plus v2) the resampler's output is
    /// added to the MLP tokens, weighted by `s_scale`.
    Plus {
        /// Whether the MLP tokens are added back (`1_5-v2-plus`, `SDXL-v2-plus`).
        shortcut: bool,
    },
}

/// A FaceID model: base family and projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaceIdSpec {
    /// The base model's architecture.
    pub base: BaseFamily,
    /// The projection of the identity.
    pub projection: ProjectionKind,
}

impl FaceIdSpec {
    /// Whether the model reads CLIP image features of the face (a CLIP image encoder is needed).
    pub fn needs_image_encoder(self) -> bool {
        matches!(self.projection, ProjectionKind::Plus { .. })
    }
}
