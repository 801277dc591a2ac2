//! The HTTP server of `sluice run` and `sluice controller`: health,
//! readiness, metrics, the status API and the git webhook. Sync requests
//! (the webhook, `POST /api/v1/sync`) go to a [`SyncQueue`] that the mode's
//! loop reads.
//!
//! | path | what |
//! | ---- | ---- |
//! | `GET /healthz` | the process is up |
//! | `GET /readyz` | `200` after the first successful fetch and validation |
//! | `GET /metrics` | Prometheus text |
//! | `GET /api/v1/status[?env=E]` | the status matrix, limited to the token's scope |
//! | `GET /api/v1/environments/{env}/history[?gateway=G&limit=N&before=CURSOR]` | attempts, newest first, paged by cursor |
//! | `POST /api/v1/sync[?env=E]` | reconcile now: `202` with the request's number; `404` for an unknown environment |
//! | `GET /api/v1/sync/{request}[?env=E&wait=30s]` | the pass of a sync request: `200` once it finished, `202` while not (see [`passes`]) |
//! | `GET /api/v1/version` | the server's build, as `sluice version -o json` prints it |
//! | `GET /api/v1/environments/{env}/pin` | the pin in place (`null` if none) and the pin history |
//! | `PUT /api/v1/environments/{env}/pin` | pin: body `{"to": REV or DIGEST, "reason": TEXT}`, both optional |
//! | `DELETE /api/v1/environments/{env}/pin` | unpin |
//! | `POST /hooks/git` | GitHub (`X-Hub-Signature-256`) or GitLab (`X-Gitlab-Token`) push: reconcile now |
//! | `GET /`, … | the dashboard (see [`crate::ui`]) |
//!
//! API tokens are scoped to one environment or `admin`; a token for
//! development gets `403` on production. They are kept hashed and never
//! logged. Without tokens the API is open, which a server beyond loopback
//! refuses unless told otherwise ([`Tokens::check_exposure`]).
//!
//! [`serve`] runs the router within [`HttpLimits`] (header, idle and request
//! timeouts, a connection cap); credentials are checked from the headers
//! before any body is read.

mod listen;
pub mod metrics;
pub mod passes;
mod tokens;
pub mod webhook;

pub use listen::{HttpLimits, serve};
pub use metrics::Metrics;
pub use passes::{PassOutcome, Passes};
pub use tokens::{OpenApiError, Scope, Tokens, bearer_token};

use crate::{
    ledger::{HistoryCursor, Ledger, PinEnd, Trigger, WriteHealth},
    reconcile::{
        Clock, SystemClock,
        pin::{PinError, TargetError, pin_in},
        status::StatusView,
    },
    source::prefix,
};
use axum::{
    Json, Router,
    body::Body,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};
use tokio::sync::Notify;

/// A request to reconcile now.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub trigger: Trigger,
    pub environment: Option<String>,
    /// The repository a push was to, as [`webhook::repository_key`]s of
    /// its URLs; `None`: any (not a push, or one that did not say).
    pub repositories: Option<Vec<String>>,
    /// When the request arrived (for webhook-to-apply latency).
    pub received: std::time::Instant,
}

pub struct ServerState {
    pub ledger: Arc<dyn Ledger>,
    /// Whether the reconciler's ledger writes go through: not ready while
    /// they fail.
    pub ledger_health: Arc<WriteHealth>,
    pub ready: AtomicBool,
    pub metrics: Metrics,
    pub tokens: Tokens,
    /// Shared secret of the git webhook; without one the hook is off.
    pub webhook_secret: Option<String>,
    pub sync: SyncQueue,
    /// The passes sync requests asked for, for those who wait on them;
    /// `None` where the mode's loop does not publish them (`sluice
    /// controller`).
    pub passes: Option<Passes>,
    /// What the dashboard shows beyond the ledger (set by the mode's loop).
    pub dashboard: crate::ui::Dashboard,
}

/// A future that resolves on the first SIGTERM or SIGINT. The handlers are
/// installed when this is called, not when the future is first polled, so a
/// signal that arrives right after a process says it is listening is not lost
/// (and does not kill it the default way).
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!("shutting down");
    })
}

pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .route("/api/v1/environments/{env}/history", get(history))
        .route("/api/v1/sync", post(sync))
        .route("/api/v1/sync/{request}", get(passes::pass))
        .route("/api/v1/version", get(version))
        .route(
            "/api/v1/environments/{env}/pin",
            get(pin_get).put(pin_put).delete(pin_delete),
        )
        .route("/hooks/git", post(webhook::receive))
        .merge(crate::ui::routes())
        .with_state(state)
}

async fn readyz(State(state): State<Arc<ServerState>>) -> Response {
    if let Some(error) = state.ledger_health.failing() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: the ledger cannot write ({error}); no gateway is changed until it can\n"
            ),
        )
            .into_response()
    } else if state.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no revision fetched and validated yet\n",
        )
            .into_response()
    }
}

async fn metrics(State(state): State<Arc<ServerState>>) -> Response {
    state.metrics.ledger(&state.ledger_health);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

#[derive(Deserialize)]
struct EnvQuery {
    env: Option<String>,
}

async fn status(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Query(q): Query<EnvQuery>,
) -> Response {
    let scope = match state.tokens.authorize(&headers, q.env.as_deref()) {
        Ok(scope) => scope,
        Err(response) => return response,
    };
    let ledger = state.ledger.clone();
    let env = q.env.clone();
    let view =
        tokio::task::spawn_blocking(move || StatusView::read(ledger.as_ref(), env.as_deref()))
            .await;
    match view {
        Ok(Ok(mut view)) => {
            view.ledger_error = state.ledger_health.failing();
            Json(view.retain(|e| scope.allows(e))).into_response()
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize)]
struct HistoryQuery {
    gateway: Option<String>,
    limit: Option<usize>,
    /// The page after this cursor (`STARTED.ID` of the last attempt seen).
    before: Option<String>,
}

async fn history(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path(env): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    if let Err(response) = state.tokens.authorize(&headers, Some(&env)) {
        return response;
    }
    let before = match HistoryCursor::from_query(q.before.as_deref()) {
        Ok(before) => before,
        Err(()) => {
            return error(
                StatusCode::BAD_REQUEST,
                "`before` is STARTED.ID: the startedAt (RFC 3339, or milliseconds since the epoch) and id of the last attempt of the previous page",
            );
        }
    };
    let ledger = state.ledger.clone();
    let limit = q.limit.unwrap_or(20).min(1000);
    let result = tokio::task::spawn_blocking(move || {
        ledger.history_page(&env, q.gateway.as_deref(), before, limit)
    })
    .await;
    match result {
        Ok(Ok(attempts)) => Json(attempts).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Whether the ledger knows `env` (it has gateways or ran a version).
fn known(ledger: &dyn Ledger, env: &str) -> Result<bool, crate::ledger::LedgerError> {
    Ok(!ledger.gateways(Some(env))?.is_empty() || !ledger.deployments(env, 1)?.is_empty())
}

/// An answer other than the success a pin endpoint makes (boxed: a
/// `Response` is large).
type Refusal = Box<Response>;

fn unknown(env: &str) -> Refusal {
    Box::new(error(
        StatusCode::NOT_FOUND,
        format!("no environment `{env}` in the ledger"),
    ))
}

/// Runs a ledger call off the runtime's threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Refusal> + Send + 'static,
) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(internal(e)))
}

fn internal(e: impl std::fmt::Display) -> Refusal {
    Box::new(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn pin_get(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path(env): Path<String>,
) -> Response {
    if let Err(response) = state.tokens.authorize(&headers, Some(&env)) {
        return response;
    }
    let ledger = state.ledger.clone();
    let answer = blocking(move || {
        if !known(ledger.as_ref(), &env).map_err(internal)? {
            return Err(unknown(&env));
        }
        let pin = ledger
            .pins(Some(&env))
            .map_err(internal)?
            .into_iter()
            .next();
        let history = ledger.pin_history(&env, 20).map_err(internal)?;
        Ok(serde_json::json!({ "environment": env, "pin": pin, "history": history }))
    })
    .await;
    match answer {
        Ok(body) => Json(body).into_response(),
        Err(response) => *response,
    }
}

/// Largest pin request body read.
const PIN_BODY_LIMIT: usize = 16 * 1024;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PinBody {
    to: Option<String>,
    reason: Option<String>,
}

async fn pin_put(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path(env): Path<String>,
    body: Body,
) -> Response {
    // NB: the body is read only after the token is checked, and bounded.
    let by = match state.tokens.authorize_named(&headers, Some(&env)) {
        Ok((_, name)) => name,
        Err(response) => return response,
    };
    let body = match axum::body::to_bytes(body, PIN_BODY_LIMIT).await {
        Ok(body) => body,
        Err(e) => return error(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
    };
    let body: PinBody = if body.iter().all(u8::is_ascii_whitespace) {
        PinBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(body) => body,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("expected {{\"to\": …, \"reason\": …}}: {e}"),
                );
            }
        }
    };
    let ledger = state.ledger.clone();
    let slug = env.clone();
    let answer = blocking(move || {
        if !known(ledger.as_ref(), &slug).map_err(internal)? {
            return Err(unknown(&slug));
        }
        let made = pin_in(
            ledger.as_ref(),
            &slug,
            body.to.as_deref(),
            body.reason,
            &by,
            SystemClock.now(),
        );
        match made {
            Ok((pin, replaced)) => Ok(serde_json::json!({ "pin": pin, "replaced": replaced })),
            Err(PinError::Target(e @ TargetError::NoDeployments { .. })) => {
                Err(Box::new(error(StatusCode::CONFLICT, e.to_string())))
            }
            Err(PinError::Target(e)) => Err(Box::new(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                e.to_string(),
            ))),
            Err(PinError::Ledger(e)) => Err(internal(e)),
        }
    })
    .await;
    match answer {
        Ok(body) => {
            state.sync.push(SyncRequest {
                trigger: Trigger::Manual,
                environment: Some(env),
                repositories: None,
                received: std::time::Instant::now(),
            });
            Json(body).into_response()
        }
        Err(response) => *response,
    }
}

async fn pin_delete(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path(env): Path<String>,
) -> Response {
    let by = match state.tokens.authorize_named(&headers, Some(&env)) {
        Ok((_, name)) => name,
        Err(response) => return response,
    };
    let ledger = state.ledger.clone();
    let slug = env.clone();
    let answer = blocking(move || {
        if !known(ledger.as_ref(), &slug).map_err(internal)? {
            return Err(unknown(&slug));
        }
        let ended = ledger
            .unpin(&slug, SystemClock.now(), &by, PinEnd::Unpinned)
            .map_err(internal)?;
        Ok(serde_json::json!({ "environment": slug, "unpinned": ended }))
    })
    .await;
    match answer {
        Ok(body) => {
            state.sync.push(SyncRequest {
                trigger: Trigger::Poll,
                environment: Some(env),
                repositories: None,
                received: std::time::Instant::now(),
            });
            Json(body).into_response()
        }
        Err(response) => *response,
    }
}

async fn version(State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    if let Err(response) = state.tokens.authorize(&headers, None) {
        return response;
    }
    Json(crate::version::BUILD).into_response()
}

async fn sync(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Query(q): Query<EnvQuery>,
) -> Response {
    // NB: no body is taken: whatever a client sends is never read, so an
    // unauthenticated one cannot make the server buffer it.
    let scope = match state.tokens.authorize(&headers, q.env.as_deref()) {
        Ok(scope) => scope,
        Err(response) => return response,
    };
    if let Some(env) = &q.env
        && let Err(response) = known_environment(&state, env).await
    {
        return *response;
    }
    // NB: a token scoped to one environment reconciles that environment only.
    let environment = match scope {
        Scope::Environment(env) => Some(env),
        Scope::Admin | Scope::Open => q.env,
    };
    request_sync(&state, Trigger::Manual, environment, None).await
}

/// `env` is an environment of the followed revision or of the ledger, or
/// the `404` names those there are. While neither knows any (before the
/// first pass), every name is taken: there is nothing to check it against.
async fn known_environment(state: &ServerState, env: &str) -> Result<(), Refusal> {
    let followed = state.dashboard.environments();
    let ledger = state.ledger.clone();
    let recorded = blocking(move || {
        let records = ledger.gateways(None).map_err(internal)?;
        Ok(records
            .into_iter()
            .map(|r| r.environment)
            .collect::<std::collections::BTreeSet<_>>())
    })
    .await?;
    let at = match &followed {
        Some((revision, _)) => format!("at revision {} nor in the ledger", prefix(revision, 8)),
        None => "in the ledger".to_owned(),
    };
    let mut known = recorded;
    known.extend(followed.into_iter().flat_map(|(_, envs)| envs));
    if known.is_empty() || known.contains(env) {
        return Ok(());
    }
    Err(Box::new(error(
        StatusCode::NOT_FOUND,
        format!(
            "no environment `{env}` {at}; {}",
            crate::config::environment_hint(env, known.iter().map(String::as_str))
        ),
    )))
}

async fn request_sync(
    state: &ServerState,
    trigger: Trigger,
    environment: Option<String>,
    repositories: Option<Vec<String>>,
) -> Response {
    let request = SyncRequest {
        trigger,
        environment,
        repositories,
        received: std::time::Instant::now(),
    };
    let environment = request.environment.clone();
    let number = state.sync.push(request);
    // NB: the number is worth giving only where passes are kept for it.
    let body = match state.passes {
        Some(_) => serde_json::json!({
            "accepted": true,
            "request": number,
            "environment": environment,
        }),
        None => serde_json::json!({ "accepted": true }),
    };
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// Requests to reconcile, merged while one waits: a request for all
/// environments absorbs any other, two for different environments become
/// one for all, so no request is lost and none piles up. Each is numbered
/// as it arrives, from 1, so a pass can say which it covers ([`passes`]).
#[derive(Default)]
pub struct SyncQueue {
    queued: std::sync::Mutex<Queued>,
    ready: Notify,
}

#[derive(Default)]
struct Queued {
    /// The waiting request and the highest number merged into it.
    pending: Option<(SyncRequest, u64)>,
    /// The number of the newest request.
    issued: u64,
}

impl SyncQueue {
    /// Queues `request` and returns its number.
    pub fn push(&self, request: SyncRequest) -> u64 {
        let mut queued = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        queued.issued += 1;
        let number = queued.issued;
        queued.pending = Some(match queued.pending.take() {
            None => (request, number),
            Some((waiting, _)) => (merge(waiting, request), number),
        });
        self.ready.notify_one();
        number
    }

    /// The number of the newest request (0: none yet).
    pub fn issued(&self) -> u64 {
        self.queued.lock().unwrap_or_else(|e| e.into_inner()).issued
    }

    /// The next request, waiting for one, with the highest number merged
    /// into it.
    pub async fn next(&self) -> (SyncRequest, u64) {
        loop {
            if let Some(next) = self
                .queued
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pending
                .take()
            {
                return next;
            }
            // NB: notify_one stores a permit when nobody waits, so a push
            // between the check and this await is not missed.
            self.ready.notified().await;
        }
    }
}

fn merge(waiting: SyncRequest, new: SyncRequest) -> SyncRequest {
    let environment = match (waiting.environment, new.environment) {
        (Some(a), Some(b)) if a == b => Some(a),
        _ => None,
    };
    let repositories = match (waiting.repositories, new.repositories) {
        (Some(mut a), Some(b)) => {
            a.extend(b);
            a.sort();
            a.dedup();
            Some(a)
        }
        _ => None,
    };
    SyncRequest {
        // The older arrival, so latency is counted from the first request.
        received: waiting.received.min(new.received),
        trigger: waiting.trigger,
        environment,
        repositories,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(environment: Option<&str>) -> SyncRequest {
        SyncRequest {
            trigger: Trigger::Manual,
            environment: environment.map(str::to_owned),
            repositories: None,
            received: std::time::Instant::now(),
        }
    }

    fn state(passes: Option<Passes>) -> ServerState {
        ServerState {
            ledger: Arc::new(crate::ledger::MemoryLedger::new()),
            ledger_health: Default::default(),
            ready: Default::default(),
            metrics: Default::default(),
            tokens: Default::default(),
            webhook_secret: None,
            sync: Default::default(),
            passes,
            dashboard: Default::default(),
        }
    }

    async fn answer(state: &ServerState, env: Option<&str>) -> serde_json::Value {
        let response = request_sync(state, Trigger::Manual, env.map(str::to_owned), None).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    /// `sluice controller` keeps no passes: its answer has no number to
    /// wait on, which is how `sluice sync --server` knows not to wait.
    #[tokio::test]
    async fn a_sync_answer_has_a_number_only_where_passes_are_kept() {
        let run = state(Some(Passes::default()));
        assert_eq!(
            answer(&run, Some("development")).await,
            serde_json::json!({"accepted": true, "request": 1, "environment": "development"})
        );
        assert_eq!(answer(&run, None).await["request"], 2);
        let controller = state(None);
        assert_eq!(
            answer(&controller, Some("development")).await,
            serde_json::json!({"accepted": true})
        );
    }

    #[tokio::test]
    async fn waiting_requests_merge_into_their_union() {
        let queue = SyncQueue::default();
        queue.push(request(Some("development")));
        queue.push(request(Some("development")));
        let (next, number) = queue.next().await;
        assert_eq!(next.environment.as_deref(), Some("development"));
        assert_eq!(number, 2, "the newest request merged into it");
        queue.push(request(Some("development")));
        queue.push(request(None));
        assert_eq!(queue.next().await.0.environment, None);
        queue.push(request(Some("development")));
        assert_eq!(queue.push(request(Some("production"))), 6);
        let (next, number) = queue.next().await;
        assert_eq!((next.environment, number), (None, 6));
        assert_eq!(queue.issued(), 6);
    }
}
