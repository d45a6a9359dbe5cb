//! The connections the server keeps: a bounded number at once, each closed once it has sent and
//! taken nothing for a while. Without them, 1,030 clients that sent half a request and stopped
//! held 1,030 file descriptors for good: at the usual limit of 1,024 every later `accept`
//! failed, so no one could use the server, signed in or not. Also the time a request's head may
//! take ([`HEAD_WITHIN`]) and the rate its body must keep ([`AtMinimumRate`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::serve::Listener;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Default time a connection may send and take nothing before it is closed: far beyond a
/// request's wait for a worker (`--queue-timeout`), and what a browser's idle keep-alive
/// connections are given by most servers.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(60);

/// Time a request's head (its line and headers) may take to arrive, at most: a browser sends it
/// at once, and a client that trickles it in holds a connection that the idle timeout, reset by
/// every byte, would never close. Shorter when the idle timeout is.
pub const HEAD_WITHIN: Duration = Duration::from_secs(30);

/// Connections open at once: half of what this process may open, less a margin for the
/// library's own files (the text index's segments, the catalog), at least 16.
pub fn max_open() -> usize {
    (open_files_limit().saturating_sub(128) / 2).clamp(16, 65_536)
}

#[cfg(unix)]
fn open_files_limit() -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the limit into `limit`, which lives for the call.
    match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } {
        0 => usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX),
        _ => 1024,
    }
}

/// No such limit to read elsewhere: a sane default.
#[cfg(not(unix))]
fn open_files_limit() -> usize {
    1024
}

/// `inner`'s connections, each holding one of `max_open` slots while it is open (beyond them,
/// new ones wait in the kernel's backlog) and closed after `idle` without traffic.
pub struct Bounded<L> {
    inner: L,
    slots: Arc<Semaphore>,
    idle: Duration,
}

impl<L> Bounded<L> {
    pub fn new(inner: L, max_open: usize, idle: Duration) -> Self {
        Self { inner, slots: Arc::new(Semaphore::new(max_open.max(1))), idle }
    }
}

impl<L: Listener> Listener for Bounded<L> {
    type Io = Watched<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let slot = self.slots.clone().acquire_owned().await.expect("the slots are never closed");
        let (io, addr) = self.inner.accept().await;
        let deadline = Box::pin(tokio::time::sleep(self.idle));
        (Watched { io, idle: self.idle, deadline, _slot: slot }, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that fails its next read or write once `idle` has passed since its last
/// progress either way, and gives its slot back when it is dropped.
pub struct Watched<S> {
    io: S,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    _slot: OwnedSemaphorePermit,
}

impl<S> Watched<S> {
    /// Called where the connection is waiting: an error once it has waited too long (a wake-up
    /// is registered for that moment otherwise).
    fn waited(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "the connection was idle too long")),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progressed<T>(&mut self, result: T) -> Poll<T> {
        let next = Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
        Poll::Ready(result)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(result) => this.progressed(result),
            Poll::Pending => this.waited(cx).map(Err),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Ready(result) => this.progressed(result),
            Poll::Pending => this.waited(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => this.progressed(result),
            Poll::Pending => this.waited(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Ready(result) => this.progressed(result),
            Poll::Pending => this.waited(cx).map(Err),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// How long a request body may take before it must keep up [`MIN_BODY_RATE`] on average.
pub const BODY_GRACE: Duration = Duration::from_secs(10);

/// Bytes a second a request body must arrive at on average once [`BODY_GRACE`] is over: a
/// photo comes faster over the slowest real uplink, and a client that trickled a body in, a byte
/// now and then, held its connection and its upload slot for good (every byte reset the idle
/// timeout).
pub const MIN_BODY_RATE: f64 = 10_000.0;

/// A request body that fails with [`TooSlow`] once it falls behind [`MIN_BODY_RATE`], counted
/// from when its reading starts (an upload may first wait for a slot, its body held back by TCP
/// meanwhile).
pub struct AtMinimumRate<B> {
    inner: B,
    received: u64,
    /// When the body was first asked for.
    started: Option<Instant>,
    /// Set when the body first waits.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<B> AtMinimumRate<B> {
    pub fn new(inner: B) -> Self {
        Self { inner, received: 0, started: None, deadline: None }
    }

    /// When the bytes received so far stop being enough.
    fn due(&self, started: Instant) -> Instant {
        started + BODY_GRACE + Duration::from_secs_f64(self.received as f64 / MIN_BODY_RATE)
    }
}

/// What an [`AtMinimumRate`] body fails with.
#[derive(Debug)]
pub struct TooSlow;

impl std::fmt::Display for TooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body arrived slower than {} kB/s after its first {} s",
            MIN_BODY_RATE / 1e3,
            BODY_GRACE.as_secs()
        )
    }
}

impl std::error::Error for TooSlow {}

impl<B> Body for AtMinimumRate<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let started = *this.started.get_or_insert_with(Instant::now);
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.received += frame.data_ref().map_or(0, |data| data.len() as u64);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other.map(|result| result.map_err(Into::into))),
            Poll::Pending => {
                let due = this.due(started);
                let deadline = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                if deadline.deadline() != due {
                    deadline.as_mut().reset(due);
                }
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(TooSlow)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
