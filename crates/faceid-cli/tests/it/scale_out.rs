//! A queue shared through a real redis-server by `faceid serve --queue` API nodes and `faceid
//! worker` processes on the tiny models: requests through either node complete once with the
//! image one process gives; status, stream, result, files, cancel and key ownership work on any
//! node; the queue's capacity holds across nodes; what a `kill -9`-ed API node accepted, and
//! what Redis held when it crashed, still completes; the webhook is sent once by the worker;
//! `rediss://` with a password.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use faceid_server::testing::RedisServer;
use serde_json::{Value, json};

use crate::generate::{faceid, temp, tiny_models};
use crate::serve::{agent, face_input, serve, serve_with};
use crate::worker::worker_for;

const APP: &str = "fal-ai/ip-adapter-face-id";

/// A process killed when dropped.
pub(crate) struct Node(pub(crate) Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An API node of the queue in `redis` (`extra`: more options); returns it and its URL.
pub(crate) fn api_node(redis: &RedisServer, extra: &[&str]) -> (Node, String) {
    let queue = redis.url();
    let mut args = vec!["--queue", queue.as_str()];
    args.extend_from_slice(extra);
    let (child, url) = serve(&args);
    (Node(child), url)
}

/// A request with `key` (none: no `Authorization`), its status code and JSON body.
pub(crate) fn call(
    method: &str,
    url: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let agent = agent();
    let auth = key.map(|k| format!("Key {k}"));
    let response = match (method, body) {
        ("POST", Some(body)) => {
            let mut request = agent.post(url).header("content-type", "application/json");
            if let Some(auth) = &auth {
                request = request.header("authorization", auth);
            }
            request.send(body.to_string())
        }
        ("PUT", _) => {
            let mut request = agent.put(url);
            if let Some(auth) = &auth {
                request = request.header("authorization", auth);
            }
            request.send_empty()
        }
        _ => {
            let mut request = agent.get(url);
            if let Some(auth) = &auth {
                request = request.header("authorization", auth);
            }
            request.call()
        }
    };
    let mut response = response.unwrap();
    let code = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn submit(node: &str, key: Option<&str>, input: &Value) -> (u16, Value) {
    call("POST", &format!("{node}/queue/{APP}"), key, Some(input))
}

pub(crate) fn request_url(node: &str, id: &str) -> String {
    format!("{node}/queue/{APP}/requests/{id}")
}

/// Polls the status of `id` on `node` until it is COMPLETED.
fn wait_completed(node: &str, key: Option<&str>, id: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (code, status) = call(
            "GET",
            &format!("{}/status?logs=1", request_url(node, id)),
            key,
            None,
        );
        if code == 200 && status["status"] == "COMPLETED" {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{id} not completed: {code} {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The bytes of the first image of a result, read from `node` (whatever host its URL names).
fn image(node: &str, result: &Value) -> Vec<u8> {
    let url = result["images"][0]["url"].as_str().expect("an image URL");
    let name = url.rsplit('/').next().unwrap();
    let mut response = agent().get(&format!("{node}/files/{name}")).call().unwrap();
    assert_eq!(response.status().as_u16(), 200, "{node}/files/{name}");
    response.body_mut().read_to_vec().unwrap()
}

fn deliveries(redis: &RedisServer, id: &str) -> u32 {
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("HGET")
        .arg(format!("faceid:req:{id}"))
        .arg("deliveries")
        .query(&mut conn)
        .unwrap()
}

/// One metric's value in a node's `/metrics`.
pub(crate) fn metric(node: &str, name: &str) -> f64 {
    let mut response = agent().get(&format!("{node}/metrics")).call().unwrap();
    let text = response.body_mut().read_to_string().unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// The server-sent events of a status stream, read to its end.
fn stream(node: &str, key: &str, id: &str) -> Vec<Value> {
    let mut response = agent()
        .get(&format!("{}/status/stream", request_url(node, id)))
        .header("authorization", &format!("Key {key}"))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let reader = BufReader::new(response.body_mut().as_reader());
    reader
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str(line.strip_prefix("data: ")?).ok())
        .collect()
}

/// A webhook receiver on a free loopback port: every body POSTed to it comes out of the
/// channel.
pub(crate) fn webhook_receiver() -> (u16, mpsc::Receiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                let _ = reader.get_mut().write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
                if let Ok(value) = serde_json::from_slice(&body) {
                    let _ = sender.send(value);
                }
            }
        }
    });
    (port, receiver)
}

pub(crate) fn input(seed: u64, steps: u32) -> Value {
    let mut input = face_input(steps, 1);
    input["seed"] = json!(seed);
    input
}

#[test]
fn requests_through_either_api_node_complete_once_on_two_workers_with_the_image_of_one_process() {
    let redis = RedisServer::start();
    let (hook_port, hooks) = webhook_receiver();
    let hook_host = format!("127.0.0.1:{hook_port}");
    let node_options = [
        "--api-key",
        "k1",
        "--api-key",
        "k2",
        "--allow-fetch-host",
        &hook_host,
    ];
    let (_a, a) = api_node(&redis, &node_options);
    let (_b, b) = api_node(&redis, &node_options);
    let _workers = [
        worker_for(&redis, "w1", &a, &["--allow-fetch-host", &hook_host]),
        worker_for(&redis, "w2", &a, &["--allow-fetch-host", &hook_host]),
    ];
    for node in [&a, &b] {
        let (code, health) = call("GET", &format!("{node}/health"), None, None);
        assert_eq!((code, &health["status"]), (200, &json!("ok")), "{health}");
    }

    // Four requests, alternately through each node; one with a webhook.
    let mut accepted = Vec::new();
    for seed in 1..=4u64 {
        let node = if seed % 2 == 1 { &a } else { &b };
        let url = if seed == 4 {
            format!("{node}/queue/{APP}?fal_webhook=http://{hook_host}/hook")
        } else {
            format!("{node}/queue/{APP}")
        };
        let (code, body) = call("POST", &url, Some("k1"), Some(&input(seed, 2)));
        assert_eq!(code, 200, "{body}");
        assert!(
            body["status_url"]
                .as_str()
                .unwrap()
                .starts_with(node.as_str())
        );
        accepted.push((
            seed,
            node.clone(),
            body["request_id"].as_str().unwrap().to_string(),
        ));
    }
    // Run-and-wait through node b, with the other key.
    let (code, synced) = call(
        "POST",
        &format!("{b}/{APP}"),
        Some("k2"),
        Some(&input(5, 2)),
    );
    assert_eq!(code, 200, "{synced}");

    // The status stream of a request sent through a, followed on b.
    let (_, _, first) = &accepted[0];
    let events = stream(&b, "k1", first);
    let last = events.last().expect("events");
    assert_eq!(last["status"], "COMPLETED", "{events:?}");
    let logs: Vec<String> = events
        .iter()
        .flat_map(|e| e["logs"].as_array().cloned().unwrap_or_default())
        .map(|l| l["message"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(logs.iter().any(|m| m == "step 2/2"), "{logs:?}");

    // One process, the reference: the same inputs give the same images.
    let (single, single_url) = serve(&[]);
    let single = Node(single);
    for (seed, node, id) in &accepted {
        let other = if *node == a { &b } else { &a };
        let status = wait_completed(other, Some("k1"), id, Duration::from_secs(300));
        assert!(status.get("error").is_none(), "{status}");
        let (code, result) = call("GET", &request_url(other, id), Some("k1"), None);
        assert_eq!(code, 200, "{result}");
        assert_eq!(result["seed"], *seed);
        assert!(
            result["images"][0]["url"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{a}/files/")),
            "{result}"
        );
        let (code, reference) = call(
            "POST",
            &format!("{single_url}/{APP}"),
            None,
            Some(&input(*seed, 2)),
        );
        assert_eq!(code, 200, "{reference}");
        assert!(
            image(other, &result) == image(&single_url, &reference),
            "seed {seed}: the shared queue's image differs from one process's"
        );
        assert_eq!(deliveries(&redis, id), 1, "{id} ran once");
        // Owned by k1 on every node.
        for node in [&a, &b] {
            let (code, _) = call(
                "GET",
                &format!("{}/status", request_url(node, id)),
                Some("k2"),
                None,
            );
            assert_eq!(code, 404, "k2 must not see k1's request");
            let (code, _) = call(
                "PUT",
                &format!("{}/cancel", request_url(node, id)),
                Some("k2"),
                None,
            );
            assert_eq!(code, 404);
        }
    }
    let (code, reference) = call(
        "POST",
        &format!("{single_url}/{APP}"),
        None,
        Some(&input(5, 2)),
    );
    assert_eq!(code, 200);
    assert!(image(&a, &synced) == image(&single_url, &reference));
    drop(single);

    // The webhook: sent once, by the worker that completed the request.
    let (_, _, hooked) = &accepted[3];
    let delivered = hooks
        .recv_timeout(Duration::from_secs(30))
        .expect("a webhook");
    assert_eq!(delivered["request_id"], json!(hooked));
    assert_eq!(delivered["status"], "OK", "{delivered}");
    assert_eq!(delivered["payload"]["seed"], 4);
    assert!(
        hooks.recv_timeout(Duration::from_secs(3)).is_err(),
        "the webhook is sent once"
    );
    let status = wait_completed(&b, Some("k1"), hooked, Duration::from_secs(10));
    assert!(
        status["logs"].to_string().contains("webhook delivered"),
        "{status}"
    );

    for node in [&a, &b] {
        assert_eq!(
            metric(node, "faceid_shared_requests_total{outcome=\"succeeded\"}"),
            5.0
        );
        assert_eq!(metric(node, "faceid_shared_reclaimed_total"), 0.0);
        assert_eq!(metric(node, "faceid_queue_depth"), 0.0);
    }
    assert_eq!(
        metric(&a, "faceid_requests_total{outcome=\"accepted\"}"),
        2.0
    );
    assert_eq!(
        metric(&b, "faceid_requests_total{outcome=\"accepted\"}"),
        3.0
    );
}

#[test]
fn what_a_killed_api_node_accepted_completes_and_a_redis_crash_loses_nothing() {
    let mut redis = RedisServer::start();
    let options = ["--queue-capacity", "4"];
    let (mut a, a_url) = api_node(&redis, &options);
    let (_b, b) = api_node(&redis, &options);

    // No worker yet: four requests wait, and the capacity holds across both nodes.
    let mut ids = Vec::new();
    for (i, node) in [&a_url, &a_url, &a_url, &b].into_iter().enumerate() {
        let (code, body) = submit(node, None, &input(10 + i as u64, 2));
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["queue_position"], i);
        ids.push(body["request_id"].as_str().unwrap().to_string());
    }
    let (code, body) = submit(&b, None, &input(20, 2));
    assert_eq!(code, 429, "{body}");
    let (code, status) = call(
        "GET",
        &format!("{}/status", request_url(&b, &ids[2])),
        None,
        None,
    );
    assert_eq!(
        (code, &status["queue_position"]),
        (202, &json!(2)),
        "{status}"
    );

    // A queued request sent through a is cancelled through b.
    let (code, body) = call(
        "PUT",
        &format!("{}/cancel", request_url(&b, &ids[1])),
        None,
        None,
    );
    assert_eq!(
        (code, &body["status"]),
        (202, &json!("CANCELLATION_REQUESTED"))
    );
    let status = wait_completed(&b, None, &ids[1], Duration::from_secs(5));
    assert_eq!(status["error_type"], "RequestCancelled", "{status}");

    // Node a dies without warning, then Redis crashes: b says so, and comes back with it from
    // its append-only file.
    a.0.kill().unwrap();
    a.0.wait().unwrap();
    redis.crash();
    let (code, health) = call("GET", &format!("{b}/health"), None, None);
    assert_eq!(
        (code, &health["status"]),
        (503, &json!("unavailable")),
        "{health}"
    );
    assert!(
        health["reason"].as_str().unwrap().contains("shared queue"),
        "{health}"
    );
    let (code, _) = call(
        "GET",
        &format!("{}/status", request_url(&b, &ids[0])),
        None,
        None,
    );
    assert_eq!(code, 503);
    let (code, _) = submit(&b, None, &input(21, 2));
    assert_eq!(code, 503, "nothing is accepted that Redis did not store");
    redis.restart();
    let (code, health) = call("GET", &format!("{b}/health"), None, None);
    assert_eq!((code, &health["queued"]), (200, &json!(3)), "{health}");

    // A worker starts: everything accepted completes, readable through b.
    let _worker = worker_for(&redis, "w", &b, &[]);
    for (i, id) in ids.iter().enumerate().filter(|(i, _)| *i != 1) {
        let status = wait_completed(&b, None, id, Duration::from_secs(300));
        assert!(status.get("error").is_none(), "{status}");
        let (code, result) = call("GET", &request_url(&b, id), None, None);
        assert_eq!((code, &result["seed"]), (200, &json!(10 + i as u64)));
        assert!(image(&b, &result).starts_with(b"\x89PNG"));
        assert_eq!(deliveries(&redis, id), 1);
    }

    // A running request cancelled through another node stops at its next step.
    let (_c, c) = api_node(&redis, &options);
    let (code, body) = submit(&b, None, &input(30, 40));
    assert_eq!(code, 200);
    let id = body["request_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, status) = call(
            "GET",
            &format!("{}/status?logs=1", request_url(&c, &id)),
            None,
            None,
        );
        if status["logs"].to_string().contains("step 2/40") {
            break;
        }
        assert!(Instant::now() < deadline, "never ran: {status}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, _) = call(
        "PUT",
        &format!("{}/cancel", request_url(&c, &id)),
        None,
        None,
    );
    assert_eq!(code, 202);
    let step_lines = |status: &Value| {
        status["logs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["message"].as_str().unwrap_or("").starts_with("step "))
            .count()
    };
    let (_, at_cancel) = call(
        "GET",
        &format!("{}/status?logs=1", request_url(&c, &id)),
        None,
        None,
    );
    let status = wait_completed(&b, None, &id, Duration::from_secs(60));
    assert_eq!(status["error_type"], "RequestCancelled", "{status}");
    // At most the step under way when the cancel landed finishes.
    let (before, after) = (step_lines(&at_cancel), step_lines(&status));
    assert!(
        after <= before + 1 && after < 40,
        "{before} steps when cancelled, {after} in the end"
    );
    assert_eq!(
        metric(&c, "faceid_shared_requests_total{outcome=\"cancelled\"}"),
        2.0
    );

    // The worker and the nodes outlive another Redis crash: the next request runs as usual.
    redis.crash_and_restart();
    let (code, result) = call("POST", &format!("{c}/{APP}"), None, Some(&input(40, 2)));
    assert_eq!((code, &result["seed"]), (200, &json!(40)), "{result}");
    assert!(image(&b, &result).starts_with(b"\x89PNG"));
}

/// A CA, and a certificate it signed for 127.0.0.1 with its key, as PEM files in `dir`.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name
        .push(DnType::CommonName, "faceid test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[test]
fn the_shared_queue_works_over_tls_with_a_password() {
    let dir = temp("rediss");
    let (ca, cert, key) = certificates(&dir);
    let redis = RedisServer::start_tls(&cert, &key, "s3cret-pass");
    let url = redis.url();
    assert!(url.starts_with("rediss://:s3cret-pass@"));
    let trust = [("SSL_CERT_FILE", ca.as_path())];

    // A wrong password: the node does not start, and says why without the password.
    let wrong = url.replace("s3cret-pass", "wrong-pass");
    let refused = tiny_models(
        faceid()
            .args(["serve", "--bind", "127.0.0.1:0", "--queue", &wrong])
            .env("SSL_CERT_FILE", &ca),
    )
    .output()
    .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("rediss://***@127.0.0.1"), "{said}");
    assert!(!said.contains("wrong-pass"), "{said}");
    let refused = tiny_models(
        faceid()
            .args(["worker", "--queue", &wrong, "--public-url", "http://x"])
            .env("SSL_CERT_FILE", &ca),
    )
    .output()
    .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("rediss://***@127.0.0.1"), "{said}");
    assert!(!said.contains("wrong-pass"), "{said}");
    // Without the CA the certificate is not trusted.
    let untrusted = tiny_models(faceid().args(["serve", "--bind", "127.0.0.1:0", "--queue", &url]))
        .env("SSL_CERT_FILE", &key)
        .output()
        .unwrap();
    assert!(!untrusted.status.success());

    let (node, node_url) = serve_with(&["--queue", &url], &trust);
    let _node = Node(node);
    let worker = tiny_models(
        faceid()
            .args(["worker", "--queue", &url, "--public-url", &node_url])
            .env("SSL_CERT_FILE", &ca),
    )
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let _worker = Node(worker);
    let (code, result) = call(
        "POST",
        &format!("{node_url}/{APP}"),
        None,
        Some(&input(3, 2)),
    );
    assert_eq!((code, &result["seed"]), (200, &json!(3)), "{result}");
    assert!(image(&node_url, &result).starts_with(b"\x89PNG"));
    let _ = std::fs::remove_dir_all(&dir);
}
