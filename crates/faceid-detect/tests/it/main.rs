//! Integration tests of faceid-detect, in one binary.

mod bad_input;
mod common;
mod detection;
mod resize;
