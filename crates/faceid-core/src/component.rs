//! Finding the weight files of a diffusers/transformers component folder: plain, `fp16`/`bf16`
//! variants, and sharded checkpoints with their `*.index.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::weights::{WeightError, parent_of};

/// How the weights of one diffusers component (`unet/`, `vae/`, `text_encoder/`) are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentFiles {
    /// The safetensors files, in shard order.
    pub files: Vec<PathBuf>,
}

impl ComponentFiles {
    /// Finds the weights of a diffusers/transformers component folder whose files are named
    /// `{stem}.safetensors` (`diffusion_pytorch_model`, `model`). The `variant` (`fp16`) is used
    /// when given and present, and also when it is the only one present. Sharded checkpoints are
    /// read from their `*.index.json`.
    pub fn find(dir: &Path, stem: &str, variant: Option<&str>) -> Result<Self, WeightError> {
        let plain = [
            format!("{stem}.safetensors"),
            format!("{stem}.safetensors.index.json"),
        ];
        let variants = ["fp16", "bf16"];
        let mut candidates: Vec<String> = Vec::new();
        let with_variant = |v: &str| {
            [
                format!("{stem}.{v}.safetensors"),
                format!("{stem}.safetensors.index.{v}.json"),
                format!("{stem}.{v}.safetensors.index.json"),
            ]
        };
        if let Some(v) = variant {
            candidates.extend(with_variant(v));
        }
        candidates.extend(plain);
        if variant.is_none() {
            for v in variants {
                candidates.extend(with_variant(v));
            }
        }
        for name in &candidates {
            let path = dir.join(name);
            if !path.is_file() {
                continue;
            }
            if name.ends_with(".json") {
                return Ok(Self {
                    files: shards_from_index(&path)?,
                });
            }
            return Ok(Self { files: vec![path] });
        }
        Err(WeightError::NotFound {
            dir: dir.to_owned(),
            expected: candidates.join(" or "),
        })
    }
}

fn shards_from_index(index: &Path) -> Result<Vec<PathBuf>, WeightError> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(index).map_err(|source| WeightError::Io {
        path: index.to_owned(),
        source,
    })?;
    let parsed: Index = serde_json::from_str(&text).map_err(|e| WeightError::Format {
        path: index.to_owned(),
        reason: e.to_string(),
    })?;
    let mut files: Vec<String> = parsed.weight_map.into_values().collect();
    files.sort();
    files.dedup();
    let dir = parent_of(index);
    let mut paths = Vec::with_capacity(files.len());
    for file in files {
        if file.contains('/') || file.contains('\\') || file.contains("..") {
            return Err(WeightError::Format {
                path: index.to_owned(),
                reason: format!("shard name `{file}` points outside the folder"),
            });
        }
        paths.push(dir.join(file));
    }
    Ok(paths)
}
