//! Integration tests of faceid-onnx, in one binary.

mod bad_files;
mod operators;
mod reference;
