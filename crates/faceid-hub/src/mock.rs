//! A local imitation of the Hugging Face hub's HTTP API (`/api/models/.../revision/...`,
//! `/<repo>/resolve/<revision>/<path>` with LFS files redirected to a content address, range
//! requests, `X-Repo-Commit` / `X-Linked-Etag` headers, gated repositories) and of a plain
//! download site, on loopback, for tests. It can serve corrupt content, cut a transfer short once,
//! and records every request.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// One request as the mock saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    /// `GET` or `HEAD`.
    pub method: String,
    /// The path.
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The `Host` header.
    pub host: String,
}

#[derive(Default)]
struct Repo {
    commit: String,
    files: HashMap<String, Vec<u8>>,
    token: Option<String>,
}

#[derive(Default)]
struct State {
    repos: HashMap<String, Repo>,
    /// Content-addressed LFS objects and plain assets, by URL path.
    objects: HashMap<String, Vec<u8>>,
    corrupt: HashSet<String>,
    truncate_once: HashSet<String>,
    log: Vec<Logged>,
}

/// The mock server; stops when dropped.
pub struct MockHub {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

/// The SHA-256 of bytes in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Files stored with Git LFS on the hub (the weights); others are plain git files.
fn is_lfs(path: &str) -> bool {
    [".safetensors", ".bin", ".onnx", ".zip", ".pth"]
        .iter()
        .any(|e| path.ends_with(e))
}

impl MockHub {
    /// Starts the server on a free loopback port.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("local address").port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &s);
                });
            }
        });
        Self { port, state, stop }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Publishes a repository at a commit with these files.
    pub fn add_repo(&self, repo: &str, commit: &str, files: Vec<(String, Vec<u8>)>) {
        let mut state = self.state.lock().unwrap();
        for (path, bytes) in &files {
            if is_lfs(path) {
                state
                    .objects
                    .insert(format!("/lfs/{}", sha256_hex(bytes)), bytes.clone());
            }
        }
        state.repos.insert(
            repo.to_string(),
            Repo {
                commit: commit.to_string(),
                files: files.into_iter().collect(),
                token: None,
            },
        );
    }

    /// Makes a repository gated: only `Authorization: Bearer TOKEN` gets in.
    pub fn gate(&self, repo: &str, token: &str) {
        self.state
            .lock()
            .unwrap()
            .repos
            .get_mut(repo)
            .expect("repo")
            .token = Some(token.into());
    }

    /// Serves a plain file at a URL path (`/releases/buffalo_l.zip`).
    pub fn add_asset(&self, path: &str, bytes: Vec<u8>) {
        self.state
            .lock()
            .unwrap()
            .objects
            .insert(path.into(), bytes);
    }

    /// Serves a repository file with one byte changed (its advertised digest unchanged).
    pub fn corrupt(&self, repo: &str, path: &str) {
        let mut state = self.state.lock().unwrap();
        let bytes = &state.repos[repo].files[path];
        let key = if is_lfs(path) {
            format!("/lfs/{}", sha256_hex(bytes))
        } else {
            format!("/{repo}/resolve/main/{path}")
        };
        state.corrupt.insert(key);
    }

    /// The next full transfer of this URL path stops halfway (the connection drops).
    pub fn truncate_once(&self, url_path: &str) {
        self.state
            .lock()
            .unwrap()
            .truncate_once
            .insert(url_path.into());
    }

    /// The URL path a repository file's content is served from (its LFS address for weights).
    pub fn content_path(&self, repo: &str, path: &str) -> String {
        let state = self.state.lock().unwrap();
        let bytes = &state.repos[repo].files[path];
        if is_lfs(path) {
            format!("/lfs/{}", sha256_hex(bytes))
        } else {
            format!("/{repo}/resolve/main/{path}")
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }
}

impl Drop for MockHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send only this many body bytes, then drop the connection.
    cut_at: Option<usize>,
}

impl Reply {
    fn new(status: u16, body: Vec<u8>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body,
            cut_at: None,
        }
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let logged = Logged {
        method: method.clone(),
        path: path.clone(),
        range: headers.get("range").cloned(),
        authorization: headers.get("authorization").cloned(),
        host: headers.get("host").cloned().unwrap_or_default(),
    };
    let reply = {
        let mut state = state.lock().unwrap();
        state.log.push(logged.clone());
        route(&mut state, &logged)
    };
    write_reply(stream, &method, reply)
}

fn route(state: &mut State, req: &Logged) -> Reply {
    let path = req.path.split('?').next().unwrap_or("");
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let Some((repo, revision)) = rest.split_once("/revision/") else {
            return Reply::new(404, b"{}".to_vec());
        };
        let Some(r) = state.repos.get(repo) else {
            return not_found("RepoNotFound");
        };
        if let Some(denied) = gate(r, req) {
            return denied;
        }
        let _ = revision;
        let mut siblings: Vec<_> = r.files.keys().cloned().collect();
        siblings.sort();
        let body = serde_json::json!({
            "id": repo,
            "sha": r.commit,
            "siblings": siblings.iter().map(|f| serde_json::json!({"rfilename": f})).collect::<Vec<_>>(),
        });
        return Reply::new(200, body.to_string().into_bytes())
            .header("Content-Type", "application/json");
    }
    if let Some((repo, file)) = path.trim_start_matches('/').split_once("/resolve/") {
        let Some(r) = state.repos.get(repo) else {
            return not_found("RepoNotFound");
        };
        if let Some(denied) = gate(r, req) {
            return denied;
        }
        let file = file.split_once('/').map(|(_, f)| f).unwrap_or("");
        let Some(bytes) = r.files.get(file) else {
            return not_found("EntryNotFound");
        };
        let digest = sha256_hex(bytes);
        if is_lfs(file) {
            return Reply::new(302, Vec::new())
                .header("Location", format!("http://{}/lfs/{digest}", req.host))
                .header("X-Repo-Commit", r.commit.clone())
                .header("X-Linked-Etag", format!("\"{digest}\""))
                .header("X-Linked-Size", bytes.len().to_string())
                .header("ETag", format!("\"{}\"", &digest[..40]));
        }
        let commit = r.commit.clone();
        let bytes = bytes.clone();
        return content(state, path, bytes, req)
            .header("X-Repo-Commit", commit)
            .header("ETag", format!("\"{}\"", &digest[..40]));
    }
    match state.objects.get(path).cloned() {
        Some(bytes) => content(state, path, bytes, req).header("ETag", "\"object\""),
        None => not_found("EntryNotFound"),
    }
}

fn not_found(code: &str) -> Reply {
    Reply::new(404, br#"{"error":"not found"}"#.to_vec()).header("X-Error-Code", code)
}

fn gate(repo: &Repo, req: &Logged) -> Option<Reply> {
    let token = repo.token.as_ref()?;
    match &req.authorization {
        Some(auth) if auth == &format!("Bearer {token}") => None,
        Some(_) => Some(
            Reply::new(
                403,
                br#"{"error":"Access to this model is restricted"}"#.to_vec(),
            )
            .header("X-Error-Code", "GatedRepo"),
        ),
        None => Some(
            Reply::new(
                401,
                br#"{"error":"Access to this model is restricted"}"#.to_vec(),
            )
            .header("X-Error-Code", "GatedRepo"),
        ),
    }
}

/// A body with range support, corrupt or cut short when asked.
fn content(state: &mut State, key: &str, mut bytes: Vec<u8>, req: &Logged) -> Reply {
    if state.corrupt.contains(key) && !bytes.is_empty() {
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
    }
    let total = bytes.len();
    let range = req
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .map(|(a, b)| {
            let start: usize = a.parse().unwrap_or(0);
            let end: usize = b.parse().unwrap_or(total.saturating_sub(1));
            (start.min(total), end.min(total.saturating_sub(1)))
        });
    let mut reply = match range {
        Some((start, end)) if start < total => Reply::new(206, bytes[start..=end].to_vec())
            .header("Content-Range", format!("bytes {start}-{end}/{total}")),
        Some(_) => Reply::new(416, Vec::new()).header("Content-Range", format!("bytes */{total}")),
        None => Reply::new(200, bytes),
    };
    let probe = matches!(range, Some((0, 0)));
    if !probe && req.method == "GET" && state.truncate_once.remove(key) {
        reply.cut_at = Some(reply.body.len() / 2);
    }
    reply.header("Accept-Ranges", "bytes")
}

fn write_reply(mut stream: TcpStream, method: &str, reply: Reply) -> std::io::Result<()> {
    let reason = match reply.status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Error",
    };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if method != "HEAD" {
        let n = reply.cut_at.unwrap_or(reply.body.len());
        stream.write_all(&reply.body[..n])?;
    }
    stream.flush()?;
    if reply.cut_at.is_some() {
        stream.shutdown(std::net::Shutdown::Both)?;
    }
    Ok(())
}

/// The files of the tiny SD 1.5 base model that the mock publishes (those the pipeline reads).
pub const TINY_BASE_FILES: [&str; 10] = [
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
];

/// The files of the tiny SDXL folder (`tests/data/sdxl/tiny-xl`) published as
/// `SG161222/RealVisXL_V3.0`.
pub const TINY_SDXL_FILES: &[&str] = &[
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "text_encoder_2/config.json",
    "text_encoder_2/model.safetensors",
    "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "tokenizer_2/merges.txt",
    "tokenizer_2/special_tokens_map.json",
    "tokenizer_2/tokenizer_config.json",
    "tokenizer_2/vocab.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
];

/// The project's tiny test models, published under the real repository names and layouts of
/// model types `1_5-v1`, `SDXL-v1` and `SDXL-v2-plus` (see `weights/manifest.toml`): the
/// SD-1.5-shaped `tests/data/sd/tiny-a` as `SG161222/Realistic_Vision_V4.0_noVAE` (f32 weights
/// only, no VAE), its VAE as `stabilityai/sd-vae-ft-mse`, the SDXL-shaped
/// `tests/data/sdxl/tiny-xl` as `SG161222/RealVisXL_V3.0`, the tiny FaceID checkpoints as
/// `h94/IP-Adapter-FaceID`'s `ip-adapter-faceid_sd15.bin`, `ip-adapter-faceid_sdxl.bin` and
/// `ip-adapter-faceid-plusv2_sdxl.bin`, the tiny CLIP vision tower as `h94/IP-Adapter`'s
/// `models/image_encoder`, and `/releases/buffalo_l.zip` holding the bundled RetinaFace as
/// `det_10g.onnx` and `tests/data/face/arcface_r50_bn.onnx` as `w600k_r50.onnx`. `root` is the
/// repository's root folder.
pub fn publish_tiny_models(hub: &MockHub, root: &std::path::Path) -> std::io::Result<()> {
    let read = |rel: &str| std::fs::read(root.join(rel));
    let tiny = "tests/data/sd/tiny-a";
    let mut files = Vec::new();
    for f in TINY_BASE_FILES {
        files.push((f.to_string(), read(&format!("{tiny}/{f}"))?));
    }
    hub.add_repo(
        "SG161222/Realistic_Vision_V4.0_noVAE",
        "1111111111111111111111111111111111111111",
        files,
    );
    hub.add_repo(
        "stabilityai/sd-vae-ft-mse",
        "2222222222222222222222222222222222222222",
        vec![
            (
                "config.json".into(),
                read(&format!("{tiny}/vae/config.json"))?,
            ),
            (
                "diffusion_pytorch_model.safetensors".into(),
                read(&format!("{tiny}/vae/diffusion_pytorch_model.safetensors"))?,
            ),
        ],
    );
    let sdxl = "tests/data/sdxl";
    let mut files = Vec::new();
    for f in TINY_SDXL_FILES {
        files.push((f.to_string(), read(&format!("{sdxl}/tiny-xl/{f}"))?));
    }
    hub.add_repo(
        "SG161222/RealVisXL_V3.0",
        "4444444444444444444444444444444444444444",
        files,
    );
    hub.add_repo(
        "h94/IP-Adapter-FaceID",
        "3333333333333333333333333333333333333333",
        vec![
            (
                "ip-adapter-faceid_sd15.bin".into(),
                read("tests/data/faceid/ip-adapter-faceid_tiny.bin")?,
            ),
            (
                "ip-adapter-faceid_sdxl.bin".into(),
                read(&format!("{sdxl}/ip-adapter-faceid_sdxl_tiny.bin"))?,
            ),
            (
                "ip-adapter-faceid-plusv2_sdxl.bin".into(),
                read(&format!("{sdxl}/ip-adapter-faceid-plusv2_sdxl_tiny.bin"))?,
            ),
        ],
    );
    let vit = "tests/data/clip_vision/tiny-vit";
    hub.add_repo(
        "h94/IP-Adapter",
        "5555555555555555555555555555555555555555",
        vec![
            (
                "models/image_encoder/config.json".into(),
                read(&format!("{vit}/config.json"))?,
            ),
            (
                "models/image_encoder/model.safetensors".into(),
                read(&format!("{vit}/model.safetensors"))?,
            ),
        ],
    );
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, source) in [
        ("det_10g.onnx", "weights/retinaface_mnet025.onnx"),
        ("w600k_r50.onnx", "tests/data/face/arcface_r50_bn.onnx"),
    ] {
        zip.start_file(name, zip::write::SimpleFileOptions::default())
            .map_err(std::io::Error::other)?;
        zip.write_all(&read(source)?)?;
    }
    let archive = zip.finish().map_err(std::io::Error::other)?.into_inner();
    hub.add_asset("/releases/buffalo_l.zip", archive);
    Ok(())
}
