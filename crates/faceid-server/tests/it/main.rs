//! The server over HTTP on loopback, with the tiny models.

mod api;
mod browser;
mod child;
mod common;
mod hardening;
mod limits;
mod load;
mod playground;
mod plus;
mod props;
mod queue;
mod sdxl;
mod shared_queue;
mod storage;
mod urls;
