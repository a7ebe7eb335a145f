//! Integration tests of faceid-hub, in one binary.

mod common;
mod downloads;
mod manifest;
mod python_cache;
mod repo_id;
mod settings;
