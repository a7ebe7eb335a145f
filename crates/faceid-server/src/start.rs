//! What `Server::start` starts besides the HTTP server: the in-process queue with its worker
//! threads, or an API node's view of the queue shared through Redis.

use std::sync::Arc;
use std::time::Duration;

use crate::models::Models;
use crate::{
    ServerConfig, ServerError, SharedQueue, engine, jobs, keys, metrics, output, prefetch, queue,
    redis_queue, store, webhook,
};

/// The in-process queue: restored from the data folder, with its URL fetcher, its worker
/// threads on `models`, and the sweep of expired results.
pub(crate) fn local(
    config: &ServerConfig,
    models: Models,
    files: &Arc<output::Files>,
    metrics: &Arc<metrics::Metrics>,
) -> Result<(queue::Queue, keys::Keys, Vec<std::thread::JoinHandle<()>>), ServerError> {
    let store = match &config.data_dir {
        Some(dir) => Some(store::Store::open(dir).map_err(|source| ServerError::Data {
            dir: dir.clone(),
            source,
        })?),
        None => None,
    };
    let salt = store
        .as_ref()
        .map_or_else(keys::random_salt, store::Store::salt);
    let keys = keys::Keys::new(salt, &config.api_keys);
    let jobs = Arc::new(jobs::Jobs::new(config.queue_capacity, store));
    let (completed, requeued) = jobs.restore(&keys);
    if completed + requeued > 0 {
        tracing::info!(completed, requeued, "restored the requests of the last run");
    }
    let runtime = tokio::runtime::Handle::current();
    let prefetcher = Arc::new(prefetch::Prefetcher::new(
        jobs.clone(),
        config.fetch.clone(),
        runtime.clone(),
    ));
    for (id, input) in jobs.to_fetch() {
        prefetcher.schedule(id, input);
    }
    let context = Arc::new(engine::Context {
        models,
        jobs: jobs.clone(),
        files: files.clone(),
        fetch: config.fetch.clone(),
        webhooks: webhook::Deliveries::new(config.webhooks.clone(), config.fetch.clone(), runtime),
        metrics: metrics.clone(),
        max_batch: config.max_batch,
    });
    let workers = (0..config.concurrency.max(1))
        .map(|i| {
            let ctx = context.clone();
            std::thread::Builder::new()
                .name(format!("faceid-worker-{i}"))
                .spawn(move || engine::worker(ctx))
                .expect("spawn a worker thread")
        })
        .collect();
    // Results (files and completed requests) are forgotten after the retention time.
    let (sweep_files, sweep_jobs, retention) = (files.clone(), jobs.clone(), config.retention);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(
            Duration::from_secs(60)
                .min(retention)
                .max(Duration::from_millis(100)),
        );
        loop {
            tick.tick().await;
            let (files, jobs) = (sweep_files.clone(), sweep_jobs.clone());
            let _ = tokio::task::spawn_blocking(move || {
                files.sweep();
                jobs.sweep(retention);
            })
            .await;
        }
    });
    let local = queue::Local {
        jobs,
        prefetcher,
        metrics: metrics.clone(),
    };
    Ok((queue::Queue::Local(local), keys, workers))
}

/// An API node's queue: the one in Redis, with the key salt every API node shares (so that a
/// request submitted through one node is its key's on every node).
pub(crate) async fn shared(
    config: &ServerConfig,
    shared: &SharedQueue,
) -> Result<(queue::Queue, keys::Keys), ServerError> {
    let settings = redis_queue::QueueSettings {
        prefix: shared.prefix.clone(),
        capacity: config.queue_capacity,
        retention: config.retention,
        ..redis_queue::QueueSettings::default()
    };
    let url = shared.url.clone();
    let opened = tokio::task::spawn_blocking(move || {
        let redis = redis_queue::RedisQueue::open(&url, settings)?;
        let salt = redis.key_salt()?;
        Ok((redis, salt))
    })
    .await
    .expect("opening the shared queue does not panic");
    let (redis, salt) = opened.map_err(|source| ServerError::Queue {
        url: redis_queue::redacted(&shared.url),
        source,
    })?;
    let queue = queue::Queue::Shared(queue::Shared::new(Arc::new(redis)));
    Ok((queue, keys::Keys::new(salt, &config.api_keys)))
}
