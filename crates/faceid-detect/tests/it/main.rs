//! Integration tests of faceid-detect, in one binary.

mod bad_input;
mod detection;
mod resize;
