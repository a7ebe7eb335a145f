//! Integration tests of faceid-face, in one binary.

mod bad_input;
mod common;
mod detection;
mod embedding;
mod opencv_parity;
