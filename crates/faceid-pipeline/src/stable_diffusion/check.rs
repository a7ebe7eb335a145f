//! The checks of a request against the model, made before any work is done.

use faceid_core::HostTensor;

use crate::error::PipelineError;
use crate::request::GenerateRequest;

use super::StableDiffusion;

/// Most steps a request may ask for.
const MAX_STEPS: usize = 1000;
/// Most images one request may ask for.
const MAX_SAMPLES: usize = 16;
/// Largest side in pixels.
const MAX_SIDE: usize = 4096;

impl StableDiffusion {
    /// Checks a request against the model before any work is done.
    pub fn check(&self, request: &GenerateRequest) -> Result<(), PipelineError> {
        let invalid = |field, reason: String| Err(PipelineError::InvalidRequest { field, reason });
        let f = self.vae_scale_factor();
        for (field, side) in [("width", request.width), ("height", request.height)] {
            if side == 0 || side % f != 0 || side > MAX_SIDE {
                return invalid(
                    field,
                    format!("{side} must be a positive multiple of {f}, at most {MAX_SIDE}"),
                );
            }
        }
        if request.steps == 0 || request.steps > MAX_STEPS {
            return invalid(
                "num_inference_steps",
                format!("{} must be between 1 and {MAX_STEPS}", request.steps),
            );
        }
        if request.num_samples == 0 || request.num_samples > MAX_SAMPLES {
            return invalid(
                "num_samples",
                format!(
                    "{} must be between 1 and {MAX_SAMPLES}",
                    request.num_samples
                ),
            );
        }
        if !request.guidance_scale.is_finite() || request.guidance_scale < 0.0 {
            return invalid(
                "guidance_scale",
                format!("{} must be a finite number >= 0", request.guidance_scale),
            );
        }
        if let Some(face) = &request.face {
            let Some(faceid) = &self.faceid else {
                return invalid("face", "the model has no FaceID adapter installed".into());
            };
            let embedding = &face.id_embedding;
            if !matches!(embedding.shape.as_slice(), [512] | [1, 512]) {
                return invalid(
                    "face",
                    format!(
                        "identity of shape {:?}, expected [1, 512] or [512]",
                        embedding.shape
                    ),
                );
            }
            let finite = |t: &HostTensor| t.data.iter().all(|v| v.is_finite());
            if !finite(embedding) || !face.clip_embeds.as_ref().is_none_or(finite) {
                return invalid("face", "contains NaN or infinite values".into());
            }
            let width = faceid.adapter.projection().clip_width();
            match (&face.clip_embeds, width) {
                (None, None) => {}
                (Some(_), None) => {
                    return invalid(
                        "face",
                        "CLIP image features were given, but this FaceID model reads the identity alone: use a FaceID Plus model, or the identity alone".into(),
                    );
                }
                (None, Some(_)) => {
                    return invalid(
                        "face",
                        "this FaceID Plus model needs the face's CLIP image features: give face photos, or a face file written by `faceid embed` with an image encoder".into(),
                    );
                }
                (Some(clip), Some(width)) => {
                    if !matches!(clip.shape.as_slice(), [1, tokens, w] if *tokens > 0 && *w == width)
                    {
                        return invalid(
                            "face",
                            format!(
                                "CLIP image features of shape {:?}, expected [1, tokens, {width}] from this model's image encoder",
                                clip.shape
                            ),
                        );
                    }
                }
            }
        }
        if let Some(sizes) = &request.size_conditioning {
            if !sizes.time_ids().iter().all(|v| v.is_finite() && *v >= 0.0) {
                return invalid(
                    "size_conditioning",
                    format!("{sizes:?}: sizes and crop coordinates must be finite and >= 0"),
                );
            }
        }
        if let Some(latents) = &request.latents {
            let expected = self.latent_shape(request);
            if latents.shape != expected {
                return invalid(
                    "latents",
                    format!(
                        "shape {:?} does not match {expected:?} (num_samples, channels, height/{f}, width/{f})",
                        latents.shape
                    ),
                );
            }
        }
        Ok(())
    }

    /// The shape of a request's latents: `[samples, in_channels, height / f, width / f]`.
    pub(super) fn latent_shape(&self, request: &GenerateRequest) -> Vec<usize> {
        let f = self.vae_scale_factor();
        vec![
            request.num_samples,
            self.unet.config().in_channels,
            request.height / f,
            request.width / f,
        ]
    }
}
