//! Serving HTTP/1.1 (and WebSocket upgrades) on the listener, with what `axum::serve` leaves open to any client:
//! a deadline for a request's headers (`header_read_timeout`, which also ends idle keep-alive connections), a cap
//! on connections that have not sent a whole request yet (past it, new connections are closed at once), and a
//! shutdown that ends within a deadline whatever clients do.
//!
//! Upgraded connections (WebSocket sessions) leave this loop at the upgrade; their sessions are tracked and closed
//! by `run`.

use std::{
    convert::Infallible,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{body::Body, extract::Request, response::Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::{util::BoxCloneSyncService, ServiceExt};

/// What answers every request; cloned for each one.
pub type Service = BoxCloneSyncService<Request, Response, Infallible>;

/// A client must send a whole request head this soon after the connection opens or after its previous response.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections that have not yet sent a whole request, at most. Each holds a socket and a read buffer; a storm of
/// ten thousand clients connecting at once stays below it.
pub const DEFAULT_MAX_PENDING_CONNECTIONS: usize = 16_384;
/// The largest request head the HTTP parser reads; past it, it answers 431 itself (with an empty body). Above
/// `gateway::MAX_HEADER_BYTES`, so that all but absurd heads get the gateway's JSON error instead.
pub const MAX_HEAD_BYTES: usize = 1024 * 1024;
/// How long shutdown lets requests in flight finish before it drops their connections.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed `accept` (out of file descriptors, say), wait this long before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

#[derive(Clone, Copy, Debug)]
pub struct ServeConfig {
    pub header_read_timeout: Duration,
    pub max_pending_connections: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_pending_connections: DEFAULT_MAX_PENDING_CONNECTIONS,
        }
    }
}

/// Serves `router` until `shutdown` resolves, then stops accepting, lets requests in flight finish (at most
/// `SHUTDOWN_TIMEOUT`), and returns.
pub async fn serve(listener: TcpListener, router: Service, config: ServeConfig, shutdown: impl Future<Output = ()>) {
    let pending = Arc::new(Semaphore::new(config.max_pending_connections.max(1)));
    let connections = TaskTracker::new();
    let finish = CancellationToken::new();
    let drop_now = CancellationToken::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(error) => {
                    tracing::warn!(cause = %error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Past the cap, the connection is closed before it costs more than its socket.
        let Ok(permit) = Arc::clone(&pending).try_acquire_owned() else {
            tracing::debug!("too many connections without a whole request; closing a new one");
            continue;
        };
        // Small frames must leave at once: Nagle's algorithm would hold them behind unacknowledged data.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(cause = %error, "cannot set TCP_NODELAY");
        }
        let (router, finish, drop_now) = (router.clone(), finish.clone(), drop_now.clone());
        connections.spawn(async move {
            // The permit goes with the first request head: from then on the connection is a client's.
            let permit = Mutex::new(Some(permit));
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                permit.lock().expect("permit lock poisoned").take();
                router.clone().oneshot(request.map(Body::new))
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(config.header_read_timeout)
                .max_buf_size(MAX_HEAD_BYTES);
            let connection = builder.serve_connection(TokioIo::new(tcp), service).with_upgrades();
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => log_end(result),
                () = finish.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    tokio::select! {
                        result = connection => log_end(result),
                        () = drop_now.cancelled() => {}
                    }
                }
            }
        });
    }
    drop(listener);
    finish.cancel();
    connections.close();
    if tokio::time::timeout(SHUTDOWN_TIMEOUT, connections.wait()).await.is_err() {
        tracing::warn!("requests did not finish in time; dropping their connections");
        drop_now.cancel();
        connections.wait().await;
    }
}

fn log_end(result: Result<(), hyper::Error>) {
    if let Err(error) = result {
        tracing::debug!(cause = %error, "connection ended");
    }
}
