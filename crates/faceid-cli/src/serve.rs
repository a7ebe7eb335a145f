//! `faceid serve`: the fal `fal-ai/ip-adapter-face-id` API on this machine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use faceid_server::{
    ConnectionLimits, FetchPolicy, Server, ServerConfig, SharedQueue, WebhookPolicy,
};

use crate::CliError;
use crate::model_args::ModelArgs;

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
    /// Most requests waiting in the queue (with --queue: across every API node); more get
    /// 429.
    #[arg(long, env = "FACEID_QUEUE_CAPACITY", default_value_t = 64)]
    queue_capacity: usize,
    /// Generations under way at once (on a GPU they take turns on the device; raise
    /// --max-batch there).
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
    /// Requests whose input URLs are fetched at once (before they wait for a worker).
    #[arg(long, env = "FACEID_FETCH_CONCURRENCY", default_value_t = 8)]
    fetch_concurrency: usize,
    /// A `host:port` that input URLs and webhooks may reach even though it is loopback or
    /// private (repeatable); a bare host opens ports 80 and 443 only.
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
    /// Seconds that running requests get to finish after SIGTERM or Ctrl-C (new requests get
    /// 503 meanwhile); a second signal stops at once. With --data-dir, queued requests and those
    /// still running at the end are kept for the next start; without it, queued requests keep
    /// running within the grace period and the rest are cancelled.
    #[arg(long, env = "FACEID_SHUTDOWN_GRACE", default_value_t = 25)]
    shutdown_grace: u64,
    /// Webhook delivery attempts (1 s, 2 s, 4 s, ... apart).
    #[arg(long, env = "FACEID_WEBHOOK_ATTEMPTS", default_value_t = 6)]
    webhook_attempts: u32,
    /// Webhook deliveries under way at once, over all requests.
    #[arg(long, env = "FACEID_WEBHOOK_CONCURRENCY", default_value_t = 16)]
    webhook_concurrency: usize,
    /// Largest request body in MiB (413 beyond). Bodies are read only after the API key is
    /// checked.
    #[arg(long, env = "FACEID_MAX_BODY_MIB", default_value_t = 64)]
    max_body_mib: usize,
    /// Most client connections open at once; more are closed as soon as they are accepted.
    #[arg(long, env = "FACEID_MAX_CONNECTIONS", default_value_t = 512)]
    max_connections: usize,
    /// Seconds a new connection has to send its first request's headers (and finish TLS).
    #[arg(long, env = "FACEID_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    header_timeout_secs: u64,
    /// Seconds a request body has to arrive in full (408 after).
    #[arg(long, env = "FACEID_BODY_TIMEOUT_SECS", default_value_t = 60)]
    body_timeout_secs: u64,
    /// Seconds a kept-alive connection may wait for its next request, until that request's
    /// headers are complete; then it is closed.
    #[arg(long, env = "FACEID_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    idle_timeout_secs: u64,
    /// Largest body, in MiB, of a request refused for its API key that is read (and dropped) so
    /// that its client sees the 401; larger bodies are not read at all.
    #[arg(long, env = "FACEID_REFUSED_BODY_DRAIN_MIB", default_value_t = 8)]
    refused_body_drain_mib: usize,
    /// Run as an API node of a queue shared through Redis:
    /// redis://[:PASSWORD@]HOST:PORT/DB (rediss:// for TLS). Requests are stored in Redis and
    /// run by `faceid worker` processes; this process loads no model. Every API node and worker
    /// of one queue names the same queue, prefix and retention.
    #[arg(long, env = "FACEID_QUEUE", conflicts_with_all = ["data_dir", "concurrency", "max_batch"])]
    queue: Option<String>,
    /// The prefix of the shared queue's keys in Redis.
    #[arg(
        long,
        env = "FACEID_QUEUE_PREFIX",
        default_value = "faceid",
        requires = "queue"
    )]
    queue_prefix: String,
    /// Serve no playground page at `/` (the API is unchanged).
    #[arg(long, env = "FACEID_NO_PLAYGROUND")]
    no_playground: bool,
    /// The models requests run on.
    #[command(flatten)]
    models: ModelArgs,
}

pub fn run(args: ServeArgs) -> Result<(), CliError> {
    // An API node runs nothing itself: its models only say what the playground offers.
    let models = if args.queue.is_some() {
        args.models.models()?
    } else {
        args.models.load()?
    };
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
            concurrency: args.fetch_concurrency,
            ..FetchPolicy::default()
        },
        max_body_bytes: args.max_body_mib << 20,
        connections: ConnectionLimits {
            max_connections: args.max_connections,
            header_timeout: Duration::from_secs(args.header_timeout_secs),
            body_timeout: Duration::from_secs(args.body_timeout_secs),
            idle_timeout: Duration::from_secs(args.idle_timeout_secs),
            refused_body_drain: args.refused_body_drain_mib << 20,
        },
        data_dir: args.data_dir,
        playground: !args.no_playground,
        queue: args.queue.map(|url| SharedQueue {
            url,
            prefix: args.queue_prefix,
        }),
        webhooks: WebhookPolicy {
            attempts: args.webhook_attempts,
            concurrency: args.webhook_concurrency,
            ..WebhookPolicy::default()
        },
    };
    let grace = Duration::from_secs(args.shutdown_grace);
    let runtime = tokio::runtime::Runtime::new()?;
    let served = runtime.block_on(async move {
        let mut signals = Signals::new()?;
        let server = Server::start(config, models).await?;
        eprintln!(
            "serving {} at {} (SIGTERM or Ctrl-C stops: running requests get {} s to finish; \
             a second signal stops at once)",
            faceid_server::APP,
            server.public_url(),
            grace.as_secs()
        );
        let first = signals.next().await;
        eprintln!("{}: shutting down", first.name);
        tokio::select! {
            () = server.shutdown(grace) => Ok::<(), CliError>(()),
            second = signals.next() => {
                eprintln!("{}: stopping now", second.name);
                std::process::exit(128 + second.number);
            }
        }
    });
    // Webhook deliveries still under way are not waited for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    served
}

/// A stop signal.
pub(crate) struct Signal {
    pub(crate) name: &'static str,
    number: i32,
}

/// SIGTERM (what process managers send) and SIGINT (Ctrl-C).
pub(crate) struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    pub(crate) async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => Signal { name: "SIGTERM", number: 15 },
                _ = self.int.recv() => Signal { name: "SIGINT", number: 2 },
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal {
                name: "Ctrl-C",
                number: 2,
            }
        }
    }
}
