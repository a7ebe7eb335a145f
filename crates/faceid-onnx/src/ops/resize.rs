//! `Resize` / `Upsample` (nearest and linear, every coordinate transformation mode) and `Pad`.
//!
//! Both reduce to index selection along one axis at a time: the source index of each output
//! position is computed on the host, exactly as the specification writes it, and the device
//! gathers (and, for linear modes, blends) the selected slices.

use burn::tensor::Tensor;

use super::shape::take;
use super::{Args, OpContext, to_usizes};
use crate::attr::Attrs;
use crate::error::{OpResult, op_bail};
use crate::value::{DeviceTensor, MAX_RANK, Value, padded_shape};

/// How output coordinates map back to input coordinates.
#[derive(Clone, Copy, Debug, PartialEq)]
enum CoordinateMode {
    HalfPixel,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfHalfPixelForNn,
}

impl CoordinateMode {
    fn parse(name: &str) -> OpResult<Self> {
        Ok(match name {
            "half_pixel" => Self::HalfPixel,
            "pytorch_half_pixel" => Self::PytorchHalfPixel,
            "align_corners" => Self::AlignCorners,
            "asymmetric" => Self::Asymmetric,
            "tf_half_pixel_for_nn" => Self::TfHalfPixelForNn,
            other => op_bail!("coordinate_transformation_mode {other} is not supported"),
        })
    }

    /// Input coordinate of output coordinate `x` along an axis.
    fn source(self, x: f64, scale: f64, input: usize, output: usize) -> f64 {
        match self {
            Self::HalfPixel => (x + 0.5) / scale - 0.5,
            Self::PytorchHalfPixel if output > 1 => (x + 0.5) / scale - 0.5,
            Self::PytorchHalfPixel => 0.0,
            Self::AlignCorners if output > 1 => x * (input as f64 - 1.0) / (output as f64 - 1.0),
            Self::AlignCorners => 0.0,
            Self::Asymmetric => x / scale,
            Self::TfHalfPixelForNn => (x + 0.5) / scale,
        }
    }
}

/// Rounding of nearest-neighbour source coordinates.
fn nearest_index(mode: &str, x: f64) -> OpResult<f64> {
    Ok(match mode {
        "round_prefer_floor" if x.fract() == 0.5 => x.floor(),
        "round_prefer_floor" => x.round(),
        "round_prefer_ceil" => x.round(),
        "floor" => x.floor(),
        "ceil" => x.ceil(),
        other => op_bail!("nearest_mode {other} is not supported"),
    })
}

/// `Resize` (opset 10 and later) and `Upsample` (opsets 7 and 9).
pub(super) fn resize(
    ctx: &OpContext<'_>,
    op: &str,
    attrs: Attrs<'_>,
    args: &Args<'_>,
) -> OpResult<Value> {
    let x = args.get(0)?;
    let shape = x.shape();
    let legacy = op == "Upsample" || ctx.opset < 11;
    let (scales, sizes) = if op == "Upsample" && ctx.opset < 9 {
        let s = attrs.floats("scales").unwrap_or_default();
        (
            Some(s.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()),
            None,
        )
    } else if legacy {
        (args.opt_floats(1)?, None)
    } else {
        (args.opt_floats(2)?, args.opt_ints(3)?)
    };
    let (out, scales) = match (sizes, scales) {
        (Some(sizes), _) => {
            let out = to_usizes(&sizes, "size")?;
            if out.len() != shape.len() {
                op_bail!("sizes {out:?} for an input of shape {shape:?}");
            }
            let scales = (0..out.len())
                .map(|i| out[i] as f64 / shape[i].max(1) as f64)
                .collect::<Vec<_>>();
            (out, scales)
        }
        (None, Some(scales)) => {
            if scales.len() != shape.len() || scales.iter().any(|&s| !(s > 0.0 && s < 1e4)) {
                op_bail!("scales {scales:?} for an input of shape {shape:?}");
            }
            let out = (0..shape.len())
                .map(|i| (shape[i] as f64 * scales[i]).floor() as usize)
                .collect();
            (out, scales)
        }
        (None, None) => op_bail!("neither scales nor sizes given"),
    };
    if out.contains(&0) {
        op_bail!("resizing {shape:?} gives an empty output {out:?}");
    }
    let mode = attrs.string("mode", "nearest");
    let coords = if legacy {
        CoordinateMode::Asymmetric
    } else {
        CoordinateMode::parse(&attrs.string("coordinate_transformation_mode", "half_pixel"))?
    };
    let nearest_mode = if legacy {
        "floor".to_string()
    } else {
        attrs.string("nearest_mode", "round_prefer_floor")
    };
    let mut value = x.clone();
    for axis in 0..shape.len() {
        let (input, output, scale) = (shape[axis], out[axis], scales[axis]);
        if input == output && scale == 1.0 {
            continue;
        }
        let sources: Vec<f64> = (0..output)
            .map(|o| coords.source(o as f64, scale, input, output))
            .collect();
        let last = (input - 1) as f64;
        value = match mode.as_str() {
            "nearest" => {
                let idx = sources
                    .iter()
                    .map(|&s| nearest_index(&nearest_mode, s).map(|i| i.clamp(0.0, last) as usize))
                    .collect::<OpResult<Vec<_>>>()?;
                take(ctx, &value, axis, &idx)?
            }
            "linear" | "bilinear" => linear_axis(ctx, &value, axis, &sources, input)?,
            other => op_bail!("resize mode {other} is not supported"),
        };
    }
    Ok(value)
}

/// Linear interpolation along one axis at the given source coordinates.
fn linear_axis(
    ctx: &OpContext<'_>,
    value: &Value,
    axis: usize,
    sources: &[f64],
    input: usize,
) -> OpResult<Value> {
    let last = (input - 1) as f64;
    let mut lo = Vec::with_capacity(sources.len());
    let mut hi = Vec::with_capacity(sources.len());
    let mut weights = Vec::with_capacity(sources.len());
    for &s in sources {
        let s = s.clamp(0.0, last);
        let i0 = s.floor();
        lo.push(i0 as usize);
        hi.push((i0 + 1.0).min(last) as usize);
        weights.push((s - i0) as f32);
    }
    let a = take(ctx, value, axis, &lo)?.to_device(ctx.device)?;
    let b = take(ctx, value, axis, &hi)?.to_device(ctx.device)?;
    let mut wshape = vec![1; a.rank];
    wshape[axis] = sources.len();
    let w = DeviceTensor::from_f32(weights, &padded_shape(&wshape)?, a.rank, ctx.device).tensor;
    let t = a.tensor.clone() + (b.tensor - a.tensor) * w;
    Ok(Value::Device(DeviceTensor::new(t, a.rank)))
}

/// `Pad` in constant, edge and reflect modes; negative pads crop.
pub(super) fn pad(ctx: &OpContext<'_>, attrs: Attrs<'_>, args: &Args<'_>) -> OpResult<Value> {
    let x = args.get(0)?;
    let shape = x.shape();
    let rank = shape.len();
    let (pads, fill, axes) = if ctx.opset < 11 {
        (
            attrs.ints("pads").unwrap_or_default(),
            f64::from(attrs.float("value", 0.0)),
            None,
        )
    } else {
        (
            args.host(1)?.to_i64(),
            args.opt_scalar(2)?.unwrap_or(0.0),
            args.opt_ints(3)?,
        )
    };
    let axes: Vec<usize> = match axes {
        Some(a) => a
            .iter()
            .map(|&v| crate::attr::normalize_axis(v, rank))
            .collect::<OpResult<_>>()?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        op_bail!("pads {pads:?} for {} axes", axes.len());
    }
    let mode = attrs.string("mode", "constant");
    let mut value = x.clone();
    for (k, &axis) in axes.iter().enumerate() {
        let (begin, end) = (pads[k], pads[k + axes.len()]);
        let n = value.shape()[axis] as i64;
        // Crop first, then pad what is left.
        let (crop_b, crop_e) = ((-begin).max(0), (-end).max(0));
        if crop_b + crop_e >= n && (crop_b > 0 || crop_e > 0) {
            op_bail!("pads {pads:?} crop axis {axis} of {shape:?} away");
        }
        if crop_b > 0 || crop_e > 0 {
            let idx: Vec<usize> = (crop_b..n - crop_e).map(|i| i as usize).collect();
            value = take(ctx, &value, axis, &idx)?;
        }
        let n = n - crop_b - crop_e;
        let (b, e) = (begin.max(0) as usize, end.max(0) as usize);
        if b == 0 && e == 0 {
            continue;
        }
        value = match mode.as_str() {
            "constant" => constant_pad(ctx, &value, axis, b, e, fill)?,
            "edge" => {
                let idx: Vec<usize> = (-(b as i64)..n + e as i64)
                    .map(|i| i.clamp(0, n - 1) as usize)
                    .collect();
                take(ctx, &value, axis, &idx)?
            }
            "reflect" => {
                if n < 2 || b as i64 >= n || e as i64 >= n {
                    op_bail!("reflect padding of {b}/{e} on an axis of {n}");
                }
                let idx: Vec<usize> = (-(b as i64)..n + e as i64)
                    .map(|i| {
                        let i = i.abs();
                        (if i >= n { 2 * (n - 1) - i } else { i }) as usize
                    })
                    .collect();
                take(ctx, &value, axis, &idx)?
            }
            other => op_bail!("pad mode {other} is not supported"),
        };
    }
    Ok(value)
}

fn constant_pad(
    ctx: &OpContext<'_>,
    value: &Value,
    axis: usize,
    begin: usize,
    end: usize,
    fill: f64,
) -> OpResult<Value> {
    let d = value.to_device(ctx.device)?;
    let shape = d.shape();
    let mut parts = Vec::with_capacity(3);
    for (len, is_pad) in [(begin, true), (0, false), (end, true)] {
        if !is_pad {
            parts.push(d.tensor.clone());
        } else if len > 0 {
            let mut s = shape.clone();
            s[axis] = len;
            parts.push(Tensor::<MAX_RANK>::full(
                padded_shape(&s)?,
                fill as f32,
                ctx.device,
            ));
        }
    }
    let t = Tensor::cat(parts, d.axis(axis));
    Ok(Value::Device(DeviceTensor::new(t, d.rank)))
}
