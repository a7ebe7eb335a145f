//! Persistence of requests: each job's record in the store, completions saved before they are
//! reported (or reported as failed to persist), and the requests brought back at start.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::SystemTime;

use faceid_fal::FalRequest;
use serde_json::{Value, json};

use crate::keys::Keys;
use crate::store::Record;

use super::{Input, Job, Jobs, LogItem, Outcome, Stage, cancelled_outcome};

/// The outcome reported when a completion could not be saved.
fn unsaved_outcome(error: &std::io::Error) -> Outcome {
    let message = format!("the result could not be saved, so it is not kept: {error}");
    Outcome {
        status_code: 500,
        body: json!({ "detail": message }),
        inference_time: 0.0,
        error: Some((message, "PersistError".into())),
        finished_at: SystemTime::now(),
    }
}

impl Jobs {
    pub(super) fn record(job: &Job) -> Record {
        Record {
            id: job.id.clone(),
            seq: job.seq,
            owner: job.owner.clone(),
            legacy_owner: None,
            input: job
                .input
                .as_ref()
                .map_or(Value::Null, |input| input.raw.clone()),
            inline_images: job.inline_images,
            webhook: job.webhook.clone(),
            outcome: match &job.stage {
                Stage::Completed(outcome) => Some(outcome.clone()),
                _ => None,
            },
            logs: job.logs.clone(),
        }
    }

    /// Writes a job's record, if persistence is on.
    pub(super) fn persist(&self, job: &Job) {
        if let Some(store) = &self.store {
            if let Err(e) = store.save(&Self::record(job)) {
                tracing::error!(request_id = %job.id, "cannot persist the request: {e}");
            }
        }
    }

    /// Completes a job with `outcome`, durably first when persistence is on; its input is
    /// dropped. When the completion cannot be saved, the job completes as failed to persist
    /// (500, `PersistError`), saved as such if possible, else its record is removed so that it
    /// does not run again after a restart. Returns the outcome recorded.
    pub(super) fn settle(&self, job: &mut Job, outcome: Outcome) -> Outcome {
        job.input = None;
        job.stage = Stage::Completed(outcome);
        let Some(store) = &self.store else {
            return Self::outcome_of(job);
        };
        let Err(e) = store.save(&Self::record(job)) else {
            return Self::outcome_of(job);
        };
        tracing::error!(request_id = %job.id, "cannot save the completion of a request: {e}");
        job.stage = Stage::Completed(unsaved_outcome(&e));
        job.logs.push(LogItem {
            message: format!("the result could not be saved: {e}"),
            level: "ERROR",
            at: SystemTime::now(),
        });
        if store.save(&Self::record(job)).is_err()
            && let Err(e) = store.remove(&job.id)
        {
            tracing::error!(request_id = %job.id, "cannot remove the record of a request that failed to persist; it will run again after a restart: {e}");
        }
        Self::outcome_of(job)
    }

    fn outcome_of(job: &Job) -> Outcome {
        match &job.stage {
            Stage::Completed(outcome) => outcome.clone(),
            _ => cancelled_outcome(),
        }
    }

    /// Brings back the persisted requests: completed ones with their results, the others
    /// queued again in acceptance order; owners stored as plain keys by an earlier version are
    /// replaced by their ids. Returns (completed, requeued).
    pub fn restore(&self, keys: &Keys) -> (usize, usize) {
        let Some(store) = &self.store else {
            return (0, 0);
        };
        let records = store.load();
        let mut inner = self.lock();
        let (mut completed, mut requeued) = (0, 0);
        for record in records {
            inner.next_seq = inner.next_seq.max(record.seq + 1);
            let done = record.outcome.is_some();
            let input = if done {
                None
            } else {
                match FalRequest::from_json(&record.input) {
                    Ok(request) => Some(Box::new(Input::new(request, record.input))),
                    Err(errors) => {
                        tracing::error!(request_id = %record.id, ?errors, "a stored request no longer validates");
                        continue;
                    }
                }
            };
            let legacy = record.legacy_owner.is_some();
            let owner = record
                .owner
                .or_else(|| record.legacy_owner.map(|key| keys.owner_id(&key)));
            let job = Job {
                id: record.id.clone(),
                owner,
                input,
                seq: record.seq,
                inline_images: record.inline_images,
                webhook: record.webhook,
                stage: record.outcome.map_or(Stage::Queued, Stage::Completed),
                logs: record.logs,
                cancel: Arc::new(AtomicBool::new(false)),
            };
            if legacy {
                self.persist(&job);
            }
            if done {
                completed += 1;
            } else {
                requeued += 1;
                inner.queue.push_back(record.id.clone());
            }
            inner.jobs.insert(record.id, job);
        }
        drop(inner);
        self.work_ready.notify_all();
        self.touch();
        (completed, requeued)
    }

    /// Whether requests survive a restart.
    pub fn persistent(&self) -> bool {
        self.store.is_some()
    }

    /// Whether the data folder can be written now (`None` without one).
    pub fn probe_storage(&self) -> Option<Result<(), String>> {
        let store = self.store.as_ref()?;
        Some(store.probe().map_err(|e| {
            format!(
                "the data folder {} cannot be written: {e}",
                store.dir().display()
            )
        }))
    }
}
