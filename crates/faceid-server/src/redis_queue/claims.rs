//! The workers' side of the queue: claiming requests through the consumer group (new ones, or
//! those of a worker gone silent), starting them, and keeping the claims alive.

use std::time::{Duration, SystemTime};

use redis::Commands;
use redis::streams::{StreamAutoClaimOptions, StreamReadOptions, StreamReadReply};

use super::{GROUP, NewRequest, QueueError, RedisQueue, millis, pool};

/// A request a worker has taken.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The request id.
    pub id: String,
    /// Its stream entry (what is acknowledged and kept alive).
    pub entry: String,
    /// How many times it has been delivered, this time included.
    pub deliveries: u32,
    /// Whether it was taken over from a worker that went silent.
    pub reclaimed: bool,
}

/// What a worker should do with a claim.
#[derive(Debug, Clone)]
pub enum Start {
    /// Run it.
    Run(NewRequest),
    /// It was delivered more than the maximum: complete it as failed (and send the failure to
    /// its webhook, if it has one).
    Exhausted {
        /// Where to POST the result.
        webhook: Option<String>,
    },
    /// It was completed or cancelled meanwhile; nothing to do.
    Gone,
}

impl RedisQueue {
    /// Takes up to `max` requests for `worker`: first those whose worker went silent for
    /// longer than the visibility timeout, then new ones, waiting up to `block` for them.
    pub fn claim(
        &self,
        worker: &str,
        max: usize,
        block: Duration,
    ) -> Result<Vec<Claim>, QueueError> {
        let stream = self.key("stream");
        let mut reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let conn = match reader.as_mut() {
            Some(conn) => conn,
            None => reader.insert(self.pool.connect(block + pool::COMMAND_TIMEOUT)?),
        };
        let read = Self::read_claims(conn, &stream, worker, max, block, self.settings.visibility);
        if let Err(e) = &read {
            if pool::broken(e) {
                *reader = None;
            } else if e.code() == Some("NOGROUP") {
                drop(reader);
                self.ensure_group()?;
            }
        }
        let claims = read?;
        Ok(claims
            .into_iter()
            .map(|(id, entry, reclaimed)| Claim {
                id,
                entry,
                deliveries: 0,
                reclaimed,
            })
            .collect())
    }

    /// Reclaims entries silent for `visibility`, or else reads new ones (waiting up to `block`).
    fn read_claims(
        conn: &mut redis::Connection,
        stream: &str,
        worker: &str,
        max: usize,
        block: Duration,
        visibility: Duration,
    ) -> redis::RedisResult<Vec<(String, String, bool)>> {
        let stale: redis::streams::StreamAutoClaimReply = conn.xautoclaim_options(
            stream,
            GROUP,
            worker,
            visibility.as_millis() as u64,
            "0-0",
            StreamAutoClaimOptions::default().count(max),
        )?;
        let mut claims: Vec<(String, String, bool)> = stale
            .claimed
            .into_iter()
            .filter_map(|e| Some((e.get::<String>("id")?, e.id, true)))
            .collect();
        if claims.is_empty() {
            let options = StreamReadOptions::default()
                .group(GROUP, worker)
                .count(max)
                .block(block.as_millis().max(1) as usize);
            let read: Option<StreamReadReply> = conn.xread_options(&[stream], &[">"], &options)?;
            for key in read.map(|r| r.keys).unwrap_or_default() {
                for entry in key.ids {
                    if let Some(id) = entry.get::<String>("id") {
                        claims.push((id, entry.id, false));
                    }
                }
            }
        }
        Ok(claims)
    }

    /// Marks a claimed request running on `worker` and returns what to do with it (its
    /// `deliveries` are counted here).
    pub fn start(&self, worker: &str, claim: &mut Claim) -> Result<Start, QueueError> {
        let token = uuid::Uuid::new_v4().to_string();
        let reply: Vec<redis::Value> = self.with(|c| {
            self.scripts
                .start
                .key(self.req(&claim.id))
                .key(self.key("waiting"))
                .key(self.key("running"))
                .key(self.key("stream"))
                .key(self.key("stats"))
                .arg(&claim.id)
                .arg(worker)
                .arg(self.settings.max_deliveries)
                .arg(GROUP)
                .arg(&claim.entry)
                .arg(millis(SystemTime::now()))
                .arg(self.key("events"))
                .arg(&token)
                .invoke(c)
        })?;
        let int = |i: usize| match reply.get(i) {
            Some(redis::Value::Int(n)) => *n,
            _ => 0,
        };
        let text = |i: usize| match reply.get(i) {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        };
        claim.deliveries = int(1) as u32;
        Ok(match int(0) {
            1 => {
                let input = serde_json::from_str(&text(2)).map_err(|e| QueueError::Corrupt {
                    what: "input",
                    id: claim.id.clone(),
                    reason: e.to_string(),
                })?;
                let owner = text(3);
                let webhook = text(5);
                Start::Run(NewRequest {
                    id: claim.id.clone(),
                    owner: (!owner.is_empty()).then_some(owner),
                    input,
                    inline_images: text(4) == "1",
                    webhook: (!webhook.is_empty()).then_some(webhook),
                })
            }
            -1 => {
                let webhook = text(5);
                Start::Exhausted {
                    webhook: (!webhook.is_empty()).then_some(webhook),
                }
            }
            _ => Start::Gone,
        })
    }

    /// Keeps the claims of `worker` on these entries fresh, so that no other worker takes them.
    pub fn heartbeat(&self, worker: &str, entries: &[&str]) -> Result<(), QueueError> {
        if entries.is_empty() {
            return Ok(());
        }
        let stream = self.key("stream");
        self.with(|c| {
            redis::cmd("XCLAIM")
                .arg(&stream)
                .arg(GROUP)
                .arg(worker)
                .arg(0)
                .arg(entries)
                .arg("JUSTID")
                .query::<()>(c)
        })
    }
}
