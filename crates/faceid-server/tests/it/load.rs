//! A bounded load test on loopback, run when FACEID_LOAD_TEST is set: N clients each submit M
//! requests through the queue (retrying 429 as the fal clients do), poll them to completion
//! and fetch the results. Prints throughput, latency percentiles, rejections and losses;
//! fails if any accepted request is lost.

use std::time::{Duration, Instant};

use crate::common::{input, send, start};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn load_test_loses_nothing() {
    if std::env::var_os("FACEID_LOAD_TEST").is_none() {
        eprintln!("load test skipped: set FACEID_LOAD_TEST=1 to run it");
        return;
    }
    let clients = env("FACEID_LOAD_CLIENTS", 8);
    let per_client = env("FACEID_LOAD_REQUESTS", 4);
    let capacity = env("FACEID_LOAD_QUEUE", 8);
    let server = start(|c| c.queue_capacity = capacity);
    let submit = format!("{}/queue/fal-ai/ip-adapter-face-id", server.url);
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|client| {
            let submit = submit.clone();
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let (mut rejected, mut lost) = (0usize, 0usize);
                for i in 0..per_client {
                    let mut body = input(1);
                    body["seed"] = serde_json::json!(client * 1000 + i);
                    let t0 = Instant::now();
                    let accepted = loop {
                        let (code, _, out) = send("POST", &submit, Some(&body), None);
                        match code {
                            200 => break out,
                            429 => {
                                rejected += 1;
                                std::thread::sleep(Duration::from_millis(200));
                            }
                            other => panic!("submit answered {other}: {out}"),
                        }
                    };
                    let status_url = accepted["status_url"].as_str().unwrap().to_string();
                    let deadline = Instant::now() + Duration::from_secs(1800);
                    let done = loop {
                        let (_, _, status) = send("GET", &status_url, None, None);
                        if status["status"] == "COMPLETED" {
                            break Some(status);
                        }
                        if Instant::now() > deadline {
                            break None;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    };
                    let (code, _, result) = send(
                        "GET",
                        accepted["response_url"].as_str().unwrap(),
                        None,
                        None,
                    );
                    let ok = done.is_some_and(|s| s.get("error").is_none())
                        && code == 200
                        && result["seed"] == body["seed"];
                    if ok {
                        latencies.push(t0.elapsed().as_secs_f64());
                    } else {
                        lost += 1;
                    }
                }
                (latencies, rejected, lost)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let (mut rejected, mut lost) = (0, 0);
    for handle in handles {
        let (l, r, x) = handle.join().unwrap();
        latencies.extend(l);
        rejected += r;
        lost += x;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    eprintln!(
        "load test: {clients} clients x {per_client} requests, queue {capacity}: {} completed in {elapsed:.1} s \
         ({:.3} req/s), latency p50 {:.1} s p99 {:.1} s, 429 rejections {rejected} (retried), lost {lost}",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        pct(0.5),
        pct(0.99),
    );
    assert_eq!(lost, 0, "accepted requests were lost");
    assert_eq!(latencies.len(), clients * per_client);
}
