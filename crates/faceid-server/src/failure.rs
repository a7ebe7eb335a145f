//! Every way an accepted request can fail, typed, and the one place that maps each to the HTTP
//! status, fal's `detail` and the `error_type` its result carries.

use faceid_face::FaceError;
use faceid_pipeline::PipelineError;
use serde_json::{Value, json};

use crate::input::{FaceInputError, InputError};
use crate::models::ModelError;

/// A failure of a request after it was accepted: the HTTP status and `detail` of its result.
#[derive(Clone, Debug)]
pub struct Failure {
    pub status: u16,
    pub detail: Value,
    pub message: String,
    pub kind: &'static str,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// An input URL or its content is unusable.
    #[error("{}: {}", .0.field, .0.message)]
    Input(InputError),
    /// Face analysis failed on the images of `field`.
    #[error("{field}: {error}")]
    Face {
        /// `face_image_url` or `face_images_data_url`.
        field: &'static str,
        /// What went wrong.
        error: FaceError,
    },
    /// The models could not be had.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Generation failed, or the request does not fit the model.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The result could not be stored.
    #[error("cannot store the result: {0}")]
    Storage(String),
}

impl From<FaceInputError> for RequestError {
    fn from(e: FaceInputError) -> Self {
        match e {
            FaceInputError::Input(e) => Self::Input(e),
            FaceInputError::Face { field, error } => Self::Face { field, error },
        }
    }
}

/// A 422 naming `field`, as fal reports validation errors.
fn unprocessable(field: &str, msg: String, kind: &str, error_type: &'static str) -> Failure {
    Failure {
        status: 422,
        detail: json!([{"loc": ["body", field], "msg": msg, "type": kind}]),
        message: format!("{field}: {msg}"),
        kind: error_type,
    }
}

impl Failure {
    /// A server-side failure.
    pub fn internal(kind: &'static str, message: String) -> Self {
        Self {
            status: 500,
            detail: json!(message),
            message,
            kind,
        }
    }
}

impl From<RequestError> for Failure {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Input(e) => unprocessable(e.field, e.message, e.kind, "InputError"),
            RequestError::Face { field, error } => {
                // No face is the input's fault in a way the caller can act on (a lower
                // `face_id_det_size`, another photo), so it has a type of its own.
                let kind = match error {
                    FaceError::NoFace { .. } | FaceError::NoFaceInAny { .. } => "no_face",
                    _ => "face_error",
                };
                unprocessable(field, error.to_string(), kind, "FaceError")
            }
            RequestError::Model(ModelError::BaseModel { field, reason }) => {
                unprocessable(field, reason, "value_error", "ValidationError")
            }
            RequestError::Model(ModelError::Hub(e)) => {
                Failure::internal("ModelLoadError", e.to_string())
            }
            RequestError::Model(ModelError::Load(e)) => {
                Failure::internal("ModelLoadError", e.to_string())
            }
            RequestError::Pipeline(PipelineError::InvalidRequest { field, reason }) => {
                unprocessable(field, reason, "value_error", "ValidationError")
            }
            RequestError::Pipeline(e) => Failure::internal("GenerationError", e.to_string()),
            RequestError::Storage(message) => Failure::internal("StorageError", message),
        }
    }
}
