//! Files of Hugging Face repositories: from the standard cache when present, else downloaded
//! into it (resumable) with hf-hub and checked against their SHA-256.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hf_hub::api::sync::{Api, ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};
use sha2::{Digest, Sha256};

use crate::error::HubError;
use crate::manifest::is_sha256;
use crate::progress::{FetchProgress, HfProgress};
use crate::settings::HubSettings;

/// A file in a repository at a revision.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoFile {
    /// `org/name`.
    pub repo: String,
    /// Branch, tag or commit.
    pub revision: String,
    /// Path in the repository.
    pub path: String,
}

impl std::fmt::Display for RepoFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.repo, self.path)
    }
}

/// Where a file came from.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The file in the cache (a snapshot path, as the Python tools lay it out).
    pub path: PathBuf,
    /// The path chosen in the repository (one of the candidates).
    pub repo_path: String,
    /// Whether it was downloaded now (rather than found in the cache).
    pub downloaded: bool,
}

impl Fetched {
    /// The snapshot folder the file lives in: `path` without `repo_path`.
    pub fn snapshot_root(&self) -> PathBuf {
        let depth = Path::new(&self.repo_path).components().count();
        let mut root = self.path.clone();
        for _ in 0..depth {
            root.pop();
        }
        root
    }
}

/// A client of the hub and of its cache.
pub struct Hub {
    settings: HubSettings,
    api: Api,
    listings: Mutex<HashMap<(String, String), Vec<String>>>,
}

impl Hub {
    /// A client for these settings (no network traffic yet).
    pub fn new(settings: HubSettings) -> Result<Self, HubError> {
        let api = ApiBuilder::from_cache(Cache::new(settings.cache_dir.clone()))
            .with_endpoint(settings.endpoint.clone())
            .with_token(settings.token.clone())
            .with_progress(false)
            .with_retries(settings.retries)
            .with_user_agent("faceid", env!("CARGO_PKG_VERSION"))
            .build()
            .map_err(|e| HubError::Download {
                what: "the hub client".into(),
                endpoint: settings.endpoint.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            settings,
            api,
            listings: Mutex::new(HashMap::new()),
        })
    }

    /// The settings in use.
    pub fn settings(&self) -> &HubSettings {
        &self.settings
    }

    fn repo(repo: &str, revision: &str) -> Repo {
        Repo::with_revision(repo.to_string(), RepoType::Model, revision.to_string())
    }

    /// The cached copy of a file, if any. A branch is looked up through `refs/`, a commit
    /// directly in `snapshots/`.
    pub fn cached(&self, file: &RepoFile) -> Option<PathBuf> {
        let cache = Cache::new(self.settings.cache_dir.clone());
        if let Some(path) = cache
            .repo(Self::repo(&file.repo, &file.revision))
            .get(&file.path)
        {
            return Some(path);
        }
        if file.revision.len() == 40 && file.revision.bytes().all(|b| b.is_ascii_hexdigit()) {
            let folder = format!("models--{}", file.repo.replace('/', "--"));
            let path = self
                .settings
                .cache_dir
                .join(folder)
                .join("snapshots")
                .join(&file.revision)
                .join(&file.path);
            return path.is_file().then_some(path);
        }
        None
    }

    /// The first of `candidates` that is cached, else the first that the repository has,
    /// downloaded. `sha256` pins the content; without it a download is checked against the
    /// digest the hub reports (its blob name).
    pub fn fetch(
        &self,
        repo: &str,
        revision: &str,
        candidates: &[String],
        sha256: &dyn Fn(&str) -> Option<String>,
        model_type: &str,
        progress: &mut dyn FetchProgress,
    ) -> Result<Fetched, HubError> {
        let file = |path: &str| RepoFile {
            repo: repo.to_string(),
            revision: revision.to_string(),
            path: path.to_string(),
        };
        for candidate in candidates {
            if let Some(path) = self.cached(&file(candidate)) {
                return Ok(Fetched {
                    path,
                    repo_path: candidate.clone(),
                    downloaded: false,
                });
            }
        }
        if self.settings.offline {
            return Err(HubError::Offline {
                flag_hint: String::new(),
                what: format!("{repo}/{}", candidates.join(" or ")),
                cache: self.settings.cache_dir.clone(),
                model_type: model_type.to_string(),
            });
        }
        let chosen = if candidates.len() == 1 {
            candidates[0].clone()
        } else {
            let listing = self.listing(repo, revision)?;
            candidates
                .iter()
                .find(|c| listing.contains(c))
                .cloned()
                .ok_or_else(|| HubError::NotFound {
                    repo: repo.to_string(),
                    file: format!("any of {}", candidates.join(", ")),
                    revision: revision.to_string(),
                    endpoint: self.settings.endpoint.clone(),
                })?
        };
        let target = file(&chosen);
        let path = self.download(&target, progress)?;
        verify(&path, sha256(&chosen).as_deref(), &target.to_string())?;
        progress.finish();
        Ok(Fetched {
            path,
            repo_path: chosen,
            downloaded: true,
        })
    }

    /// The files of a repository at a revision (one request per repository and run).
    fn listing(&self, repo: &str, revision: &str) -> Result<Vec<String>, HubError> {
        let key = (repo.to_string(), revision.to_string());
        if let Some(found) = self.listings.lock().expect("listing lock").get(&key) {
            return Ok(found.clone());
        }
        let info = self
            .api
            .repo(Self::repo(repo, revision))
            .info()
            .map_err(|e| self.api_error(e, repo, "(file listing)", revision))?;
        let files: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
        self.listings
            .lock()
            .expect("listing lock")
            .insert(key, files.clone());
        Ok(files)
    }

    /// Downloads a file into the cache, resuming a partial download left by an earlier run.
    pub fn download(
        &self,
        file: &RepoFile,
        progress: &mut dyn FetchProgress,
    ) -> Result<PathBuf, HubError> {
        let adapter = HfProgress {
            inner: progress,
            what: file.to_string(),
            started: false,
        };
        self.api
            .repo(Self::repo(&file.repo, &file.revision))
            .download_with_progress(&file.path, adapter)
            .map_err(|e| self.api_error(e, &file.repo, &file.path, &file.revision))
    }

    fn api_error(&self, err: ApiError, repo: &str, file: &str, revision: &str) -> HubError {
        let status = match &err {
            ApiError::RequestError(e) => match e.as_ref() {
                ureq::Error::StatusCode(code) => Some(*code),
                _ => None,
            },
            _ => None,
        };
        match status {
            Some(code @ (401 | 403)) => HubError::Gated {
                repo: repo.to_string(),
                file: file.to_string(),
                status: code,
                page: format!("{}/{repo}", self.settings.endpoint),
                token_hint: if self.settings.token.is_some() {
                    " and the token sent (HF_TOKEN) has no access to it".into()
                } else {
                    " and no token was sent".into()
                },
            },
            Some(404) => HubError::NotFound {
                repo: repo.to_string(),
                file: file.to_string(),
                revision: revision.to_string(),
                endpoint: self.settings.endpoint.clone(),
            },
            _ => HubError::Download {
                what: format!("{repo}/{file}"),
                endpoint: self.settings.endpoint.clone(),
                reason: err.to_string(),
            },
        }
    }
}

/// The SHA-256 of a file, in lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, HubError> {
    let mut file = std::fs::File::open(path).map_err(HubError::io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(HubError::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The digest a cached file must have: the pinned one, else its blob name when the hub named
/// the blob by SHA-256 (every LFS file; small git files are named by their git hash instead).
pub fn expected_digest(path: &Path, pinned: Option<&str>) -> Option<String> {
    if let Some(pinned) = pinned {
        return Some(pinned.to_ascii_lowercase());
    }
    let target = std::fs::read_link(path).ok()?;
    let blob = target.file_name()?.to_str()?;
    is_sha256(blob).then(|| blob.to_ascii_lowercase())
}

/// Checks a cached file against its expected digest; a corrupt copy is deleted (blob and
/// snapshot link) so that the next fetch downloads it again.
pub fn verify(path: &Path, pinned: Option<&str>, what: &str) -> Result<(), HubError> {
    let Some(expected) = expected_digest(path, pinned) else {
        return Ok(());
    };
    let actual = sha256_file(path)?;
    if actual == expected {
        return Ok(());
    }
    if let Ok(blob) = std::fs::canonicalize(path) {
        let _ = std::fs::remove_file(blob);
    }
    let _ = std::fs::remove_file(path);
    Err(HubError::HashMismatch {
        what: what.to_string(),
        expected,
        actual,
    })
}
