//! The one queue interface the routes speak to, with two implementations: `local` (this
//! process holds the queue, and its worker threads run the requests) and `shared` (an API node:
//! the queue lives in Redis, and `faceid worker` processes elsewhere run the requests). Routes
//! do not know which one runs.

mod local;
mod shared;

use std::time::Duration;

use faceid_fal::FalRequest;
use serde_json::Value;

pub use local::Local;
pub use shared::Shared;

use crate::jobs::{Cancelled, Outcome, Rejected};
use crate::output::Files;
use crate::redis_queue::SharedStats;

/// A request to accept.
pub struct Submission {
    /// The id of the key that sent it, when keys are required.
    pub owner: Option<String>,
    /// The validated input.
    pub input: FalRequest,
    /// The input as received (what is stored).
    pub raw: Value,
    /// `sync_mode`: images come back as data URIs.
    pub inline_images: bool,
    /// Where to POST the result.
    pub webhook: Option<String>,
}

/// The queue could not be read or written (the shared queue's Redis is unreachable): the
/// reason, for a 503.
#[derive(Debug)]
pub struct Unavailable(pub String);

/// Where requests wait, and where their status and results are read.
pub enum Queue {
    /// In this process.
    Local(Local),
    /// In Redis, shared by API nodes and workers.
    Shared(Shared),
}

/// A wait for the next change of any request.
pub struct Changed<'a> {
    notified: tokio::sync::futures::Notified<'a>,
    /// Wake up after this long anyway (changes may be missed while Redis reconnects).
    recheck: Option<Duration>,
}

impl Changed<'_> {
    /// Returns at the next change (or recheck).
    pub async fn wait(self) {
        match self.recheck {
            Some(after) => {
                let _ = tokio::time::timeout(after, self.notified).await;
            }
            None => self.notified.await,
        }
    }
}

impl Queue {
    /// Accepts request `id`; returns its queue position (0 = next).
    pub async fn submit(&self, id: &str, submission: Submission) -> Result<usize, Rejected> {
        match self {
            Self::Local(local) => local.submit(id, submission),
            Self::Shared(shared) => shared.submit(id, submission).await,
        }
    }

    /// fal's status JSON of a request visible to `key` (with its logs when asked for), and
    /// whether it is completed; `None` when there is no such request for this key.
    pub async fn status(
        &self,
        id: &str,
        key: Option<&str>,
        logs: bool,
    ) -> Result<Option<(Value, bool)>, Unavailable> {
        match self {
            Self::Local(local) => Ok(local.jobs.status(id, key, logs)),
            Self::Shared(shared) => shared.status(id, key, logs).await,
        }
    }

    /// The outcome of a request visible to `key`: `Some(None)` while it is not completed.
    pub async fn outcome(
        &self,
        id: &str,
        key: Option<&str>,
    ) -> Result<Option<Option<Outcome>>, Unavailable> {
        match self {
            Self::Local(local) => Ok(local.jobs.outcome(id, key)),
            Self::Shared(shared) => shared.outcome(id, key).await,
        }
    }

    /// Cancels a request visible to `key`: a queued one never runs, a running one stops at its
    /// next step.
    pub async fn cancel(&self, id: &str, key: Option<&str>) -> Result<Cancelled, Unavailable> {
        match self {
            Self::Local(local) => Ok(local.cancel(id, key)),
            Self::Shared(shared) => shared.cancel(id, key).await,
        }
    }

    /// The next change of any request; create it before reading the state you wait on.
    pub fn changed(&self) -> Changed<'_> {
        match self {
            Self::Local(local) => Changed {
                notified: local.jobs.changed(),
                recheck: None,
            },
            Self::Shared(shared) => shared.changed(),
        }
    }

    /// (waiting, running) requests: of this process, or of every node of the shared queue.
    pub async fn depth(&self) -> Result<(usize, usize), Unavailable> {
        match self {
            Self::Local(local) => Ok(local.jobs.depth()),
            Self::Shared(shared) => shared.depth().await,
        }
    }

    /// The bytes of result file `name`; `None` when there is no such file (or it expired).
    pub async fn file(&self, files: &Files, name: &str) -> Result<Option<Vec<u8>>, Unavailable> {
        let Some(path) = files.path(name) else {
            return Ok(None);
        };
        match self {
            Self::Local(_) => Ok(tokio::fs::read(&path).await.ok()),
            Self::Shared(shared) => shared.file(name).await,
        }
    }

    /// Why the queue cannot take requests now, if it cannot: a folder that cannot be written,
    /// or Redis out of reach.
    pub async fn problem(&self, files: &std::sync::Arc<Files>) -> Option<String> {
        match self {
            Self::Local(local) => local.problem(files).await,
            Self::Shared(shared) => shared.problem().await,
        }
    }

    /// The counts every node of a shared queue sees (none for a local queue).
    pub async fn shared_stats(&self) -> Option<SharedStats> {
        match self {
            Self::Local(_) => None,
            Self::Shared(shared) => shared.stats().await.ok(),
        }
    }
}
