//! The models, loaded once and kept, and the workers that run queued requests on them.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use faceid_core::Device;
use faceid_face::{DetectOptions, DetectorModel, FaceAnalyzer, RecognizerModel};
use faceid_hub::{FetchProgress, LocalFiles, ModelRequest, Weights};
use faceid_pipeline::fal::FalRequest;
use faceid_pipeline::{
    AdapterOptions, LoraSource, PipelineError, StableDiffusion, identity_from_images,
};
use serde_json::json;

use crate::input::{FetchPolicy, InputError, face_images};
use crate::jobs::{Jobs, Outcome, Work, cancelled_outcome};
use crate::metrics::Metrics;
use crate::output::Files;
use crate::webhook::{self, WebhookPolicy};

/// A base model with its adapter installed, and the face models that go with it.
pub struct Loaded {
    sd: StableDiffusion,
    analyzer: FaceAnalyzer,
}

/// Every model the server has loaded, by (model type, base repository).
pub struct Models {
    weights: Weights,
    local: LocalFiles,
    device: Device,
    loaded: Mutex<HashMap<(String, String), Arc<Loaded>>>,
}

/// Reports downloads and licence notices through the server's log.
struct LogProgress;

impl FetchProgress for LogProgress {
    fn notice(&mut self, message: &str) {
        tracing::warn!("{message}");
    }

    fn start(&mut self, what: &str, size: u64, done: u64) {
        tracing::info!(what, size, done, "downloading");
    }
}

/// A failure of a request after it was accepted: the HTTP status and `detail` of its result.
struct Failure {
    status: u16,
    detail: serde_json::Value,
    message: String,
    kind: &'static str,
}

impl Failure {
    fn internal(kind: &'static str, message: String) -> Self {
        Self {
            status: 500,
            detail: json!(message),
            message,
            kind,
        }
    }
}

impl Models {
    /// Models resolved through `weights`, `local` files replacing manifest entries.
    pub fn new(weights: Weights, local: LocalFiles, device: Device) -> Self {
        Self {
            weights,
            local,
            device,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// The models for a request, loading (and fetching) them on first use.
    pub fn get(&self, model_type: &str, base_repo: &str) -> Result<Arc<Loaded>, String> {
        let key = (model_type.to_string(), base_repo.to_string());
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = loaded.get(&key) {
            return Ok(found.clone());
        }
        let request = ModelRequest {
            model_type: model_type.to_string(),
            base_repo: Some(base_repo.to_string()),
            local: self.local.clone(),
            adapter: true,
            face_analysis: true,
        };
        let files = self
            .weights
            .resolve(&request, &mut LogProgress)
            .map_err(|e| e.to_string())?;
        let mut sd = StableDiffusion::from_dir(&files.base, files.vae.as_deref(), &self.device)
            .map_err(|e| e.to_string())?;
        let adapter = files.ip_adapter.as_ref().ok_or("no IP-Adapter checkpoint")?;
        sd.install_faceid(
            adapter,
            &AdapterOptions {
                ip_scale: 1.0,
                lora_scale: 1.0,
                lora: LoraSource::Checkpoint,
            },
        )
        .map_err(|e| e.to_string())?;
        let detector = files
            .detector
            .clone()
            .map_or(DetectorModel::BuiltinRetinaFace, DetectorModel::File);
        let recognizer = files.recognizer.clone().ok_or("no face recognizer")?;
        let analyzer = FaceAnalyzer::new(
            detector,
            Some(RecognizerModel::File(recognizer)),
            &self.device,
        )
        .map_err(|e| e.to_string())?;
        let models = Arc::new(Loaded { sd, analyzer });
        loaded.insert(key, models.clone());
        Ok(models)
    }
}

/// What the workers share.
pub struct Context {
    /// The loaded models.
    pub models: Models,
    /// The requests.
    pub jobs: Arc<Jobs>,
    /// Where results go.
    pub files: Arc<Files>,
    /// How input URLs are fetched (and which webhook hosts are allowed).
    pub fetch: FetchPolicy,
    /// How webhooks are retried.
    pub webhooks: WebhookPolicy,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

/// Runs queued requests until the queue is closed and drained.
pub fn worker(ctx: Arc<Context>) {
    let Context {
        models,
        jobs,
        files,
        fetch: policy,
        metrics,
        ..
    } = &*ctx;
    while let Some(work) = jobs.next_work() {
        let id = work.id.clone();
        let started = Instant::now();
        let outcome = match run(models, jobs, files, policy, &work) {
            Ok(body) => Outcome {
                status_code: 200,
                body,
                inference_time: started.elapsed().as_secs_f64(),
                error: None,
            },
            Err(None) => {
                jobs.log(&id, "INFO", "cancelled".into());
                cancelled_outcome()
            }
            Err(Some(failure)) => {
                jobs.log(&id, "ERROR", failure.message.clone());
                Outcome {
                    status_code: failure.status,
                    body: json!({"detail": failure.detail}),
                    inference_time: started.elapsed().as_secs_f64(),
                    error: Some((failure.message, failure.kind.to_string())),
                }
            }
        };
        let status = outcome.status_code;
        let cancelled = outcome.error.as_ref().is_some_and(|e| e.1 == "RequestCancelled");
        metrics.finished(
            (!cancelled).then_some(status),
            started.elapsed().as_secs_f64(),
        );
        let body = webhook::payload(&id, &outcome);
        let webhook = jobs.complete(&id, outcome);
        tracing::info!(request_id = %id, status, seconds = started.elapsed().as_secs_f64(), "request finished");
        if let Some(url) = webhook {
            let ctx = ctx.clone();
            std::thread::spawn(move || {
                let (attempts, result) = webhook::deliver(&url, &body, &ctx.webhooks);
                match result {
                    Ok(()) => ctx.jobs.log(
                        &id,
                        "INFO",
                        format!("webhook delivered (attempt {attempts})"),
                    ),
                    Err(e) => {
                        tracing::warn!(request_id = %id, url, attempts, "webhook not delivered: {e}");
                        ctx.jobs.log(
                            &id,
                            "ERROR",
                            format!("webhook not delivered after {attempts} attempts: {e}"),
                        );
                    }
                }
            });
        }
    }
}

/// One request: `Err(None)` when it was cancelled.
fn run(
    models: &Models,
    jobs: &Jobs,
    files: &Files,
    policy: &FetchPolicy,
    work: &Work,
) -> Result<serde_json::Value, Option<Failure>> {
    let input: &FalRequest = &work.input;
    let id = &work.id;
    if work.cancel.load(Ordering::SeqCst) {
        return Err(None);
    }
    let base_repo = if input.model_type.is_sdxl() {
        &input.base_sdxl_model_repo
    } else {
        &input.base_1_5_model_repo
    };
    jobs.log(id, "INFO", format!("loading {} ({base_repo})", input.model_type.name()));
    let loaded = models
        .get(input.model_type.name(), base_repo)
        .map_err(|e| Some(Failure::internal("ModelLoadError", e)))?;
    let images = face_images(input, policy).map_err(|e| Some(input_failure(e)))?;
    let options = DetectOptions {
        det_size: input.face_id_det_size,
        ..DetectOptions::default()
    };
    let identity = identity_from_images(&loaded.analyzer, &images, &options).map_err(|e| {
        Some(Failure {
            status: 422,
            detail: json!([{"loc": ["body", face_field(input)], "msg": e.to_string(), "type": "face_error"}]),
            message: e.to_string(),
            kind: "FaceError",
        })
    })?;
    jobs.log(id, "INFO", format!("face identity from {} image(s)", images.len()));
    let seed = input.seed.unwrap_or_else(random_seed);
    let request = input.to_generate_request(seed, Some(identity));
    loaded.sd.check(&request).map_err(|e| Some(pipeline_failure(e)))?;
    let mut last_logged = 0;
    let generated = loaded
        .sd
        .generate(&request, &mut |p| {
            if p.step > last_logged {
                last_logged = p.step;
                jobs.log(id, "INFO", format!("step {}/{}", p.step, p.total));
            }
            if work.cancel.load(Ordering::SeqCst) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .map_err(|e| match e {
            PipelineError::Cancelled { .. } => None,
            other => Some(pipeline_failure(other)),
        })?;
    let output = files
        .store(id, &generated.images, work.inline_images)
        .map_err(|e| Some(Failure::internal("StorageError", e.to_string())))?;
    Ok(json!({
        "image": output.grid,
        "images": output.images,
        "seed": generated.seed,
    }))
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

/// A seed below 2^32, so it means the same to torch's manual_seed.
pub fn random_seed() -> u64 {
    uuid::Uuid::new_v4().as_u128() as u64 & 0xFFFF_FFFF
}
