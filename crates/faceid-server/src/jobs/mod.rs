//! Requests and their lifecycle: a bounded queue, per-request status and logs, cancellation,
//! and a notification whenever anything changes (for waiting clients and status streams).
//!
//! A request keeps its input only until it completes: from then on it holds what its status
//! and result need, in memory and on disk (`durable`: records, completions saved before they
//! are reported, restoring at start).

mod durable;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::SystemTime;

use faceid_fal::FalRequest;
use serde_json::{Value, json};

use crate::input::Fetched;
use crate::store::Store;

/// One log line of a request, as fal reports them.
#[derive(Debug, Clone)]
pub struct LogItem {
    /// What happened.
    pub message: String,
    /// `INFO`, `WARNING` or `ERROR`.
    pub level: &'static str,
    /// When, as seconds since the Unix epoch.
    pub at: SystemTime,
}

impl LogItem {
    /// As fal's status reports it.
    pub fn to_json(&self) -> Value {
        json!({
            "message": self.message,
            "level": self.level,
            "source": "USER",
            "timestamp": crate::time::iso8601(self.at),
        })
    }
}

/// How a request ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The HTTP status of the result (200, or the error's).
    pub status_code: u16,
    /// The result body (the output, or `{"detail": ...}`).
    pub body: Value,
    /// Seconds spent generating.
    pub inference_time: f64,
    /// The error message and type, for failed requests.
    pub error: Option<(String, String)>,
    /// When it finished (completed requests are forgotten after the retention time).
    pub finished_at: SystemTime,
}

impl Outcome {
    /// Whether it is a cancellation.
    pub fn cancelled(&self) -> bool {
        self.error
            .as_ref()
            .is_some_and(|e| e.1 == "RequestCancelled")
    }
}

/// Where a request is.
#[derive(Debug, Clone)]
pub enum Stage {
    /// Waiting for a worker.
    Queued,
    /// Being generated.
    Running,
    /// Finished, failed or cancelled.
    Completed(Outcome),
}

/// The input of a request that has not completed.
#[derive(Debug)]
pub struct Input {
    /// The validated input.
    pub request: FalRequest,
    /// The input as received (what is persisted).
    pub raw: Value,
    /// Whether its URLs are still being fetched (it does not start before).
    pub fetching: bool,
    /// What was fetched, once fetched.
    pub fetched: Option<Fetched>,
}

impl Input {
    /// A validated input as received; `fetching` when it has URLs to fetch.
    pub fn new(request: FalRequest, raw: Value) -> Self {
        let fetching = crate::input::needs_fetch(&request);
        Self {
            request,
            raw,
            fetching,
            fetched: None,
        }
    }
}

/// One request.
#[derive(Debug)]
pub struct Job {
    /// Its id (`request_id`).
    pub id: String,
    /// The id of the API key that submitted it (see `keys`), when keys are required.
    pub owner: Option<String>,
    /// The input, until the request completes.
    pub input: Option<Box<Input>>,
    /// Acceptance order (set by [`Jobs::submit`]).
    pub seq: u64,
    /// `sync_mode`: images come back as data URIs.
    pub inline_images: bool,
    /// Where to POST the result, if anywhere.
    pub webhook: Option<String>,
    /// Where it is.
    pub stage: Stage,
    /// Its log lines.
    pub logs: Vec<LogItem>,
    /// Set to stop it at the next step.
    pub cancel: Arc<AtomicBool>,
}

/// Where the log lines of a running request go (the in-process queue, or the shared one).
pub trait RequestLog: Send + Sync {
    /// Adds a log line to request `id`.
    fn log_line(&self, id: &str, level: &'static str, message: String);
}

impl RequestLog for Jobs {
    fn log_line(&self, id: &str, level: &'static str, message: String) {
        self.log(id, level, message);
    }
}

/// What a worker takes off the queue.
pub struct Work {
    /// The request id.
    pub id: String,
    /// The input.
    pub input: FalRequest,
    /// The fetched inputs, if it had URLs.
    pub fetched: Option<Fetched>,
    /// `sync_mode`.
    pub inline_images: bool,
    /// Set when the request is cancelled.
    pub cancel: Arc<AtomicBool>,
}

/// Why a request was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected {
    /// The queue holds `capacity` requests already.
    QueueFull {
        /// The queue's size.
        capacity: usize,
    },
    /// The server is shutting down.
    ShuttingDown,
    /// The request could not be written to disk.
    Storage(String),
}

/// What a cancel did.
#[derive(Debug, PartialEq, Eq)]
pub enum Cancelled {
    /// Asked to stop at the next step (it was running).
    Requested,
    /// Stopped before it started (it was queued).
    Dequeued,
    /// Already finished.
    AlreadyCompleted,
    /// No such request (for this key).
    NotFound,
}

struct Inner {
    jobs: HashMap<String, Job>,
    queue: VecDeque<String>,
    running: usize,
    closed: bool,
    /// Shutting down with persistence: no new request starts.
    draining: bool,
    suspended: bool,
    next_seq: u64,
}

impl Inner {
    /// The input of a queued request that may start (its URLs fetched).
    fn ready(&self, id: &str) -> Option<&FalRequest> {
        let input = self.jobs.get(id)?.input.as_ref()?;
        (!input.fetching).then_some(&input.request)
    }
}

/// Every request the server knows.
pub struct Jobs {
    inner: Mutex<Inner>,
    work_ready: Condvar,
    capacity: usize,
    changed: tokio::sync::Notify,
    store: Option<Store>,
}

/// The outcome of a cancelled request.
pub fn cancelled_outcome() -> Outcome {
    Outcome {
        status_code: 400,
        body: json!({"detail": "the request was cancelled"}),
        inference_time: 0.0,
        error: Some((
            "the request was cancelled".into(),
            "RequestCancelled".into(),
        )),
        finished_at: SystemTime::now(),
    }
}

impl Jobs {
    /// A store whose queue holds at most `capacity` waiting requests, persisted in `store`.
    pub fn new(capacity: usize, store: Option<Store>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                jobs: HashMap::new(),
                queue: VecDeque::new(),
                running: 0,
                closed: false,
                draining: false,
                suspended: false,
                next_seq: 0,
            }),
            work_ready: Condvar::new(),
            capacity,
            changed: tokio::sync::Notify::new(),
            store,
        }
    }

    /// The queued requests whose URLs are still to be fetched, with their inputs.
    pub fn to_fetch(&self) -> Vec<(String, FalRequest)> {
        let inner = self.lock();
        inner
            .queue
            .iter()
            .filter_map(|id| {
                let input = inner.jobs.get(id)?.input.as_ref()?;
                input.fetching.then(|| (id.clone(), input.request.clone()))
            })
            .collect()
    }

    /// Whether a request still waits for its URLs to be fetched.
    pub fn wants_fetch(&self, id: &str) -> bool {
        let inner = self.lock();
        inner
            .jobs
            .get(id)
            .and_then(|job| job.input.as_ref())
            .is_some_and(|input| input.fetching)
    }

    /// Hands a request what was fetched for it; it may start from now on.
    pub fn fetched(&self, id: &str, fetched: Fetched) {
        let mut inner = self.lock();
        if let Some(input) = inner.jobs.get_mut(id).and_then(|job| job.input.as_mut()) {
            input.fetching = false;
            input.fetched = Some(fetched);
        }
        drop(inner);
        self.work_ready.notify_all();
        self.touch();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes everyone waiting for a change.
    fn touch(&self) {
        self.changed.notify_waiters();
    }

    /// The notification of any change; create it before reading the state you wait on.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// Accepts a request into the queue; returns its position (0 = next).
    pub fn submit(&self, mut job: Job) -> Result<usize, Rejected> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(Rejected::ShuttingDown);
        }
        if inner.queue.len() >= self.capacity {
            return Err(Rejected::QueueFull {
                capacity: self.capacity,
            });
        }
        job.seq = inner.next_seq;
        inner.next_seq += 1;
        if let Some(store) = &self.store {
            store
                .save(&Self::record(&job))
                .map_err(|e| Rejected::Storage(e.to_string()))?;
        }
        let id = job.id.clone();
        inner.jobs.insert(id.clone(), job);
        inner.queue.push_back(id);
        let position = inner.queue.len() - 1;
        drop(inner);
        self.work_ready.notify_one();
        self.touch();
        Ok(position)
    }

    /// Blocks until there is work or the store is closed and drained; returns the first queued
    /// request that may start (its URLs fetched) and up to `max - 1` more such requests queued
    /// after it with the same `key`, all marked running.
    pub fn next_batch(&self, max: usize, key: &dyn Fn(&FalRequest) -> String) -> Option<Vec<Work>> {
        let mut inner = self.lock();
        loop {
            if inner.suspended || inner.draining {
                return None;
            }
            let first = inner.queue.iter().position(|id| inner.ready(id).is_some());
            if let Some(first) = first {
                let first = inner.queue.remove(first).expect("in range");
                let wanted = inner.ready(&first).map(key);
                let mut ids = vec![first];
                let mut i = 0;
                while ids.len() < max.max(1) && i < inner.queue.len() {
                    if wanted.is_some() && inner.ready(&inner.queue[i]).map(key) == wanted {
                        let id = inner.queue.remove(i).expect("in range");
                        ids.push(id);
                    } else {
                        i += 1;
                    }
                }
                let batch: Vec<Work> = ids
                    .into_iter()
                    .filter_map(|id| {
                        let job = inner.jobs.get_mut(&id)?;
                        let input = job.input.as_mut()?;
                        let work = Work {
                            id,
                            input: input.request.clone(),
                            fetched: input.fetched.take(),
                            inline_images: job.inline_images,
                            cancel: job.cancel.clone(),
                        };
                        job.stage = Stage::Running;
                        Some(work)
                    })
                    .collect();
                inner.running += batch.len();
                drop(inner);
                self.touch();
                return Some(batch);
            }
            if inner.closed && inner.queue.is_empty() {
                return None;
            }
            inner = self
                .work_ready
                .wait(inner)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Adds a log line to a request.
    pub fn log(&self, id: &str, level: &'static str, message: String) {
        if let Some(job) = self.lock().jobs.get_mut(id) {
            job.logs.push(LogItem {
                message,
                level,
                at: SystemTime::now(),
            });
        }
        self.touch();
    }

    /// Records how a running request ended (see [`Jobs::settle`]), calling `counted` with the
    /// outcome recorded before anyone can see it; returns that outcome and the webhook, or
    /// `None` when a shutdown that keeps the request interrupted it.
    pub fn complete(
        &self,
        id: &str,
        outcome: Outcome,
        counted: impl FnOnce(&Outcome),
    ) -> Option<(Outcome, Option<String>)> {
        let mut inner = self.lock();
        inner.running = inner.running.saturating_sub(1);
        if inner.suspended {
            // Interrupted by a shutdown that keeps it: on disk it is still waiting to run.
            return None;
        }
        let job = inner.jobs.get_mut(id)?;
        let webhook = job.webhook.clone();
        let recorded = self.settle(job, outcome);
        counted(&recorded);
        drop(inner);
        self.touch();
        Some((recorded, webhook))
    }

    /// Cancels a request visible to `key`.
    pub fn cancel(&self, id: &str, key: Option<&str>) -> Cancelled {
        let mut inner = self.lock();
        let Some(job) = inner.jobs.get_mut(id).filter(|j| visible(j, key)) else {
            return Cancelled::NotFound;
        };
        let result = match job.stage {
            Stage::Completed(_) => Cancelled::AlreadyCompleted,
            Stage::Running => {
                job.cancel.store(true, Ordering::SeqCst);
                Cancelled::Requested
            }
            Stage::Queued => {
                job.cancel.store(true, Ordering::SeqCst);
                job.logs.push(LogItem {
                    message: "cancelled before it started".into(),
                    level: "INFO",
                    at: SystemTime::now(),
                });
                self.settle(job, cancelled_outcome());
                inner.queue.retain(|q| q != id);
                Cancelled::Dequeued
            }
        };
        drop(inner);
        self.touch();
        result
    }

    /// The status JSON of a request visible to `key` and whether it is completed.
    pub fn status(&self, id: &str, key: Option<&str>, logs: bool) -> Option<(Value, bool)> {
        let inner = self.lock();
        let job = inner.jobs.get(id).filter(|j| visible(j, key))?;
        let log_json = || {
            if logs {
                Value::Array(job.logs.iter().map(LogItem::to_json).collect())
            } else {
                Value::Null
            }
        };
        let position = match &job.stage {
            Stage::Queued => inner.queue.iter().position(|q| q == id).unwrap_or(0),
            _ => 0,
        };
        Some(status_json(&job.stage, position, log_json()))
    }

    /// The outcome of a completed request visible to `key`: `Some(None)` while it is not done.
    pub fn outcome(&self, id: &str, key: Option<&str>) -> Option<Option<Outcome>> {
        let inner = self.lock();
        let job = inner.jobs.get(id).filter(|j| visible(j, key))?;
        Some(match &job.stage {
            Stage::Completed(outcome) => Some(outcome.clone()),
            _ => None,
        })
    }

    /// (waiting, running) counts.
    pub fn depth(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.queue.len(), inner.running)
    }

    /// Cancels every queued and running request.
    pub fn cancel_all(&self) {
        let ids: Vec<String> = self.lock().jobs.keys().cloned().collect();
        for id in ids {
            let owner = self.lock().jobs.get(&id).and_then(|j| j.owner.clone());
            self.cancel(&id, owner.as_deref());
        }
    }

    /// Forgets completed requests that finished more than `retention` ago (memory and disk);
    /// returns how many.
    pub fn sweep(&self, retention: std::time::Duration) -> usize {
        let now = SystemTime::now();
        let mut inner = self.lock();
        let old: Vec<String> = inner
            .jobs
            .values()
            .filter(|job| match &job.stage {
                Stage::Completed(outcome) => now
                    .duration_since(outcome.finished_at)
                    .is_ok_and(|age| age > retention),
                _ => false,
            })
            .map(|job| job.id.clone())
            .collect();
        for id in &old {
            inner.jobs.remove(id);
            if let Some(store) = &self.store
                && let Err(e) = store.remove(id)
            {
                tracing::warn!(request_id = %id, "cannot remove an expired request: {e}");
            }
        }
        old.len()
    }

    /// Stops accepting requests and interrupts the running ones without recording them, so that
    /// every unfinished request stays queued on disk for the next start.
    pub fn suspend(&self) {
        let mut inner = self.lock();
        inner.suspended = true;
        inner.closed = true;
        for job in inner.jobs.values() {
            if matches!(job.stage, Stage::Running) {
                job.cancel.store(true, Ordering::SeqCst);
            }
        }
        drop(inner);
        self.work_ready.notify_all();
        self.touch();
    }

    /// Stops accepting requests; with `keep_queued`, no queued request starts any more (they
    /// stay on disk for the next start) while the running ones finish.
    pub fn drain(&self, keep_queued: bool) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.draining |= keep_queued;
        drop(inner);
        self.work_ready.notify_all();
        self.touch();
    }

    /// Stops accepting requests and lets workers exit once the queue is empty.
    pub fn close(&self) {
        self.lock().closed = true;
        self.work_ready.notify_all();
        self.touch();
    }
}

/// fal's status of a request at `stage` (queue `position` when queued) with its `logs` (null
/// when not asked for), and whether it is completed.
pub fn status_json(stage: &Stage, position: usize, logs: Value) -> (Value, bool) {
    match stage {
        Stage::Queued => (
            json!({"status": "IN_QUEUE", "queue_position": position, "logs": logs}),
            false,
        ),
        Stage::Running => (json!({"status": "IN_PROGRESS", "logs": logs}), false),
        Stage::Completed(outcome) => {
            let mut status = json!({
                "status": "COMPLETED",
                "logs": logs,
                "metrics": {"inference_time": outcome.inference_time},
            });
            if let Some((message, kind)) = &outcome.error {
                status["error"] = json!(message);
                status["error_type"] = json!(kind);
            }
            (status, true)
        }
    }
}

/// With keys, a request is visible only to the key that submitted it.
fn visible(job: &Job, key: Option<&str>) -> bool {
    match (&job.owner, key) {
        (None, _) => true,
        (Some(owner), Some(key)) => owner == key,
        (Some(_), None) => false,
    }
}
