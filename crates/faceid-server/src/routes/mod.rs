//! The HTTP API of `fal-ai/ip-adapter-face-id`: synchronous run, queue (submit, status, status
//! stream, result, cancel), files, health and metrics.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use faceid_fal::{FalRequest, FieldError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::input::FetchPolicy;
use crate::jobs::{Cancelled, Rejected};
use crate::metrics::Metrics;
use crate::output::Files;
use crate::queue::{Queue, Submission, Unavailable};

mod intake;

use intake::{accept, authorize, unprocessable};

/// The app id of the endpoint.
pub const APP: &str = "fal-ai/ip-adapter-face-id";

/// What the handlers share.
pub struct AppState {
    /// The requests: in this process, or shared through Redis.
    pub queue: Arc<Queue>,
    /// Results on disk.
    pub files: Arc<Files>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The URL policy (webhook hosts are checked against it).
    pub fetch: FetchPolicy,
    /// Accepted API keys; none means no authentication.
    pub keys: Arc<crate::keys::Keys>,
    /// The public base URL.
    pub public_url: String,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Time a request body has to arrive in full.
    pub body_timeout: std::time::Duration,
    /// Largest body of an unauthorized request that is read (and dropped) so that its client
    /// sees the 401; larger ones are not read at all.
    pub refused_body_drain: usize,
}

/// Cancels a run-and-wait request when its client goes away (the handler is dropped with the
/// connection) before the output is sent.
struct CancelOnDrop {
    state: Arc<AppState>,
    id: String,
    owner: Option<String>,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let (state, id, owner) = (self.state.clone(), self.id.clone(), self.owner.take());
            tokio::spawn(async move {
                let cancelled = state.queue.cancel(&id, owner.as_deref()).await;
                if matches!(cancelled, Ok(Cancelled::Requested | Cancelled::Dequeued)) {
                    tracing::info!(request_id = %id, "the client went away: request cancelled");
                }
            });
        }
    }
}

type Shared = State<Arc<AppState>>;

/// A JSON response with `x-fal-request-id`.
fn reply(status: StatusCode, body: Value, request_id: &str) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-fal-request-id", value);
    }
    response
}

fn detail(status: StatusCode, message: &str, request_id: &str) -> Response {
    reply(status, json!({ "detail": message }), request_id)
}

/// 503: the queue cannot be reached now.
fn unavailable(Unavailable(reason): Unavailable, request_id: &str) -> Response {
    detail(StatusCode::SERVICE_UNAVAILABLE, &reason, request_id)
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn enqueue(
    state: &AppState,
    owner: Option<String>,
    (input, inline_images, raw): (FalRequest, bool, Value),
    webhook: Option<String>,
) -> Result<(String, usize), Response> {
    let id = new_id();
    let submission = Submission {
        owner,
        input,
        raw,
        inline_images,
        webhook,
    };
    match state.queue.submit(&id, submission).await {
        Ok(position) => {
            state.metrics.accepted();
            Ok((id, position))
        }
        Err(Rejected::QueueFull { capacity }) => {
            state.metrics.rejected();
            Err(detail(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("the queue is full ({capacity} requests waiting); retry later"),
                &id,
            ))
        }
        Err(Rejected::ShuttingDown) => Err(detail(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
            &id,
        )),
        Err(Rejected::Storage(e)) => Err(detail(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the request could not be stored, so it was not accepted: {e}"),
            &id,
        )),
    }
}

/// `POST /fal-ai/ip-adapter-face-id`: run and wait for the output.
pub async fn run_sync(State(state): Shared, headers: HeaderMap, body: Body) -> Response {
    let (owner, parsed) = match accept(&state, &headers, body).await {
        Ok(accepted) => accepted,
        Err(response) => return response,
    };
    let (id, _) = match enqueue(&state, owner.clone(), parsed, None).await {
        Ok(accepted) => accepted,
        Err(response) => return response,
    };
    let mut guard = CancelOnDrop {
        state: state.clone(),
        id: id.clone(),
        owner: owner.clone(),
        armed: true,
    };
    loop {
        let changed = state.queue.changed();
        match state.queue.outcome(&id, owner.as_deref()).await {
            Ok(Some(Some(outcome))) => {
                guard.armed = false;
                let status = StatusCode::from_u16(outcome.status_code)
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return reply(status, outcome.body, &id);
            }
            Ok(Some(None)) => {}
            Ok(None) => {
                // Expired before this client could read it.
                guard.armed = false;
                return detail(StatusCode::NOT_FOUND, "no such request", &id);
            }
            // Redis out of reach for a moment: keep waiting (the request is stored).
            Err(Unavailable(reason)) => tracing::warn!(request_id = %id, "{reason}"),
        }
        changed.wait().await;
    }
}

/// The query of a submit.
#[derive(Deserialize)]
pub struct SubmitQuery {
    fal_webhook: Option<String>,
}

fn urls(state: &AppState, id: &str) -> (String, String, String) {
    let base = format!("{}/queue/{APP}/requests/{id}", state.public_url);
    (
        base.clone(),
        format!("{base}/status"),
        format!("{base}/cancel"),
    )
}

/// `POST /queue/fal-ai/ip-adapter-face-id`: accept into the queue.
pub async fn submit(
    State(state): Shared,
    Query(query): Query<SubmitQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (owner, parsed) = match accept(&state, &headers, body).await {
        Ok(accepted) => accepted,
        Err(response) => return response,
    };
    if let Some(url) = &query.fal_webhook {
        if let Err(msg) = crate::webhook::check_url(url, &state.fetch) {
            let error = FieldError {
                loc: vec!["query".into(), "fal_webhook".into()],
                msg,
                kind: "url_error".into(),
            };
            return unprocessable(&[error], &new_id());
        }
    }
    let (id, position) = match enqueue(&state, owner, parsed, query.fal_webhook).await {
        Ok(accepted) => accepted,
        Err(response) => return response,
    };
    let (response_url, status_url, cancel_url) = urls(&state, &id);
    reply(
        StatusCode::OK,
        json!({
            "status": "IN_QUEUE",
            "request_id": id,
            "response_url": response_url,
            "status_url": status_url,
            "cancel_url": cancel_url,
            "queue_position": position,
        }),
        &id,
    )
}

/// The query of a status request.
#[derive(Deserialize)]
pub struct StatusQuery {
    logs: Option<String>,
}

fn with_urls(state: &AppState, id: &str, mut status: Value) -> Value {
    let (response_url, status_url, cancel_url) = urls(state, id);
    status["request_id"] = json!(id);
    status["response_url"] = json!(response_url);
    status["status_url"] = json!(status_url);
    status["cancel_url"] = json!(cancel_url);
    status
}

/// `GET /queue/fal-ai/ip-adapter-face-id/requests/{id}/status`.
pub async fn status(
    State(state): Shared,
    Path(id): Path<String>,
    Query(query): Query<StatusQuery>,
    headers: HeaderMap,
) -> Response {
    let owner = match authorize(&state, &headers) {
        Ok(owner) => owner,
        Err(response) => return response,
    };
    let logs = matches!(query.logs.as_deref(), Some("1" | "true"));
    match state.queue.status(&id, owner.as_deref(), logs).await {
        Err(e) => unavailable(e, &id),
        Ok(Some((status, done))) => {
            let code = if done {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            reply(code, with_urls(&state, &id, status), &id)
        }
        Ok(None) => detail(StatusCode::NOT_FOUND, "no such request", &id),
    }
}

/// `GET .../requests/{id}/status/stream`: one server-sent event per change, closed after
/// COMPLETED.
pub async fn status_stream(
    State(state): Shared,
    Path(id): Path<String>,
    Query(query): Query<StatusQuery>,
    headers: HeaderMap,
) -> Response {
    let owner = match authorize(&state, &headers) {
        Ok(owner) => owner,
        Err(response) => return response,
    };
    let logs = !matches!(query.logs.as_deref(), Some("0" | "false"));
    match state.queue.status(&id, owner.as_deref(), logs).await {
        Err(e) => return unavailable(e, &id),
        Ok(None) => return detail(StatusCode::NOT_FOUND, "no such request", &id),
        Ok(Some(_)) => {}
    }
    // Each event carries only the log lines that are new since the previous one: the JS client
    // appends every event's logs to what it has.
    let stream = futures_util::stream::unfold(
        (
            state.clone(),
            id.clone(),
            owner,
            None::<String>,
            0usize,
            false,
        ),
        move |(state, id, owner, last, sent, finished)| async move {
            if finished {
                return None;
            }
            loop {
                let fresh = {
                    let changed = state.queue.changed();
                    let (mut status, done) =
                        match state.queue.status(&id, owner.as_deref(), logs).await {
                            Ok(found) => found?,
                            Err(Unavailable(reason)) => {
                                // Keep the stream open: the request is stored.
                                tracing::warn!(request_id = %id, "{reason}");
                                changed.wait().await;
                                continue;
                            }
                        };
                    let all = status["logs"].as_array().cloned();
                    status["logs"] = Value::Null;
                    let key = format!("{status}{}", all.as_ref().map_or(0, Vec::len));
                    if last.as_deref() == Some(key.as_str()) {
                        changed.wait().await;
                        None
                    } else {
                        let total = all.as_ref().map_or(0, Vec::len);
                        status["logs"] = all.map_or(Value::Null, |all| {
                            Value::Array(all.into_iter().skip(sent).collect())
                        });
                        Some((with_urls(&state, &id, status).to_string(), key, total, done))
                    }
                };
                if let Some((text, key, total, done)) = fresh {
                    let event: Result<Event, Infallible> = Ok(Event::default().data(text));
                    return Some((event, (state, id, owner, Some(key), total, done)));
                }
            }
        },
    );
    let mut response = Sse::new(stream).into_response();
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-fal-request-id", value);
    }
    response
}

/// `GET .../requests/{id}`: the output (or the error) once completed.
pub async fn result(State(state): Shared, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let owner = match authorize(&state, &headers) {
        Ok(owner) => owner,
        Err(response) => return response,
    };
    match state.queue.outcome(&id, owner.as_deref()).await {
        Err(e) => unavailable(e, &id),
        Ok(Some(Some(outcome))) => {
            let status = StatusCode::from_u16(outcome.status_code)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            reply(status, outcome.body, &id)
        }
        Ok(Some(None)) => detail(
            StatusCode::BAD_REQUEST,
            "the request is still in progress",
            &id,
        ),
        Ok(None) => detail(StatusCode::NOT_FOUND, "no such request", &id),
    }
}

/// `PUT .../requests/{id}/cancel`.
pub async fn cancel(State(state): Shared, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let owner = match authorize(&state, &headers) {
        Ok(owner) => owner,
        Err(response) => return response,
    };
    let cancelled = match state.queue.cancel(&id, owner.as_deref()).await {
        Ok(cancelled) => cancelled,
        Err(e) => return unavailable(e, &id),
    };
    let (code, status) = match cancelled {
        Cancelled::Requested | Cancelled::Dequeued => {
            (StatusCode::ACCEPTED, "CANCELLATION_REQUESTED")
        }
        Cancelled::AlreadyCompleted => (StatusCode::BAD_REQUEST, "ALREADY_COMPLETED"),
        Cancelled::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
    };
    reply(code, json!({ "status": status }), &id)
}

/// `GET /files/{name}`: a stored result image.
pub async fn file(State(state): Shared, Path(name): Path<String>) -> Response {
    let id = new_id();
    match state.queue.file(&state.files, &name).await {
        Ok(Some(bytes)) => {
            let mut response = ([("content-type", "image/png")], bytes).into_response();
            if let Ok(value) = HeaderValue::from_str(&id) {
                response.headers_mut().insert("x-fal-request-id", value);
            }
            response
        }
        Ok(None) => detail(
            StatusCode::NOT_FOUND,
            "no such file (results are kept for a limited time)",
            &id,
        ),
        Err(e) => unavailable(e, &id),
    }
}

/// `GET /health`: 200 with the queue depth, or 503 with the reason when the data folder or
/// the results folder cannot be written, or the shared queue's Redis cannot be reached.
pub async fn health(State(state): Shared) -> Response {
    let problem = state.queue.problem(&state.files).await;
    let (queued, running) = state.queue.depth().await.unwrap_or_default();
    match problem {
        None => reply(
            StatusCode::OK,
            json!({"status": "ok", "queued": queued, "running": running}),
            &new_id(),
        ),
        Some(reason) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unavailable", "reason": reason, "queued": queued, "running": running}),
            &new_id(),
        ),
    }
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(State(state): Shared) -> Response {
    let (queued, running) = state.queue.depth().await.unwrap_or_default();
    let shared = state.queue.shared_stats().await;
    let text = state.metrics.render(queued, running, shared);
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}

/// `GET /playground/key`: 204 when the caller's key is accepted (or none is needed), 401
/// otherwise; the playground checks a key with it before keeping it.
pub async fn key_check(State(state): Shared, headers: HeaderMap) -> Response {
    match authorize(&state, &headers) {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(response) => response,
    }
}

/// Any other path.
pub async fn not_found() -> Response {
    detail(StatusCode::NOT_FOUND, "no such route", &new_id())
}
