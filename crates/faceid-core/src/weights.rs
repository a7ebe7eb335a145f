//! Checkpoint tensors, read by their checkpoint names.
//!
//! A [`Weights`] is a set of named tensors from one or more files (a single safetensors file, the
//! shards of a sharded checkpoint, or tensors already in memory such as a torch pickle's). Models
//! are built by asking a [`Scope`] for each tensor by name and expected shape, so the names in the
//! code are the names in the checkpoint. Every tensor is decoded to f32 on the host and uploaded
//! in the [`Precision`] the weights were opened for (f32 unless [`Weights::with_precision`]).
//!
//! Loading is strict: a requested tensor that is absent or has another shape is an error naming
//! it, and [`Weights::finish`] turns every tensor nobody asked for into an error, so a checkpoint
//! that does not match its config never loads half-way.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use burn::tensor::{Device, Tensor, TensorData};

use crate::precision::Precision;
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

pub use crate::component::ComponentFiles;
pub use error::WeightError;

mod error;

/// A float tensor in host memory, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// The dimensions.
    pub shape: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<f32>,
}

impl HostTensor {
    /// Creates a host tensor; `data.len()` must equal the product of `shape`.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }

    /// Uploads the tensor to `device` with `D` dimensions, in f32.
    pub fn to_tensor<const D: usize>(self, device: &Device) -> Tensor<D> {
        self.to_tensor_in(device, Precision::F32)
    }

    /// Uploads the tensor to `device` with `D` dimensions, in `precision`.
    pub fn to_tensor_in<const D: usize>(self, device: &Device, precision: Precision) -> Tensor<D> {
        let data = TensorData::new(self.data, self.shape);
        Tensor::from_data(data, (device, precision.dtype()))
    }

    /// The 2-D matrix transposed (`[rows, cols]` becomes `[cols, rows]`).
    pub fn transpose_2d(&self) -> Self {
        let [rows, cols] = [self.shape[0], self.shape[1]];
        let mut data = vec![0.0; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                data[c * rows + r] = self.data[r * cols + c];
            }
        }
        Self::new(vec![cols, rows], data)
    }
}

/// Where one tensor's bytes are.
#[derive(Debug, Clone)]
struct Entry {
    file: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

enum Source {
    Files {
        maps: Vec<Mmap>,
        entries: HashMap<String, Entry>,
    },
    Memory(HashMap<String, HostTensor>),
    Random {
        seed: u64,
    },
}

/// A set of named checkpoint tensors on their way to a device.
pub struct Weights {
    source: Source,
    origin: String,
    device: Device,
    precision: Precision,
    used: Mutex<HashSet<String>>,
    ignored: Vec<String>,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Weights")
            .field("origin", &self.origin)
            .finish()
    }
}

impl Weights {
    /// Opens one or more safetensors files (the shards of one checkpoint).
    pub fn from_safetensors(paths: &[PathBuf], device: &Device) -> Result<Self, WeightError> {
        let mut maps = Vec::with_capacity(paths.len());
        let mut entries = HashMap::new();
        let origin = match paths {
            [one] => one.display().to_string(),
            _ => format!(
                "{} shards in {}",
                paths.len(),
                parent_of(&paths[0]).display()
            ),
        };
        for (file, path) in paths.iter().enumerate() {
            let map = map_file(path)?;
            let (header, metadata) =
                SafeTensors::read_metadata(&map).map_err(|e| WeightError::Format {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            let base = 8 + header;
            for (name, info) in metadata.tensors() {
                let entry = Entry {
                    file,
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    start: base + info.data_offsets.0,
                    end: base + info.data_offsets.1,
                };
                if entries.insert(name.clone(), entry).is_some() {
                    return Err(WeightError::Duplicate { name, origin });
                }
            }
            maps.push(map);
        }
        Ok(Self::with_source(
            Source::Files { maps, entries },
            origin,
            device,
        ))
    }

    /// The tensor names of a checkpoint file, read without its data: safetensors by the
    /// `.safetensors` extension, a PyTorch checkpoint otherwise (names as [`Self::from_pytorch`]
    /// gives them).
    pub fn names_in_file(path: &Path) -> Result<Vec<String>, WeightError> {
        let format = |reason: String| WeightError::Format {
            path: path.to_owned(),
            reason,
        };
        if path.extension().and_then(|e| e.to_str()) == Some("safetensors") {
            let map = map_file(path)?;
            let (_, metadata) =
                SafeTensors::read_metadata(&map).map_err(|e| format(e.to_string()))?;
            Ok(metadata.tensors().into_keys().collect())
        } else {
            let reader = burn_store::pytorch_reader::PytorchReader::new(path)
                .map_err(|e| format(e.to_string()))?;
            Ok(reader.keys())
        }
    }

    /// Reads a PyTorch checkpoint (`torch.save` output: the zip format or the legacy pickle, as
    /// `.bin`, `.pt`, `.pth`) without Python. Nested dictionaries give dotted names
    /// (`{"image_proj": {"proj.0.weight": ..}}` → `image_proj.proj.0.weight`).
    pub fn from_pytorch(path: &Path, device: &Device) -> Result<Self, WeightError> {
        use burn_store::pytorch_reader::{DType as PtType, PytorchReader};
        let format = |reason: String| WeightError::Format {
            path: path.to_owned(),
            reason,
        };
        let reader = PytorchReader::new(path).map_err(|e| format(e.to_string()))?;
        let origin = path.display().to_string();
        let mut tensors = HashMap::new();
        for (name, tensor) in reader.into_tensors() {
            let bytes = tensor.read().map_err(|e| format(e.to_string()))?;
            let dtype = match tensor.dtype() {
                PtType::F32 => Dtype::F32,
                PtType::F16 => Dtype::F16,
                PtType::BF16 => Dtype::BF16,
                PtType::F64 => Dtype::F64,
                other => {
                    return Err(WeightError::Dtype {
                        name,
                        origin,
                        dtype: format!("{other:?}"),
                    });
                }
            };
            let data = decode(&name, &origin, dtype, &bytes)?;
            tensors.insert(name, HostTensor::new(tensor.shape().to_vec(), data));
        }
        Ok(Self::from_memory(tensors, origin, device))
    }

    /// Wraps tensors already in memory (for example from a torch pickle).
    pub fn from_memory(
        tensors: HashMap<String, HostTensor>,
        origin: impl Into<String>,
        device: &Device,
    ) -> Self {
        Self::with_source(Source::Memory(tensors), origin.into(), device)
    }

    /// Weights that make up any requested tensor from a seeded generator, uniform in
    /// `±1/sqrt(fan_in)`. For timing full-size architectures without real checkpoints.
    pub fn random(seed: u64, device: &Device) -> Self {
        Self::with_source(Source::Random { seed }, "random weights".into(), device)
    }

    fn with_source(source: Source, origin: String, device: &Device) -> Self {
        Self {
            source,
            origin,
            device: device.clone(),
            precision: Precision::F32,
            used: Mutex::new(HashSet::new()),
            ignored: Vec::new(),
        }
    }

    /// Tensors whose names end with one of `suffixes` may stay unused (buffers some exporters
    /// save, such as `position_ids`).
    pub fn allow_unused_suffixes(mut self, suffixes: &[&str]) -> Self {
        self.ignored.extend(suffixes.iter().map(|s| s.to_string()));
        self
    }

    /// Uploads every tensor in `precision` instead of f32.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// The device tensors are loaded to.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The precision tensors are uploaded in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Uploads a tensor read with [`Self::host`] (and perhaps rearranged) in the weights'
    /// device and precision.
    pub fn upload<const D: usize>(&self, tensor: HostTensor) -> Tensor<D> {
        tensor.to_tensor_in(&self.device, self.precision)
    }

    /// A human-readable description of where the weights come from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The root scope (no name prefix).
    pub fn root(&self) -> Scope<'_> {
        Scope {
            weights: self,
            prefix: String::new(),
        }
    }

    /// Whether the checkpoint has a tensor of this name.
    pub fn contains(&self, name: &str) -> bool {
        match &self.source {
            Source::Files { entries, .. } => entries.contains_key(name),
            Source::Memory(map) => map.contains_key(name),
            Source::Random { .. } => true,
        }
    }

    /// The names of every tensor in the checkpoint, sorted (empty for random weights).
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = match &self.source {
            Source::Files { entries, .. } => entries.keys().cloned().collect(),
            Source::Memory(map) => map.keys().cloned().collect(),
            Source::Random { .. } => Vec::new(),
        };
        names.sort();
        names
    }

    /// The stored shape of a tensor, if present.
    pub fn shape_of(&self, name: &str) -> Option<Vec<usize>> {
        match &self.source {
            Source::Files { entries, .. } => entries.get(name).map(|e| e.shape.clone()),
            Source::Memory(map) => map.get(name).map(|t| t.shape.clone()),
            Source::Random { .. } => None,
        }
    }

    /// Reads a tensor into host memory as f32, checking its shape, and marks it used.
    pub fn host(&self, name: &str, expected: &[usize]) -> Result<HostTensor, WeightError> {
        let tensor = match &self.source {
            Source::Files { maps, entries } => {
                let entry = entries.get(name).ok_or_else(|| self.missing(name))?;
                self.check_shape(name, &entry.shape, expected)?;
                let map = &maps[entry.file];
                let values = decode(
                    name,
                    &self.origin,
                    entry.dtype,
                    &map[entry.start..entry.end],
                )?;
                // The file's pages are no longer needed in this process (they stay in the page
                // cache): without this, a whole checkpoint's pages would count in the resident
                // memory next to its decoded copy while a model loads.
                #[cfg(unix)]
                // SAFETY: the map is a read-only shared file mapping; dropping its pages only
                // makes a later read of them fault them in again from the file.
                let _ = unsafe {
                    map.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        entry.start,
                        entry.end - entry.start,
                    )
                };
                HostTensor::new(entry.shape.clone(), values)
            }
            Source::Memory(map) => {
                let tensor = map.get(name).ok_or_else(|| self.missing(name))?;
                self.check_shape(name, &tensor.shape, expected)?;
                tensor.clone()
            }
            Source::Random { seed } => random_tensor(*seed, name, expected),
        };
        self.used
            .lock()
            .expect("weights lock")
            .insert(name.to_owned());
        Ok(tensor)
    }

    /// Reads a tensor onto the device, checking its shape, and marks it used.
    pub fn tensor<const D: usize>(
        &self,
        name: &str,
        expected: [usize; D],
    ) -> Result<Tensor<D>, WeightError> {
        Ok(self.upload(self.host(name, &expected)?))
    }

    /// Ends loading: every tensor that no model asked for is an error.
    pub fn finish(self) -> Result<(), WeightError> {
        let used = self.used.into_inner().expect("weights lock");
        let mut unused: Vec<String> = match &self.source {
            Source::Files { entries, .. } => entries.keys().cloned().collect(),
            Source::Memory(map) => map.keys().cloned().collect(),
            Source::Random { .. } => Vec::new(),
        };
        unused.retain(|name| {
            !used.contains(name) && !self.ignored.iter().any(|s| name.ends_with(s.as_str()))
        });
        if unused.is_empty() {
            return Ok(());
        }
        unused.sort();
        Err(WeightError::Unused {
            origin: self.origin,
            names: unused,
        })
    }

    fn missing(&self, name: &str) -> WeightError {
        WeightError::Missing {
            name: name.to_owned(),
            origin: self.origin.clone(),
        }
    }

    fn check_shape(
        &self,
        name: &str,
        found: &[usize],
        expected: &[usize],
    ) -> Result<(), WeightError> {
        if found == expected {
            return Ok(());
        }
        Err(WeightError::Shape {
            name: name.to_owned(),
            origin: self.origin.clone(),
            found: found.to_vec(),
            expected: expected.to_vec(),
        })
    }
}

/// Converts stored little-endian floats to f32.
fn decode(name: &str, origin: &str, dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>, WeightError> {
    let values = match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
        other => {
            return Err(WeightError::Dtype {
                name: name.to_owned(),
                origin: origin.to_owned(),
                dtype: format!("{other:?}"),
            });
        }
    };
    Ok(values)
}

/// Maps a checkpoint file read-only.
fn map_file(path: &Path) -> Result<Mmap, WeightError> {
    let io = |source| WeightError::Io {
        path: path.to_owned(),
        source,
    };
    let handle = File::open(path).map_err(io)?;
    // SAFETY: the map is read-only; a checkpoint rewritten while loading is the user's problem
    // in every framework, and at worst yields wrong values, never unsafety in Rust code that
    // only copies bytes out of it.
    unsafe { Mmap::map(&handle) }.map_err(io)
}

pub(crate) fn parent_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

/// Deterministic stand-in values for a named tensor: a splitmix64 stream keyed by the seed and
/// the name, uniform in `±1/sqrt(fan_in)` (fan_in = product of all but the first dimension).
fn random_tensor(seed: u64, name: &str, shape: &[usize]) -> HostTensor {
    let mut state = name.bytes().fold(seed ^ 0x9E37_79B9_7F4A_7C15, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01B3)
    });
    let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
    let bound = 1.0 / (fan_in as f32).sqrt();
    let len: usize = shape.iter().product();
    let data = (0..len)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let unit = (z >> 40) as f32 / (1u64 << 24) as f32;
            (unit * 2.0 - 1.0) * bound
        })
        .collect();
    HostTensor::new(shape.to_vec(), data)
}

/// A name prefix inside a [`Weights`]: `scope.at("down_blocks").at(0).tensor("conv.weight", ..)`
/// reads `down_blocks.0.conv.weight`.
#[derive(Clone)]
pub struct Scope<'a> {
    weights: &'a Weights,
    prefix: String,
}

impl<'a> Scope<'a> {
    /// The scope one level down.
    pub fn at(&self, name: impl std::fmt::Display) -> Scope<'a> {
        Scope {
            weights: self.weights,
            prefix: self.key(&name.to_string()),
        }
    }

    /// The full checkpoint name of `name` in this scope.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// Whether the checkpoint has `name` in this scope.
    pub fn contains(&self, name: &str) -> bool {
        self.weights.contains(&self.key(name))
    }

    /// See [`Weights::host`].
    pub fn host(&self, name: &str, shape: &[usize]) -> Result<HostTensor, WeightError> {
        self.weights.host(&self.key(name), shape)
    }

    /// See [`Weights::tensor`].
    pub fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Tensor<D>, WeightError> {
        self.weights.tensor(&self.key(name), shape)
    }

    /// The device tensors go to.
    pub fn device(&self) -> &Device {
        self.weights.device()
    }

    /// See [`Weights::upload`].
    pub fn upload<const D: usize>(&self, tensor: HostTensor) -> Tensor<D> {
        self.weights.upload(tensor)
    }
}
