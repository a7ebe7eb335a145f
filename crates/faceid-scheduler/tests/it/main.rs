//! Integration tests of faceid-scheduler, in one binary.

mod common;
mod diffusers_reference;
mod errors_and_config;
