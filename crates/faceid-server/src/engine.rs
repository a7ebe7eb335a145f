//! The workers that run queued requests on the loaded models.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde_json::json;

use crate::batch::{self, Failure};
use crate::input::FetchPolicy;
use crate::jobs::{Jobs, Outcome, RequestLog, cancelled_outcome};
use crate::metrics::Metrics;
use crate::models::Models;
use crate::output::Files;
use crate::webhook;

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
    /// Webhook deliveries.
    pub webhooks: webhook::Deliveries,
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
        for (id, result) in batch::run(models, &**jobs, files, policy, batch) {
            let outcome = outcome(&**jobs, &id, result, started);
            finish(&ctx, id, outcome, started);
        }
    }
}

/// The outcome of a request's result (a cancellation or failure is logged too).
pub(crate) fn outcome(
    log: &dyn RequestLog,
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
            log.log_line(id, "INFO", "cancelled".into());
            cancelled_outcome()
        }
        Err(Some(failure)) => {
            log.log_line(id, "ERROR", failure.message.clone());
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
    let counted = |outcome: &Outcome| {
        metrics.finished(
            (!outcome.cancelled()).then_some(outcome.status_code),
            started.elapsed().as_secs_f64(),
        )
    };
    let Some((outcome, webhook)) = jobs.complete(&id, outcome, counted) else {
        // Interrupted by a shutdown that keeps it for the next start.
        return;
    };
    let status = outcome.status_code;
    tracing::info!(request_id = %id, status, seconds = started.elapsed().as_secs_f64(), "request finished");
    if let Some(url) = webhook {
        let body = webhook::payload(&id, &outcome);
        ctx.webhooks.send(jobs.clone(), id, url, body);
    }
}
