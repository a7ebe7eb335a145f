//! Integration tests of faceid-pipeline, in one binary.

mod faceid_parity;
mod half_precision;
mod images;
mod pipeline_parity;
mod plus_parity;
mod sdxl_parity;
