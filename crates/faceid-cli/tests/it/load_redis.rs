//! The load test of the shared queue, run when FACEID_LOAD_TEST is set (`cargo xtask loadtest
//! --redis`): a real redis-server, two API nodes and 1, then 2 `faceid worker` processes on the
//! tiny models. N clients each submit M requests (alternating nodes, retrying 429), each with a
//! webhook, and poll them to completion. With 2 workers one of them is killed (`kill -9`) a
//! third of the way through and replaced. Prints completed, lost, duplicates (webhooks beyond one
//! per request), reclaimed, latency percentiles and throughput; fails on any loss or duplicate.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use faceid_server::testing::RedisServer;
use serde_json::json;

use crate::scale_out::{api_node, call, input, metric, request_url, webhook_receiver};
use crate::worker::worker_for;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Run {
    completed: usize,
    lost: usize,
    duplicates: usize,
    reclaimed: f64,
    rejected: usize,
    latencies: Vec<f64>,
    seconds: f64,
}

fn run(workers: usize, clients: usize, per_client: usize, capacity: usize) -> Run {
    let redis = RedisServer::start();
    let (hook_port, hooks) = webhook_receiver();
    let hook_host = format!("127.0.0.1:{hook_port}");
    let capacity = capacity.to_string();
    let options = [
        "--queue-capacity",
        capacity.as_str(),
        "--allow-fetch-host",
        &hook_host,
    ];
    let (_a, a) = api_node(&redis, &options);
    let (_b, b) = api_node(&redis, &options);
    let worker_options = ["--allow-fetch-host", hook_host.as_str()];
    let mut pool: Vec<_> = (0..workers)
        .map(|i| worker_for(&redis, &format!("w{i}"), &a, &worker_options))
        .collect();
    let total = clients * per_client;
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|client| {
            let nodes = [a.clone(), b.clone()];
            let hook = format!("http://{hook_host}/hook");
            std::thread::spawn(move || {
                let (mut latencies, mut ids) = (Vec::new(), Vec::new());
                let (mut rejected, mut lost) = (0usize, 0usize);
                for i in 0..per_client {
                    let node = &nodes[(client + i) % 2];
                    let seed = (client * 1000 + i) as u64;
                    let body = input(seed, 2);
                    let submit =
                        format!("{node}/queue/fal-ai/ip-adapter-face-id?fal_webhook={hook}");
                    let t0 = Instant::now();
                    let accepted = loop {
                        let (code, out) = call("POST", &submit, None, Some(&body));
                        match code {
                            200 => break out,
                            429 => {
                                rejected += 1;
                                std::thread::sleep(Duration::from_millis(200));
                            }
                            other => panic!("submit answered {other}: {out}"),
                        }
                    };
                    let id = accepted["request_id"].as_str().unwrap().to_string();
                    // Polled through the other node.
                    let other = &nodes[(client + i + 1) % 2];
                    let status_url = format!("{}/status", request_url(other, &id));
                    let deadline = Instant::now() + Duration::from_secs(1800);
                    let done = loop {
                        let (_, status) = call("GET", &status_url, None, None);
                        if status["status"] == "COMPLETED" {
                            break Some(status);
                        }
                        if Instant::now() > deadline {
                            break None;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    };
                    let (code, result) = call("GET", &request_url(other, &id), None, None);
                    let ok = done.is_some_and(|s| s.get("error").is_none())
                        && code == 200
                        && result["seed"] == json!(seed);
                    if ok {
                        latencies.push(t0.elapsed().as_secs_f64());
                    } else {
                        lost += 1;
                    }
                    ids.push(id);
                }
                (latencies, ids, rejected, lost)
            })
        })
        .collect();
    if workers > 1 {
        // Kill a worker a third of the way through (mid-request, most likely) and replace it.
        let a_metrics = a.clone();
        while metric(
            &a_metrics,
            "faceid_shared_requests_total{outcome=\"succeeded\"}",
        ) < (total / 3) as f64
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut victim = pool.remove(0);
        victim.0.kill().unwrap();
        victim.0.wait().unwrap();
        pool.push(worker_for(&redis, "w-replacement", &a, &worker_options));
    }
    let (mut latencies, mut ids) = (Vec::new(), Vec::new());
    let (mut rejected, mut lost) = (0, 0);
    for handle in handles {
        let (l, i, r, x) = handle.join().unwrap();
        latencies.extend(l);
        ids.extend(i);
        rejected += r;
        lost += x;
    }
    let seconds = started.elapsed().as_secs_f64();
    // Every webhook that arrives within a few seconds more, per request.
    let mut webhooks: HashMap<String, usize> = HashMap::new();
    while let Ok(hook) = hooks.recv_timeout(Duration::from_secs(3)) {
        let id = hook["request_id"].as_str().unwrap_or_default().to_string();
        *webhooks.entry(id).or_default() += 1;
    }
    let duplicates = webhooks.values().map(|n| n.saturating_sub(1)).sum();
    let missing = ids.iter().filter(|id| !webhooks.contains_key(*id)).count();
    assert_eq!(missing, 0, "requests without a webhook");
    let reclaimed = metric(&a, "faceid_shared_reclaimed_total");
    latencies.sort_by(f64::total_cmp);
    Run {
        completed: latencies.len(),
        lost,
        duplicates,
        reclaimed,
        rejected,
        latencies,
        seconds,
    }
}

#[test]
fn shared_queue_load_test_loses_and_repeats_nothing() {
    if std::env::var_os("FACEID_LOAD_TEST").is_none() {
        eprintln!("shared-queue load test skipped: set FACEID_LOAD_TEST=1 to run it");
        return;
    }
    let clients = env("FACEID_LOAD_CLIENTS", 8);
    let per_client = env("FACEID_LOAD_REQUESTS", 4);
    let capacity = env("FACEID_LOAD_QUEUE", 8);
    eprintln!(
        "shared-queue load test: {clients} clients x {per_client} requests (2 steps, 512x512), \
         queue {capacity}, 2 API nodes"
    );
    eprintln!(
        "| workers | completed | lost | duplicates | reclaimed | 429 (retried) | p50 s | p99 s | req/s |"
    );
    eprintln!("|---|---|---|---|---|---|---|---|---|");
    for workers in [1, 2] {
        let run = run(workers, clients, per_client, capacity);
        let pct = |p: f64| run.latencies[((run.latencies.len() as f64 - 1.0) * p).round() as usize];
        let note = if workers > 1 {
            " (one killed, replaced)"
        } else {
            ""
        };
        eprintln!(
            "| {workers}{note} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.3} |",
            run.completed,
            run.lost,
            run.duplicates,
            run.reclaimed,
            run.rejected,
            pct(0.5),
            pct(0.99),
            run.completed as f64 / run.seconds,
        );
        assert_eq!(run.lost, 0, "accepted requests were lost");
        assert_eq!(run.duplicates, 0, "requests were completed twice");
        assert_eq!(run.completed, clients * per_client);
    }
}
