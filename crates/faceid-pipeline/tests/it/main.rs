//! Integration tests of faceid-pipeline, in one binary.

mod faceid_parity;
mod fal_request;
mod half_precision;
mod pipeline_parity;
