//! Elementwise operators: arithmetic with numpy broadcasting, comparisons, activations.

use burn::tensor::{Bool, Tensor, TensorData, activation};

use super::{Args, OpContext};
use crate::attr::Attrs;
use crate::error::{OpResult, op_bail};
use crate::value::{DeviceTensor, HostKind, HostTensor, MAX_RANK, Value, padded_shape, strides};

/// The numpy broadcast of two shapes.
pub(crate) fn broadcast_shape(a: &[usize], b: &[usize]) -> OpResult<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => op_bail!("shapes {a:?} and {b:?} do not broadcast"),
        };
    }
    Ok(out)
}

/// For each element of `out_shape`, the flat index of the element of `shape` broadcast onto it.
pub(crate) fn broadcast_indices(shape: &[usize], out_shape: &[usize]) -> Vec<usize> {
    let count: usize = out_shape.iter().product();
    let offset = out_shape.len() - shape.len();
    let in_strides = strides(shape);
    let out_strides = strides(out_shape);
    (0..count)
        .map(|flat| {
            let mut index = 0;
            for (axis, &stride) in out_strides.iter().enumerate() {
                if axis < offset {
                    continue;
                }
                let d = shape[axis - offset];
                let coord = (flat / stride) % out_shape[axis];
                if d != 1 {
                    index += coord * in_strides[axis - offset];
                }
            }
            index
        })
        .collect()
}

/// Broadcasts a host tensor to `out_shape`.
pub(crate) fn host_expand(h: &HostTensor, out_shape: &[usize]) -> HostTensor {
    let data = broadcast_indices(&h.shape, out_shape)
        .into_iter()
        .map(|i| h.data[i])
        .collect();
    HostTensor::new(out_shape.to_vec(), h.kind, data)
}

/// Rounds float results to f32 so host arithmetic matches what the device would compute.
fn round_kind(kind: HostKind, v: f64) -> f64 {
    match kind {
        HostKind::Float => v as f32 as f64,
        HostKind::Int => v.trunc(),
        HostKind::Bool => f64::from(u8::from(v != 0.0)),
    }
}

fn host_binary(
    a: &HostTensor,
    b: &HostTensor,
    kind: HostKind,
    f: impl Fn(f64, f64) -> f64,
) -> OpResult<HostTensor> {
    let out = broadcast_shape(&a.shape, &b.shape)?;
    let ia = broadcast_indices(&a.shape, &out);
    let ib = broadcast_indices(&b.shape, &out);
    let data = ia
        .iter()
        .zip(&ib)
        .map(|(&i, &j)| round_kind(kind, f(a.data[i], b.data[j])))
        .collect();
    Ok(HostTensor::new(out, kind, data))
}

fn host_op(op: &str, a: &HostTensor, b: &HostTensor) -> OpResult<HostTensor> {
    let kind = a.kind;
    let bool_of = |c: bool| f64::from(u8::from(c));
    match op {
        "Add" | "Sum" => host_binary(a, b, kind, |x, y| x + y),
        "Sub" => host_binary(a, b, kind, |x, y| x - y),
        "Mul" => host_binary(a, b, kind, |x, y| x * y),
        "Div" => {
            if kind == HostKind::Int && b.data.contains(&0.0) {
                op_bail!("integer division by zero");
            }
            host_binary(a, b, kind, |x, y| x / y)
        }
        "Pow" => host_binary(a, b, kind, f64::powf),
        "Max" => host_binary(a, b, kind, f64::max),
        "Min" => host_binary(a, b, kind, f64::min),
        "Equal" => host_binary(a, b, HostKind::Bool, |x, y| bool_of(x == y)),
        "Less" => host_binary(a, b, HostKind::Bool, |x, y| bool_of(x < y)),
        "Greater" => host_binary(a, b, HostKind::Bool, |x, y| bool_of(x > y)),
        "LessOrEqual" => host_binary(a, b, HostKind::Bool, |x, y| bool_of(x <= y)),
        "GreaterOrEqual" => host_binary(a, b, HostKind::Bool, |x, y| bool_of(x >= y)),
        "And" => host_binary(a, b, HostKind::Bool, |x, y| bool_of(x != 0.0 && y != 0.0)),
        "Or" => host_binary(a, b, HostKind::Bool, |x, y| bool_of(x != 0.0 || y != 0.0)),
        other => op_bail!("{other} is not a binary operator"),
    }
}

fn device_op(op: &str, a: DeviceTensor, b: DeviceTensor) -> OpResult<DeviceTensor> {
    let out = broadcast_shape(&a.shape(), &b.shape())?;
    let rank = out.len();
    let (x, y) = (a.tensor, b.tensor);
    let t = match op {
        "Add" | "Sum" => x + y,
        "Sub" => x - y,
        "Mul" => x * y,
        "Div" => x / y,
        "Pow" => x.powf(y),
        "Max" => x.max_pair(y),
        "Min" => x.min_pair(y),
        other => op_bail!("{other} is not supported on float tensors"),
    };
    Ok(DeviceTensor::new(t, rank))
}

/// Binary and variadic elementwise operators.
pub(super) fn binary(ctx: &OpContext<'_>, op: &str, args: &Args<'_>) -> OpResult<Value> {
    let inputs: Vec<&Value> = (0..args.len()).filter_map(|i| args.opt(i)).collect();
    let Some((first, rest)) = inputs.split_first() else {
        op_bail!("{op} needs at least one input");
    };
    let logical = matches!(
        op,
        "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or"
    );
    let mut result = if args.all_host() || logical {
        let mut acc = first.to_host()?;
        for v in rest {
            acc = host_op(op, &acc, &v.to_host()?)?;
        }
        if op == "Mean" {
            let n = inputs.len() as f64;
            acc.data
                .iter_mut()
                .for_each(|v| *v = round_kind(acc.kind, *v / n));
        }
        return Ok(Value::Host(acc));
    } else {
        first.to_device(ctx.device)?
    };
    let name = if op == "Mean" { "Sum" } else { op };
    for v in rest {
        result = device_op(name, result, v.to_device(ctx.device)?)?;
    }
    if op == "Mean" {
        result.tensor = result.tensor.div_scalar(inputs.len() as f32);
    }
    Ok(Value::Device(result))
}

/// `Where(condition, x, y)`.
pub(super) fn where_op(ctx: &OpContext<'_>, args: &Args<'_>) -> OpResult<Value> {
    let cond = args.host(0)?;
    let (x, y) = (args.get(1)?, args.get(2)?);
    let out = broadcast_shape(&broadcast_shape(&cond.shape, &x.shape())?, &y.shape())?;
    if x.is_host() && y.is_host() {
        let (xh, yh) = (
            host_expand(&x.to_host()?, &out),
            host_expand(&y.to_host()?, &out),
        );
        let c = host_expand(&cond, &out);
        let data = (0..c.data.len())
            .map(|i| {
                if c.data[i] != 0.0 {
                    xh.data[i]
                } else {
                    yh.data[i]
                }
            })
            .collect();
        return Ok(Value::Host(HostTensor::new(out, xh.kind, data)));
    }
    let padded = padded_shape(&out)?;
    let c = host_expand(&cond, &out);
    let mask = Tensor::<MAX_RANK, Bool>::from_data(
        TensorData::new(
            c.data.iter().map(|&v| v != 0.0).collect::<Vec<_>>(),
            padded.to_vec(),
        ),
        ctx.device,
    );
    let xd = x.to_device(ctx.device)?.tensor.expand(padded);
    let yd = y.to_device(ctx.device)?.tensor.expand(padded);
    Ok(Value::Device(DeviceTensor::new(
        yd.mask_where(mask, xd),
        out.len(),
    )))
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Unary operators and activations with scalar attributes.
pub(super) fn unary(op: &str, attrs: Attrs<'_>, input: &Value) -> OpResult<Value> {
    let alpha = f64::from(attrs.float("alpha", default_alpha(op)));
    let beta = f64::from(attrs.float("beta", 0.5));
    if let Value::Host(h) = input {
        let f: Box<dyn Fn(f64) -> f64> = match op {
            "Relu" => Box::new(|x: f64| x.max(0.0)),
            "Sigmoid" => Box::new(sigmoid),
            "Tanh" => Box::new(f64::tanh),
            "Exp" => Box::new(f64::exp),
            "Log" => Box::new(f64::ln),
            "Sqrt" => Box::new(f64::sqrt),
            "Neg" => Box::new(|x: f64| -x),
            "Abs" => Box::new(f64::abs),
            "Floor" => Box::new(f64::floor),
            "Ceil" => Box::new(f64::ceil),
            "Round" => Box::new(f64::round_ties_even),
            "Reciprocal" => Box::new(|x: f64| 1.0 / x),
            "Not" => Box::new(|x: f64| f64::from(u8::from(x == 0.0))),
            "LeakyRelu" => Box::new(move |x: f64| if x < 0.0 { alpha * x } else { x }),
            "HardSigmoid" => Box::new(move |x: f64| (alpha * x + beta).clamp(0.0, 1.0)),
            "HardSwish" => Box::new(|x: f64| x * (x / 6.0 + 0.5).clamp(0.0, 1.0)),
            "Elu" => Box::new(move |x: f64| if x < 0.0 { alpha * (x.exp() - 1.0) } else { x }),
            _ => op_bail!("{op} is not supported on host values"),
        };
        let kind = if op == "Not" { HostKind::Bool } else { h.kind };
        let data = h.data.iter().map(|&v| round_kind(kind, f(v))).collect();
        return Ok(Value::Host(HostTensor::new(h.shape.clone(), kind, data)));
    }
    let Value::Device(d) = input else {
        unreachable!("host values handled above")
    };
    let x = d.tensor.clone();
    let t = match op {
        "Relu" => activation::relu(x),
        "Sigmoid" => activation::sigmoid(x),
        "Tanh" => x.tanh(),
        "Exp" => x.exp(),
        "Log" => x.log(),
        "Sqrt" => x.sqrt(),
        "Neg" => x.neg(),
        "Abs" => x.abs(),
        "Floor" => x.floor(),
        "Ceil" => x.ceil(),
        "Round" => x.round(),
        "Reciprocal" => x.recip(),
        "Erf" => x.erf(),
        "LeakyRelu" => activation::leaky_relu(x, alpha),
        "HardSigmoid" => x.mul_scalar(alpha).add_scalar(beta).clamp(0.0, 1.0),
        "HardSwish" => x.clone() * x.div_scalar(6.0).add_scalar(0.5).clamp(0.0, 1.0),
        "Elu" => {
            x.clone().clamp_min(0.0) + x.clamp_max(0.0).exp().sub_scalar(1.0).mul_scalar(alpha)
        }
        _ => op_bail!("{op} is not supported on float tensors"),
    };
    Ok(Value::Device(DeviceTensor::new(t, d.rank)))
}

fn default_alpha(op: &str) -> f32 {
    match op {
        "LeakyRelu" => 0.01,
        "HardSigmoid" => 0.2,
        _ => 1.0,
    }
}

/// `PRelu(x, slope)` with the slope broadcast onto `x`.
pub(super) fn prelu(ctx: &OpContext<'_>, args: &Args<'_>) -> OpResult<Value> {
    let x = args.device(0, ctx)?;
    let slope = args.device(1, ctx)?;
    let out = broadcast_shape(&x.shape(), &slope.shape())?;
    if out != x.shape() {
        op_bail!(
            "slope of shape {:?} does not broadcast onto {:?}",
            slope.shape(),
            x.shape()
        );
    }
    let t = x.tensor.clone().clamp_min(0.0) + x.tensor.clamp_max(0.0) * slope.tensor;
    Ok(Value::Device(DeviceTensor::new(t, x.rank)))
}

/// `Clip` with bounds from attributes (opset < 11) or inputs.
pub(super) fn clip(ctx: &OpContext<'_>, attrs: Attrs<'_>, args: &Args<'_>) -> OpResult<Value> {
    let (min, max) = if ctx.opset < 11 {
        (
            attrs.has("min").then(|| f64::from(attrs.float("min", 0.0))),
            attrs.has("max").then(|| f64::from(attrs.float("max", 0.0))),
        )
    } else {
        (args.opt_scalar(1)?, args.opt_scalar(2)?)
    };
    match args.get(0)? {
        Value::Host(h) => {
            let data = h
                .data
                .iter()
                .map(|&v| v.max(min.unwrap_or(f64::MIN)).min(max.unwrap_or(f64::MAX)))
                .collect();
            Ok(Value::Host(HostTensor::new(h.shape.clone(), h.kind, data)))
        }
        Value::Device(d) => {
            let mut t = d.tensor.clone();
            if let Some(min) = min {
                t = t.clamp_min(min);
            }
            if let Some(max) = max {
                t = t.clamp_max(max);
            }
            Ok(Value::Device(DeviceTensor::new(t, d.rank)))
        }
    }
}
