//! Timestamps as the API writes them.

use std::time::SystemTime;

/// RFC 3339 / ISO 8601 in UTC with milliseconds (`2026-11-24T22:47:52.123Z`).
pub fn iso8601(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}
