//! The server over HTTP on loopback, with the tiny models.

mod api;
mod child;
mod common;
mod hardening;
mod limits;
mod load;
mod plus;
mod props;
mod queue;
mod sdxl;
mod storage;
mod urls;
