//! Neural-network operators: convolution, normalisation, pooling, dense layers, softmax, reductions.

use burn::tensor::activation;
use burn::tensor::module::{avg_pool2d, conv2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions};

use super::elementwise::broadcast_shape;
use super::{Args, OpContext};
use crate::attr::{Attrs, normalize_axis};
use crate::error::{OpResult, op_bail};
use crate::value::{DeviceTensor, MAX_RANK, Value, padded_shape};

/// Spatial geometry shared by convolution and pooling: kernel, strides, dilations, pads.
struct Window {
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    /// `(begin, end)` per spatial axis.
    pads: [(usize, usize); 2],
}

impl Window {
    /// Reads the window attributes for a 2-D input of spatial size `input`.
    fn read(attrs: Attrs<'_>, kernel: [usize; 2], input: [usize; 2]) -> OpResult<Self> {
        let stride = pair(attrs.usizes("strides", vec![1, 1])?, "strides")?;
        let dilation = pair(attrs.usizes("dilations", vec![1, 1])?, "dilations")?;
        if stride.contains(&0) || dilation.contains(&0) || kernel.contains(&0) {
            op_bail!("zero stride, dilation or kernel size");
        }
        let auto_pad = attrs.string("auto_pad", "NOTSET");
        let pads = match auto_pad.as_str() {
            "NOTSET" => {
                let p = attrs.usizes("pads", vec![0; 4])?;
                if p.len() != 4 {
                    op_bail!("pads {p:?} should have 4 entries for a 2-D window");
                }
                [(p[0], p[2]), (p[1], p[3])]
            }
            "VALID" => [(0, 0); 2],
            "SAME_UPPER" | "SAME_LOWER" => {
                let mut pads = [(0, 0); 2];
                for i in 0..2 {
                    let out = input[i].div_ceil(stride[i]);
                    let span = (kernel[i] - 1) * dilation[i] + 1;
                    let total = ((out - 1) * stride[i] + span).saturating_sub(input[i]);
                    let small = total / 2;
                    pads[i] = if auto_pad == "SAME_UPPER" {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    };
                }
                pads
            }
            other => op_bail!("unknown auto_pad {other}"),
        };
        for i in 0..2 {
            let span = (kernel[i] - 1) * dilation[i] + 1;
            if input[i] + pads[i].0 + pads[i].1 < span {
                op_bail!(
                    "window of {span} does not fit the padded input {:?} (pads {pads:?})",
                    input
                );
            }
        }
        Ok(Self {
            kernel,
            stride,
            dilation,
            pads,
        })
    }
}

fn pair(v: Vec<usize>, what: &str) -> OpResult<[usize; 2]> {
    match v.as_slice() {
        [a, b] => Ok([*a, *b]),
        [a] => Ok([*a, *a]),
        _ => op_bail!("{what} {v:?} should have 2 entries for a 2-D operator"),
    }
}

/// Views a rank-3 (1-D spatial) or rank-4 tensor as rank 4.
fn as_nchw(x: &DeviceTensor) -> OpResult<(burn::tensor::Tensor<4>, bool)> {
    match x.shape().as_slice() {
        &[n, c, w] => Ok((x.clone().reshape(&[n, c, 1, w])?.to_rank::<4>()?, true)),
        &[_, _, _, _] => Ok((x.to_rank::<4>()?, false)),
        s => op_bail!("expected an NCHW (or NCW) input, got shape {s:?}"),
    }
}

fn from_nchw(t: burn::tensor::Tensor<4>, one_d: bool) -> OpResult<DeviceTensor> {
    let out = DeviceTensor::from_rank(t)?;
    if one_d {
        let s = out.shape();
        out.reshape(&[s[0], s[1], s[3]])
    } else {
        Ok(out)
    }
}

/// `Conv` (1-D and 2-D, grouped, dilated, with explicit or automatic padding).
pub(super) fn conv(ctx: &OpContext<'_>, attrs: Attrs<'_>, args: &Args<'_>) -> OpResult<Value> {
    let x = args.device(0, ctx)?;
    let (x4, one_d) = as_nchw(&x)?;
    let w = args.device(1, ctx)?;
    let w4 = match w.shape().as_slice() {
        &[o, i, k] => w.clone().reshape(&[o, i, 1, k])?.to_rank::<4>()?,
        &[_, _, _, _] => w.to_rank::<4>()?,
        s => op_bail!("weight of shape {s:?} is not a 1-D or 2-D kernel"),
    };
    let [_, c, h, wd] = x4.dims();
    let [o, i, kh, kw] = w4.dims();
    let groups = usize::try_from(attrs.int("group", 1)).unwrap_or(0);
    if groups == 0 || c != i * groups || o % groups != 0 {
        op_bail!(
            "input with {c} channels does not match a weight of shape {:?} with {groups} group(s)",
            w.shape()
        );
    }
    let bias = match args.opt(2) {
        Some(b) => {
            let b = b.to_device(ctx.device)?;
            if b.shape() != [o] {
                op_bail!("bias of shape {:?} for {o} output channels", b.shape());
            }
            Some(b.to_rank::<1>()?)
        }
        None => None,
    };
    // Spatial attributes of a 1-D convolution have one entry: they apply to the width.
    let window = if one_d {
        read_1d(attrs, kw, wd)?
    } else {
        Window::read(attrs, [kh, kw], [h, wd])?
    };
    let options = ConvOptions {
        stride: window.stride,
        padding: window.pads,
        dilation: window.dilation,
        groups,
    };
    from_nchw(conv2d(x4, w4, bias, options), one_d).map(Value::Device)
}

/// Window attributes of a 1-D operator, lifted to 2-D with a unit height.
fn read_1d(attrs: Attrs<'_>, kernel: usize, input: usize) -> OpResult<Window> {
    let stride = attrs.usizes("strides", vec![1])?;
    let dilation = attrs.usizes("dilations", vec![1])?;
    let pads = attrs.usizes("pads", vec![0, 0])?;
    let auto_pad = attrs.string("auto_pad", "NOTSET");
    if auto_pad != "NOTSET" && auto_pad != "VALID" {
        op_bail!("auto_pad {auto_pad} is not supported for 1-D operators");
    }
    let (s, d) = (stride.first().copied(), dilation.first().copied());
    let (Some(s @ 1..), Some(d @ 1..), [b, e]) = (s, d, pads.as_slice()) else {
        op_bail!("bad 1-D window attributes");
    };
    let pads = if auto_pad == "VALID" {
        (0, 0)
    } else {
        (*b, *e)
    };
    if input + pads.0 + pads.1 < (kernel - 1) * d + 1 {
        op_bail!("window does not fit the input");
    }
    Ok(Window {
        kernel: [1, kernel],
        stride: [1, s],
        dilation: [1, d],
        pads: [(0, 0), pads],
    })
}

/// `BatchNormalization` in inference mode (running statistics).
pub(super) fn batch_norm(
    ctx: &OpContext<'_>,
    attrs: Attrs<'_>,
    args: &Args<'_>,
) -> OpResult<Value> {
    let x = args.device(0, ctx)?;
    let shape = x.shape();
    if shape.len() < 2 {
        op_bail!("input of shape {shape:?} has no channel axis");
    }
    let channels = shape[1];
    let params: Vec<_> = (1..5)
        .map(|i| args.device(i, ctx))
        .collect::<OpResult<_>>()?;
    for p in &params {
        if p.shape() != [channels] {
            op_bail!("parameter of shape {:?} for {channels} channels", p.shape());
        }
    }
    let eps = f64::from(attrs.float("epsilon", 1e-5));
    let [scale, bias, mean, var] = [0, 1, 2, 3].map(|i| params[i].tensor.clone());
    let factor = scale / var.add_scalar(eps).sqrt();
    let shift = bias - mean * factor.clone();
    let mut bshape = vec![1; shape.len()];
    bshape[1] = channels;
    let padded = padded_shape(&bshape)?;
    let t = x.tensor * factor.reshape(padded) + shift.reshape(padded);
    Ok(Value::Device(DeviceTensor::new(t, shape.len())))
}

/// `MaxPool` and `AveragePool`.
pub(super) fn pool(
    ctx: &OpContext<'_>,
    op: &str,
    attrs: Attrs<'_>,
    args: &Args<'_>,
) -> OpResult<Value> {
    let x = args.device(0, ctx)?;
    let (x4, one_d) = as_nchw(&x)?;
    let [_, _, h, w] = x4.dims();
    let kernel = attrs.usizes("kernel_shape", vec![])?;
    let window = if one_d {
        let [k] = kernel.as_slice() else {
            op_bail!("kernel_shape {kernel:?} for a 1-D pool");
        };
        read_1d(attrs, *k, w)?
    } else {
        Window::read(attrs, pair(kernel, "kernel_shape")?, [h, w])?
    };
    let ceil_mode = attrs.int("ceil_mode", 0) != 0;
    let t = if op == "MaxPool" {
        if attrs.int("storage_order", 0) != 0 {
            op_bail!("column-major storage_order is not supported");
        }
        max_pool2d(
            x4,
            MaxPoolOptions {
                kernel_size: window.kernel,
                stride: window.stride,
                padding: window.pads,
                dilation: window.dilation,
                ceil_mode,
            },
        )
    } else {
        if window.dilation != [1, 1] {
            op_bail!("dilated average pooling is not supported");
        }
        avg_pool2d(
            x4,
            AvgPoolOptions {
                kernel_size: window.kernel,
                stride: window.stride,
                padding: window.pads,
                count_include_pad: attrs.int("count_include_pad", 0) != 0,
                ceil_mode,
            },
        )
    };
    from_nchw(t, one_d).map(Value::Device)
}

/// `GlobalAveragePool` and `GlobalMaxPool` over every axis after the channels.
pub(super) fn global_pool(ctx: &OpContext<'_>, op: &str, args: &Args<'_>) -> OpResult<Value> {
    let x = args.device(0, ctx)?;
    if x.rank < 3 {
        op_bail!("input of shape {:?} has no spatial axes", x.shape());
    }
    let mut t = x.tensor.clone();
    for axis in 2..x.rank {
        let a = x.axis(axis);
        t = if op == "GlobalMaxPool" {
            t.max_dim(a)
        } else {
            t.mean_dim(a)
        };
    }
    Ok(Value::Device(DeviceTensor::new(t, x.rank)))
}

/// `Gemm`: `alpha * A' B' + beta * C`.
pub(super) fn gemm(ctx: &OpContext<'_>, attrs: Attrs<'_>, args: &Args<'_>) -> OpResult<Value> {
    let mut a = args.device(0, ctx)?.to_rank::<2>()?;
    let mut b = args.device(1, ctx)?.to_rank::<2>()?;
    if attrs.int("transA", 0) != 0 {
        a = a.transpose();
    }
    if attrs.int("transB", 0) != 0 {
        b = b.transpose();
    }
    let ([m, k1], [k2, n]) = (a.dims(), b.dims());
    if k1 != k2 {
        op_bail!("cannot multiply [{m}, {k1}] by [{k2}, {n}]");
    }
    let alpha = f64::from(attrs.float("alpha", 1.0));
    let beta = f64::from(attrs.float("beta", 1.0));
    let mut y = a.matmul(b);
    if alpha != 1.0 {
        y = y.mul_scalar(alpha);
    }
    let mut y = DeviceTensor::from_rank(y)?;
    if let Some(c) = args.opt(2) {
        let c = c.to_device(ctx.device)?;
        if broadcast_shape(&[m, n], &c.shape())? != [m, n] {
            op_bail!(
                "C of shape {:?} does not broadcast to [{m}, {n}]",
                c.shape()
            );
        }
        let c = if beta != 1.0 {
            c.tensor.mul_scalar(beta)
        } else {
            c.tensor
        };
        y.tensor = y.tensor + c;
    }
    Ok(Value::Device(y))
}

/// `MatMul` with numpy semantics (rank-1 promotion, broadcast batch axes).
pub(super) fn matmul(ctx: &OpContext<'_>, args: &Args<'_>) -> OpResult<Value> {
    let mut a = args.device(0, ctx)?;
    let mut b = args.device(1, ctx)?;
    let (a_vec, b_vec) = (a.rank == 1, b.rank == 1);
    if a_vec {
        let k = a.shape()[0];
        a = a.reshape(&[1, k])?;
    }
    if b_vec {
        let k = b.shape()[0];
        b = b.reshape(&[k, 1])?;
    }
    if a.rank < 2 || b.rank < 2 {
        op_bail!("MatMul of scalars");
    }
    let (sa, sb) = (a.shape(), b.shape());
    let (m, k1) = (sa[sa.len() - 2], sa[sa.len() - 1]);
    let (k2, n) = (sb[sb.len() - 2], sb[sb.len() - 1]);
    if k1 != k2 {
        op_bail!("cannot multiply {sa:?} by {sb:?}");
    }
    let mut batch = broadcast_shape(&sa[..sa.len() - 2], &sb[..sb.len() - 2])?;
    let t = a.tensor.matmul(b.tensor);
    let mut out = batch.clone();
    out.extend([m, n]);
    let mut y = DeviceTensor::new(t, out.len());
    if a_vec || b_vec {
        if !a_vec {
            batch.push(m);
        }
        if !b_vec {
            batch.push(n);
        }
        y = y.reshape(&batch)?;
    }
    Ok(Value::Device(y))
}

/// `Softmax` and `LogSoftmax`, with the 2-D coercion of opsets before 13.
pub(super) fn softmax(
    ctx: &OpContext<'_>,
    op: &str,
    attrs: Attrs<'_>,
    args: &Args<'_>,
) -> OpResult<Value> {
    let x = args.device(0, ctx)?;
    let shape = x.shape();
    let default_axis = if ctx.opset < 13 { 1 } else { -1 };
    let axis = normalize_axis(attrs.int("axis", default_axis), shape.len())?;
    let apply = |t: burn::tensor::Tensor<MAX_RANK>, dim: usize| {
        if op == "LogSoftmax" {
            activation::log_softmax(t, dim)
        } else {
            activation::softmax(t, dim)
        }
    };
    if ctx.opset >= 13 || axis + 1 == shape.len() {
        let dim = x.axis(axis);
        return Ok(Value::Device(DeviceTensor::new(
            apply(x.tensor, dim),
            x.rank,
        )));
    }
    let rows: usize = shape[..axis].iter().product();
    let cols: usize = shape[axis..].iter().product();
    let flat = x.reshape(&[rows, cols])?;
    let dim = flat.axis(1);
    DeviceTensor::new(apply(flat.tensor, dim), 2)
        .reshape(&shape)
        .map(Value::Device)
}

/// `ReduceMean`, `ReduceSum`, `ReduceMax` with axes from the attribute or (newer opsets) input.
pub(super) fn reduce(
    ctx: &OpContext<'_>,
    op: &str,
    attrs: Attrs<'_>,
    args: &Args<'_>,
) -> OpResult<Value> {
    let x = args.device(0, ctx)?;
    let shape = x.shape();
    let axes = match attrs.ints("axes") {
        Some(a) => Some(a),
        None => args.opt_ints(1)?,
    };
    let axes: Vec<usize> = match axes {
        Some(a) => a
            .iter()
            .map(|&v| normalize_axis(v, shape.len()))
            .collect::<OpResult<_>>()?,
        None if attrs.int("noop_with_empty_axes", 0) != 0 => return Ok(Value::Device(x)),
        None => (0..shape.len()).collect(),
    };
    let mut t = x.tensor.clone();
    for &axis in &axes {
        let dim = x.axis(axis);
        t = match op {
            "ReduceMean" => t.mean_dim(dim),
            "ReduceSum" => t.sum_dim(dim),
            _ => t.max_dim(dim),
        };
    }
    let kept = DeviceTensor::new(t, x.rank);
    if attrs.int("keepdims", 1) != 0 {
        return Ok(Value::Device(kept));
    }
    let out: Vec<usize> = (0..shape.len())
        .filter(|a| !axes.contains(a))
        .map(|a| shape[a])
        .collect();
    kept.reshape(&out).map(Value::Device)
}
