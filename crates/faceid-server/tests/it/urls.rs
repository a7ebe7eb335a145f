//! The URL guard: allow-lists by host:port applied to every redirect hop and to webhooks, one
//! answer for every refused or unreachable target, IPv6 forms of internal addresses.

use std::time::Duration;

use serde_json::json;

use crate::common::{http_response, send, start, stub};

const RUN: &str = "/fal-ai/ip-adapter-face-id";
const QUEUE: &str = "/queue/fal-ai/ip-adapter-face-id";

/// The `msg` of a 422 for `face_image_url`.
fn refusal(server_url: &str, target: &str) -> String {
    let body = json!({"prompt": "x", "face_image_url": target, "num_samples": 1});
    let (status, _, out) = send("POST", &format!("{server_url}{RUN}"), Some(&body), None);
    assert_eq!(status, 422, "{target}: {out}");
    out["detail"][0]["msg"].as_str().unwrap().to_string()
}

#[test]
fn the_allow_list_opens_one_port_for_fetches_redirects_and_webhooks() {
    let other = stub(Duration::ZERO, |_| {
        http_response("200 OK", &[], b"not an image")
    });
    let redirect_to = format!("http://{other}/face.png");
    let allowed = stub(Duration::ZERO, move |path| {
        if path == "/redirect" {
            http_response("302 Found", &[("Location", &redirect_to)], b"")
        } else {
            http_response("200 OK", &[], b"not an image")
        }
    });
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let server = start(|c| c.fetch.allow_hosts = vec![allowed.clone(), closed.clone()]);
    // The allowed port is fetched: the bytes arrive and are found not to be an image.
    let msg = refusal(&server.url, &format!("http://{allowed}/face.png"));
    assert!(msg.contains("not a readable image"), "{msg}");
    // Another port of the same host, a redirect to it, an allowed port where nothing listens,
    // a port nothing allows, the same host as an IPv4-mapped IPv6 address: one answer.
    let port = allowed.rsplit(':').next().unwrap();
    for target in [
        format!("http://{other}/face.png"),
        format!("http://{allowed}/redirect"),
        format!("http://{closed}/face.png"),
        "http://127.0.0.1:9/face.png".to_string(),
        format!("http://[::ffff:127.0.0.1]:{port}/face.png"),
        format!("http://[::ffff:7f00:1]:{port}/face.png"),
        format!("http://localhost:{port}/face.png"),
    ] {
        assert_eq!(
            refusal(&server.url, &target),
            faceid_server::UNREACHABLE,
            "{target}"
        );
    }
    // Webhooks follow the same list.
    let submit = |hook: &str| {
        let url = format!("{}{QUEUE}?fal_webhook={hook}", server.url);
        send(
            "POST",
            &url,
            Some(&json!({"prompt": "x", "face_image_url": "data:image/png;base64,aGVsbG8="})),
            None,
        )
    };
    let (code, _, out) = submit(&format!("http://{other}/hook"));
    assert_eq!(code, 422, "{out}");
    assert_eq!(out["detail"][0]["loc"][1], "fal_webhook");
    assert_eq!(out["detail"][0]["msg"], faceid_server::UNREACHABLE);
    let (code, _, out) = submit(&format!("http://{allowed}/hook"));
    assert_eq!(code, 200, "{out}");

    // A bare host opens ports 80 and 443 only.
    let bare = start(|c| c.fetch.allow_hosts = vec!["127.0.0.1".into()]);
    assert_eq!(
        refusal(&bare.url, &format!("http://{allowed}/face.png")),
        faceid_server::UNREACHABLE
    );
    // Entries that are neither host:port nor a host stop the start.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for entry in ["127.0.0.1:http", "[::1", "host:0", "a/b"] {
        let config = faceid_server::ServerConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            fetch: faceid_server::FetchPolicy {
                allow_hosts: vec![entry.into()],
                ..Default::default()
            },
            ..Default::default()
        };
        let err = runtime
            .block_on(faceid_server::Server::start(
                config,
                crate::common::models(),
            ))
            .err()
            .unwrap_or_else(|| panic!("{entry} accepted"));
        assert!(err.to_string().contains(entry), "{err}");
    }
}

#[test]
fn ipv6_forms_of_internal_ipv4_addresses_are_internal() {
    for ip in [
        "::7f00:1",                             // IPv4-compatible 127.0.0.1
        "::a00:1",                              // IPv4-compatible 10.0.0.1
        "::ffff:127.0.0.1",                     // IPv4-mapped
        "::ffff:169.254.169.254",               // IPv4-mapped metadata
        "::ffff:0:7f00:1",                      // IPv4-translated
        "64:ff9b::7f00:1",                      // NAT64 127.0.0.1
        "64:ff9b::a9fe:a9fe",                   // NAT64 169.254.169.254
        "64:ff9b::c0a8:101",                    // NAT64 192.168.1.1
        "64:ff9b:1::1",                         // local-use NAT64
        "2002:7f00:1::1",                       // 6to4 127.0.0.1
        "2002:a00:1::",                         // 6to4 10.0.0.1
        "2002:a9fe:a9fe::1",                    // 6to4 169.254.169.254
        "2001:0:4136:e378:8000:63bf:80ff:fffe", // Teredo, client 127.0.0.1
        "2001:0:a00:1:8000:63bf:f7f7:f7f7",     // Teredo, server 10.0.0.1
        "fec0::1",                              // site-local
        "2001:db8::1",                          // documentation
        "100::1",                               // discard-only
    ] {
        assert!(faceid_server::is_internal(ip.parse().unwrap()), "{ip}");
    }
    for ip in [
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
        "2606:4700::1111",
        "2001:4860:4860::8888",
        "198.51.100.1",
    ] {
        let internal = faceid_server::is_internal(ip.parse().unwrap());
        // 198.51.100.0/24 is documentation space: internal; the others are public.
        assert_eq!(internal, ip.starts_with("198.51."), "{ip}");
    }
}
