//! Values flowing through the graph.
//!
//! Float activations live on the burn device as [`DeviceTensor`]s. Integer and boolean values
//! (shapes, indices, axes) and small constants live on the host as [`HostTensor`]s, so the
//! dynamic-shape arithmetic that exporters emit (`Shape -> Gather -> Unsqueeze -> Concat ->
//! Reshape`) is folded on the host and never touches the device.
//!
//! burn tensors have a static rank, ONNX values a dynamic one: every device tensor is held at rank
//! [`MAX_RANK`] with leading dimensions of size 1, next to its logical rank. Reshaping between the
//! two is a metadata change for contiguous tensors, and right-aligned padding is exactly numpy
//! broadcasting.

use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{OpError, OpResult, op_bail};

/// Highest tensor rank the runtime handles.
pub const MAX_RANK: usize = 6;

/// Element kind of a host value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HostKind {
    /// Floating point (f32, f16, f64 in the file).
    Float,
    /// Any integer type.
    Int,
    /// Boolean.
    Bool,
}

/// A small tensor on the host. Values are stored as f64, which holds every f32 and every integer
/// below 2^53 exactly, so one implementation of each shape operator serves all element kinds.
#[derive(Clone, Debug)]
pub(crate) struct HostTensor {
    pub shape: Vec<usize>,
    pub kind: HostKind,
    pub data: Vec<f64>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, kind: HostKind, data: Vec<f64>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, kind, data }
    }

    /// A rank-1 integer tensor.
    pub fn ints(values: &[i64]) -> Self {
        Self::new(
            vec![values.len()],
            HostKind::Int,
            values.iter().map(|&v| v as f64).collect(),
        )
    }

    /// The values as integers (truncating floats).
    pub fn to_i64(&self) -> Vec<i64> {
        self.data.iter().map(|&v| v as i64).collect()
    }

    /// Row-major strides of the shape.
    pub fn strides(&self) -> Vec<usize> {
        strides(&self.shape)
    }
}

/// Row-major strides of a shape.
pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// A float tensor on the device with its logical ONNX rank.
#[derive(Clone, Debug)]
pub(crate) struct DeviceTensor {
    pub tensor: Tensor<MAX_RANK>,
    pub rank: usize,
}

/// Pads a shape on the left with ones to [`MAX_RANK`].
pub(crate) fn padded_shape(shape: &[usize]) -> OpResult<[usize; MAX_RANK]> {
    if shape.len() > MAX_RANK {
        op_bail!("rank {} is above the supported {MAX_RANK}", shape.len());
    }
    let mut out = [1; MAX_RANK];
    out[MAX_RANK - shape.len()..].copy_from_slice(shape);
    Ok(out)
}

impl DeviceTensor {
    /// Wraps a full-rank tensor whose leading `MAX_RANK - rank` dimensions are 1.
    pub fn new(tensor: Tensor<MAX_RANK>, rank: usize) -> Self {
        Self { tensor, rank }
    }

    /// The logical shape.
    pub fn shape(&self) -> Vec<usize> {
        self.tensor.dims()[MAX_RANK - self.rank..].to_vec()
    }

    /// Index of logical axis `axis` in the padded tensor.
    pub fn axis(&self, axis: usize) -> usize {
        MAX_RANK - self.rank + axis
    }

    /// Uploads host values as f32.
    pub fn from_host(host: &HostTensor, device: &Device) -> OpResult<Self> {
        let padded = padded_shape(&host.shape)?;
        let values: Vec<f32> = host.data.iter().map(|&v| v as f32).collect();
        Ok(Self::from_f32(values, &padded, host.shape.len(), device))
    }

    /// Builds a tensor from f32 values and a padded shape.
    pub fn from_f32(
        values: Vec<f32>,
        padded: &[usize; MAX_RANK],
        rank: usize,
        device: &Device,
    ) -> Self {
        let tensor =
            Tensor::<MAX_RANK>::from_data(TensorData::new(values, padded.to_vec()), device);
        Self::new(tensor, rank)
    }

    /// Reads the values back to the host.
    pub fn to_host(&self) -> OpResult<HostTensor> {
        let values = self.to_f32()?;
        Ok(HostTensor::new(
            self.shape(),
            HostKind::Float,
            values.into_iter().map(f64::from).collect(),
        ))
    }

    /// Reads the values back as f32.
    pub fn to_f32(&self) -> OpResult<Vec<f32>> {
        self.tensor
            .clone()
            .try_into_data()
            .map_err(|e| OpError::new(format!("reading tensor back: {e:?}")))?
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| OpError::new(format!("reading tensor back: {e:?}")))
    }

    /// Reshapes to a new logical shape with the same number of elements.
    pub fn reshape(self, shape: &[usize]) -> OpResult<Self> {
        let padded = padded_shape(shape)?;
        let have: usize = self.shape().iter().product();
        let want: usize = shape.iter().product();
        if have != want {
            op_bail!(
                "cannot reshape {:?} ({have} elements) to {shape:?} ({want} elements)",
                self.shape()
            );
        }
        Ok(Self::new(self.tensor.reshape(padded), shape.len()))
    }

    /// The tensor at a static rank `D`, which must equal the logical rank.
    pub fn to_rank<const D: usize>(&self) -> OpResult<Tensor<D>> {
        if self.rank != D {
            op_bail!("expected a rank-{D} tensor, got shape {:?}", self.shape());
        }
        let shape: [usize; D] = self
            .shape()
            .try_into()
            .map_err(|_| OpError::new("rank mismatch"))?;
        Ok(self.tensor.clone().reshape(shape))
    }

    /// Wraps a static-rank tensor.
    pub fn from_rank<const D: usize>(tensor: Tensor<D>) -> OpResult<Self> {
        let dims = tensor.dims();
        let padded = padded_shape(&dims)?;
        Ok(Self::new(tensor.reshape(padded), D))
    }
}

/// A value of the graph.
///
/// Most values are device tensors, so the larger variant stays unboxed: boxing it would cost an
/// allocation per operator.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Value {
    Host(HostTensor),
    Device(DeviceTensor),
}

impl Value {
    /// The logical shape.
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Value::Host(h) => h.shape.clone(),
            Value::Device(d) => d.shape(),
        }
    }

    /// The value on the device (uploading host values).
    pub fn to_device(&self, device: &Device) -> OpResult<DeviceTensor> {
        match self {
            Value::Host(h) => DeviceTensor::from_host(h, device),
            Value::Device(d) => Ok(d.clone()),
        }
    }

    /// The value on the host (reading device values back).
    pub fn to_host(&self) -> OpResult<HostTensor> {
        match self {
            Value::Host(h) => Ok(h.clone()),
            Value::Device(d) => d.to_host(),
        }
    }

    /// Whether the value is on the host.
    pub fn is_host(&self) -> bool {
        matches!(self, Value::Host(_))
    }
}
