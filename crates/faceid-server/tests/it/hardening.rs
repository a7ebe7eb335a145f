//! Resources held by requests: inputs dropped once completed, webhooks and URL fetches off the
//! worker threads, run-and-wait requests cancelled when their client leaves, fal's key scheme.

use std::collections::HashSet;
use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::child::ChildServer;
use crate::common::{http_response, input, send, start, stub};
use crate::storage::{fresh_dir, wait_done};

const RUN: &str = "/fal-ai/ip-adapter-face-id";
const QUEUE: &str = "/queue/fal-ai/ip-adapter-face-id";

/// A request whose face is `mib` MiB of bytes that are no image: it fails as soon as it runs.
fn large_failing_input(mib: usize) -> Value {
    let junk = base64::engine::general_purpose::STANDARD.encode(vec![7u8; mib << 20]);
    json!({"prompt": "x", "face_image_url": format!("data:image/png;base64,{junk}"), "num_samples": 1})
}

fn metric(server_url: &str, line: &str) -> Option<u64> {
    let text = send("GET", &format!("{server_url}/metrics"), None, None).2;
    text.as_str()?
        .lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
}

/// Waits until a metric reaches `value`.
fn wait_metric(server_url: &str, line: &str, value: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(server_url, line) != Some(value) {
        assert!(
            Instant::now() < deadline,
            "{line} is {:?}, not {value}",
            metric(server_url, line)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn completed_requests_keep_no_input() {
    let data = fresh_dir("inputs");
    let server = ChildServer::spawn(json!({"data_dir": data.to_str().unwrap()}));
    let submit = format!("{}{QUEUE}", server.url);
    // One first, so that the models are loaded before measuring.
    let (_, _, first) = send("POST", &submit, Some(&large_failing_input(1)), None);
    wait_done(first["status_url"].as_str().unwrap(), None);
    let before = server.status("VmRSS");
    let count = 24;
    let accepted: Vec<Value> = (0..count)
        .map(|_| {
            let (code, _, out) = send("POST", &submit, Some(&large_failing_input(4)), None);
            assert_eq!(code, 200, "{out}");
            let status = wait_done(out["status_url"].as_str().unwrap(), None);
            assert_eq!(status["error_type"], "InputError", "{status}");
            out
        })
        .collect();
    let after = server.status("VmRSS");
    let growth_mib = after.saturating_sub(before) as f64 / 1024.0;
    eprintln!(
        "{count} completed requests with 4 MiB inputs: resident {:.1} MiB before, {:.1} MiB after (+{growth_mib:.1} MiB)",
        before as f64 / 1024.0,
        after as f64 / 1024.0
    );
    assert!(
        growth_mib < 24.0,
        "resident memory grew by {growth_mib:.1} MiB"
    );
    // On disk: the outcome and logs, not the input.
    for out in &accepted {
        let id = out["request_id"].as_str().unwrap();
        let stored = std::fs::read_to_string(data.join(format!("{id}.json"))).unwrap();
        assert!(stored.len() < 64 << 10, "{} bytes", stored.len());
        let stored: Value = serde_json::from_str(&stored).unwrap();
        assert!(stored["input"].is_null(), "{}", stored["input"]);
        assert!(stored["outcome"]["status_code"] == 422, "{stored}");
        let (code, _, result) = send("GET", out["response_url"].as_str().unwrap(), None, None);
        assert_eq!(code, 422, "{result}");
    }
}

/// A webhook receiver on loopback that takes `delay` to answer each delivery (200); keeps the
/// bodies.
fn slow_receiver(delay: Duration) -> (String, Arc<Mutex<Vec<Value>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || {
                use std::io::{BufRead, BufReader, Read};
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                std::thread::sleep(delay);
                seen.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                let mut stream = stream;
                let _ = stream.write_all(&http_response("200 OK", &[], b""));
            });
        }
    });
    (host, bodies)
}

#[test]
fn pending_webhooks_hold_no_threads_and_are_all_delivered() {
    let (host, bodies) = slow_receiver(Duration::from_millis(400));
    let server = ChildServer::spawn(json!({
        "allow_hosts": [host],
        "webhook_concurrency": 4,
        "queue_capacity": 200,
    }));
    let submit = format!("{}{QUEUE}?fal_webhook=http://{host}/hook", server.url);
    // Warm up (models loaded, the runtime's threads started).
    let (_, _, first) = send("POST", &submit, Some(&large_failing_input(0)), None);
    wait_done(first["status_url"].as_str().unwrap(), None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while bodies.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the first webhook was not delivered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let baseline = server.status("Threads");
    let count = 40;
    let ids: HashSet<String> = (0..count)
        .map(|_| {
            let (code, id, out) = send("POST", &submit, Some(&large_failing_input(0)), None);
            assert_eq!(code, 200, "{out}");
            id
        })
        .collect();
    let mut most = baseline;
    let deadline = Instant::now() + Duration::from_secs(120);
    while bodies.lock().unwrap().len() < count + 1 {
        most = most.max(server.status("Threads"));
        assert!(Instant::now() < deadline, "webhooks not all delivered");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("{count} webhooks: {baseline} threads before, at most {most} while delivering");
    assert!(
        most <= baseline + 8,
        "threads grew from {baseline} to {most} with {count} webhooks pending"
    );
    let delivered: HashSet<String> = bodies.lock().unwrap()[1..]
        .iter()
        .map(|b| b["request_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(delivered, ids);
}

#[test]
fn a_slow_url_delays_only_its_own_request() {
    let face = std::fs::read(crate::common::root().join("tests/data/faces/astronaut.png")).unwrap();
    let slow = stub(Duration::from_secs(12), move |_| {
        http_response("200 OK", &[("Content-Type", "image/png")], &face)
    });
    let server = start(|c| c.fetch.allow_hosts = vec![slow.clone()]);
    let submit = format!("{}{QUEUE}", server.url);
    let mut behind = input(1);
    behind["face_image_url"] = json!(format!("http://{slow}/face.png"));
    let (code, _, slow_accepted) = send("POST", &submit, Some(&behind), None);
    assert_eq!(code, 200, "{slow_accepted}");
    let started = Instant::now();
    let (code, _, quick) = send("POST", &submit, Some(&input(1)), None);
    assert_eq!(code, 200, "{quick}");
    let done = wait_done(quick["status_url"].as_str().unwrap(), None);
    assert!(done.get("error").is_none(), "{done}");
    let (_, _, slow_status) = send(
        "GET",
        slow_accepted["status_url"].as_str().unwrap(),
        None,
        None,
    );
    assert_ne!(
        slow_status["status"],
        "COMPLETED",
        "the request behind the slow URL finished first ({:?})",
        started.elapsed()
    );
    let done = wait_done(slow_accepted["status_url"].as_str().unwrap(), None);
    assert!(done.get("error").is_none(), "{done}");
}

#[test]
fn a_run_and_wait_request_whose_client_left_is_cancelled_and_counted() {
    let server = start(|_| {});
    let addr = server.url.trim_start_matches("http://").to_string();
    let depth = || {
        let health = send("GET", &format!("{}/health", server.url), None, None).2;
        (
            health["queued"].as_u64().unwrap(),
            health["running"].as_u64().unwrap(),
        )
    };
    let wait_for = |wanted: (u64, u64)| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while depth() != wanted {
            assert!(
                Instant::now() < deadline,
                "queue never reached {wanted:?}: {:?}",
                depth()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let open = |body: &Value| {
        let text = body.to_string();
        let mut stream = TcpStream::connect(&addr).unwrap();
        write!(
            stream,
            "POST {RUN} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        )
        .unwrap();
        stream
    };
    let running = open(&input(200));
    wait_for((0, 1));
    let queued = open(&input(2));
    wait_for((1, 1));
    drop(queued);
    wait_for((0, 1));
    let cancelled = "faceid_requests_total{outcome=\"cancelled\"}";
    wait_metric(&server.url, cancelled, 1);
    drop(running);
    wait_for((0, 0));
    wait_metric(&server.url, cancelled, 2);
    assert_eq!(
        metric(&server.url, "faceid_requests_total{outcome=\"succeeded\"}"),
        Some(0)
    );
    // The queue route's cancel of a queued request is counted too.
    let submit = format!("{}{QUEUE}", server.url);
    let blocker = open(&input(200));
    wait_for((0, 1));
    let (_, _, accepted) = send("POST", &submit, Some(&input(1)), None);
    send("PUT", accepted["cancel_url"].as_str().unwrap(), None, None);
    assert_eq!(metric(&server.url, cancelled), Some(3));
    drop(blocker);
}

#[test]
fn only_fals_key_scheme_is_accepted() {
    let server = start(|c| c.api_keys = vec!["k1".into()]);
    let status_code = |auth: &str| {
        let agent = crate::common::agent();
        agent
            .get(&format!(
                "{}{QUEUE}/requests/00000000-0000-0000-0000-000000000000/status",
                server.url
            ))
            .header("authorization", auth)
            .call()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(
        status_code("Key k1"),
        404,
        "the right key reaches the route"
    );
    for wrong in [
        "Bearer k1",
        "Key  k1",
        "Key k1 k1",
        "key k1",
        "Keyk1",
        "k1",
        "Key \tk1",
    ] {
        assert_eq!(status_code(wrong), 401, "{wrong:?}");
    }
}
