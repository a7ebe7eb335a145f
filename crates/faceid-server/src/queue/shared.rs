//! An API node's view of the queue shared through Redis (`redis_queue`): every call runs on the
//! blocking pool (at most `CALLS` at once per node), and a thread follows the queue's events so
//! that waiting clients and status streams wake on changes made by any node or worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, Semaphore};

use super::{Changed, Submission, Unavailable};
use crate::jobs::{Cancelled, Outcome, Rejected};
use crate::redis_queue::{NewRequest, QueueError, RedisQueue, SharedStats};

/// Most Redis calls under way at once on one API node.
const CALLS: usize = 32;
/// How often waiters look again without an event (events are lost while Redis reconnects).
const RECHECK: Duration = Duration::from_secs(2);

/// The shared queue, seen from an API node.
pub struct Shared {
    redis: Arc<RedisQueue>,
    events: Arc<Notify>,
    slots: Semaphore,
    /// Set at shutdown: no new requests.
    closed: AtomicBool,
    /// Stops the events thread.
    stop: Arc<AtomicBool>,
}

impl Shared {
    /// Follows the events of `redis` from now on.
    pub fn new(redis: Arc<RedisQueue>) -> Self {
        let events = Arc::new(Notify::new());
        let stop = Arc::new(AtomicBool::new(false));
        let (watched, notify, stopping) = (redis.clone(), events.clone(), stop.clone());
        std::thread::Builder::new()
            .name("faceid-queue-events".into())
            .spawn(move || watched.watch(&stopping, &|_| notify.notify_waiters()))
            .expect("spawn the queue events thread");
        Self {
            redis,
            events,
            slots: Semaphore::new(CALLS),
            closed: AtomicBool::new(false),
            stop,
        }
    }

    /// Takes no new requests (503) from now on.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    async fn call<T: Send + 'static>(
        &self,
        call: impl FnOnce(&RedisQueue) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, Unavailable> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| Unavailable("the server is shutting down".into()))?;
        let redis = self.redis.clone();
        match tokio::task::spawn_blocking(move || call(&redis)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Unavailable(format!("the shared queue cannot be used: {e}"))),
            Err(e) => Err(Unavailable(format!("the shared queue call failed: {e}"))),
        }
    }

    pub(super) async fn submit(&self, id: &str, submission: Submission) -> Result<usize, Rejected> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Rejected::ShuttingDown);
        }
        let request = NewRequest {
            id: id.to_string(),
            owner: submission.owner,
            input: submission.raw,
            inline_images: submission.inline_images,
            webhook: submission.webhook,
        };
        let capacity = self.redis.settings().capacity;
        match self.call(move |redis| redis.submit(&request)).await {
            Ok(Some(position)) => Ok(position),
            Ok(None) => Err(Rejected::QueueFull { capacity }),
            Err(Unavailable(reason)) => Err(Rejected::Storage(reason)),
        }
    }

    pub(super) async fn status(
        &self,
        id: &str,
        key: Option<&str>,
        logs: bool,
    ) -> Result<Option<(Value, bool)>, Unavailable> {
        let (id, key) = (id.to_string(), key.map(str::to_string));
        self.call(move |redis| redis.status(&id, key.as_deref(), logs))
            .await
    }

    pub(super) async fn outcome(
        &self,
        id: &str,
        key: Option<&str>,
    ) -> Result<Option<Option<Outcome>>, Unavailable> {
        let (id, key) = (id.to_string(), key.map(str::to_string));
        self.call(move |redis| redis.outcome(&id, key.as_deref()))
            .await
    }

    pub(super) async fn cancel(
        &self,
        id: &str,
        key: Option<&str>,
    ) -> Result<Cancelled, Unavailable> {
        let (id, key) = (id.to_string(), key.map(str::to_string));
        self.call(move |redis| redis.cancel(&id, key.as_deref()))
            .await
    }

    pub(super) fn changed(&self) -> Changed<'_> {
        Changed {
            notified: self.events.notified(),
            recheck: Some(RECHECK),
        }
    }

    pub(super) async fn depth(&self) -> Result<(usize, usize), Unavailable> {
        self.call(RedisQueue::depth).await
    }

    pub(super) async fn file(&self, name: &str) -> Result<Option<Vec<u8>>, Unavailable> {
        let name = name.to_string();
        self.call(move |redis| redis.file(&name)).await
    }

    pub(super) async fn problem(&self) -> Option<String> {
        self.call(RedisQueue::ping).await.err().map(|e| e.0)
    }

    pub(super) async fn stats(&self) -> Result<SharedStats, Unavailable> {
        self.call(RedisQueue::stats).await
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
