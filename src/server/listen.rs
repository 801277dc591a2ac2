//! Serving a router on a listener with limits that keep slow or idle
//! clients from holding the process's connections (and file descriptors,
//! which git fetches need too): a cap on open connections, a deadline for
//! each request's head (which is also how long a kept-alive connection may
//! sit idle) and one for the whole request, body included.

use axum::{
    Router,
    extract::{Request, State},
    http::StatusCode,
    middleware::Next,
    response::Response,
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::{net::TcpListener, sync::Semaphore};

/// How long and how many: the HTTP server's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Longest a client may take to send a request's head, and longest a
    /// connection may wait idle for its next request.
    pub header_timeout: Duration,
    /// Longest one request may take, reading its body included.
    pub request_timeout: Duration,
    /// Most connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 256,
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves,
/// then lets the requests in flight finish (for at most the request
/// timeout).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let app = app.layer(axum::middleware::from_fn_with_state(
        limits.request_timeout,
        request_deadline,
    ));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        // NB: a connection is accepted only with a free slot, so at the cap
        // new clients wait in the kernel's backlog (costing this process no
        // descriptor) until a timeout or a finished client frees one.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, most likely: wait a little rather
                    // than spin on a listener that keeps failing.
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = connection.await {
                // Timeouts and clients that went away: nothing to act on.
                tracing::debug!(error = %e, "HTTP connection ended");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.request_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open at shutdown were dropped");
    }
}

/// When the request timeout ends a request: a handler that waits (a long
/// poll) answers before it.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Instant);

impl Deadline {
    /// How long until then.
    pub fn left(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// Answers `408` for a request (its body included) that takes longer than
/// the request timeout.
async fn request_deadline(
    State(limit): State<Duration>,
    mut request: Request,
    next: Next,
) -> Response {
    request
        .extensions_mut()
        .insert(Deadline(Instant::now() + limit));
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => super::error(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request took longer than {limit:?}"),
        ),
    }
}
