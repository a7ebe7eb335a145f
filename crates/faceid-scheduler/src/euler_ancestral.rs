//! Euler ancestral, a port of diffusers' `schedulers/scheduling_euler_ancestral_discrete.py`
//! (`EulerAncestralDiscreteScheduler`).
//!
//! Same float32 timesteps and `np.interp` sigmas as Euler (no Karras option in diffusers). Each
//! step moves to `sigma_down` deterministically and adds `sigma_up`-scaled noise drawn from the
//! generator — on every step, the last one included (where `sigma_up` is 0), so the generator
//! advances exactly as in diffusers.

use burn::tensor::Tensor;

use crate::common::{
    BaseParams, TrainSchedule, euler_denoised, np_interp, same_shape, scale_by_sigma, sigma_pair,
};
use crate::config::{PredictionType, SchedulerConfig, TimestepSpacing};
use crate::euler::{euler_init_noise_sigma, euler_timesteps, sigma_schedule};
use crate::{Scheduler, SchedulerError, SchedulerKind, TorchGenerator};

/// diffusers' `EulerAncestralDiscreteScheduler`.
#[derive(Debug, Clone)]
pub struct EulerAncestralScheduler {
    params: BaseParams,
    schedule: TrainSchedule,
    timesteps: Vec<f32>,
    sigmas: Vec<f32>,
}

impl EulerAncestralScheduler {
    /// Builds the scheduler from a diffusers config (defaults: linspace spacing). Sample
    /// prediction is refused, as diffusers' `step` raises for it.
    pub fn new(config: &SchedulerConfig) -> Result<Self, SchedulerError> {
        let params = BaseParams::resolve(config, TimestepSpacing::Linspace)?;
        if params.prediction_type == PredictionType::Sample {
            return Err(SchedulerError::Unsupported {
                scheduler: "EulerAncestralDiscreteScheduler",
                feature: "prediction_type \"sample\"".into(),
            });
        }
        Ok(Self {
            schedule: sigma_schedule(&params),
            params,
            timesteps: Vec::new(),
            sigmas: Vec::new(),
        })
    }
}

impl Scheduler for EulerAncestralScheduler {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::EulerAncestral
    }

    fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<(), SchedulerError> {
        self.params.check_steps(num_inference_steps)?;
        let timesteps = euler_timesteps(&self.params, num_inference_steps);
        let train_sigmas: Vec<f64> = self.schedule.sigmas().iter().map(|&s| s as f64).collect();
        let mut sigmas: Vec<f32> = timesteps
            .iter()
            .map(|&t| np_interp(t as f64, &train_sigmas) as f32)
            .collect();
        sigmas.push(0.0);
        self.timesteps = timesteps;
        self.sigmas = sigmas;
        Ok(())
    }

    fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }

    fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    fn betas(&self) -> &[f32] {
        &self.schedule.betas
    }

    fn alphas_cumprod(&self) -> &[f32] {
        &self.schedule.alphas_cumprod
    }

    fn init_noise_sigma(&self) -> f32 {
        if self.sigmas.is_empty() {
            return euler_init_noise_sigma(self.params.timestep_spacing, &self.schedule.sigmas());
        }
        euler_init_noise_sigma(self.params.timestep_spacing, &self.sigmas)
    }

    fn scale_model_input(
        &self,
        sample: Tensor<4>,
        step_index: usize,
    ) -> Result<Tensor<4>, SchedulerError> {
        let (sigma, _) = sigma_pair(&self.sigmas, step_index)?;
        Ok(scale_by_sigma(sample, sigma))
    }

    fn step(
        &mut self,
        model_output: Tensor<4>,
        step_index: usize,
        sample: Tensor<4>,
        generator: &mut TorchGenerator,
    ) -> Result<Tensor<4>, SchedulerError> {
        same_shape(&model_output, &sample)?;
        let (sigma_from, sigma_to) = sigma_pair(&self.sigmas, step_index)?;
        let pred_original = euler_denoised(
            self.params.prediction_type,
            model_output,
            &sample,
            sigma_from,
        );

        let (from2, to2) = (sigma_from * sigma_from, sigma_to * sigma_to);
        let sigma_up = (to2 * (from2 - to2) / from2).sqrt();
        let sigma_down = (to2 - sigma_up * sigma_up).sqrt();

        let derivative = sample.clone().sub(pred_original).div_scalar(sigma_from);
        let dt = sigma_down - sigma_from;
        let prev_sample = sample.add(derivative.mul_scalar(dt));

        let device = prev_sample.device();
        let noise = generator.randn_tensor(prev_sample.dims(), &device);
        Ok(prev_sample.add(noise.mul_scalar(sigma_up)))
    }

    fn add_noise(
        &self,
        original_samples: Tensor<4>,
        noise: Tensor<4>,
        step_index: usize,
    ) -> Result<Tensor<4>, SchedulerError> {
        same_shape(&original_samples, &noise)?;
        let (sigma, _) = sigma_pair(&self.sigmas, step_index)?;
        Ok(original_samples.add(noise.mul_scalar(sigma)))
    }
}
