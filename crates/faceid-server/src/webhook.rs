//! Webhooks: the result POSTed to the URL given at submission (`?fal_webhook=`), retried with
//! exponential backoff until the receiver answers 2xx.

use std::time::Duration;

use serde_json::{Value, json};

use crate::input::{FetchPolicy, check_host, guarded_agent};
use crate::jobs::Outcome;

/// How deliveries are retried.
#[derive(Debug, Clone)]
pub struct WebhookPolicy {
    /// Attempts in all.
    pub attempts: u32,
    /// Wait before the second attempt; doubled each time after.
    pub first_delay: Duration,
    /// Time limit of one attempt.
    pub timeout: Duration,
}

impl Default for WebhookPolicy {
    fn default() -> Self {
        Self {
            attempts: 6,
            first_delay: Duration::from_secs(1),
            timeout: Duration::from_secs(15),
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

/// Delivers `body` to `url`, retrying; returns the attempts made and whether one succeeded.
pub fn deliver(
    url: &str,
    body: &Value,
    policy: &WebhookPolicy,
    hosts: &FetchPolicy,
) -> (u32, Result<(), String>) {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(policy.timeout))
        .build();
    let agent = guarded_agent(config, hosts);
    let mut delay = policy.first_delay;
    let mut last = String::new();
    for attempt in 1..=policy.attempts.max(1) {
        match agent
            .post(url)
            .header("content-type", "application/json")
            .send(body.to_string())
        {
            Ok(response) if response.status().is_success() => return (attempt, Ok(())),
            Ok(response) => last = format!("HTTP {}", response.status().as_u16()),
            Err(e) => last = e.to_string(),
        }
        if attempt < policy.attempts {
            std::thread::sleep(delay);
            delay *= 2;
        }
    }
    (policy.attempts, Err(last))
}
