//! Errors of the scheduler crate (configuration parsing and scheduler use).

use std::path::PathBuf;

/// Everything that can go wrong when reading a scheduler configuration or running a scheduler.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The configuration file could not be read.
    #[error("cannot read scheduler config {path}: {source}")]
    Io {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The configuration is not valid JSON, or a key has the wrong JSON type.
    #[error("invalid scheduler config JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A configuration key has a value outside the accepted set.
    #[error("invalid value {value:?} for `{key}`: expected one of {expected}")]
    InvalidValue {
        /// The configuration key (diffusers' name).
        key: &'static str,
        /// The value found.
        value: String,
        /// The accepted values.
        expected: &'static str,
    },
    /// A scheduler name (as given on the command line) is not known.
    #[error(
        "unknown scheduler {0:?}: expected one of ddim, euler, euler-a, dpmpp-2m, dpmpp-2m-karras"
    )]
    UnknownScheduler(String),
    /// A configuration option that diffusers supports but this port does not.
    #[error("{scheduler} does not support {feature}")]
    Unsupported {
        /// The scheduler that was being built.
        scheduler: &'static str,
        /// What is not supported.
        feature: String,
    },
    /// The configuration is self-contradictory or out of range.
    #[error("invalid scheduler config: {0}")]
    InvalidConfig(String),
    /// `set_timesteps` was called with a step count the scheduler cannot produce.
    #[error("invalid number of inference steps {steps}: must be between 1 and {max}")]
    InvalidStepCount {
        /// The requested number of steps.
        steps: usize,
        /// The largest accepted value (`num_train_timesteps`).
        max: usize,
    },
    /// `step`, `scale_model_input` or `add_noise` was called before `set_timesteps`.
    #[error("set_timesteps must be called before using the scheduler")]
    TimestepsNotSet,
    /// A step index past the end of the schedule.
    #[error("step index {index} is out of range for {len} inference steps")]
    StepIndexOutOfRange {
        /// The index given.
        index: usize,
        /// The number of inference steps.
        len: usize,
    },
    /// A multistep solver was stepped out of order (its history holds earlier model outputs).
    #[error(
        "step index {index} given after step {previous}: multistep solvers must be stepped in order"
    )]
    StepOutOfOrder {
        /// The index given.
        index: usize,
        /// The index of the previous step.
        previous: usize,
    },
    /// Tensors passed together have different shapes.
    #[error("shape mismatch: {0:?} vs {1:?}")]
    ShapeMismatch(Vec<usize>, Vec<usize>),
}
