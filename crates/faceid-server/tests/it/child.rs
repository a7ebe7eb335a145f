//! A server in a child process: this test binary run again with `FACEID_TEST_CHILD_SERVER` set
//! to its settings, so that a test can measure the server's memory and threads alone.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::start;

const SETTINGS: &str = "FACEID_TEST_CHILD_SERVER";

/// The entry point of the child processes of [`ChildServer::spawn`]; without the variable set
/// it does nothing.
#[test]
fn child_server_entry() {
    let Ok(settings) = std::env::var(SETTINGS) else {
        return;
    };
    let settings: Value = serde_json::from_str(&settings).unwrap();
    let ms = |name: &str| settings[name].as_u64().map(Duration::from_millis);
    let server = start(|c| {
        if let Some(keys) = settings["api_keys"].as_array() {
            c.api_keys = keys.iter().map(|k| k.as_str().unwrap().into()).collect();
        }
        if let Some(hosts) = settings["allow_hosts"].as_array() {
            c.fetch.allow_hosts = hosts.iter().map(|k| k.as_str().unwrap().into()).collect();
        }
        if let Some(n) = settings["max_connections"].as_u64() {
            c.connections.max_connections = n as usize;
        }
        if let Some(n) = settings["queue_capacity"].as_u64() {
            c.queue_capacity = n as usize;
        }
        if let Some(t) = ms("header_timeout_ms") {
            c.connections.header_timeout = t;
        }
        if let Some(t) = ms("idle_timeout_ms") {
            c.connections.idle_timeout = t;
        }
        if let Some(n) = settings["webhook_concurrency"].as_u64() {
            c.webhooks.concurrency = n as usize;
        }
        if let Some(t) = ms("webhook_first_delay_ms") {
            c.webhooks.first_delay = t;
        }
        if let Some(dir) = settings["data_dir"].as_str() {
            c.data_dir = Some(dir.into());
        }
    });
    println!("LISTENING {}", server.url);
    // Serve until the parent closes stdin (or kills this process).
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

/// A server running in a child process.
pub struct ChildServer {
    pub url: String,
    child: std::process::Child,
}

impl ChildServer {
    /// Starts one with these settings (see [`child_server_entry`]).
    pub fn spawn(settings: Value) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child::child_server_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(SETTINGS, settings.to_string())
            // Large blocks go back to the system when freed, so resident memory is live memory.
            .env("MALLOC_MMAP_THRESHOLD_", "65536")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut url = None;
        for _ in 0..100 {
            let mut line = String::new();
            if stdout.read_line(&mut line).unwrap() == 0 {
                break;
            }
            // libtest writes the test's name on the same line.
            if let Some(rest) = line.split("LISTENING ").nth(1) {
                url = Some(rest.trim().to_string());
                break;
            }
        }
        let url = url.expect("the child server printed its address");
        Self { url, child }
    }

    /// A field of `/proc/<pid>/status` in kB (`VmRSS`, `VmHWM`) or as a count (`Threads`).
    pub fn status(&self, field: &str) -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/pid/status"))
    }

    /// Resets the peak resident size (`VmHWM`) to the current one where the kernel allows it
    /// (else the peak keeps counting from the start, which only makes the measure stricter).
    pub fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5");
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
