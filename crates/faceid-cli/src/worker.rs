//! `faceid worker`: runs requests from a queue shared through Redis on this machine's models.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Args;
use faceid_server::redis_queue::worker::{self, WorkerConfig};
use faceid_server::redis_queue::{QueueSettings, RedisQueue, redacted};
use faceid_server::{FetchPolicy, WebhookPolicy};

use crate::CliError;
use crate::model_args::ModelArgs;

#[derive(Args)]
#[command(
    after_help = "Every process of one queue names the same --queue, --queue-prefix, \
--visibility-secs, --max-deliveries and --retention-secs. Logs go to stderr (FACEID_LOG sets the level)."
)]
pub struct WorkerArgs {
    /// The shared queue: redis://[:PASSWORD@]HOST:PORT/DB (rediss:// for TLS).
    #[arg(long, env = "FACEID_QUEUE")]
    queue: String,
    /// The prefix of the queue's keys in Redis.
    #[arg(long, env = "FACEID_QUEUE_PREFIX", default_value = "faceid")]
    queue_prefix: String,
    /// This worker's name in the queue (default: host name and process id); unique per worker.
    #[arg(long, env = "FACEID_WORKER_NAME")]
    name: Option<String>,
    /// The URL clients reach the API nodes at, for the URLs of the images.
    #[arg(long, env = "FACEID_PUBLIC_URL")]
    public_url: String,
    /// Most requests taken at once; those of the same shape run as one batch.
    #[arg(long, env = "FACEID_MAX_BATCH", default_value_t = 1)]
    max_batch: usize,
    /// Seconds a worker may stay silent before its requests are taken over by another.
    #[arg(long, env = "FACEID_VISIBILITY_SECS", default_value_t = 60)]
    visibility_secs: u64,
    /// Deliveries after which a request that keeps stopping its workers fails.
    #[arg(long, env = "FACEID_MAX_DELIVERIES", default_value_t = 3)]
    max_deliveries: u32,
    /// How long results are kept, in seconds.
    #[arg(long, env = "FACEID_RETENTION_SECS", default_value_t = 3600)]
    retention_secs: u64,
    /// A `host:port` that input URLs may reach even though it is loopback or private
    /// (repeatable).
    #[arg(
        long = "allow-fetch-host",
        env = "FACEID_ALLOW_FETCH_HOSTS",
        value_delimiter = ','
    )]
    allow_fetch_hosts: Vec<String>,
    /// Webhook delivery attempts (1 s, 2 s, 4 s, ... apart); the worker that completes a
    /// request sends its webhook.
    #[arg(long, env = "FACEID_WEBHOOK_ATTEMPTS", default_value_t = 6)]
    webhook_attempts: u32,
    /// The models requests run on.
    #[command(flatten)]
    models: ModelArgs,
}

pub fn run(args: WorkerArgs) -> Result<(), CliError> {
    if args.visibility_secs == 0 || args.max_deliveries == 0 {
        return Err("--visibility-secs and --max-deliveries must be at least 1".into());
    }
    let settings = QueueSettings {
        prefix: args.queue_prefix.clone(),
        visibility: Duration::from_secs(args.visibility_secs),
        max_deliveries: args.max_deliveries,
        retention: Duration::from_secs(args.retention_secs),
        ..QueueSettings::default()
    };
    // The address as logged and reported: without its password.
    let address = redacted(&args.queue);
    let queue = Arc::new(
        RedisQueue::open(&args.queue, settings).map_err(|e| format!("--queue {address}: {e}"))?,
    );
    let models = args.models.load()?;
    let name = args.name.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let config = WorkerConfig {
        name: name.clone(),
        max_batch: args.max_batch,
        public_url: args.public_url.clone(),
        fetch: FetchPolicy {
            allow_hosts: args.allow_fetch_hosts.clone(),
            ..FetchPolicy::default()
        },
        poll: Duration::from_secs(1),
        webhooks: WebhookPolicy {
            attempts: args.webhook_attempts,
            ..WebhookPolicy::default()
        },
    };
    // SIGTERM or Ctrl-C: finish the batch in hand, then stop.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut signals = runtime.block_on(async { crate::serve::Signals::new() })?;
    std::thread::spawn(move || {
        let signal = runtime.block_on(signals.next());
        eprintln!("{}: stopping after the requests in hand", signal.name);
        flag.store(true, Ordering::SeqCst);
    });
    eprintln!("worker {name} taking requests from {address}");
    let completed = worker::run(queue, &models, &config, &stop);
    eprintln!("worker {name} stopped after {completed} request(s)");
    Ok(())
}
