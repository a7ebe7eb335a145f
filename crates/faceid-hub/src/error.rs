//! Everything that can go wrong getting weights, with what to do about it.

use std::path::PathBuf;

/// A failure to find, download or verify weights.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The manifest cannot be read or is inconsistent.
    #[error("weights manifest {origin}: {reason}")]
    Manifest {
        /// The file (or `weights/manifest.toml` for the built-in one).
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// A repository id is not one the hub accepts.
    #[error("invalid repository id {repo:?}: {reason}")]
    RepoId {
        /// The id given.
        repo: String,
        /// What is wrong.
        reason: String,
    },
    /// The model type is not in the manifest.
    #[error("unknown model type '{name}': expected one of {known}")]
    UnknownModelType {
        /// The name asked for.
        name: String,
        /// The names the manifest knows.
        known: String,
    },
    /// The weights of a component have not been published.
    #[error("{component}: the weights are not published; pass {flag} with a local file")]
    NotPublished {
        /// The component (`faceid-auraface-sd15`).
        component: String,
        /// The option that supplies the file instead.
        flag: String,
    },
    /// Offline and the file is not cached.
    #[error(
        "HF_HUB_OFFLINE is set and {what} is not in the cache at {cache}: run `faceid fetch --model-type {model_type}` once online{flag_hint}, or unset HF_HUB_OFFLINE"
    )]
    Offline {
        /// How to supply the file locally instead (`, or pass a local file with --vae`).
        flag_hint: String,
        /// `repo/file`.
        what: String,
        /// The cache looked in.
        cache: PathBuf,
        /// The model type being resolved (for the hint).
        model_type: String,
    },
    /// 401/403: a gated or private repository, or a bad token.
    #[error(
        "the hub answered {status} for {repo}/{file}: the repository is gated or private{token_hint}. Accept its terms at {page} and set HF_TOKEN to a token with access"
    )]
    Gated {
        /// The repository.
        repo: String,
        /// The file asked for.
        file: String,
        /// 401 or 403.
        status: u16,
        /// The repository's page on the hub.
        page: String,
        /// Whether a token was sent.
        token_hint: String,
    },
    /// 404.
    #[error("{repo} has no {file} at revision {revision} ({endpoint})")]
    NotFound {
        /// The repository.
        repo: String,
        /// The file, or every candidate tried.
        file: String,
        /// The revision.
        revision: String,
        /// The hub asked.
        endpoint: String,
    },
    /// The network or the server failed.
    #[error(
        "cannot download {what} from {endpoint}: {reason}. Check the network and HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use the cache alone"
    )]
    Download {
        /// What was being downloaded.
        what: String,
        /// The site.
        endpoint: String,
        /// The underlying failure.
        reason: String,
    },
    /// The content does not have the expected digest.
    #[error(
        "{what}: SHA-256 {actual} does not match the expected {expected}; the corrupt copy was deleted, fetch again"
    )]
    HashMismatch {
        /// `repo/file`.
        what: String,
        /// The digest expected.
        expected: String,
        /// The digest found.
        actual: String,
    },
    /// An insightface pack archive lacks a file or is not a zip.
    #[error("insightface pack {pack}: {reason}")]
    Pack {
        /// The pack (`buffalo_l`).
        pack: String,
        /// What is wrong.
        reason: String,
    },
    /// The cached files of a component belong to different commits.
    #[error("{component}: {reason}")]
    MixedCommits {
        /// The component.
        component: String,
        /// Which files, and what to do.
        reason: String,
    },
    /// A local file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl HubError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
