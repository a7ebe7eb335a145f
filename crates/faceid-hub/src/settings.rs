//! Where files are cached and fetched from, read from the environment the way the Python tools
//! read it, so both share one cache.

use std::path::{Path, PathBuf};

use crate::manifest::Manifest;

/// Where files are cached and fetched from.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// The Hugging Face hub cache (`models--org--name/{blobs,refs,snapshots}`).
    pub cache_dir: PathBuf,
    /// The hub's address.
    pub endpoint: String,
    /// An access token for gated or private repositories.
    pub token: Option<String>,
    /// Use the caches only; never touch the network.
    pub offline: bool,
    /// insightface's root (`~/.insightface`): packs live in `<root>/models/<pack>/`.
    pub insightface_root: PathBuf,
    /// insightface's download site.
    pub insightface_url: String,
    /// Attempts after a failed transfer (each resumes where the last stopped).
    pub retries: usize,
}

/// An environment: how a variable is looked up (the process environment, or a map in tests).
pub trait Env {
    /// The variable's value, if set and not empty.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl<const N: usize> Env for [(&str, &str); N] {
    fn var(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
            .filter(|v| !v.is_empty())
    }
}

impl HubSettings {
    /// Settings from the process environment; sites default to the manifest's.
    pub fn from_env(manifest: &Manifest) -> Self {
        Self::from(&ProcessEnv, manifest)
    }

    /// Settings from an environment, as `huggingface_hub` reads it:
    /// - cache: `HF_HUB_CACHE`, else `HF_HOME/hub`, else `XDG_CACHE_HOME/huggingface/hub`, else
    ///   `~/.cache/huggingface/hub`;
    /// - token: `HF_TOKEN`, else the file `HF_TOKEN_PATH`, else `HF_HOME/token`;
    /// - endpoint: `HF_ENDPOINT`; offline: `HF_HUB_OFFLINE` (1, true, yes or on);
    /// - insightface: `FACEID_INSIGHTFACE_ROOT` (default `~/.insightface`) and
    ///   `FACEID_INSIGHTFACE_URL`.
    pub fn from(env: &dyn Env, manifest: &Manifest) -> Self {
        let home = env.var("HOME").map(PathBuf::from).unwrap_or_default();
        let hf_home = env.var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            env.var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".cache"))
                .join("huggingface")
        });
        let cache_dir = env
            .var("HF_HUB_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let token = env.var("HF_TOKEN").or_else(|| {
            let path = env
                .var("HF_TOKEN_PATH")
                .map(PathBuf::from)
                .unwrap_or_else(|| hf_home.join("token"));
            read_token(&path)
        });
        let offline = env.var("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
        });
        let endpoint = env
            .var("HF_ENDPOINT")
            .unwrap_or_else(|| manifest.sources.hub.clone());
        Self {
            cache_dir,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
            offline,
            insightface_root: env
                .var("FACEID_INSIGHTFACE_ROOT")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".insightface")),
            insightface_url: env
                .var("FACEID_INSIGHTFACE_URL")
                .unwrap_or_else(|| manifest.sources.insightface.clone())
                .trim_end_matches('/')
                .to_string(),
            retries: 3,
        }
    }
}

fn read_token(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let token = text.trim();
    (!token.is_empty()).then(|| token.to_string())
}
