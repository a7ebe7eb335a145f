//! What every node of a queue shares besides the requests: the counts over all workers, the
//! salt of API key owner ids, and the events of changes.

use std::time::Duration;

use redis::Commands;

use super::{QueueError, RedisQueue};

impl RedisQueue {
    /// Requests finished across every node, and deliveries that took a request over from a
    /// silent worker.
    pub fn stats(&self) -> Result<SharedStats, QueueError> {
        let key = self.key("stats");
        let counts: std::collections::HashMap<String, u64> = self.with(|c| c.hgetall(&key))?;
        let count = |name: &str| counts.get(name).copied().unwrap_or(0);
        Ok(SharedStats {
            succeeded: count("succeeded"),
            failed: count("failed"),
            cancelled: count("cancelled"),
            reclaimed: count("reclaimed"),
        })
    }

    /// The salt of API key owner ids, the same on every API node: created by the first node,
    /// read by the others.
    pub fn key_salt(&self) -> Result<[u8; crate::keys::SALT_LEN], QueueError> {
        let key = self.key("salt");
        let fresh: Vec<u8> = crate::keys::random_salt().to_vec();
        let stored: Vec<u8> = self.with(|c| {
            redis::pipe()
                .cmd("SET")
                .arg(&key)
                .arg(&fresh)
                .arg("NX")
                .ignore()
                .get(&key)
                .query::<(Vec<u8>,)>(c)
                .map(|(salt,)| salt)
        })?;
        stored
            .try_into()
            .map_err(|salt: Vec<u8>| QueueError::Corrupt {
                what: "key salt",
                id: "-".into(),
                reason: format!("{} bytes instead of {}", salt.len(), crate::keys::SALT_LEN),
            })
    }

    /// Calls `changed` with the id of every request that changes, from any node, until `stop`
    /// is set; after a lost connection it reconnects and calls `changed(None)`, since changes
    /// may have been missed meanwhile. Blocks: run it on a thread of its own.
    pub fn watch(&self, stop: &std::sync::atomic::AtomicBool, changed: &dyn Fn(Option<&str>)) {
        use std::sync::atomic::Ordering;
        let channel = self.key("events");
        while !stop.load(Ordering::SeqCst) {
            let subscribed = self
                .pool
                .connect(Duration::from_millis(500))
                .and_then(|mut conn| {
                    let mut pubsub = conn.as_pubsub();
                    pubsub.subscribe(&channel)?;
                    changed(None);
                    while !stop.load(Ordering::SeqCst) {
                        match pubsub.get_message() {
                            Ok(message) => {
                                let id: String = message.get_payload().unwrap_or_default();
                                changed(Some(&id));
                            }
                            Err(e) if e.is_timeout() => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(())
                });
            if let Err(e) = subscribed {
                tracing::warn!("lost the shared queue's events: {e}; reconnecting");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// Counts kept in Redis for every node of a queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SharedStats {
    /// Requests completed with an output.
    pub succeeded: u64,
    /// Requests completed with an error.
    pub failed: u64,
    /// Requests cancelled.
    pub cancelled: u64,
    /// Deliveries of a request whose earlier worker went silent.
    pub reclaimed: u64,
}
