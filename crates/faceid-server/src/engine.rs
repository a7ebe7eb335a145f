//! The models, loaded once and kept, and the workers that run queued requests on them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use faceid_core::{Device, Precision};
use faceid_face::{DetectorModel, FaceAnalyzer, RecognizerModel};
use faceid_hub::{FetchProgress, LocalFiles, ModelRequest, Weights};
use faceid_pipeline::{AdapterOptions, LoraSource, StableDiffusion};
use serde_json::json;

use crate::batch::{self, Failure};
use crate::input::FetchPolicy;
use crate::jobs::{Jobs, Outcome, cancelled_outcome};
use crate::metrics::Metrics;
use crate::output::Files;
use crate::webhook::{self, WebhookPolicy};

/// A base model with its adapter installed, and the face models that go with it.
pub struct Loaded {
    pub(crate) sd: StableDiffusion,
    pub(crate) analyzer: FaceAnalyzer,
}

/// Every model the server has loaded, by (model type, base repository).
pub struct Models {
    weights: Weights,
    local: LocalFiles,
    device: Device,
    precision: Precision,
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

impl Models {
    /// Models resolved through `weights`, `local` files replacing manifest entries, with the
    /// denoising loop in `precision`.
    pub fn new(weights: Weights, local: LocalFiles, device: Device, precision: Precision) -> Self {
        Self {
            weights,
            local,
            device,
            precision,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// What the base model of a request is: the local folder replacing it, or the repository.
    pub fn base_label(&self, base_repo: &str) -> String {
        match &self.local.base {
            Some(dir) => dir.display().to_string(),
            None => base_repo.to_string(),
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
        let mut sd = StableDiffusion::from_dir_in(
            &files.base,
            files.vae.as_deref(),
            &self.device,
            self.precision,
        )
        .map_err(|e| e.to_string())?;
        for part in sd.memory() {
            tracing::info!(
                model_type,
                component = part.name,
                parameters = part.parameters,
                mib = format!("{:.1}", part.mib()),
                "weights on the device"
            );
        }
        let adapter = files
            .ip_adapter
            .as_ref()
            .ok_or("no IP-Adapter checkpoint")?;
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
    /// Most requests of the same shape run as one batch.
    pub max_batch: usize,
}

/// Runs queued requests until the queue is closed and drained.
pub fn worker(ctx: Arc<Context>) {
    let Context {
        models,
        jobs,
        files,
        fetch: policy,
        ..
    } = &*ctx;
    while let Some(batch) = jobs.next_batch(ctx.max_batch, &batch::key) {
        let started = Instant::now();
        for (id, result) in batch::run(models, jobs, files, policy, batch) {
            let outcome = outcome(jobs, &id, result, started);
            finish(&ctx, id, outcome, started);
        }
    }
}

/// The recorded outcome of a request's result.
fn outcome(
    jobs: &Jobs,
    id: &str,
    result: Result<serde_json::Value, Option<Failure>>,
    started: Instant,
) -> Outcome {
    match result {
        Ok(body) => Outcome {
            status_code: 200,
            body,
            inference_time: started.elapsed().as_secs_f64(),
            error: None,
            finished_at: SystemTime::now(),
        },
        Err(None) => {
            jobs.log(id, "INFO", "cancelled".into());
            cancelled_outcome()
        }
        Err(Some(failure)) => {
            jobs.log(id, "ERROR", failure.message.clone());
            Outcome {
                status_code: failure.status,
                body: json!({"detail": failure.detail}),
                inference_time: started.elapsed().as_secs_f64(),
                error: Some((failure.message, failure.kind.to_string())),
                finished_at: SystemTime::now(),
            }
        }
    }
}

/// Records a finished request, counts it, and sends its webhook.
fn finish(ctx: &Arc<Context>, id: String, outcome: Outcome, started: Instant) {
    let Context { jobs, metrics, .. } = &**ctx;
    let status = outcome.status_code;
    let cancelled = outcome
        .error
        .as_ref()
        .is_some_and(|e| e.1 == "RequestCancelled");
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
            let (attempts, result) = webhook::deliver(&url, &body, &ctx.webhooks, &ctx.fetch);
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
