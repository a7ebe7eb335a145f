//! A server on loopback with the tiny SD 1.5 model, the tiny FaceID checkpoint, the built-in
//! RetinaFace and a tiny ArcFace; a blocking HTTP client.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use faceid_hub::{HubSettings, LocalFiles, Manifest, Weights};
use faceid_server::{Models, Server, ServerConfig};
use serde_json::{Value, json};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A running server and the runtime it runs on.
pub struct Running {
    pub server: Option<Server>,
    pub runtime: tokio::runtime::Runtime,
    pub url: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.abort());
        }
    }
}

pub fn models() -> Models {
    let manifest = Manifest::builtin();
    let dir = std::env::temp_dir().join(format!("faceid-server-{}-nocache", std::process::id()));
    let mut settings = HubSettings::from(&[("HOME", dir.to_str().unwrap())], &manifest);
    settings.offline = true;
    let weights = Weights::new(manifest, settings).unwrap();
    let local = LocalFiles {
        base: Some(root().join("tests/data/sd/tiny-a")),
        ip_adapter: Some(root().join("tests/data/faceid/ip-adapter-faceid_tiny.bin")),
        recognizer: Some(root().join("tests/data/face/arcface_r50_bn.onnx")),
        ..Default::default()
    };
    Models::new(
        weights,
        local,
        faceid_core::Device::flex(),
        faceid_core::Precision::F32,
        faceid_server::ModelPolicy::default(),
    )
}

pub fn start(configure: impl FnOnce(&mut ServerConfig)) -> Running {
    start_with(models(), configure)
}

/// [`start`] on other models.
pub fn start_with(models: Models, configure: impl FnOnce(&mut ServerConfig)) -> Running {
    let mut config = ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        files_dir: std::env::temp_dir().join(format!("faceid-server-{}-files", std::process::id())),
        ..ServerConfig::default()
    };
    configure(&mut config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(Server::start(config, models)).unwrap();
    let url = server.public_url().to_string();
    Running {
        server: Some(server),
        runtime,
        url,
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// (status, x-fal-request-id, body as JSON).
pub fn send(
    method: &str,
    url: &str,
    body: Option<&Value>,
    key: Option<&str>,
) -> (u16, String, Value) {
    let agent = agent();
    let mut response = match (method, body) {
        ("POST", Some(b)) => {
            let mut r = agent.post(url).header("content-type", "application/json");
            if let Some(k) = key {
                r = r.header("authorization", format!("Key {k}"));
            }
            r.send(b.to_string()).unwrap()
        }
        ("PUT", _) => {
            let mut r = agent.put(url);
            if let Some(k) = key {
                r = r.header("authorization", format!("Key {k}"));
            }
            r.send_empty().unwrap()
        }
        _ => {
            let mut r = agent.get(url);
            if let Some(k) = key {
                r = r.header("authorization", format!("Key {k}"));
            }
            r.call().unwrap()
        }
    };
    let status = response.status().as_u16();
    let id = response
        .headers()
        .get("x-fal-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, id, json)
}

/// The real photo as a data URI, as fal_client.encode_file makes it.
pub fn face_data_uri() -> String {
    let bytes = std::fs::read(root().join("tests/data/faces/astronaut.png")).unwrap();
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// A small valid request: one 512x512 sample, `steps` DDIM steps.
pub fn input(steps: u32) -> Value {
    json!({
        "prompt": "a photo of an astronaut",
        "face_image_url": face_data_uri(),
        "num_samples": 1,
        "num_inference_steps": steps,
        "seed": 7,
    })
}

/// A plain HTTP server on loopback answering each request with `answer(path)` (a whole raw
/// response) after `delay`; returns its `host:port`.
pub fn stub(delay: Duration, answer: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let answer = std::sync::Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                let _ = reader.read_line(&mut request_line);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                std::thread::sleep(delay);
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .to_string();
                let _ = stream.write_all(&answer(&path));
            });
        }
    });
    addr
}

/// A raw HTTP response.
pub fn http_response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}
