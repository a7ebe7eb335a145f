//! Decoding `TensorProto` payloads (initializers and `Constant` attributes).

use crate::error::{OpError, OpResult, op_bail};
use crate::proto::{TensorProto, data_type as dt};
use crate::value::{HostKind, HostTensor};

/// Checked product of dimensions read from a file.
pub(crate) fn checked_shape(dims: &[i64]) -> OpResult<(Vec<usize>, usize)> {
    let mut count: usize = 1;
    let mut shape = Vec::with_capacity(dims.len());
    for &d in dims {
        let Ok(d) = usize::try_from(d) else {
            op_bail!("negative dimension {d} in {dims:?}");
        };
        count = count
            .checked_mul(d)
            .ok_or_else(|| OpError::new(format!("dimensions {dims:?} overflow")))?;
        shape.push(d);
    }
    Ok((shape, count))
}

/// Decodes a tensor into host values.
pub(crate) fn decode_tensor(t: &TensorProto) -> OpResult<HostTensor> {
    if t.data_location == 1 || !t.external_data.is_empty() {
        op_bail!(
            "tensor {:?} keeps its data in an external file, which is not supported",
            t.name
        );
    }
    let (shape, count) = checked_shape(&t.dims)?;
    let (kind, data) = if t.raw_data.is_empty() {
        from_typed_fields(t, count)?
    } else {
        from_raw(t, count)?
    };
    if data.len() != count {
        op_bail!(
            "tensor {:?} has {} values for shape {shape:?} ({count} expected)",
            t.name,
            data.len()
        );
    }
    Ok(HostTensor::new(shape, kind, data))
}

fn kind_of(data_type: i32) -> OpResult<HostKind> {
    Ok(match data_type {
        dt::FLOAT | dt::DOUBLE | dt::FLOAT16 | dt::BFLOAT16 => HostKind::Float,
        dt::UINT8
        | dt::INT8
        | dt::UINT16
        | dt::INT16
        | dt::INT32
        | dt::INT64
        | dt::UINT32
        | dt::UINT64 => HostKind::Int,
        dt::BOOL => HostKind::Bool,
        other => op_bail!("unsupported tensor element type {other}"),
    })
}

fn from_typed_fields(t: &TensorProto, count: usize) -> OpResult<(HostKind, Vec<f64>)> {
    let kind = kind_of(t.data_type)?;
    let data: Vec<f64> = match t.data_type {
        dt::FLOAT => t.float_data.iter().map(|&v| f64::from(v)).collect(),
        dt::DOUBLE => t.double_data.clone(),
        dt::INT64 => t.int64_data.iter().map(|&v| v as f64).collect(),
        dt::UINT32 | dt::UINT64 => t.uint64_data.iter().map(|&v| v as f64).collect(),
        dt::FLOAT16 => t
            .int32_data
            .iter()
            .map(|&v| f64::from(half::f16::from_bits(v as u16).to_f32()))
            .collect(),
        dt::BFLOAT16 => t
            .int32_data
            .iter()
            .map(|&v| f64::from(half::bf16::from_bits(v as u16).to_f32()))
            .collect(),
        _ => t.int32_data.iter().map(|&v| f64::from(v)).collect(),
    };
    // A scalar with no payload at all is malformed; an empty tensor is fine.
    if data.is_empty() && count != 0 {
        op_bail!("tensor {:?} has no data", t.name);
    }
    Ok((kind, data))
}

fn from_raw(t: &TensorProto, count: usize) -> OpResult<(HostKind, Vec<f64>)> {
    let kind = kind_of(t.data_type)?;
    let raw = &t.raw_data;
    let width = match t.data_type {
        dt::UINT8 | dt::INT8 | dt::BOOL => 1,
        dt::UINT16 | dt::INT16 | dt::FLOAT16 | dt::BFLOAT16 => 2,
        dt::FLOAT | dt::INT32 | dt::UINT32 => 4,
        _ => 8,
    };
    if raw.len() != count.saturating_mul(width) {
        op_bail!(
            "tensor {:?} has {} bytes of raw data, {} expected",
            t.name,
            raw.len(),
            count.saturating_mul(width)
        );
    }
    let data = raw
        .chunks_exact(width)
        .map(|b| match t.data_type {
            dt::UINT8 => f64::from(b[0]),
            dt::INT8 => f64::from(b[0] as i8),
            dt::BOOL => f64::from(u8::from(b[0] != 0)),
            dt::UINT16 => f64::from(u16::from_le_bytes([b[0], b[1]])),
            dt::INT16 => f64::from(i16::from_le_bytes([b[0], b[1]])),
            dt::FLOAT16 => f64::from(half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
            dt::BFLOAT16 => f64::from(half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            dt::FLOAT => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            dt::INT32 => f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            dt::UINT32 => f64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            dt::INT64 => i64::from_le_bytes(eight(b)) as f64,
            dt::UINT64 => u64::from_le_bytes(eight(b)) as f64,
            _ => f64::from_le_bytes(eight(b)),
        })
        .collect();
    Ok((kind, data))
}

fn eight(b: &[u8]) -> [u8; 8] {
    let mut out = [0; 8];
    out.copy_from_slice(&b[..8]);
    out
}

/// Maps an ONNX element type to the host kind used by `Cast`.
pub(crate) fn cast_kind(data_type: i64) -> OpResult<HostKind> {
    i32::try_from(data_type)
        .map_err(|_| OpError::new(format!("unknown element type {data_type}")))
        .and_then(kind_of)
}
