//! What can go wrong loading a checkpoint: each error names the file or tensor and what is wrong.

use std::path::PathBuf;

/// A tensor that could not be loaded, or a checkpoint that does not match its model.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    /// A file could not be opened or read.
    #[error("cannot read weights file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file is not a valid checkpoint.
    #[error("{path} is not a valid checkpoint: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No weights file was found where one was expected.
    #[error("no weights found in {dir}: expected {expected}")]
    NotFound {
        /// The folder searched.
        dir: PathBuf,
        /// The file names that were tried.
        expected: String,
    },
    /// The model needs a tensor the checkpoint does not have.
    #[error(
        "tensor `{name}` is missing from {origin}: the checkpoint does not match the model config"
    )]
    Missing {
        /// The checkpoint name of the tensor.
        name: String,
        /// Where the weights come from.
        origin: String,
    },
    /// A tensor has another shape than the config implies.
    #[error(
        "tensor `{name}` in {origin} has shape {found:?}, the model config expects {expected:?}"
    )]
    Shape {
        /// The checkpoint name of the tensor.
        name: String,
        /// Where the weights come from.
        origin: String,
        /// The shape in the checkpoint.
        found: Vec<usize>,
        /// The shape the model expects.
        expected: Vec<usize>,
    },
    /// A tensor is stored in a type that cannot be converted to a float.
    #[error("tensor `{name}` in {origin} has dtype {dtype}, expected F32, F16 or BF16")]
    Dtype {
        /// The checkpoint name of the tensor.
        name: String,
        /// Where the weights come from.
        origin: String,
        /// The stored dtype.
        dtype: String,
    },
    /// The same tensor name appears in two shards.
    #[error("tensor `{name}` appears twice in {origin}")]
    Duplicate {
        /// The checkpoint name of the tensor.
        name: String,
        /// Where the weights come from.
        origin: String,
    },
    /// The checkpoint has tensors the model does not use.
    #[error(
        "{origin} has {} tensor(s) the model does not use ({}): the checkpoint does not match the model config",
        names.len(), preview(names)
    )]
    Unused {
        /// Where the weights come from.
        origin: String,
        /// The unused names, sorted.
        names: Vec<String>,
    },
}

fn preview(names: &[String]) -> String {
    let mut out = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        out.push_str(", ...");
    }
    out
}
