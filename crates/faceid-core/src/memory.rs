//! How much device memory a loaded model's weights take.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// The weights of one component of a pipeline, as loaded on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComponentMemory {
    /// The component, named as in a diffusers folder (`unet`, `text_encoder`, `vae`, ...).
    pub name: &'static str,
    /// Float parameters.
    pub parameters: usize,
    /// Bytes they take in their stored types.
    pub bytes: usize,
}

impl ComponentMemory {
    /// Counts the float parameters of `module` and the bytes they take.
    pub fn of<M: Module>(name: &'static str, module: &M) -> Self {
        let mut count = Count::default();
        module.visit(&mut count);
        Self {
            name,
            parameters: count.parameters,
            bytes: count.bytes,
        }
    }

    /// The size in MiB.
    pub fn mib(&self) -> f64 {
        self.bytes as f64 / (1024.0 * 1024.0)
    }
}

#[derive(Default)]
struct Count {
    parameters: usize,
    bytes: usize,
}

impl ModuleVisitor for Count {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let tensor = param.val();
        let n = tensor.shape().num_elements();
        self.parameters += n;
        self.bytes += n * tensor.dtype().size();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Linear;
    use crate::precision::Precision;
    use crate::weights::Weights;

    #[test]
    fn counts_parameters_and_their_bytes_in_each_precision() {
        for device in crate::testing::devices() {
            for precision in [Precision::F32, Precision::F16] {
                if precision.check(&device).is_err() {
                    continue;
                }
                let weights = Weights::random(1, &device).with_precision(precision);
                let layer = Linear::load(&weights.root().at("proj"), 3, 5, true).unwrap();
                let memory = ComponentMemory::of("proj", &layer);
                assert_eq!(memory.parameters, 3 * 5 + 5);
                assert_eq!(memory.bytes, 20 * precision.bytes(), "{precision}");
            }
        }
    }
}
