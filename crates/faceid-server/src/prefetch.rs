//! Fetching the http(s) URLs of requests before they reach the workers: a task on the async
//! runtime per request, at most `FetchPolicy::concurrency` fetching at once, so a slow URL delays
//! only its own request. A request waits in the queue, without holding a worker, until its
//! URLs are fetched.

use std::sync::Arc;

use faceid_fal::FalRequest;
use tokio::sync::Semaphore;

use crate::input::{FetchPolicy, Fetched, fetch_urls};
use crate::jobs::Jobs;

/// Schedules the fetches.
pub struct Prefetcher {
    jobs: Arc<Jobs>,
    policy: FetchPolicy,
    slots: Arc<Semaphore>,
    runtime: tokio::runtime::Handle,
}

impl Prefetcher {
    /// Fetches for `jobs` under `policy`, on `runtime`.
    pub fn new(jobs: Arc<Jobs>, policy: FetchPolicy, runtime: tokio::runtime::Handle) -> Self {
        let slots = Arc::new(Semaphore::new(policy.concurrency.max(1)));
        Self {
            jobs,
            policy,
            slots,
            runtime,
        }
    }

    /// Fetches the URLs of request `id` and hands them to it.
    pub fn schedule(&self, id: String, input: FalRequest) {
        let (jobs, policy, slots) = (self.jobs.clone(), self.policy.clone(), self.slots.clone());
        self.runtime.spawn(async move {
            let Ok(_permit) = slots.acquire_owned().await else {
                return;
            };
            if !jobs.wants_fetch(&id) {
                // Cancelled while waiting.
                return;
            }
            let fetched = tokio::task::spawn_blocking(move || fetch_urls(&input, &policy))
                .await
                // The worker fetches what could not be fetched here.
                .unwrap_or_else(|_| Fetched::default());
            jobs.fetched(&id, fetched);
        });
    }
}
