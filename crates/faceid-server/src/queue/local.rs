//! The queue of one process: `jobs::Jobs` in memory (and in the data folder), URLs fetched by
//! the `prefetch::Prefetcher`, run by this process's worker threads.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::Submission;
use crate::jobs::{Cancelled, Input, Job, Jobs, Rejected, Stage};
use crate::metrics::Metrics;
use crate::output::Files;
use crate::prefetch::Prefetcher;

/// The in-process queue.
pub struct Local {
    /// The requests.
    pub jobs: Arc<Jobs>,
    /// Fetches the URLs of accepted requests.
    pub prefetcher: Arc<Prefetcher>,
    /// Counters (a queued request cancelled is counted here; the workers count the rest).
    pub metrics: Arc<Metrics>,
}

impl Local {
    pub(super) fn submit(&self, id: &str, submission: Submission) -> Result<usize, Rejected> {
        let Submission {
            owner,
            input,
            raw,
            inline_images,
            webhook,
        } = submission;
        let fetch = crate::input::needs_fetch(&input).then(|| input.clone());
        let job = Job {
            id: id.to_string(),
            owner,
            input: Some(Box::new(Input::new(input, raw))),
            seq: 0,
            inline_images,
            webhook,
            stage: Stage::Queued,
            logs: Vec::new(),
            cancel: Arc::new(AtomicBool::new(false)),
        };
        let position = self.jobs.submit(job)?;
        if let Some(input) = fetch {
            self.prefetcher.schedule(id.to_string(), input);
        }
        Ok(position)
    }

    /// Cancels a request, counting a queued one as finished (cancelled) at once; a running one
    /// is counted when it stops.
    pub(super) fn cancel(&self, id: &str, key: Option<&str>) -> Cancelled {
        let cancelled = self.jobs.cancel(id, key);
        if cancelled == Cancelled::Dequeued {
            self.metrics.finished(None, 0.0);
        }
        cancelled
    }

    /// Whether the data folder or the results folder cannot be written.
    pub(super) async fn problem(&self, files: &Arc<Files>) -> Option<String> {
        let (jobs, files) = (self.jobs.clone(), files.clone());
        tokio::task::spawn_blocking(move || {
            let data = jobs.probe_storage().and_then(Result::err);
            data.or_else(|| files.probe().err())
        })
        .await
        .unwrap_or_else(|e| Some(format!("the storage check failed: {e}")))
    }
}
