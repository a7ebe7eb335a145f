//! [`OnnxTensor`]: the float tensors passed into and out of a model.

use burn::tensor::Tensor;

use crate::error::OnnxError;
use crate::value::DeviceTensor;

/// A float tensor of any rank up to [`MAX_RANK`](crate::MAX_RANK), as a model input or output.
#[derive(Clone, Debug)]
pub struct OnnxTensor {
    inner: DeviceTensor,
}

impl OnnxTensor {
    /// Wraps a burn tensor of static rank `D` (at most [`MAX_RANK`](crate::MAX_RANK)).
    pub fn from_tensor<const D: usize>(tensor: Tensor<D>) -> Result<Self, OnnxError> {
        DeviceTensor::from_rank(tensor)
            .map(Self::from_inner)
            .map_err(|e| OnnxError::Tensor(e.0))
    }

    pub(crate) fn from_inner(inner: DeviceTensor) -> Self {
        Self { inner }
    }

    pub(crate) fn into_inner(self) -> DeviceTensor {
        self.inner
    }

    /// The shape.
    pub fn shape(&self) -> Vec<usize> {
        self.inner.shape()
    }

    /// The tensor at static rank `D`, which must be its rank.
    pub fn to_tensor<const D: usize>(&self) -> Result<Tensor<D>, OnnxError> {
        self.inner
            .to_rank::<D>()
            .map_err(|e| OnnxError::Tensor(e.0))
    }

    /// The values, row-major, read back to the host.
    pub fn to_vec(&self) -> Result<Vec<f32>, OnnxError> {
        self.inner.to_f32().map_err(|e| OnnxError::Tensor(e.0))
    }
}
