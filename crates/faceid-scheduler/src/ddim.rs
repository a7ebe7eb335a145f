//! DDIM, a port of diffusers' `schedulers/scheduling_ddim.py` (`DDIMScheduler`).
//!
//! Scalars follow diffusers' dtypes: `alphas_cumprod` entries are float32 0-dim tensors there, so
//! every coefficient (`alpha ** 0.5`, the variance, `eta * std`) is computed in float32 here too.
//! Timesteps are integers (int64 in diffusers). Quirks kept for fidelity: the previous timestep
//! is always `t - num_train_timesteps // num_inference_steps`, whatever the spacing, and a
//! timestep of -1 (trailing spacing with step counts such as 61) indexes `alphas_cumprod` from
//! the end, as Python does.

use burn::tensor::Tensor;

use crate::common::{
    BaseParams, TrainSchedule, leading, np_linspace, np_round, same_shape, trailing,
};
use crate::config::{PredictionType, SchedulerConfig, TimestepSpacing};
use crate::{Scheduler, SchedulerError, SchedulerKind, TorchGenerator, check_eta};

/// diffusers' `DDIMScheduler`.
#[derive(Debug, Clone)]
pub struct DdimScheduler {
    params: BaseParams,
    schedule: TrainSchedule,
    final_alpha_cumprod: f32,
    clip_sample: Option<f32>,
    eta: f32,
    /// The requested step count (diffusers' `num_inference_steps`).
    num_inference_steps: usize,
    timesteps: Vec<i64>,
    timesteps_f32: Vec<f32>,
}

impl DdimScheduler {
    /// Builds the scheduler from a diffusers config (DDIM defaults: leading spacing,
    /// `clip_sample=True`, `set_alpha_to_one=True`).
    pub fn new(config: &SchedulerConfig) -> Result<Self, SchedulerError> {
        if config.thresholding == Some(true) {
            return Err(SchedulerError::Unsupported {
                scheduler: "DDIMScheduler",
                feature: "thresholding".into(),
            });
        }
        let params = BaseParams::resolve(config, TimestepSpacing::Leading)?;
        let schedule = TrainSchedule::new(&params);
        let final_alpha_cumprod = if config.set_alpha_to_one.unwrap_or(true) {
            1.0
        } else {
            schedule.alphas_cumprod[0]
        };
        let clip_sample = config
            .clip_sample
            .unwrap_or(true)
            .then(|| config.clip_sample_range.unwrap_or(1.0) as f32);
        Ok(Self {
            params,
            schedule,
            final_alpha_cumprod,
            clip_sample,
            eta: 0.0,
            num_inference_steps: 0,
            timesteps: Vec::new(),
            timesteps_f32: Vec::new(),
        })
    }

    /// The DDIM `eta` in use.
    pub fn eta(&self) -> f32 {
        self.eta
    }

    /// The integer timesteps, as diffusers stores them.
    pub fn integer_timesteps(&self) -> &[i64] {
        &self.timesteps
    }

    /// `alphas_cumprod[t]` with Python indexing (negative from the end).
    fn alpha_at(&self, t: i64) -> Result<f32, SchedulerError> {
        let len = self.schedule.alphas_cumprod.len() as i64;
        let index = if t < 0 { t + len } else { t };
        usize::try_from(index)
            .ok()
            .and_then(|i| self.schedule.alphas_cumprod.get(i).copied())
            .ok_or_else(|| {
                SchedulerError::InvalidConfig(format!(
                    "timestep {t} is outside the training schedule"
                ))
            })
    }

    fn timestep(&self, step_index: usize) -> Result<i64, SchedulerError> {
        if self.timesteps.is_empty() {
            return Err(SchedulerError::TimestepsNotSet);
        }
        self.timesteps
            .get(step_index)
            .copied()
            .ok_or(SchedulerError::StepIndexOutOfRange {
                index: step_index,
                len: self.timesteps.len(),
            })
    }
}

impl Scheduler for DdimScheduler {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Ddim
    }

    fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<(), SchedulerError> {
        self.params.check_steps(num_inference_steps)?;
        let n = num_inference_steps;
        let num_train = self.params.num_train_timesteps;
        let timesteps: Vec<i64> = match self.params.timestep_spacing {
            TimestepSpacing::Linspace => np_linspace(0.0, (num_train - 1) as f64, n)
                .into_iter()
                .rev()
                .map(|t| np_round(t) as i64)
                .collect(),
            TimestepSpacing::Leading => leading(n, num_train, n)
                .into_iter()
                .map(|t| t as i64 + self.params.steps_offset)
                .collect(),
            TimestepSpacing::Trailing => trailing(num_train, num_train, n)
                .into_iter()
                .map(|t| t as i64)
                .collect(),
        };
        self.num_inference_steps = n;
        self.timesteps_f32 = timesteps.iter().map(|&t| t as f32).collect();
        self.timesteps = timesteps;
        Ok(())
    }

    fn timesteps(&self) -> &[f32] {
        &self.timesteps_f32
    }

    fn sigmas(&self) -> &[f32] {
        &[]
    }

    fn betas(&self) -> &[f32] {
        &self.schedule.betas
    }

    fn alphas_cumprod(&self) -> &[f32] {
        &self.schedule.alphas_cumprod
    }

    fn init_noise_sigma(&self) -> f32 {
        1.0
    }

    fn set_eta(&mut self, eta: f32) -> Result<(), SchedulerError> {
        check_eta(eta)?;
        self.eta = eta;
        Ok(())
    }

    fn scale_model_input(
        &self,
        sample: Tensor<4>,
        step_index: usize,
    ) -> Result<Tensor<4>, SchedulerError> {
        self.timestep(step_index)?;
        Ok(sample)
    }

    fn step(
        &mut self,
        model_output: Tensor<4>,
        step_index: usize,
        sample: Tensor<4>,
        generator: &mut TorchGenerator,
    ) -> Result<Tensor<4>, SchedulerError> {
        same_shape(&model_output, &sample)?;
        let t = self.timestep(step_index)?;
        let prev_t = t - (self.params.num_train_timesteps / self.num_inference_steps) as i64;

        let alpha_t = self.alpha_at(t)?;
        let alpha_prev = if prev_t >= 0 {
            self.alpha_at(prev_t)?
        } else {
            self.final_alpha_cumprod
        };
        let beta_t = 1.0 - alpha_t;
        let (sqrt_alpha_t, sqrt_beta_t) = (alpha_t.sqrt(), beta_t.sqrt());

        let (pred_original, pred_epsilon) = match self.params.prediction_type {
            PredictionType::Epsilon => {
                let x0 = sample
                    .clone()
                    .sub(model_output.clone().mul_scalar(sqrt_beta_t))
                    .div_scalar(sqrt_alpha_t);
                (x0, model_output)
            }
            PredictionType::Sample => {
                let eps = sample
                    .clone()
                    .sub(model_output.clone().mul_scalar(sqrt_alpha_t))
                    .div_scalar(sqrt_beta_t);
                (model_output, eps)
            }
            PredictionType::VPrediction => {
                let x0 = sample
                    .clone()
                    .mul_scalar(sqrt_alpha_t)
                    .sub(model_output.clone().mul_scalar(sqrt_beta_t));
                let eps = model_output
                    .mul_scalar(sqrt_alpha_t)
                    .add(sample.mul_scalar(sqrt_beta_t));
                (x0, eps)
            }
        };
        let pred_original = match self.clip_sample {
            Some(range) => pred_original.clamp(-range, range),
            None => pred_original,
        };

        let beta_prev = 1.0 - alpha_prev;
        let variance = (beta_prev / beta_t) * (1.0 - alpha_t / alpha_prev);
        let std_dev_t = self.eta * variance.sqrt();
        let direction_coef = (1.0 - alpha_prev - std_dev_t * std_dev_t).sqrt();
        let mut prev_sample = pred_original
            .mul_scalar(alpha_prev.sqrt())
            .add(pred_epsilon.mul_scalar(direction_coef));
        if self.eta > 0.0 {
            let device = prev_sample.device();
            let noise = generator.randn_tensor(prev_sample.dims(), &device);
            prev_sample = prev_sample.add(noise.mul_scalar(std_dev_t));
        }
        Ok(prev_sample)
    }

    fn add_noise(
        &self,
        original_samples: Tensor<4>,
        noise: Tensor<4>,
        step_index: usize,
    ) -> Result<Tensor<4>, SchedulerError> {
        same_shape(&original_samples, &noise)?;
        let alpha = self.alpha_at(self.timestep(step_index)?)?;
        Ok(original_samples
            .mul_scalar(alpha.sqrt())
            .add(noise.mul_scalar((1.0 - alpha).sqrt())))
    }
}
