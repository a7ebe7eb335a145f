//! The synchronous route, validation, files, auth, health, metrics, URL safety.

use serde_json::{Value, json};

use crate::common::{agent, face_data_uri, input, send, start};

const RUN: &str = "/fal-ai/ip-adapter-face-id";

#[test]
fn a_synchronous_run_returns_fal_output_with_the_image_served() {
    let server = start(|_| {});
    let (status, id, out) = send(
        "POST",
        &format!("{}{RUN}", server.url),
        Some(&input(2)),
        None,
    );
    assert_eq!(status, 200, "{out}");
    assert!(!id.is_empty(), "x-fal-request-id");
    assert_eq!(out["seed"], 7);
    let image = &out["image"];
    assert_eq!(image["content_type"], "image/png");
    assert_eq!(
        (image["width"].as_u64(), image["height"].as_u64()),
        (Some(512), Some(512))
    );
    assert_eq!(out["images"].as_array().unwrap().len(), 1);
    let url = image["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/files/", server.url)), "{url}");
    let mut response = agent().get(url).call().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let png = response.body_mut().read_to_vec().unwrap();
    assert_eq!(png.len() as u64, image["file_size"].as_u64().unwrap());
    let decoded = image::load_from_memory(&png).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (512, 512));

    // The same request again gives the same image (the seed fixes the noise).
    let (_, _, again) = send(
        "POST",
        &format!("{}{RUN}", server.url),
        Some(&input(2)),
        None,
    );
    let url2 = again["image"]["url"].as_str().unwrap();
    let png2 = agent()
        .get(url2)
        .call()
        .unwrap()
        .body_mut()
        .read_to_vec()
        .unwrap();
    assert_eq!(png, png2);

    // sync_mode returns the image inline.
    let mut inline = input(1);
    inline["sync_mode"] = json!(true);
    let (status, _, out) = send("POST", &format!("{}{RUN}", server.url), Some(&inline), None);
    assert_eq!(status, 200);
    assert!(
        out["image"]["url"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,")
    );
}

fn detail_fields(body: &Value) -> Vec<String> {
    body["detail"]
        .as_array()
        .unwrap_or_else(|| panic!("a list of errors: {body}"))
        .iter()
        .map(|e| {
            assert!(e["msg"].is_string() && e["type"].is_string(), "{e}");
            e["loc"][1].as_str().unwrap_or("body").to_string()
        })
        .collect()
}

#[test]
fn invalid_inputs_get_422_naming_each_field() {
    let server = start(|_| {});
    let url = format!("{}{RUN}", server.url);
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({"face_image_url": face_data_uri()}), vec!["prompt"]),
        (
            json!({"prompt": "x", "face_image_url": face_data_uri(), "width": 300, "num_samples": 5}),
            vec!["num_samples", "width"],
        ),
        (
            json!({"prompt": "x", "face_image_url": face_data_uri(), "model_type": "2_0"}),
            vec!["model_type"],
        ),
        (
            json!({"prompt": "x", "face_image_url": face_data_uri(), "guidance_scale": "high"}),
            vec!["guidance_scale"],
        ),
        (json!({"prompt": "x"}), vec!["face_image_url"]),
        (
            json!({"prompt": "x", "face_image_url": "data:image/png;base64,@@@"}),
            vec!["face_image_url"],
        ),
        (
            json!({"prompt": "x", "face_image_url": "ftp://example.com/a.png"}),
            vec!["face_image_url"],
        ),
        (
            json!({"prompt": "x", "face_image_url": "data:image/png;base64,aGVsbG8="}),
            vec!["face_image_url"],
        ),
        (
            json!({"prompt": "x", "face_images_data_url": "data:application/zip;base64,aGVsbG8="}),
            vec!["face_images_data_url"],
        ),
    ];
    for (body, fields) in cases {
        let (status, id, out) = send("POST", &url, Some(&body), None);
        assert_eq!(status, 422, "{body}: {out}");
        assert!(!id.is_empty());
        let mut got = detail_fields(&out);
        got.sort();
        assert_eq!(got, fields, "{body}: {out}");
    }
    // Unknown fields are ignored, as fal does.
    let mut extra = input(1);
    extra["not_a_field"] = json!(1);
    assert_eq!(send("POST", &url, Some(&extra), None).0, 200);
    // A body that is not JSON.
    let mut response = agent()
        .post(&url)
        .header("content-type", "application/json")
        .send("{not json")
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
    let text = response.body_mut().read_to_string().unwrap();
    assert!(text.contains("json_invalid"), "{text}");
}

#[test]
fn urls_to_internal_addresses_are_refused() {
    let server = start(|_| {});
    let url = format!("{}{RUN}", server.url);
    for target in [
        format!("{}/health", server.url),
        "http://localhost:9/face.png".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.0.0.1/face.png".to_string(),
        "http://[::1]:9/face.png".to_string(),
        "http://user:pw@example.com/face.png".to_string(),
    ] {
        let body = json!({"prompt": "x", "face_image_url": target});
        let (status, _, out) = send("POST", &url, Some(&body), None);
        assert_eq!(status, 422, "{target}: {out}");
        let msg = out["detail"][0]["msg"].as_str().unwrap();
        assert!(
            msg == faceid_server::UNREACHABLE || msg.contains("credentials"),
            "{target}: {msg}"
        );
    }
    for ip in [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fd00::1",
        "::ffff:127.0.0.1",
    ] {
        assert!(faceid_server::is_internal(ip.parse().unwrap()), "{ip}");
    }
    for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
        assert!(!faceid_server::is_internal(ip.parse().unwrap()), "{ip}");
    }
}

#[test]
fn an_allow_listed_host_is_fetched() {
    let face = std::fs::read(crate::common::root().join("tests/data/faces/astronaut.png")).unwrap();
    let host = crate::common::stub(std::time::Duration::ZERO, move |_| {
        crate::common::http_response("200 OK", &[("Content-Type", "image/png")], &face)
    });
    let server = start(|c| c.fetch.allow_hosts = vec![host.clone()]);
    let body = json!({"prompt": "x", "face_image_url": format!("http://{host}/face.png"), "num_samples": 1, "num_inference_steps": 1, "seed": 7});
    let (status, _, out) = send("POST", &format!("{}{RUN}", server.url), Some(&body), None);
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["seed"], 7);
}

#[test]
fn api_keys_are_required_and_requests_are_private_to_their_key() {
    let server = start(|c| c.api_keys = vec!["k1".into(), "k2".into()]);
    let submit = format!("{}/queue{RUN}", server.url);
    let (status, id, out) = send("POST", &submit, Some(&input(1)), None);
    assert_eq!(status, 401, "{out}");
    assert!(!id.is_empty());
    assert_eq!(send("POST", &submit, Some(&input(1)), Some("nope")).0, 401);
    let (status, _, accepted) = send("POST", &submit, Some(&input(1)), Some("k1"));
    assert_eq!(status, 200, "{accepted}");
    let status_url = accepted["status_url"].as_str().unwrap();
    assert_eq!(send("GET", status_url, None, Some("k2")).0, 404);
    assert_eq!(send("GET", status_url, None, None).0, 401);
    let (code, _, _) = send("GET", status_url, None, Some("k1"));
    assert!(code == 200 || code == 202);
    let cancel_url = accepted["cancel_url"].as_str().unwrap();
    let (code, _, out) = send("PUT", cancel_url, None, Some("k2"));
    assert_eq!((code, out["status"].as_str()), (404, Some("NOT_FOUND")));
    assert_eq!(
        send("GET", &format!("{}/health", server.url), None, None).0,
        200
    );
}

#[test]
fn health_and_metrics_report_the_queue() {
    let server = start(|_| {});
    send(
        "POST",
        &format!("{}{RUN}", server.url),
        Some(&input(1)),
        None,
    );
    send(
        "POST",
        &format!("{}{RUN}", server.url),
        Some(&json!({"prompt": 3})),
        None,
    );
    let (status, _, health) = send("GET", &format!("{}/health", server.url), None, None);
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    let (status, _, metrics) = send("GET", &format!("{}/metrics", server.url), None, None);
    assert_eq!(status, 200);
    let text = metrics.as_str().unwrap();
    for line in [
        "faceid_queue_depth 0",
        "faceid_in_flight 0",
        "faceid_requests_total{outcome=\"accepted\"} 1",
        "faceid_requests_total{outcome=\"succeeded\"} 1",
        "faceid_generation_seconds_count 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    let (status, id, out) = send("GET", &format!("{}/nowhere", server.url), None, None);
    assert_eq!(status, 404, "{out}");
    assert!(!id.is_empty());
}

#[test]
fn https_is_served_from_a_certificate_and_key_file() {
    let dir = std::env::temp_dir().join(format!("faceid-server-{}-tls", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let server = start(|c| c.tls = Some((cert.clone(), key.clone())));
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );

    let root = ureq::tls::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(vec![
            root,
        ])))
        .build();
    let client: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = client
        .get(&format!("{}/health", server.url))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.body_mut().read_to_string().unwrap().contains("ok"));
    let mut accepted = client
        .post(&format!("{}/queue/fal-ai/ip-adapter-face-id", server.url))
        .header("content-type", "application/json")
        .send(input(1).to_string())
        .unwrap();
    let body: Value = serde_json::from_str(&accepted.body_mut().read_to_string().unwrap()).unwrap();
    assert!(
        body["status_url"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:"),
        "{body}"
    );
    // Plain HTTP on the TLS port is not answered as HTTP.
    let plain = server.url.replacen("https://", "http://", 1);
    assert!(agent().get(&format!("{plain}/health")).call().is_err());
    // A certificate that cannot be read stops the start with a clear error.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = faceid_server::ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        tls: Some((dir.join("missing.pem"), key)),
        ..Default::default()
    };
    let err = runtime
        .block_on(faceid_server::Server::start(
            config,
            crate::common::models(),
        ))
        .err()
        .expect("a missing certificate is an error");
    assert!(err.to_string().contains("missing.pem"), "{err}");
}

#[test]
fn the_openapi_document_describes_every_route_and_the_input_table() {
    let server = start(|_| {});
    let (status, _, doc) = send("GET", &format!("{}/openapi.json", server.url), None, None);
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/fal-ai/ip-adapter-face-id", "post"),
        ("/queue/fal-ai/ip-adapter-face-id", "post"),
        (
            "/queue/fal-ai/ip-adapter-face-id/requests/{id}/status",
            "get",
        ),
        (
            "/queue/fal-ai/ip-adapter-face-id/requests/{id}/status/stream",
            "get",
        ),
        ("/queue/fal-ai/ip-adapter-face-id/requests/{id}", "get"),
        (
            "/queue/fal-ai/ip-adapter-face-id/requests/{id}/cancel",
            "put",
        ),
        ("/files/{name}", "get"),
        ("/health", "get"),
        ("/metrics", "get"),
    ] {
        assert!(
            paths[path][method]["responses"].is_object(),
            "{method} {path}"
        );
    }
    // Every documented route is served (an unknown id is the route's own 404, not the fallback).
    for path in paths.keys() {
        let concrete = path
            .replace("{id}", "00000000-0000-0000-0000-000000000000")
            .replace("{name}", "none.png");
        let method = if path.ends_with("/cancel") {
            "PUT"
        } else {
            "GET"
        };
        if path.ends_with("ip-adapter-face-id") {
            continue;
        }
        let (_, _, body) = send(method, &format!("{}{concrete}", server.url), None, None);
        assert_ne!(body["detail"], "no such route", "{path}");
    }
    let input = &doc["components"]["schemas"]["Input"];
    assert_eq!(input["required"], json!(["prompt"]));
    let props = input["properties"].as_object().unwrap();
    assert_eq!(props.len(), faceid_fal::FIELDS.len());
    assert_eq!(props["num_samples"]["maximum"], 4);
    assert_eq!(props["width"]["minimum"], 512);
    assert_eq!(props["guidance_scale"]["default"], 7.5);
    assert_eq!(props["model_type"]["enum"].as_array().unwrap().len(), 6);
}
