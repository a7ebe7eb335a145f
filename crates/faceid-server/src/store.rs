//! Requests on disk, so that nothing accepted is lost across a restart: one JSON file per
//! request, written (atomically, synced) before the request is acknowledged and again when it
//! completes. On start, completed requests come back with their results and the others go back
//! into the queue in the order they were accepted.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::jobs::{LogItem, Outcome};
use crate::keys::{SALT_LEN, random_salt};

/// A request as stored.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its id.
    pub id: String,
    /// Acceptance order.
    pub seq: u64,
    /// The owner id (HMAC of the submitting key, see `keys`).
    pub owner: Option<String>,
    /// A key stored in plain text by an earlier version (hashed and rewritten on restore).
    pub legacy_owner: Option<String>,
    /// The input as received.
    pub input: Value,
    /// `sync_mode`.
    pub inline_images: bool,
    /// The webhook.
    pub webhook: Option<String>,
    /// The outcome, once completed.
    pub outcome: Option<Outcome>,
    /// The log lines at completion.
    pub logs: Vec<LogItem>,
}

/// The folder of request files. Every file in it is created readable by the owner only
/// (0600), and the folder itself, when created here, 0700.
pub struct Store {
    dir: PathBuf,
    salt: [u8; SALT_LEN],
}

/// The file holding the salt of the owner ids.
const SALT_FILE: &str = "key-salt";

/// Creates `path` for writing, readable by the owner only.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Writes `bytes` to `path` durably: a temporary file beside it, synced, renamed into place; the
/// temporary file is removed if anything fails.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let written = (|| {
        let mut file = create_private(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn time_to_json(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn time_from_json(v: &Value) -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs_f64(v.as_f64().unwrap_or(0.0))
}

impl Store {
    /// Opens (creating) the folder, removes temporary files left by an interrupted write, and
    /// reads (creating) the salt of the owner ids.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name();
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            if is_file && name.to_string_lossy().ends_with(".tmp") {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => {
                        tracing::info!(path = %entry.path().display(), "removed an unfinished write")
                    }
                    Err(e) => {
                        tracing::warn!(path = %entry.path().display(), "cannot remove an unfinished write: {e}")
                    }
                }
            }
        }
        let salt_path = dir.join(SALT_FILE);
        let salt = match std::fs::read(&salt_path) {
            Ok(bytes) => <[u8; SALT_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not {SALT_LEN} bytes", salt_path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let salt = random_salt();
                write_durably(&salt_path, &salt)?;
                salt
            }
            Err(e) => return Err(e),
        };
        Ok(Self {
            dir: dir.to_owned(),
            salt,
        })
    }

    /// The salt of the owner ids.
    pub fn salt(&self) -> [u8; SALT_LEN] {
        self.salt
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a file can be written in the folder now: `Err` says why not.
    pub fn probe(&self) -> std::io::Result<()> {
        let probe = self.dir.join(format!(".probe-{}", uuid::Uuid::new_v4()));
        write_durably(&probe, b"ok")?;
        std::fs::remove_file(probe)
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Writes a record durably (temporary file, sync, rename).
    pub fn save(&self, record: &Record) -> std::io::Result<()> {
        let outcome = record.outcome.as_ref().map(|o| {
            json!({
                "status_code": o.status_code,
                "body": o.body,
                "inference_time": o.inference_time,
                "error": o.error.as_ref().map(|(m, k)| json!([m, k])),
                "finished_at": time_to_json(o.finished_at),
            })
        });
        let logs: Vec<Value> = record
            .logs
            .iter()
            .map(|l| json!({"message": l.message, "level": l.level, "at": time_to_json(l.at)}))
            .collect();
        let value = json!({
            "id": record.id,
            "seq": record.seq,
            "owner_hmac": record.owner,
            "input": record.input,
            "inline_images": record.inline_images,
            "webhook": record.webhook,
            "outcome": outcome,
            "logs": logs,
        });
        write_durably(&self.path(&record.id), value.to_string().as_bytes())
    }

    /// Deletes a record.
    pub fn remove(&self, id: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every stored record, in acceptance order; unreadable files are skipped with a warning.
    pub fn load(&self) -> Vec<Record> {
        let mut records = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return records;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| parse(&v))
            {
                Some(record) => records.push(record),
                None => {
                    tracing::warn!(path = %path.display(), "skipping an unreadable request file")
                }
            }
        }
        records.sort_by_key(|r| r.seq);
        records
    }
}

fn parse(v: &Value) -> Option<Record> {
    let outcome = match &v["outcome"] {
        Value::Null => None,
        o => Some(Outcome {
            status_code: o["status_code"].as_u64()? as u16,
            body: o["body"].clone(),
            inference_time: o["inference_time"].as_f64().unwrap_or(0.0),
            finished_at: time_from_json(&o["finished_at"]),
            error: o["error"].as_array().map(|e| {
                (
                    e[0].as_str().unwrap_or_default().to_string(),
                    e[1].as_str().unwrap_or_default().to_string(),
                )
            }),
        }),
    };
    let logs = v["logs"]
        .as_array()
        .map(|logs| {
            logs.iter()
                .map(|l| LogItem {
                    message: l["message"].as_str().unwrap_or_default().to_string(),
                    level: match l["level"].as_str() {
                        Some("ERROR") => "ERROR",
                        Some("WARNING") => "WARNING",
                        _ => "INFO",
                    },
                    at: time_from_json(&l["at"]),
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Record {
        id: v["id"].as_str()?.to_string(),
        seq: v["seq"].as_u64()?,
        owner: v["owner_hmac"].as_str().map(str::to_string),
        legacy_owner: v["owner"].as_str().map(str::to_string),
        input: v["input"].clone(),
        inline_images: v["inline_images"].as_bool().unwrap_or(false),
        webhook: v["webhook"].as_str().map(str::to_string),
        outcome,
        logs,
    })
}
