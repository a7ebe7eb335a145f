//! Euler, a port of diffusers' `schedulers/scheduling_euler_discrete.py`
//! (`EulerDiscreteScheduler`, with `s_churn = 0`, the value its pipelines use).
//!
//! Timesteps are float32 (linspace spacing gives fractional ones such as 946.7368). Sigmas are
//! interpolated from the float32 training sigmas with `np.interp` in float64 at the float32
//! timesteps, optionally remapped to Karras sigmas (float64, with timesteps recovered by
//! `_sigma_to_t`), then rounded to float32. The step itself runs on float32 0-dim tensors:
//! `x0 = sample - sigma * eps`, `derivative = (sample - x0) / sigma`,
//! `prev = sample + derivative * (sigma_next - sigma)` — kept in that form, not simplified,
//! because the rounding differs.

use burn::tensor::Tensor;

use crate::common::{
    BaseParams, TrainSchedule, euler_denoised, karras_sigmas, leading, log_sigmas, np_interp,
    np_linspace, same_shape, scale_by_sigma, sigma_pair, sigma_to_t, trailing,
};
use crate::config::{
    FinalSigmasType, InterpolationType, PredictionType, SchedulerConfig, TimestepSpacing,
    TimestepType,
};
use crate::{Scheduler, SchedulerError, SchedulerKind, TorchGenerator};

/// Timesteps (float32) of the Euler-family schedulers for the plain spacings.
pub(crate) fn euler_timesteps(params: &BaseParams, n: usize) -> Vec<f32> {
    let num_train = params.num_train_timesteps;
    match params.timestep_spacing {
        TimestepSpacing::Linspace => np_linspace(0.0, (num_train - 1) as f64, n)
            .into_iter()
            .rev()
            .map(|t| t as f32)
            .collect(),
        TimestepSpacing::Leading => leading(n, num_train, n)
            .into_iter()
            .map(|t| t as f32 + params.steps_offset as f32)
            .collect(),
        TimestepSpacing::Trailing => trailing(num_train, num_train, n)
            .into_iter()
            .map(|t| t as f32)
            .collect(),
    }
}

/// `init_noise_sigma` of the Euler-family schedulers: the largest sigma, or `sqrt(max^2 + 1)` for
/// leading spacing.
pub(crate) fn euler_init_noise_sigma(spacing: TimestepSpacing, sigmas: &[f32]) -> f32 {
    let max = sigmas.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    match spacing {
        TimestepSpacing::Linspace | TimestepSpacing::Trailing => max,
        TimestepSpacing::Leading => (max * max + 1.0).sqrt(),
    }
}

/// The training schedule of the sigma-based schedulers: zero-terminal-SNR configs pin the last
/// `alphas_cumprod` to 2^-24 so that the largest sigma stays finite.
pub(crate) fn sigma_schedule(params: &BaseParams) -> TrainSchedule {
    let mut schedule = TrainSchedule::new(params);
    if params.rescale_betas_zero_snr
        && let Some(last) = schedule.alphas_cumprod.last_mut()
    {
        *last = 2f32.powi(-24);
    }
    schedule
}

/// diffusers' `EulerDiscreteScheduler`.
#[derive(Debug, Clone)]
pub struct EulerDiscreteScheduler {
    params: BaseParams,
    schedule: TrainSchedule,
    use_karras_sigmas: bool,
    sigma_min: Option<f64>,
    sigma_max: Option<f64>,
    continuous_timesteps: bool,
    final_sigmas_type: FinalSigmasType,
    timesteps: Vec<f32>,
    sigmas: Vec<f32>,
}

impl EulerDiscreteScheduler {
    /// Builds the scheduler from a diffusers config (Euler defaults: linspace spacing, linear
    /// interpolation, no Karras sigmas, discrete timesteps, final sigma zero).
    pub fn new(config: &SchedulerConfig) -> Result<Self, SchedulerError> {
        let unsupported = |feature: &str| SchedulerError::Unsupported {
            scheduler: "EulerDiscreteScheduler",
            feature: feature.into(),
        };
        if config.use_exponential_sigmas == Some(true) {
            return Err(unsupported("use_exponential_sigmas"));
        }
        if config.use_beta_sigmas == Some(true) {
            return Err(unsupported("use_beta_sigmas"));
        }
        if config.interpolation_type == Some(InterpolationType::LogLinear) {
            return Err(unsupported("interpolation_type \"log_linear\""));
        }
        let params = BaseParams::resolve(config, TimestepSpacing::Linspace)?;
        let continuous_timesteps = config.timestep_type == Some(TimestepType::Continuous)
            && params.prediction_type == PredictionType::VPrediction;
        Ok(Self {
            schedule: sigma_schedule(&params),
            params,
            use_karras_sigmas: config.use_karras_sigmas.unwrap_or(false),
            sigma_min: config.sigma_min,
            sigma_max: config.sigma_max,
            continuous_timesteps,
            final_sigmas_type: config.final_sigmas_type.unwrap_or(FinalSigmasType::Zero),
            timesteps: Vec::new(),
            sigmas: Vec::new(),
        })
    }
}

impl Scheduler for EulerDiscreteScheduler {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Euler
    }

    fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<(), SchedulerError> {
        self.params.check_steps(num_inference_steps)?;
        let mut timesteps = euler_timesteps(&self.params, num_inference_steps);
        let train_sigmas = self.schedule.sigmas();
        let train_sigmas_f64: Vec<f64> = train_sigmas.iter().map(|&s| s as f64).collect();
        let mut sigmas: Vec<f64> = timesteps
            .iter()
            .map(|&t| np_interp(t as f64, &train_sigmas_f64))
            .collect();
        if self.use_karras_sigmas {
            let sigma_min = self.sigma_min.unwrap_or(sigmas[sigmas.len() - 1]);
            let sigma_max = self.sigma_max.unwrap_or(sigmas[0]);
            sigmas = karras_sigmas(sigma_min, sigma_max, num_inference_steps);
            let log_sigmas = log_sigmas(&train_sigmas);
            timesteps = sigmas
                .iter()
                .map(|&s| sigma_to_t(s, &log_sigmas) as f32)
                .collect();
        }
        let sigma_last = match self.final_sigmas_type {
            FinalSigmasType::Zero => 0.0,
            FinalSigmasType::SigmaMin => train_sigmas[0],
        };
        let mut sigmas: Vec<f32> = sigmas.into_iter().map(|s| s as f32).collect();
        sigmas.push(sigma_last);
        if self.continuous_timesteps {
            timesteps = sigmas[..sigmas.len() - 1]
                .iter()
                .map(|s| 0.25 * s.ln())
                .collect();
        }
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
            // Before set_timesteps diffusers uses the training sigmas (plus a final zero).
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
        _generator: &mut TorchGenerator,
    ) -> Result<Tensor<4>, SchedulerError> {
        same_shape(&model_output, &sample)?;
        let (sigma, sigma_next) = sigma_pair(&self.sigmas, step_index)?;
        let pred_original =
            euler_denoised(self.params.prediction_type, model_output, &sample, sigma);
        let derivative = sample.clone().sub(pred_original).div_scalar(sigma);
        let dt = sigma_next - sigma;
        Ok(sample.add(derivative.mul_scalar(dt)))
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
