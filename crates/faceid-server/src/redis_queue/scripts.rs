//! The Lua scripts of the shared queue. Each runs atomically in Redis, so a request moves from
//! one stage to the next in one step that every node sees whole.
//!
//! Keys of a queue with prefix `P`: `P:waiting` (sorted set of queued ids by acceptance order:
//! capacity and queue positions), `P:running` (sorted set of running ids by start time),
//! `P:seq` (the acceptance counter), `P:stream` (a stream of `id` entries read by the workers'
//! consumer group), `P:req:<id>` (a hash: `stage`, `owner`, `input`, `inline`, `webhook`,
//! `deliveries`, `cancel`, `outcome`), `P:logs:<id>` (a list of log lines as JSON) and
//! `P:stats` (a hash of counts over every node: `succeeded`, `failed`, `cancelled`,
//! `reclaimed`). Changes are published on `P:events` with the request id.
//!
//! A script whose reply was lost with its connection is run again (see `RedisQueue::with`), so
//! the scripts that must not act twice are idempotent: SUBMIT by the request id, START,
//! COMPLETE and CANCEL by a token of the call (`start_token`, `completion`, `cancel_token` in
//! the hash), which makes the
//! repeat answer what the first run answered.

/// Accepts a request unless the queue is full. KEYS: waiting, seq, req, stream. ARGV: capacity,
/// id, owner, input, inline, webhook, channel. Returns the queue position, or -1 when full (for a
/// request already accepted: its position, or 0 once it started).
pub const SUBMIT: &str = r"
if redis.call('EXISTS', KEYS[3]) == 1 then return redis.call('ZRANK', KEYS[1], ARGV[2]) or 0 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return -1 end
local seq = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[3], 'stage', 'queued', 'seq', seq, 'owner', ARGV[3], 'input', ARGV[4],
  'inline', ARGV[5], 'webhook', ARGV[6], 'deliveries', 0, 'cancel', 0)
redis.call('ZADD', KEYS[1], seq, ARGV[2])
redis.call('XADD', KEYS[4], '*', 'id', ARGV[2])
redis.call('PUBLISH', ARGV[7], ARGV[2])
return redis.call('ZRANK', KEYS[1], ARGV[2])
";

/// Starts a delivered (or reclaimed) request. KEYS: req, waiting, running, stream, stats. ARGV:
/// id, worker, max deliveries, group, entry, now (ms), channel, token. A delivery after the first is
/// counted as `reclaimed`. Returns `{0}` for a request that is
/// gone or completed (its entry is acknowledged), `{-1, deliveries, '', '', '', webhook}` past
/// the maximum deliveries (the caller completes it as failed), else `{1, deliveries, input, owner, inline,
/// webhook}`.
pub const START: &str = r"
local stage = redis.call('HGET', KEYS[1], 'stage')
if not stage or stage == 'completed' then
  redis.call('XACK', KEYS[4], ARGV[4], ARGV[5])
  redis.call('XDEL', KEYS[4], ARGV[5])
  return {0}
end
if stage == 'running' and redis.call('HGET', KEYS[1], 'start_token') == ARGV[8] then
  local h = redis.call('HMGET', KEYS[1], 'deliveries', 'input', 'owner', 'inline', 'webhook')
  return {1, tonumber(h[1]), h[2], h[3], h[4], h[5]}
end
local n = redis.call('HINCRBY', KEYS[1], 'deliveries', 1)
if n > 1 then redis.call('HINCRBY', KEYS[5], 'reclaimed', 1) end
redis.call('ZREM', KEYS[2], ARGV[1])
if n > tonumber(ARGV[3]) then return {-1, n, '', '', '', redis.call('HGET', KEYS[1], 'webhook')} end
redis.call('HSET', KEYS[1], 'stage', 'running', 'worker', ARGV[2], 'start_token', ARGV[8])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[1])
redis.call('PUBLISH', ARGV[7], ARGV[1])
local h = redis.call('HMGET', KEYS[1], 'input', 'owner', 'inline', 'webhook')
return {1, n, h[1], h[2], h[3], h[4]}
";

/// Adds a log line to a running request, or with `after` = 1 to a completed one too (what
/// happens after completion: webhook deliveries), which expires with it. KEYS: req, logs. ARGV:
/// line (JSON), channel, id, after. Returns 1 when the request was asked to stop, 0 otherwise
/// (-1 when it takes no line).
pub const LOG: &str = r"
local stage = redis.call('HGET', KEYS[1], 'stage')
if stage == 'completed' and ARGV[4] == '1' then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 0
end
if stage ~= 'running' then return -1 end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return tonumber(redis.call('HGET', KEYS[1], 'cancel') or '0')
";

/// Completes a request once: the outcome, the stage, the count and the acknowledgement
/// together. KEYS: req, running, logs, stream, stats. ARGV: id, outcome (JSON), retention (ms),
/// group, entry (may be empty), channel, count (`succeeded`, `failed` or `cancelled`), token. Returns 1 for the completion that counts, 0 when it was completed already.
pub const COMPLETE: &str = r"
if ARGV[5] ~= '' then
  redis.call('XACK', KEYS[4], ARGV[4], ARGV[5])
  redis.call('XDEL', KEYS[4], ARGV[5])
end
local h = redis.call('HMGET', KEYS[1], 'stage', 'completion')
if not h[1] then return 0 end
if h[1] == 'completed' then
  if h[2] == ARGV[8] then return 1 end
  return 0
end
redis.call('HSET', KEYS[1], 'stage', 'completed', 'outcome', ARGV[2], 'completion', ARGV[8])
redis.call('HDEL', KEYS[1], 'input')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[5], ARGV[7], 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
redis.call('PUBLISH', ARGV[6], ARGV[1])
return 1
";

/// Cancels a request visible to a key. KEYS: req, waiting, logs, stats. ARGV: id, key (empty: none),
/// cancelled outcome (JSON), retention (ms), log line (JSON), channel, token. Returns `not_found`,
/// `already_completed`, `requested` (running: it stops at its next step) or `dequeued`.
pub const CANCEL: &str = r"
local h = redis.call('HMGET', KEYS[1], 'stage', 'owner', 'cancel_token')
if not h[1] then return 'not_found' end
if h[2] ~= '' and h[2] ~= ARGV[2] then return 'not_found' end
if h[1] == 'completed' then
  if h[3] == ARGV[7] then return 'dequeued' end
  return 'already_completed'
end
if h[1] == 'running' then
  redis.call('HSET', KEYS[1], 'cancel', 1)
  redis.call('PUBLISH', ARGV[6], ARGV[1])
  return 'requested'
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('RPUSH', KEYS[3], ARGV[5])
redis.call('HSET', KEYS[1], 'stage', 'completed', 'cancel', 1, 'outcome', ARGV[3], 'cancel_token', ARGV[7])
redis.call('HDEL', KEYS[1], 'input')
redis.call('HINCRBY', KEYS[4], 'cancelled', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
redis.call('PUBLISH', ARGV[6], ARGV[1])
return 'dequeued'
";

/// Reads a request visible to a key. KEYS: req, waiting, logs. ARGV: id, key (empty: none),
/// whether to return the logs (1/0). Returns `{}` when not found, else `{stage, position,
/// outcome, logs...}`.
pub const STATUS: &str = r"
local h = redis.call('HMGET', KEYS[1], 'stage', 'owner', 'outcome')
if not h[1] then return {} end
if h[2] ~= '' and h[2] ~= ARGV[2] then return {} end
local position = -1
if h[1] == 'queued' then position = redis.call('ZRANK', KEYS[2], ARGV[1]) or 0 end
local out = {h[1], position, h[3] or ''}
if ARGV[3] == '1' then
  for _, line in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do table.insert(out, line) end
end
return out
";

/// The scripts, each hashed once (`EVALSHA` sends the hash; a Redis that lost its script cache
/// is sent the source again).
pub struct Compiled {
    /// [`SUBMIT`].
    pub submit: redis::Script,
    /// [`START`].
    pub start: redis::Script,
    /// [`LOG`].
    pub log: redis::Script,
    /// [`COMPLETE`].
    pub complete: redis::Script,
    /// [`CANCEL`].
    pub cancel: redis::Script,
    /// [`STATUS`].
    pub status: redis::Script,
}

impl Compiled {
    /// Every script of the queue.
    pub fn new() -> Self {
        Self {
            submit: redis::Script::new(SUBMIT),
            start: redis::Script::new(START),
            log: redis::Script::new(LOG),
            complete: redis::Script::new(COMPLETE),
            cancel: redis::Script::new(CANCEL),
            status: redis::Script::new(STATUS),
        }
    }
}
