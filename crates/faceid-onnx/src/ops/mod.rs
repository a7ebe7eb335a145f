//! Operator implementations, dispatched by `op_type`.
//!
//! Each operator receives its inputs as [`Value`]s (an omitted optional input is `None`) and
//! returns its outputs. Operators whose inputs are all host values run on the host, which is how
//! shape arithmetic gets folded; everything else runs on the burn device.

mod elementwise;
mod nn;
mod resize;
mod shape;

use burn::tensor::Device;

use crate::attr::Attrs;
use crate::error::{OpError, OpResult, op_bail};
use crate::proto::NodeProto;
use crate::value::{DeviceTensor, HostTensor, Value};

/// What every operator may need besides its inputs.
pub(crate) struct OpContext<'a> {
    pub device: &'a Device,
    /// Version of the default-domain operator set.
    pub opset: i64,
}

/// Whether `op_type` of the default domain is implemented.
pub(crate) fn is_supported(op_type: &str) -> bool {
    SUPPORTED.contains(&op_type)
}

/// Every implemented operator of the default domain.
pub(crate) const SUPPORTED: &[&str] = &[
    // elementwise
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Max",
    "Min",
    "Sum",
    "Mean",
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "And",
    "Or",
    "Not",
    "Where",
    "Relu",
    "Sigmoid",
    "Tanh",
    "Exp",
    "Log",
    "Sqrt",
    "Neg",
    "Abs",
    "Floor",
    "Ceil",
    "Round",
    "Reciprocal",
    "Erf",
    "LeakyRelu",
    "PRelu",
    "HardSigmoid",
    "HardSwish",
    "Elu",
    "Clip",
    "Identity",
    "Dropout", // neural
    "Conv",
    "BatchNormalization",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Gemm",
    "MatMul",
    "Softmax",
    "LogSoftmax",
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    // shapes and constants
    "Shape",
    "Size",
    "Reshape",
    "Flatten",
    "Transpose",
    "Concat",
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "Slice",
    "Split",
    "Constant",
    "ConstantOfShape",
    "Cast",
    "Expand",
    "Range",
    "Tile",
    // resampling and padding
    "Resize",
    "Upsample",
    "Pad",
];

/// Runs one node.
pub(crate) fn run(
    ctx: &OpContext<'_>,
    node: &NodeProto,
    inputs: &[Option<&Value>],
) -> OpResult<Vec<Value>> {
    let attrs = Attrs::of(node);
    let args = Args { inputs };
    let single = |v: OpResult<Value>| v.map(|v| vec![v]);
    match node.op_type.as_str() {
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Sum" | "Mean" | "Equal"
        | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" => {
            single(elementwise::binary(ctx, &node.op_type, &args))
        }
        "Where" => single(elementwise::where_op(ctx, &args)),
        "Relu" | "Sigmoid" | "Tanh" | "Exp" | "Log" | "Sqrt" | "Neg" | "Abs" | "Floor" | "Ceil"
        | "Round" | "Reciprocal" | "Erf" | "Not" | "LeakyRelu" | "HardSigmoid" | "HardSwish"
        | "Elu" => single(elementwise::unary(&node.op_type, attrs, args.get(0)?)),
        "PRelu" => single(elementwise::prelu(ctx, &args)),
        "Clip" => single(elementwise::clip(ctx, attrs, &args)),
        "Identity" | "Dropout" => Ok(vec![args.get(0)?.clone()]),
        "Conv" => single(nn::conv(ctx, attrs, &args)),
        "BatchNormalization" => single(nn::batch_norm(ctx, attrs, &args)),
        "MaxPool" | "AveragePool" => single(nn::pool(ctx, &node.op_type, attrs, &args)),
        "GlobalAveragePool" | "GlobalMaxPool" => single(nn::global_pool(ctx, &node.op_type, &args)),
        "Gemm" => single(nn::gemm(ctx, attrs, &args)),
        "MatMul" => single(nn::matmul(ctx, &args)),
        "Softmax" | "LogSoftmax" => single(nn::softmax(ctx, &node.op_type, attrs, &args)),
        "ReduceMean" | "ReduceSum" | "ReduceMax" => {
            single(nn::reduce(ctx, &node.op_type, attrs, &args))
        }
        "Shape" => single(shape::shape(ctx, attrs, &args)),
        "Size" => single(shape::size(&args)),
        "Reshape" => single(shape::reshape(ctx, attrs, &args)),
        "Flatten" => single(shape::flatten(attrs, &args)),
        "Transpose" => single(shape::transpose(attrs, &args)),
        "Concat" => single(shape::concat(ctx, attrs, &args)),
        "Gather" => single(shape::gather(ctx, attrs, &args)),
        "Unsqueeze" | "Squeeze" => single(shape::squeeze(ctx, &node.op_type, attrs, &args)),
        "Slice" => single(shape::slice(ctx, attrs, &args)),
        "Split" => shape::split(ctx, attrs, &args, node.output.len()),
        "Constant" => single(shape::constant(attrs)),
        "ConstantOfShape" => single(shape::constant_of_shape(ctx, attrs, &args)),
        "Cast" => single(shape::cast(attrs, &args)),
        "Expand" => single(shape::expand(ctx, &args)),
        "Range" => single(shape::range(&args)),
        "Tile" => single(shape::tile(ctx, &args)),
        "Resize" | "Upsample" => single(resize::resize(ctx, &node.op_type, attrs, &args)),
        "Pad" => single(resize::pad(ctx, attrs, &args)),
        other => op_bail!("operator {other} is not implemented"),
    }
}

/// The inputs of a node, with typed accessors.
pub(crate) struct Args<'a> {
    inputs: &'a [Option<&'a Value>],
}

impl<'a> Args<'a> {
    /// Number of input slots (including omitted optional ones).
    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    /// A required input.
    pub fn get(&self, i: usize) -> OpResult<&'a Value> {
        self.opt(i)
            .ok_or_else(|| OpError::new(format!("missing required input {i}")))
    }

    /// An optional input.
    pub fn opt(&self, i: usize) -> Option<&'a Value> {
        self.inputs.get(i).copied().flatten()
    }

    /// Whether every present input is a host value.
    pub fn all_host(&self) -> bool {
        self.inputs.iter().flatten().all(|v| v.is_host())
    }

    /// A required input on the device.
    pub fn device(&self, i: usize, ctx: &OpContext<'_>) -> OpResult<DeviceTensor> {
        self.get(i)?.to_device(ctx.device)
    }

    /// A required input on the host.
    pub fn host(&self, i: usize) -> OpResult<HostTensor> {
        self.get(i)?.to_host()
    }

    /// An optional input read as integers (an empty tensor counts as omitted).
    pub fn opt_ints(&self, i: usize) -> OpResult<Option<Vec<i64>>> {
        match self.opt(i) {
            None => Ok(None),
            Some(v) => {
                let h = v.to_host()?;
                Ok((!h.data.is_empty()).then(|| h.to_i64()))
            }
        }
    }

    /// An optional input read as floats (an empty tensor counts as omitted).
    pub fn opt_floats(&self, i: usize) -> OpResult<Option<Vec<f64>>> {
        match self.opt(i) {
            None => Ok(None),
            Some(v) => {
                let h = v.to_host()?;
                Ok((!h.data.is_empty()).then_some(h.data))
            }
        }
    }

    /// An optional scalar input read as a float.
    pub fn opt_scalar(&self, i: usize) -> OpResult<Option<f64>> {
        Ok(self.opt_floats(i)?.map(|v| v[0]))
    }
}

/// Converts a list of possibly negative sizes to `usize`, failing on negatives.
pub(crate) fn to_usizes(values: &[i64], what: &str) -> OpResult<Vec<usize>> {
    values
        .iter()
        .map(|&v| {
            usize::try_from(v)
                .map_err(|_| OpError::new(format!("negative {what} {v} in {values:?}")))
        })
        .collect()
}
