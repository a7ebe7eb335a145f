//! Requests on disk, so that nothing accepted is lost across a restart: one JSON file per
//! request, written (atomically, synced) before the request is acknowledged and again when it
//! completes. On start, completed requests come back with their results and the others go back
//! into the queue in the order they were accepted.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::jobs::{LogItem, Outcome};

/// A request as stored.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its id.
    pub id: String,
    /// Acceptance order.
    pub seq: u64,
    /// The submitting key.
    pub owner: Option<String>,
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

/// The folder of request files.
pub struct Store {
    dir: PathBuf,
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
    /// Opens (creating) the folder.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
        })
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
            "owner": record.owner,
            "input": record.input,
            "inline_images": record.inline_images,
            "webhook": record.webhook,
            "outcome": outcome,
            "logs": logs,
        });
        let path = self.path(&record.id);
        let tmp = path.with_extension("json.tmp");
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(value.to_string().as_bytes())?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &path)
    }

    /// Deletes a record.
    pub fn remove(&self, id: &str) {
        let _ = std::fs::remove_file(self.path(id));
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
        owner: v["owner"].as_str().map(str::to_string),
        input: v["input"].clone(),
        inline_images: v["inline_images"].as_bool().unwrap_or(false),
        webhook: v["webhook"].as_str().map(str::to_string),
        outcome,
        logs,
    })
}
