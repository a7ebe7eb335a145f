//! A self-hosted server for the API of fal's `fal-ai/ip-adapter-face-id` endpoint, so that the
//! official fal clients work against it unmodified.
//!
//! Routes (see `routes`): `POST /fal-ai/ip-adapter-face-id` (run and wait), `POST
//! /queue/fal-ai/ip-adapter-face-id` (submit), `GET .../requests/{id}/status[?logs=1]`, `GET
//! .../requests/{id}/status/stream` (server-sent events), `GET .../requests/{id}` (result),
//! `PUT .../requests/{id}/cancel`, `GET /files/{name}`, `GET /health`, `GET /metrics`.
//! Requests wait in a bounded queue (429 when full) and run on worker threads that share the
//! models, which are loaded once and kept. Every response carries `x-fal-request-id`.
#![deny(missing_docs)]

mod engine;
mod input;
mod jobs;
mod metrics;
mod output;
mod routes;
mod time;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderValue;
use axum::response::Response;
use axum::routing::{get, post, put};

pub use engine::{Models, random_seed};
pub use input::{FetchPolicy, InputError, is_internal, load};
pub use routes::APP;

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
    /// Where result images are written.
    pub files_dir: PathBuf,
    /// How long result images are kept.
    pub retention: Duration,
    /// How input URLs are fetched.
    pub fetch: FetchPolicy,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
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
            files_dir: std::env::temp_dir().join("faceid-files"),
            retention: Duration::from_secs(3600),
            fetch: FetchPolicy::default(),
            max_body_bytes: 64 << 20,
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
    jobs: Arc<jobs::Jobs>,
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
        let listener = std::net::TcpListener::bind(config.bind).map_err(|source| {
            ServerError::Bind {
                addr: config.bind,
                source,
            }
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
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{addr}"))
            .trim_end_matches('/')
            .to_string();
        let jobs = Arc::new(jobs::Jobs::new(config.queue_capacity));
        let files = Arc::new(output::Files {
            dir: config.files_dir.clone(),
            public_url: public_url.clone(),
            retention: config.retention,
        });
        let metrics = Arc::new(metrics::Metrics::default());
        let models = Arc::new(models);
        let policy = Arc::new(config.fetch.clone());
        let workers = (0..config.concurrency.max(1))
            .map(|i| {
                let (m, j, f, p, x) = (
                    models.clone(),
                    jobs.clone(),
                    files.clone(),
                    policy.clone(),
                    metrics.clone(),
                );
                std::thread::Builder::new()
                    .name(format!("faceid-worker-{i}"))
                    .spawn(move || engine::worker(m, j, f, p, x))
                    .expect("spawn a worker thread")
            })
            .collect();
        let state = Arc::new(routes::AppState {
            jobs: jobs.clone(),
            files: files.clone(),
            metrics,
            api_keys: config.api_keys.clone(),
            public_url: public_url.clone(),
        });
        let app = router(state, config.max_body_bytes);
        let sweeper = files.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let files = sweeper.clone();
                let _ = tokio::task::spawn_blocking(move || files.sweep()).await;
            }
        });
        let handle = axum_server::Handle::new();
        let serving = match &config.tls {
            Some((cert, key)) => {
                let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                    .await
                    .map_err(|source| ServerError::Tls {
                        cert: cert.clone(),
                        key: key.clone(),
                        source,
                    })?;
                let server = axum_server::from_tcp_rustls(listener, tls)
                    .map_err(|source| ServerError::Bind { addr, source })?
                    .handle(handle.clone());
                tokio::spawn(async move {
                    if let Err(e) = server.serve(app.into_make_service()).await {
                        tracing::error!("server stopped: {e}");
                    }
                })
            }
            None => {
                let server = axum_server::from_tcp(listener)
                    .map_err(|source| ServerError::Bind { addr, source })?
                    .handle(handle.clone());
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
            jobs,
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

    /// Stops taking requests, finishes the queued and running ones, then stops serving.
    pub async fn shutdown(self) {
        self.stop(false).await;
    }

    /// Stops taking requests, cancels the queued and running ones, then stops serving.
    pub async fn abort(self) {
        self.stop(true).await;
    }

    async fn stop(self, cancel: bool) {
        if cancel {
            self.jobs.cancel_all();
        }
        self.jobs.close();
        let workers = self.workers;
        let _ = tokio::task::spawn_blocking(move || {
            for worker in workers {
                let _ = worker.join();
            }
        })
        .await;
        self.handle.graceful_shutdown(Some(Duration::from_secs(5)));
        let _ = self.serving.await;
    }
}

fn router(state: Arc<routes::AppState>, max_body: usize) -> Router {
    let app = format!("/{}", routes::APP);
    let queue = format!("/queue/{}", routes::APP);
    Router::new()
        .route(&app, post(routes::run_sync))
        .route(&queue, post(routes::submit))
        .route(&format!("{queue}/requests/{{id}}"), get(routes::result))
        .route(&format!("{queue}/requests/{{id}}/status"), get(routes::status))
        .route(
            &format!("{queue}/requests/{{id}}/status/stream"),
            get(routes::status_stream),
        )
        .route(&format!("{queue}/requests/{{id}}/cancel"), put(routes::cancel))
        .route("/files/{name}", get(routes::file))
        .route("/health", get(routes::health))
        .route("/metrics", get(routes::metrics))
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::map_response(add_request_id))
        .with_state(state)
}
