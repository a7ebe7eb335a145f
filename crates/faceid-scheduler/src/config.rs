//! Reading a diffusers `scheduler_config.json` (diffusers' `ConfigMixin.from_config` /
//! `extract_init_dict` in `configuration_utils.py`).
//!
//! A config written for any scheduler class (`PNDMScheduler`, `DDIMScheduler`, ...) can build any
//! scheduler kind: like `XScheduler.from_config(config)`, the kind takes the keys it knows from the
//! file and its own defaults for the rest (the defaults live with each scheduler, see the
//! `resolve` helpers there). Keys listed in `_use_default_values` are dropped, as diffusers does, and
//! unknown keys are ignored. Every field is therefore optional here.

use std::path::Path;
use std::str::FromStr;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::SchedulerError;

macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $key:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        pub enum $name {
            $(
                $(#[$vmeta])*
                #[serde(rename = $text)]
                $variant,
            )+
        }

        impl $name {
            /// The name diffusers uses for this value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = SchedulerError;

            fn from_str(value: &str) -> Result<Self, Self::Err> {
                match value {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(SchedulerError::InvalidValue {
                        key: $key,
                        value: value.to_string(),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// How the training betas are laid out over the training timesteps.
    BetaSchedule, "beta_schedule" {
        /// `torch.linspace(beta_start, beta_end)` in float32.
        Linear = "linear",
        /// `torch.linspace(sqrt(beta_start), sqrt(beta_end)) ** 2` in float32 (Stable Diffusion).
        ScaledLinear = "scaled_linear",
        /// The cosine schedule of Nichol & Dhariwal, betas capped at 0.999.
        SquaredCosCapV2 = "squaredcos_cap_v2",
    }
}

string_enum! {
    /// What the denoising model predicts.
    PredictionType, "prediction_type" {
        /// The added noise (SD 1.x).
        Epsilon = "epsilon",
        /// The velocity `alpha * noise - sigma * sample` (SD 2.x 768).
        VPrediction = "v_prediction",
        /// The clean sample itself.
        Sample = "sample",
    }
}

string_enum! {
    /// How the inference timesteps are picked among the training timesteps.
    TimestepSpacing, "timestep_spacing" {
        /// Multiples of `num_train_timesteps / steps`, from 0 (plus `steps_offset`).
        Leading = "leading",
        /// Counting down from the last training timestep.
        Trailing = "trailing",
        /// Evenly spaced between the first and the last training timestep.
        Linspace = "linspace",
    }
}

string_enum! {
    /// The sigma that follows the last inference step.
    FinalSigmasType, "final_sigmas_type" {
        /// Zero: the last step lands on the clean sample.
        Zero = "zero",
        /// The smallest training sigma.
        SigmaMin = "sigma_min",
    }
}

string_enum! {
    /// How Euler interpolates sigmas between training timesteps.
    InterpolationType, "interpolation_type" {
        /// Linear interpolation (`np.interp`).
        Linear = "linear",
        /// Log-linear interpolation (not supported by this port).
        LogLinear = "log_linear",
    }
}

string_enum! {
    /// Whether Euler feeds the UNet discrete timesteps or `0.25 * ln(sigma)`.
    TimestepType, "timestep_type" {
        /// The training timesteps.
        Discrete = "discrete",
        /// `0.25 * ln(sigma)`, only with v-prediction (as in diffusers).
        Continuous = "continuous",
    }
}

string_enum! {
    /// The second-order update of DPM-Solver multistep.
    SolverType, "solver_type" {
        /// The midpoint update (the default, "DPM++ 2M").
        Midpoint = "midpoint",
        /// Heun's update.
        Heun = "heun",
    }
}

/// A diffusers scheduler configuration with every key optional (see the module docs).
///
/// Built by [`SchedulerConfig::from_json_str`] / [`SchedulerConfig::from_file`], or in code from
/// `SchedulerConfig::default()` (all keys absent: each scheduler's own defaults).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SchedulerConfig {
    /// `_class_name`: the diffusers class the file was written for (informational).
    #[serde(rename = "_class_name", skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// `num_train_timesteps` (default 1000).
    pub num_train_timesteps: Option<usize>,
    /// `beta_start` (default 0.0001).
    pub beta_start: Option<f64>,
    /// `beta_end` (default 0.02).
    pub beta_end: Option<f64>,
    /// `beta_schedule` (default linear).
    pub beta_schedule: Option<BetaSchedule>,
    /// `trained_betas`: explicit betas that replace the schedule.
    pub trained_betas: Option<Vec<f64>>,
    /// `prediction_type` (default epsilon).
    pub prediction_type: Option<PredictionType>,
    /// `timestep_spacing` (default leading for DDIM, linspace for the others).
    pub timestep_spacing: Option<TimestepSpacing>,
    /// `steps_offset` (default 0).
    pub steps_offset: Option<i64>,
    /// `set_alpha_to_one` (DDIM; default true).
    pub set_alpha_to_one: Option<bool>,
    /// `clip_sample` (DDIM; default true).
    pub clip_sample: Option<bool>,
    /// `clip_sample_range` (DDIM; default 1.0).
    pub clip_sample_range: Option<f64>,
    /// `thresholding` (DDIM, DPM-Solver; `true` is not supported).
    pub thresholding: Option<bool>,
    /// `rescale_betas_zero_snr` (default false).
    pub rescale_betas_zero_snr: Option<bool>,
    /// `use_karras_sigmas` (Euler; DPM-Solver takes it from [`crate::SchedulerKind`]).
    pub use_karras_sigmas: Option<bool>,
    /// `use_exponential_sigmas` (`true` is not supported).
    pub use_exponential_sigmas: Option<bool>,
    /// `use_beta_sigmas` (`true` is not supported).
    pub use_beta_sigmas: Option<bool>,
    /// `use_lu_lambdas` (DPM-Solver; `true` is not supported).
    pub use_lu_lambdas: Option<bool>,
    /// `use_flow_sigmas` (DPM-Solver; `true` is not supported).
    pub use_flow_sigmas: Option<bool>,
    /// `sigma_min` (Euler with Karras sigmas).
    pub sigma_min: Option<f64>,
    /// `sigma_max` (Euler with Karras sigmas).
    pub sigma_max: Option<f64>,
    /// `final_sigmas_type` (Euler, DPM-Solver; default zero).
    pub final_sigmas_type: Option<FinalSigmasType>,
    /// `lower_order_final` (DPM-Solver; default true).
    pub lower_order_final: Option<bool>,
    /// `euler_at_final` (DPM-Solver; default false).
    pub euler_at_final: Option<bool>,
    /// `interpolation_type` (Euler; default linear).
    pub interpolation_type: Option<InterpolationType>,
    /// `timestep_type` (Euler; default discrete).
    pub timestep_type: Option<TimestepType>,
    /// `solver_type` (DPM-Solver; default midpoint; diffusers maps logrho/bh1/bh2 to midpoint).
    pub solver_type: Option<SolverType>,
    /// `lambda_min_clipped` (DPM-Solver; default -inf).
    pub lambda_min_clipped: Option<f64>,
    /// `variance_type` (DPM-Solver; `learned` / `learned_range` are not supported).
    pub variance_type: Option<String>,
}

impl SchedulerConfig {
    /// Parses the text of a `scheduler_config.json`.
    pub fn from_json_str(text: &str) -> Result<Self, SchedulerError> {
        let value: Value = serde_json::from_str(text)?;
        Self::from_json_value(&value)
    }

    /// Reads and parses a `scheduler_config.json` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, SchedulerError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| SchedulerError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json_str(&text)
    }

    /// Builds the config from an already parsed JSON object.
    pub fn from_json_value(value: &Value) -> Result<Self, SchedulerError> {
        let object = value.as_object().ok_or(SchedulerError::InvalidValue {
            key: "<root>",
            value: short(value),
            expected: "a JSON object",
        })?;
        let defaults: Vec<&str> = match object.get("_use_default_values") {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let fields = Fields { object, defaults };
        let solver_type = match fields.string("solver_type")? {
            // diffusers registers these (DEIS / UniPC names) as midpoint.
            Some(name) if matches!(name.as_str(), "logrho" | "bh1" | "bh2") => {
                Some(SolverType::Midpoint)
            }
            Some(name) => Some(name.parse()?),
            None => None,
        };
        Ok(Self {
            class_name: fields.string("_class_name")?,
            num_train_timesteps: fields.unsigned("num_train_timesteps")?,
            beta_start: fields.number("beta_start")?,
            beta_end: fields.number("beta_end")?,
            beta_schedule: fields.parsed("beta_schedule")?,
            trained_betas: fields.numbers("trained_betas")?,
            prediction_type: fields.parsed("prediction_type")?,
            timestep_spacing: fields.parsed("timestep_spacing")?,
            steps_offset: fields.integer("steps_offset")?,
            set_alpha_to_one: fields.boolean("set_alpha_to_one")?,
            clip_sample: fields.boolean("clip_sample")?,
            clip_sample_range: fields.number("clip_sample_range")?,
            thresholding: fields.boolean("thresholding")?,
            rescale_betas_zero_snr: fields.boolean("rescale_betas_zero_snr")?,
            use_karras_sigmas: fields.boolean("use_karras_sigmas")?,
            use_exponential_sigmas: fields.boolean("use_exponential_sigmas")?,
            use_beta_sigmas: fields.boolean("use_beta_sigmas")?,
            use_lu_lambdas: fields.boolean("use_lu_lambdas")?,
            use_flow_sigmas: fields.boolean("use_flow_sigmas")?,
            sigma_min: fields.number("sigma_min")?,
            sigma_max: fields.number("sigma_max")?,
            final_sigmas_type: fields.parsed("final_sigmas_type")?,
            lower_order_final: fields.boolean("lower_order_final")?,
            euler_at_final: fields.boolean("euler_at_final")?,
            interpolation_type: fields.parsed("interpolation_type")?,
            timestep_type: fields.parsed("timestep_type")?,
            solver_type,
            lambda_min_clipped: fields.number("lambda_min_clipped")?,
            variance_type: fields.string("variance_type")?,
        })
    }

    /// The config as diffusers-style JSON (absent keys are written as `null`).
    pub fn to_json_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Typed access to the keys of a config object; a key that is absent, `null`, or listed in
/// `_use_default_values` reads as `None`.
struct Fields<'a> {
    object: &'a Map<String, Value>,
    defaults: Vec<&'a str>,
}

impl<'a> Fields<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        if self.defaults.contains(&key) {
            return None;
        }
        self.object.get(key).filter(|value| !value.is_null())
    }

    fn string(&self, key: &'static str) -> Result<Option<String>, SchedulerError> {
        self.get(key)
            .map(|value| {
                value
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| wrong(key, value, "a string"))
            })
            .transpose()
    }

    fn parsed<T: FromStr<Err = SchedulerError>>(
        &self,
        key: &'static str,
    ) -> Result<Option<T>, SchedulerError> {
        self.string(key)?.map(|text| text.parse()).transpose()
    }

    fn boolean(&self, key: &'static str) -> Result<Option<bool>, SchedulerError> {
        self.get(key)
            .map(|value| {
                value
                    .as_bool()
                    .ok_or_else(|| wrong(key, value, "true or false"))
            })
            .transpose()
    }

    fn number(&self, key: &'static str) -> Result<Option<f64>, SchedulerError> {
        self.get(key)
            .map(|value| value.as_f64().ok_or_else(|| wrong(key, value, "a number")))
            .transpose()
    }

    fn integer(&self, key: &'static str) -> Result<Option<i64>, SchedulerError> {
        self.get(key)
            .map(|value| {
                value
                    .as_i64()
                    .ok_or_else(|| wrong(key, value, "an integer"))
            })
            .transpose()
    }

    fn unsigned(&self, key: &'static str) -> Result<Option<usize>, SchedulerError> {
        self.get(key)
            .map(|value| {
                value
                    .as_u64()
                    .and_then(|v| usize::try_from(v).ok())
                    .filter(|&v| v > 0)
                    .ok_or_else(|| wrong(key, value, "a positive integer"))
            })
            .transpose()
    }

    fn numbers(&self, key: &'static str) -> Result<Option<Vec<f64>>, SchedulerError> {
        self.get(key)
            .map(|value| {
                value
                    .as_array()
                    .and_then(|items| {
                        items
                            .iter()
                            .map(Value::as_f64)
                            .collect::<Option<Vec<f64>>>()
                    })
                    .ok_or_else(|| wrong(key, value, "a list of numbers"))
            })
            .transpose()
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        text.chars().take(57).chain("...".chars()).collect()
    } else {
        text
    }
}

fn wrong(key: &'static str, value: &Value, expected: &'static str) -> SchedulerError {
    SchedulerError::InvalidValue {
        key,
        value: short(value),
        expected,
    }
}
