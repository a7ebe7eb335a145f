//! The image projection of a FaceID checkpoint, whichever kind it is: the MLP of FaceID v1 or
//! the MLP + perceiver resampler of FaceID Plus (v1 and v2), told apart by the checkpoint's
//! tensors (`image_proj.perceiver_resampler.*`), as diffusers' loader does.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{FloatDType, Tensor};
use faceid_core::{Device, HostTensor, WeightError, Weights};

use crate::adapter::AdapterError;
use crate::perceiver::{HEAD_DIM, PerceiverDims};
use crate::plus::{FaceIdPlusProjection, PlusOptions};
use crate::projection::{FaceIdProjection, ID_EMBEDDING_DIM, ProjectionDims};

/// What image tokens are computed from.
#[derive(Debug, Clone)]
pub struct ProjectionInput {
    /// ArcFace identity embeddings, `[b, 512]` (normed, as insightface's `normed_embedding`).
    pub id_embedding: Tensor<2>,
    /// FaceID Plus only: the CLIP image features of each face, `[b, tokens, width]` (257 tokens
    /// for ViT-H/14; the vision tower's penultimate hidden states, `hidden_states[-2]`, without
    /// the final layer norm). `None` for the MLP projection of FaceID v1.
    pub clip_embeds: Option<Tensor<3>>,
}

impl ProjectionInput {
    /// Identity embeddings alone (FaceID v1).
    pub fn new(id_embedding: Tensor<2>) -> Self {
        Self {
            id_embedding,
            clip_embeds: None,
        }
    }

    /// Identity embeddings given as host values, `n × 512` of them (one `[512]` embedding or
    /// `[n, 512]` rows), in f32 on `device`; a length that is not a positive multiple of 512
    /// becomes a single row that the projection refuses with [`ProjectionError::IdEmbedding`].
    pub fn from_values(values: &[f32], device: &Device) -> Self {
        let len = values.len();
        let shape = if len > 0 && len % ID_EMBEDDING_DIM == 0 {
            vec![len / ID_EMBEDDING_DIM, ID_EMBEDDING_DIM]
        } else {
            vec![1, len]
        };
        Self::new(HostTensor::new(shape, values.to_vec()).to_tensor(device))
    }

    /// Adds the CLIP image features (FaceID Plus).
    pub fn with_clip_embeds(mut self, clip_embeds: Tensor<3>) -> Self {
        self.clip_embeds = Some(clip_embeds);
        self
    }
}

/// An input the projection cannot take.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProjectionError {
    /// The identity embeddings are not `[b, 512]` with `b > 0`.
    #[error("identity embeddings have shape {found:?}, expected [n, 512] with n > 0")]
    IdEmbedding {
        /// The shape given.
        found: Vec<usize>,
    },
    /// A FaceID Plus projection was given no CLIP image features.
    #[error(
        "this FaceID Plus adapter needs the CLIP image features of the face (`clip_embeds`, [{batch}, tokens, {width}]); none were given"
    )]
    MissingClipEmbeds {
        /// Rows expected.
        batch: usize,
        /// Feature width expected.
        width: usize,
    },
    /// The MLP projection (FaceID v1) was given CLIP image features.
    #[error(
        "this FaceID adapter (MLP projection, v1) takes no CLIP image features, but `clip_embeds` were given: use a FaceID Plus checkpoint, or leave them out"
    )]
    UnexpectedClipEmbeds,
    /// The CLIP image features have the wrong shape.
    #[error("`clip_embeds` have shape {found:?}, expected [{batch}, tokens > 0, {width}]")]
    ClipEmbeds {
        /// The shape given.
        found: Vec<usize>,
        /// Rows expected (those of the identity embeddings).
        batch: usize,
        /// Feature width expected (the vision tower's hidden size, `proj_in`'s input).
        width: usize,
    },
}

/// The projection from identities (and, for Plus, CLIP image features) to image tokens.
#[derive(Module, Debug)]
pub enum ImageProjection {
    /// FaceID v1: `MLPProjModel` / `IPAdapterFaceIDImageProjection`.
    Mlp(FaceIdProjection),
    /// FaceID Plus (v1 and v2): `ProjPlusModel` / `IPAdapterFaceIDPlusImageProjection`.
    Plus(FaceIdPlusProjection),
}

impl ImageProjection {
    /// Image tokens `[b, tokens, dim]` of `input`, computed in the projection's precision and
    /// returned in f32. `options` apply to Plus projections only.
    pub fn forward(
        &self,
        input: ProjectionInput,
        options: &PlusOptions,
    ) -> Result<Tensor<3>, ProjectionError> {
        let ProjectionInput {
            id_embedding,
            clip_embeds,
        } = input;
        let [batch, width] = id_embedding.dims();
        if batch == 0 || width != ID_EMBEDDING_DIM {
            return Err(ProjectionError::IdEmbedding {
                found: vec![batch, width],
            });
        }
        let tokens = match (self, clip_embeds) {
            (Self::Mlp(mlp), None) => mlp.forward(id_embedding),
            (Self::Mlp(_), Some(_)) => return Err(ProjectionError::UnexpectedClipEmbeds),
            (Self::Plus(plus), None) => {
                return Err(ProjectionError::MissingClipEmbeds {
                    batch,
                    width: plus.perceiver_resampler().dims().embedding_dim,
                });
            }
            (Self::Plus(plus), Some(clip)) => {
                let expected = plus.perceiver_resampler().dims().embedding_dim;
                let [rows, tokens, features] = clip.dims();
                if rows != batch || tokens == 0 || features != expected {
                    return Err(ProjectionError::ClipEmbeds {
                        found: vec![rows, tokens, features],
                        batch,
                        width: expected,
                    });
                }
                plus.forward(id_embedding, clip, options)
            }
        };
        Ok(tokens.cast(FloatDType::F32))
    }

    /// Image tokens per identity.
    pub fn tokens(&self) -> usize {
        match self {
            Self::Mlp(mlp) => mlp.tokens(),
            Self::Plus(plus) => plus.mlp().tokens(),
        }
    }

    /// Width of each token (the UNet's cross-attention width, what `to_k_ip` / `to_v_ip` take).
    pub fn dim(&self) -> usize {
        match self {
            Self::Mlp(mlp) => mlp.dim(),
            Self::Plus(plus) => plus.mlp().dim(),
        }
    }

    /// The width of the CLIP image features a Plus projection takes; `None` for the MLP.
    pub fn clip_width(&self) -> Option<usize> {
        match self {
            Self::Mlp(_) => None,
            Self::Plus(plus) => Some(plus.perceiver_resampler().dims().embedding_dim),
        }
    }

    /// Loads the projection under `image_proj.` of `weights` (the checkpoint at `path`), its
    /// kind and sizes read from the tensors present.
    pub(crate) fn load(weights: &Weights, path: &Path) -> Result<Self, AdapterError> {
        let scope = weights.root().at("image_proj");
        let mlp = mlp_dims(weights, path)?;
        if !scope.contains("perceiver_resampler.proj_in.weight") {
            return Ok(Self::Mlp(FaceIdProjection::load(&scope, mlp)?));
        }
        let resampler = perceiver_dims(weights, path, mlp.dim)?;
        Ok(Self::Plus(FaceIdPlusProjection::load(
            &scope, mlp, resampler,
        )?))
    }
}

/// The shape of tensor `name`, or the error naming it.
fn shape(weights: &Weights, path: &Path, name: &str) -> Result<Vec<usize>, WeightError> {
    weights.shape_of(name).ok_or_else(|| WeightError::Missing {
        name: name.to_owned(),
        origin: path.display().to_string(),
    })
}

/// The first dimension of tensor `name` (0 for a scalar, which the loader then refuses).
fn rows(weights: &Weights, path: &Path, name: &str) -> Result<usize, WeightError> {
    Ok(shape(weights, path, name)?.first().copied().unwrap_or(0))
}

/// Reads the MLP's sizes from its tensor shapes.
fn mlp_dims(weights: &Weights, path: &Path) -> Result<ProjectionDims, AdapterError> {
    let hidden = rows(weights, path, "image_proj.proj.0.weight")?;
    let dim = rows(weights, path, "image_proj.norm.weight")?;
    let outputs = rows(weights, path, "image_proj.proj.2.weight")?;
    if dim == 0 || outputs % dim != 0 {
        return Err(AdapterError::Unsupported {
            path: path.to_owned(),
            reason: format!(
                "image_proj.proj.2 has {outputs} outputs, not a multiple of the token width {dim}"
            ),
        });
    }
    Ok(ProjectionDims {
        hidden,
        tokens: outputs / dim,
        dim,
    })
}

/// Reads the resampler's sizes from its tensor shapes; its width is the MLP tokens' `dim`.
fn perceiver_dims(
    weights: &Weights,
    path: &Path,
    dim: usize,
) -> Result<PerceiverDims, AdapterError> {
    const PREFIX: &str = "image_proj.perceiver_resampler";
    let embedding_dim = shape(weights, path, &format!("{PREFIX}.proj_in.weight"))?
        .get(1)
        .copied()
        .unwrap_or(0);
    let inner = rows(weights, path, &format!("{PREFIX}.layers.0.0.to_q.weight"))?;
    let ff_inner = rows(weights, path, &format!("{PREFIX}.layers.0.1.1.weight"))?;
    let depth = weights
        .names()
        .iter()
        .filter_map(|n| {
            n.strip_prefix(&format!("{PREFIX}.layers."))?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .map(|i| i + 1)
        .max()
        .unwrap_or(0);
    if inner == 0 || inner % HEAD_DIM != 0 {
        return Err(AdapterError::Unsupported {
            path: path.to_owned(),
            reason: format!(
                "{PREFIX}.layers.0.0.to_q has {inner} outputs, not a positive multiple of the head width {HEAD_DIM}"
            ),
        });
    }
    Ok(PerceiverDims {
        embedding_dim,
        dim,
        inner,
        ff_inner,
        depth,
    })
}
