//! The weights each fal `model_type` needs, and getting them onto the machine.
//!
//! `weights/manifest.toml` says which files every model type reads and where they live. Hugging
//! Face files are found in, or downloaded into, the standard Hugging Face cache (`HF_HOME`,
//! `HF_HUB_CACHE`, `HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_OFFLINE` mean what they mean to the Python
//! tools, so either side reuses the other's downloads); insightface packs live where insightface
//! keeps them (`~/.insightface/models/<pack>/`). Downloads resume, are checked against their
//! SHA-256, and report progress through [`FetchProgress`].
//!
//! ```no_run
//! use faceid_hub::{ModelRequest, Quiet, Weights};
//! let weights = Weights::from_env()?;
//! let files = weights.resolve(
//!     &ModelRequest {
//!         model_type: "1_5-v1".into(),
//!         base_repo: None,
//!         local: Default::default(),
//!         adapter: true,
//!         face_analysis: true,
//!     },
//!     &mut Quiet,
//! )?;
//! println!("base model in {}", files.base.display());
//! # Ok::<(), faceid_hub::HubError>(())
//! ```
#![deny(missing_docs)]

mod error;
mod hub;
mod insightface;
mod manifest;
#[cfg(feature = "mock-hub")]
pub mod mock;
mod progress;
mod repo_id;
mod resolve;
mod settings;

pub use error::HubError;
pub use hub::{Fetched, Hub, RepoFile, expected_digest, sha256_file, verify};
pub use manifest::{
    BUILTIN_MANIFEST, Component, ComponentKind, FileEntry, Manifest, ModelTypeEntry, Sources,
    is_sha256,
};
#[cfg(feature = "progress-bars")]
pub use progress::ProgressBars;
pub use progress::{FetchProgress, Quiet};
pub use repo_id::{MAX_REPO_ID_LEN, check_repo_id};
pub use resolve::{LocalFiles, ModelFiles, ModelRequest, Weights};
pub use settings::{Env, HubSettings, ProcessEnv};
