//! Loading a FaceID checkpoint (`.bin` torch pickle or `.safetensors`) and installing it into a
//! UNet: the projection is kept, the IP branch goes into every cross-attention layer and the LoRA
//! is fused into every attention layer's weights.

use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use faceid_blocks::{Attention, IpAttention, Projection};
use faceid_core::nn::Linear;
use faceid_core::{Device, Precision, WeightError, Weights};
use faceid_unet::UNet2DConditionModel;

use crate::image_projection::{ImageProjection, ProjectionError, ProjectionInput};
use crate::lora::{LoraSource, PROJECTIONS, checkpoint_suffix, kohya_name};
use crate::plus::PlusOptions;
use crate::projection::ID_EMBEDDING_DIM;

/// An adapter checkpoint that cannot be used with this UNet.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// A tensor is missing, misshapen or unused.
    #[error(transparent)]
    Weights(#[from] WeightError),
    /// The file is an adapter this build does not support.
    #[error("{path}: {reason}")]
    Unsupported {
        /// The checkpoint.
        path: PathBuf,
        /// What it is and what is supported.
        reason: String,
    },
    /// The checkpoint was made for a UNet with another number of attention layers.
    #[error(
        "{path} adapts {found} attention layers but this UNet has {expected}: the adapter was made for another base model (SD 1.5 adapters have 32, SDXL ones 140)"
    )]
    LayerCount {
        /// The checkpoint.
        path: PathBuf,
        /// Layers in the checkpoint.
        found: usize,
        /// Layers in the UNet.
        expected: usize,
    },
    /// An identity embedding has the wrong size.
    #[error("face embedding has shape {found:?}, expected [512] or [n, 512]")]
    Embedding {
        /// The shape given.
        found: Vec<usize>,
    },
    /// The projection's input does not fit it (a Plus adapter without CLIP features, an MLP
    /// one with some, or features of the wrong shape).
    #[error(transparent)]
    Projection(#[from] ProjectionError),
}

/// How strongly the adapter acts.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterOptions {
    /// Weight of the image branch in every cross-attention layer (1.0 as in the reference).
    pub ip_scale: f32,
    /// Weight of the LoRA fused into the UNet (1.0 reproduces the reference; users often
    /// prefer 0.6-0.8 for more prompt adherence).
    pub lora_scale: f32,
    /// Where the LoRA comes from.
    pub lora: LoraSource,
}

impl Default for AdapterOptions {
    fn default() -> Self {
        Self {
            ip_scale: 1.0,
            lora_scale: 1.0,
            lora: LoraSource::Checkpoint,
        }
    }
}

/// An IP-Adapter FaceID (v1 or Plus) installed in a UNet: what remains outside it is the
/// projection from identity embeddings (and, for Plus, CLIP image features) to image tokens.
#[derive(Debug)]
pub struct FaceIdAdapter {
    projection: ImageProjection,
    device: Device,
    precision: Precision,
}

/// Opens a checkpoint by extension: torch pickle (`.bin`, `.pt`, `.pth`) or safetensors.
fn open(path: &Path, device: &Device) -> Result<Weights, WeightError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => Weights::from_safetensors(&[path.to_owned()], device),
        _ => Weights::from_pytorch(path, device),
    }
}

impl FaceIdAdapter {
    /// Whether the checkpoint at `path` is FaceID Plus (it has
    /// `image_proj.perceiver_resampler.*` tensors) rather than FaceID v1, read from its tensor
    /// names only.
    pub fn is_plus_checkpoint(path: &Path) -> Result<bool, AdapterError> {
        let names = Weights::names_in_file(path)?;
        if !names.iter().any(|n| n.starts_with("image_proj.")) {
            return Err(AdapterError::Unsupported {
                path: path.to_owned(),
                reason: "no `image_proj` tensors: not an IP-Adapter checkpoint".into(),
            });
        }
        Ok(names
            .iter()
            .any(|n| n.starts_with("image_proj.perceiver_resampler.")))
    }

    /// Loads the checkpoint at `path` and installs it into `unet`, in the UNet's precision.
    /// Processor `i` of the checkpoint is the `i`-th attention layer in diffusers'
    /// `attn_processors` order. The projection is FaceID Plus when the checkpoint has
    /// `image_proj.perceiver_resampler.*` tensors, the MLP of FaceID v1 otherwise.
    pub fn install(
        path: &Path,
        unet: &mut UNet2DConditionModel,
        options: &AdapterOptions,
        device: &Device,
    ) -> Result<Self, AdapterError> {
        let precision = unet.precision();
        let mut weights = open(path, device)?.with_precision(precision);
        let names = weights.names();
        if !names.iter().any(|n| n.starts_with("image_proj.")) {
            return Err(AdapterError::Unsupported {
                path: path.to_owned(),
                reason: "no `image_proj` tensors: not an IP-Adapter checkpoint".into(),
            });
        }
        if options.lora != LoraSource::Checkpoint {
            weights = weights.allow_unused_suffixes(&["_lora.down.weight", "_lora.up.weight"]);
        }
        let projection = ImageProjection::load(&weights, path)?;
        let token_dim = projection.dim();

        let mut sites = unet.attentions_mut();
        let found = processor_count(&names);
        if found != sites.len() {
            return Err(AdapterError::LayerCount {
                path: path.to_owned(),
                found,
                expected: sites.len(),
            });
        }
        let kohya = match &options.lora {
            LoraSource::Kohya(file) => {
                Some(Weights::from_safetensors(&[file.clone()], device)?.with_precision(precision))
            }
            _ => None,
        };
        let processors = weights.root().at("ip_adapter");
        for (i, (site, attention)) in sites.iter_mut().enumerate() {
            let scope = processors.at(i);
            match (&options.lora, &kohya) {
                (LoraSource::Checkpoint, _) => {
                    for projection in PROJECTIONS {
                        let base = format!("{}_lora", checkpoint_suffix(projection));
                        fuse(
                            attention,
                            projection,
                            &weights,
                            &scope.key(&format!("{base}.down.weight")),
                            &scope.key(&format!("{base}.up.weight")),
                            1.0,
                            options.lora_scale,
                        )?;
                    }
                }
                (LoraSource::Kohya(_), Some(lora)) => {
                    for projection in PROJECTIONS {
                        let name = kohya_name(site, projection);
                        let alpha_key = format!("{name}.alpha");
                        let rank = lora
                            .shape_of(&format!("{name}.lora_down.weight"))
                            .map_or(1, |s| s[0]);
                        let alpha = if lora.contains(&alpha_key) {
                            lora.host(&alpha_key, &[])?.data[0] / rank as f32
                        } else {
                            1.0
                        };
                        fuse(
                            attention,
                            projection,
                            lora,
                            &format!("{name}.lora_down.weight"),
                            &format!("{name}.lora_up.weight"),
                            alpha,
                            options.lora_scale,
                        )?;
                    }
                }
                _ => {}
            }
            if site.ends_with("attn2") {
                let (inner, _, _) = attention.dims();
                let to_k_ip = Linear::load(&scope.at("to_k_ip"), token_dim, inner, false)?;
                let to_v_ip = Linear::load(&scope.at("to_v_ip"), token_dim, inner, false)?;
                attention.set_ip_adapter(IpAttention::new(to_k_ip, to_v_ip, options.ip_scale));
            }
        }
        drop(sites);
        if let Some(lora) = kohya {
            lora.finish()?;
        }
        weights.finish()?;
        Ok(Self {
            projection,
            device: device.clone(),
            precision,
        })
    }

    /// Sets the image branch's weight in every layer of `unet` (0 turns the adapter off).
    pub fn set_ip_scale(unet: &mut UNet2DConditionModel, scale: f32) {
        for (_, attention) in unet.attentions_mut() {
            attention.set_ip_scale(scale);
        }
    }

    /// Image tokens `[n, tokens, dim]` of `input` (identity embeddings `[n, 512]`, and for a
    /// FaceID Plus adapter the CLIP image features of the same `n` faces), computed in the
    /// adapter's precision and returned in f32. `options` say whether the Plus shortcut applies
    /// (PlusV2) and with which `s_scale`; the MLP projection of FaceID v1 ignores them.
    pub fn image_tokens(
        &self,
        input: ProjectionInput,
        options: &PlusOptions,
    ) -> Result<Tensor<3>, AdapterError> {
        Ok(self.projection.forward(input, options)?)
    }

    /// The projection from identity embeddings to image tokens.
    pub fn projection(&self) -> &ImageProjection {
        &self.projection
    }

    /// Whether this is a FaceID Plus adapter, whose projection needs CLIP image features.
    pub fn is_plus(&self) -> bool {
        matches!(self.projection, ImageProjection::Plus(_))
    }

    /// The image tokens of the unconditional branch for `n` images (f32): the projection of a
    /// zero identity embedding, as both reference implementations compute it.
    ///
    /// FaceID v1: `zero_image_clip_embeds` must be `None`. FaceID Plus: it must be the CLIP
    /// features of an all-zero pixel tensor (`torch.zeros_like(clip_image)`: zeros after the
    /// CLIP normalisation, not a black image), taken from the same vision tower and hidden
    /// state as the face's own features, `[1, tokens, width]` (repeated for the `n` images) or
    /// `[n, tokens, width]`; the same `options` as for the face's tokens apply.
    pub fn unconditional_tokens(
        &self,
        n: usize,
        zero_image_clip_embeds: Option<Tensor<3>>,
        options: &PlusOptions,
    ) -> Result<Tensor<3>, AdapterError> {
        if n == 0 {
            return Err(AdapterError::Embedding {
                found: vec![0, ID_EMBEDDING_DIM],
            });
        }
        let zeros = Tensor::<2>::zeros(
            [n, ID_EMBEDDING_DIM],
            (&self.device, self.precision.dtype()),
        );
        let clip_embeds = zero_image_clip_embeds.map(|clip| match clip.dims() {
            [1, _, _] if n > 1 => clip.repeat_dim(0, n),
            _ => clip,
        });
        let input = ProjectionInput {
            id_embedding: zeros,
            clip_embeds,
        };
        Ok(self.projection.forward(input, options)?)
    }
}

/// Number of attention processors a checkpoint covers (`ip_adapter.{i}.…`).
fn processor_count(names: &[String]) -> usize {
    names
        .iter()
        .filter_map(|n| {
            n.strip_prefix("ip_adapter.")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .map(|i| i + 1)
        .max()
        .unwrap_or(0)
}

/// Fuses `scale · alpha · up · down` into `projection` of `attention`.
fn fuse(
    attention: &mut Attention,
    projection: Projection,
    weights: &Weights,
    down_name: &str,
    up_name: &str,
    alpha: f32,
    scale: f32,
) -> Result<(), WeightError> {
    let (inner, query, context) = attention.dims();
    let (d_in, d_out) = match projection {
        Projection::Q => (query, inner),
        Projection::K | Projection::V => (context, inner),
        Projection::Out => (inner, query),
    };
    let rank = weights.shape_of(down_name).map_or(0, |s| s[0]);
    // Factors in f32: the fused sum is rounded once, to the layer's precision.
    let device = weights.device();
    let down = weights.host(down_name, &[rank, d_in])?.to_tensor(device);
    let up = weights.host(up_name, &[d_out, rank])?.to_tensor(device);
    attention
        .projection_mut(projection)
        .fuse_low_rank(down, up, alpha * scale);
    Ok(())
}
