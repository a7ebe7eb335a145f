//! `faceid fetch`, and the weights options `generate` shares with it.

use std::path::PathBuf;

use clap::Args;
use faceid_hub::{LocalFiles, Manifest, ModelFiles, ModelRequest, ProgressBars, Weights};

use crate::CliError;

/// Where the weights come from.
#[derive(Args, Clone)]
pub struct WeightsArgs {
    /// The fal model type; decides what is fetched (weights/manifest.toml).
    #[arg(long, env = "FACEID_MODEL_TYPE", default_value = "1_5-v1")]
    pub model_type: String,
    /// A Hugging Face repository replacing the model type's base model
    /// (fal's base_1_5_model_repo / base_sdxl_model_repo).
    #[arg(long, env = "FACEID_BASE_REPO")]
    pub base_repo: Option<String>,
    /// A weights manifest replacing the built-in one.
    #[arg(long, env = "FACEID_MANIFEST")]
    pub manifest: Option<PathBuf>,
    /// A local diffusers Stable Diffusion folder (model_index.json, unet/, vae/, text_encoder/,
    /// ...) instead of the model type's base model from the hub.
    #[arg(long, env = "FACEID_BASE_MODEL")]
    pub base_model: Option<PathBuf>,
    /// A local VAE folder replacing the model's own.
    #[arg(long, env = "FACEID_VAE")]
    pub vae: Option<PathBuf>,
    /// A local IP-Adapter FaceID checkpoint (ip-adapter-faceid_sd15.bin or .safetensors)
    /// instead of the model type's from the hub.
    #[arg(long, env = "FACEID_IP_ADAPTER")]
    pub ip_adapter: Option<PathBuf>,
    /// A local ArcFace ONNX model instead of the model type's (insightface buffalo_l's
    /// w600k_r50.onnx).
    #[arg(long, env = "FACEID_RECOGNIZER")]
    pub recognizer: Option<PathBuf>,
    /// A local CLIP image encoder folder (transformers CLIPVisionModelWithProjection, as
    /// h94/IP-Adapter models/image_encoder) for the FaceID Plus model types.
    #[arg(long, env = "FACEID_IMAGE_ENCODER")]
    pub image_encoder: Option<PathBuf>,
}

/// `faceid fetch`: download what a model type needs, ahead of use.
#[derive(Args)]
pub struct FetchArgs {
    #[command(flatten)]
    weights: WeightsArgs,
    /// Fetch the base model only (what a prompt without a face needs).
    #[arg(long)]
    no_face: bool,
    /// Check the SHA-256 of every file, cached or not.
    #[arg(long)]
    verify: bool,
}

impl WeightsArgs {
    /// The local files given, with a detector file if the command takes one.
    pub fn local(&self, detector: Option<PathBuf>) -> LocalFiles {
        LocalFiles {
            base: self.base_model.clone(),
            vae: self.vae.clone(),
            ip_adapter: self.ip_adapter.clone(),
            image_encoder: self.image_encoder.clone(),
            detector,
            recognizer: self.recognizer.clone(),
        }
    }

    /// The manifest and the environment's hub settings.
    pub fn weights(&self) -> Result<Weights, CliError> {
        let manifest = match &self.manifest {
            Some(path) => Manifest::from_file(path)?,
            None => Manifest::builtin(),
        };
        let settings = faceid_hub::HubSettings::from_env(&manifest);
        Ok(Weights::new(manifest, settings)?)
    }

    /// Finds or fetches what the model type needs, local files replacing entries.
    pub fn resolve(
        &self,
        local: LocalFiles,
        adapter: bool,
        face_analysis: bool,
    ) -> Result<ModelFiles, CliError> {
        let weights = self.weights()?;
        let request = ModelRequest {
            model_type: self.model_type.clone(),
            base_repo: self.base_repo.clone(),
            local,
            adapter,
            face_analysis,
        };
        Ok(weights.resolve(&request, &mut ProgressBars::default())?)
    }
}

pub fn run(args: FetchArgs) -> Result<(), CliError> {
    let files = args
        .weights
        .resolve(args.weights.local(None), !args.no_face, !args.no_face)?;
    let mut listed: Vec<(&str, PathBuf)> = vec![("base model", files.base.clone())];
    let optional = [
        ("vae", &files.vae),
        ("ip-adapter", &files.ip_adapter),
        ("image encoder", &files.image_encoder),
        ("detector", &files.detector),
        ("recognizer", &files.recognizer),
    ];
    for (role, path) in optional {
        if let Some(path) = path {
            listed.push((role, path.clone()));
        }
    }
    if args.verify {
        for (role, path) in &listed {
            verify_tree(role, path)?;
        }
    }
    for (role, path) in &listed {
        println!("{role:>14}: {}", path.display());
    }
    eprintln!(
        "{}: {} file(s) downloaded, everything else was already cached{}",
        args.weights.model_type,
        files.downloaded.len(),
        if args.verify {
            "; all digests verified"
        } else {
            ""
        }
    );
    Ok(())
}

/// Verifies every cached file under a path (a file or a snapshot folder).
fn verify_tree(role: &str, path: &std::path::Path) -> Result<(), CliError> {
    if path.is_file() {
        faceid_hub::verify(path, None, &format!("{role} {}", path.display()))?;
        return Ok(());
    }
    let entries = std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
    for entry in entries {
        let entry = entry?;
        verify_tree(role, &entry.path())?;
    }
    Ok(())
}
