//! Port of diffusers' `StableDiffusionPipeline.__call__` (pipelines/stable_diffusion/
//! pipeline_stable_diffusion.py) in its numbered phases: check inputs, encode the prompt,
//! prepare timesteps, prepare latents, denoise, decode.

use std::ops::ControlFlow;
use std::path::Path;

use crate::error::PipelineError;
use crate::face_encoder::ClipImageEncoder;
use crate::image_io::to_rgb_images;
use crate::request::{GenerateRequest, Generated, Progress};
use burn::tensor::Tensor;
use faceid_clip::{ClipTextModel, ClipTokenizer};
use faceid_core::{ComponentMemory, Device, HostTensor, Precision, TorchGenerator};
use faceid_ipadapter::{AdapterOptions, FaceIdAdapter, PlusOptions, ProjectionInput};
use faceid_scheduler::{Scheduler, SchedulerConfig, SchedulerKind};
use faceid_unet::{Conditioning, UNet2DConditionModel};
use faceid_vae::AutoencoderKL;

/// Most steps a request may ask for.
const MAX_STEPS: usize = 1000;
/// Most images one request may ask for.
const MAX_SAMPLES: usize = 16;
/// Largest side in pixels.
const MAX_SIDE: usize = 4096;

/// The components of a Stable Diffusion 1.x/2.x model.
#[derive(Debug)]
pub struct StableDiffusion {
    tokenizer: ClipTokenizer,
    text_encoder: ClipTextModel,
    unet: UNet2DConditionModel,
    vae: AutoencoderKL,
    scheduler_config: SchedulerConfig,
    default_scheduler: SchedulerKind,
    faceid: Option<InstalledFaceId>,
    device: Device,
}

/// A FaceID adapter with what its projection needs besides the face.
#[derive(Debug)]
struct InstalledFaceId {
    adapter: FaceIdAdapter,
    /// Shortcut and `s_scale` (FaceID Plus).
    plus: PlusOptions,
    /// FaceID Plus: the image encoder's features of an all-zero pixel tensor, projected with a
    /// zero identity for the unconditional branch.
    zero_image_features: Option<Tensor<3>>,
}

impl StableDiffusion {
    /// Loads a diffusers folder (`model_index.json`, `tokenizer/`, `text_encoder/`, `unet/`,
    /// `vae/`, `scheduler/`) in f32; `vae` replaces the folder's own VAE (needed for folders that
    /// ship none, such as Realistic_Vision_V4.0_noVAE, paired with sd-vae-ft-mse).
    pub fn from_dir(
        dir: &Path,
        vae: Option<&Path>,
        device: &Device,
    ) -> Result<Self, PipelineError> {
        Self::from_dir_in(dir, vae, device, Precision::F32)
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
        tracing::info!(model = %dir.display(), %precision, "loading Stable Diffusion components");
        Ok(Self::from_components(
            ClipTokenizer::from_dir(&dir.join("tokenizer"))?,
            ClipTextModel::from_dir_in(&dir.join("text_encoder"), device, precision)?,
            UNet2DConditionModel::from_dir_in(&dir.join("unet"), device, precision)?,
            AutoencoderKL::from_dir(&vae_dir, device)?,
            scheduler_config,
            device,
        ))
    }

    /// Assembles a pipeline from components loaded elsewhere (all on `device`). The default
    /// scheduler is the one `scheduler_config` names, when supported, else DDIM.
    pub fn from_components(
        tokenizer: ClipTokenizer,
        text_encoder: ClipTextModel,
        unet: UNet2DConditionModel,
        vae: AutoencoderKL,
        scheduler_config: SchedulerConfig,
        device: &Device,
    ) -> Self {
        let default_scheduler = match scheduler_config.class_name.as_deref() {
            Some("EulerDiscreteScheduler") => SchedulerKind::Euler,
            Some("EulerAncestralDiscreteScheduler") => SchedulerKind::EulerAncestral,
            Some("DPMSolverMultistepScheduler") => SchedulerKind::DpmSolverMultistep2M {
                karras: scheduler_config.use_karras_sigmas.unwrap_or(false),
            },
            _ => SchedulerKind::Ddim,
        };
        Self {
            tokenizer,
            text_encoder,
            unet,
            vae,
            scheduler_config,
            default_scheduler,
            faceid: None,
            device: device.clone(),
        }
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

    /// Changes the weight of the FaceID image branch (0 draws as if no face were given).
    pub fn set_ip_scale(&mut self, scale: f32) {
        FaceIdAdapter::set_ip_scale(&mut self.unet, scale);
    }

    /// Whether a FaceID adapter is installed.
    pub fn has_faceid(&self) -> bool {
        self.faceid.is_some()
    }

    /// Whether the installed adapter is FaceID Plus (its faces need CLIP image features).
    pub fn is_faceid_plus(&self) -> bool {
        self.faceid.as_ref().is_some_and(|f| f.adapter.is_plus())
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The precision of the UNet (the denoising loop).
    pub fn precision(&self) -> Precision {
        self.unet.precision()
    }

    /// The memory the loaded weights take on the device, per component.
    pub fn memory(&self) -> Vec<ComponentMemory> {
        let mut out = vec![
            ComponentMemory::of("text_encoder", &self.text_encoder),
            ComponentMemory::of("unet", &self.unet),
            ComponentMemory::of("vae", &self.vae),
        ];
        if let Some(adapter) = &self.faceid {
            out.push(ComponentMemory::of(
                "image_proj",
                adapter.adapter.projection(),
            ));
        }
        out
    }

    /// How many pixels one latent covers per side.
    pub fn vae_scale_factor(&self) -> usize {
        self.vae.config().scale_factor()
    }

    /// The UNet.
    pub fn unet(&self) -> &UNet2DConditionModel {
        &self.unet
    }

    /// Checks a request against the model before any work is done.
    pub fn check(&self, request: &GenerateRequest) -> Result<(), PipelineError> {
        let invalid = |field, reason: String| Err(PipelineError::InvalidRequest { field, reason });
        let f = self.vae_scale_factor();
        for (field, side) in [("width", request.width), ("height", request.height)] {
            if side == 0 || side % f != 0 || side > MAX_SIDE {
                return invalid(
                    field,
                    format!("{side} must be a positive multiple of {f}, at most {MAX_SIDE}"),
                );
            }
        }
        if request.steps == 0 || request.steps > MAX_STEPS {
            return invalid(
                "num_inference_steps",
                format!("{} must be between 1 and {MAX_STEPS}", request.steps),
            );
        }
        if request.num_samples == 0 || request.num_samples > MAX_SAMPLES {
            return invalid(
                "num_samples",
                format!(
                    "{} must be between 1 and {MAX_SAMPLES}",
                    request.num_samples
                ),
            );
        }
        if !request.guidance_scale.is_finite() || request.guidance_scale < 0.0 {
            return invalid(
                "guidance_scale",
                format!("{} must be a finite number >= 0", request.guidance_scale),
            );
        }
        if let Some(face) = &request.face {
            let Some(faceid) = &self.faceid else {
                return invalid("face", "the model has no FaceID adapter installed".into());
            };
            let embedding = &face.id_embedding;
            if !matches!(embedding.shape.as_slice(), [512] | [1, 512]) {
                return invalid(
                    "face",
                    format!(
                        "identity of shape {:?}, expected [1, 512] or [512]",
                        embedding.shape
                    ),
                );
            }
            let finite = |t: &HostTensor| t.data.iter().all(|v| v.is_finite());
            if !finite(embedding) || !face.clip_embeds.as_ref().is_none_or(finite) {
                return invalid("face", "contains NaN or infinite values".into());
            }
            let width = faceid.adapter.projection().clip_width();
            match (&face.clip_embeds, width) {
                (None, None) => {}
                (Some(_), None) => {
                    return invalid(
                        "face",
                        "CLIP image features were given, but this FaceID model reads the identity alone: use a FaceID Plus model, or the identity alone".into(),
                    );
                }
                (None, Some(_)) => {
                    return invalid(
                        "face",
                        "this FaceID Plus model needs the face's CLIP image features: give face photos, or a face file written by `faceid embed` with an image encoder".into(),
                    );
                }
                (Some(clip), Some(width)) => {
                    if !matches!(clip.shape.as_slice(), [1, tokens, w] if *tokens > 0 && *w == width)
                    {
                        return invalid(
                            "face",
                            format!(
                                "CLIP image features of shape {:?}, expected [1, tokens, {width}] from this model's image encoder",
                                clip.shape
                            ),
                        );
                    }
                }
            }
        }
        if let Some(latents) = &request.latents {
            let expected = self.latent_shape(request);
            if latents.shape != expected {
                return invalid(
                    "latents",
                    format!(
                        "shape {:?} does not match {expected:?} (num_samples, channels, height/{f}, width/{f})",
                        latents.shape
                    ),
                );
            }
        }
        Ok(())
    }

    fn latent_shape(&self, request: &GenerateRequest) -> Vec<usize> {
        let f = self.vae_scale_factor();
        vec![
            request.num_samples,
            self.unet.config().in_channels,
            request.height / f,
            request.width / f,
        ]
    }

    /// Encodes a prompt to `[1, 77, hidden]`.
    pub fn encode_prompt(&self, prompt: &str) -> Result<Tensor<3>, PipelineError> {
        let cut = self.tokenizer.truncated_tokens(prompt)?;
        if cut > 0 {
            tracing::warn!(
                tokens = cut,
                "the prompt is longer than the text encoder takes; its end is ignored"
            );
        }
        let ids = self.tokenizer.encode(prompt)?;
        Ok(self.text_encoder.encode(&[ids])?)
    }

    /// Runs the pipeline. `progress` is called before every step and once at the end; returning
    /// `ControlFlow::Break` cancels the run.
    pub fn generate(
        &self,
        request: &GenerateRequest,
        progress: &mut dyn FnMut(Progress) -> ControlFlow<()>,
    ) -> Result<Generated, PipelineError> {
        let mut generated = self.generate_batch(std::slice::from_ref(request), progress)?;
        Ok(generated.remove(0))
    }

    /// Whether two requests can share one denoising loop: same size, steps, guidance,
    /// scheduler and eta, and both with or both without a face. Prompts, seeds, identities and
    /// sample counts may differ.
    pub fn same_shape(a: &GenerateRequest, b: &GenerateRequest) -> bool {
        (a.width, a.height, a.steps, a.scheduler, a.face.is_some())
            == (b.width, b.height, b.steps, b.scheduler, b.face.is_some())
            && a.guidance_scale == b.guidance_scale
            && a.eta == b.eta
    }

    /// Runs several requests of the same shape (see [`Self::same_shape`]) as one batch, the way
    /// diffusers runs a list of prompts with one generator per request; each request gets the
    /// images it would get alone. Schedulers that draw noise during the loop (Euler ancestral,
    /// DDIM with eta > 0) take one request at a time.
    pub fn generate_batch(
        &self,
        requests: &[GenerateRequest],
        progress: &mut dyn FnMut(Progress) -> ControlFlow<()>,
    ) -> Result<Vec<Generated>, PipelineError> {
        // 1. Check inputs.
        let Some(first) = requests.first() else {
            return Err(PipelineError::InvalidRequest {
                field: "requests",
                reason: "an empty batch".into(),
            });
        };
        for request in requests {
            self.check(request)?;
            if !Self::same_shape(first, request) {
                return Err(PipelineError::InvalidRequest {
                    field: "requests",
                    reason: "a batch needs the same width, height, steps, guidance, scheduler and eta, and a face in all or none".into(),
                });
            }
        }
        let kind = first.scheduler.unwrap_or(self.default_scheduler);
        if requests.len() > 1 && (kind == SchedulerKind::EulerAncestral || first.eta != 0.0) {
            return Err(PipelineError::InvalidRequest {
                field: "requests",
                reason: format!(
                    "{kind} with eta {} draws noise at every step: run its requests one at a time",
                    first.eta
                ),
            });
        }
        let guided = first.guidance_scale > 1.0;
        let total: usize = requests.iter().map(|r| r.num_samples).sum();

        // 2. Encode the prompts: [negatives, positives], each repeated for its samples, as
        // diffusers batches them.
        let mut negatives = Vec::new();
        let mut positives = Vec::new();
        for r in requests {
            positives.push(self.encode_prompt(&r.prompt)?.repeat_dim(0, r.num_samples));
            if guided {
                negatives.push(
                    self.encode_prompt(&r.negative_prompt)?
                        .repeat_dim(0, r.num_samples),
                );
            }
        }
        let context = Tensor::cat(negatives.into_iter().chain(positives).collect(), 0);

        // 2b. FaceID image tokens: the projection of each face, and of a zero identity (with,
        // for Plus, the features of a zero image) for the unconditional half, batched like the
        // text.
        let image_tokens = match (&self.faceid, first.face.is_some()) {
            (Some(faceid), true) => {
                let InstalledFaceId {
                    adapter,
                    plus,
                    zero_image_features,
                } = faceid;
                let mut parts = Vec::new();
                if guided {
                    parts.push(adapter.unconditional_tokens(
                        total,
                        zero_image_features.clone(),
                        plus,
                    )?);
                }
                for r in requests {
                    let face = r.face.as_ref().expect("checked: all have a face");
                    let mut input =
                        ProjectionInput::from_values(&face.id_embedding.data, &self.device);
                    if let Some(clip) = &face.clip_embeds {
                        input = input.with_clip_embeds(clip.clone().to_tensor::<3>(&self.device));
                    }
                    parts.push(
                        adapter
                            .image_tokens(input, plus)?
                            .repeat_dim(0, r.num_samples),
                    );
                }
                Some(Tensor::cat(parts, 0))
            }
            _ => None,
        };

        // 3. Timesteps.
        let mut scheduler = kind.build(&self.scheduler_config)?;
        scheduler.set_eta(first.eta)?;
        scheduler.set_timesteps(first.steps)?;

        // 4. Latents: each request's generator's first draw, like diffusers' `prepare_latents`.
        let mut generators = Vec::with_capacity(requests.len());
        let mut latents = Vec::with_capacity(requests.len());
        for r in requests {
            let mut generator = TorchGenerator::new(r.seed);
            let shape: [usize; 4] = self.latent_shape(r).try_into().expect("four dimensions");
            latents.push(match &r.latents {
                Some(given) => given.clone().to_tensor::<4>(&self.device),
                None => generator.randn_tensor(shape, &self.device),
            });
            generators.push(generator);
        }
        let latents = Tensor::cat(latents, 0) * scheduler.init_noise_sigma();

        // 5. Denoise (only single-request batches use the generator during the loop).
        let conditioning = Conditioning::text(context).with_image(image_tokens);
        let latents = self.denoise(
            scheduler.as_mut(),
            latents,
            &conditioning,
            first.guidance_scale,
            &mut generators[0],
            progress,
        )?;

        // 6. Decode, one image at a time to bound memory, and hand each request its images.
        let scaling = self.vae.config().scaling_factor;
        let mut out = Vec::with_capacity(requests.len());
        let mut offset = 0;
        for r in requests {
            let mut images = Vec::with_capacity(r.num_samples);
            for i in offset..offset + r.num_samples {
                let latent = latents.clone().narrow(0, i, 1) / scaling;
                images.extend(to_rgb_images(self.vae.decode(latent)?));
            }
            offset += r.num_samples;
            out.push(Generated {
                images,
                seed: r.seed,
                scheduler: kind,
            });
        }
        Ok(out)
    }

    /// The denoising loop: one batched UNet call per step for both guidance branches, the
    /// conditioning batched as `[unconditional; conditional]` when guided.
    pub fn denoise(
        &self,
        scheduler: &mut dyn Scheduler,
        mut latents: Tensor<4>,
        conditioning: &Conditioning,
        guidance_scale: f32,
        generator: &mut TorchGenerator,
        progress: &mut dyn FnMut(Progress) -> ControlFlow<()>,
    ) -> Result<Tensor<4>, PipelineError> {
        let guided = guidance_scale > 1.0;
        let timesteps = scheduler.timesteps().to_vec();
        let total = timesteps.len();
        for (i, &t) in timesteps.iter().enumerate() {
            if progress(Progress {
                step: i,
                total,
                timestep: t,
            })
            .is_break()
            {
                return Err(PipelineError::Cancelled { step: i });
            }
            let input = if guided {
                Tensor::cat(vec![latents.clone(), latents.clone()], 0)
            } else {
                latents.clone()
            };
            let input = scheduler.scale_model_input(input, i)?;
            let noise = self.unet.forward(input, t, conditioning)?;
            let noise = if guided {
                let [uncond, cond]: [Tensor<4>; 2] =
                    noise.chunk(2, 0).try_into().expect("two halves");
                uncond.clone() + (cond - uncond) * guidance_scale
            } else {
                noise
            };
            latents = scheduler.step(noise, i, latents, generator)?;
        }
        let _ = progress(Progress {
            step: total,
            total,
            timestep: timesteps.last().copied().unwrap_or(0.0),
        });
        Ok(latents)
    }
}
