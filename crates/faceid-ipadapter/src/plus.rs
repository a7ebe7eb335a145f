//! tencent-ailab's `ProjPlusModel` (`ip_adapter/ip_adapter_faceid.py`), diffusers'
//! `IPAdapterFaceIDPlusImageProjection`: the FaceID MLP projection of the identity, refined by a
//! [`FacePerceiverResampler`] over the face's CLIP image features.

use burn::module::Module;
use burn::tensor::Tensor;
use faceid_core::{Scope, WeightError};

use crate::perceiver::{FacePerceiverResampler, PerceiverDims};
use crate::projection::{FaceIdProjection, ProjectionDims};

/// How the resampler's output is combined with the MLP tokens. The checkpoints of FaceID Plus
/// v1 and v2 have the same tensors, so the caller says which one it runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlusOptions {
    /// `out = tokens + s_scale · resampled` instead of `out = resampled`: `true` for the PlusV2
    /// checkpoints (`ip-adapter-faceid-plusv2_*`), `false` for v1 Plus
    /// (`ip-adapter-faceid-plus_sd15`). The original's `shortcut` argument; diffusers'
    /// `shortcut` attribute.
    pub shortcut: bool,
    /// Weight of the resampled tokens with the shortcut (the original's `s_scale`, diffusers'
    /// `shortcut_scale`; 1.0 by default). Ignored without it.
    pub s_scale: f32,
}

impl Default for PlusOptions {
    /// No shortcut (v1 Plus), `s_scale` 1.0: the defaults of both reference implementations.
    fn default() -> Self {
        Self {
            shortcut: false,
            s_scale: 1.0,
        }
    }
}

impl PlusOptions {
    /// The settings of the PlusV2 checkpoints: shortcut on, with `s_scale`.
    pub fn v2(s_scale: f32) -> Self {
        Self {
            shortcut: true,
            s_scale,
        }
    }
}

/// Identity embedding and CLIP image features to image tokens (FaceID Plus).
#[derive(Module, Debug)]
pub struct FaceIdPlusProjection {
    mlp: FaceIdProjection,
    perceiver_resampler: FacePerceiverResampler,
}

impl FaceIdPlusProjection {
    /// Loads `proj.*`, `norm.*` and `perceiver_resampler.*` under `scope` (`image_proj`).
    pub fn load(
        scope: &Scope,
        mlp: ProjectionDims,
        resampler: PerceiverDims,
    ) -> Result<Self, WeightError> {
        Ok(Self {
            mlp: FaceIdProjection::load(scope, mlp)?,
            perceiver_resampler: FacePerceiverResampler::load(
                &scope.at("perceiver_resampler"),
                resampler,
            )?,
        })
    }

    /// `[b, 512]` identity embeddings and `[b, n, embedding_dim]` CLIP features (the
    /// penultimate hidden states of the vision tower) to `[b, tokens, dim]` image tokens, in the
    /// projection's precision (the inputs are converted to it). Shapes are the caller's to check
    /// (see [`crate::ImageProjection::forward`]).
    pub fn forward(
        &self,
        id_embedding: Tensor<2>,
        clip_embeds: Tensor<3>,
        options: &PlusOptions,
    ) -> Tensor<3> {
        let tokens = self.mlp.forward(id_embedding);
        let clip_embeds = clip_embeds.cast(tokens.dtype());
        let out = self
            .perceiver_resampler
            .forward(tokens.clone(), clip_embeds);
        if options.shortcut {
            tokens + out * options.s_scale
        } else {
            out
        }
    }

    /// The MLP projection of the identity (the latents of the resampler).
    pub fn mlp(&self) -> &FaceIdProjection {
        &self.mlp
    }

    /// The resampler.
    pub fn perceiver_resampler(&self) -> &FacePerceiverResampler {
        &self.perceiver_resampler
    }
}
