//! A worker on the shared queue: takes requests, keeps its claims alive while it runs them
//! (requests of the same shape share a denoising loop, as in one process), stores the images
//! in Redis for every API node to serve, completes each request once, and sends the webhook of
//! the requests it completes (a webhook still being retried when the worker stops or dies is
//! not sent by another worker).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use faceid_fal::FalRequest;
use serde_json::json;

use super::{Claim, RedisQueue, Start};
use crate::batch;
use crate::input::FetchPolicy;
use crate::jobs::{Outcome, RequestLog, Work};
use crate::models::Models;
use crate::output::Files;
use crate::webhook::{self, WebhookPolicy};

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Its name in the consumer group (unique per worker).
    pub name: String,
    /// Most requests taken at once; those of the same shape run as one batch.
    pub max_batch: usize,
    /// The address clients reach the API nodes at, for the URLs of the images.
    pub public_url: String,
    /// How input URLs are fetched.
    pub fetch: FetchPolicy,
    /// How long one wait for new requests lasts (the stop flag is read between waits).
    pub poll: Duration,
    /// How webhooks are retried (their hosts are checked against `fetch`).
    pub webhooks: WebhookPolicy,
}

/// Log lines written after completion (webhook deliveries), kept with the request.
struct Notes(Arc<RedisQueue>);

impl RequestLog for Notes {
    fn log_line(&self, id: &str, level: &'static str, message: String) {
        if let Err(e) = self.0.note(id, level, message) {
            tracing::warn!(request_id = %id, "cannot log to the shared queue: {e}");
        }
    }
}

/// Log lines go to Redis; a cancel asked for on any node comes back with the next one.
struct SharedLog {
    queue: Arc<RedisQueue>,
    cancels: HashMap<String, Arc<AtomicBool>>,
}

impl RequestLog for SharedLog {
    fn log_line(&self, id: &str, level: &'static str, message: String) {
        match self.queue.log(id, level, message) {
            Ok(true) => {
                if let Some(cancel) = self.cancels.get(id) {
                    cancel.store(true, Ordering::SeqCst);
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(request_id = %id, "cannot log to the shared queue: {e}"),
        }
    }
}

/// Beats for the claims in flight until dropped.
struct Heartbeat {
    running: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    fn start(queue: Arc<RedisQueue>, worker: String, entries: Vec<String>) -> Self {
        let running = Arc::new(AtomicBool::new(true));
        let beating = running.clone();
        let period = queue.settings().visibility / 3;
        let thread = std::thread::spawn(move || {
            let entries: Vec<&str> = entries.iter().map(String::as_str).collect();
            let mut last = Instant::now();
            while beating.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20).min(period));
                if last.elapsed() >= period {
                    last = Instant::now();
                    if let Err(e) = queue.heartbeat(&worker, &entries) {
                        tracing::warn!("cannot keep the claims alive: {e}");
                    }
                }
            }
        });
        Self {
            running,
            thread: Some(thread),
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.running.store(false, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn failed(status: u16, detail: serde_json::Value, message: String, kind: &str) -> Outcome {
    Outcome {
        status_code: status,
        body: json!({ "detail": detail }),
        inference_time: 0.0,
        error: Some((message, kind.to_string())),
        finished_at: SystemTime::now(),
    }
}

/// Runs requests from `queue` on `models` until `stop` is set; returns how many it completed
/// (a request completed elsewhere first is not counted).
pub fn run(
    queue: Arc<RedisQueue>,
    models: &Models,
    config: &WorkerConfig,
    stop: &AtomicBool,
) -> usize {
    let files = Files {
        dir: std::env::temp_dir(),
        public_url: config.public_url.trim_end_matches('/').to_string(),
        retention: queue.settings().retention,
        shared: Some(queue.clone()),
    };
    // Webhook deliveries wait between attempts on a runtime of their own.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("faceid-webhooks")
        .enable_all()
        .build()
        .expect("start the webhook runtime");
    let deliveries = webhook::Deliveries::new(
        config.webhooks.clone(),
        config.fetch.clone(),
        runtime.handle().clone(),
    );
    let notes: Arc<dyn RequestLog> = Arc::new(Notes(queue.clone()));
    let mut webhooks: HashMap<String, String> = HashMap::new();
    let mut completed = 0;
    let mut complete =
        |id: &str, entry: &str, outcome: &Outcome, webhook: Option<String>| match queue.complete(
            id,
            Some(entry),
            outcome,
        ) {
            Ok(true) => {
                completed += 1;
                tracing::info!(request_id = %id, status = outcome.status_code, "request finished");
                if let Some(url) = webhook {
                    let body = webhook::payload(id, outcome);
                    deliveries.send(notes.clone(), id.to_string(), url, body);
                }
            }
            Ok(false) => tracing::info!(request_id = %id, "completed by another worker first"),
            Err(e) => tracing::warn!(request_id = %id, "cannot complete: {e}"),
        };
    while !stop.load(Ordering::SeqCst) {
        let claims = match queue.claim(&config.name, config.max_batch.max(1), config.poll) {
            Ok(claims) => claims,
            Err(e) => {
                tracing::warn!("cannot read the shared queue: {e}; retrying in 1 s");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        let mut works: Vec<Work> = Vec::new();
        let mut entries: HashMap<String, String> = HashMap::new();
        for mut claim in claims {
            let Claim { id, entry, .. } = claim.clone();
            match queue.start(&config.name, &mut claim) {
                Ok(Start::Run(request)) => match FalRequest::from_json(&request.input) {
                    Ok(input) => {
                        if let Some(url) = request.webhook {
                            webhooks.insert(id.clone(), url);
                        }
                        if claim.reclaimed {
                            tracing::info!(request_id = %id, deliveries = claim.deliveries, "taken over from a silent worker");
                        }
                        works.push(Work {
                            id: id.clone(),
                            input,
                            fetched: None,
                            inline_images: request.inline_images,
                            cancel: Arc::new(AtomicBool::new(false)),
                        });
                        entries.insert(id, entry);
                    }
                    Err(errors) => {
                        let message = format!("the stored input is not valid: {}", errors[0].msg);
                        complete(
                            &id,
                            &entry,
                            &failed(422, json!(errors), message, "ValidationError"),
                            request.webhook,
                        );
                    }
                },
                Ok(Start::Exhausted { webhook }) => {
                    let message = format!(
                        "the request stopped {} worker(s) without completing; it is not run again",
                        claim.deliveries.saturating_sub(1)
                    );
                    complete(
                        &id,
                        &entry,
                        &failed(500, json!(message), message.clone(), "WorkerLost"),
                        webhook,
                    );
                }
                Ok(Start::Gone) => {}
                Err(e) => tracing::warn!(request_id = %id, "cannot start: {e}"),
            }
        }
        if works.is_empty() {
            continue;
        }
        let _heartbeat = Heartbeat::start(
            queue.clone(),
            config.name.clone(),
            entries.values().cloned().collect(),
        );
        let log = SharedLog {
            queue: queue.clone(),
            cancels: works
                .iter()
                .map(|w| (w.id.clone(), w.cancel.clone()))
                .collect(),
        };
        // Requests of the same shape share a denoising loop, in the order they came.
        let mut groups: Vec<(String, Vec<Work>)> = Vec::new();
        for work in works {
            let key = batch::key(&work.input);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, group)) => group.push(work),
                None => groups.push((key, vec![work])),
            }
        }
        for (_, group) in groups {
            let started = Instant::now();
            for (id, result) in batch::run(models, &log, &files, &config.fetch, group) {
                let outcome = crate::engine::outcome(&log, &id, result, started);
                complete(&id, &entries[&id], &outcome, webhooks.remove(&id));
            }
        }
    }
    drop(complete);
    // Deliveries under way get a moment to finish.
    runtime.shutdown_timeout(Duration::from_secs(5));
    completed
}
