//! `faceid serve`: the fal `fal-ai/ip-adapter-face-id` API on this machine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use faceid_core::{DeviceKind, Precision};
use faceid_server::{FetchPolicy, Models, Server, ServerConfig, WebhookPolicy};

use crate::CliError;
use crate::fetch::WeightsArgs;

#[derive(Args)]
#[command(
    after_help = "Logs go to stderr: FACEID_LOG sets the level (info by default; debug, warn, ...), \
FACEID_LOG_FORMAT=json writes one JSON object per line. Hugging Face downloads honour HF_HOME, \
HF_HUB_CACHE, HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE."
)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "FACEID_BIND", default_value = "127.0.0.1:8000")]
    bind: SocketAddr,
    /// The URL clients reach this server at, used in the URLs it returns
    /// (default: http(s)://BIND).
    #[arg(long, env = "FACEID_PUBLIC_URL")]
    public_url: Option<String>,
    /// PEM certificate: serve HTTPS (the fal Python client speaks only HTTPS). Needs --tls-key.
    #[arg(long, env = "FACEID_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "FACEID_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// An accepted API key (`Authorization: Key <key>`); repeatable, or comma-separated in
    /// FACEID_API_KEYS. Without keys the server is open.
    #[arg(long = "api-key", env = "FACEID_API_KEYS", value_delimiter = ',')]
    api_keys: Vec<String>,
    /// Most requests waiting in the queue; more get 429.
    #[arg(long, env = "FACEID_QUEUE_CAPACITY", default_value_t = 64)]
    queue_capacity: usize,
    /// Generations running at once on the device.
    #[arg(long, env = "FACEID_CONCURRENCY", default_value_t = 1)]
    concurrency: usize,
    /// Most queued requests of the same shape (model, size, steps, guidance) run as one batch;
    /// worth raising on a GPU.
    #[arg(long, env = "FACEID_MAX_BATCH", default_value_t = 1)]
    max_batch: usize,
    /// Where result images are written (served under /files/).
    #[arg(long, env = "FACEID_FILES_DIR")]
    files_dir: Option<PathBuf>,
    /// How long results (images, and the status and output of completed requests) are kept,
    /// in seconds.
    #[arg(long, env = "FACEID_RETENTION_SECS", default_value_t = 3600)]
    retention_secs: u64,
    /// Refuse http(s) URLs as inputs (data: URIs only).
    #[arg(long, env = "FACEID_NO_URL_FETCH")]
    no_url_fetch: bool,
    /// A host that input URLs may reach even though it is loopback or private (repeatable).
    #[arg(
        long = "allow-fetch-host",
        env = "FACEID_ALLOW_FETCH_HOSTS",
        value_delimiter = ','
    )]
    allow_fetch_hosts: Vec<String>,
    /// Where accepted requests and their results are kept, so that they survive a restart.
    /// Without it they live in memory only.
    #[arg(long, env = "FACEID_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Webhook delivery attempts (1 s, 2 s, 4 s, ... apart).
    #[arg(long, env = "FACEID_WEBHOOK_ATTEMPTS", default_value_t = 6)]
    webhook_attempts: u32,
    /// Largest request body in MiB.
    #[arg(long, env = "FACEID_MAX_BODY_MIB", default_value_t = 64)]
    max_body_mib: usize,
    /// Where the weights come from (the model type loaded at start).
    #[command(flatten)]
    weights: WeightsArgs,
    /// A local face detector ONNX model (default: the model type's, else the built-in
    /// RetinaFace).
    #[arg(long, env = "FACEID_DETECTOR")]
    detector: Option<PathBuf>,
    /// Load the models on the first request instead of at start.
    #[arg(long, env = "FACEID_LAZY")]
    lazy: bool,
    /// flex (CPU), wgpu or cuda.
    #[arg(long, env = "FACEID_DEVICE", default_value = "flex")]
    device: DeviceKind,
    /// f32 or f16 for the text encoder and UNet (the VAE stays f32); default: f16 on GPUs,
    /// f32 on the CPU.
    #[arg(long, env = "FACEID_PRECISION")]
    precision: Option<Precision>,
}

pub fn run(args: ServeArgs) -> Result<(), CliError> {
    let device = args.device.device()?;
    let local = args.weights.local(args.detector.clone());
    let precision = args
        .precision
        .unwrap_or_else(|| Precision::preferred_for(args.device));
    let models = Models::new(args.weights.weights()?, local, device, precision);
    if !args.lazy {
        let base = args
            .weights
            .base_repo
            .clone()
            .unwrap_or_else(|| faceid_pipeline::fal::DEFAULT_BASE_1_5_REPO.to_string());
        eprintln!("loading {} ({base})", args.weights.model_type);
        models.get(&args.weights.model_type, &base)?;
    }
    let config = ServerConfig {
        bind: args.bind,
        public_url: args.public_url,
        tls: args.tls_cert.zip(args.tls_key),
        api_keys: args
            .api_keys
            .into_iter()
            .filter(|k| !k.is_empty())
            .collect(),
        queue_capacity: args.queue_capacity,
        concurrency: args.concurrency,
        max_batch: args.max_batch,
        files_dir: args
            .files_dir
            .unwrap_or_else(|| std::env::temp_dir().join("faceid-files")),
        retention: Duration::from_secs(args.retention_secs),
        fetch: FetchPolicy {
            enabled: !args.no_url_fetch,
            allow_hosts: args.allow_fetch_hosts,
            ..FetchPolicy::default()
        },
        max_body_bytes: args.max_body_mib << 20,
        data_dir: args.data_dir,
        webhooks: WebhookPolicy {
            attempts: args.webhook_attempts,
            ..WebhookPolicy::default()
        },
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let server = Server::start(config, models).await?;
        eprintln!(
            "serving {} at {} (Ctrl-C stops: unfinished requests are kept with --data-dir, else finished first)",
            faceid_server::APP,
            server.public_url()
        );
        tokio::signal::ctrl_c().await?;
        eprintln!("shutting down");
        server.shutdown().await;
        Ok::<(), CliError>(())
    })
}
