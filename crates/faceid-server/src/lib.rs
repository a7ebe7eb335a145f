//! A self-hosted server for the API of fal's `fal-ai/ip-adapter-face-id` endpoint, so that the
//! official fal clients work against it unmodified.
//!
//! Routes (see `routes`): `POST /fal-ai/ip-adapter-face-id` (run and wait), `POST
//! /queue/fal-ai/ip-adapter-face-id` (submit), `GET .../requests/{id}/status[?logs=1]`, `GET
//! .../requests/{id}/status/stream` (server-sent events), `GET .../requests/{id}` (result),
//! `PUT .../requests/{id}/cancel`, `GET /files/{name}`, `GET /health`, `GET /metrics`, and the
//! playground page at `GET /` (see `playground`).
//! Requests wait in a bounded queue (429 when full) and run on worker threads that share the
//! models, which are loaded once and kept. Every response carries `x-fal-request-id`.
#![deny(missing_docs)]

mod batch;
mod conn;
mod engine;
mod failure;
mod input;
mod jobs;
mod keys;
mod metrics;
mod models;
mod openapi;
mod output;
mod playground;
mod prefetch;
mod queue;
pub mod redis_queue;
mod routes;
mod start;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod time;
mod webhook;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderValue;
use axum::response::Response;
use axum::routing::{get, post, put};

pub use conn::ConnectionLimits;
pub use input::{FetchPolicy, InputError, UNREACHABLE, is_internal, load};
pub use jobs::{Cancelled, Outcome, cancelled_outcome};
pub use models::{DEFAULT_MODEL_MEMORY_GIB, Loaded, ModelError, ModelPolicy, Models};
pub use routes::APP;
pub use webhook::WebhookPolicy;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// The address clients reach the server at, for the URLs it returns (default: the bound
    /// address).
    pub public_url: Option<String>,
    /// A PEM certificate and key: serve HTTPS (the Python client speaks nothing else).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Accepted API keys (`Authorization: Key <key>`); none means open.
    pub api_keys: Vec<String>,
    /// Most requests waiting in the queue.
    pub queue_capacity: usize,
    /// Generations running at once.
    pub concurrency: usize,
    /// Most queued requests of the same shape (size, steps, guidance, model) run as one batch.
    pub max_batch: usize,
    /// Where result images are written.
    pub files_dir: PathBuf,
    /// How long results (images, and the status and output of completed requests) are kept.
    pub retention: Duration,
    /// How input URLs are fetched; its allow-list applies to webhook hosts too.
    pub fetch: FetchPolicy,
    /// How webhook deliveries are retried.
    pub webhooks: WebhookPolicy,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Where accepted requests are persisted (none: in memory only).
    pub data_dir: Option<PathBuf>,
    /// Connection count and timeouts.
    pub connections: ConnectionLimits,
    /// Whether `GET /` serves the playground page.
    pub playground: bool,
    /// Run as an API node of a queue shared through Redis (workers elsewhere run the
    /// requests): none runs the requests in this process.
    pub queue: Option<SharedQueue>,
}

/// The queue an API node shares with other API nodes and with workers.
#[derive(Debug, Clone)]
pub struct SharedQueue {
    /// `redis://[:password@]host:port/db`, or `rediss://` for TLS.
    pub url: String,
    /// The prefix of the queue's keys.
    pub prefix: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8000)),
            public_url: None,
            tls: None,
            api_keys: Vec::new(),
            queue_capacity: 64,
            concurrency: 1,
            max_batch: 1,
            files_dir: std::env::temp_dir().join("faceid-files"),
            retention: Duration::from_secs(3600),
            fetch: FetchPolicy::default(),
            webhooks: WebhookPolicy::default(),
            max_body_bytes: 64 << 20,
            data_dir: None,
            connections: ConnectionLimits::default(),
            playground: true,
            queue: None,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The data folder cannot be used.
    #[error("data folder {dir}: {source}")]
    Data {
        /// The folder.
        dir: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An `--allow-fetch-host` entry is neither `host:port` nor a host.
    #[error("allow-list entry '{0}' is neither host:port nor a host")]
    AllowList(String),
    /// The shared queue cannot be opened.
    #[error("the shared queue {url}: {source}")]
    Queue {
        /// Its address (without the password).
        url: String,
        /// The error.
        source: redis_queue::QueueError,
    },
    /// The certificate or key cannot be read.
    #[error("TLS certificate {cert} / key {key}: {source}")]
    Tls {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    public_url: String,
    handle: axum_server::Handle<SocketAddr>,
    queue: Arc<queue::Queue>,
    workers: Vec<std::thread::JoinHandle<()>>,
    serving: tokio::task::JoinHandle<()>,
}

async fn add_request_id(mut response: Response) -> Response {
    if !response.headers().contains_key("x-fal-request-id") {
        if let Ok(value) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
            response.headers_mut().insert("x-fal-request-id", value);
        }
    }
    response
}

impl Server {
    /// Starts workers on `models` and serves the API; returns once listening.
    pub async fn start(config: ServerConfig, models: Models) -> Result<Self, ServerError> {
        if let Some(entry) = config.fetch.invalid_allow_hosts().into_iter().next() {
            return Err(ServerError::AllowList(entry));
        }
        let listener =
            std::net::TcpListener::bind(config.bind).map_err(|source| ServerError::Bind {
                addr: config.bind,
                source,
            })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| ServerError::Bind {
                addr: config.bind,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.bind,
            source,
        })?;
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{addr}"))
            .trim_end_matches('/')
            .to_string();
        let files = Arc::new(output::Files {
            dir: config.files_dir.clone(),
            public_url: public_url.clone(),
            retention: config.retention,
            shared: None,
        });
        let metrics = Arc::new(metrics::Metrics::default());
        let playground = config.playground.then(|| {
            Arc::new(playground::Playground::new(
                &models,
                &public_url,
                !config.api_keys.is_empty(),
                config.max_body_bytes,
            ))
        });
        let (queue, keys, workers) = match &config.queue {
            Some(shared) => {
                let (queue, keys) = start::shared(&config, shared).await?;
                (queue, keys, Vec::new())
            }
            None => start::local(&config, models, &files, &metrics)?,
        };
        let queue = Arc::new(queue);
        let state = Arc::new(routes::AppState {
            queue: queue.clone(),
            files: files.clone(),
            fetch: config.fetch.clone(),
            metrics,
            keys: Arc::new(keys),
            public_url: public_url.clone(),
            max_body_bytes: config.max_body_bytes,
            body_timeout: config.connections.body_timeout,
            refused_body_drain: config.connections.refused_body_drain,
        });
        let app = router(state, config.max_body_bytes, playground);
        let handle = axum_server::Handle::new();
        let limits = config.connections.clone();
        let limit = conn::LimitAcceptor::new(limits.max_connections);
        let mut server = axum_server::from_tcp(listener)
            .map_err(|source| ServerError::Bind { addr, source })?
            .handle(handle.clone())
            .first_request_timeout(limits.header_timeout)
            .accept_error_handler(|peer, e| tracing::debug!(?peer, "connection not served: {e}"));
        // hyper's header timer starts as soon as a kept-alive connection waits for its next
        // request, so it is the idle timeout of those connections.
        server
            .http_builder()
            .http1()
            .header_read_timeout(Some(limits.idle_timeout));
        let serving = match &config.tls {
            Some((cert, key)) => {
                let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                    .await
                    .map_err(|source| ServerError::Tls {
                        cert: cert.clone(),
                        key: key.clone(),
                        source,
                    })?;
                let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls)
                    .handshake_timeout(limits.header_timeout)
                    .acceptor(limit);
                let server = server.acceptor(acceptor);
                tokio::spawn(async move {
                    if let Err(e) = server.serve(app.into_make_service()).await {
                        tracing::error!("server stopped: {e}");
                    }
                })
            }
            None => {
                let server = server.acceptor(limit);
                tokio::spawn(async move {
                    if let Err(e) = server.serve(app.into_make_service()).await {
                        tracing::error!("server stopped: {e}");
                    }
                })
            }
        };
        handle.listening().await;
        tracing::info!(%addr, %public_url, "serving {}", routes::APP);
        Ok(Self {
            addr,
            public_url,
            handle,
            queue,
            workers,
            serving,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL of the returned links.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Stops taking requests (503) and lets the running ones finish within `grace`, serving
    /// status and result requests meanwhile; then stops serving. With a data folder the queued
    /// requests wait on disk for the next start, and requests still running when `grace` ends
    /// are interrupted and kept there too. Without one, queued requests keep running until
    /// `grace` ends, and those left then are cancelled.
    /// An API node of a shared queue stops taking requests and serves the open streams and
    /// waiting clients for up to `grace`; the requests stay in Redis.
    pub async fn shutdown(self, grace: Duration) {
        let jobs = match &*self.queue {
            queue::Queue::Local(local) => local.jobs.clone(),
            queue::Queue::Shared(shared) => {
                shared.close();
                self.handle.graceful_shutdown(Some(grace));
                let _ = self.serving.await;
                return;
            }
        };
        let keep = jobs.persistent();
        jobs.drain(keep);
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let changed = jobs.changed();
            let (queued, running) = jobs.depth();
            if running == 0 && (keep || queued == 0) {
                break;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                break;
            }
        }
        let (queued, running) = jobs.depth();
        if keep {
            if queued + running > 0 {
                tracing::info!(
                    queued,
                    running,
                    "unfinished requests are kept for the next start"
                );
            }
            jobs.suspend();
        } else {
            if queued + running > 0 {
                tracing::warn!(
                    queued,
                    running,
                    "cancelling the requests left after the grace period"
                );
            }
            jobs.cancel_all();
            jobs.close();
        }
        self.stop().await;
    }

    /// Stops taking requests, cancels the queued and running ones, then stops serving (an API
    /// node of a shared queue leaves its requests to the workers).
    pub async fn abort(self) {
        match &*self.queue {
            queue::Queue::Local(local) => {
                local.jobs.cancel_all();
                local.jobs.close();
            }
            queue::Queue::Shared(shared) => shared.close(),
        }
        self.stop().await;
    }

    async fn stop(self) {
        let workers = self.workers;
        let _ = tokio::task::spawn_blocking(move || {
            for worker in workers {
                let _ = worker.join();
            }
        })
        .await;
        self.handle.graceful_shutdown(Some(Duration::from_secs(2)));
        let _ = self.serving.await;
    }
}

fn router(
    state: Arc<routes::AppState>,
    max_body: usize,
    playground: Option<Arc<playground::Playground>>,
) -> Router {
    let app = format!("/{}", routes::APP);
    let queue = format!("/queue/{}", routes::APP);
    let request = format!("{queue}/requests/{{id}}");
    const ACCEPTED: &[(u16, &str, bool)] = &[
        (
            200,
            "accepted: request_id, response_url, status_url, cancel_url, queue_position",
            false,
        ),
        (401, "a valid API key is required", false),
        (408, "the body did not arrive in time", false),
        (413, "the body is too large", false),
        (422, "invalid input: detail lists {loc, msg, type}", false),
        (429, "the queue is full", false),
    ];
    let table = vec![
        openapi::Route {
            method: "post",
            path: app,
            summary: "Run and wait for the output",
            takes_input: true,
            responses: &[
                (200, "the output", true),
                (401, "a valid API key is required", false),
                (408, "the body did not arrive in time", false),
                (413, "the body is too large", false),
                (422, "invalid input: detail lists {loc, msg, type}", false),
                (429, "the queue is full", false),
            ],
            handler: post(routes::run_sync),
        },
        openapi::Route {
            method: "post",
            path: queue.clone(),
            summary: "Submit to the queue (optional query fal_webhook=URL)",
            takes_input: true,
            responses: ACCEPTED,
            handler: post(routes::submit),
        },
        openapi::Route {
            method: "get",
            path: format!("{request}/status"),
            summary: "Status (IN_QUEUE, IN_PROGRESS, COMPLETED); logs with ?logs=1",
            takes_input: false,
            responses: &[
                (200, "completed", false),
                (202, "queued or in progress", false),
                (404, "no such request", false),
            ],
            handler: get(routes::status),
        },
        openapi::Route {
            method: "get",
            path: format!("{request}/status/stream"),
            summary: "Status as server-sent events, closed after COMPLETED",
            takes_input: false,
            responses: &[
                (200, "text/event-stream of status objects", false),
                (404, "no such request", false),
            ],
            handler: get(routes::status_stream),
        },
        openapi::Route {
            method: "get",
            path: request.clone(),
            summary: "The result of a completed request",
            takes_input: false,
            responses: &[
                (200, "the output", true),
                (400, "still in progress, or cancelled", false),
                (404, "no such request", false),
                (422, "the input could not be used", false),
            ],
            handler: get(routes::result),
        },
        openapi::Route {
            method: "put",
            path: format!("{request}/cancel"),
            summary: "Cancel: a queued request never runs, a running one stops at the next step",
            takes_input: false,
            responses: &[
                (202, "CANCELLATION_REQUESTED", false),
                (400, "ALREADY_COMPLETED", false),
                (404, "NOT_FOUND", false),
            ],
            handler: put(routes::cancel),
        },
        openapi::Route {
            method: "get",
            path: "/files/{name}".into(),
            summary: "A result image",
            takes_input: false,
            responses: &[
                (200, "image/png", false),
                (404, "no such file, or expired", false),
            ],
            handler: get(routes::file),
        },
        openapi::Route {
            method: "get",
            path: "/health".into(),
            summary: "Liveness and queue depth",
            takes_input: false,
            responses: &[
                (200, "ok", false),
                (
                    503,
                    "the data or results folder cannot be written: reason",
                    false,
                ),
            ],
            handler: get(routes::health),
        },
        openapi::Route {
            method: "get",
            path: "/metrics".into(),
            summary: "Prometheus metrics",
            takes_input: false,
            responses: &[(200, "text exposition format", false)],
            handler: get(routes::metrics),
        },
    ];
    let document = Arc::new(openapi::document(&table));
    let mut router = Router::new().route(
        "/openapi.json",
        get(move || {
            let document = document.clone();
            async move { axum::Json((*document).clone()) }
        }),
    );
    for route in table {
        router = router.route(&route.path, route.handler);
    }
    if let Some(playground) = playground {
        router = router
            .merge(playground.routes())
            .route("/playground/key", get(routes::key_check));
    }
    router
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::map_response(add_request_id))
        .with_state(state)
}
