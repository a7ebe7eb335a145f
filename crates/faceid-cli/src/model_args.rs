//! The model options shared by `faceid serve` and `faceid worker`: where the weights come
//! from, the device and precision, the allow-list of base models and the memory budget.

use std::path::PathBuf;

use clap::Args;
use faceid_core::{DeviceKind, Precision};
use faceid_fal::ModelType;
use faceid_pipeline::FaceCrop;
use faceid_server::{ModelPolicy, Models};

use crate::CliError;
use crate::fetch::WeightsArgs;

/// What the requests run on.
#[derive(Args)]
pub struct ModelArgs {
    /// Where the weights come from (the model type loaded at start).
    #[command(flatten)]
    weights: WeightsArgs,
    /// A local face detector ONNX model (default: the model type's, else the built-in
    /// RetinaFace).
    #[arg(long, env = "FACEID_DETECTOR")]
    detector: Option<PathBuf>,
    /// Load the models on the first request instead of at start.
    #[arg(long, env = "FACEID_LAZY")]
    lazy: bool,
    /// A base model repository requests may name in base_1_5_model_repo /
    /// base_sdxl_model_repo (repeatable, or comma-separated in the variable). Default: the
    /// model types' own (SG161222/Realistic_Vision_V4.0_noVAE, SG161222/RealVisXL_V3.0). A
    /// local --base-model pins the base model instead.
    #[arg(
        long = "allow-base-repo",
        env = "FACEID_ALLOW_BASE_REPOS",
        value_delimiter = ','
    )]
    allow_base_repos: Vec<String>,
    /// GiB of weights the server keeps loaded; past it, the least recently used models are
    /// unloaded (SD 1.5 FaceID takes about 4.1 GiB in f32 and 2.2 GiB in f16; the FaceID Plus
    /// image encoder, shared, about 2.4 / 1.2 GiB more).
    #[arg(long, env = "FACEID_MODEL_MEMORY_GIB", default_value_t = faceid_server::DEFAULT_MODEL_MEMORY_GIB)]
    model_memory_gib: f64,
    /// FaceID Plus: hand the image encoder the face crop in its true colours instead of the
    /// reference's red/blue-exchanged crop (results then differ from the hosted endpoint's).
    #[arg(long, env = "FACEID_FACE_CROP_RGB")]
    face_crop_rgb: bool,
    /// flex (CPU), wgpu or cuda.
    #[arg(long, env = "FACEID_DEVICE", default_value = "flex")]
    device: DeviceKind,
    /// f32 or f16 for the text encoder and UNet (the VAE stays f32); default: f16 on GPUs,
    /// f32 on the CPU.
    #[arg(long, env = "FACEID_PRECISION")]
    precision: Option<Precision>,
}

impl ModelArgs {
    /// The models, with the `--model-type` loaded now unless `--lazy`.
    pub fn load(&self) -> Result<Models, CliError> {
        let models = self.models()?;
        if !self.lazy {
            let model_type: ModelType = self.weights.model_type.parse()?;
            let base = self
                .weights
                .base_repo
                .clone()
                .unwrap_or_else(|| Models::base_field(model_type).1.to_string());
            eprintln!("loading {} ({base})", model_type.name());
            models.get(model_type, &base)?;
        }
        Ok(models)
    }

    /// The models, none loaded (an API node's: what the playground says it can run).
    pub fn models(&self) -> Result<Models, CliError> {
        let device = self.device.device()?;
        let local = self.weights.local(self.detector.clone());
        let precision = self
            .precision
            .unwrap_or_else(|| Precision::preferred_for(self.device));
        if !(self.model_memory_gib > 0.0 && self.model_memory_gib.is_finite()) {
            return Err(format!(
                "--model-memory-gib {} must be a positive number",
                self.model_memory_gib
            )
            .into());
        }
        for repo in &self.allow_base_repos {
            faceid_hub::check_repo_id(repo)
                .map_err(|reason| format!("--allow-base-repo {repo:?}: {reason}"))?;
        }
        // A --base-repo given to serve is allowed besides the list (or the defaults).
        let mut allowed_base_repos = self.allow_base_repos.clone();
        if let Some(repo) = &self.weights.base_repo {
            if allowed_base_repos.is_empty() {
                allowed_base_repos.extend(
                    [
                        faceid_fal::DEFAULT_BASE_1_5_REPO,
                        faceid_fal::DEFAULT_BASE_SDXL_REPO,
                    ]
                    .map(String::from),
                );
            }
            allowed_base_repos.push(repo.clone());
        }
        let policy = ModelPolicy {
            allowed_base_repos,
            memory_budget_bytes: (self.model_memory_gib * (1u64 << 30) as f64) as u64,
            face_crop: if self.face_crop_rgb {
                FaceCrop::Rgb
            } else {
                FaceCrop::ReferenceBgr
            },
        };
        Ok(Models::new(
            self.weights.weights()?,
            local,
            device,
            precision,
            policy,
        ))
    }
}
