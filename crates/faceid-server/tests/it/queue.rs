//! The queue: submit, status with logs, the status stream, result, cancel, a full queue.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{agent, input, send, start};

const QUEUE: &str = "/queue/fal-ai/ip-adapter-face-id";

fn wait_done(status_url: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (code, _, status) = send("GET", &format!("{status_url}?logs=1"), None, None);
        match status["status"].as_str() {
            Some("COMPLETED") => {
                assert_eq!(code, 200);
                return status;
            }
            Some("IN_QUEUE") => {
                assert_eq!(code, 202);
                assert!(status["queue_position"].is_u64(), "{status}");
            }
            Some("IN_PROGRESS") => {
                assert_eq!(code, 202);
                assert!(status.get("logs").is_some(), "{status}");
            }
            _ => panic!("unexpected status {status}"),
        }
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the request is running.
fn wait_running(status_url: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while send("GET", status_url, None, None).2["status"] != "IN_PROGRESS" {
        assert!(Instant::now() < deadline, "never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn submit_status_and_result_follow_the_fal_protocol() {
    let server = start(|_| {});
    let (code, id, accepted) = send(
        "POST",
        &format!("{}{QUEUE}", server.url),
        Some(&input(3)),
        None,
    );
    assert_eq!(code, 200, "{accepted}");
    assert_eq!(accepted["status"], "IN_QUEUE");
    assert_eq!(accepted["request_id"], id.as_str());
    let base = format!("{}{QUEUE}/requests/{id}", server.url);
    assert_eq!(accepted["response_url"], base.as_str());
    assert_eq!(accepted["status_url"], format!("{base}/status").as_str());
    assert_eq!(accepted["cancel_url"], format!("{base}/cancel").as_str());
    assert!(accepted["queue_position"].is_u64());

    let status = wait_done(accepted["status_url"].as_str().unwrap());
    assert!(status.get("error").is_none(), "{status}");
    assert!(status["metrics"]["inference_time"].as_f64().unwrap() > 0.0);
    let logs = status["logs"].as_array().unwrap();
    let messages: Vec<&str> = logs
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    for step in ["step 1/3", "step 2/3", "step 3/3"] {
        assert!(messages.contains(&step), "{messages:?}");
    }
    for log in logs {
        assert_eq!(log["source"], "USER");
        assert!(log["timestamp"].as_str().unwrap().ends_with('Z'), "{log}");
    }
    let (code, rid, result) = send("GET", &base, None, None);
    assert_eq!(code, 200, "{result}");
    assert_eq!(rid, id);
    assert_eq!(result["seed"], 7);
    let (code, _, out) = send("PUT", &format!("{base}/cancel"), None, None);
    assert_eq!(
        (code, out["status"].as_str()),
        (400, Some("ALREADY_COMPLETED"))
    );
    let missing = format!(
        "{}{QUEUE}/requests/00000000-0000-0000-0000-000000000000",
        server.url
    );
    assert_eq!(send("GET", &format!("{missing}/status"), None, None).0, 404);
    let (code, _, out) = send("PUT", &format!("{missing}/cancel"), None, None);
    assert_eq!((code, out["status"].as_str()), (404, Some("NOT_FOUND")));
}

#[test]
fn the_status_stream_sends_each_change_and_ends_after_completion() {
    let server = start(|_| {});
    let (_, id, _) = send(
        "POST",
        &format!("{}{QUEUE}", server.url),
        Some(&input(3)),
        None,
    );
    let url = format!("{}{QUEUE}/requests/{id}/status/stream", server.url);
    let response = agent().get(&url).call().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let reader = BufReader::new(response.into_body().into_reader());
    let events: Vec<Value> = reader
        .lines()
        .map(Result::unwrap)
        .filter_map(|l| {
            l.strip_prefix("data:")
                .map(|d| serde_json::from_str(d.trim()).unwrap())
        })
        .collect();
    let last = events.last().expect("events");
    assert_eq!(last["status"], "COMPLETED", "{events:?}");
    assert!(events.len() >= 3, "each step is a change: {events:?}");
    assert!(events.iter().all(|e| e["request_id"] == id.as_str()));
    // Each event carries only the new log lines (the JS client appends them): together they are
    // the request's log, once each.
    let streamed: Vec<Value> = events
        .iter()
        .flat_map(|e| e["logs"].as_array().cloned().unwrap_or_default())
        .collect();
    let status_url = format!("{}{QUEUE}/requests/{id}/status?logs=1", server.url);
    let full = send("GET", &status_url, None, None).2["logs"].clone();
    assert_eq!(Value::Array(streamed.clone()), full);
    let steps: Vec<&str> = streamed
        .iter()
        .filter_map(|l| l["message"].as_str().filter(|m| m.starts_with("step ")))
        .collect();
    assert_eq!(steps, ["step 1/3", "step 2/3", "step 3/3"]);
}

#[test]
fn cancel_stops_a_queued_request_before_it_runs_and_a_running_one_at_the_next_step() {
    let server = start(|_| {});
    let submit = format!("{}{QUEUE}", server.url);
    let (_, running, _) = send("POST", &submit, Some(&input(200)), None);
    let running_base = format!("{}{QUEUE}/requests/{running}", server.url);
    wait_running(&format!("{running_base}/status"));
    let (_, queued, accepted) = send("POST", &submit, Some(&input(2)), None);
    assert_eq!(
        accepted["queue_position"], 0,
        "first in line behind the running one"
    );
    let queued_base = format!("{}{QUEUE}/requests/{queued}", server.url);

    let (code, _, out) = send("PUT", &format!("{queued_base}/cancel"), None, None);
    assert_eq!(
        (code, out["status"].as_str()),
        (202, Some("CANCELLATION_REQUESTED"))
    );
    let status = wait_done(&format!("{queued_base}/status"));
    assert_eq!(status["error_type"], "RequestCancelled", "{status}");
    let (code, _, _) = send("GET", &queued_base, None, None);
    assert_eq!(code, 400);

    let (code, _, out) = send("PUT", &format!("{running_base}/cancel"), None, None);
    assert_eq!(
        (code, out["status"].as_str()),
        (202, Some("CANCELLATION_REQUESTED"))
    );
    let status = wait_done(&format!("{running_base}/status"));
    assert_eq!(status["error_type"], "RequestCancelled", "{status}");
    let steps = status["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["message"].as_str().unwrap().starts_with("step "))
        .count();
    assert!(steps < 200, "stopped early, after {steps} steps");
    // The queued request never ran: no step was logged for it.
    let status = send("GET", &format!("{queued_base}/status?logs=1"), None, None).2;
    assert!(
        status["logs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| !l["message"].as_str().unwrap().starts_with("step"))
    );
}

#[test]
fn a_full_queue_answers_429_with_a_clear_message() {
    let server = start(|c| c.queue_capacity = 1);
    let submit = format!("{}{QUEUE}", server.url);
    let (_, running, _) = send("POST", &submit, Some(&input(200)), None);
    let running_base = format!("{}{QUEUE}/requests/{running}", server.url);
    wait_running(&format!("{running_base}/status"));
    let (code, waiting, _) = send("POST", &submit, Some(&input(1)), None);
    assert_eq!(code, 200);
    let (code, _, out) = send("POST", &submit, Some(&input(1)), None);
    assert_eq!(code, 429, "{out}");
    assert!(
        out["detail"].as_str().unwrap().contains("queue is full"),
        "{out}"
    );
    // Cancelling frees the room; nothing accepted is lost.
    send("PUT", &format!("{running_base}/cancel"), None, None);
    let done = wait_done(&format!("{}{QUEUE}/requests/{waiting}/status", server.url));
    assert!(done.get("error").is_none(), "{done}");
}

/// A webhook receiver on loopback: answers 500 to the first delivery, 200 after; keeps bodies.
fn receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let mut seen = seen.lock().unwrap();
            seen.push(serde_json::from_slice(&body).unwrap());
            let status = if seen.len() == 1 {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (url, bodies)
}

#[test]
fn webhooks_are_delivered_with_retries() {
    let (hook, bodies) = receiver();
    let hook_host = hook
        .trim_start_matches("http://")
        .trim_end_matches("/hook")
        .to_string();
    let server = start(|c| {
        c.fetch.allow_hosts = vec![hook_host];
        c.webhooks.first_delay = Duration::from_millis(50);
    });
    let submit = format!("{}{QUEUE}?fal_webhook={hook}", server.url);
    let (code, id, accepted) = send("POST", &submit, Some(&input(1)), None);
    assert_eq!(code, 200, "{accepted}");
    wait_done(accepted["status_url"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while bodies.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "webhook not retried");
        std::thread::sleep(Duration::from_millis(20));
    }
    let bodies = bodies.lock().unwrap();
    assert_eq!(bodies[0], bodies[1], "the retry sends the same body");
    let body = &bodies[1];
    assert_eq!(body["request_id"], id.as_str());
    assert_eq!(body["status"], "OK");
    assert_eq!(body["payload"]["seed"], 7);
    assert_eq!(body["payload"]["image"]["width"], 512);

    // Webhooks to internal addresses that are not allowed are refused at submission.
    let open = start(|_| {});
    let refused = format!("{}{QUEUE}?fal_webhook=http://127.0.0.1:9/hook", open.url);
    let (code, _, out) = send("POST", &refused, Some(&input(1)), None);
    assert_eq!(code, 422, "{out}");
    assert_eq!(out["detail"][0]["loc"][1], "fal_webhook");
}

#[test]
fn accepted_requests_and_results_survive_a_restart() {
    let data = std::env::temp_dir().join(format!("faceid-server-{}-data", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let configure = |c: &mut faceid_server::ServerConfig| c.data_dir = Some(data.clone());
    let mut first = start(configure);
    let submit = format!("{}{QUEUE}", first.url);
    let (_, done_id, done) = send("POST", &submit, Some(&input(1)), None);
    wait_done(done["status_url"].as_str().unwrap());
    let (_, long_id, long) = send("POST", &submit, Some(&input(200)), None);
    wait_running(long["status_url"].as_str().unwrap());
    let (_, waiting_id, _) = send("POST", &submit, Some(&input(1)), None);
    // Stop while one request runs and one waits: both are kept.
    let server = first.server.take().unwrap();
    first.runtime.block_on(server.shutdown(Duration::ZERO));
    drop(first);

    let second = start(configure);
    let base = |id: &str| format!("{}{QUEUE}/requests/{id}", second.url);
    let (code, _, result) = send("GET", &base(&done_id), None, None);
    assert_eq!(code, 200, "a completed result is still there: {result}");
    assert_eq!(result["seed"], 7);
    let status = send("GET", &format!("{}/status", base(&long_id)), None, None).2;
    assert!(
        matches!(status["status"].as_str(), Some("IN_QUEUE" | "IN_PROGRESS")),
        "{status}"
    );
    send("PUT", &format!("{}/cancel", base(&long_id)), None, None);
    let status = wait_done(&format!("{}/status", base(&waiting_id)));
    assert!(
        status.get("error").is_none(),
        "the waiting request ran after the restart: {status}"
    );
    assert_eq!(send("GET", &base(&waiting_id), None, None).2["seed"], 7);
}

#[test]
fn queued_requests_of_the_same_shape_run_as_one_batch() {
    let server = start(|c| c.max_batch = 4);
    let submit = format!("{}{QUEUE}", server.url);
    let (_, blocker, _) = send("POST", &submit, Some(&input(200)), None);
    let blocker_base = format!("{}{QUEUE}/requests/{blocker}", server.url);
    wait_running(&format!("{blocker_base}/status"));
    let mut a = input(2);
    a["seed"] = serde_json::json!(1);
    let mut b = input(2);
    b["seed"] = serde_json::json!(2);
    b["prompt"] = serde_json::json!("another prompt");
    let mut other_shape = input(3);
    other_shape["seed"] = serde_json::json!(3);
    let ids: Vec<String> = [&a, &b, &other_shape]
        .iter()
        .map(|body| send("POST", &submit, Some(body), None).1)
        .collect();
    send("PUT", &format!("{blocker_base}/cancel"), None, None);
    let mut logs = Vec::new();
    for (id, seed) in ids.iter().zip([1, 2, 3]) {
        let status = wait_done(&format!("{}{QUEUE}/requests/{id}/status", server.url));
        assert!(status.get("error").is_none(), "{status}");
        let result = send(
            "GET",
            &format!("{}{QUEUE}/requests/{id}", server.url),
            None,
            None,
        )
        .2;
        assert_eq!(result["seed"], seed);
        logs.push(status["logs"].to_string());
    }
    assert!(logs[0].contains("batched with 1 other"), "{}", logs[0]);
    assert!(logs[1].contains("batched with 1 other"), "{}", logs[1]);
    assert!(
        !logs[2].contains("batched"),
        "a different step count runs on its own: {}",
        logs[2]
    );
}

#[test]
fn results_are_forgotten_after_the_retention_time() {
    let server = start(|c| c.retention = Duration::from_secs(1));
    let submit = format!("{}{QUEUE}", server.url);
    let (_, id, accepted) = send("POST", &submit, Some(&input(1)), None);
    wait_done(accepted["status_url"].as_str().unwrap());
    let result = send(
        "GET",
        accepted["response_url"].as_str().unwrap(),
        None,
        None,
    )
    .2;
    let file = result["image"]["url"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _, _) = send("GET", accepted["status_url"].as_str().unwrap(), None, None);
        if status == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "request {id} still known after its retention"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        send("GET", &file, None, None).0,
        404,
        "its image is gone too"
    );
}
