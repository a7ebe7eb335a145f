//! Tensors in files users exchange with Python tools: NumPy `.npy` (little-endian f4/f8, C
//! order) and `.safetensors` (one tensor, any name, or the one named `tensor`; or several named
//! tensors, read and written together).

use std::path::{Path, PathBuf};

use crate::weights::HostTensor;

/// A tensor file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TensorFileError {
    /// The file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The content is not a supported tensor.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn format_error(path: &Path, reason: impl Into<String>) -> TensorFileError {
    TensorFileError::Format {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Reads a float tensor from `.npy` or `.safetensors` (chosen by extension).
pub fn read_tensor(path: &Path) -> Result<HostTensor, TensorFileError> {
    let bytes = std::fs::read(path).map_err(|source| TensorFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    match extension(path).as_str() {
        "npy" => read_npy(path, &bytes),
        "safetensors" => read_safetensors(path, &bytes),
        other => Err(format_error(
            path,
            format!("unknown tensor file type `.{other}`: use .npy or .safetensors"),
        )),
    }
}

/// Writes a float tensor as `.npy` or `.safetensors` (chosen by extension; the safetensors
/// tensor is named `tensor`).
pub fn write_tensor(path: &Path, tensor: &HostTensor) -> Result<(), TensorFileError> {
    let bytes = match extension(path).as_str() {
        "npy" => npy_bytes(tensor),
        "safetensors" => {
            let data: Vec<u8> = tensor.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            let view = safetensors::tensor::TensorView::new(
                safetensors::Dtype::F32,
                tensor.shape.clone(),
                &data,
            )
            .map_err(|e| format_error(path, e.to_string()))?;
            safetensors::serialize([("tensor", view)], None)
                .map_err(|e| format_error(path, e.to_string()))?
        }
        other => {
            return Err(format_error(
                path,
                format!("unknown tensor file type `.{other}`: use .npy or .safetensors"),
            ));
        }
    };
    std::fs::write(path, bytes).map_err(|source| TensorFileError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes named float tensors into one `.safetensors` file (f32), with optional string metadata.
pub fn write_named_tensors(
    path: &Path,
    tensors: &[(&str, &HostTensor)],
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<(), TensorFileError> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, t)| t.data.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, t), data)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape.clone(), data)
                .map(|view| (*name, view))
                .map_err(|e| format_error(path, e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let out =
        safetensors::serialize(views, metadata).map_err(|e| format_error(path, e.to_string()))?;
    std::fs::write(path, out).map_err(|source| TensorFileError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Every float tensor of a `.safetensors` file by name, with the file's metadata.
pub fn read_named_tensors(
    path: &Path,
) -> Result<
    (
        Vec<(String, HostTensor)>,
        std::collections::HashMap<String, String>,
    ),
    TensorFileError,
> {
    let bytes = std::fs::read(path).map_err(|source| TensorFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| format_error(path, e.to_string()))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let file = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| format_error(path, e.to_string()))?;
    let mut names: Vec<String> = file.names().into_iter().map(str::to_owned).collect();
    names.sort();
    let tensors = names
        .into_iter()
        .map(|name| {
            let view = file
                .tensor(&name)
                .map_err(|e| format_error(path, e.to_string()))?;
            Ok((name.clone(), view_data(path, &name, &view)?))
        })
        .collect::<Result<_, TensorFileError>>()?;
    Ok((tensors, metadata))
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn read_safetensors(path: &Path, bytes: &[u8]) -> Result<HostTensor, TensorFileError> {
    let file = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| format_error(path, e.to_string()))?;
    let names = file.names();
    let name = match names.as_slice() {
        [one] => one.to_string(),
        _ if names.iter().any(|n| *n == "tensor") => "tensor".to_owned(),
        _ => {
            return Err(format_error(
                path,
                format!(
                    "expected one tensor (or one named `tensor`), found {}",
                    names.len()
                ),
            ));
        }
    };
    let view = file
        .tensor(&name)
        .map_err(|e| format_error(path, e.to_string()))?;
    view_data(path, &name, &view)
}

fn view_data(
    path: &Path,
    name: &str,
    view: &safetensors::tensor::TensorView<'_>,
) -> Result<HostTensor, TensorFileError> {
    let raw = view.data();
    let data = match view.dtype() {
        safetensors::Dtype::F32 => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        safetensors::Dtype::F16 => raw
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        safetensors::Dtype::F64 => raw
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
        other => {
            return Err(format_error(
                path,
                format!("tensor `{name}` has dtype {other:?}, expected a float type"),
            ));
        }
    };
    Ok(HostTensor::new(view.shape().to_vec(), data))
}

fn read_npy(path: &Path, bytes: &[u8]) -> Result<HostTensor, TensorFileError> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(format_error(path, "not a .npy file (bad magic)"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format_error(path, format!("unsupported .npy version {v}"))),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| format_error(path, "truncated .npy header"))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr")
        .and_then(|r| r.split('\'').nth(1))
        .ok_or_else(|| format_error(path, "no dtype in header"))?;
    if field("fortran_order").is_some_and(|r| r.starts_with("True")) {
        return Err(format_error(
            path,
            "Fortran-ordered arrays are not supported: save with np.ascontiguousarray",
        ));
    }
    let shape_text = field("shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| format_error(path, "no shape in header"))?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|_| format_error(path, format!("bad shape `{shape_text}`")))
        })
        .collect::<Result<_, _>>()?;
    let body = &bytes[start + header_len..];
    let count: usize = shape.iter().product();
    let data: Vec<f32> = match descr {
        "<f4" => body
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        "<f8" => body
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
        "<f2" => body
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => {
            return Err(format_error(
                path,
                format!("dtype `{other}` is not supported: use float32"),
            ));
        }
    };
    if data.len() != count {
        return Err(format_error(
            path,
            format!(
                "shape {shape:?} needs {count} values, the file has {}",
                data.len()
            ),
        ));
    }
    Ok(HostTensor::new(shape, data))
}

fn npy_bytes(tensor: &HostTensor) -> Vec<u8> {
    let dims: Vec<String> = tensor.shape.iter().map(usize::to_string).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad so that the data starts on a 64-byte boundary, ending with a newline.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend(tensor.data.iter().flat_map(|v| v.to_le_bytes()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_and_safetensors_round_trip() {
        let dir = std::env::temp_dir().join(format!("faceid-tensor-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tensor = HostTensor::new(vec![2, 3], vec![1.0, -2.5, 3.25, 0.0, 1e-7, 7.0]);
        for name in ["t.npy", "t.safetensors"] {
            let path = dir.join(name);
            write_tensor(&path, &tensor).unwrap();
            assert_eq!(read_tensor(&path).unwrap(), tensor, "{name}");
        }
        std::fs::write(dir.join("bad.npy"), b"not numpy").unwrap();
        assert!(
            read_tensor(&dir.join("bad.npy"))
                .unwrap_err()
                .to_string()
                .contains("magic")
        );
        assert!(read_tensor(&dir.join("t.txt")).is_err());
        let other = HostTensor::new(vec![1, 2, 2], vec![0.5, 1.5, -1.0, 2.0]);
        let meta = std::collections::HashMap::from([("kind".to_string(), "test".to_string())]);
        let both = dir.join("both.safetensors");
        write_named_tensors(&both, &[("b", &other), ("a", &tensor)], Some(meta.clone())).unwrap();
        let (read, read_meta) = read_named_tensors(&both).unwrap();
        assert_eq!(
            read,
            vec![("a".to_string(), tensor.clone()), ("b".to_string(), other)]
        );
        assert_eq!(read_meta, meta);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
