//! Connection limits: bodies are read only after the key is checked, slow or idle connections
//! are closed after their timeouts, and the number of open connections is bounded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::child::ChildServer;
use crate::common::{send, start};

const QUEUE: &str = "/queue/fal-ai/ip-adapter-face-id";

fn host(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

/// Reads until the peer closes (or resets) the connection; `None` if it stays open `wait`.
fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            Err(_) => return Some(got),
        }
    }
}

#[test]
fn unauthenticated_large_bodies_are_refused_without_being_read() {
    let server = ChildServer::spawn(json!({"api_keys": ["k"]}));
    assert_eq!(
        send("GET", &format!("{}/health", server.url), None, None).0,
        200
    );
    let (code, _, out) = send(
        "POST",
        &format!("{}{QUEUE}", server.url),
        Some(&json!({})),
        None,
    );
    assert_eq!(code, 401, "{out}");
    let before = server.status("VmRSS");
    server.reset_peak();
    const BODY: usize = 50 << 20;
    let addr = host(&server.url);
    let senders: Vec<_> = (0..10)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(&addr).unwrap();
                stream
                    .set_write_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                write!(
                    stream,
                    "POST {QUEUE} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                     Content-Length: {BODY}\r\n\r\n"
                )
                .unwrap();
                let chunk = vec![b' '; 1 << 20];
                let mut sent = 0;
                while sent < BODY {
                    match stream.write(&chunk) {
                        Ok(n) => sent += n,
                        Err(_) => break,
                    }
                }
                sent
            })
        })
        .collect();
    for sender in senders {
        let sent = sender.join().unwrap();
        assert!(
            sent < BODY,
            "the server took the whole unauthenticated body ({sent} bytes)"
        );
    }
    let peak = server.status("VmHWM");
    let growth_mib = peak.saturating_sub(before) as f64 / 1024.0;
    eprintln!(
        "10 unauthenticated 50 MiB bodies: resident {:.1} MiB before, peak {:.1} MiB (+{growth_mib:.1} MiB)",
        before as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    assert!(
        growth_mib < 32.0,
        "peak resident memory grew by {growth_mib:.1} MiB"
    );
    // The server still serves.
    assert_eq!(
        send("GET", &format!("{}/health", server.url), None, None).0,
        200
    );
}

#[test]
fn slow_headers_slow_bodies_and_idle_connections_are_closed_after_their_timeouts() {
    let server = start(|c| {
        c.connections.header_timeout = Duration::from_secs(1);
        c.connections.body_timeout = Duration::from_secs(1);
        c.connections.idle_timeout = Duration::from_secs(1);
    });
    let addr = host(&server.url);
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut stream = TcpStream::connect(&addr).unwrap();
            stream
                .write_all(format!("POST {QUEUE} HTTP/1.1\r\nHost: x\r\n").as_bytes())
                .unwrap();
            stream
        })
        .collect();
    for stream in &mut slow {
        let got = read_until_closed(stream, Duration::from_secs(10))
            .expect("a connection with unfinished headers is closed");
        assert!(
            got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
            "{got:?}"
        );
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(8),
        "{elapsed:?}"
    );

    // A body that stops arriving: 408.
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream
        .write_all(
            format!("POST {QUEUE} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{\"pro")
                .as_bytes(),
        )
        .unwrap();
    let got = read_until_closed(&mut stream, Duration::from_secs(10)).expect("closed");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("detail"), "{text}");

    // A kept-alive connection that sends nothing more.
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let t0 = Instant::now();
    let got = read_until_closed(&mut stream, Duration::from_secs(10))
        .expect("an idle connection is closed");
    assert!(got.starts_with(b"HTTP/1.1 200"), "{got:?}");
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
}

#[test]
fn the_connection_bound_holds() {
    let server = start(|c| {
        c.connections.max_connections = 4;
        c.connections.header_timeout = Duration::from_secs(60);
    });
    let addr = host(&server.url);
    let held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut stream = TcpStream::connect(&addr).unwrap();
            stream.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        let mut extra = TcpStream::connect(&addr).unwrap();
        let _ = extra.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        let got = read_until_closed(&mut extra, Duration::from_secs(5))
            .expect("a connection beyond the bound is closed at once");
        assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    }
    drop(held);
    // Their places are free again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut stream = TcpStream::connect(&addr).unwrap();
        let _ = stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let got = read_until_closed(&mut stream, Duration::from_secs(5)).unwrap_or_default();
        if got.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "the bound was not released");
        std::thread::sleep(Duration::from_millis(50));
    }
}
