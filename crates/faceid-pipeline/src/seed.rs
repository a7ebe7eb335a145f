//! Seeds for requests that give none.

/// A random seed below 2^32, so that it means the same to torch's `manual_seed` everywhere.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now()) & 0xFFFF_FFFF
}
