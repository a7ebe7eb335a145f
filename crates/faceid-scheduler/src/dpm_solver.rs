//! DPM-Solver++ 2M, a port of diffusers' `schedulers/scheduling_dpmsolver_multistep.py`
//! (`DPMSolverMultistepScheduler` with `algorithm_type="dpmsolver++"`, `solver_order=2`).
//!
//! Timesteps are integers (int64 in diffusers); with Karras sigmas they are recovered from the
//! sigmas by `_sigma_to_t` and rounded (truncated for `squaredcos_cap_v2`, as diffusers skips the
//! rounding there). The model output is converted to a clean-sample prediction, the first step
//! (and, per `lower_order_final` / `euler_at_final` / `final_sigmas_type`, the last ones) are
//! first-order, the others the second-order midpoint (or Heun) update. All coefficients are
//! float32 0-dim tensor arithmetic in diffusers (`log`, `exp`, `sqrt` of float32), reproduced in
//! float32 here.

use burn::tensor::Tensor;

use crate::common::{
    BaseParams, TrainSchedule, karras_sigmas, leading, log_sigmas, np_interp, np_linspace,
    np_round, same_shape, sigma_pair, sigma_to_t, trailing,
};
use crate::config::{
    BetaSchedule, FinalSigmasType, PredictionType, SchedulerConfig, SolverType, TimestepSpacing,
};
use crate::euler::sigma_schedule;
use crate::{Scheduler, SchedulerError, SchedulerKind, TorchGenerator};

/// diffusers' `DPMSolverMultistepScheduler`, second order, DPM-Solver++.
#[derive(Debug)]
pub struct DpmSolverMultistepScheduler {
    params: BaseParams,
    schedule: TrainSchedule,
    karras: bool,
    solver_type: SolverType,
    lower_order_final: bool,
    euler_at_final: bool,
    final_sigmas_type: FinalSigmasType,
    lambda_min_clipped: f64,
    timesteps: Vec<f32>,
    sigmas: Vec<f32>,
    /// The converted model outputs of the previous step and of this one (`model_outputs`).
    history: [Option<Tensor<4>>; 2],
    lower_order_nums: usize,
    last_step: Option<usize>,
}

/// `_sigma_to_alpha_sigma_t`: `alpha_t = 1 / sqrt(sigma^2 + 1)`, `sigma_t = sigma * alpha_t`.
fn alpha_sigma(sigma: f32) -> (f32, f32) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    (alpha, sigma * alpha)
}

/// `lambda = log(alpha_t) - log(sigma_t)` (float32; +inf at sigma 0).
fn lambda(alpha: f32, sigma: f32) -> f32 {
    alpha.ln() - sigma.ln()
}

impl DpmSolverMultistepScheduler {
    /// Builds the scheduler from a diffusers config; `karras` sets `use_karras_sigmas` (defaults:
    /// linspace spacing, midpoint, `lower_order_final=True`, final sigma zero).
    pub fn new(config: &SchedulerConfig, karras: bool) -> Result<Self, SchedulerError> {
        let unsupported = |feature: &str| {
            Err(SchedulerError::Unsupported {
                scheduler: "DPMSolverMultistepScheduler",
                feature: feature.into(),
            })
        };
        let flags = [
            (config.thresholding, "thresholding"),
            (config.use_exponential_sigmas, "use_exponential_sigmas"),
            (config.use_beta_sigmas, "use_beta_sigmas"),
            (config.use_lu_lambdas, "use_lu_lambdas"),
            (config.use_flow_sigmas, "use_flow_sigmas"),
        ];
        if let Some((_, name)) = flags.iter().find(|(flag, _)| *flag == Some(true)) {
            return unsupported(name);
        }
        // Only the learned variances change the model output (they slice its channels).
        if let Some(variance_type) = &config.variance_type
            && matches!(variance_type.as_str(), "learned" | "learned_range")
        {
            return unsupported(&format!("variance_type {variance_type:?}"));
        }
        let params = BaseParams::resolve(config, TimestepSpacing::Linspace)?;
        Ok(Self {
            schedule: sigma_schedule(&params),
            params,
            karras,
            solver_type: config.solver_type.unwrap_or(SolverType::Midpoint),
            lower_order_final: config.lower_order_final.unwrap_or(true),
            euler_at_final: config.euler_at_final.unwrap_or(false),
            final_sigmas_type: config.final_sigmas_type.unwrap_or(FinalSigmasType::Zero),
            lambda_min_clipped: config.lambda_min_clipped.unwrap_or(f64::NEG_INFINITY),
            timesteps: Vec::new(),
            sigmas: Vec::new(),
            history: [None, None],
            lower_order_nums: 0,
            last_step: None,
        })
    }

    /// The training timestep count left after `lambda_min_clipped` (diffusers' `last_timestep`).
    fn last_timestep(&self) -> usize {
        let clip = self.lambda_min_clipped as f32;
        // torch.searchsorted(flip(lambda_t), clip): how many lambdas are below the clip value.
        let clipped = self
            .schedule
            .alphas_cumprod
            .iter()
            .filter(|&&a| a.sqrt().ln() - (1.0 - a).sqrt().ln() < clip)
            .count();
        self.params.num_train_timesteps - clipped
    }

    /// `convert_model_output` for DPM-Solver++: the predicted clean sample.
    fn convert_model_output(
        &self,
        model_output: Tensor<4>,
        sample: &Tensor<4>,
        sigma: f32,
    ) -> Tensor<4> {
        let (alpha_t, sigma_t) = alpha_sigma(sigma);
        match self.params.prediction_type {
            PredictionType::Epsilon => sample
                .clone()
                .sub(model_output.mul_scalar(sigma_t))
                .div_scalar(alpha_t),
            PredictionType::Sample => model_output,
            PredictionType::VPrediction => sample
                .clone()
                .mul_scalar(alpha_t)
                .sub(model_output.mul_scalar(sigma_t)),
        }
    }
}

impl Scheduler for DpmSolverMultistepScheduler {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::DpmSolverMultistep2M {
            karras: self.karras,
        }
    }

    fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<(), SchedulerError> {
        self.params.check_steps(num_inference_steps)?;
        let n = num_inference_steps;
        let num_train = self.params.num_train_timesteps;
        let last = self.last_timestep();
        if last == 0 {
            return Err(SchedulerError::InvalidConfig(
                "lambda_min_clipped removes every training timestep".into(),
            ));
        }
        let mut timesteps: Vec<i64> = match self.params.timestep_spacing {
            TimestepSpacing::Linspace => {
                let mut values: Vec<i64> = np_linspace(0.0, (last - 1) as f64, n + 1)
                    .into_iter()
                    .rev()
                    .map(|t| np_round(t) as i64)
                    .collect();
                values.pop();
                values
            }
            TimestepSpacing::Leading => {
                let mut values: Vec<i64> = leading(n + 1, last, n + 1)
                    .into_iter()
                    .map(|t| t as i64 + self.params.steps_offset)
                    .collect();
                values.pop();
                values
            }
            TimestepSpacing::Trailing => trailing(last, num_train, n)
                .into_iter()
                .map(|t| t as i64)
                .collect(),
        };

        let train_sigmas = self.schedule.sigmas();
        let mut sigmas: Vec<f64> = if self.karras {
            let log_sigmas = log_sigmas(&train_sigmas);
            let sigma_min = train_sigmas[0] as f64;
            let sigma_max = train_sigmas[train_sigmas.len() - 1] as f64;
            let sigmas = karras_sigmas(sigma_min, sigma_max, n);
            let round = self.params.beta_schedule != BetaSchedule::SquaredCosCapV2;
            timesteps = sigmas
                .iter()
                .map(|&s| {
                    let t = sigma_to_t(s, &log_sigmas);
                    (if round { np_round(t) } else { t }) as i64
                })
                .collect();
            sigmas
        } else {
            let train_f64: Vec<f64> = train_sigmas.iter().map(|&s| s as f64).collect();
            timesteps
                .iter()
                .map(|&t| np_interp(t as f64, &train_f64))
                .collect()
        };
        let sigma_last = match self.final_sigmas_type {
            FinalSigmasType::Zero => 0.0,
            FinalSigmasType::SigmaMin => train_sigmas[0] as f64,
        };
        sigmas.push(sigma_last);

        self.timesteps = timesteps.iter().map(|&t| t as f32).collect();
        self.sigmas = sigmas.into_iter().map(|s| s as f32).collect();
        self.history = [None, None];
        self.lower_order_nums = 0;
        self.last_step = None;
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
        1.0
    }

    fn scale_model_input(
        &self,
        sample: Tensor<4>,
        step_index: usize,
    ) -> Result<Tensor<4>, SchedulerError> {
        sigma_pair(&self.sigmas, step_index)?;
        Ok(sample)
    }

    fn step(
        &mut self,
        model_output: Tensor<4>,
        step_index: usize,
        sample: Tensor<4>,
        _generator: &mut TorchGenerator,
    ) -> Result<Tensor<4>, SchedulerError> {
        same_shape(&model_output, &sample)?;
        let (sigma_s0, sigma_t) = sigma_pair(&self.sigmas, step_index)?;
        if let Some(previous) = self.last_step
            && step_index != previous + 1
        {
            return Err(SchedulerError::StepOutOfOrder {
                index: step_index,
                previous,
            });
        }
        let len = self.timesteps.len();
        let short = self.lower_order_final && len < 15;
        let lower_order_final = step_index == len - 1
            && (self.euler_at_final || short || self.final_sigmas_type == FinalSigmasType::Zero);

        let x0 = self.convert_model_output(model_output, &sample, sigma_s0);
        self.history.rotate_left(1);
        self.history[1] = Some(x0.clone());

        let (alpha_t, sigma_t) = alpha_sigma(sigma_t);
        let (alpha_s0, sigma_s0) = alpha_sigma(sigma_s0);
        let lambda_t = lambda(alpha_t, sigma_t);
        let lambda_s0 = lambda(alpha_s0, sigma_s0);
        let h = lambda_t - lambda_s0;
        let sample_coef = sigma_t / sigma_s0;
        let d0_coef = alpha_t * ((-h).exp() - 1.0);

        let previous_output = self.history[0].clone();
        let prev_sample = match previous_output {
            Some(m1) if self.lower_order_nums >= 1 && !lower_order_final => {
                // Second order (diffusers' lower_order_second only matters for solver_order 3).
                let (alpha_s1, sigma_s1) = alpha_sigma(self.sigmas[step_index - 1]);
                let lambda_s1 = lambda(alpha_s1, sigma_s1);
                let h_0 = lambda_s0 - lambda_s1;
                let r0 = h_0 / h;
                let d1 = x0.clone().sub(m1).mul_scalar(1.0 / r0);
                let base = sample.mul_scalar(sample_coef).sub(x0.mul_scalar(d0_coef));
                match self.solver_type {
                    SolverType::Midpoint => base.sub(d1.mul_scalar(0.5 * d0_coef)),
                    SolverType::Heun => {
                        base.add(d1.mul_scalar(alpha_t * (((-h).exp() - 1.0) / h + 1.0)))
                    }
                }
            }
            _ => sample.mul_scalar(sample_coef).sub(x0.mul_scalar(d0_coef)),
        };
        if self.lower_order_nums < 2 {
            self.lower_order_nums += 1;
        }
        self.last_step = Some(step_index);
        Ok(prev_sample)
    }

    fn add_noise(
        &self,
        original_samples: Tensor<4>,
        noise: Tensor<4>,
        step_index: usize,
    ) -> Result<Tensor<4>, SchedulerError> {
        same_shape(&original_samples, &noise)?;
        let (sigma, _) = sigma_pair(&self.sigmas, step_index)?;
        let (alpha_t, sigma_t) = alpha_sigma(sigma);
        Ok(original_samples
            .mul_scalar(alpha_t)
            .add(noise.mul_scalar(sigma_t)))
    }
}
