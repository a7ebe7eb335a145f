//! Loading a FaceID checkpoint (`.bin` torch pickle or `.safetensors`) and installing it into a
//! UNet: the projection is kept, the IP branch goes into every cross-attention layer and the LoRA
//! is fused into every attention layer's weights.

use std::path::{Path, PathBuf};

use burn::tensor::{FloatDType, Tensor};
use faceid_blocks::{Attention, IpAttention, Projection};
use faceid_core::nn::Linear;
use faceid_core::{Device, Precision, WeightError, Weights};
use faceid_unet::UNet2DConditionModel;

use crate::lora::{LoraSource, PROJECTIONS, checkpoint_suffix, kohya_name};
use crate::projection::{FaceIdProjection, ID_EMBEDDING_DIM, ProjectionDims};

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

/// An IP-Adapter FaceID installed in a UNet: what remains outside it is the projection from
/// identity embeddings to image tokens.
#[derive(Debug)]
pub struct FaceIdAdapter {
    projection: FaceIdProjection,
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
    /// Loads the checkpoint at `path` and installs it into `unet`, in the UNet's precision.
    /// Processor `i` of the checkpoint is the `i`-th attention layer in diffusers'
    /// `attn_processors` order.
    pub fn install(
        path: &Path,
        unet: &mut UNet2DConditionModel,
        options: &AdapterOptions,
        device: &Device,
    ) -> Result<Self, AdapterError> {
        let precision = unet.precision();
        let mut weights = open(path, device)?.with_precision(precision);
        let names = weights.names();
        if names.iter().any(|n| n.contains("perceiver_resampler")) {
            return Err(AdapterError::Unsupported {
                path: path.to_owned(),
                reason: "this is a FaceID Plus checkpoint (perceiver resampler); only the MLP projection of FaceID v1 (1_5-v1, SDXL-v1) is supported so far".into(),
            });
        }
        if !names.iter().any(|n| n.starts_with("image_proj.")) {
            return Err(AdapterError::Unsupported {
                path: path.to_owned(),
                reason: "no `image_proj` tensors: not an IP-Adapter checkpoint".into(),
            });
        }
        if options.lora != LoraSource::Checkpoint {
            weights = weights.allow_unused_suffixes(&["_lora.down.weight", "_lora.up.weight"]);
        }
        let dims = projection_dims(&weights, path)?;
        let projection = FaceIdProjection::load(&weights.root().at("image_proj"), dims)?;

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
                let to_k_ip = Linear::load(&scope.at("to_k_ip"), dims.dim, inner, false)?;
                let to_v_ip = Linear::load(&scope.at("to_v_ip"), dims.dim, inner, false)?;
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

    /// Image tokens `[n, tokens, dim]` of identity embeddings given as `n × 512` values,
    /// computed in the adapter's precision and returned in f32.
    pub fn image_tokens(
        &self,
        embeddings: &[f32],
        shape: &[usize],
    ) -> Result<Tensor<3>, AdapterError> {
        let n = match shape {
            [ID_EMBEDDING_DIM] => 1,
            [n, ID_EMBEDDING_DIM] if *n > 0 => *n,
            _ => {
                return Err(AdapterError::Embedding {
                    found: shape.to_vec(),
                });
            }
        };
        let data = faceid_core::HostTensor::new(vec![n, ID_EMBEDDING_DIM], embeddings.to_vec());
        let tokens = self
            .projection
            .forward(data.to_tensor_in(&self.device, self.precision));
        Ok(tokens.cast(FloatDType::F32))
    }

    /// The projection from identity embeddings to image tokens.
    pub fn projection(&self) -> &FaceIdProjection {
        &self.projection
    }

    /// The image tokens of the unconditional branch: the projection of a zero embedding (f32).
    pub fn unconditional_tokens(&self, n: usize) -> Tensor<3> {
        let zeros = Tensor::<2>::zeros(
            [n, ID_EMBEDDING_DIM],
            (&self.device, self.precision.dtype()),
        );
        self.projection.forward(zeros).cast(FloatDType::F32)
    }
}

/// Reads the projection's sizes from its tensor shapes.
fn projection_dims(weights: &Weights, path: &Path) -> Result<ProjectionDims, AdapterError> {
    let shape = |name: &str| {
        weights.shape_of(name).ok_or_else(|| WeightError::Missing {
            name: name.to_owned(),
            origin: path.display().to_string(),
        })
    };
    let hidden = shape("image_proj.proj.0.weight")?[0];
    let dim = shape("image_proj.norm.weight")?[0];
    let rows = shape("image_proj.proj.2.weight")?[0];
    if dim == 0 || rows % dim != 0 {
        return Err(AdapterError::Unsupported {
            path: path.to_owned(),
            reason: format!(
                "image_proj.proj.2 has {rows} outputs, not a multiple of the token width {dim}"
            ),
        });
    }
    Ok(ProjectionDims {
        hidden,
        tokens: rows / dim,
        dim,
    })
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
