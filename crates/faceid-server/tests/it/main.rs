//! The server over HTTP on loopback, with the tiny models.

mod api;
mod child;
mod common;
mod hardening;
mod limits;
mod load;
mod plus;
mod props;
mod sdxl;
mod queue;
mod storage;
mod urls;
