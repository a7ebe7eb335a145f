//! The models the server has loaded: one FaceID generator per (model type, base model),
//! assembled on first use through `faceid_pipeline`'s one assembly path and kept under a byte
//! budget of weights on the device (least recently used out). The CLIP image encoder is loaded
//! once and shared by the FaceID Plus model types. Base models come only from an operator-set
//! allow-list, and a local `--base-model` pins the base model.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use faceid_core::{Device, Precision};
use faceid_fal::{DEFAULT_BASE_1_5_REPO, DEFAULT_BASE_SDXL_REPO, ModelType};
use faceid_hub::{FetchProgress, LocalFiles, ModelRequest, Weights, check_repo_id};
use faceid_pipeline::{
    ClipImageEncoder, FaceCrop, FaceIdAdapter, FaceIdGenerator, GeneratorOptions, PipelineError,
    StableDiffusion, load_diffusion, load_face_encoder,
};

/// Default budget for the weights the server keeps loaded, in GiB.
pub const DEFAULT_MODEL_MEMORY_GIB: f64 = 16.0;

/// What the server may load and how much of it it keeps.
#[derive(Debug, Clone)]
pub struct ModelPolicy {
    /// Base model repositories requests may name (`base_1_5_model_repo`,
    /// `base_sdxl_model_repo`); empty: the model types' own (fal's defaults).
    pub allowed_base_repos: Vec<String>,
    /// Bytes of weights kept loaded; past it the least recently used models are dropped
    /// (a model larger than the budget is still loaded, alone).
    pub memory_budget_bytes: u64,
    /// The channel order of the face crop the image encoder sees (FaceID Plus).
    pub face_crop: FaceCrop,
}

impl Default for ModelPolicy {
    fn default() -> Self {
        Self {
            allowed_base_repos: Vec::new(),
            memory_budget_bytes: (DEFAULT_MODEL_MEMORY_GIB * (1u64 << 30) as f64) as u64,
            face_crop: FaceCrop::default(),
        }
    }
}

/// Why the models of a request cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The request names a base model this server does not serve.
    #[error("{field}: {reason}")]
    BaseModel {
        /// The input field (`base_1_5_model_repo` / `base_sdxl_model_repo`).
        field: &'static str,
        /// Why, and what is allowed.
        reason: String,
    },
    /// The files could not be found or fetched.
    #[error(transparent)]
    Hub(#[from] faceid_hub::HubError),
    /// The models could not be loaded.
    #[error(transparent)]
    Load(#[from] PipelineError),
}

/// A generator and what it keeps on the device.
pub struct Loaded {
    pub(crate) generator: FaceIdGenerator,
}

impl Loaded {
    /// Bytes of the image encoder's weights (0 without one).
    pub fn image_encoder_bytes(&self) -> u64 {
        self.generator
            .faces
            .image_encoder()
            .map_or(0, |e| e.memory().bytes as u64)
    }

    /// Whether both use the same loaded image encoder.
    pub fn shares_image_encoder_with(&self, other: &Loaded) -> bool {
        match (
            self.generator.faces.image_encoder(),
            other.generator.faces.image_encoder(),
        ) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

struct Entry {
    key: (ModelType, String),
    model: Arc<Loaded>,
    bytes: u64,
    last_used: u64,
}

#[derive(Default)]
struct State {
    entries: Vec<Entry>,
    image_encoders: HashMap<PathBuf, Arc<ClipImageEncoder>>,
    clock: u64,
}

/// Every model the server has loaded.
pub struct Models {
    weights: Weights,
    local: LocalFiles,
    device: Device,
    precision: Precision,
    policy: ModelPolicy,
    state: Mutex<State>,
    availability: OnceLock<Vec<(ModelType, Result<(), String>)>>,
}

/// Reports downloads and licence notices through the server's log.
struct LogProgress;

impl FetchProgress for LogProgress {
    fn notice(&mut self, message: &str) {
        tracing::warn!("{message}");
    }

    fn start(&mut self, what: &str, size: u64, done: u64) {
        tracing::info!(what, size, done, "downloading");
    }
}

impl Models {
    /// Models resolved through `weights`, `local` files replacing manifest entries, with the
    /// denoising loop in `precision`, under `policy`.
    pub fn new(
        weights: Weights,
        local: LocalFiles,
        device: Device,
        precision: Precision,
        policy: ModelPolicy,
    ) -> Self {
        Self {
            weights,
            local,
            device,
            precision,
            policy,
            state: Mutex::new(State::default()),
            availability: OnceLock::new(),
        }
    }

    /// The base repository a request of `model_type` uses, with its input field.
    pub fn base_field(model_type: ModelType) -> (&'static str, &'static str) {
        if model_type.is_sdxl() {
            ("base_sdxl_model_repo", DEFAULT_BASE_SDXL_REPO)
        } else {
            ("base_1_5_model_repo", DEFAULT_BASE_1_5_REPO)
        }
    }

    /// Checks that a request's base model may be served: a valid repository id on the
    /// allow-list, or, with a local base model, the model type's default (which stands for it).
    pub fn check_base(&self, model_type: ModelType, repo: &str) -> Result<(), ModelError> {
        let (field, default) = Self::base_field(model_type);
        let refuse = |reason: String| Err(ModelError::BaseModel { field, reason });
        if let Err(reason) = check_repo_id(repo) {
            return refuse(format!("{repo:?} is not a repository id: {reason}"));
        }
        if self.local.base.is_some() {
            return if repo == default {
                Ok(())
            } else {
                refuse(format!(
                    "this server serves its own base model; leave {field} at its default ({default})"
                ))
            };
        }
        let allowed = if self.policy.allowed_base_repos.is_empty() {
            vec![
                DEFAULT_BASE_1_5_REPO.to_string(),
                DEFAULT_BASE_SDXL_REPO.to_string(),
            ]
        } else {
            self.policy.allowed_base_repos.clone()
        };
        if allowed.iter().any(|a| a == repo) {
            Ok(())
        } else {
            refuse(format!(
                "{repo} is not served here (allowed: {})",
                allowed.join(", ")
            ))
        }
    }

    /// What the base model of a request is: the local folder replacing it, or the repository.
    pub fn base_label(&self, base_repo: &str) -> String {
        match &self.local.base {
            Some(dir) => dir.display().to_string(),
            None => base_repo.to_string(),
        }
    }

    /// Whether this server can generate `model_type`, and why not: its local base model is of
    /// the other family, its local IP-Adapter checkpoint has the other projection, or the model
    /// type's weights are not published and no local checkpoint stands for them. Read from the
    /// files' headers once, without loading a model.
    pub fn availability(&self, model_type: ModelType) -> Result<(), String> {
        let all = self.availability.get_or_init(|| {
            ModelType::ALL
                .into_iter()
                .map(|m| (m, self.check_availability(m)))
                .collect()
        });
        all.iter()
            .find(|(m, _)| *m == model_type)
            .map_or(Ok(()), |(_, a)| a.clone())
    }

    fn check_availability(&self, model_type: ModelType) -> Result<(), String> {
        let spec = model_type.spec();
        if let Some(dir) = &self.local.base {
            let found = StableDiffusion::family_of(dir)
                .map_err(|e| format!("this server's base model cannot be read: {e}"))?;
            if found != spec.base {
                return Err(format!(
                    "this server's base model is {} model; {} needs {} base model",
                    found.describe(),
                    model_type.name(),
                    spec.base.describe()
                ));
            }
        }
        match &self.local.ip_adapter {
            Some(path) => {
                let plus = FaceIdAdapter::is_plus_checkpoint(path).map_err(|e| {
                    format!("this server's IP-Adapter checkpoint cannot be read: {e}")
                })?;
                let wanted = spec.needs_image_encoder();
                if plus != wanted {
                    let kind = |plus: bool| if plus { "FaceID Plus" } else { "FaceID" };
                    return Err(format!(
                        "this server's IP-Adapter checkpoint is {}; {} needs a {} checkpoint",
                        kind(plus),
                        model_type.name(),
                        kind(wanted)
                    ));
                }
            }
            None => {
                let manifest = self.weights.manifest();
                let published = manifest
                    .model_type(model_type.name())
                    .and_then(|entry| manifest.component(&entry.ip_adapter))
                    .map(|c| c.published)
                    .map_err(|e| e.to_string())?;
                if !published {
                    return Err(format!(
                        "the IP-Adapter weights of {} are not published; this server needs a local checkpoint (--ip-adapter)",
                        model_type.name()
                    ));
                }
            }
        }
        Ok(())
    }

    /// The base model of a request as clients may see it: the repository, or "the server's
    /// own base model" for a local folder (whose path stays private).
    pub fn base_public_label(&self, base_repo: &str) -> String {
        match &self.local.base {
            Some(_) => "the server's own base model".to_string(),
            None => base_repo.to_string(),
        }
    }

    /// Bytes of weights loaded now.
    pub fn loaded_bytes(&self) -> u64 {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        total_bytes(&state)
    }

    /// The models for a request, loading (and fetching) them on first use.
    pub fn get(&self, model_type: ModelType, base_repo: &str) -> Result<Arc<Loaded>, ModelError> {
        self.check_base(model_type, base_repo)?;
        let key = (model_type, self.base_label(base_repo));
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.clock += 1;
        let now = state.clock;
        if let Some(entry) = state.entries.iter_mut().find(|e| e.key == key) {
            entry.last_used = now;
            return Ok(entry.model.clone());
        }
        let request = ModelRequest {
            model_type: model_type.name().to_string(),
            base_repo: Some(base_repo.to_string()),
            local: self.local.clone(),
            adapter: true,
            face_analysis: true,
        };
        let files = self.weights.resolve(&request, &mut LogProgress)?;
        let options = GeneratorOptions {
            crop: self.policy.face_crop,
            ..GeneratorOptions::new(model_type.spec(), self.device.clone(), self.precision)
        };
        let shared = files
            .image_encoder
            .as_ref()
            .and_then(|dir| state.image_encoders.get(dir).cloned());
        let faces = load_face_encoder(&files, &options, shared)?;
        if let (Some(dir), Some(encoder)) = (&files.image_encoder, faces.image_encoder()) {
            state
                .image_encoders
                .entry(dir.clone())
                .or_insert_with(|| encoder.clone());
        }
        let sd = load_diffusion(&files, &options, faces.image_encoder().map(Arc::as_ref))?;
        let generator = FaceIdGenerator { faces, sd };
        for part in generator.sd.memory() {
            tracing::info!(
                model_type = model_type.name(),
                component = part.name,
                parameters = part.parameters,
                mib = format!("{:.1}", part.mib()),
                "weights on the device"
            );
        }
        let bytes = generator.sd.memory().iter().map(|m| m.bytes as u64).sum();
        let model = Arc::new(Loaded { generator });
        state.entries.push(Entry {
            key,
            model: model.clone(),
            bytes,
            last_used: now,
        });
        evict(&mut state, self.policy.memory_budget_bytes);
        Ok(model)
    }
}

/// Weights of the loaded generators plus the shared image encoders, each counted once.
fn total_bytes(state: &State) -> u64 {
    let models: u64 = state.entries.iter().map(|e| e.bytes).sum();
    let encoders: u64 = state
        .image_encoders
        .values()
        .map(|e| e.memory().bytes as u64)
        .sum();
    models + encoders
}

/// Drops the least recently used generators until the budget holds (never the newest), then
/// the image encoders no generator uses any more.
fn evict(state: &mut State, budget: u64) {
    while total_bytes(state) > budget && state.entries.len() > 1 {
        let newest = state.clock;
        let Some(oldest) = state
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.last_used != newest)
            .min_by_key(|(_, e)| e.last_used)
            .map(|(i, _)| i)
        else {
            break;
        };
        let entry = state.entries.remove(oldest);
        tracing::info!(
            model_type = entry.key.0.name(),
            base = entry.key.1,
            mib = entry.bytes >> 20,
            "unloading the least recently used model to stay within the memory budget"
        );
        let in_use: Vec<*const ClipImageEncoder> = state
            .entries
            .iter()
            .filter_map(|e| e.model.generator.faces.image_encoder().map(Arc::as_ptr))
            .collect();
        state
            .image_encoders
            .retain(|_, encoder| in_use.contains(&Arc::as_ptr(encoder)));
    }
    if total_bytes(state) > budget {
        tracing::warn!(
            budget_mib = budget >> 20,
            loaded_mib = total_bytes(state) >> 20,
            "one model is larger than the model memory budget; it is kept loaded alone"
        );
    }
}
