//! `weights/manifest.toml`: what every fal model type needs and where it lives.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::HubError;

/// The manifest shipped with the project (`weights/manifest.toml`).
pub const BUILTIN_MANIFEST: &str = include_str!("../../../weights/manifest.toml");

/// The parsed manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version (1).
    pub schema: u32,
    /// Default download sites.
    pub sources: Sources,
    /// The components of each fal `model_type`.
    #[serde(default)]
    pub model_types: BTreeMap<String, ModelTypeEntry>,
    /// Every component by name.
    #[serde(default)]
    pub components: BTreeMap<String, Component>,
}

/// Default download sites.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sources {
    /// The Hugging Face hub (replaced by `HF_ENDPOINT`).
    pub hub: String,
    /// insightface's pack downloads (replaced by `FACEID_INSIGHTFACE_URL`).
    pub insightface: String,
}

/// The components of one model type, by role.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelTypeEntry {
    /// The Stable Diffusion base model (a `diffusers` component).
    pub base: String,
    /// A VAE replacing the base model's own.
    pub vae: Option<String>,
    /// The IP-Adapter FaceID checkpoint.
    pub ip_adapter: String,
    /// The CLIP image encoder of Plus models.
    pub image_encoder: Option<String>,
    /// The face detector and recognizer.
    pub face: String,
}

/// What a component is, which decides the files it must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComponentKind {
    /// A diffusers pipeline folder.
    Diffusers,
    /// A diffusers `AutoencoderKL` folder.
    Vae,
    /// An IP-Adapter checkpoint file.
    IpAdapter,
    /// A transformers `CLIPVisionModelWithProjection` folder.
    ImageEncoder,
    /// An insightface model pack, downloaded as a zip the way insightface does.
    InsightfacePack,
    /// A detector and a recognizer in a hub repository.
    FaceModels,
}

/// One component: a set of files from one place.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// What it is.
    pub kind: ComponentKind,
    /// The Hugging Face repository (`org/name`).
    pub repo: Option<String>,
    /// Branch, tag or commit (default `main`).
    pub revision: Option<String>,
    /// The licence, as its publisher states it.
    pub license: String,
    /// Whether the licence allows commercial use.
    #[serde(default = "yes")]
    pub commercial_use: bool,
    /// Whether the weights are published at all.
    #[serde(default = "yes")]
    pub published: bool,
    /// The files the pipeline reads.
    #[serde(default)]
    pub files: Vec<FileEntry>,
    /// Known SHA-256 digests by path in the repository.
    #[serde(default)]
    pub sha256: BTreeMap<String, String>,
    /// insightface pack name (`buffalo_l`).
    pub pack: Option<String>,
    /// The pack's archive on the insightface download site.
    pub archive: Option<String>,
    /// The archive's expected size.
    pub archive_approx_mb: Option<u64>,
    /// The archive's SHA-256, where known.
    pub archive_sha256: Option<String>,
    /// The detector's file name (face components).
    pub detector: Option<String>,
    /// The recognizer's file name (face components).
    pub recognizer: Option<String>,
}

fn yes() -> bool {
    true
}

/// A file of a component: one path, or the first of several that the repository has.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum FileEntry {
    /// One path in the repository.
    Path(String),
    /// Alternatives, best first (an fp16 variant before the f32 file).
    Any {
        /// The candidate paths.
        any: Vec<String>,
        /// Expected download size.
        #[serde(default)]
        approx_mb: Option<u64>,
    },
}

impl FileEntry {
    /// The candidate paths, best first.
    pub fn candidates(&self) -> &[String] {
        match self {
            FileEntry::Path(p) => std::slice::from_ref(p),
            FileEntry::Any { any, .. } => any,
        }
    }

    /// Expected download size in MB, where the manifest gives one.
    pub fn approx_mb(&self) -> Option<u64> {
        match self {
            FileEntry::Path(_) => None,
            FileEntry::Any { approx_mb, .. } => *approx_mb,
        }
    }
}

impl Component {
    /// The revision to download (`main` when the manifest gives none).
    pub fn revision(&self) -> &str {
        self.revision.as_deref().unwrap_or("main")
    }

    /// Expected download size of the whole component in MB (the large files).
    pub fn approx_mb(&self) -> u64 {
        self.archive_approx_mb.unwrap_or(0)
            + self
                .files
                .iter()
                .filter_map(FileEntry::approx_mb)
                .sum::<u64>()
    }
}

impl Manifest {
    /// The manifest shipped with the project.
    pub fn builtin() -> Self {
        Self::parse(BUILTIN_MANIFEST, "weights/manifest.toml")
            .expect("the built-in manifest is checked by the tests")
    }

    /// Reads and checks a manifest file.
    pub fn from_file(path: &Path) -> Result<Self, HubError> {
        let text = std::fs::read_to_string(path).map_err(|e| HubError::Manifest {
            origin: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and checks a manifest: every reference resolves, every component has what its
    /// kind needs.
    pub fn parse(text: &str, origin: &str) -> Result<Self, HubError> {
        let fail = |reason: String| HubError::Manifest {
            origin: origin.to_string(),
            reason,
        };
        let manifest: Manifest = toml::from_str(text).map_err(|e| fail(e.to_string()))?;
        if manifest.schema != 1 {
            return Err(fail(format!(
                "schema {} is not supported (this build reads schema 1)",
                manifest.schema
            )));
        }
        for (name, entry) in &manifest.model_types {
            let roles = [
                ("base", Some(&entry.base), &[ComponentKind::Diffusers][..]),
                ("vae", entry.vae.as_ref(), &[ComponentKind::Vae][..]),
                (
                    "ip_adapter",
                    Some(&entry.ip_adapter),
                    &[ComponentKind::IpAdapter][..],
                ),
                (
                    "image_encoder",
                    entry.image_encoder.as_ref(),
                    &[ComponentKind::ImageEncoder][..],
                ),
                (
                    "face",
                    Some(&entry.face),
                    &[ComponentKind::InsightfacePack, ComponentKind::FaceModels][..],
                ),
            ];
            for (role, component, kinds) in roles {
                let Some(component) = component else { continue };
                let found = manifest.components.get(component).ok_or_else(|| {
                    fail(format!(
                        "model type {name}: {role} names component '{component}', which is not defined"
                    ))
                })?;
                if !kinds.contains(&found.kind) {
                    return Err(fail(format!(
                        "model type {name}: {role} names '{component}', a {:?} component",
                        found.kind
                    )));
                }
            }
        }
        for (name, c) in &manifest.components {
            let problem = component_problem(c);
            if let Some(problem) = problem {
                return Err(fail(format!("component {name}: {problem}")));
            }
        }
        Ok(manifest)
    }

    /// The entry of a model type, or an error listing the known ones.
    pub fn model_type(&self, name: &str) -> Result<&ModelTypeEntry, HubError> {
        self.model_types
            .get(name)
            .ok_or_else(|| HubError::UnknownModelType {
                name: name.to_string(),
                known: self
                    .model_types
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// A component by name.
    pub fn component(&self, name: &str) -> Result<&Component, HubError> {
        self.components.get(name).ok_or_else(|| HubError::Manifest {
            origin: "manifest".into(),
            reason: format!("no component '{name}'"),
        })
    }
}

fn component_problem(c: &Component) -> Option<String> {
    let face = matches!(
        c.kind,
        ComponentKind::InsightfacePack | ComponentKind::FaceModels
    );
    if face && (c.detector.is_none() || c.recognizer.is_none()) {
        return Some("a face component names its detector and recognizer".into());
    }
    if !c.published {
        return None;
    }
    if c.kind == ComponentKind::InsightfacePack {
        if c.pack.is_none() || c.archive.is_none() {
            return Some("an insightface pack names its pack and archive".into());
        }
        return None;
    }
    if c.repo.is_none() {
        return Some("a published hub component names its repo".into());
    }
    if c.files.is_empty() || c.files.iter().any(|f| f.candidates().is_empty()) {
        return Some("every file entry names at least one path".into());
    }
    for digest in c.sha256.values() {
        if !is_sha256(digest) {
            return Some(format!(
                "'{digest}' is not a SHA-256 digest (64 hex digits)"
            ));
        }
    }
    None
}

/// Whether a string is a lowercase or uppercase hex SHA-256 digest.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}
