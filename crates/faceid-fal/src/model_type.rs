//! The endpoint's `model_type` values and what each one is made of.

use faceid_pipeline::{BaseFamily, FaceIdSpec, ProjectionKind};
use serde::Serialize;

/// The `model_type` values of the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ModelType {
    /// `1_5-v1`: FaceID with the MLP projection on SD 1.5.
    #[serde(rename = "1_5-v1")]
    Sd15V1,
    /// `1_5-v1-plus`: FaceID Plus on SD 1.5.
    #[serde(rename = "1_5-v1-plus")]
    Sd15V1Plus,
    /// `1_5-v2-plus`: FaceID Plus v2 on SD 1.5.
    #[serde(rename = "1_5-v2-plus")]
    Sd15V2Plus,
    /// `SDXL-v1`: FaceID on SDXL.
    #[serde(rename = "SDXL-v1")]
    SdxlV1,
    /// `SDXL-v2-plus`: FaceID Plus v2 on SDXL.
    #[serde(rename = "SDXL-v2-plus")]
    SdxlV2Plus,
    /// `1_5-auraface-v1`: AuraFace identities on SD 1.5.
    #[serde(rename = "1_5-auraface-v1")]
    Sd15AuraFaceV1,
}

impl ModelType {
    /// Every model type, in the order of the endpoint's schema.
    pub const ALL: [ModelType; 6] = [
        Self::Sd15V1,
        Self::Sd15V1Plus,
        Self::Sd15V2Plus,
        Self::SdxlV1,
        Self::SdxlV2Plus,
        Self::Sd15AuraFaceV1,
    ];

    /// The name in the API.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sd15V1 => "1_5-v1",
            Self::Sd15V1Plus => "1_5-v1-plus",
            Self::Sd15V2Plus => "1_5-v2-plus",
            Self::SdxlV1 => "SDXL-v1",
            Self::SdxlV2Plus => "SDXL-v2-plus",
            Self::Sd15AuraFaceV1 => "1_5-auraface-v1",
        }
    }

    /// Whether the base model is SDXL (so `base_sdxl_model_repo` applies).
    pub fn is_sdxl(self) -> bool {
        self.spec().base == BaseFamily::Sdxl
    }

    /// What the model is made of. Adding a model type means adding a variant, its name and
    /// this line (and its files in `weights/manifest.toml`).
    pub fn spec(self) -> FaceIdSpec {
        let (base, projection) = match self {
            Self::Sd15V1 | Self::Sd15AuraFaceV1 => (BaseFamily::Sd15, ProjectionKind::Mlp),
            Self::Sd15V1Plus => (BaseFamily::Sd15, ProjectionKind::Plus { shortcut: false }),
            Self::Sd15V2Plus => (BaseFamily::Sd15, ProjectionKind::Plus { shortcut: true }),
            Self::SdxlV1 => (BaseFamily::Sdxl, ProjectionKind::Mlp),
            Self::SdxlV2Plus => (BaseFamily::Sdxl, ProjectionKind::Plus { shortcut: true }),
        };
        FaceIdSpec { base, projection }
    }
}

impl std::str::FromStr for ModelType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL
                    .iter()
                    .map(|m| format!("'{}'", m.name()))
                    .collect();
                format!("Input should be {}", names.join(", "))
            })
    }
}
