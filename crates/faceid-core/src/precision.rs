//! The float precision a model's weights and activations are kept in.

use std::str::FromStr;

use burn::tensor::{DType, Device, FloatDType};

use crate::device::DeviceKind;

/// The precision of a model's weights and of the activations it computes.
///
/// Checkpoints are read in whatever type they were saved in (f32, f16, bf16) and converted to
/// this precision once, when they are loaded. Normalisations accumulate in f32 whatever the
/// precision, as PyTorch's kernels do, and models hand their outputs back in the type of their
/// inputs, so the scheduler's arithmetic stays in f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    /// 32-bit floats: the reference precision, and the fast one on the CPU.
    F32,
    /// 16-bit IEEE floats: half the memory and, on GPUs, about twice the speed.
    F16,
}

/// A precision name that is not one of ours, or a precision a device cannot run.
#[derive(Debug, thiserror::Error)]
pub enum PrecisionError {
    /// The name is not a precision.
    #[error("unknown precision `{0}`: expected f32 or f16 (fp32/float32, fp16/float16/half)")]
    Unknown(String),
    /// The device has no (accurate) kernels for this precision.
    #[error("the {device} device cannot compute in {precision}: {reason}; use --precision f32")]
    Unsupported {
        /// The device.
        device: String,
        /// The precision asked for.
        precision: Precision,
        /// Why.
        reason: &'static str,
    },
}

impl Precision {
    /// The precision a device runs best in: f16 on GPUs, f32 on the CPU (where f16 has no fast
    /// kernels, so it would only save memory).
    pub fn preferred_for(kind: DeviceKind) -> Self {
        match kind {
            DeviceKind::Flex => Self::F32,
            DeviceKind::Wgpu | DeviceKind::Cuda(_) => Self::F16,
        }
    }

    /// burn's float type for this precision.
    pub fn float_dtype(self) -> FloatDType {
        match self {
            Self::F32 => FloatDType::F32,
            Self::F16 => FloatDType::F16,
        }
    }

    /// burn's tensor type for this precision.
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
        }
    }

    /// The precision of a tensor type, if it is one of ours.
    pub fn of(dtype: DType) -> Option<Self> {
        match dtype {
            DType::F32 => Some(Self::F32),
            DType::F16 => Some(Self::F16),
            _ => None,
        }
    }

    /// Bytes per value.
    pub fn bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 => 2,
        }
    }

    /// Checks that `device` computes accurately in this precision. The CPU backend computes in
    /// f32 only: its f16 kernels accumulate some products in f16 (errors of 1% measured on the
    /// FaceID projection, 20 times PyTorch's), and it has no fast f16 kernels either.
    pub fn check(self, device: &Device) -> Result<(), PrecisionError> {
        let unsupported = |reason| {
            Err(PrecisionError::Unsupported {
                device: format!("{device:?}"),
                precision: self,
                reason,
            })
        };
        if self == Self::F32 {
            return Ok(());
        }
        #[cfg(feature = "flex")]
        if *device == Device::flex() {
            return unsupported("the CPU backend computes in f32 only");
        }
        if device.supports_dtype(self.dtype()) {
            Ok(())
        } else {
            unsupported("the device has no 16-bit float support")
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
        })
    }
}

impl FromStr for Precision {
    type Err = PrecisionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Self::F32),
            "f16" | "fp16" | "float16" | "half" => Ok(Self::F16),
            _ => Err(PrecisionError::Unknown(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_both_ways() {
        for p in [Precision::F32, Precision::F16] {
            assert_eq!(p.to_string().parse::<Precision>().unwrap(), p);
        }
        assert_eq!("FP16".parse::<Precision>().unwrap(), Precision::F16);
        assert_eq!("float32".parse::<Precision>().unwrap(), Precision::F32);
        let err = "bf8".parse::<Precision>().unwrap_err().to_string();
        assert!(err.contains("`bf8`") && err.contains("f16"), "{err}");
    }

    #[test]
    fn gpus_prefer_half_precision_and_the_cpu_full() {
        assert_eq!(Precision::preferred_for(DeviceKind::Flex), Precision::F32);
        assert_eq!(Precision::preferred_for(DeviceKind::Wgpu), Precision::F16);
        assert_eq!(
            Precision::preferred_for(DeviceKind::Cuda(1)),
            Precision::F16
        );
        assert_eq!(Precision::of(Precision::F16.dtype()), Some(Precision::F16));
        assert_eq!(Precision::of(DType::BF16), None);
    }

    #[cfg(feature = "flex")]
    #[test]
    fn the_cpu_refuses_half_precision_with_a_reason() {
        let device = Device::flex();
        assert!(Precision::F32.check(&device).is_ok());
        let err = Precision::F16.check(&device).unwrap_err().to_string();
        assert!(
            err.contains("f32 only") && err.contains("--precision f32"),
            "{err}"
        );
    }
}
