//! API keys. A key is never stored: a request records its owner as the HMAC-SHA256 of the key
//! under a random salt, kept in the data folder (so that a restart still maps each request to
//! its key) or, without one, in memory for the life of the process.

use std::collections::HashSet;

use hmac::{Hmac, Mac};

type HmacSha256 = Hmac<sha2::Sha256>;

/// Bytes of salt.
pub const SALT_LEN: usize = 32;

/// A fresh random salt (from the operating system's generator, through UUID v4).
pub fn random_salt() -> [u8; SALT_LEN] {
    let mut salt = [0u8; SALT_LEN];
    salt[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    salt[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    salt
}

/// The accepted keys, as owner ids.
pub struct Keys {
    salt: [u8; SALT_LEN],
    accepted: HashSet<String>,
}

impl Keys {
    /// `keys` under `salt`; no keys means an open server.
    pub fn new(salt: [u8; SALT_LEN], keys: &[String]) -> Self {
        let mut this = Self {
            salt,
            accepted: HashSet::new(),
        };
        this.accepted = keys.iter().map(|k| this.owner_id(k)).collect();
        this
    }

    /// Whether requests need no key.
    pub fn is_open(&self) -> bool {
        self.accepted.is_empty()
    }

    /// The owner id of a key (hex HMAC-SHA256 under the salt).
    pub fn owner_id(&self, key: &str) -> String {
        let mut mac =
            HmacSha256::new_from_slice(&self.salt).expect("HMAC takes keys of any length");
        mac.update(key.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The owner id of an accepted key.
    pub fn check(&self, key: &str) -> Option<String> {
        let id = self.owner_id(key);
        self.accepted.contains(&id).then_some(id)
    }
}
