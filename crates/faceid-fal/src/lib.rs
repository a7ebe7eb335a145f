//! The API of the hosted `fal-ai/ip-adapter-face-id` endpoint, as data: its model types, every
//! input field with its default and range, validation with FastAPI-style errors, and the JSON
//! Schemas it publishes. The server and the CLI speak it; the pipeline crates know nothing of it.
//!
//! ```
//! use faceid_fal::{FalRequest, ModelType};
//! let request = FalRequest::from_json(&serde_json::json!({"prompt": "a portrait"})).unwrap();
//! assert_eq!(request.model_type, ModelType::Sd15V1);
//! assert_eq!(request.num_samples, 4);
//! ```
#![deny(missing_docs)]

mod model_type;
mod request;
mod schema;

pub use model_type::ModelType;
pub use request::{FalRequest, FieldError};
pub use schema::{
    DEFAULT_BASE_1_5_REPO, DEFAULT_BASE_SDXL_REPO, DEFAULT_NEGATIVE_PROMPT, FIELDS, Field,
    FieldKind, MODEL_TYPES, field, input_schema, output_schema,
};
