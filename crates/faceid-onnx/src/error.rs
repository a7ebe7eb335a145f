//! Errors of loading and running ONNX graphs.

use std::path::PathBuf;

/// Everything that can go wrong when loading or running an ONNX model.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The file could not be read.
    #[error("cannot read ONNX file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The bytes are not an ONNX model (not protobuf, or no graph in it).
    #[error("not an ONNX model: {0}")]
    NotOnnx(String),
    /// The model is an ONNX file, but malformed (dangling value, cycle, bad tensor payload).
    #[error("invalid ONNX model: {0}")]
    Invalid(String),
    /// The graph uses an operator this runtime does not implement.
    #[error("unsupported ONNX operator {op_type} (domain {domain:?}) in node {node:?}")]
    UnsupportedOp {
        /// Operator type.
        op_type: String,
        /// Operator domain (empty for the default domain).
        domain: String,
        /// Node name, or its first output when the node has no name.
        node: String,
    },
    /// A node got inputs it cannot work with (shapes, types, attribute values).
    #[error("node {node:?} ({op_type}): {message}")]
    Node {
        /// Node name, or its first output when the node has no name.
        node: String,
        /// Operator type.
        op_type: String,
        /// What went wrong.
        message: String,
    },
    /// The caller passed the wrong number of inputs.
    #[error("the model has {expected} input(s), {got} given")]
    InputCount {
        /// Inputs the graph declares.
        expected: usize,
        /// Inputs passed.
        got: usize,
    },
    /// An input does not match the shape the graph declares.
    #[error("input {name:?} has shape {got:?}, the model expects {expected}")]
    InputShape {
        /// Input name.
        name: String,
        /// The declared shape, with symbolic dimensions shown by name.
        expected: String,
        /// The shape passed.
        got: Vec<usize>,
    },
    /// A tensor could not be converted to the requested rank or read back.
    #[error("tensor conversion: {0}")]
    Tensor(String),
    /// The backend failed while running an operator.
    #[error("backend failure in node {node:?}: {message}")]
    Backend {
        /// Node name, or its first output.
        node: String,
        /// The backend's message.
        message: String,
    },
}

impl OnnxError {
    /// Shorthand for [`OnnxError::Invalid`].
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }
}

/// Errors raised inside one operator, before the node context is attached.
#[derive(Debug)]
pub(crate) struct OpError(pub String);

impl OpError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Result of a single operator implementation.
pub(crate) type OpResult<T> = Result<T, OpError>;

/// Returns an [`OpError`] built from a format string.
macro_rules! op_bail {
    ($($arg:tt)*) => {
        return Err($crate::error::OpError(format!($($arg)*)))
    };
}
pub(crate) use op_bail;
