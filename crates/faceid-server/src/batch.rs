//! Running a batch of queued requests of the same shape: each request's face and seed are
//! prepared on its own (a failure fails that request only), then the prepared ones share one
//! denoising loop, and each gets its own images.

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;

use faceid_face::DetectOptions;
use faceid_pipeline::fal::FalRequest;
use faceid_pipeline::{GenerateRequest, PipelineError, identity_from_images};
use serde_json::{Value, json};

use crate::engine::Models;
use crate::input::{FetchPolicy, InputError, face_images};
use crate::jobs::{Jobs, Work};
use crate::output::Files;

/// A failure of a request after it was accepted: the HTTP status and `detail` of its result.
#[derive(Clone)]
pub struct Failure {
    pub status: u16,
    pub detail: Value,
    pub message: String,
    pub kind: &'static str,
}

impl Failure {
    pub fn internal(kind: &'static str, message: String) -> Self {
        Self {
            status: 500,
            detail: json!(message),
            message,
            kind,
        }
    }
}

/// The result of one request of a batch: `Err(None)` when it was cancelled.
pub type Result = std::result::Result<Value, Option<Failure>>;

/// Requests with the same key can share a denoising loop.
pub fn key(input: &FalRequest) -> String {
    format!(
        "{}|{}|{}|{}|{}x{}|{}|{}",
        input.model_type.name(),
        input.base_1_5_model_repo,
        input.base_sdxl_model_repo,
        input.num_inference_steps,
        input.width,
        input.height,
        input.guidance_scale.to_bits(),
        input.face_id_det_size,
    )
}

/// Runs a batch; returns every request's id and result.
pub fn run(
    models: &Models,
    jobs: &Jobs,
    files: &Files,
    policy: &FetchPolicy,
    batch: Vec<Work>,
) -> Vec<(String, Result)> {
    let mut results = Vec::with_capacity(batch.len());
    let first = &batch[0].input;
    let base_repo = if first.model_type.is_sdxl() {
        &first.base_sdxl_model_repo
    } else {
        &first.base_1_5_model_repo
    };
    let loaded = match models.get(first.model_type.name(), base_repo) {
        Ok(loaded) => loaded,
        Err(e) => {
            let failure = Failure::internal("ModelLoadError", e);
            return batch
                .into_iter()
                .map(|w| (w.id, Err(Some(failure.clone()))))
                .collect();
        }
    };
    let label = format!(
        "model {} ({})",
        first.model_type.name(),
        models.base_label(base_repo)
    );
    let (mut prepared, mut requests): (Vec<Work>, Vec<GenerateRequest>) = (Vec::new(), Vec::new());
    for work in batch {
        if work.cancel.load(Ordering::SeqCst) {
            results.push((work.id, Err(None)));
            continue;
        }
        jobs.log(&work.id, "INFO", label.clone());
        match prepare(&loaded, jobs, policy, &work) {
            Ok(request) => {
                prepared.push(work);
                requests.push(request);
            }
            Err(failure) => results.push((work.id, Err(Some(failure)))),
        }
    }
    if prepared.is_empty() {
        return results;
    }
    if prepared.len() > 1 {
        for work in &prepared {
            jobs.log(
                &work.id,
                "INFO",
                format!(
                    "batched with {} other request(s) of the same shape",
                    prepared.len() - 1
                ),
            );
        }
    }
    let mut last_logged = 0;
    let generated = loaded.sd.generate_batch(&requests, &mut |p| {
        if p.step > last_logged {
            last_logged = p.step;
            for work in &prepared {
                jobs.log(&work.id, "INFO", format!("step {}/{}", p.step, p.total));
            }
        }
        if prepared.iter().all(|w| w.cancel.load(Ordering::SeqCst)) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    match generated {
        Ok(generated) => {
            for (work, out) in prepared.into_iter().zip(generated) {
                if work.cancel.load(Ordering::SeqCst) {
                    results.push((work.id, Err(None)));
                    continue;
                }
                let result = files
                    .store(&work.id, &out.images, work.inline_images)
                    .map(|stored| json!({"image": stored.grid, "images": stored.images, "seed": out.seed}))
                    .map_err(|e| Some(Failure::internal("StorageError", e.to_string())));
                results.push((work.id, result));
            }
        }
        Err(PipelineError::Cancelled { .. }) => {
            results.extend(prepared.into_iter().map(|w| (w.id, Err(None))));
        }
        Err(e) => {
            let failure = pipeline_failure(e);
            results.extend(
                prepared
                    .into_iter()
                    .map(|w| (w.id, Err(Some(failure.clone())))),
            );
        }
    }
    results
}

/// A request's identity and seed, checked against the model.
fn prepare(
    loaded: &crate::engine::Loaded,
    jobs: &Jobs,
    policy: &FetchPolicy,
    work: &Work,
) -> std::result::Result<GenerateRequest, Failure> {
    let input = &work.input;
    let images = face_images(input, policy).map_err(input_failure)?;
    let options = DetectOptions {
        det_size: input.face_id_det_size,
        ..DetectOptions::default()
    };
    let identity = identity_from_images(&loaded.analyzer, &images, &options).map_err(|e| Failure {
        status: 422,
        detail: json!([{"loc": ["body", face_field(input)], "msg": e.to_string(), "type": "face_error"}]),
        message: e.to_string(),
        kind: "FaceError",
    })?;
    jobs.log(
        &work.id,
        "INFO",
        format!("face identity from {} image(s)", images.len()),
    );
    let seed = input.seed.unwrap_or_else(faceid_pipeline::fal::random_seed);
    let request = input.to_generate_request(seed, Some(identity));
    loaded.sd.check(&request).map_err(pipeline_failure)?;
    Ok(request)
}

fn face_field(input: &FalRequest) -> &'static str {
    if input.face_image_url.is_some() {
        "face_image_url"
    } else {
        "face_images_data_url"
    }
}

fn input_failure(e: InputError) -> Failure {
    Failure {
        status: 422,
        detail: json!([{"loc": ["body", e.field], "msg": e.message, "type": e.kind}]),
        message: format!("{}: {}", e.field, e.message),
        kind: "InputError",
    }
}

fn pipeline_failure(e: PipelineError) -> Failure {
    match e {
        PipelineError::InvalidRequest { field, reason } => Failure {
            status: 422,
            detail: json!([{"loc": ["body", field], "msg": reason, "type": "value_error"}]),
            message: format!("{field}: {reason}"),
            kind: "ValidationError",
        },
        other => Failure::internal("GenerationError", other.to_string()),
    }
}
