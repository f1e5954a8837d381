//! The request-header deadline: a client must send a whole request header within
//! `server.header_timeout` of its first byte (of the connection's accept, for the first
//! request), or it gets `408` and the connection is closed.
//!
//! Pingora's own read timeout applies to each read, so a client sending one byte every few
//! seconds (slowloris) would hold a connection forever. The deadline sits in the stream,
//! below Pingora's parser, because nothing above it runs until a header is complete. The
//! proxy tells the stream when a header has been read, and when its request is over, through
//! the [`RequestClock`] it finds on the session.

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use prometheus::IntCounter;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

pub(super) const TIMEOUT_RESPONSE: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\n\
Content-Length: 56\r\nConnection: close\r\n\r\n408 Request Timeout: the request header came too slowly\n";

/// What the proxy tells the stream about the request on it.
#[derive(Debug, Default)]
pub(crate) struct RequestClock {
    /// Request headers read so far; a change means the header being timed is complete.
    headers_read: AtomicU32,
    /// A request is being served: reads are of its body, which Pingora's read timeout
    /// covers, or of the next header once the response is done.
    in_request: AtomicBool,
}

impl RequestClock {
    /// The clock of the connection a session reads from, if it has one (HTTP/1 only).
    pub(crate) fn of(stream: Option<&Stream>) -> Option<&RequestClock> {
        let stream = stream?.as_any().downcast_ref::<HeaderDeadline>()?;
        Some(&stream.clock)
    }

    /// A request header has been read: stop its deadline.
    pub(crate) fn header_read(&self) {
        self.headers_read.fetch_add(1, Ordering::Relaxed);
        self.in_request.store(true, Ordering::Relaxed);
    }

    /// The request is over: the next bytes begin a new header.
    pub(crate) fn request_done(&self) {
        self.in_request.store(false, Ordering::Relaxed);
    }
}

/// A client stream whose request headers must arrive within a deadline.
pub(crate) struct HeaderDeadline {
    inner: Stream,
    clock: Arc<RequestClock>,
    timeout: Duration,
    timed_out_count: IntCounter,
    /// The header being read must be complete by then; `None` between requests until the
    /// first byte of the next one.
    deadline: Option<Pin<Box<Sleep>>>,
    headers_seen: u32,
    timed_out: bool,
}

impl HeaderDeadline {
    /// Wraps a freshly accepted stream; its first header is due `timeout` from now.
    /// Each time-out is counted in `timed_out_count`.
    pub(crate) fn new(inner: Stream, timeout: Duration, timed_out_count: IntCounter) -> Self {
        Self {
            inner,
            clock: Arc::default(),
            timeout,
            timed_out_count,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            headers_seen: 0,
            timed_out: false,
        }
    }

    /// Whether a request is being served; first drops the deadline of a header that has
    /// been read since the last look.
    fn in_request(&mut self) -> bool {
        let headers_read = self.clock.headers_read.load(Ordering::Relaxed);
        if headers_read != self.headers_seen {
            self.headers_seen = headers_read;
            self.deadline = None;
        }
        self.clock.in_request.load(Ordering::Relaxed)
    }

    /// While the stream has nothing to read: times out once the header's deadline has passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => self.time_out(cx),
            _ => Poll::Pending,
        }
    }

    /// Answers 408 if the socket takes it at once, and fails the read.
    fn time_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.timed_out = true;
        self.deadline = None;
        self.timed_out_count.inc();
        let _ = Pin::new(&mut self.inner).poll_write(cx, TIMEOUT_RESPONSE);
        let _ = Pin::new(&mut self.inner).poll_flush(cx);
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "request header timeout",
        )))
    }
}

impl AsyncRead for HeaderDeadline {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        if this.in_request() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before && this.deadline.is_none() => {
                let due = Instant::now() + this.timeout;
                this.deadline = Some(Box::pin(tokio::time::sleep_until(due)));
                Poll::Ready(Ok(()))
            }
            Poll::Pending => this.poll_deadline(cx),
            ready => ready,
        }
    }
}

impl AsyncWrite for HeaderDeadline {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl fmt::Debug for HeaderDeadline {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("HeaderDeadline")
            .field("inner", &self.inner)
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[async_trait]
impl Shutdown for HeaderDeadline {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for HeaderDeadline {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeaderDeadline {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeaderDeadline {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeaderDeadline {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for HeaderDeadline {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for HeaderDeadline {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }

    /// Pingora waits here before it allocates the buffer of a request header
    /// (patches/pingora/0013), so the first header's deadline runs here too.
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.timed_out {
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        let in_request = self.in_request();
        match self.inner.poll_read_ready(cx) {
            Poll::Pending if !in_request => self.poll_deadline(cx),
            ready => ready,
        }
    }
}
