//! What a run is asked for and what it reports: the request, progress, and the result.

use faceid_core::HostTensor;
use faceid_scheduler::SchedulerKind;
use image::RgbImage;

use crate::face_conditioning::FaceConditioning;

/// One generation request. `Default` gives diffusers' defaults (512×512, 50 steps, guidance 7.5).
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// What to draw.
    pub prompt: String,
    /// What to steer away from (classifier-free guidance's unconditional prompt). `None` is ""
    /// for SD 1.x, and zero embeddings for SDXL models with `force_zeros_for_empty_prompt`, as
    /// the reference treats a missing negative prompt.
    pub negative_prompt: Option<String>,
    /// Images to generate.
    pub num_samples: usize,
    /// Width in pixels (a multiple of the VAE's scale factor, 8).
    pub width: usize,
    /// Height in pixels (a multiple of the VAE's scale factor, 8).
    pub height: usize,
    /// Denoising steps.
    pub steps: usize,
    /// Classifier-free guidance scale; at 1 or below the unconditional branch is skipped.
    pub guidance_scale: f32,
    /// Seed of the CPU torch generator that draws the initial noise (and any scheduler noise).
    pub seed: u64,
    /// Scheduler; `None` uses the model's own when supported, else DDIM.
    pub scheduler: Option<SchedulerKind>,
    /// DDIM's eta.
    pub eta: f32,
    /// Initial latents `[num_samples, 4, height/8, width/8]` instead of seeded noise.
    pub latents: Option<HostTensor>,
    /// The face to draw (its identity, and for FaceID Plus its CLIP image features), for a
    /// model with a FaceID adapter installed.
    pub face: Option<FaceConditioning>,
    /// SDXL's size conditioning; `None` takes the reference's defaults (the output size as
    /// original and target size, no crop). SD 1.x models ignore it.
    pub size_conditioning: Option<SizeConditioning>,
}

/// SDXL's micro-conditioning (diffusers' `original_size`, `crops_coords_top_left`,
/// `target_size`), each as (height, width) / (top, left) in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizeConditioning {
    /// The size the model is told the training image had.
    pub original_size: (f32, f32),
    /// The top-left corner of the crop the model is told was taken.
    pub crops_coords_top_left: (f32, f32),
    /// The size the model is told to aim for.
    pub target_size: (f32, f32),
}

impl SizeConditioning {
    /// The reference's defaults for an image of `height` × `width`.
    pub fn for_size(height: usize, width: usize) -> Self {
        let size = (height as f32, width as f32);
        Self {
            original_size: size,
            crops_coords_top_left: (0.0, 0.0),
            target_size: size,
        }
    }

    /// The six `time_ids` in the reference's order.
    pub fn time_ids(&self) -> [f32; 6] {
        let (oh, ow) = self.original_size;
        let (top, left) = self.crops_coords_top_left;
        let (th, tw) = self.target_size;
        [oh, ow, top, left, th, tw]
    }
}

impl Default for GenerateRequest {
    fn default() -> Self {
        Self {
            prompt: String::new(),
            negative_prompt: None,
            num_samples: 1,
            width: 512,
            height: 512,
            steps: 50,
            guidance_scale: 7.5,
            seed: 0,
            scheduler: None,
            eta: 0.0,
            latents: None,
            face: None,
            size_conditioning: None,
        }
    }
}

/// Where a run is; passed to the progress callback before each step and once when done.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Steps finished.
    pub step: usize,
    /// Steps in all.
    pub total: usize,
    /// The timestep about to run (the last one when finished).
    pub timestep: f32,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Generated {
    /// One image per sample.
    pub images: Vec<RgbImage>,
    /// The seed used.
    pub seed: u64,
    /// The scheduler used.
    pub scheduler: SchedulerKind,
}
