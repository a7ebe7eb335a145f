//! Diffusion schedulers for Stable Diffusion, ported from diffusers 0.42 (`src/diffusers/schedulers/`)
//! so that timesteps match exactly and every step matches to float32 rounding:
//!
//! - [`DdimScheduler`] (`scheduling_ddim.py`), including `eta > 0`;
//! - [`EulerDiscreteScheduler`] (`scheduling_euler_discrete.py`);
//! - [`EulerAncestralScheduler`] (`scheduling_euler_ancestral_discrete.py`);
//! - [`DpmSolverMultistepScheduler`] (`scheduling_dpmsolver_multistep.py`), DPM-Solver++ 2M with
//!   or without Karras sigmas.
//!
//! All of them are built from a diffusers [`SchedulerConfig`] (any `_class_name`, as
//! `XScheduler.from_config` does) through [`SchedulerKind::build`], and driven through the
//! [`Scheduler`] trait. Per-element arithmetic uses burn tensor ops, so the samples can live on any
//! device; the schedule tables are computed on the host with the dtypes diffusers uses. Random
//! noise (Euler ancestral, DDIM with `eta > 0`) comes from a [`TorchGenerator`], which reproduces a
//! seeded CPU `torch.Generator`.
//!
//! A denoising loop looks like diffusers' pipelines, with the step index in place of the timestep:
//!
//! ```no_run
//! # use faceid_scheduler::{Scheduler, SchedulerConfig, SchedulerKind, SchedulerError};
//! # use faceid_core::{Device, TorchGenerator};
//! # fn unet(x: burn::tensor::Tensor<4>, _t: f32) -> burn::tensor::Tensor<4> { x }
//! # fn main() -> Result<(), SchedulerError> {
//! let config = SchedulerConfig::from_file("scheduler/scheduler_config.json")?;
//! let mut scheduler = "dpmpp-2m-karras".parse::<SchedulerKind>()?.build(&config)?;
//! scheduler.set_timesteps(25)?;
//! let mut generator = TorchGenerator::new(42);
//! let device = Device::flex();
//! let mut latents = generator
//!     .randn_tensor([1, 4, 64, 64], &device)
//!     .mul_scalar(scheduler.init_noise_sigma());
//! for (i, &t) in scheduler.timesteps().to_vec().iter().enumerate() {
//!     let input = scheduler.scale_model_input(latents.clone(), i)?;
//!     let noise_pred = unet(input, t);
//!     latents = scheduler.step(noise_pred, i, latents, &mut generator)?;
//! }
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod common;
pub mod config;
mod ddim;
mod dpm_solver;
mod error;
mod euler;
mod euler_ancestral;

use std::str::FromStr;

use burn::tensor::Tensor;
pub use faceid_core::TorchGenerator;

pub use config::{
    BetaSchedule, FinalSigmasType, InterpolationType, PredictionType, SchedulerConfig, SolverType,
    TimestepSpacing, TimestepType,
};
pub use ddim::DdimScheduler;
pub use dpm_solver::DpmSolverMultistepScheduler;
pub use error::SchedulerError;
pub use euler::EulerDiscreteScheduler;
pub use euler_ancestral::EulerAncestralScheduler;

/// The interface every scheduler offers to a denoising loop.
///
/// Steps are addressed by their index in [`Scheduler::timesteps`] (diffusers tracks the same
/// index internally); an img2img loop starts at a later index. The tensors are `[batch, channels,
/// height, width]` latents.
pub trait Scheduler: std::fmt::Debug + Send {
    /// The kind of this scheduler.
    fn kind(&self) -> SchedulerKind;

    /// Computes the inference schedule for `num_inference_steps` steps (diffusers'
    /// `set_timesteps`) and resets any multistep history. Errors for 0 or more steps than
    /// `num_train_timesteps`.
    fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<(), SchedulerError>;

    /// The timesteps to pass to the UNet, one per step (empty before `set_timesteps`). Integer
    /// timesteps (DDIM, DPM-Solver) are stored as exact floats. The count can differ from the
    /// requested number of steps where diffusers' does (trailing spacing with some step counts).
    fn timesteps(&self) -> &[f32];

    /// The sigmas of the schedule, one more than the timesteps (empty for DDIM, which has none,
    /// and before `set_timesteps`).
    fn sigmas(&self) -> &[f32];

    /// The training betas (float32), indexed by training timestep.
    fn betas(&self) -> &[f32];

    /// The training `alphas_cumprod` table (float32), indexed by training timestep.
    fn alphas_cumprod(&self) -> &[f32];

    /// The factor diffusers multiplies the initial Gaussian latents by.
    fn init_noise_sigma(&self) -> f32;

    /// Sets the DDIM `eta` (0 = deterministic DDIM, 1 = DDPM-like noise). Diffusers pipelines
    /// pass `eta` only to schedulers whose `step` takes it, so the others ignore it.
    fn set_eta(&mut self, eta: f32) -> Result<(), SchedulerError> {
        check_eta(eta)
    }

    /// Scales the latents before they go into the UNet at step `step_index`.
    fn scale_model_input(
        &self,
        sample: Tensor<4>,
        step_index: usize,
    ) -> Result<Tensor<4>, SchedulerError>;

    /// One denoising step: from the UNet output at step `step_index` and the current latents,
    /// the latents of the next step. Stochastic schedulers draw their noise from `generator`,
    /// exactly as diffusers does with a CPU `torch.Generator`.
    fn step(
        &mut self,
        model_output: Tensor<4>,
        step_index: usize,
        sample: Tensor<4>,
        generator: &mut TorchGenerator,
    ) -> Result<Tensor<4>, SchedulerError>;

    /// Noises clean latents to the noise level of step `step_index` (diffusers' `add_noise`, as
    /// img2img pipelines call it with `timesteps[step_index]`).
    fn add_noise(
        &self,
        original_samples: Tensor<4>,
        noise: Tensor<4>,
        step_index: usize,
    ) -> Result<Tensor<4>, SchedulerError>;
}

pub(crate) fn check_eta(eta: f32) -> Result<(), SchedulerError> {
    if eta.is_finite() && eta >= 0.0 {
        Ok(())
    } else {
        Err(SchedulerError::InvalidConfig(format!(
            "eta must be finite and >= 0, got {eta}"
        )))
    }
}

/// The schedulers this crate provides, with the names the command line uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchedulerKind {
    /// `ddim`: diffusers' `DDIMScheduler`.
    Ddim,
    /// `euler`: diffusers' `EulerDiscreteScheduler`.
    Euler,
    /// `euler-a`: diffusers' `EulerAncestralDiscreteScheduler`.
    EulerAncestral,
    /// `dpmpp-2m` / `dpmpp-2m-karras`: diffusers' `DPMSolverMultistepScheduler` with
    /// `algorithm_type="dpmsolver++"`, `solver_order=2` and `use_karras_sigmas=karras`, whatever
    /// the config says about those three keys.
    DpmSolverMultistep2M {
        /// Use Karras sigmas.
        karras: bool,
    },
}

impl SchedulerKind {
    /// Every kind, in the order of their command-line names.
    pub const ALL: [SchedulerKind; 5] = [
        SchedulerKind::Ddim,
        SchedulerKind::Euler,
        SchedulerKind::EulerAncestral,
        SchedulerKind::DpmSolverMultistep2M { karras: false },
        SchedulerKind::DpmSolverMultistep2M { karras: true },
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ddim => "ddim",
            Self::Euler => "euler",
            Self::EulerAncestral => "euler-a",
            Self::DpmSolverMultistep2M { karras: false } => "dpmpp-2m",
            Self::DpmSolverMultistep2M { karras: true } => "dpmpp-2m-karras",
        }
    }

    /// The diffusers class this kind ports.
    pub fn diffusers_class(self) -> &'static str {
        match self {
            Self::Ddim => "DDIMScheduler",
            Self::Euler => "EulerDiscreteScheduler",
            Self::EulerAncestral => "EulerAncestralDiscreteScheduler",
            Self::DpmSolverMultistep2M { .. } => "DPMSolverMultistepScheduler",
        }
    }

    /// Builds the scheduler from a diffusers config, like `XScheduler.from_config(config)`.
    pub fn build(self, config: &SchedulerConfig) -> Result<Box<dyn Scheduler>, SchedulerError> {
        Ok(match self {
            Self::Ddim => Box::new(DdimScheduler::new(config)?),
            Self::Euler => Box::new(EulerDiscreteScheduler::new(config)?),
            Self::EulerAncestral => Box::new(EulerAncestralScheduler::new(config)?),
            Self::DpmSolverMultistep2M { karras } => {
                Box::new(DpmSolverMultistepScheduler::new(config, karras)?)
            }
        })
    }
}

impl FromStr for SchedulerKind {
    type Err = SchedulerError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| SchedulerError::UnknownScheduler(name.to_string()))
    }
}

impl std::fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
