//! Loading: a diffusers folder (SD 1.x/2.x or SDXL, from `model_index.json`) or components
//! loaded elsewhere, and installing a FaceID adapter.

use std::path::Path;

use faceid_core::{Device, Precision};
use faceid_ipadapter::{AdapterOptions, FaceIdAdapter, PlusOptions};
use faceid_scheduler::{SchedulerConfig, SchedulerKind};
use faceid_unet::UNet2DConditionModel;
use faceid_vae::AutoencoderKL;

use crate::error::PipelineError;
use crate::face_encoder::ClipImageEncoder;
use crate::prompt::PromptEncoder;
use crate::spec::BaseFamily;

use super::{InstalledFaceId, StableDiffusion};

impl StableDiffusion {
    /// Loads a diffusers folder (`model_index.json`, `tokenizer/`, `text_encoder/`, `unet/`,
    /// `vae/`, `scheduler/`, and for SDXL `tokenizer_2/` and `text_encoder_2/`) in f32; `vae`
    /// replaces the folder's own VAE (needed for folders that ship none, such as
    /// Realistic_Vision_V4.0_noVAE, paired with sd-vae-ft-mse). `model_index.json` names the
    /// pipeline class; classes other than `StableDiffusionPipeline` and
    /// `StableDiffusionXLPipeline` are refused by name.
    pub fn from_dir(
        dir: &Path,
        vae: Option<&Path>,
        device: &Device,
    ) -> Result<Self, PipelineError> {
        Self::from_dir_in(dir, vae, device, Precision::F32)
    }

    /// The family of the diffusers folder `dir` (SD 1.x/2.x or SDXL), read from its
    /// `model_index.json` as [`Self::from_dir`] reads it, without loading anything.
    pub fn family_of(dir: &Path) -> Result<BaseFamily, PipelineError> {
        Ok(ModelIndex::read(dir)?.family)
    }

    /// [`Self::from_dir`] with the text encoder and UNet (and the adapters installed later) in
    /// `precision`. The VAE stays in f32, and so do the latents and the scheduler's arithmetic.
    pub fn from_dir_in(
        dir: &Path,
        vae: Option<&Path>,
        device: &Device,
        precision: Precision,
    ) -> Result<Self, PipelineError> {
        precision.check(device)?;
        if !dir.join("model_index.json").is_file() && !dir.join("unet").is_dir() {
            return Err(PipelineError::NotAModel {
                path: dir.to_owned(),
                reason: "no model_index.json or unet/ folder".into(),
            });
        }
        let vae_dir = vae.map(Path::to_owned).unwrap_or_else(|| dir.join("vae"));
        if !vae_dir.join("config.json").is_file() {
            return Err(PipelineError::NotAModel {
                path: vae_dir,
                reason: "no VAE here: pass a separate VAE folder (e.g. stabilityai/sd-vae-ft-mse)"
                    .into(),
            });
        }
        let scheduler_config =
            SchedulerConfig::from_file(dir.join("scheduler/scheduler_config.json"))?;
        let index = ModelIndex::read(dir)?;
        tracing::info!(model = %dir.display(), family = ?index.family, %precision, "loading Stable Diffusion components");
        let prompts = match index.family {
            BaseFamily::Sd15 => PromptEncoder::single_from_dir(dir, device, precision)?,
            BaseFamily::Sdxl => PromptEncoder::dual_from_dir(
                dir,
                device,
                precision,
                index.force_zeros_for_empty_prompt,
            )?,
        };
        Self::from_components(
            prompts,
            UNet2DConditionModel::from_dir_in(&dir.join("unet"), device, precision)?,
            AutoencoderKL::from_dir(&vae_dir, device)?,
            scheduler_config,
            device,
        )
        .map_err(|reason| PipelineError::NotAModel {
            path: dir.to_owned(),
            reason,
        })
    }

    /// Assembles a pipeline from components loaded elsewhere (all on `device`): one text
    /// encoder makes an SD 1.x/2.x model, two an SDXL one. The default scheduler is the one
    /// `scheduler_config` names, when supported, else DDIM. Components that do not fit together
    /// (text width against the UNet's cross-attention, SDXL's added conditioning) are refused
    /// with the reason.
    pub fn from_components(
        prompts: PromptEncoder,
        unet: UNet2DConditionModel,
        vae: AutoencoderKL,
        scheduler_config: SchedulerConfig,
        device: &Device,
    ) -> Result<Self, String> {
        let family = match prompts {
            PromptEncoder::Single { .. } => BaseFamily::Sd15,
            PromptEncoder::Dual { .. } => BaseFamily::Sdxl,
        };
        check_fit(&prompts, &unet)?;
        let default_scheduler = match scheduler_config.class_name.as_deref() {
            Some("EulerDiscreteScheduler") => SchedulerKind::Euler,
            Some("EulerAncestralDiscreteScheduler") => SchedulerKind::EulerAncestral,
            Some("DPMSolverMultistepScheduler") => SchedulerKind::DpmSolverMultistep2M {
                karras: scheduler_config.use_karras_sigmas.unwrap_or(false),
            },
            _ => SchedulerKind::Ddim,
        };
        Ok(Self {
            family,
            prompts,
            unet,
            vae,
            scheduler_config,
            default_scheduler,
            faceid: None,
            device: device.clone(),
        })
    }

    /// Installs an IP-Adapter FaceID checkpoint (`.bin` or `.safetensors`): its LoRA is fused
    /// into the UNet and its image branch added to every cross-attention layer. A FaceID Plus
    /// checkpoint needs the CLIP `image_encoder` its faces are encoded with (for the
    /// unconditional branch) and takes `plus` (shortcut for PlusV2, `s_scale`).
    pub fn install_faceid(
        &mut self,
        checkpoint: &Path,
        options: &AdapterOptions,
        plus: PlusOptions,
        image_encoder: Option<&ClipImageEncoder>,
    ) -> Result<(), PipelineError> {
        if self.faceid.is_some() {
            return Err(PipelineError::InvalidRequest {
                field: "ip_adapter",
                reason: "a FaceID adapter is already installed; load the model again to change it"
                    .into(),
            });
        }
        let adapter = FaceIdAdapter::install(checkpoint, &mut self.unet, options, &self.device)?;
        let zero_image_features = match (adapter.is_plus(), image_encoder) {
            (false, _) => None,
            (true, Some(encoder)) => Some(encoder.zero_image_features()?),
            (true, None) => {
                return Err(PipelineError::InvalidRequest {
                    field: "image_encoder",
                    reason: format!(
                        "{} is a FaceID Plus checkpoint: it needs the CLIP image encoder its faces are encoded with (h94/IP-Adapter models/image_encoder)",
                        checkpoint.display()
                    ),
                });
            }
        };
        self.faceid = Some(InstalledFaceId {
            adapter,
            plus,
            zero_image_features,
        });
        Ok(())
    }
}

/// What `model_index.json` says about the pipeline.
struct ModelIndex {
    family: BaseFamily,
    force_zeros_for_empty_prompt: bool,
}

impl ModelIndex {
    /// Reads the pipeline class; a folder without an index is SDXL when it has `text_encoder_2/`.
    fn read(dir: &Path) -> Result<Self, PipelineError> {
        let path = dir.join("model_index.json");
        let (class, force_zeros) = if path.is_file() {
            let index: serde_json::Value = faceid_core::config::read_json(&path)?;
            (
                index["_class_name"].as_str().map(str::to_owned),
                index["force_zeros_for_empty_prompt"].as_bool(),
            )
        } else {
            (None, None)
        };
        let family = match class.as_deref() {
            Some("StableDiffusionPipeline") => BaseFamily::Sd15,
            Some("StableDiffusionXLPipeline") => BaseFamily::Sdxl,
            None if dir.join("text_encoder_2").is_dir() => BaseFamily::Sdxl,
            None => BaseFamily::Sd15,
            Some(other) => {
                return Err(PipelineError::NotAModel {
                    path: path.clone(),
                    reason: format!(
                        "its pipeline class is {other}; this version builds StableDiffusionPipeline (SD 1.x/2.x) and StableDiffusionXLPipeline (SDXL)"
                    ),
                });
            }
        };
        Ok(Self {
            family,
            // diffusers' `StableDiffusionXLPipeline` registers it with a default of true.
            force_zeros_for_empty_prompt: force_zeros.unwrap_or(true),
        })
    }
}

/// Checks that the text encoders' outputs are what the UNet takes.
fn check_fit(prompts: &PromptEncoder, unet: &UNet2DConditionModel) -> Result<(), String> {
    let config = unet.config();
    let cross = config.cross_attention_dim.expand(1)[0];
    let (width, pooled) = match prompts {
        PromptEncoder::Single { text_encoder, .. } => (text_encoder.hidden_size(), None),
        PromptEncoder::Dual { text_encoders, .. } => (
            text_encoders[0].hidden_size() + text_encoders[1].hidden_size(),
            text_encoders[0]
                .projection_dim()
                .or(text_encoders[1].projection_dim()),
        ),
    };
    if width != cross {
        return Err(format!(
            "the text encoders give {width}-wide tokens but the UNet's cross_attention_dim is {cross}"
        ));
    }
    match (pooled, config.text_time_shape()) {
        (None, None) => Ok(()),
        (Some(p), Some(shape)) if p == shape.text_embeds_dim => Ok(()),
        (Some(p), Some(shape)) => Err(format!(
            "the second text encoder's text_embeds are {p} wide, but the UNet's add_embedding takes {} (projection_class_embeddings_input_dim - 6 × addition_time_embed_dim)",
            shape.text_embeds_dim
        )),
        (None, Some(_)) => Err(
            "the UNet has SDXL's added conditioning (addition_embed_type \"text_time\"), but the folder has one text encoder".into(),
        ),
        (Some(_), None) => Err(
            "the folder has two text encoders (SDXL), but the UNet has no added conditioning (addition_embed_type)".into(),
        ),
    }
}
