//! Port of diffusers' `StableDiffusionPipeline.__call__` (pipelines/stable_diffusion/
//! pipeline_stable_diffusion.py) and `StableDiffusionXLPipeline.__call__`
//! (pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl.py) in their numbered phases:
//! check inputs, encode the prompt, prepare timesteps, prepare latents (and SDXL's added
//! conditioning), denoise, decode. Loading (`load`) and the checks of a request (`check`) live
//! in the submodules.

mod check;
mod load;

use std::ops::ControlFlow;

use burn::tensor::Tensor;
use faceid_core::{ComponentMemory, Device, Precision, TorchGenerator, device_lock};
use faceid_ipadapter::{FaceIdAdapter, PlusOptions, ProjectionInput};
use faceid_scheduler::{Scheduler, SchedulerConfig, SchedulerKind};
use faceid_unet::{Conditioning, TextTime, UNet2DConditionModel};
use faceid_vae::AutoencoderKL;

use crate::error::PipelineError;
use crate::image_io::to_rgb_images;
use crate::prompt::{PromptEmbeds, PromptEncoder};
use crate::request::{GenerateRequest, Generated, Progress, SizeConditioning};
use crate::spec::BaseFamily;

/// The components of a Stable Diffusion 1.x/2.x or SDXL model.
#[derive(Debug)]
pub struct StableDiffusion {
    family: BaseFamily,
    prompts: PromptEncoder,
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
    /// The base model's architecture.
    pub fn family(&self) -> BaseFamily {
        self.family
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
        let mut out = self.prompts.memory();
        out.push(ComponentMemory::of("unet", &self.unet));
        out.push(ComponentMemory::of("vae", &self.vae));
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

    /// Encodes a prompt to the UNet's text tokens `[1, 77, cross_attention_dim]` (and SDXL's
    /// pooled embedding).
    pub fn encode_prompt(&self, prompt: &str) -> Result<PromptEmbeds, PipelineError> {
        self.prompts.encode(prompt)
    }

    /// The text side of the model.
    pub fn prompt_encoder(&self) -> &PromptEncoder {
        &self.prompts
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
    /// DDIM with eta > 0) take one request at a time. On a GPU, one generation at a time per
    /// device (see [`faceid_core::device_lock`]): a larger batch is how a GPU takes more work.
    pub fn generate_batch(
        &self,
        requests: &[GenerateRequest],
        progress: &mut dyn FnMut(Progress) -> ControlFlow<()>,
    ) -> Result<Vec<Generated>, PipelineError> {
        device_lock::exclusive(&self.device, || self.run_batch(requests, progress))
    }

    fn run_batch(
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
            let repeat = |e: PromptEmbeds| PromptEmbeds {
                tokens: e.tokens.repeat_dim(0, r.num_samples),
                pooled: e.pooled.map(|p| p.repeat_dim(0, r.num_samples)),
            };
            positives.push(repeat(self.prompts.encode(&r.prompt)?));
            if guided {
                negatives.push(repeat(
                    self.prompts.encode_negative(r.negative_prompt.as_deref())?,
                ));
            }
        }
        let embeds: Vec<PromptEmbeds> = negatives.into_iter().chain(positives).collect();
        let context = Tensor::cat(embeds.iter().map(|e| e.tokens.clone()).collect(), 0);

        // 2a. SDXL's added conditioning: the pooled embeddings and each request's size ids
        // (by default `(height, width, 0, 0, height, width)`; the negative half gets the
        // positive's, as the reference does), batched like the tokens.
        let text_time = match self.family {
            BaseFamily::Sd15 => None,
            BaseFamily::Sdxl => {
                let pooled: Option<Vec<Tensor<2>>> =
                    embeds.iter().map(|e| e.pooled.clone()).collect();
                let pooled = pooled.ok_or_else(|| PipelineError::NotAModel {
                    path: "text_encoder_2".into(),
                    reason: "SDXL needs a pooled text embedding".into(),
                })?;
                let mut time_ids = Vec::with_capacity(context.dims()[0]);
                for _ in 0..usize::from(guided) + 1 {
                    for r in requests {
                        let sizes = r
                            .size_conditioning
                            .unwrap_or_else(|| SizeConditioning::for_size(r.height, r.width));
                        time_ids.extend(std::iter::repeat_n(sizes.time_ids(), r.num_samples));
                    }
                }
                Some(TextTime {
                    text_embeds: Tensor::cat(pooled, 0),
                    time_ids,
                })
            }
        };

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
        let conditioning = Conditioning::text(context)
            .with_image(image_tokens)
            .with_text_time(text_time);
        let latents = self.denoise(
            scheduler.as_mut(),
            latents,
            &conditioning,
            first.guidance_scale,
            &mut generators[0],
            progress,
        )?;

        // 6. Decode, one image at a time to bound memory, and hand each request its images.
        let mut out = Vec::with_capacity(requests.len());
        let mut offset = 0;
        for r in requests {
            let mut images = Vec::with_capacity(r.num_samples);
            for i in offset..offset + r.num_samples {
                let latent = self.unscale_latents(latents.clone().narrow(0, i, 1));
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

    /// Final latents back to the VAE's latent space: `/ scaling_factor`, and for SDXL with a VAE
    /// that gives per-channel statistics, `· latents_std / scaling_factor + latents_mean`.
    fn unscale_latents(&self, latents: Tensor<4>) -> Tensor<4> {
        let config = self.vae.config();
        let scaling = config.scaling_factor;
        match (self.family, &config.latents_mean, &config.latents_std) {
            (BaseFamily::Sdxl, Some(mean), Some(std)) => {
                let channel = |v: &Vec<f32>| {
                    Tensor::<1>::from_floats(v.as_slice(), &self.device).reshape([1, v.len(), 1, 1])
                };
                latents * channel(std) / scaling + channel(mean)
            }
            _ => latents / scaling,
        }
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
