//! Shape and data-movement operators, constants and casts.
//!
//! Each works on host values (folding shape arithmetic) and on device tensors.

use burn::tensor::{Int, Tensor, TensorData};

use super::elementwise::{broadcast_shape, host_expand};
use super::{Args, OpContext, to_usizes};
use crate::attr::{Attrs, normalize_axis};
use crate::error::{OpResult, op_bail};
use crate::tensor_proto::{cast_kind, checked_shape, decode_tensor};
use crate::value::{DeviceTensor, HostKind, HostTensor, MAX_RANK, Value, padded_shape};

/// Builds a device index tensor.
pub(crate) fn index_tensor(indices: &[usize], ctx: &OpContext<'_>) -> Tensor<1, Int> {
    let values: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    Tensor::<1, Int>::from_data(TensorData::new(values, [indices.len()]), ctx.device)
}

/// Takes `indices` along `axis` of a host tensor; the axis keeps its place with the new length.
pub(crate) fn host_take(h: &HostTensor, axis: usize, indices: &[usize]) -> HostTensor {
    let outer: usize = h.shape[..axis].iter().product();
    let inner: usize = h.shape[axis + 1..].iter().product();
    let len = h.shape[axis];
    let mut data = Vec::with_capacity(outer * indices.len() * inner);
    for o in 0..outer {
        for &i in indices {
            let start = (o * len + i) * inner;
            data.extend_from_slice(&h.data[start..start + inner]);
        }
    }
    let mut shape = h.shape.clone();
    shape[axis] = indices.len();
    HostTensor::new(shape, h.kind, data)
}

/// Takes `indices` along `axis` of any value; the axis keeps its place with the new length.
pub(crate) fn take(
    ctx: &OpContext<'_>,
    value: &Value,
    axis: usize,
    indices: &[usize],
) -> OpResult<Value> {
    Ok(match value {
        Value::Host(h) => Value::Host(host_take(h, axis, indices)),
        Value::Device(d) => {
            let dim = d.axis(axis);
            let len = d.shape()[axis];
            let contiguous = indices.windows(2).all(|w| w[1] == w[0] + 1);
            let t = if indices.is_empty() {
                op_bail!("empty selection along axis {axis}")
            } else if indices.len() == len && contiguous && indices[0] == 0 {
                d.tensor.clone()
            } else if contiguous {
                d.tensor.clone().narrow(dim, indices[0], indices.len())
            } else {
                d.tensor.clone().select(dim, index_tensor(indices, ctx))
            };
            Value::Device(DeviceTensor::new(t, d.rank))
        }
    })
}

/// Reshapes any value.
pub(crate) fn reshape_value(value: &Value, shape: &[usize]) -> OpResult<Value> {
    match value {
        Value::Host(h) => {
            if shape.iter().product::<usize>() != h.data.len() {
                op_bail!("cannot reshape {:?} to {shape:?}", h.shape);
            }
            Ok(Value::Host(HostTensor::new(
                shape.to_vec(),
                h.kind,
                h.data.clone(),
            )))
        }
        Value::Device(d) => d.clone().reshape(shape).map(Value::Device),
    }
}

/// `Shape`, with the optional `start`/`end` of opset 15.
pub(super) fn shape(ctx: &OpContext<'_>, attrs: Attrs<'_>, args: &Args<'_>) -> OpResult<Value> {
    let dims: Vec<i64> = args.get(0)?.shape().iter().map(|&d| d as i64).collect();
    let rank = dims.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
    let start = clamp(attrs.int("start", 0));
    let end = if ctx.opset >= 15 && attrs.has("end") {
        clamp(attrs.int("end", rank))
    } else {
        rank as usize
    };
    Ok(Value::Host(HostTensor::ints(&dims[start..end.max(start)])))
}

/// `Size`: the element count as a scalar.
pub(super) fn size(args: &Args<'_>) -> OpResult<Value> {
    let n: usize = args.get(0)?.shape().iter().product();
    Ok(Value::Host(HostTensor::new(
        vec![],
        HostKind::Int,
        vec![n as f64],
    )))
}

/// `Reshape` with ONNX's `0` (copy) and `-1` (infer) entries.
pub(super) fn reshape(ctx: &OpContext<'_>, attrs: Attrs<'_>, args: &Args<'_>) -> OpResult<Value> {
    let x = args.get(0)?;
    let input = x.shape();
    let spec = if ctx.opset < 5 {
        attrs.ints("shape").unwrap_or_default()
    } else {
        args.host(1)?.to_i64()
    };
    let allow_zero = attrs.int("allowzero", 0) != 0;
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &s) in spec.iter().enumerate() {
        match s {
            0 if !allow_zero => match input.get(i) {
                Some(&d) => out.push(d),
                None => op_bail!("shape {spec:?} copies axis {i} of {input:?}"),
            },
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            s if s >= 0 => out.push(s as usize),
            _ => op_bail!("invalid target shape {spec:?}"),
        }
    }
    let total: usize = input.iter().product();
    if let Some(i) = infer {
        let known: usize = out.iter().product();
        if known == 0 || !total.is_multiple_of(known) {
            op_bail!("cannot infer {spec:?} from {input:?}");
        }
        out[i] = total / known;
    }
    reshape_value(x, &out)
}

/// `Flatten` to 2-D at `axis`.
pub(super) fn flatten(attrs: Attrs<'_>, args: &Args<'_>) -> OpResult<Value> {
    let x = args.get(0)?;
    let shape = x.shape();
    let mut axis = attrs.int("axis", 1);
    if axis < 0 {
        axis += shape.len() as i64;
    }
    if axis < 0 || axis as usize > shape.len() {
        op_bail!("axis {axis} out of range for {shape:?}");
    }
    let axis = axis as usize;
    let rows = shape[..axis].iter().product();
    let cols = shape[axis..].iter().product();
    reshape_value(x, &[rows, cols])
}

/// `Transpose` (default: reverse the axes).
pub(super) fn transpose(attrs: Attrs<'_>, args: &Args<'_>) -> OpResult<Value> {
    let x = args.get(0)?;
    let shape = x.shape();
    let rank = shape.len();
    let perm = match attrs.ints("perm") {
        Some(p) => to_usizes(&p, "axis")?,
        None => (0..rank).rev().collect(),
    };
    let mut seen = vec![false; rank];
    if perm.len() != rank
        || perm
            .iter()
            .any(|&p| p >= rank || std::mem::replace(&mut seen[p], true))
    {
        op_bail!("perm {perm:?} is not a permutation of {rank} axes");
    }
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    match x {
        Value::Host(h) => {
            let in_strides = h.strides();
            let out_strides = crate::value::strides(&out_shape);
            let data = (0..h.data.len())
                .map(|flat| {
                    let mut src = 0;
                    for (axis, &p) in perm.iter().enumerate() {
                        src += (flat / out_strides[axis]) % out_shape[axis] * in_strides[p];
                    }
                    h.data[src]
                })
                .collect();
            Ok(Value::Host(HostTensor::new(out_shape, h.kind, data)))
        }
        Value::Device(d) => {
            let lead = MAX_RANK - rank;
            let mut full = [0; MAX_RANK];
            for (i, slot) in full.iter_mut().enumerate() {
                *slot = if i < lead { i } else { lead + perm[i - lead] };
            }
            Ok(Value::Device(DeviceTensor::new(
                d.tensor.clone().permute(full),
                rank,
            )))
        }
    }
}

/// `Concat` along `axis`.
pub(super) fn concat(ctx: &OpContext<'_>, attrs: Attrs<'_>, args: &Args<'_>) -> OpResult<Value> {
    let values: Vec<&Value> = (0..args.len()).filter_map(|i| args.opt(i)).collect();
    let Some(first) = values.first() else {
        op_bail!("Concat without inputs");
    };
    let rank = first.shape().len();
    let axis = normalize_axis(attrs.int("axis", 0), rank)?;
    let mut out = first.shape();
    out[axis] = 0;
    for v in &values {
        let s = v.shape();
        let same = s.len() == rank && (0..rank).all(|a| a == axis || s[a] == out[a]);
        if !same {
            op_bail!(
                "cannot concatenate {s:?} with {:?} on axis {axis}",
                first.shape()
            );
        }
        out[axis] += s[axis];
    }
    if args.all_host() {
        let outer: usize = out[..axis].iter().product();
        let hosts: Vec<HostTensor> = values
            .iter()
            .map(|v| v.to_host())
            .collect::<OpResult<_>>()?;
        let mut data = Vec::with_capacity(out.iter().product());
        for o in 0..outer {
            for h in &hosts {
                let chunk: usize = h.shape[axis..].iter().product();
                data.extend_from_slice(&h.data[o * chunk..(o + 1) * chunk]);
            }
        }
        return Ok(Value::Host(HostTensor::new(out, hosts[0].kind, data)));
    }
    let tensors: Vec<_> = values
        .iter()
        .filter(|v| v.shape()[axis] > 0)
        .map(|v| v.to_device(ctx.device).map(|d| d.tensor))
        .collect::<OpResult<_>>()?;
    if tensors.is_empty() {
        op_bail!("concatenation of empty tensors");
    }
    let t = Tensor::cat(tensors, MAX_RANK - rank + axis);
    Ok(Value::Device(DeviceTensor::new(t, rank)))
}

/// `Gather` along `axis` with integer indices (negative ones count from the end).
pub(super) fn gather(ctx: &OpContext<'_>, attrs: Attrs<'_>, args: &Args<'_>) -> OpResult<Value> {
    let data = args.get(0)?;
    let shape = data.shape();
    let axis = normalize_axis(attrs.int("axis", 0), shape.len())?;
    let idx = args.host(1)?;
    let len = shape[axis] as i64;
    let indices: Vec<usize> = idx
        .to_i64()
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + len } else { i };
            if (0..len).contains(&j) {
                Ok(j as usize)
            } else {
                op_bail!("index {i} out of range for axis {axis} of {shape:?}")
            }
        })
        .collect::<OpResult<_>>()?;
    let taken = take(ctx, data, axis, &indices)?;
    let mut out: Vec<usize> = shape[..axis].to_vec();
    out.extend(&idx.shape);
    out.extend(&shape[axis + 1..]);
    reshape_value(&taken, &out)
}

/// `Unsqueeze` and `Squeeze`, with axes from the attribute (opset < 13) or input.
pub(super) fn squeeze(
    ctx: &OpContext<'_>,
    op: &str,
    attrs: Attrs<'_>,
    args: &Args<'_>,
) -> OpResult<Value> {
    let x = args.get(0)?;
    let shape = x.shape();
    let axes = if ctx.opset < 13 {
        attrs.ints("axes")
    } else {
        args.opt_ints(1)?
    };
    let out = if op == "Unsqueeze" {
        let Some(axes) = axes else {
            op_bail!("Unsqueeze without axes");
        };
        let rank = shape.len() + axes.len();
        let mut axes: Vec<usize> = axes
            .iter()
            .map(|&a| normalize_axis(a, rank))
            .collect::<OpResult<_>>()?;
        axes.sort_unstable();
        axes.dedup();
        if axes.len() + shape.len() != rank {
            op_bail!("repeated axes");
        }
        let mut dims = shape.iter();
        (0..rank)
            .map(|a| {
                if axes.contains(&a) {
                    1
                } else {
                    *dims.next().unwrap_or(&1)
                }
            })
            .collect()
    } else {
        let axes: Vec<usize> = match axes {
            Some(a) => a
                .iter()
                .map(|&v| normalize_axis(v, shape.len()))
                .collect::<OpResult<_>>()?,
            None => (0..shape.len()).filter(|&a| shape[a] == 1).collect(),
        };
        if let Some(&a) = axes.iter().find(|&&a| shape[a] != 1) {
            op_bail!("cannot squeeze axis {a} of {shape:?}");
        }
        (0..shape.len())
            .filter(|a| !axes.contains(a))
            .map(|a| shape[a])
            .collect::<Vec<_>>()
    };
    reshape_value(x, &out)
}

/// `Slice` (attributes before opset 10, inputs after), with steps and ONNX clamping rules.
pub(super) fn slice(ctx: &OpContext<'_>, attrs: Attrs<'_>, args: &Args<'_>) -> OpResult<Value> {
    let x = args.get(0)?;
    let shape = x.shape();
    let (starts, ends, axes, steps) = if ctx.opset < 10 {
        (
            attrs.ints("starts").unwrap_or_default(),
            attrs.ints("ends").unwrap_or_default(),
            attrs.ints("axes"),
            None,
        )
    } else {
        (
            args.host(1)?.to_i64(),
            args.host(2)?.to_i64(),
            args.opt_ints(3)?,
            args.opt_ints(4)?,
        )
    };
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        op_bail!("starts, ends, axes and steps differ in length");
    }
    let mut value = x.clone();
    for i in 0..starts.len() {
        let axis = normalize_axis(axes[i], shape.len())?;
        let dim = shape[axis] as i64;
        let step = steps[i];
        if step == 0 {
            op_bail!("zero step");
        }
        let fix = |v: i64| if v < 0 { v + dim } else { v };
        let (start, end) = if step > 0 {
            (fix(starts[i]).clamp(0, dim), fix(ends[i]).clamp(0, dim))
        } else {
            (
                fix(starts[i]).clamp(0, dim - 1),
                fix(ends[i]).clamp(-1, dim - 1),
            )
        };
        let mut indices = Vec::new();
        let mut j = start;
        while (step > 0 && j < end) || (step < 0 && j > end) {
            indices.push(j as usize);
            j += step;
        }
        value = take(ctx, &value, axis, &indices)?;
    }
    Ok(value)
}

/// `Split` into `outputs` parts (sizes from the attribute, input, or equal parts).
pub(super) fn split(
    ctx: &OpContext<'_>,
    attrs: Attrs<'_>,
    args: &Args<'_>,
    outputs: usize,
) -> OpResult<Vec<Value>> {
    let x = args.get(0)?;
    let shape = x.shape();
    let axis = normalize_axis(attrs.int("axis", 0), shape.len())?;
    let dim = shape[axis];
    let sizes = match (attrs.ints("split"), args.opt_ints(1)?) {
        (Some(s), _) | (None, Some(s)) => to_usizes(&s, "split size")?,
        (None, None) => {
            let parts = outputs.max(1);
            let chunk = dim.div_ceil(parts);
            (0..parts)
                .map(|p| chunk.min(dim.saturating_sub(p * chunk)))
                .collect()
        }
    };
    if sizes.iter().sum::<usize>() != dim || sizes.len() != outputs {
        op_bail!("split sizes {sizes:?} do not divide axis {axis} of {shape:?} into {outputs}");
    }
    let mut start = 0;
    sizes
        .iter()
        .map(|&n| {
            let idx: Vec<usize> = (start..start + n).collect();
            start += n;
            take(ctx, x, axis, &idx)
        })
        .collect()
}

/// `Constant` from any of its attribute forms.
pub(super) fn constant(attrs: Attrs<'_>) -> OpResult<Value> {
    if let Some(t) = attrs.tensor("value") {
        return decode_tensor(t).map(Value::Host);
    }
    let host = if attrs.has("value_float") {
        HostTensor::new(
            vec![],
            HostKind::Float,
            vec![f64::from(attrs.float("value_float", 0.0))],
        )
    } else if attrs.has("value_int") {
        HostTensor::new(
            vec![],
            HostKind::Int,
            vec![attrs.int("value_int", 0) as f64],
        )
    } else if let Some(v) = attrs.floats("value_floats") {
        HostTensor::new(
            vec![v.len()],
            HostKind::Float,
            v.iter().map(|&f| f64::from(f)).collect(),
        )
    } else if let Some(v) = attrs.ints("value_ints") {
        HostTensor::ints(&v)
    } else {
        op_bail!("Constant without a supported value attribute");
    };
    Ok(Value::Host(host))
}

/// `ConstantOfShape`; large float results are created on the device directly.
pub(super) fn constant_of_shape(
    ctx: &OpContext<'_>,
    attrs: Attrs<'_>,
    args: &Args<'_>,
) -> OpResult<Value> {
    let (shape, count) = checked_shape(&args.host(0)?.to_i64())?;
    let (kind, fill) = match attrs.tensor("value") {
        Some(t) => {
            let v = decode_tensor(t)?;
            match v.data.first() {
                Some(&f) => (v.kind, f),
                None => op_bail!("empty fill value"),
            }
        }
        None => (HostKind::Float, 0.0),
    };
    const HOST_LIMIT: usize = 1 << 16;
    if kind == HostKind::Float && count > HOST_LIMIT {
        let padded = padded_shape(&shape)?;
        let t = Tensor::<MAX_RANK>::full(padded, fill as f32, ctx.device);
        return Ok(Value::Device(DeviceTensor::new(t, shape.len())));
    }
    if count > HOST_LIMIT {
        op_bail!("integer constant of shape {shape:?} is too large");
    }
    Ok(Value::Host(HostTensor::new(shape, kind, vec![fill; count])))
}

/// `Cast`: float stays on the device; integer and boolean results go to the host.
pub(super) fn cast(attrs: Attrs<'_>, args: &Args<'_>) -> OpResult<Value> {
    let kind = cast_kind(attrs.int("to", 1))?;
    let x = args.get(0)?;
    if kind == HostKind::Float {
        if let Value::Host(h) = x {
            let data = h.data.iter().map(|&v| v as f32 as f64).collect();
            return Ok(Value::Host(HostTensor::new(h.shape.clone(), kind, data)));
        }
        return Ok(x.clone());
    }
    let h = x.to_host()?;
    let data = h
        .data
        .iter()
        .map(|&v| match kind {
            HostKind::Bool => f64::from(u8::from(v != 0.0)),
            _ => v.trunc(),
        })
        .collect();
    Ok(Value::Host(HostTensor::new(h.shape, kind, data)))
}

/// `Expand` with bidirectional broadcasting.
pub(super) fn expand(ctx: &OpContext<'_>, args: &Args<'_>) -> OpResult<Value> {
    let x = args.get(0)?;
    let target = to_usizes(&args.host(1)?.to_i64(), "dimension")?;
    let out = broadcast_shape(&x.shape(), &target)?;
    match x {
        Value::Host(h) => Ok(Value::Host(host_expand(h, &out))),
        Value::Device(_) => {
            let d = x.to_device(ctx.device)?;
            let padded = padded_shape(&out)?;
            Ok(Value::Device(DeviceTensor::new(
                d.tensor.expand(padded),
                out.len(),
            )))
        }
    }
}

/// `Range(start, limit, delta)`.
pub(super) fn range(args: &Args<'_>) -> OpResult<Value> {
    let (start, limit, delta) = (args.host(0)?, args.host(1)?, args.host(2)?);
    let (Some(&s), Some(&l), Some(&d)) =
        (start.data.first(), limit.data.first(), delta.data.first())
    else {
        op_bail!("Range needs scalar inputs");
    };
    if d == 0.0 {
        op_bail!("Range with a zero delta");
    }
    let n = ((l - s) / d).ceil().max(0.0) as usize;
    if n > 1 << 24 {
        op_bail!("Range of {n} elements is too large");
    }
    let data = (0..n).map(|i| s + i as f64 * d).collect();
    Ok(Value::Host(HostTensor::new(vec![n], start.kind, data)))
}

/// `Tile(input, repeats)`.
pub(super) fn tile(ctx: &OpContext<'_>, args: &Args<'_>) -> OpResult<Value> {
    let x = args.get(0)?;
    let shape = x.shape();
    let repeats = to_usizes(&args.host(1)?.to_i64(), "repeat")?;
    if repeats.len() != shape.len() {
        op_bail!("repeats {repeats:?} for shape {shape:?}");
    }
    let mut value = x.clone();
    for (axis, &r) in repeats.iter().enumerate() {
        if r != 1 {
            let idx: Vec<usize> = (0..r).flat_map(|_| 0..shape[axis]).collect();
            value = take(ctx, &value, axis, &idx)?;
        }
    }
    Ok(value)
}
