//! diffusers' `IPAdapterFaceIDImageProjection` (models/embeddings.py), the original's
//! `MLPProjModel`: Linear(512 → 1024), exact GELU, Linear(1024 → tokens · dim), LayerNorm. FaceID
//! Plus starts with the same layers (`ProjPlusModel.proj` / `.norm`).

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::gelu;
use faceid_core::nn::{LayerNorm, Linear};
use faceid_core::{Scope, WeightError};

/// Width of the ArcFace identity embedding.
pub const ID_EMBEDDING_DIM: usize = 512;
/// LayerNorm epsilon of the projection (PyTorch's default).
const NORM_EPS: f64 = 1e-5;

/// Identity embedding to image tokens.
#[derive(Module, Debug)]
pub struct FaceIdProjection {
    proj_0: Linear,
    proj_2: Linear,
    norm: LayerNorm,
    tokens: usize,
    dim: usize,
}

impl FaceIdProjection {
    /// Loads `proj.0`, `proj.2` and `norm` under `scope` (`image_proj`); the token count and
    /// width are read from the tensor shapes, the hidden width from `proj.0`.
    pub fn load(scope: &Scope, dims: ProjectionDims) -> Result<Self, WeightError> {
        let ProjectionDims {
            hidden,
            tokens,
            dim,
        } = dims;
        Ok(Self {
            proj_0: Linear::load(&scope.at("proj.0"), ID_EMBEDDING_DIM, hidden, true)?,
            proj_2: Linear::load(&scope.at("proj.2"), hidden, tokens * dim, true)?,
            norm: LayerNorm::load(&scope.at("norm"), dim, NORM_EPS)?,
            tokens,
            dim,
        })
    }

    /// `[batch, 512]` identity embeddings to `[batch, tokens, dim]` image tokens, computed in
    /// the projection's precision (the input is converted to it).
    pub fn forward(&self, id_embedding: Tensor<2>) -> Tensor<3> {
        let [batch, _] = id_embedding.dims();
        let id_embedding = id_embedding.cast(self.proj_0.weight.val().dtype());
        let hidden = gelu(self.proj_0.forward(id_embedding));
        let tokens = self
            .proj_2
            .forward(hidden)
            .reshape([batch, self.tokens, self.dim]);
        self.norm.forward(tokens)
    }

    /// Image tokens per identity.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// Width of each token (the UNet's cross-attention width).
    pub fn dim(&self) -> usize {
        self.dim
    }
}

/// The sizes of a projection, as read from a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectionDims {
    /// Hidden width (1024 in the published checkpoints).
    pub hidden: usize,
    /// Image tokens (4).
    pub tokens: usize,
    /// Token width (the UNet's cross-attention width).
    pub dim: usize,
}
