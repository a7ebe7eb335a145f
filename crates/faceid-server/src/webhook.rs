//! Webhooks: the result POSTed to the URL given at submission (`?fal_webhook=`), retried with
//! exponential backoff until the receiver answers 2xx.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::input::{FetchPolicy, check_host, guarded_agent};
use crate::jobs::{Outcome, RequestLog};
use tokio::sync::Semaphore;

/// How deliveries are retried.
#[derive(Debug, Clone)]
pub struct WebhookPolicy {
    /// Attempts in all.
    pub attempts: u32,
    /// Wait before the second attempt; doubled each time after.
    pub first_delay: Duration,
    /// Time limit of one attempt.
    pub timeout: Duration,
    /// Most attempts under way at once, over all requests.
    pub concurrency: usize,
}

impl Default for WebhookPolicy {
    fn default() -> Self {
        Self {
            attempts: 6,
            first_delay: Duration::from_secs(1),
            timeout: Duration::from_secs(15),
            concurrency: 16,
        }
    }
}

/// Checks a webhook URL at submission: http(s), and not an internal address unless allowed.
pub fn check_url(url: &str, policy: &FetchPolicy) -> Result<(), String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err("the webhook must be an http(s) URL".into());
    }
    check_host(url, policy)
}

/// The body fal POSTs to a webhook.
pub fn payload(request_id: &str, outcome: &Outcome) -> Value {
    let mut body = json!({
        "request_id": request_id,
        "gateway_request_id": request_id,
        "status": if outcome.error.is_none() { "OK" } else { "ERROR" },
        "payload": if outcome.error.is_none() { outcome.body.clone() } else { outcome.body.get("detail").cloned().map_or(Value::Null, |d| json!({"detail": d})) },
    });
    if let Some((message, _)) = &outcome.error {
        body["error"] = json!(message);
    }
    body
}

/// Webhook deliveries: a task on the async runtime each, waiting between attempts without
/// holding a thread; at most `WebhookPolicy::concurrency` attempts are under way at once (each
/// a blocking POST on the runtime's blocking pool).
pub struct Deliveries {
    policy: WebhookPolicy,
    hosts: FetchPolicy,
    slots: Arc<Semaphore>,
    runtime: tokio::runtime::Handle,
}

impl Deliveries {
    /// Deliveries under `policy` to the hosts `hosts` allows, on `runtime`.
    pub fn new(policy: WebhookPolicy, hosts: FetchPolicy, runtime: tokio::runtime::Handle) -> Self {
        let slots = Arc::new(Semaphore::new(policy.concurrency.max(1)));
        Self {
            policy,
            hosts,
            slots,
            runtime,
        }
    }

    /// Delivers `body` for request `id` to `url`, writing the result to the request's logs in
    /// `log`.
    pub fn send(&self, log: Arc<dyn RequestLog>, id: String, url: String, body: Value) {
        let (policy, hosts, slots) = (self.policy.clone(), self.hosts.clone(), self.slots.clone());
        self.runtime.spawn(async move {
            let (attempts, result) = deliver(&url, body.to_string(), &policy, &hosts, &slots).await;
            match result {
                Ok(()) => log.log_line(
                    &id,
                    "INFO",
                    format!("webhook delivered (attempt {attempts})"),
                ),
                Err(e) => {
                    tracing::warn!(request_id = %id, url, attempts, "webhook not delivered: {e}");
                    log.log_line(
                        &id,
                        "ERROR",
                        format!("webhook not delivered after {attempts} attempts: {e}"),
                    );
                }
            }
        });
    }
}

/// Delivers `body` to `url`, retrying; returns the attempts made and whether one succeeded.
async fn deliver(
    url: &str,
    body: String,
    policy: &WebhookPolicy,
    hosts: &FetchPolicy,
    slots: &Semaphore,
) -> (u32, Result<(), String>) {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(policy.timeout))
        .build();
    let agent = guarded_agent(config, hosts);
    let body = Arc::new(body);
    let attempts = policy.attempts.max(1);
    let mut delay = policy.first_delay;
    let mut last = String::new();
    for attempt in 1..=attempts {
        let result = match slots.acquire().await {
            Ok(_permit) => {
                let (agent, url, body) = (agent.clone(), url.to_string(), body.clone());
                tokio::task::spawn_blocking(move || post(&agent, &url, &body))
                    .await
                    .unwrap_or_else(|e| Err(format!("the delivery failed: {e}")))
            }
            Err(_) => Err("the server is shutting down".into()),
        };
        match result {
            Ok(()) => return (attempt, Ok(())),
            Err(e) => last = e,
        }
        if attempt < attempts {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
    (attempts, Err(last))
}

/// One attempt.
fn post(agent: &ureq::Agent, url: &str, body: &str) -> Result<(), String> {
    match agent
        .post(url)
        .header("content-type", "application/json")
        .send(body)
    {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!(
            "the receiver answered HTTP {}",
            response.status().as_u16()
        )),
        Err(e) => {
            tracing::debug!(url, "webhook delivery failed: {e}");
            Err(crate::input::UNREACHABLE.into())
        }
    }
}
