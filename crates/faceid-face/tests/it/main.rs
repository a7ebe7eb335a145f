//! Integration tests of faceid-face, in one binary.

mod bad_input;
mod embedding;
mod identity;
