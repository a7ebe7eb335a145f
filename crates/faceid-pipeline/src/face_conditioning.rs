//! What a face contributes to a FaceID run, as data that can be computed once and reused: the
//! ArcFace identity and, for the Plus models, the CLIP image features of the aligned face.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use faceid_core::HostTensor;
use faceid_core::tensor_file::{
    TensorFileError, read_named_tensors, read_tensor, write_named_tensors,
};

/// Name of the identity tensor in a face file.
pub const ID_EMBEDDING: &str = "id_embedding";
/// Name of the CLIP features tensor in a face file.
pub const CLIP_EMBEDS: &str = "clip_embeds";

/// The face conditioning of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceConditioning {
    /// The normalised (averaged) ArcFace identity, `[1, 512]`.
    pub id_embedding: HostTensor,
    /// The penultimate CLIP hidden states of the aligned face crop (averaged over several
    /// faces), `[1, tokens, width]` (`[1, 257, 1280]` for ViT-H/14); Plus models only.
    pub clip_embeds: Option<HostTensor>,
}

/// A face file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FaceFileError {
    /// The file is unreadable or not a tensor file.
    #[error(transparent)]
    File(#[from] TensorFileError),
    /// The file holds tensors other than a face's.
    #[error(
        "{path}: expected one identity tensor, or `{ID_EMBEDDING}` with an optional `{CLIP_EMBEDS}`; found {found:?}"
    )]
    Content {
        /// The file.
        path: PathBuf,
        /// The tensor names in it.
        found: Vec<String>,
    },
    /// A `.npy` file holds one tensor: the CLIP features would be lost.
    #[error(
        "{path}: a .npy file holds the identity only; write a .safetensors file to keep the face's CLIP features"
    )]
    NpyCannotHoldClip {
        /// The file.
        path: PathBuf,
    },
}

impl FaceConditioning {
    /// An identity alone (`[512]` or `[1, 512]`).
    pub fn identity(id_embedding: HostTensor) -> Self {
        Self {
            id_embedding,
            clip_embeds: None,
        }
    }

    /// Reads a face file written by [`FaceConditioning::write`] (`faceid embed`), or a plain
    /// identity: `.npy`, or `.safetensors` with a single tensor.
    pub fn read(path: &Path) -> Result<Self, FaceFileError> {
        let is_safetensors = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
        if !is_safetensors {
            return Ok(Self::identity(read_tensor(path)?));
        }
        let (mut tensors, _) = read_named_tensors(path)?;
        if let [(_, single)] = tensors.as_mut_slice() {
            return Ok(Self::identity(std::mem::replace(
                single,
                HostTensor::new(vec![0], Vec::new()),
            )));
        }
        let names: Vec<String> = tensors.iter().map(|(n, _)| n.clone()).collect();
        let mut by_name: HashMap<String, HostTensor> = tensors.into_iter().collect();
        let content = || FaceFileError::Content {
            path: path.to_owned(),
            found: names.clone(),
        };
        let id_embedding = by_name.remove(ID_EMBEDDING).ok_or_else(content)?;
        let clip_embeds = by_name.remove(CLIP_EMBEDS);
        if !by_name.is_empty() {
            return Err(content());
        }
        Ok(Self {
            id_embedding,
            clip_embeds,
        })
    }

    /// Writes the face as `.safetensors` (`id_embedding`, and `clip_embeds` when present), or
    /// the identity alone as `.npy`.
    pub fn write(&self, path: &Path) -> Result<(), FaceFileError> {
        let is_npy = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
        if is_npy && self.clip_embeds.is_some() {
            return Err(FaceFileError::NpyCannotHoldClip {
                path: path.to_owned(),
            });
        }
        if is_npy {
            faceid_core::tensor_file::write_tensor(path, &self.id_embedding)?;
            return Ok(());
        }
        let mut tensors = vec![(ID_EMBEDDING, &self.id_embedding)];
        if let Some(clip) = &self.clip_embeds {
            tensors.push((CLIP_EMBEDS, clip));
        }
        write_named_tensors(path, &tensors, None)?;
        Ok(())
    }
}
