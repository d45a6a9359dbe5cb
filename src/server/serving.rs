//! The accept loop: each connection a listener hands over served over HTTP/1 until shutdown,
//! then the open ones let finish. `axum::serve` does the same with hyper's defaults, and
//! one of them drops a request unanswered: a client that shuts its sending side once the request
//! is out (an HTTP/1.0 script, `nc -N`, a socket closed with `shutdown(SHUT_WR)`) got no
//! response at all, because hyper closed the connection at the end of its input. Here HTTP/1
//! half-close is allowed, so such a client gets its answer before the connection closes. And a
//! request's head must arrive whole within a time, and its body at a minimum rate
//! ([`AtMinimumRate`]): the idle timeout alone let a client that sent one header line or one
//! byte of a body a minute hold its connection for good. What hyper answers on its own, to a
//! request it cannot read, goes out in the API's JSON shape ([`JsonAnswers`]).

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;

use super::connections::AtMinimumRate;
use super::unreadable::JsonAnswers;
use super::Peer;

/// The most bytes a request's line and headers may take (hyper answers 431 beyond). Without it,
/// hyper's limit was its read buffer's (408 kB), checked only when the buffer filled: a 500 kB
/// header that came in one read was taken, the same one in two reads refused.
pub(super) const MAX_HEAD_BYTES: usize = 128 * 1024;

/// Serves `app` on every connection `listener` accepts until Ctrl-C or SIGTERM ([`stop_asked`]);
/// then closes the listener and returns once the open connections have answered what they were
/// asked, or at once when asked to stop a second time. A request's head (its line and headers)
/// must arrive within `head_within` of the connection's waiting for it: from its opening, or
/// from the answer before it (an idle keep-alive too).
pub async fn serve<L>(mut listener: L, app: Router, head_within: Duration)
where
    L: Listener<Addr = SocketAddr>,
{
    // The connections wait on `stop` being closed (its receiver dropped) to finish gracefully,
    // and each holds a receiver of `ended` until it is done.
    let (stop, stop_receiver) = watch::channel(());
    let (ended, ended_receiver) = watch::channel(());
    let mut shutdown = std::pin::pin!(stop_asked());
    loop {
        let (io, client) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let app = app.clone();
        // What `ConnectInfo<Peer>` extracts (sign-in throttling keys on it).
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(Peer(client)));
            tower_service::Service::call(&mut app.clone(), request.map(|body| Body::new(AtMinimumRate::new(body))))
        });
        let (stop, ended) = (stop.clone(), ended_receiver.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .half_close(true)
                .timer(TokioTimer::new())
                .header_read_timeout(head_within)
                .max_header_size(MAX_HEAD_BYTES)
                .serve_connection(TokioIo::new(JsonAnswers::new(io)), service)
                .with_upgrades();
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(why) = result {
                        tracing::debug!("connection from {client} ended: {why}");
                    }
                }
                () = stop.closed() => {
                    connection.as_mut().graceful_shutdown();
                    if let Err(why) = connection.await {
                        tracing::debug!("connection from {client} ended: {why}");
                    }
                }
            }
            drop(ended);
        });
    }
    // New clients are refused at once, not left waiting in the listener's backlog for good.
    drop(listener);
    drop(stop_receiver);
    drop(ended_receiver);
    tracing::info!("stopping: answering what the open connections asked (stop again to stop at once)");
    tokio::select! {
        () = ended.closed() => {}
        () = stop_asked() => tracing::warn!("asked again: stopping without waiting for the open connections"),
    }
}

/// Resolves at Ctrl-C, or at SIGTERM (what systemd and `docker stop` send; it used to end the
/// process at once, without letting requests finish).
async fn stop_asked() {
    #[cfg(unix)]
    if let Ok(mut terminate) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        return;
    }
    let _ = tokio::signal::ctrl_c().await;
}
