//! Integration tests of faceid-embed, in one binary.

mod alignment;
mod common;
mod recognition;
