//! Prometheus counters: requests accepted, rejected and finished by outcome, generation time;
//! on an API node, the shared queue's counts too.

use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the generation-time histogram, in seconds.
const BUCKETS: [f64; 10] = [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0];

/// The server's counters.
#[derive(Default)]
pub struct Metrics {
    accepted: AtomicU64,
    rejected: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    seconds: Mutex<Histogram>,
}

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Metrics {
    /// A request entered the queue.
    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// A request was refused because the queue was full.
    pub fn rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// A request finished with this HTTP status (`None`: cancelled) after `seconds`.
    pub fn finished(&self, status: Option<u16>, seconds: f64) {
        let counter = match status {
            None => &self.cancelled,
            Some(200) => &self.succeeded,
            Some(_) => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if status == Some(200) {
            let mut h = self.seconds.lock().unwrap_or_else(|e| e.into_inner());
            for (i, bound) in BUCKETS.iter().enumerate() {
                if seconds <= *bound {
                    h.counts[i] += 1;
                }
            }
            h.sum += seconds;
            h.count += 1;
        }
    }

    /// The Prometheus text exposition; `shared`: the counts of the shared queue every node
    /// sees (an API node's workers run elsewhere, so it finishes nothing itself).
    pub fn render(
        &self,
        queued: usize,
        running: usize,
        shared: Option<crate::redis_queue::SharedStats>,
    ) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, value: usize| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        gauge(
            &mut out,
            "faceid_queue_depth",
            "Requests waiting in the queue.",
            queued,
        );
        gauge(
            &mut out,
            "faceid_in_flight",
            "Requests being generated.",
            running,
        );
        let _ = writeln!(
            out,
            "# HELP faceid_requests_total Requests by outcome.\n# TYPE faceid_requests_total counter"
        );
        for (outcome, counter) in [
            ("accepted", &self.accepted),
            ("rejected", &self.rejected),
            ("succeeded", &self.succeeded),
            ("failed", &self.failed),
            ("cancelled", &self.cancelled),
        ] {
            let _ = writeln!(
                out,
                "faceid_requests_total{{outcome=\"{outcome}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        if let Some(shared) = shared {
            let _ = writeln!(
                out,
                "# HELP faceid_shared_requests_total Requests finished on any worker of the shared queue, by outcome.\n# TYPE faceid_shared_requests_total counter"
            );
            for (outcome, count) in [
                ("succeeded", shared.succeeded),
                ("failed", shared.failed),
                ("cancelled", shared.cancelled),
            ] {
                let _ = writeln!(
                    out,
                    "faceid_shared_requests_total{{outcome=\"{outcome}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "# HELP faceid_shared_reclaimed_total Requests taken over from a worker that went silent.\n# TYPE faceid_shared_reclaimed_total counter\nfaceid_shared_reclaimed_total {}",
                shared.reclaimed
            );
        }
        let h = self.seconds.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(
            out,
            "# HELP faceid_generation_seconds Time from start to output of successful requests.\n# TYPE faceid_generation_seconds histogram"
        );
        for (bound, count) in BUCKETS.iter().zip(h.counts) {
            let _ = writeln!(
                out,
                "faceid_generation_seconds_bucket{{le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "faceid_generation_seconds_bucket{{le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(out, "faceid_generation_seconds_sum {}", h.sum);
        let _ = writeln!(out, "faceid_generation_seconds_count {}", h.count);
        out
    }
}
