//! Bounded request work. Every request's CPU or disk work (a text through the model, a search,
//! a thumbnail) needs one of a fixed number of workers; the others wait in a bounded queue, and
//! a request that cannot get a worker in time gets 503 with `Retry-After` instead of a timeout.
//! Without this, 200 clients made the server grow to 500 blocking threads and 1.4 GB: each
//! waiting request held a thread and its buffers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;

/// Blocking threads beyond the workers: sign-in checks, file reads, the library's own.
pub const SPARE_BLOCKING_THREADS: usize = 8;
/// Requests allowed to wait for a worker; beyond that a new one is turned away at once. A
/// waiting request holds no thread, only its task and connection, so the bound is on how long
/// the queue may grow, not on the number of workers.
const MAX_WAITING: usize = 512;
/// Uploads held at once per worker, from their first byte to the end of their search: each is
/// up to `--upload-limit` (32 MB) in memory, twice while a multipart body is taken apart. Without
/// a bound, as many as the connections (up to 65,536) could be, while they waited for a worker.
const UPLOADS_PER_WORKER: usize = 4;

/// The workers a server runs by default: one per thread of [`crate::cpu_threads`] (one per core
/// unless `--threads` says otherwise). The work is CPU-bound (a text through
/// the model, a search; a thumbnail is a small decode), and each worker's thread keeps its own
/// allocator pages and scratch buffers: with two per core, 200 clients left the tiny-model
/// server at 1.26x its idle memory, with one per core at 1.17x and as many requests/s
/// (benches/README.md).
pub fn default_workers() -> usize {
    crate::cpu_threads()
}

pub struct WorkQueue {
    workers: std::sync::Arc<Semaphore>,
    waiting: AtomicUsize,
    timeout: Duration,
    /// Uploads being received or searched with ([`UPLOADS_PER_WORKER`]).
    uploads: std::sync::Arc<Semaphore>,
}

/// No worker in time: 503 `busy`, with when to try again.
pub struct Busy;

impl WorkQueue {
    pub fn new(workers: usize, timeout: Duration) -> Self {
        let workers = workers.max(1);
        Self {
            workers: std::sync::Arc::new(Semaphore::new(workers)),
            waiting: AtomicUsize::new(0),
            timeout,
            uploads: std::sync::Arc::new(Semaphore::new(workers * UPLOADS_PER_WORKER)),
        }
    }

    /// Room for one more upload, waited for at most the queue's timeout; kept until the permit
    /// is dropped (when the search with it has ended).
    pub async fn admit_upload(&self) -> Result<OwnedSemaphorePermit, Busy> {
        match tokio::time::timeout(self.timeout, self.uploads.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Busy),
        }
    }

    /// Waits for a worker, at most the queue's timeout, behind at most [`MAX_WAITING`] others.
    /// The worker is released when the permit is dropped.
    pub async fn admit(&self) -> Result<OwnedSemaphorePermit, Busy> {
        if let Ok(permit) = self.workers.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Busy);
        }
        let permit = tokio::time::timeout(self.timeout, self.workers.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        match permit {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Busy),
        }
    }
}

impl From<Busy> for ApiError {
    fn from(_: Busy) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "busy",
            message: "the server is busy with other requests: try again in a moment".into(),
        }
    }
}
