//! Client connections: how many are served at once and how long a client may take to send a
//! request. Request bodies are read only after the API key is checked (see `routes`), within
//! the body timeout.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Limits on client connections.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Most connections open at once; a connection beyond it is closed as soon as it is
    /// accepted (the fal clients retry connection errors).
    pub max_connections: usize,
    /// Time a new connection has to send the headers of its first request (and, with TLS, to
    /// finish its handshake).
    pub header_timeout: Duration,
    /// Time a request body has to arrive in full once its headers are accepted (408 after).
    pub body_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request, until that request's headers
    /// are complete.
    pub idle_timeout: Duration,
    /// Largest body of a request refused for its API key that is read, and dropped as it
    /// arrives, so that its client sees the 401 rather than a reset connection; a larger body
    /// is not read at all (0: never read).
    pub refused_body_drain: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            refused_body_drain: 8 << 20,
        }
    }
}

/// Accepts a connection only while fewer than the limit are open; the permit lives as long as
/// the connection.
#[derive(Clone)]
pub(crate) struct LimitAcceptor {
    permits: Arc<Semaphore>,
}

impl LimitAcceptor {
    pub(crate) fn new(max_connections: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_connections.max(1))),
        }
    }
}

impl<I, S> Accept<I, S> for LimitAcceptor {
    type Stream = Counted<I>;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Counted<I>, S)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        std::future::ready(match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Ok((
                Counted {
                    inner: stream,
                    _permit: permit,
                },
                service,
            )),
            Err(_) => Err(io::Error::other(
                "connection limit reached: connection closed",
            )),
        })
    }
}

/// A connection holding one of the limited places.
pub(crate) struct Counted<I> {
    inner: I,
    _permit: OwnedSemaphorePermit,
}

impl<I: AsyncRead + Unpin> AsyncRead for Counted<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Counted<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
