//! Choosing the compute backend at run time.

use std::str::FromStr;

use burn::tensor::Device;

/// The backends faceid can run on. Which ones are available depends on the cargo features the
/// binary was built with (`flex`, `wgpu`, `cuda`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// burn's CPU backend.
    Flex,
    /// burn's wgpu backend (Vulkan, Metal, DirectX; Mesa's software Vulkan works too).
    Wgpu,
    /// burn's CUDA backend, on the given GPU index.
    Cuda(usize),
}

/// A backend that was asked for but cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The name is not a backend.
    #[error("unknown device `{0}`: expected flex, wgpu, cuda or cuda:N")]
    Unknown(String),
    /// The backend exists but this build does not include it.
    #[error("device `{0}` is not available in this build: rebuild with `--features {0}`")]
    NotBuilt(&'static str),
}

impl FromStr for DeviceKind {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "flex" | "cpu" => Ok(Self::Flex),
            "wgpu" | "gpu" => Ok(Self::Wgpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(index)) => Ok(Self::Cuda(index)),
                _ => Err(DeviceError::Unknown(s.to_owned())),
            },
        }
    }
}

impl std::fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Flex => f.write_str("flex"),
            Self::Wgpu => f.write_str("wgpu"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl DeviceKind {
    /// Creates the burn device, or says which feature the build lacks.
    pub fn device(self) -> Result<Device, DeviceError> {
        match self {
            #[cfg(feature = "flex")]
            Self::Flex => Ok(Device::flex()),
            #[cfg(not(feature = "flex"))]
            Self::Flex => Err(DeviceError::NotBuilt("flex")),
            #[cfg(feature = "wgpu")]
            Self::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(not(feature = "wgpu"))]
            Self::Wgpu => Err(DeviceError::NotBuilt("wgpu")),
            #[cfg(feature = "cuda")]
            Self::Cuda(index) => Ok(Device::cuda(index)),
            #[cfg(not(feature = "cuda"))]
            Self::Cuda(_) => Err(DeviceError::NotBuilt("cuda")),
        }
    }
}

/// The backend serving `device` as burn names it, with the runtime and, on a GPU, the shader
/// compiler: `dispatch<cubecl<wgpu<spirv>>>` or `dispatch<cubecl<wgpu<wgsl>>>`. A `vulkan` build
/// compiles SPIR-V only where the Vulkan driver has what that SPIR-V needs and WGSL elsewhere;
/// this says which one runs. Starts the device's runtime if it has not started yet.
pub fn runtime_name(device: &Device) -> String {
    <burn::backend::Dispatch as burn::backend::Backend>::name(device.as_dispatch())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "flex")]
    fn runtime_name_says_flex() {
        let name = runtime_name(&DeviceKind::Flex.device().unwrap());
        assert!(name.contains("flex"), "{name}");
    }

    /// The WGSL build on a Vulkan adapter (lavapipe here) compiles WGSL, and says so.
    #[test]
    #[cfg(all(feature = "wgpu", not(feature = "vulkan")))]
    fn runtime_name_says_which_shader_compiler_runs() {
        let name = runtime_name(&DeviceKind::Wgpu.device().unwrap());
        assert!(name.contains("wgpu<wgsl>"), "{name}");
    }
}
