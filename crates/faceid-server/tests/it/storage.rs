//! The data folder: no API key in it, private modes, and what happens when it cannot be
//! written.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{input, send, start};

const QUEUE: &str = "/queue/fal-ai/ip-adapter-face-id";

pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("faceid-server-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

pub fn wait_done(status_url: &str, key: Option<&str>) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (_, _, status) = send("GET", &format!("{status_url}?logs=1"), None, key);
        if status["status"] == "COMPLETED" {
            return status;
        }
        assert!(Instant::now() < deadline, "timed out: {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            all.extend(files(&path));
        } else {
            all.push(path);
        }
    }
    all
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn api_keys_are_not_stored_and_the_data_folder_is_private() {
    let data = fresh_dir("keys");
    let keys = ["first-secret-key-4242", "second-secret-key-4343"];
    let configure = |c: &mut faceid_server::ServerConfig| {
        c.data_dir = Some(data.clone());
        c.api_keys = keys.iter().map(|k| k.to_string()).collect();
    };
    let mut first = start(configure);
    let submit = format!("{}{QUEUE}", first.url);
    let (code, done_id, done) = send("POST", &submit, Some(&input(1)), Some(keys[0]));
    assert_eq!(code, 200, "{done}");
    wait_done(done["status_url"].as_str().unwrap(), Some(keys[0]));
    let (code, _, queued) = send("POST", &submit, Some(&input(200)), Some(keys[1]));
    assert_eq!(code, 200, "{queued}");
    let server = first.server.take().unwrap();
    first.runtime.block_on(server.shutdown(Duration::ZERO));
    drop(first);

    let stored = files(&data);
    assert!(stored.len() >= 3, "{stored:?}");
    for path in &stored {
        let bytes = std::fs::read(path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for key in keys {
            assert!(!text.contains(key), "{} holds an API key", path.display());
        }
        #[cfg(unix)]
        assert_eq!(mode(path), 0o600, "{}", path.display());
    }
    #[cfg(unix)]
    assert_eq!(mode(&data), 0o700);

    // After a restart each request is still its own key's.
    let second = start(configure);
    let base = format!("{}{QUEUE}/requests/{done_id}", second.url);
    let (code, _, result) = send("GET", &base, None, Some(keys[0]));
    assert_eq!(code, 200, "{result}");
    assert_eq!(result["seed"], 7);
    assert_eq!(send("GET", &base, None, Some(keys[1])).0, 404);
    let queued_status = queued["status_url"]
        .as_str()
        .unwrap()
        .replace(&submit.replace(QUEUE, ""), &second.url);
    assert_eq!(send("GET", &queued_status, None, Some(keys[0])).0, 404);
    let (code, _, status) = send("GET", &queued_status, None, Some(keys[1]));
    assert!(code == 200 || code == 202, "{status}");
    let cancel = queued_status.replace("/status", "/cancel");
    send("PUT", &cancel, None, Some(keys[1]));
}

#[test]
fn the_results_sweep_deletes_only_the_servers_own_files() {
    let dir = fresh_dir("sweep");
    std::fs::create_dir_all(&dir).unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(7200);
    let own = [
        "5f0c8a9e-1b2c-4d3e-8f40-123456789abc.png",
        "5f0c8a9e-1b2c-4d3e-8f40-123456789abc-0.png",
        ".5f0c8a9e-1b2c-4d3e-8f40-123456789abc-1.png.tmp",
    ];
    let foreign = [
        "notes.txt",
        "holiday.png",
        "5f0c8a9e-1b2c-4d3e-8f40-123456789abc.png.bak",
        "5f0c8a9e-1b2c-4d3e-8f40-123456789abc-x.png",
        ".hidden",
    ];
    for name in own.iter().chain(&foreign) {
        let file = std::fs::File::create(dir.join(name)).unwrap();
        file.set_modified(old).unwrap();
    }
    std::fs::create_dir_all(dir.join("subfolder")).unwrap();
    let _server = start(|c| {
        c.files_dir = dir.clone();
        c.retention = Duration::from_millis(500);
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while own.iter().any(|name| dir.join(name).exists()) {
        assert!(
            Instant::now() < deadline,
            "the server's own old files were not swept"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for name in foreign {
        assert!(dir.join(name).exists(), "{name} was deleted");
    }
    assert!(dir.join("subfolder").is_dir());
}

/// Waits until a request runs.
fn wait_running(status_url: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while send("GET", status_url, None, None).2["status"] != "IN_PROGRESS" {
        assert!(Instant::now() < deadline, "never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn temporary_files(dir: &Path) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp") && p.is_file())
        .collect()
}

// Writes are made to fail in ways that stop root too (tests run as root in CI, where file
// modes stop nothing): a folder where the server writes a file, a file where it expects its
// folder.

#[test]
fn a_completion_that_cannot_be_saved_is_reported_failed_and_does_not_run_again() {
    let data = fresh_dir("unsaved");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("stale.json.tmp"), b"{").unwrap();
    let configure = |c: &mut faceid_server::ServerConfig| c.data_dir = Some(data.clone());
    let mut first = start(configure);
    assert!(
        temporary_files(&data).is_empty(),
        "temporary files are removed at start"
    );
    let submit = format!("{}{QUEUE}", first.url);
    let (_, _, blocker) = send("POST", &submit, Some(&input(200)), None);
    wait_running(blocker["status_url"].as_str().unwrap());
    let (_, id, queued) = send("POST", &submit, Some(&input(1)), None);
    // Its completion cannot be written: the temporary file's name is taken by a folder.
    std::fs::create_dir(data.join(format!("{id}.json.tmp"))).unwrap();
    send("PUT", blocker["cancel_url"].as_str().unwrap(), None, None);
    let status = wait_done(queued["status_url"].as_str().unwrap(), None);
    assert_eq!(status["error_type"], "PersistError", "{status}");
    let (code, _, result) = send("GET", queued["response_url"].as_str().unwrap(), None, None);
    assert_eq!(code, 500, "{result}");
    assert!(
        result["detail"]
            .as_str()
            .unwrap()
            .contains("could not be saved")
    );
    assert!(
        temporary_files(&data).is_empty(),
        "{:?}",
        temporary_files(&data)
    );
    let server = first.server.take().unwrap();
    first.runtime.block_on(server.shutdown(Duration::ZERO));
    drop(first);
    // After a restart it does not run again.
    let second = start(configure);
    let status_url = format!("{}{QUEUE}/requests/{id}/status", second.url);
    std::thread::sleep(Duration::from_millis(500));
    let (code, _, status) = send("GET", &status_url, None, None);
    assert!(
        code == 404 || status["error_type"] == "PersistError",
        "{code} {status}"
    );
    let (queued, running) = {
        let health = send("GET", &format!("{}/health", second.url), None, None).2;
        (health["queued"].clone(), health["running"].clone())
    };
    assert_eq!((queued, running), (0.into(), 0.into()));
}

#[test]
fn a_failed_save_leaves_no_temporary_file() {
    let data = fresh_dir("tmpfiles");
    let server = start(|c| c.data_dir = Some(data.clone()));
    let submit = format!("{}{QUEUE}", server.url);
    let (_, _, blocker) = send("POST", &submit, Some(&input(200)), None);
    wait_running(blocker["status_url"].as_str().unwrap());
    let (_, id, queued) = send("POST", &submit, Some(&input(1)), None);
    // The record's own name is taken by a folder: the rename into place fails.
    let record = data.join(format!("{id}.json"));
    std::fs::remove_file(&record).unwrap();
    std::fs::create_dir_all(record.join("occupied")).unwrap();
    send("PUT", queued["cancel_url"].as_str().unwrap(), None, None);
    let status = wait_done(queued["status_url"].as_str().unwrap(), None);
    assert_eq!(status["error_type"], "PersistError", "{status}");
    assert!(
        temporary_files(&data).is_empty(),
        "{:?}",
        temporary_files(&data)
    );
    send("PUT", blocker["cancel_url"].as_str().unwrap(), None, None);
}

#[test]
fn health_reports_a_data_folder_that_cannot_be_written() {
    let data = fresh_dir("health");
    let server = start(|c| c.data_dir = Some(data.clone()));
    let health = format!("{}/health", server.url);
    let (code, _, out) = send("GET", &health, None, None);
    assert_eq!((code, out["status"].as_str()), (200, Some("ok")), "{out}");
    // A file where the folder was.
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::write(&data, b"").unwrap();
    let (code, _, out) = send("GET", &health, None, None);
    assert_eq!(code, 503, "{out}");
    assert_eq!(out["status"], "unavailable");
    let reason = out["reason"].as_str().unwrap();
    assert!(
        reason.contains("data folder") && reason.contains(data.to_str().unwrap()),
        "{reason}"
    );
    let (code, _, out) = send(
        "POST",
        &format!("{}{QUEUE}", server.url),
        Some(&input(1)),
        None,
    );
    assert_eq!(code, 503, "{out}");
    std::fs::remove_file(&data).unwrap();
    std::fs::create_dir(&data).unwrap();
    assert_eq!(send("GET", &health, None, None).0, 200);
}
