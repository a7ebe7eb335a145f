//! The server over HTTP on loopback, with the tiny models.

mod api;
mod common;
mod load;
mod queue;
