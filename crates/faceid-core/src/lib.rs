//! Shared building blocks of faceid.
//!
//! - [`weights`]: checkpoint files (safetensors, sharded, f32/f16/bf16) read by name, with every
//!   missing, misshapen or unused tensor reported as an error.
//! - [`nn`]: the few layers every model is made of (linear, conv, group/layer norm), loaded from
//!   checkpoint names; [`attention`]: multi-head attention over their projections.
//! - [`config`]: reading the `config.json` files that drive every model's architecture.
//! - [`device`]: choosing the burn backend at run time; [`device_lock`]: one caller at a time on
//!   a GPU device; [`precision`]: f32 or f16 models.
//! - `host` (with `flex`): CPU kernels for the convolutions, norms, activations and attention
//!   the denoising loop spends its time on, working in place on flex's memory.
//! - [`kernels`]: which GPU kernels a piece of work launches, and their time on the device.
//! - [`rng`]: Gaussian noise identical to `torch.randn` with a seeded CPU `torch.Generator`.
#![deny(missing_docs)]

pub mod allocator;
pub mod attention;
mod bands;
mod component;
pub mod config;
pub mod device;
pub mod device_lock;
#[cfg(feature = "flex")]
pub mod host;
pub mod im2col;
pub mod kernels;
pub mod memory;
pub mod nn;
pub mod precision;
pub mod rng;
pub mod tensor_file;
pub mod testing;
pub mod weights;

pub use burn;
pub use burn::tensor::{Device, Tensor};
pub use config::ConfigError;
pub use device::{DeviceError, DeviceKind, runtime_name};
pub use memory::ComponentMemory;
pub use precision::{Precision, PrecisionError};
pub use rng::TorchGenerator;
pub use weights::{HostTensor, Scope, WeightError, Weights};
