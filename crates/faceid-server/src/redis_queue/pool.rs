//! The connections of one node to Redis: a small pool for short commands that outlives Redis
//! restarts. A connection that failed is closed; one idle for a while is pinged before use; a
//! command that failed on a pooled connection runs once more on a new one, which is why every
//! command of the queue is a read or idempotent (see `scripts`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Connections kept open for the next command (more may be open while commands run).
const IDLE_CONNECTIONS: usize = 8;
/// Time to connect to Redis.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time one command may take.
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// A pooled connection idle for longer is checked with a `PING` before it is used (Redis may
/// have restarted meanwhile).
const CHECK_AFTER: Duration = Duration::from_millis(100);

/// Whether an error leaves the connection unusable.
pub(super) fn broken(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_unrecoverable_error()
}

/// Open connections to one Redis.
pub(super) struct Pool {
    client: redis::Client,
    /// Open connections for short commands, with the time each was last used.
    idle: Mutex<Vec<(redis::Connection, Instant)>>,
}

impl Pool {
    /// A pool for `url` (nothing is connected yet).
    pub(super) fn open(url: &str) -> redis::RedisResult<Self> {
        Ok(Self {
            client: redis::Client::open(url)?,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// A new connection whose reads wait up to `timeout`.
    pub(super) fn connect(&self, timeout: Duration) -> redis::RedisResult<redis::Connection> {
        let conn = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        conn.set_read_timeout(Some(timeout))?;
        conn.set_write_timeout(Some(COMMAND_TIMEOUT))?;
        Ok(conn)
    }

    /// Runs `command` on a pooled connection. When a pooled connection turns out broken
    /// (Redis restarted since its last use) the command runs again once on a new one: every
    /// command is either a read or idempotent (see `scripts`).
    pub(super) fn with<T>(
        &self,
        mut command: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let usable = pooled.and_then(|(mut conn, used)| {
            let fresh =
                used.elapsed() < CHECK_AFTER || redis::cmd("PING").query::<()>(&mut conn).is_ok();
            fresh.then_some(conn)
        });
        let retry = usable.is_some();
        let mut conn = match usable {
            Some(conn) => conn,
            None => self.connect(COMMAND_TIMEOUT)?,
        };
        let mut result = command(&mut conn);
        if retry && result.as_ref().is_err_and(broken) {
            conn = self.connect(COMMAND_TIMEOUT)?;
            result = command(&mut conn);
        }
        if !result.as_ref().is_err_and(broken) {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < IDLE_CONNECTIONS {
                idle.push((conn, Instant::now()));
            }
        }
        result
    }
}

/// A queue address without its password, for messages.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}
