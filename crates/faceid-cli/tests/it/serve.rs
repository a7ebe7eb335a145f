//! `faceid serve` as a process: starts with the tiny models, answers, and stops on SIGTERM or
//! SIGINT: running requests finish within the grace period, a second signal stops at once.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::generate::{data, faceid, tiny_models};

const QUEUE: &str = "/queue/fal-ai/ip-adapter-face-id";

/// Starts `faceid serve` on the tiny models with `extra` options; returns it and its URL.
pub(crate) fn serve(extra: &[&str]) -> (Child, String) {
    serve_with(extra, &[])
}

/// [`serve`] with more environment variables.
pub(crate) fn serve_with(extra: &[&str], env: &[(&str, &Path)]) -> (Child, String) {
    let mut command = faceid();
    command
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(extra)
        .envs(env.iter().copied());
    let mut child = tiny_models(&mut command)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut url = None;
    let mut seen = String::new();
    for _ in 0..50 {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
        if let Some(rest) = line
            .split(" at ")
            .nth(1)
            .filter(|_| line.starts_with("serving"))
        {
            url = rest.split_whitespace().next().map(str::to_string);
            break;
        }
    }
    let url = url.unwrap_or_else(|| panic!("no 'serving' line in:\n{seen}"));
    // Keep reading so that the server never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while stderr.read_line(&mut sink).unwrap_or(0) > 0 {
            sink.clear();
        }
    });
    (child, url)
}

pub(crate) fn signal(child: &Child, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn get(url: &str) -> (u16, Value) {
    let mut response = agent().get(url).call().unwrap();
    let code = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn submit(url: &str, body: &Value) -> Value {
    let mut response = agent()
        .post(&format!("{url}{QUEUE}"))
        .header("content-type", "application/json")
        .send(body.to_string())
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
}

fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub(crate) fn face_input(steps: u32, samples: u32) -> Value {
    let face = std::fs::read(data().join("faces/astronaut.png")).unwrap();
    json!({
        "prompt": "a photo of an astronaut",
        "face_image_url": format!("data:image/png;base64,{}", base64(&face)),
        "num_samples": samples,
        "num_inference_steps": steps,
        "seed": 7,
    })
}

/// Waits until the status is one of `wanted`.
fn wait_status(status_url: &str, wanted: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (_, status) = get(status_url);
        if wanted.iter().any(|w| status["status"] == *w) {
            return status;
        }
        assert!(Instant::now() < deadline, "never {wanted:?}: {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_answers_and_stops_cleanly_on_interrupt_and_terminate() {
    for name in ["INT", "TERM"] {
        let (mut child, url) = serve(&["--api-key", "k"]);
        let (code, _) = get(&format!("{url}/health"));
        assert_eq!(code, 200);
        let response = agent()
            .post(&format!("{url}{QUEUE}"))
            .header("content-type", "application/json")
            .send(r#"{"prompt": "x"}"#)
            .unwrap();
        assert_eq!(response.status().as_u16(), 401, "keys are enforced");
        signal(&child, name);
        let exit = wait_exit(&mut child, Duration::from_secs(30));
        assert!(exit.success(), "SIG{name}: exit {exit:?}");
    }
}

#[test]
fn on_sigterm_the_running_request_finishes_and_the_queued_one_is_kept() {
    let dir = std::env::temp_dir().join(format!("faceid-cli-{}-serve-data", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_arg = dir.to_str().unwrap();
    let (mut child, url) = serve(&["--data-dir", dir_arg, "--shutdown-grace", "120"]);
    let running = submit(&url, &face_input(8, 1));
    let queued = submit(&url, &face_input(1, 1));
    wait_status(
        running["status_url"].as_str().unwrap(),
        &["IN_PROGRESS", "COMPLETED"],
    );
    signal(&child, "TERM");
    let exit = wait_exit(&mut child, Duration::from_secs(150));
    assert!(exit.success(), "exit {exit:?}");

    let (mut child, url2) = serve(&["--data-dir", dir_arg]);
    let at = |accepted: &Value, what: &str| accepted[what].as_str().unwrap().replace(&url, &url2);
    let (code, status) = get(&at(&running, "status_url"));
    assert_eq!(
        (code, &status["status"]),
        (200, &json!("COMPLETED")),
        "{status}"
    );
    assert!(
        status.get("error").is_none(),
        "it finished within the grace period: {status}"
    );
    let status = wait_status(&at(&queued, "status_url"), &["COMPLETED"]);
    assert!(
        status.get("error").is_none(),
        "the queued request ran after the restart: {status}"
    );
    signal(&child, "TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(60)).success());
    cleanup(&dir);
}

#[test]
fn a_second_signal_stops_at_once() {
    let (mut child, url) = serve(&["--shutdown-grace", "600"]);
    let first = submit(&url, &face_input(200, 4));
    for _ in 0..3 {
        submit(&url, &face_input(200, 4));
    }
    wait_status(
        first["status_url"].as_str().unwrap(),
        &["IN_PROGRESS", "COMPLETED"],
    );
    signal(&child, "INT");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first signal waits for the running request"
    );
    let sent = Instant::now();
    signal(&child, "TERM");
    let exit = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(exit.code(), Some(128 + 15), "{exit:?}");
    assert!(sent.elapsed() < Duration::from_secs(10));
}

fn cleanup(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}
