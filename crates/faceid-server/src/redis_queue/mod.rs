//! The queue shared by API nodes and workers on several machines: Redis Streams with a
//! consumer group, and Lua scripts (`scripts`) that move a request from stage to stage
//! atomically.
//!
//! - Accepted = written to Redis: [`RedisQueue::submit`] returns once the request, its queue
//!   entry and its place in the order are stored (with `appendfsync always`, on disk), or -1
//!   when the queue holds `capacity` waiting requests across every node.
//! - A worker takes requests with the consumer group ([`RedisQueue::claim`]); while one runs,
//!   [`RedisQueue::heartbeat`] keeps its claim fresh. A request whose worker stopped beating
//!   for `visibility` is reclaimed by another worker (`XAUTOCLAIM`) and run again; past
//!   `max_deliveries` it is handed back as [`Start::Exhausted`] for the worker to complete as
//!   failed, so a request that kills its workers does not go round for ever.
//! - [`RedisQueue::complete`] writes the outcome, the stage and the acknowledgement in one
//!   script and returns `true` only to the first caller, so a reclaimed request that its first
//!   worker also finishes is completed (and its webhook sent) once.
//! - Cancel from any node: a queued request is completed as cancelled at once; a running one is
//!   flagged, and its worker learns it with the next log line (one per step).
//! - Completed requests and their logs expire after `retention`.
//!
//! Files: `scripts` (the Lua scripts), `pool` (connections that outlive Redis restarts), `claims`
//! (claiming, starting and keeping requests on a worker), `node`
//! (what every node shares: counts, the key salt, change events), `worker` (the worker loop).

mod claims;
mod node;
mod pool;
mod scripts;
pub mod worker;

pub use claims::{Claim, Start};
pub use node::SharedStats;
pub use pool::redacted;

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Commands;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::jobs::{Cancelled, LogItem, Outcome, Stage, cancelled_outcome, status_json};

/// The consumer group of the workers.
const GROUP: &str = "workers";

/// How the shared queue behaves.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// The prefix of every key (one Redis database can hold several queues).
    pub prefix: String,
    /// Most requests waiting, across every API node.
    pub capacity: usize,
    /// How long a running request's worker may stay silent before another worker takes it.
    pub visibility: Duration,
    /// Deliveries after which a request is completed as failed instead of run again.
    pub max_deliveries: u32,
    /// How long completed requests and their logs are kept.
    pub retention: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            prefix: "faceid".into(),
            capacity: 64,
            visibility: Duration::from_secs(60),
            max_deliveries: 3,
            retention: Duration::from_secs(3600),
        }
    }
}

/// Why the shared queue failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis could not be reached or answered with an error.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A stored value is not what this version writes.
    #[error("redis holds an unreadable {what} for request {id}: {reason}")]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// The request.
        id: String,
        /// Why it cannot be read.
        reason: String,
    },
}

/// A request accepted into the shared queue.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// Its id.
    pub id: String,
    /// The id of the key that submitted it, when keys are required.
    pub owner: Option<String>,
    /// The input as received.
    pub input: Value,
    /// `sync_mode`.
    pub inline_images: bool,
    /// Where to POST the result.
    pub webhook: Option<String>,
}

/// An outcome as stored in Redis.
#[derive(Serialize, Deserialize)]
struct StoredOutcome {
    status_code: u16,
    body: Value,
    inference_time: f64,
    error: Option<(String, String)>,
    finished_at_ms: u64,
}

impl From<&Outcome> for StoredOutcome {
    fn from(o: &Outcome) -> Self {
        Self {
            status_code: o.status_code,
            body: o.body.clone(),
            inference_time: o.inference_time,
            error: o.error.clone(),
            finished_at_ms: millis(o.finished_at),
        }
    }
}

impl From<StoredOutcome> for Outcome {
    fn from(o: StoredOutcome) -> Self {
        Self {
            status_code: o.status_code,
            body: o.body,
            inference_time: o.inference_time,
            error: o.error,
            finished_at: UNIX_EPOCH + Duration::from_millis(o.finished_at_ms),
        }
    }
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The shared queue, as one node sees it. Commands run on a pool of connections that outlives
/// Redis restarts (`pool`).
pub struct RedisQueue {
    settings: QueueSettings,
    pool: pool::Pool,
    scripts: scripts::Compiled,
    /// The connection of blocking stream reads (a worker's own).
    reader: Mutex<Option<redis::Connection>>,
}

impl RedisQueue {
    /// Connects to `url` (`redis://[:password@]host:port/db`, `rediss://` for TLS) and makes
    /// sure the stream and the workers' group exist.
    pub fn open(url: &str, settings: QueueSettings) -> Result<Self, QueueError> {
        let this = Self {
            settings,
            pool: pool::Pool::open(url)?,
            scripts: scripts::Compiled::new(),
            reader: Mutex::new(None),
        };
        this.ensure_group()?;
        Ok(this)
    }

    /// Creates the stream and the workers' group unless they exist (again after Redis lost
    /// them, e.g. restarted without persistence).
    fn ensure_group(&self) -> Result<(), QueueError> {
        let stream = self.key("stream");
        let created: Result<(), QueueError> = self.with(|conn| {
            redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&stream)
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query(conn)
        });
        match created {
            Err(QueueError::Redis(e)) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// Runs `command` on a pooled connection (see [`pool::Pool::with`]).
    fn with<T>(
        &self,
        command: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, QueueError> {
        Ok(self.pool.with(command)?)
    }

    /// The settings.
    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    fn key(&self, name: &str) -> String {
        key(&self.settings, name)
    }

    fn req(&self, id: &str) -> String {
        self.key(&format!("req:{id}"))
    }

    fn logs(&self, id: &str) -> String {
        self.key(&format!("logs:{id}"))
    }

    /// Whether Redis answers.
    pub fn ping(&self) -> Result<(), QueueError> {
        self.with(|c| redis::cmd("PING").query::<()>(c))
    }

    /// Accepts a request; returns its queue position, or `None` when the queue is full.
    pub fn submit(&self, request: &NewRequest) -> Result<Option<usize>, QueueError> {
        let position: i64 = self.with(|c| {
            self.scripts
                .submit
                .key(self.key("waiting"))
                .key(self.key("seq"))
                .key(self.req(&request.id))
                .key(self.key("stream"))
                .arg(self.settings.capacity)
                .arg(&request.id)
                .arg(request.owner.as_deref().unwrap_or(""))
                .arg(request.input.to_string())
                .arg(u8::from(request.inline_images))
                .arg(request.webhook.as_deref().unwrap_or(""))
                .arg(self.key("events"))
                .invoke(c)
        })?;
        Ok((position >= 0).then_some(position as usize))
    }

    /// Adds a log line to a running request; returns whether it was asked to stop.
    pub fn log(&self, id: &str, level: &'static str, message: String) -> Result<bool, QueueError> {
        self.add_line(id, level, message, false)
    }

    /// Adds a log line to a request that may have completed (what happened after: webhook
    /// deliveries); it expires with the request.
    pub fn note(&self, id: &str, level: &'static str, message: String) -> Result<(), QueueError> {
        self.add_line(id, level, message, true).map(|_| ())
    }

    fn add_line(
        &self,
        id: &str,
        level: &'static str,
        message: String,
        after: bool,
    ) -> Result<bool, QueueError> {
        let line = LogItem {
            message,
            level,
            at: SystemTime::now(),
        }
        .to_json();
        let cancel: i64 = self.with(|c| {
            self.scripts
                .log
                .key(self.req(id))
                .key(self.logs(id))
                .arg(line.to_string())
                .arg(self.key("events"))
                .arg(id)
                .arg(u8::from(after))
                .invoke(c)
        })?;
        Ok(cancel == 1)
    }

    /// Completes a request with `outcome` and acknowledges its entry (`entry`: none for a
    /// request never claimed); returns `true` only for the first completion.
    pub fn complete(
        &self,
        id: &str,
        entry: Option<&str>,
        outcome: &Outcome,
    ) -> Result<bool, QueueError> {
        let stored =
            serde_json::to_string(&StoredOutcome::from(outcome)).expect("an outcome serializes");
        let token = uuid::Uuid::new_v4().to_string();
        let first: i64 = self.with(|c| {
            self.scripts
                .complete
                .key(self.req(id))
                .key(self.key("running"))
                .key(self.logs(id))
                .key(self.key("stream"))
                .key(self.key("stats"))
                .arg(id)
                .arg(&stored)
                .arg(self.settings.retention.as_millis() as u64)
                .arg(GROUP)
                .arg(entry.unwrap_or(""))
                .arg(self.key("events"))
                .arg(match outcome.status_code {
                    _ if outcome.cancelled() => "cancelled",
                    200 => "succeeded",
                    _ => "failed",
                })
                .arg(&token)
                .invoke(c)
        })?;
        Ok(first == 1)
    }

    /// Cancels a request visible to `key`.
    pub fn cancel(&self, id: &str, key: Option<&str>) -> Result<Cancelled, QueueError> {
        let outcome = serde_json::to_string(&StoredOutcome::from(&cancelled_outcome()))
            .expect("an outcome serializes");
        let line = LogItem {
            message: "cancelled before it started".into(),
            level: "INFO",
            at: SystemTime::now(),
        }
        .to_json();
        let token = uuid::Uuid::new_v4().to_string();
        let answer: String = self.with(|c| {
            self.scripts
                .cancel
                .key(self.req(id))
                .key(self.key("waiting"))
                .key(self.logs(id))
                .key(self.key("stats"))
                .arg(id)
                .arg(key.unwrap_or(""))
                .arg(&outcome)
                .arg(self.settings.retention.as_millis() as u64)
                .arg(line.to_string())
                .arg(self.key("events"))
                .arg(&token)
                .invoke(c)
        })?;
        Ok(match answer.as_str() {
            "requested" => Cancelled::Requested,
            "dequeued" => Cancelled::Dequeued,
            "already_completed" => Cancelled::AlreadyCompleted,
            _ => Cancelled::NotFound,
        })
    }

    /// The stage of a request visible to `key`, its queue position, and its log lines when
    /// asked for (`None`: no such request for this key).
    fn read(
        &self,
        id: &str,
        key: Option<&str>,
        logs: bool,
    ) -> Result<Option<(Stage, usize, Vec<Value>)>, QueueError> {
        let reply: Vec<String> = self.with(|c| {
            self.scripts
                .status
                .key(self.req(id))
                .key(self.key("waiting"))
                .key(self.logs(id))
                .arg(id)
                .arg(key.unwrap_or(""))
                .arg(u8::from(logs))
                .invoke(c)
        })?;
        let Some((stage, rest)) = reply.split_first() else {
            return Ok(None);
        };
        let corrupt = |what: &'static str, reason: String| QueueError::Corrupt {
            what,
            id: id.to_string(),
            reason,
        };
        let position = rest
            .first()
            .and_then(|p| p.parse::<i64>().ok())
            .unwrap_or(0);
        let stage = match stage.as_str() {
            "queued" => Stage::Queued,
            "running" => Stage::Running,
            _ => {
                let stored: StoredOutcome = serde_json::from_str(rest.get(1).map_or("", |s| s))
                    .map_err(|e| corrupt("outcome", e.to_string()))?;
                Stage::Completed(stored.into())
            }
        };
        let lines = rest
            .iter()
            .skip(2)
            .map(|l| serde_json::from_str(l).map_err(|e| corrupt("log line", e.to_string())))
            .collect::<Result<_, _>>()?;
        Ok(Some((stage, position.max(0) as usize, lines)))
    }

    /// fal's status JSON of a request visible to `key`, and whether it is completed.
    pub fn status(
        &self,
        id: &str,
        key: Option<&str>,
        logs: bool,
    ) -> Result<Option<(Value, bool)>, QueueError> {
        Ok(self.read(id, key, logs)?.map(|(stage, position, lines)| {
            let logs = if logs {
                Value::Array(lines)
            } else {
                Value::Null
            };
            status_json(&stage, position, logs)
        }))
    }

    /// The outcome of a request visible to `key`: `Some(None)` while it is not completed.
    pub fn outcome(
        &self,
        id: &str,
        key: Option<&str>,
    ) -> Result<Option<Option<Outcome>>, QueueError> {
        Ok(self.read(id, key, false)?.map(|(stage, _, _)| match stage {
            Stage::Completed(outcome) => Some(outcome),
            _ => None,
        }))
    }

    /// Keeps a result file for the retention time.
    pub fn put_file(&self, name: &str, bytes: &[u8]) -> Result<(), QueueError> {
        let ttl = self.settings.retention.as_millis() as u64;
        let key = self.key(&format!("file:{name}"));
        self.with(|c| c.pset_ex::<_, _, ()>(&key, bytes, ttl))
    }

    /// A result file, while it is kept.
    pub fn file(&self, name: &str) -> Result<Option<Vec<u8>>, QueueError> {
        let key = self.key(&format!("file:{name}"));
        self.with(|c| c.get(&key))
    }

    /// (waiting, running) across every node.
    pub fn depth(&self) -> Result<(usize, usize), QueueError> {
        let (waiting, running) = (self.key("waiting"), self.key("running"));
        self.with(|c| {
            redis::pipe()
                .zcard(&waiting)
                .zcard(&running)
                .query::<(usize, usize)>(c)
        })
    }
}

fn key(settings: &QueueSettings, name: &str) -> String {
    format!("{}:{name}", settings.prefix)
}
