//! Typed configuration files (`config.json`, `scheduler_config.json`, ...).

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid JSON for this model.
    #[error("invalid config {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The underlying error, naming the field.
        source: serde_json::Error,
    },
    /// A value is valid JSON but not supported by this implementation.
    #[error("config {path}: `{field}` = {value} is not supported ({hint})")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// The offending field.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is supported instead.
        hint: &'static str,
    },
}

/// Reads and deserialises a JSON configuration file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Builds the [`ConfigError::Unsupported`] for `field` of the file at `path`.
pub fn unsupported(
    path: &Path,
    field: &'static str,
    value: impl std::fmt::Debug,
    hint: &'static str,
) -> ConfigError {
    ConfigError::Unsupported {
        path: path.to_owned(),
        field,
        value: format!("{value:?}"),
        hint,
    }
}
