//! The reference gateway (`sluice gateway`): speaks the Sluice gateway
//! protocol (see [`super::protocol`]) and keeps its config on disk. It exists
//! for the quickstart, for the tests and as an executable specification for
//! anyone writing a gateway, so it implements every answer of the protocol,
//! including the awkward ones (`409`, `412`, `429`).
//!
//! Decisions the protocol leaves open, made here:
//!
//! - Preconditions: a `PUT` must carry `If-Match: "<digest>"` (or `*`: "it
//!   runs something") or `If-None-Match: *` ("it runs nothing"); the http
//!   driver sends the latter when it read an empty gateway. Neither header is
//!   `428`: an unconditional write would defeat drift detection.
//! - Order of checks on `PUT`: `429` (a reload is in progress), `422` when
//!   the body is not JSON, `304` (already running that digest: converged, so
//!   stale preconditions do not matter), `400` without a `Sluice-Generation`,
//!   `409` (older generation; body `{"generation": N, "digest": "…"}`), `412`
//!   / `428` (preconditions), `422` (document problems), then the swap.
//! - A refused or failed apply leaves the old config running and is reported
//!   in `status.lastError`.
//! - Persistence: `config.json` (the body as received) and `state.json`
//!   (`{digest, generation, appliedAt}`) in the data directory, each written
//!   atomically; on start both are read back, so a restart reports the same
//!   digest and generation. Ephemeral mode keeps nothing: after a restart the
//!   status digest is empty, which tells the reconciler to push again.
//! - Each swap also appends a line to `applies.jsonl` ([`applies`]) before it
//!   is answered: what the gateway ran, by its own account, for checking a
//!   reconciler's ledger from outside. Once its files are being written a
//!   swap completes even if the client has gone away.
//! - One process may host several gateways ([`serve_all`]), each with its
//!   own listener, data directory, faults and state: a fleet for soaks
//!   without a process per gateway.
//!
//! Admin API (same bearer token), for tests and for people simulating what
//! happens to gateways in real life:
//!
//! - `PUT /admin/v1/config`: a hand edit. Replaces the running config with
//!   no precondition or generation check (still validated: `422`; still
//!   persisted); the generation stays as it was, since no reconciler made it.
//! - `POST /admin/v1/faults` with `{"status": 500, "count": 2}`,
//!   `{"hang_ms": 5000, "count": 1}` (both may be combined: hang, then
//!   answer) or `{"reload_delay_ms": 300}`; `"method": "PUT"` limits a
//!   fault to that method: the next `count` (default 1)
//!   protocol requests fail or hang; every swap takes the reload delay, during
//!   which other `PUT`s get `429`. `DELETE /admin/v1/faults` clears them all.
//! - `GET /admin/v1/audit`: `{"records": [...]}`, the audit log, oldest
//!   first, the newest [`audit::MAX_RECORDS`] at most.
//! - `POST /admin/v1/reset`: clears the audit log and every rate-limit
//!   counter, and answers `{"reset": true}`; eval environments reset their
//!   gateways this way before each run. The running config stays.
//!
//! Enforcement ([`chat`]): `POST /v1/chat/completions` (same bearer token)
//! runs the running config's packs on an OpenAI-compatible chat request
//! with [`crate::enforce`], then refuses it (`403` blocked or
//! refused-model, `429` rate-limited, with `Retry-After`) or forwards it,
//! redacted where redaction applied, to the upstream (`--upstream URL`, or
//! the in-process `echo`), adding `Sluice-Outcome`, `Sluice-Policies`,
//! `Sluice-Digest` headers and a `"sluice"` object to the answer. `400` for
//! a request that is not a chat request, `503` (`code: no_config`) while no
//! config runs. With `audit-logger` in a chain, every request appends one
//! record to `<data>/audit.jsonl` (memory when ephemeral), whatever the
//! outcome.
//!
//! A hostile client must not bring it down: bodies are capped at
//! [`MAX_BODY_BYTES`] (`413`), every parse is fallible, the token is
//! compared in constant time, and policies scan text in linear time.

pub mod applies;
pub mod audit;
pub mod chat;
mod follow;

use super::{
    file::write_atomically,
    protocol::{self, Problem, Refused, Status},
};
use crate::secret::constant_time_eq;
use crate::{
    config::{Digest, document::check_document, render::canonical_json},
    enforce::{Counters, Engine},
};
use applies::Via;
use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::{
    collections::{BTreeMap, VecDeque},
    future::Future,
    io::{self, Write as _},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime},
};
use tokio::{net::TcpListener, sync::watch};

/// Largest request body accepted; bigger ones get `413`.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
pub const ADMIN_CONFIG_PATH: &str = "/admin/v1/config";
pub const ADMIN_FAULTS_PATH: &str = "/admin/v1/faults";
pub const ADMIN_AUDIT_PATH: &str = "/admin/v1/audit";
pub const ADMIN_RESET_PATH: &str = "/admin/v1/reset";
const CONFIG_FILE: &str = "config.json";
const STATE_FILE: &str = "state.json";
/// Bounds on injected faults, so a typo cannot wedge a gateway for a day.
const MAX_FAULTS: usize = 10_000;
const MAX_FAULT_MS: u64 = 3_600_000;

/// How to run a reference gateway.
#[derive(Clone, Default)]
pub struct ReferenceOptions {
    /// Where the running config is kept; `None` keeps nothing (ephemeral).
    pub data: Option<PathBuf>,
    /// The bearer token clients must present; `None` leaves it open.
    pub token: Option<String>,
    /// How long every swap takes (a slow reload); more with the admin API.
    pub reload_delay: Duration,
    /// Where allowed chat requests go.
    pub upstream: chat::Upstream,
    /// A config file to run and reload on change (the gateway behind a
    /// `file` driver), besides the protocol's `PUT`s.
    pub watch: Option<PathBuf>,
}

impl std::fmt::Debug for ReferenceOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReferenceOptions")
            .field("data", &self.data)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("reload_delay", &self.reload_delay)
            .field("upstream", &self.upstream)
            .field("watch", &self.watch)
            .finish()
    }
}

/// Runs a reference gateway on `listener` until SIGTERM or SIGINT, after
/// printing `listening on ADDR` to standard output (tests and scripts wait
/// for that line, and it gives the port when listening on port 0).
pub async fn serve(listener: TcpListener, options: ReferenceOptions) -> io::Result<()> {
    serve_all(vec![(listener, options)]).await
}

/// Runs several reference gateways in this process, each on its own
/// listener with its own options, until SIGTERM or SIGINT. Every one is
/// opened before any serves (a bad data directory stops them all), then a
/// `listening on ADDR` line is printed for each, in order.
pub async fn serve_all(gateways: Vec<(TcpListener, ReferenceOptions)>) -> io::Result<()> {
    let opened = gateways
        .into_iter()
        .map(|(listener, options)| Ok((listener, ReferenceGateway::open(options)?)))
        .collect::<io::Result<Vec<_>>>()?;
    let shutdown = crate::server::shutdown_signal()?;
    {
        let mut out = io::stdout().lock();
        for (listener, _) in &opened {
            writeln!(out, "listening on {}", listener.local_addr()?)?;
        }
        out.flush()?;
    }
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let serving: Vec<_> = opened
        .into_iter()
        .map(|(listener, gateway)| {
            let mut stopped = stopped.clone();
            tokio::spawn(gateway.serve_until(listener, async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }))
        })
        .collect();
    for gateway in serving {
        gateway.await.map_err(io::Error::other)??;
    }
    Ok(())
}

/// A reference gateway with its state loaded, ready to serve.
pub struct ReferenceGateway {
    shared: Arc<Shared>,
}

struct Shared {
    data: Option<PathBuf>,
    /// SHA-256 of the token: comparing digests of equal length in constant
    /// time says nothing about the token's length or prefix.
    token: Option<[u8; 32]>,
    started_at: String,
    state: Mutex<GatewayState>,
    shutdown: watch::Receiver<bool>,
    shutdown_sender: watch::Sender<bool>,
    /// Rate-limit windows of the chat endpoint, across config swaps.
    counters: Mutex<Counters>,
    audit: audit::AuditLog,
    upstream: chat::Upstream,
    client: reqwest::Client,
    watch: Option<PathBuf>,
}

struct GatewayState {
    running: Option<Running>,
    /// Generation of the running config; 0 before any apply.
    generation: u64,
    applied_at: Option<String>,
    last_error: Option<String>,
    /// When the reload in progress started; `None` when idle.
    reloading: Option<Instant>,
    reload_delay: Duration,
    faults: VecDeque<Fault>,
}

#[derive(Clone)]
struct Running {
    body: Arc<str>,
    digest: Digest,
    packs: BTreeMap<String, String>,
    engine: Arc<Engine>,
}

#[derive(Debug, Clone)]
struct Fault {
    status: Option<StatusCode>,
    hang: Option<Duration>,
    /// Only requests with this method play it (e.g. `PUT`, to fail applies
    /// but not reads); any method when `None`.
    method: Option<axum::http::Method>,
}

/// What `state.json` holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    digest: String,
    generation: u64,
    applied_at: Option<String>,
}

impl ReferenceGateway {
    /// Loads the persisted config and state, if any. A data directory that
    /// cannot be read, or a stored config that is not JSON, is an error:
    /// silently starting empty would make a broken disk look like a restart.
    pub fn open(options: ReferenceOptions) -> io::Result<Self> {
        let (running, generation, applied_at) = match &options.data {
            Some(dir) => {
                // NB: made now, not at the first swap: the audit log of a
                // gateway that never ran a config lives there too.
                std::fs::create_dir_all(dir).map_err(|e| annotate(dir, e))?;
                let loaded = load(dir)?;
                log_unlogged(dir, loaded.0.as_ref(), loaded.1)?;
                loaded
            }
            None => (None, 0, None),
        };
        let (shutdown_sender, shutdown) = watch::channel(false);
        let state = GatewayState {
            running,
            generation,
            applied_at,
            last_error: None,
            reloading: None,
            reload_delay: options.reload_delay,
            faults: VecDeque::new(),
        };
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| io::Error::other(format!("the upstream client: {e}")))?;
        Ok(ReferenceGateway {
            shared: Arc::new(Shared {
                audit: audit::AuditLog::new(options.data.clone()),
                counters: Mutex::new(Counters::default()),
                upstream: options.upstream,
                client,
                watch: options.watch,
                data: options.data,
                token: options.token.as_deref().map(token_digest),
                started_at: rfc3339(SystemTime::now()),
                state: Mutex::new(state),
                shutdown,
                shutdown_sender,
            }),
        })
    }

    /// The routes, for serving or for embedding.
    pub fn router(&self) -> Router {
        let protocol_routes = Router::new()
            .route(protocol::CONFIG_PATH, get(get_config).put(put_config))
            .route(protocol::STATUS_PATH, get(get_status))
            .route(protocol::VALIDATE_PATH, post(validate))
            .layer(middleware::from_fn_with_state(self.shared.clone(), faults));
        let admin_routes = Router::new()
            .route(ADMIN_CONFIG_PATH, put(admin_put_config))
            .route(ADMIN_FAULTS_PATH, post(add_faults).delete(clear_faults))
            .route(ADMIN_AUDIT_PATH, get(get_audit))
            .route(ADMIN_RESET_PATH, post(reset));
        let chat_routes = Router::new().route(chat::CHAT_PATH, post(chat::chat_completions));
        protocol_routes
            .merge(admin_routes)
            .merge(chat_routes)
            .layer(middleware::from_fn_with_state(
                self.shared.clone(),
                authenticate,
            ))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(self.shared.clone())
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight
    /// (injected hangs end early) and returns.
    pub async fn serve_until(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let router = self.router();
        let sender = self.shared.shutdown_sender.clone();
        if let Some(path) = self.shared.watch.clone() {
            tokio::spawn(follow::follow(self.shared.clone(), path));
        }
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = sender.send(true);
            })
            .await
    }
}

/// Reads `config.json` and `state.json` back.
fn load(dir: &Path) -> io::Result<(Option<Running>, u64, Option<String>)> {
    let config_path = dir.join(CONFIG_FILE);
    let body = match std::fs::read_to_string(&config_path) {
        Ok(body) => body,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((None, 0, None)),
        Err(e) => return Err(annotate(&config_path, e)),
    };
    let value: Value = serde_json::from_str(&body).map_err(|e| {
        annotate(
            &config_path,
            io::Error::new(io::ErrorKind::InvalidData, format!("not JSON: {e}")),
        )
    })?;
    let digest = Digest::of(canonical_json(&value).as_bytes());
    let state_path = dir.join(STATE_FILE);
    let stored: Option<Stored> = match std::fs::read_to_string(&state_path) {
        Ok(text) => Some(serde_json::from_str(&text).map_err(|e| {
            annotate(
                &state_path,
                io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
            )
        })?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(annotate(&state_path, e)),
    };
    let (generation, applied_at) = match stored {
        Some(stored) => {
            if stored.digest != digest.as_str() {
                // NB: the process stopped between the two writes; the config
                // is the newer one and its generation at least the stored one.
                tracing::warn!(%digest, stored = %stored.digest, "state.json does not describe config.json");
            }
            (stored.generation, stored.applied_at)
        }
        None => (0, None),
    };
    let engine = Engine::from_document(&value).map_err(|e| {
        annotate(
            &config_path,
            io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
        )
    })?;
    let running = Running {
        packs: packs_of(&value),
        body: Arc::from(body),
        digest,
        engine: Arc::new(engine),
    };
    Ok((Some(running), generation, applied_at))
}

/// Writes the apply log's line for a persisted config it does not name
/// (the process stopped between the two writes), before anything is served.
fn log_unlogged(dir: &Path, running: Option<&Running>, generation: u64) -> io::Result<()> {
    let Some(running) = running else {
        return Ok(());
    };
    let path = dir.join(applies::APPLIES_FILE);
    let last = applies::last(dir).map_err(|e| annotate(&path, e))?;
    if last.is_some_and(|l| l.digest == running.digest.as_str()) {
        return Ok(());
    }
    let line = applies::Applied {
        digest: running.digest.to_string(),
        generation,
        at: millis(SystemTime::now()),
        via: Via::Restart,
    };
    applies::append(dir, &line).map_err(|e| annotate(&path, e))
}

fn annotate(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Writes the config, then the state describing it.
fn persist(dir: &Path, body: &str, stored: &Stored) -> io::Result<()> {
    let state = serde_json::to_vec_pretty(stored).map_err(io::Error::other)?;
    write_atomically(&dir.join(CONFIG_FILE), body.as_bytes())
        .map_err(|e| annotate(&dir.join(CONFIG_FILE), e))?;
    write_atomically(&dir.join(STATE_FILE), &state).map_err(|e| annotate(&dir.join(STATE_FILE), e))
}

fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, GatewayState> {
        // NB: a panic while holding the lock must not take every later
        // request down with it; the state is always left consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn counters(&self) -> MutexGuard<'_, Counters> {
        self.counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn authenticate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let Some(expected) = &shared.token else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::server::bearer_token)
        .map(token_digest);
    match presented {
        Some(presented) if constant_time_eq(&presented, expected) => next.run(request).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a valid bearer token is required\n",
        )
            .into_response(),
    }
}

/// Plays the next injected fault, if any, before a protocol request.
async fn faults(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let fault = {
        let mut state = shared.lock();
        let position = state
            .faults
            .iter()
            .position(|f| f.method.as_ref().is_none_or(|m| m == request.method()));
        position.and_then(|i| state.faults.remove(i))
    };
    let Some(fault) = fault else {
        return next.run(request).await;
    };
    if let Some(hang) = fault.hang {
        let mut shutdown = shared.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(hang) => {}
            _ = shutdown.wait_for(|stopping| *stopping) => {
                return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
            }
        }
    }
    match fault.status {
        Some(status) => (status, format!("injected fault: {status}\n")).into_response(),
        None => next.run(request).await,
    }
}

fn etag_header(digest: &Digest) -> HeaderValue {
    // A digest is ASCII, so this cannot fail; fall back rather than panic.
    HeaderValue::from_str(&protocol::etag(digest.as_str()))
        .unwrap_or(HeaderValue::from_static("\"\""))
}

async fn get_config(State(shared): State<Arc<Shared>>) -> Response {
    let running = shared.lock().running.clone();
    match running {
        Some(running) => (
            StatusCode::OK,
            [
                (header::ETAG, etag_header(&running.digest)),
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
            ],
            running.body.to_string(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no config is running\n").into_response(),
    }
}

async fn get_status(State(shared): State<Arc<Shared>>) -> Json<Status> {
    let state = shared.lock();
    Json(Status {
        digest: state
            .running
            .as_ref()
            .map_or_else(String::new, |r| r.digest.to_string()),
        generation: state.generation,
        packs: state
            .running
            .as_ref()
            .map(|r| r.packs.clone())
            .unwrap_or_default(),
        applied_at: state.applied_at.clone(),
        started_at: shared.started_at.clone(),
        last_error: state.last_error.clone(),
    })
}

/// A received body, examined off the async threads (schema checks of an
/// 8 MiB document take a while).
struct Examined {
    text: Arc<str>,
    digest: Digest,
    packs: BTreeMap<String, String>,
    problems: Vec<Problem>,
    /// `None` when there are problems.
    engine: Option<Arc<Engine>>,
}

async fn examine(body: Bytes) -> Result<Examined, Vec<Problem>> {
    let result = tokio::task::spawn_blocking(move || {
        let text = std::str::from_utf8(&body).map_err(|_| problem("the body is not UTF-8"))?;
        let value: Value = serde_json::from_str(text)
            .map_err(|e| problem(&format!("the body is not JSON: {e}")))?;
        let mut problems = check_document(&value);
        // NB: a document that passes the checks but that the engine cannot
        // run is refused too: running it would enforce nothing.
        let engine = if problems.is_empty() {
            match Engine::from_document(&value) {
                Ok(engine) => Some(Arc::new(engine)),
                Err(e) => {
                    problems.push(Problem {
                        path: String::new(),
                        message: e.to_string(),
                    });
                    None
                }
            }
        } else {
            None
        };
        Ok(Examined {
            digest: Digest::of(canonical_json(&value).as_bytes()),
            packs: packs_of(&value),
            problems,
            engine,
            text: Arc::from(text),
        })
    })
    .await;
    result.unwrap_or_else(|_| Err(problem("the document could not be checked")))
}

fn problem(message: &str) -> Vec<Problem> {
    vec![Problem {
        path: String::new(),
        message: message.to_owned(),
    }]
}

/// Version of each pack, by name, for the status.
fn packs_of(value: &Value) -> BTreeMap<String, String> {
    value
        .get("packs")
        .and_then(Value::as_object)
        .map(|packs| {
            packs
                .iter()
                .filter_map(|(name, pack)| {
                    Some((name.clone(), pack.get("version")?.as_str()?.to_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn refused(problems: Vec<Problem>) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, Json(Refused { problems })).into_response()
}

fn summary(problems: &[Problem]) -> String {
    let first = problems
        .first()
        .map(|p| format!("{}: {}", p.path, p.message))
        .unwrap_or_default();
    match problems.len() {
        0 | 1 => format!("refused: {first}"),
        n => format!("refused: {first} (and {} more)", n - 1),
    }
}

fn busy(state: &GatewayState, started: Instant) -> Response {
    let left = state.reload_delay.saturating_sub(started.elapsed());
    let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, seconds.max(1).to_string())],
        "a reload is in progress\n",
    )
        .into_response()
}

/// Whether the preconditions of a `PUT` hold against what runs now:
/// `Err` is the answer to send instead.
fn preconditions(headers: &HeaderMap, running: Option<&Digest>) -> Result<(), Box<Response>> {
    let changed = |message: &str| {
        let mut response =
            (StatusCode::PRECONDITION_FAILED, format!("{message}\n")).into_response();
        if let Some(digest) = running {
            response
                .headers_mut()
                .insert(header::ETAG, etag_header(digest));
        }
        Box::new(response)
    };
    let text = |name: header::HeaderName| headers.get(name).map(|v| v.to_str().unwrap_or("\u{0}"));
    if let Some(tags) = text(header::IF_MATCH) {
        let matches = tags.split(',').any(|tag| {
            let tag = tag.trim();
            match running {
                Some(_) if tag == "*" => true,
                Some(digest) => protocol::digest_of_etag(tag) == digest.as_str(),
                None => false,
            }
        });
        return if matches {
            Ok(())
        } else {
            Err(changed(
                "the running config is not the one named in If-Match",
            ))
        };
    }
    if let Some(tags) = text(header::IF_NONE_MATCH) {
        if tags.trim() == "*" {
            return match running {
                None => Ok(()),
                Some(_) => Err(changed(
                    "a config is running, and If-None-Match: * expected none",
                )),
            };
        }
        return Err(Box::new(
            (
                StatusCode::BAD_REQUEST,
                "only `If-None-Match: *` is supported\n",
            )
                .into_response(),
        ));
    }
    Err(Box::new(
        (
            StatusCode::PRECONDITION_REQUIRED,
            "send If-Match: \"<digest last read>\", or If-None-Match: * when it ran nothing\n",
        )
            .into_response(),
    ))
}

/// Clears the reload flag however the reload ends: swapped, failed, or the
/// client went away and the handler was dropped mid-reload.
struct Reloading(Arc<Shared>);

impl Drop for Reloading {
    fn drop(&mut self) {
        self.0.lock().reloading = None;
    }
}

async fn put_config(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let examined = examine(body).await;
    let generation;
    let guard = {
        let mut state = shared.lock();
        if let Some(started) = state.reloading {
            return busy(&state, started);
        }
        let examined = match &examined {
            Ok(examined) => examined,
            Err(problems) => {
                state.last_error = Some(summary(problems));
                return refused(problems.clone());
            }
        };
        let running = state.running.as_ref().map(|r| &r.digest);
        if running == Some(&examined.digest) {
            return (
                StatusCode::NOT_MODIFIED,
                [(header::ETAG, etag_header(&examined.digest))],
            )
                .into_response();
        }
        generation = match headers
            .get(protocol::GENERATION_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            Some(generation) => generation,
            None => {
                return (
                    StatusCode::BAD_REQUEST,
                    "a numeric Sluice-Generation header is required\n",
                )
                    .into_response();
            }
        };
        if generation < state.generation {
            return (
                StatusCode::CONFLICT,
                Json(json!({
                    "generation": state.generation,
                    "digest": running.map(Digest::to_string),
                    "message": format!("generation {generation} is older than the running {}", state.generation),
                })),
            )
                .into_response();
        }
        if let Err(response) = preconditions(&headers, running) {
            return *response;
        }
        if !examined.problems.is_empty() {
            state.last_error = Some(summary(&examined.problems));
            return refused(examined.problems.clone());
        }
        state.reloading = Some(Instant::now());
        Reloading(shared.clone())
    };
    let Ok(examined) = examined else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    swap(&shared, guard, examined, Some(generation), Via::Protocol).await
}

/// The reload itself: wait out the reload delay, then commit it. Until the
/// swap, the old config keeps running; a failed write leaves it running.
async fn swap(
    shared: &Arc<Shared>,
    guard: Reloading,
    examined: Examined,
    generation: Option<u64>,
    via: Via,
) -> Response {
    let delay = shared.lock().reload_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let digest = examined.digest.clone();
    let committing = shared.clone();
    // NB: once the files are being written the swap runs to its end, even
    // if the client goes away and this handler is dropped: otherwise the
    // disk (and the apply log) could name a config the memory never ran.
    // The reload flag goes with it, so no other swap starts meanwhile.
    let committed = tokio::task::spawn_blocking(move || {
        let _reloading = guard;
        commit(&committing, examined, generation, via)
    })
    .await
    .unwrap_or_else(|e| Err(io::Error::other(e.to_string())));
    let generation = match committed {
        Ok(generation) => generation,
        Err(e) => {
            tracing::error!(error = %e, "could not persist the config; the old one keeps running");
            shared.lock().last_error = Some(format!("could not persist the config: {e}"));
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not persist the config\n",
            )
                .into_response();
        }
    };
    tracing::info!(%digest, generation, "swapped");
    (
        StatusCode::OK,
        [(header::ETAG, etag_header(&digest))],
        Json(json!({"digest": digest, "generation": generation})),
    )
        .into_response()
}

/// Persists the config and its state, logs the swap, then runs it; returns
/// the generation it runs at. Blocking.
fn commit(
    shared: &Shared,
    examined: Examined,
    generation: Option<u64>,
    via: Via,
) -> io::Result<u64> {
    let Some(engine) = examined.engine else {
        return Err(io::Error::other(
            "a document with problems reached the swap",
        ));
    };
    let now = SystemTime::now();
    let applied_at = rfc3339(now);
    let generation = generation.unwrap_or_else(|| shared.lock().generation);
    if let Some(dir) = &shared.data {
        let stored = Stored {
            digest: examined.digest.to_string(),
            generation,
            applied_at: Some(applied_at.clone()),
        };
        persist(dir, &examined.text, &stored)?;
        applies::append(
            dir,
            &applies::Applied {
                digest: examined.digest.to_string(),
                generation,
                at: millis(now),
                via,
            },
        )
        .map_err(|e| annotate(&dir.join(applies::APPLIES_FILE), e))?;
    }
    let mut state = shared.lock();
    state.running = Some(Running {
        body: examined.text,
        digest: examined.digest,
        packs: examined.packs,
        engine,
    });
    state.generation = generation;
    state.applied_at = Some(applied_at);
    state.last_error = None;
    Ok(generation)
}

async fn validate(body: Bytes) -> Response {
    match examine(body).await {
        Err(problems) => refused(problems),
        Ok(examined) if !examined.problems.is_empty() => refused(examined.problems),
        Ok(examined) => Json(json!({"digest": examined.digest})).into_response(),
    }
}

/// A hand edit: no preconditions, no generation.
async fn admin_put_config(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    replace_config(shared, body, Via::HandEdit).await
}

/// Runs `body` without preconditions or a generation: a hand edit, or the
/// watched file.
async fn replace_config(shared: Arc<Shared>, body: Bytes, via: Via) -> Response {
    let examined = match examine(body).await {
        Err(problems) => return refused(problems),
        Ok(examined) if !examined.problems.is_empty() => return refused(examined.problems),
        Ok(examined) => examined,
    };
    let guard = {
        let mut state = shared.lock();
        if let Some(started) = state.reloading {
            return busy(&state, started);
        }
        if state.running.as_ref().map(|r| &r.digest) == Some(&examined.digest) {
            return (
                StatusCode::NOT_MODIFIED,
                [(header::ETAG, etag_header(&examined.digest))],
            )
                .into_response();
        }
        state.reloading = Some(Instant::now());
        Reloading(shared.clone())
    };
    swap(&shared, guard, examined, None, via).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    status: Option<u16>,
    hang_ms: Option<u64>,
    count: Option<usize>,
    reload_delay_ms: Option<u64>,
    method: Option<String>,
}

async fn add_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: FaultRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("not a fault request: {e}\n"),
            )
                .into_response();
        }
    };
    let status = match request.status.map(StatusCode::from_u16) {
        None => None,
        Some(Ok(status)) => Some(status),
        Some(Err(_)) => {
            return (StatusCode::BAD_REQUEST, "status must be 100 to 999\n").into_response();
        }
    };
    if request.hang_ms.is_some_and(|ms| ms > MAX_FAULT_MS)
        || request.reload_delay_ms.is_some_and(|ms| ms > MAX_FAULT_MS)
    {
        return (
            StatusCode::BAD_REQUEST,
            format!("delays are at most {MAX_FAULT_MS} ms\n"),
        )
            .into_response();
    }
    let mut state = shared.lock();
    if let Some(ms) = request.reload_delay_ms {
        state.reload_delay = Duration::from_millis(ms);
    }
    if status.is_some() || request.hang_ms.is_some() {
        let count = request.count.unwrap_or(1);
        if state.faults.len() + count > MAX_FAULTS {
            return (
                StatusCode::BAD_REQUEST,
                format!("at most {MAX_FAULTS} pending faults\n"),
            )
                .into_response();
        }
        let method = match request
            .method
            .as_deref()
            .map(str::parse::<axum::http::Method>)
        {
            None => None,
            Some(Ok(method)) => Some(method),
            Some(Err(_)) => {
                return (StatusCode::BAD_REQUEST, "not an HTTP method\n").into_response();
            }
        };
        let fault = Fault {
            status,
            hang: request.hang_ms.map(Duration::from_millis),
            method,
        };
        state.faults.extend(std::iter::repeat_n(fault, count));
    }
    fault_summary(&state)
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> Response {
    let mut state = shared.lock();
    state.faults.clear();
    state.reload_delay = Duration::ZERO;
    fault_summary(&state)
}

fn fault_summary(state: &GatewayState) -> Response {
    let reload_delay_ms = u64::try_from(state.reload_delay.as_millis()).unwrap_or(u64::MAX);
    Json(json!({"pending": state.faults.len(), "reload_delay_ms": reload_delay_ms})).into_response()
}

async fn get_audit(State(shared): State<Arc<Shared>>) -> Response {
    let read = tokio::task::spawn_blocking(move || shared.audit.records()).await;
    match read.map_err(io::Error::other).and_then(|r| r) {
        Ok(records) => Json(json!({"records": records})).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not read the audit log: {e}\n"),
        )
            .into_response(),
    }
}

/// Back to a fresh runtime state: no audit records, no rate-limit counts.
async fn reset(State(shared): State<Arc<Shared>>) -> Response {
    shared.counters().clear();
    let log = shared.clone();
    let cleared = tokio::task::spawn_blocking(move || log.audit.clear()).await;
    match cleared.map_err(io::Error::other).and_then(|r| r) {
        Ok(()) => Json(json!({"reset": true})).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not clear the audit log: {e}\n"),
        )
            .into_response(),
    }
}

/// `2026-11-23T10:04:05Z`: RFC 3339 in UTC, to the second.
fn rfc3339(time: SystemTime) -> String {
    crate::reconcile::clock::rfc3339(millis(time))
}

/// Milliseconds since the Unix epoch.
fn millis(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model;
    use crate::gateway::{
        Applied, Desired, DriverContext, Gateway, GatewayError, http::HttpGateway,
    };
    use std::path::PathBuf;

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_428_245);
        assert_eq!(rfc3339(t), "2026-11-23T10:04:05Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn tokens_compare_by_digest() {
        let a = token_digest("secret");
        assert!(constant_time_eq(&a, &token_digest("secret")));
        assert!(!constant_time_eq(&a, &token_digest("secreT")));
    }

    fn document(version: &str) -> String {
        json!({
            "format": crate::config::document::FORMAT,
            "enforcement": "enforce",
            "packs": {"support": {
                "version": version, "enabled": true,
                "chain": ["audit-logger"],
                "settings": {},
            }},
        })
        .to_string()
    }

    fn desired(body: &str) -> Desired {
        Desired::of_body(body)
    }

    /// An in-process gateway and a driver pointed at it.
    async fn start(
        options: ReferenceOptions,
    ) -> (HttpGateway, String, tokio::sync::oneshot::Sender<()>) {
        let gateway = ReferenceGateway::open(options).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(gateway.serve_until(listener, async move {
            let _ = stopped.await;
        }));
        let spec = model::HttpGateway {
            name: "g".into(),
            url: url.clone(),
            token_env: Some(model::EnvVarName("GW_TOKEN".into())),
            timeout: Some(model::DurationText("2s".into())),
        };
        let allowances = crate::config::Allowances::new(
            vec!["*=GW_TOKEN".parse().unwrap()],
            vec!["*=http://127.0.0.1:*".parse().unwrap()],
        );
        let context = DriverContext {
            secrets: crate::gateway::Secrets::new(
                Arc::new(|_| Some("tok".into())),
                Arc::new(allowances),
            ),
            timeout: Duration::from_secs(2),
            ..DriverContext::new(PathBuf::from("."))
        };
        (HttpGateway::new("dev", &spec, &context).unwrap(), url, stop)
    }

    #[tokio::test]
    async fn the_driver_and_the_reference_gateway_agree() {
        let dir = tempfile::tempdir().unwrap();
        let options = ReferenceOptions {
            data: Some(dir.path().to_owned()),
            token: Some("tok".into()),
            reload_delay: Duration::ZERO,
            upstream: chat::Upstream::Echo,
            watch: None,
        };
        let (driver, _url, stop) = start(options.clone()).await;
        assert_eq!(driver.live().await.unwrap().digest, None);
        assert_eq!(driver.projection().await.unwrap(), None);

        let first = desired(&document("1.0.0"));
        assert_eq!(
            driver.apply(&first, None, 1).await.unwrap(),
            Applied::Swapped {
                digest: first.digest.clone()
            }
        );
        let live = driver.live().await.unwrap();
        assert_eq!(
            (live.digest, live.generation),
            (Some(first.digest.clone()), Some(1))
        );
        assert_eq!(
            driver.projection().await.unwrap(),
            Some(driver.projected(&first))
        );
        assert_eq!(
            driver.apply(&first, None, 2).await.unwrap(),
            Applied::Unchanged
        );

        let second = desired(&document("1.1.0"));
        assert!(matches!(
            driver.apply(&second, None, 2).await,
            Err(GatewayError::Changed { .. })
        ));
        assert!(matches!(
            driver.apply(&second, Some(&first.digest), 0).await,
            Err(GatewayError::StaleGeneration {
                running: 1,
                offered: 0
            })
        ));
        let bad = desired(&document("1.1"));
        assert!(matches!(
            driver.apply(&bad, Some(&first.digest), 2).await,
            Err(GatewayError::Refused { .. })
        ));
        assert!(matches!(
            driver.validate(&bad.body).await,
            Err(GatewayError::Refused { .. })
        ));
        driver.validate(&second.body).await.unwrap();
        assert!(matches!(
            driver.validate("{").await,
            Err(GatewayError::Refused { .. })
        ));
        driver.apply(&second, Some(&first.digest), 2).await.unwrap();
        let _ = stop.send(());

        // Back from disk.
        let (driver, _url, _stop) = start(options).await;
        let live = driver.live().await.unwrap();
        assert_eq!(
            (live.digest, live.generation),
            (Some(second.digest.clone()), Some(2))
        );
    }

    #[tokio::test]
    async fn every_swap_is_in_the_apply_log_and_nothing_else_is() {
        let dir = tempfile::tempdir().unwrap();
        let options = ReferenceOptions {
            data: Some(dir.path().to_owned()),
            token: Some("tok".into()),
            ..ReferenceOptions::default()
        };
        let (driver, url, _stop) = start(options).await;
        let first = desired(&document("1.0.0"));
        let second = desired(&document("1.1.0"));
        driver.apply(&first, None, 5).await.unwrap();
        // Not swaps: already running it (304), and a refused document (422).
        driver.apply(&first, Some(&first.digest), 6).await.unwrap();
        let bad = desired(&document("1.1"));
        assert!(driver.apply(&bad, Some(&first.digest), 6).await.is_err());
        driver.apply(&second, Some(&first.digest), 7).await.unwrap();
        let hand_edit = reqwest::Client::new()
            .put(format!("{url}{ADMIN_CONFIG_PATH}"))
            .bearer_auth("tok")
            .body(document("9.9.9"))
            .send()
            .await
            .unwrap();
        assert_eq!(hand_edit.status(), 200);

        let log = applies::read(dir.path()).unwrap();
        let seen: Vec<(&str, u64, Via)> = log
            .iter()
            .map(|a| (a.digest.as_str(), a.generation, a.via))
            .collect();
        let edited = desired(&document("9.9.9")).digest;
        assert_eq!(
            seen,
            vec![
                (first.digest.as_str(), 5, Via::Protocol),
                (second.digest.as_str(), 7, Via::Protocol),
                // A hand edit keeps the generation no reconciler made.
                (edited.as_str(), 7, Via::HandEdit),
            ]
        );
        assert!(log.windows(2).all(|w| w[0].at <= w[1].at));
    }

    #[tokio::test]
    async fn a_swap_persisted_but_not_logged_is_logged_on_restart_before_serving() {
        let dir = tempfile::tempdir().unwrap();
        let options = ReferenceOptions {
            data: Some(dir.path().to_owned()),
            ..ReferenceOptions::default()
        };
        let first = desired(&document("1.0.0"));
        let second = desired(&document("1.1.0"));
        {
            let (driver, _url, stop) = start(options.clone()).await;
            driver.apply(&first, None, 1).await.unwrap();
            driver.apply(&second, Some(&first.digest), 2).await.unwrap();
            let _ = stop.send(());
        }
        // As if killed between persisting the second config and logging it.
        let path = dir.path().join(applies::APPLIES_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        let first_line = text.lines().next().unwrap();
        std::fs::write(&path, format!("{first_line}\n")).unwrap();

        let (driver, _url, _stop) = start(options.clone()).await;
        let log = applies::read(dir.path()).unwrap();
        assert_eq!(log.len(), 2, "{log:?}");
        assert_eq!(
            (log[1].digest.as_str(), log[1].generation, log[1].via),
            (second.digest.as_str(), 2, Via::Restart)
        );
        assert_eq!(driver.live().await.unwrap().digest, Some(second.digest));
        // A restart with the log in step adds nothing.
        drop(driver);
        let _again = ReferenceGateway::open(options).unwrap();
        assert_eq!(applies::read(dir.path()).unwrap().len(), 2);
    }

    #[tokio::test]
    async fn hostile_requests_get_answers_not_crashes() {
        let (driver, url, _stop) = start(ReferenceOptions {
            token: Some("tok".into()),
            ..ReferenceOptions::default()
        })
        .await;
        let client = reqwest::Client::new();
        let put = |body: Vec<u8>| {
            client
                .put(format!("{url}{}", protocol::CONFIG_PATH))
                .bearer_auth("tok")
                .header(protocol::GENERATION_HEADER, "1")
                .header("if-none-match", "*")
                .body(body)
        };
        let huge = put(vec![b' '; MAX_BODY_BYTES + 1]).send().await.unwrap();
        assert_eq!(huge.status(), 413);
        let binary = put(vec![0xff, 0xfe, 0x00]).send().await.unwrap();
        assert_eq!(binary.status(), 422);
        let deep = put("[".repeat(100_000).into_bytes()).send().await.unwrap();
        assert_eq!(deep.status(), 422);
        let no_precondition = client
            .put(format!("{url}{}", protocol::CONFIG_PATH))
            .bearer_auth("tok")
            .header(protocol::GENERATION_HEADER, "1")
            .body(document("1.0.0"))
            .send()
            .await
            .unwrap();
        assert_eq!(no_precondition.status(), 428);
        let no_token = client
            .get(format!("{url}{}", protocol::STATUS_PATH))
            .send()
            .await
            .unwrap();
        assert_eq!(no_token.status(), 401);
        let faults = client
            .post(format!("{url}{ADMIN_FAULTS_PATH}"))
            .bearer_auth("tok")
            .body(r#"{"status": 99999}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(faults.status(), 400);
        // Still serving.
        assert_eq!(driver.live().await.unwrap().digest, None);
    }
}
