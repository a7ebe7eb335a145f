//! Loads ONNX models and runs them on burn tensors by following the graph.
//!
//! The file is decoded with prost from hand-declared `onnx.proto` messages (no protobuf compiler
//! at build time). Loading validates the graph, orders the nodes topologically, uploads the
//! weights once, and folds every node whose inputs are constants. Running interprets the
//! remaining nodes in order: float activations stay on the burn device, while the integer shape
//! arithmetic that exporters emit (`Shape`, `Gather`, `Unsqueeze`, `Concat`, ...) runs on the
//! host against the actual input shape. So any export of a supported architecture runs as it is,
//! whatever its exporter did with batch norms, initializer names or dynamic axes.
//!
//! ```no_run
//! use burn::tensor::{Device, Tensor};
//! use faceid_onnx::{OnnxModel, OnnxTensor};
//!
//! let device = Device::flex();
//! let model = OnnxModel::from_file("model.onnx", &device)?;
//! let input = Tensor::<4>::zeros([1, 3, 112, 112], &device);
//! let outputs = model.run(vec![OnnxTensor::from_tensor(input)?])?;
//! println!("{:?}", outputs[0].shape());
//! # Ok::<(), faceid_onnx::OnnxError>(())
//! ```
//!
//! Every failure is an [`OnnxError`]: a file that is not ONNX, an operator that is not
//! implemented (naming it and the node), an input of the wrong shape, a node whose inputs do not
//! fit together. Backend panics inside a node are caught and reported as errors too.
#![deny(missing_docs)]

mod attr;
mod error;
mod model;
mod ops;
mod proto;
mod tensor;
mod tensor_proto;
mod value;

pub use error::OnnxError;
pub use model::{Dim, NodeInfo, OnnxModel, ValueInfo};
pub use tensor::OnnxTensor;
pub use value::MAX_RANK;

/// Names of the implemented operators of the default ONNX domain.
pub fn supported_operators() -> &'static [&'static str] {
    ops::SUPPORTED
}
