//! Integration tests of faceid-embed, in one binary.

mod alignment;
mod recognition;
