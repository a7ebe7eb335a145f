//! Running a batch of queued requests of the same shape: each request's face and seed are
//! prepared on its own (a failure fails that request only), then the prepared ones share one
//! denoising loop, and each gets its own images.

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;

use faceid_face::DetectOptions;
use faceid_fal::FalRequest;
use faceid_pipeline::{GenerateRequest, PipelineError};
use serde_json::{Value, json};

pub use crate::failure::Failure;
use crate::failure::RequestError;
use crate::input::{FetchPolicy, for_each_face_image};
use crate::jobs::{RequestLog, Work};
use crate::models::{Loaded, Models};
use crate::output::Files;

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
    log: &dyn RequestLog,
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
    let loaded = match models.get(first.model_type, base_repo) {
        Ok(loaded) => loaded,
        Err(e) => {
            let failure = Failure::from(RequestError::from(e));
            return batch
                .into_iter()
                .map(|w| (w.id, Err(Some(failure.clone()))))
                .collect();
        }
    };
    // Clients see the repository, never a path on this machine.
    let label = format!(
        "model {} ({})",
        first.model_type.name(),
        models.base_public_label(base_repo)
    );
    let (mut prepared, mut requests): (Vec<Work>, Vec<GenerateRequest>) = (Vec::new(), Vec::new());
    for mut work in batch {
        if work.cancel.load(Ordering::SeqCst) {
            results.push((work.id, Err(None)));
            continue;
        }
        log.log_line(&work.id, "INFO", label.clone());
        match prepare(&loaded, log, policy, &mut work) {
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
            log.log_line(
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
    let generated = loaded.generator.sd.generate_batch(&requests, &mut |p| {
        if p.step > last_logged {
            last_logged = p.step;
            for work in &prepared {
                log.log_line(&work.id, "INFO", format!("step {}/{}", p.step, p.total));
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
                    .map_err(|e| Some(RequestError::Storage(e.to_string()).into()));
                results.push((work.id, result));
            }
        }
        Err(PipelineError::Cancelled { .. }) => {
            results.extend(prepared.into_iter().map(|w| (w.id, Err(None))));
        }
        Err(e) => {
            let failure = Failure::from(RequestError::from(e));
            results.extend(
                prepared
                    .into_iter()
                    .map(|w| (w.id, Err(Some(failure.clone())))),
            );
        }
    }
    results
}

/// A request's face and seed, checked against the model. The face images are analysed one at
/// a time, each dropped once its face is embedded.
fn prepare(
    loaded: &Loaded,
    log: &dyn RequestLog,
    policy: &FetchPolicy,
    work: &mut Work,
) -> std::result::Result<GenerateRequest, Failure> {
    let fetched = work.fetched.take();
    let input = &work.input;
    let options = DetectOptions {
        det_size: input.face_id_det_size,
        ..DetectOptions::default()
    };
    let faces = &loaded.generator.faces;
    let face_error = |error| RequestError::Face {
        field: face_field(input),
        error,
    };
    let mut builder = faces.identity_builder(&options).map_err(face_error)?;
    let count = for_each_face_image(input, policy, fetched, |image| builder.add(&image))
        .map_err(RequestError::from)?;
    let identity = builder.finish().map_err(face_error)?;
    let face = faces.encode(&identity).map_err(RequestError::from)?;
    log.log_line(
        &work.id,
        "INFO",
        format!(
            "face identity from {} of {count} image(s){}",
            identity.faces.len(),
            if face.clip_embeds.is_some() {
                ", with CLIP features of the aligned faces"
            } else {
                ""
            }
        ),
    );
    let seed = input.seed.unwrap_or_else(faceid_pipeline::random_seed);
    let request = input.to_generate_request(seed, Some(face));
    loaded
        .generator
        .sd
        .check(&request)
        .map_err(RequestError::from)?;
    Ok(request)
}

fn face_field(input: &FalRequest) -> &'static str {
    if input.face_image_url.is_some() {
        "face_image_url"
    } else {
        "face_images_data_url"
    }
}
