//! Schedule tables and numeric helpers shared by the schedulers: the beta/alpha setup of every
//! diffusers scheduler's `__init__` (`betas_for_alpha_bar`, `rescale_zero_terminal_snr`), the
//! `_sigma_to_t` / `_convert_to_karras` helpers of `scheduling_euler_discrete.py` and
//! `scheduling_dpmsolver_multistep.py`, and exact replicas of the torch / numpy routines they
//! call (`torch.linspace`, `torch.cumprod`, `np.linspace`, `np.arange`, `np.interp`, `np.round`).
//!
//! Diffusers mixes dtypes on purpose-less but result-changing ways: betas come from a float32
//! `torch.linspace` (whose CPU kernel computes `start + step * i` with a fused multiply-add),
//! `torch.cumprod` accumulates float32 in double, sigma interpolation and Karras sigmas run in
//! numpy float64 and are rounded to float32 at the end. Each helper below documents the dtype it
//! replicates.

use burn::tensor::Tensor;

use crate::SchedulerError;
use crate::config::{BetaSchedule, PredictionType, SchedulerConfig, TimestepSpacing};

/// The configuration keys every scheduler shares, with diffusers' common defaults applied.
#[derive(Debug, Clone)]
pub(crate) struct BaseParams {
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    pub trained_betas: Option<Vec<f64>>,
    pub rescale_betas_zero_snr: bool,
    pub prediction_type: PredictionType,
    pub timestep_spacing: TimestepSpacing,
    pub steps_offset: i64,
}

impl BaseParams {
    /// Takes the shared keys from `config`; `default_spacing` is the scheduler's own default.
    pub fn resolve(
        config: &SchedulerConfig,
        default_spacing: TimestepSpacing,
    ) -> Result<Self, SchedulerError> {
        let params = Self {
            num_train_timesteps: config.num_train_timesteps.unwrap_or(1000),
            beta_start: config.beta_start.unwrap_or(0.0001),
            beta_end: config.beta_end.unwrap_or(0.02),
            beta_schedule: config.beta_schedule.unwrap_or(BetaSchedule::Linear),
            trained_betas: config.trained_betas.clone(),
            rescale_betas_zero_snr: config.rescale_betas_zero_snr.unwrap_or(false),
            prediction_type: config.prediction_type.unwrap_or(PredictionType::Epsilon),
            timestep_spacing: config.timestep_spacing.unwrap_or(default_spacing),
            steps_offset: config.steps_offset.unwrap_or(0),
        };
        if params.num_train_timesteps < 2 {
            return Err(SchedulerError::InvalidConfig(format!(
                "num_train_timesteps must be at least 2, got {}",
                params.num_train_timesteps
            )));
        }
        if let Some(betas) = &params.trained_betas
            && betas.len() != params.num_train_timesteps
        {
            return Err(SchedulerError::InvalidConfig(format!(
                "trained_betas has {} values but num_train_timesteps is {}",
                betas.len(),
                params.num_train_timesteps
            )));
        }
        Ok(params)
    }

    /// Errors unless `1 <= steps <= num_train_timesteps`.
    pub fn check_steps(&self, steps: usize) -> Result<(), SchedulerError> {
        if steps == 0 || steps > self.num_train_timesteps {
            return Err(SchedulerError::InvalidStepCount {
                steps,
                max: self.num_train_timesteps,
            });
        }
        Ok(())
    }
}

/// The training noise schedule: betas and cumulative alpha products, float32 like diffusers.
#[derive(Debug, Clone)]
pub(crate) struct TrainSchedule {
    pub betas: Vec<f32>,
    pub alphas_cumprod: Vec<f32>,
}

impl TrainSchedule {
    /// `betas`, optional zero-terminal-SNR rescale, `alphas = 1 - betas`,
    /// `alphas_cumprod = torch.cumprod(alphas)`.
    pub fn new(params: &BaseParams) -> Self {
        let n = params.num_train_timesteps;
        let mut betas: Vec<f32> = match (&params.trained_betas, params.beta_schedule) {
            (Some(trained), _) => trained.iter().map(|&b| b as f32).collect(),
            (None, BetaSchedule::Linear) => {
                torch_linspace_f32(params.beta_start, params.beta_end, n)
            }
            (None, BetaSchedule::ScaledLinear) => {
                torch_linspace_f32(params.beta_start.powf(0.5), params.beta_end.powf(0.5), n)
                    .into_iter()
                    .map(|b| b * b)
                    .collect()
            }
            (None, BetaSchedule::SquaredCosCapV2) => betas_for_alpha_bar_cosine(n),
        };
        if params.rescale_betas_zero_snr {
            betas = rescale_zero_terminal_snr(&betas);
        }
        let alphas: Vec<f32> = betas.iter().map(|&b| 1.0 - b).collect();
        Self {
            alphas_cumprod: cumprod_f32(&alphas),
            betas,
        }
    }

    /// `((1 - alphas_cumprod) / alphas_cumprod) ** 0.5` in float32 (training sigmas, by timestep).
    pub fn sigmas(&self) -> Vec<f32> {
        self.alphas_cumprod
            .iter()
            .map(|&a| ((1.0 - a) / a).sqrt())
            .collect()
    }
}

/// `torch.linspace(start, end, steps, dtype=torch.float32)` on the CPU: both ends rounded to
/// float32, `step = (end - start) / (steps - 1)` in float32, the first half as
/// `fma(step, i, start)` and the second half as `end - step * (steps - 1 - i)` (fused too).
pub(crate) fn torch_linspace_f32(start: f64, end: f64, steps: usize) -> Vec<f32> {
    let (start, end) = (start as f32, end as f32);
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let halfway = steps / 2;
    (0..steps)
        .map(|i| {
            if i < halfway {
                step.mul_add(i as f32, start)
            } else {
                (-step).mul_add((steps - 1 - i) as f32, end)
            }
        })
        .collect()
}

/// `torch.cumprod` of a float32 tensor on the CPU, which accumulates in double.
pub(crate) fn cumprod_f32(values: &[f32]) -> Vec<f32> {
    let mut acc = 1.0f64;
    values
        .iter()
        .map(|&v| {
            acc *= v as f64;
            acc as f32
        })
        .collect()
}

/// `betas_for_alpha_bar(n, alpha_transform_type="cosine")`, computed in Python floats.
fn betas_for_alpha_bar_cosine(n: usize) -> Vec<f32> {
    let alpha_bar = |t: f64| {
        ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0)
            .cos()
            .powf(2.0)
    };
    (0..n)
        .map(|i| {
            let t1 = i as f64 / n as f64;
            let t2 = (i + 1) as f64 / n as f64;
            let beta = 1.0 - alpha_bar(t2) / alpha_bar(t1);
            // Python's min(beta, 0.999) keeps beta unless 0.999 is strictly smaller.
            (if 0.999 < beta { 0.999 } else { beta }) as f32
        })
        .collect()
}

/// `rescale_zero_terminal_snr(betas)` (float32 tensor arithmetic).
fn rescale_zero_terminal_snr(betas: &[f32]) -> Vec<f32> {
    let alphas: Vec<f32> = betas.iter().map(|&b| 1.0 - b).collect();
    let mut sqrt_bar: Vec<f32> = cumprod_f32(&alphas).iter().map(|a| a.sqrt()).collect();
    let (first, last) = (sqrt_bar[0], sqrt_bar[sqrt_bar.len() - 1]);
    let scale = first / (first - last);
    for value in sqrt_bar.iter_mut() {
        *value = (*value - last) * scale;
    }
    let bar: Vec<f32> = sqrt_bar.iter().map(|v| v * v).collect();
    let mut rescaled = Vec::with_capacity(bar.len());
    rescaled.push(1.0 - bar[0]);
    for i in 1..bar.len() {
        rescaled.push(1.0 - bar[i] / bar[i - 1]);
    }
    rescaled
}

/// `np.linspace(start, stop, num)` in float64: `i * step + start`, the last value set to `stop`.
pub(crate) fn np_linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let delta = stop - start;
    let div = num.saturating_sub(1);
    let mut values: Vec<f64> = (0..num)
        .map(|i| {
            let i = i as f64;
            if div == 0 {
                i * delta + start
            } else {
                let step = delta / div as f64;
                if step == 0.0 {
                    i / div as f64 * delta + start
                } else {
                    i * step + start
                }
            }
        })
        .collect();
    if num > 1 {
        values[num - 1] = stop;
    }
    values
}

/// `np.arange(start, stop, step)` for a float step: `ceil((stop - start) / step)` values, the
/// second one `start + step`, the rest `start + i * (second - start)` (numpy's fill).
///
/// The length formula can give one value more than expected: `np.arange(1000, 0, -1000 / 61)`
/// has 62 values, the last one about -6e-13, and diffusers keeps it.
pub(crate) fn np_arange(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil();
    // Also catches NaN (a zero step).
    if len.is_nan() || len < 1.0 {
        return Vec::new();
    }
    let len = len as usize;
    let mut values = Vec::with_capacity(len);
    values.push(start);
    if len > 1 {
        let next = start + step;
        values.push(next);
        let delta = next - start;
        values.extend((2..len).map(|i| start + i as f64 * delta));
    }
    values
}

/// `np.interp(x, np.arange(len(fp)), fp)` for one point, as numpy's `compiled_interp` does it.
pub(crate) fn np_interp(x: f64, fp: &[f64]) -> f64 {
    let last = fp.len() - 1;
    if x.is_nan() {
        return x;
    }
    if x < 0.0 {
        return fp[0];
    }
    if x >= last as f64 {
        return fp[last];
    }
    let j = x.floor() as usize;
    if j as f64 == x {
        return fp[j];
    }
    let slope = (fp[j + 1] - fp[j]) / 1.0;
    let value = slope * (x - j as f64) + fp[j];
    if value.is_nan() {
        let value = slope * (x - (j + 1) as f64) + fp[j + 1];
        if value.is_nan() && fp[j] == fp[j + 1] {
            return fp[j];
        }
        return value;
    }
    value
}

/// `np.log` of the float32 training sigmas (float32 result). numpy evaluates it with SIMD code
/// whose last bit is platform-dependent; the correctly rounded value is used here.
pub(crate) fn log_sigmas(sigmas: &[f32]) -> Vec<f32> {
    sigmas.iter().map(|&s| (s as f64).ln() as f32).collect()
}

/// `_sigma_to_t(sigma, log_sigmas)`: the fractional training timestep of a float64 sigma, by
/// linear interpolation in log-sigma (numpy float64 with float32 table values).
pub(crate) fn sigma_to_t(sigma: f64, log_sigmas: &[f32]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    // The last index whose log-sigma is <= log_sigma (0 when there is none), at most len - 2.
    let low_idx = log_sigmas
        .iter()
        .rposition(|&ls| log_sigma - ls as f64 >= 0.0)
        .unwrap_or(0)
        .min(log_sigmas.len() - 2);
    let high_idx = low_idx + 1;
    let low = log_sigmas[low_idx];
    let high = log_sigmas[high_idx];
    let w = (low as f64 - log_sigma) / ((low - high) as f64);
    let w = if w.is_nan() { w } else { w.clamp(0.0, 1.0) };
    (1.0 - w) * low_idx as f64 + w * high_idx as f64
}

/// `_convert_to_karras`: `(max^(1/7) + ramp * (min^(1/7) - max^(1/7)))^7` in float64.
pub(crate) fn karras_sigmas(sigma_min: f64, sigma_max: f64, steps: usize) -> Vec<f64> {
    let rho = 7.0f64;
    let min_inv_rho = sigma_min.powf(1.0 / rho);
    let max_inv_rho = sigma_max.powf(1.0 / rho);
    np_linspace(0.0, 1.0, steps)
        .into_iter()
        .map(|ramp| (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)).powf(rho))
        .collect()
}

/// numpy's `round` (half to even).
pub(crate) fn np_round(x: f64) -> f64 {
    x.round_ties_even()
}

/// Leading spacing: `(np.arange(0, count) * (num_train // divisor)).round()[::-1]` (integers).
pub(crate) fn leading(count: usize, num_train: usize, divisor: usize) -> Vec<f64> {
    let ratio = num_train / divisor;
    (0..count).rev().map(|i| (i * ratio) as f64).collect()
}

/// Trailing spacing: `np.round(np.arange(start, 0, -num_train / steps)) - 1`.
pub(crate) fn trailing(start: usize, num_train: usize, steps: usize) -> Vec<f64> {
    let ratio = num_train as f64 / steps as f64;
    np_arange(start as f64, 0.0, -ratio)
        .into_iter()
        .map(|t| np_round(t) - 1.0)
        .collect()
}

/// The step's sigma and the next one, or an error for an index past the schedule.
pub(crate) fn sigma_pair(sigmas: &[f32], step_index: usize) -> Result<(f32, f32), SchedulerError> {
    match (sigmas.get(step_index), sigmas.get(step_index + 1)) {
        (Some(&sigma), Some(&next)) => Ok((sigma, next)),
        _ if sigmas.is_empty() => Err(SchedulerError::TimestepsNotSet),
        _ => Err(SchedulerError::StepIndexOutOfRange {
            index: step_index,
            len: sigmas.len() - 1,
        }),
    }
}

/// Errors unless two tensors have the same shape.
pub(crate) fn same_shape(a: &Tensor<4>, b: &Tensor<4>) -> Result<(), SchedulerError> {
    let (da, db) = (a.dims(), b.dims());
    if da != db {
        return Err(SchedulerError::ShapeMismatch(da.to_vec(), db.to_vec()));
    }
    Ok(())
}

/// Euler-family input scaling: `sample / (sigma ** 2 + 1) ** 0.5` in float32.
pub(crate) fn scale_by_sigma(sample: Tensor<4>, sigma: f32) -> Tensor<4> {
    sample.div_scalar((sigma * sigma + 1.0).sqrt())
}

/// Euler-family prediction of the clean sample from the model output at `sigma`.
pub(crate) fn euler_denoised(
    prediction_type: PredictionType,
    model_output: Tensor<4>,
    sample: &Tensor<4>,
    sigma: f32,
) -> Tensor<4> {
    match prediction_type {
        PredictionType::Epsilon => sample.clone().sub(model_output.mul_scalar(sigma)),
        PredictionType::VPrediction => {
            let c_out = -sigma / (sigma * sigma + 1.0).sqrt();
            model_output
                .mul_scalar(c_out)
                .add(sample.clone().div_scalar(sigma * sigma + 1.0))
        }
        PredictionType::Sample => model_output,
    }
}
