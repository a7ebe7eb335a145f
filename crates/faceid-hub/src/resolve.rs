//! From a model type to local files: every component found in the caches or fetched, with
//! local paths replacing any of them.

use std::path::{Path, PathBuf};

use crate::error::HubError;
use crate::hub::{Fetched, Hub};
use crate::insightface::{PackRequest, pack_dir};
use crate::manifest::{Component, ComponentKind, Manifest};
use crate::progress::FetchProgress;
use crate::repo_id::check_repo_id;
use crate::settings::HubSettings;

/// Local files that replace manifest entries; `None` means "from the manifest".
#[derive(Debug, Clone, Default)]
pub struct LocalFiles {
    /// A diffusers folder replacing the base model.
    pub base: Option<PathBuf>,
    /// A VAE folder replacing the model type's VAE.
    pub vae: Option<PathBuf>,
    /// An IP-Adapter checkpoint.
    pub ip_adapter: Option<PathBuf>,
    /// A CLIP image encoder folder.
    pub image_encoder: Option<PathBuf>,
    /// A face detector ONNX file.
    pub detector: Option<PathBuf>,
    /// An ArcFace ONNX file.
    pub recognizer: Option<PathBuf>,
}

/// What to resolve.
#[derive(Debug, Clone)]
pub struct ModelRequest {
    /// The fal model type (`1_5-v1`).
    pub model_type: String,
    /// A base model repository replacing the manifest's (`base_1_5_model_repo` /
    /// `base_sdxl_model_repo`).
    pub base_repo: Option<String>,
    /// Local replacements.
    pub local: LocalFiles,
    /// Whether the IP-Adapter (and the image encoder of Plus models) is needed: a prompt
    /// without a face needs only the base model.
    pub adapter: bool,
    /// Whether the face detector and recognizer are needed (not for a precomputed embedding).
    pub face_analysis: bool,
}

/// Local paths of everything a model type needs.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// The diffusers folder of the base model.
    pub base: PathBuf,
    /// The VAE folder replacing the base model's own.
    pub vae: Option<PathBuf>,
    /// The IP-Adapter checkpoint.
    pub ip_adapter: Option<PathBuf>,
    /// The CLIP image encoder folder (Plus models).
    pub image_encoder: Option<PathBuf>,
    /// The face detector; `None` when the caller supplies its own.
    pub detector: Option<PathBuf>,
    /// The ArcFace recognizer.
    pub recognizer: Option<PathBuf>,
    /// Files downloaded by this call (repository paths).
    pub downloaded: Vec<String>,
}

/// The manifest with a hub client: resolves model types to local files.
pub struct Weights {
    manifest: Manifest,
    hub: Hub,
}

impl Weights {
    /// The manifest and settings to use.
    pub fn new(manifest: Manifest, settings: HubSettings) -> Result<Self, HubError> {
        Ok(Self {
            manifest,
            hub: Hub::new(settings)?,
        })
    }

    /// The built-in manifest with settings from the process environment.
    pub fn from_env() -> Result<Self, HubError> {
        let manifest = Manifest::builtin();
        let settings = HubSettings::from_env(&manifest);
        Self::new(manifest, settings)
    }

    /// The manifest in use.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The hub client in use.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Finds or fetches everything `request` needs.
    pub fn resolve(
        &self,
        request: &ModelRequest,
        progress: &mut dyn FetchProgress,
    ) -> Result<ModelFiles, HubError> {
        let entry = self.manifest.model_type(&request.model_type)?;
        if let Some(repo) = &request.base_repo {
            check_repo_id(repo).map_err(|reason| HubError::RepoId {
                repo: repo.clone(),
                reason,
            })?;
        }
        let mut run = Run {
            weights: self,
            model_type: &request.model_type,
            progress,
            downloaded: Vec::new(),
        };
        let local = &request.local;
        let base = match &local.base {
            Some(path) => path.clone(),
            None => run.folder(
                &entry.base,
                request.base_repo.as_deref(),
                None,
                "--base-model",
            )?,
        };
        let vae = match (&local.vae, &entry.vae, &local.base) {
            (Some(path), _, _) => Some(path.clone()),
            // A local base model brings its own VAE unless one is given.
            (None, _, Some(_)) | (None, None, _) => None,
            (None, Some(vae), None) => Some(run.folder(vae, None, None, "--vae")?),
        };
        let mut files = ModelFiles {
            base,
            vae,
            ip_adapter: None,
            image_encoder: None,
            detector: None,
            recognizer: None,
            downloaded: Vec::new(),
        };
        if request.adapter {
            files.ip_adapter = Some(match &local.ip_adapter {
                Some(path) => path.clone(),
                None => run.single_file(&entry.ip_adapter, "--ip-adapter")?,
            });
            files.image_encoder = match (&local.image_encoder, &entry.image_encoder) {
                (Some(path), _) => Some(path.clone()),
                (None, None) => None,
                (None, Some(name)) => {
                    Some(run.folder(name, None, Some("config.json"), "--image-encoder")?)
                }
            };
        }
        if request.face_analysis {
            let (detector, recognizer) = match (&local.detector, &local.recognizer) {
                (d, Some(r)) => (d.clone(), r.clone()),
                (d, None) => {
                    let (pack_detector, recognizer) = run.face(&entry.face)?;
                    (d.clone().or(Some(pack_detector)), recognizer)
                }
            };
            files.detector = detector;
            files.recognizer = Some(recognizer);
        }
        files.downloaded = run.downloaded;
        Ok(files)
    }
}

/// One resolution: the downloads it made and where it reports progress.
struct Run<'a> {
    weights: &'a Weights,
    model_type: &'a str,
    progress: &'a mut dyn FetchProgress,
    downloaded: Vec<String>,
}

impl Run<'_> {
    fn component(&self, name: &str, flag: &str) -> Result<&Component, HubError> {
        let component = self.weights.manifest.component(name)?;
        if !component.published {
            return Err(HubError::NotPublished {
                component: format!("{name} (model type {})", self.model_type),
                flag: flag.to_string(),
            });
        }
        Ok(component)
    }

    /// Every file of a hub component; returns them in manifest order.
    fn files(
        &mut self,
        name: &str,
        repo: Option<&str>,
        flag: &str,
    ) -> Result<Vec<Fetched>, HubError> {
        let component = self.component(name, flag)?.clone();
        let repo = repo
            .or(component.repo.as_deref())
            .expect("the manifest check requires a repo")
            .to_string();
        let hub = &self.weights.hub;
        let mut noticed = false;
        let mut fetched = Vec::with_capacity(component.files.len());
        for entry in &component.files {
            let candidates = entry.candidates();
            let cached = candidates.iter().any(|c| {
                hub.cached(&crate::hub::RepoFile {
                    repo: repo.clone(),
                    revision: component.revision().to_string(),
                    path: c.clone(),
                })
                .is_some()
            });
            if !cached && !noticed && !hub.settings().offline {
                noticed = true;
                self.notice_licence(name, &repo, &component);
            }
            let sha = |path: &str| component.sha256.get(path).cloned();
            let file = hub
                .fetch(
                    &repo,
                    component.revision(),
                    candidates,
                    &sha,
                    self.model_type,
                    self.progress,
                )
                .map_err(|e| with_flag(e, flag))?;
            if file.downloaded {
                self.downloaded.push(format!("{repo}/{}", file.repo_path));
            }
            fetched.push(file);
        }
        Ok(fetched)
    }

    fn notice_licence(&mut self, name: &str, repo: &str, component: &Component) {
        let mut message = format!(
            "downloading {name} from {repo} (licence: {})",
            component.license
        );
        if !component.commercial_use {
            message.push_str(": these weights are for non-commercial use only");
        }
        self.progress.notice(&message);
    }

    /// A folder component: the snapshot folder all its files share (`anchor` names the file
    /// whose folder is the component's, for components inside a subfolder of the repo).
    fn folder(
        &mut self,
        name: &str,
        repo: Option<&str>,
        anchor: Option<&str>,
        flag: &str,
    ) -> Result<PathBuf, HubError> {
        let files = self.files(name, repo, flag)?;
        let roots: Vec<PathBuf> = files.iter().map(Fetched::snapshot_root).collect();
        if let Some(stray) = roots.iter().position(|r| *r != roots[0]) {
            return Err(HubError::MixedCommits {
                component: name.to_string(),
                reason: format!(
                    "{} and {} are cached from different commits of the repository; delete {} and fetch again",
                    files[0].repo_path,
                    files[stray].repo_path,
                    roots[stray].display()
                ),
            });
        }
        let root = roots.into_iter().next().expect("a component has files");
        Ok(match anchor {
            None => root,
            Some(anchor) => {
                let file = files
                    .iter()
                    .find(|f| f.repo_path.ends_with(anchor))
                    .expect("the anchor file is in the manifest");
                file.path.parent().map(Path::to_owned).unwrap_or(root)
            }
        })
    }

    /// A component of one file.
    fn single_file(&mut self, name: &str, flag: &str) -> Result<PathBuf, HubError> {
        let mut files = self.files(name, None, flag)?;
        Ok(files.remove(0).path)
    }

    /// The detector and recognizer of a face component.
    fn face(&mut self, name: &str) -> Result<(PathBuf, PathBuf), HubError> {
        let component = self.component(name, "--recognizer")?.clone();
        let detector = component
            .detector
            .as_deref()
            .expect("checked by the manifest");
        let recognizer = component
            .recognizer
            .as_deref()
            .expect("checked by the manifest");
        match component.kind {
            ComponentKind::InsightfacePack => {
                let pack = component.pack.as_deref().expect("checked by the manifest");
                let settings = self.weights.hub.settings();
                let needed = [detector, recognizer];
                let complete = needed.iter().all(|f| {
                    settings
                        .insightface_root
                        .join("models")
                        .join(pack)
                        .join(f)
                        .is_file()
                });
                if !complete && !settings.offline {
                    let repo = format!("insightface ({})", settings.insightface_url);
                    self.notice_licence(name, &repo, &component);
                }
                let (dir, downloaded) = pack_dir(
                    settings,
                    &PackRequest {
                        pack,
                        archive: component
                            .archive
                            .as_deref()
                            .expect("checked by the manifest"),
                        archive_sha256: component.archive_sha256.as_deref(),
                        needed: &needed,
                        model_type: self.model_type,
                    },
                    self.progress,
                )
                .map_err(|e| with_flag(e, "--recognizer and --detector"))?;
                if downloaded {
                    self.downloaded.push(format!(
                        "insightface/{}",
                        component.archive.as_deref().unwrap_or(pack)
                    ));
                }
                Ok((dir.join(detector), dir.join(recognizer)))
            }
            _ => {
                let files = self.files(name, None, "--recognizer")?;
                let find = |file: &str| {
                    files
                        .iter()
                        .find(|f| f.repo_path.ends_with(file))
                        .map(|f| f.path.clone())
                        .ok_or_else(|| HubError::Manifest {
                            origin: "manifest".into(),
                            reason: format!("component {name} does not list {file} in its files"),
                        })
                };
                Ok((find(detector)?, find(recognizer)?))
            }
        }
    }
}

/// Adds to an offline error the option that supplies the file locally.
fn with_flag(err: HubError, flag: &str) -> HubError {
    match err {
        HubError::Offline {
            what,
            cache,
            model_type,
            ..
        } => HubError::Offline {
            flag_hint: format!(", pass a local file with {flag}"),
            what,
            cache,
            model_type,
        },
        other => other,
    }
}
