//! The dashboard: server-rendered pages over the same data as the API
//! (the ledger, and the followed revision for promotion lanes, gates and
//! compare), embedded in the binary and working without JavaScript; with
//! it, pages refresh themselves when the reconciler records something
//! (server-sent events on `/events`).
//!
//! | path | page |
//! | ---- | ---- |
//! | `GET /` | the environment × gateway matrix, counts, what needs attention |
//! | `GET /environments/{env}` | lane and gate, gateways, pin, evals, drift, deployments |
//! | `GET /environments/{env}/history[?gateway=G&before=CURSOR]` | every attempt, 50 a page |
//! | `GET /environments/{env}/gateways/{gateway}` | desired against live, the drift diff, attempts |
//! | `GET /compare?base=REV&head=REV` | the semantic plan between two revisions |
//! | `GET/POST /login`, `POST /logout` | a token for a session cookie |
//! | `POST /environments/{env}/sync`, `…/pin`, `…/unpin` | actions, in the token's scope |
//!
//! Who sees what: with API tokens configured, a page needs a session
//! (signed in with a token) or a bearer token, and shows only the
//! environments the token's scope covers; acting needs a session and the
//! form's CSRF token. Without tokens the dashboard is read-only (and, like
//! the API, refused beyond loopback unless the operator allows it).

mod compare;
mod environment;
mod gateway;
mod overview;
mod page;
pub mod session;

use crate::{
    config::{Loaded, Repository},
    ledger::{HistoryCursor, Millis, PinEnd, Trigger},
    reconcile::{
        Clock, SystemClock,
        pin::{PinError, Revisions, TargetError, pin_in},
    },
    server::{ServerState, SyncRequest, bearer_token},
};
use axum::{
    Router,
    body::Body,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::{get, post},
};
use maud::Markup;
use page::{Chrome, Section};
use serde::Deserialize;
use session::Viewer;
use std::{
    collections::HashMap,
    sync::{
        Arc, OnceLock, RwLock,
        atomic::{AtomicI64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::sync::watch;

/// Longest form body read (sign-in, pin).
const FORM_LIMIT: usize = 16 * 1024;
/// Most live-update streams open at once: each holds a connection.
const MAX_EVENT_STREAMS: usize = 64;
/// Longest revision name compare accepts.
const MAX_REVISION_NAME: usize = 200;

/// What the dashboard knows beyond the ledger, set by the mode's loop.
pub struct Dashboard {
    /// The followed branch's newest valid revision, as the loop loaded it.
    followed: RwLock<Option<Arc<Loaded>>>,
    /// Loads other revisions (compare, diffs of older versions).
    revisions: OnceLock<Arc<dyn Revisions>>,
    /// Bumped whenever the reconciler recorded something: pages refresh.
    changes: watch::Sender<u64>,
    /// When the loop last finished a pass (0: not yet).
    last_pass: AtomicI64,
    /// After how long without a pass the data is shown as stale, ms.
    stale_after: AtomicI64,
    streams: AtomicUsize,
    stopping: watch::Sender<bool>,
    pub sessions: session::Sessions,
}

impl Default for Dashboard {
    fn default() -> Self {
        Dashboard {
            followed: RwLock::new(None),
            revisions: OnceLock::new(),
            changes: watch::Sender::new(0),
            last_pass: AtomicI64::new(0),
            stale_after: AtomicI64::new(5 * 60 * 1000),
            streams: AtomicUsize::new(0),
            stopping: watch::Sender::new(false),
            sessions: Default::default(),
        }
    }
}

impl Dashboard {
    /// The revision lanes, gates and diffs are read from.
    pub fn follow(&self, loaded: Arc<Loaded>) {
        *self.followed.write().unwrap_or_else(|e| e.into_inner()) = Some(loaded);
    }

    pub fn set_revisions(&self, revisions: Arc<dyn Revisions>) {
        let _ = self.revisions.set(revisions);
    }

    /// Data older than `after` without a pass is flagged stale (a few of
    /// the loop's intervals).
    pub fn set_stale_after(&self, after: Duration) {
        self.stale_after.store(
            i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
    }

    /// A pass finished at `at`: pages refresh.
    pub fn passed(&self, at: Millis) {
        self.last_pass.store(at, Ordering::Relaxed);
        self.changed();
    }

    /// Something was recorded outside a pass (a pin): pages refresh.
    pub fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Ends the live-update streams, so shutdown does not wait on them.
    pub fn stop(&self) {
        let _ = self.stopping.send(true);
    }

    /// The followed revision and its environments, once there is one.
    pub fn environments(&self) -> Option<(String, Vec<String>)> {
        let loaded = self.followed()?;
        let repo = loaded.repository.as_ref()?;
        Some((
            loaded.revision.to_string(),
            repo.environments.keys().cloned().collect(),
        ))
    }

    fn followed(&self) -> Option<Arc<Loaded>> {
        self.followed
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

pub fn routes() -> Router<Arc<ServerState>> {
    Router::new()
        .route("/", get(overview))
        .route("/environments/{env}", get(environment))
        .route("/environments/{env}/history", get(history))
        .route("/environments/{env}/gateways/{gateway}", get(gateway))
        .route("/environments/{env}/sync", post(sync))
        .route("/environments/{env}/pin", post(pin))
        .route("/environments/{env}/unpin", post(unpin))
        .route("/compare", get(compare))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/events", get(events))
        .route("/assets/sluice.css", get(css))
        .route("/assets/sluice.js", get(js))
}

/// A page with the headers every page gets: no caching (it is live data),
/// no framing, scripts and styles only from here.
fn html(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    security_headers(headers);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// Who asks, or `None` when the dashboard has tokens and the request
/// carries neither a live session nor a known bearer token.
fn viewer(state: &ServerState, headers: &HeaderMap) -> Option<Viewer> {
    if state.tokens.is_empty() {
        return Some(Viewer::open());
    }
    if let Some(viewer) = session::cookie_value(headers)
        .and_then(|id| state.dashboard.sessions.viewer(id, Instant::now()))
    {
        return Some(viewer);
    }
    // NB: a bearer token reads (scripts, benchmarks); it cannot act here,
    // having no session and so no CSRF token.
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)?;
    let (scope, name) = state.tokens.identify(token)?;
    Some(Viewer {
        scope,
        name,
        csrf: None,
        signed_in: false,
    })
}

/// The viewer, or the answer that sends them to sign in.
#[allow(clippy::result_large_err)]
fn require_viewer(
    state: &ServerState,
    headers: &HeaderMap,
    here: &str,
) -> Result<Viewer, Response> {
    viewer(state, headers).ok_or_else(|| {
        let next: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
        redirect(&format!("/login?next={next}"))
    })
}

fn chrome<'a>(title: &'a str, viewer: &'a Viewer, section: Section) -> Chrome<'a> {
    Chrome {
        title,
        viewer,
        now: SystemClock.now(),
        section,
    }
}

fn failure(viewer: &Viewer, status: StatusCode, heading: &str, text: &str) -> Response {
    html(
        status,
        page::message(&chrome(heading, viewer, Section::Overview), heading, text),
    )
}

/// Runs ledger reads off the runtime's threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, crate::ledger::LedgerError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

fn repository(loaded: &Option<Arc<Loaded>>) -> Option<&Repository> {
    loaded.as_ref().and_then(|l| l.repository.as_ref())
}

async fn overview(State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    let viewer = match require_viewer(&state, &headers, "/") {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let followed = state.dashboard.followed();
    let configured: Vec<String> = repository(&followed)
        .map(|r| r.environments.keys().cloned().collect())
        .unwrap_or_default();
    let ledger = state.ledger.clone();
    let scope = viewer.clone();
    let read = blocking(move || {
        overview::Overview::read(ledger.as_ref(), &configured, &|e| scope.sees(e))
    })
    .await;
    let mut data = match read {
        Ok(data) => data,
        Err(e) => {
            return failure(
                &viewer,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Cannot read the ledger",
                &e,
            );
        }
    };
    let last = state.dashboard.last_pass.load(Ordering::Relaxed);
    data.last_pass = (last > 0).then_some(last);
    data.stale_after = state.dashboard.stale_after.load(Ordering::Relaxed);
    data.ledger_error = state.ledger_health.failing();
    html(
        StatusCode::OK,
        overview::render(&data, &chrome("Overview", &viewer, Section::Overview)),
    )
}

async fn environment(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path(env): Path<String>,
) -> Response {
    let viewer = match require_viewer(
        &state,
        &headers,
        &format!("/environments/{}", page::path(&env)),
    ) {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    if !viewer.sees(&env) {
        return not_in_scope(&viewer, &env);
    }
    let followed = state.dashboard.followed();
    let ledger = state.ledger.clone();
    let slug = env.clone();
    let read = blocking(move || {
        environment::EnvironmentPage::read(
            ledger.as_ref(),
            repository(&followed),
            &slug,
            SystemClock.now(),
        )
    })
    .await;
    let title = format!("Environment {env}");
    match read {
        Ok(Some(data)) => html(
            StatusCode::OK,
            environment::render(&data, &chrome(&title, &viewer, Section::Environments)),
        ),
        Ok(None) => unknown_environment(&viewer, &env),
        Err(e) => failure(
            &viewer,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Cannot read the ledger",
            &e,
        ),
    }
}

fn not_in_scope(viewer: &Viewer, env: &str) -> Response {
    failure(
        viewer,
        StatusCode::FORBIDDEN,
        "Not in your scope",
        &format!("Your token is not scoped to environment `{env}`."),
    )
}

fn unknown_environment(viewer: &Viewer, env: &str) -> Response {
    failure(
        viewer,
        StatusCode::NOT_FOUND,
        "No such environment",
        &format!("Neither the ledger nor the followed revision has an environment `{env}`."),
    )
}

#[derive(Deserialize)]
struct HistoryQuery {
    gateway: Option<String>,
    before: Option<String>,
}

async fn history(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path(env): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let here = format!("/environments/{}/history", page::path(&env));
    let viewer = match require_viewer(&state, &headers, &here) {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    if !viewer.sees(&env) {
        return not_in_scope(&viewer, &env);
    }
    let before = match HistoryCursor::from_query(q.before.as_deref()) {
        Ok(before) => before,
        Err(()) => {
            return failure(
                &viewer,
                StatusCode::BAD_REQUEST,
                "Bad page",
                "`before` must be STARTED.ID, as the Older link gives it.",
            );
        }
    };
    let ledger = state.ledger.clone();
    let slug = env.clone();
    let gateway = q.gateway.clone();
    let read = blocking(move || {
        environment::HistoryPage::read(ledger.as_ref(), &slug, gateway.as_deref(), before)
    })
    .await;
    let title = format!("History of {env}");
    match read {
        Ok(data) => html(
            StatusCode::OK,
            environment::render_history(&data, &chrome(&title, &viewer, Section::Environments)),
        ),
        Err(e) => failure(
            &viewer,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Cannot read the ledger",
            &e,
        ),
    }
}

async fn gateway(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path((env, name)): Path<(String, String)>,
) -> Response {
    let here = page::gateway_href(&env, &name);
    let viewer = match require_viewer(&state, &headers, &here) {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    if !viewer.sees(&env) {
        return not_in_scope(&viewer, &env);
    }
    let ledger = state.ledger.clone();
    let (slug, gw) = (env.clone(), name.clone());
    let read = blocking(move || gateway::GatewayPage::read(ledger.as_ref(), &slug, &gw)).await;
    let data = match read {
        Ok(Some(data)) => data,
        Ok(None) => {
            return failure(
                &viewer,
                StatusCode::NOT_FOUND,
                "No such gateway",
                &format!("The ledger has no gateway `{name}` in `{env}`."),
            );
        }
        Err(e) => {
            return failure(
                &viewer,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Cannot read the ledger",
                &e,
            );
        }
    };
    // The newest episode's revision renders the desired document: the
    // followed one when it is that revision, else loaded for the diff.
    let data = match data.drift.first().map(|e| e.revision.clone()) {
        Some(revision) => match desired_document(&state, &revision, &env).await {
            Some(desired) => data.with_desired(&desired),
            None => data,
        },
        None => data,
    };
    let title = format!("Gateway {name}");
    html(
        StatusCode::OK,
        gateway::render(&data, &chrome(&title, &viewer, Section::Environments)),
    )
}

/// The policy document `revision` renders for `env`, if it can be had.
async fn desired_document(
    state: &ServerState,
    revision: &str,
    env: &str,
) -> Option<serde_json::Value> {
    let followed = state.dashboard.followed();
    let loaded = match followed.filter(|l| l.revision.to_string() == revision) {
        Some(loaded) => loaded,
        None => state.dashboard.revisions.get()?.load(revision).await.ok()?,
    };
    let repo = loaded.repository.as_ref()?;
    let environment = repo.environments.get(env)?;
    Some(crate::config::render::document(repo, environment))
}

#[derive(Deserialize)]
struct CompareQuery {
    base: Option<String>,
    head: Option<String>,
}

async fn compare(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Query(q): Query<CompareQuery>,
) -> Response {
    let viewer = match require_viewer(&state, &headers, "/compare") {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let followed = state.dashboard.followed();
    let head_default = followed.as_ref().map(|l| l.revision.to_string());
    let asked = q.base.is_some() || q.head.is_some();
    let head = q
        .head
        .filter(|h| !h.trim().is_empty())
        .or(head_default)
        .unwrap_or_default();
    // By default the followed head against its parent.
    let base = q
        .base
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| format!("{}~1", crate::source::prefix(&head, 12)));
    let outcome = match plan(&state, &base, &head, &viewer).await {
        Err(_) if !asked => Err(
            "Enter two revisions (commits, branches or tags) to see what changes between them."
                .into(),
        ),
        outcome => outcome,
    };
    let data = compare::Compare {
        base,
        head,
        outcome,
    };
    html(
        StatusCode::OK,
        compare::render(&data, &chrome("Compare", &viewer, Section::Compare)),
    )
}

async fn plan(
    state: &ServerState,
    base: &str,
    head: &str,
    viewer: &Viewer,
) -> Result<crate::plan::Plan, String> {
    if head.is_empty() {
        return Err("No revision fetched yet: nothing to compare.".into());
    }
    for name in [base, head] {
        if name.len() > MAX_REVISION_NAME || name.chars().any(char::is_control) {
            return Err(
                "A revision is a commit, branch or tag name (at most 200 characters).".into(),
            );
        }
    }
    let Some(revisions) = state.dashboard.revisions.get() else {
        return Err("This Sluice does not read revisions itself (the controller reads them from its ConfigRepositories).".into());
    };
    let (before, after) = tokio::join!(revisions.load(base), revisions.load(head));
    let before = before.map_err(|e| format!("cannot load {base}: {e}"))?;
    let after = after.map_err(|e| format!("cannot load {head}: {e}"))?;
    let (Some(base_repo), Some(head_repo)) = (&before.repository, &after.repository) else {
        let invalid = if before.repository.is_none() {
            base
        } else {
            head
        };
        return Err(format!(
            "{invalid} is invalid: no plan (see `sluice validate --rev {invalid}`)"
        ));
    };
    let mut plan = crate::plan::Plan::new(
        base_repo,
        &before.revision.to_string(),
        head_repo,
        &after.revision.to_string(),
    );
    plan.approved_by = crate::plan::approval(after.message.as_deref().unwrap_or_default());
    plan.environments.retain(|e| viewer.sees(&e.environment));
    Ok(plan)
}

/// A form's fields (bounded: the body is read only up to [`FORM_LIMIT`]).
async fn form(body: Body) -> Option<HashMap<String, String>> {
    let bytes = axum::body::to_bytes(body, FORM_LIMIT).await.ok()?;
    Some(url::form_urlencoded::parse(&bytes).into_owned().collect())
}

/// A cross-site form post: its `Origin` (browsers send one on every POST)
/// names another host than the one it was sent to.
fn cross_site(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    origin == "null" || origin_host != host
}

/// Checks an action's request: a session, its CSRF token, the same site,
/// and the environment in the session's scope. Returns who acts.
async fn authorize_action(
    state: &ServerState,
    headers: &HeaderMap,
    env: &str,
    body: Body,
) -> Result<(Viewer, HashMap<String, String>), Response> {
    let viewer = viewer(state, headers).unwrap_or_else(Viewer::open);
    if cross_site(headers) {
        return Err(failure(
            &viewer,
            StatusCode::FORBIDDEN,
            "Refused",
            "This form was sent from another site.",
        ));
    }
    if viewer.csrf.is_none() {
        let why = if state.tokens.is_empty() {
            "This dashboard is read-only: no API tokens are configured."
        } else {
            "Sign in with a token to act."
        };
        return Err(failure(&viewer, StatusCode::FORBIDDEN, "Refused", why));
    }
    let Some(fields) = form(body).await else {
        return Err(failure(
            &viewer,
            StatusCode::PAYLOAD_TOO_LARGE,
            "Refused",
            "The form is too large.",
        ));
    };
    if !session::csrf_matches(&viewer, fields.get("csrf").map(String::as_str)) {
        return Err(failure(
            &viewer,
            StatusCode::FORBIDDEN,
            "Refused",
            "The form is stale or was not sent from this dashboard: reload the page and try again.",
        ));
    }
    if !viewer.may_act(env) {
        return Err(not_in_scope(&viewer, env));
    }
    Ok((viewer, fields))
}

/// Whether the ledger or the followed revision knows `env`.
async fn known(state: &ServerState, env: &str) -> Result<bool, String> {
    if repository(&state.dashboard.followed()).is_some_and(|r| r.environments.contains_key(env)) {
        return Ok(true);
    }
    let ledger = state.ledger.clone();
    let env = env.to_owned();
    blocking(move || {
        Ok(!ledger.gateways(Some(&env))?.is_empty() || !ledger.deployments(&env, 1)?.is_empty())
    })
    .await
}

fn request_sync(state: &ServerState, env: &str, trigger: Trigger) {
    state.sync.push(SyncRequest {
        trigger,
        environment: Some(env.to_owned()),
        repositories: None,
        received: Instant::now(),
    });
}

fn back_to(env: &str) -> Response {
    redirect(&format!("/environments/{}", page::path(env)))
}

async fn sync(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path(env): Path<String>,
    body: Body,
) -> Response {
    let viewer = match authorize_action(&state, &headers, &env, body).await {
        Ok((viewer, _)) => viewer,
        Err(response) => return response,
    };
    match known(&state, &env).await {
        Ok(true) => {}
        Ok(false) => return unknown_environment(&viewer, &env),
        Err(e) => {
            return failure(
                &viewer,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Cannot read the ledger",
                &e,
            );
        }
    }
    tracing::info!(environment = %env, by = %viewer.name, "sync requested from the dashboard");
    request_sync(&state, &env, Trigger::Manual);
    back_to(&env)
}

async fn pin(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path(env): Path<String>,
    body: Body,
) -> Response {
    let (viewer, fields) = match authorize_action(&state, &headers, &env, body).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let to = fields
        .get("to")
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    let reason = fields
        .get("reason")
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    let ledger = state.ledger.clone();
    let (slug, by) = (env.clone(), viewer.name.clone());
    let made = tokio::task::spawn_blocking(move || {
        pin_in(
            ledger.as_ref(),
            &slug,
            to.as_deref(),
            reason,
            &by,
            SystemClock.now(),
        )
    })
    .await;
    match made {
        Ok(Ok(_)) => {
            tracing::info!(environment = %env, by = %viewer.name, "pinned from the dashboard");
            state.dashboard.changed();
            request_sync(&state, &env, Trigger::Manual);
            back_to(&env)
        }
        Ok(Err(PinError::Target(e @ TargetError::NoDeployments { .. }))) => {
            failure(&viewer, StatusCode::CONFLICT, "Cannot pin", &e.to_string())
        }
        Ok(Err(PinError::Target(e))) => failure(
            &viewer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Cannot pin",
            &e.to_string(),
        ),
        Ok(Err(PinError::Ledger(e))) => failure(
            &viewer,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Cannot pin",
            &e.to_string(),
        ),
        Err(e) => failure(
            &viewer,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Cannot pin",
            &e.to_string(),
        ),
    }
}

async fn unpin(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path(env): Path<String>,
    body: Body,
) -> Response {
    let viewer = match authorize_action(&state, &headers, &env, body).await {
        Ok((viewer, _)) => viewer,
        Err(response) => return response,
    };
    let ledger = state.ledger.clone();
    let (slug, by) = (env.clone(), viewer.name.clone());
    let ended =
        blocking(move || ledger.unpin(&slug, SystemClock.now(), &by, PinEnd::Unpinned)).await;
    match ended {
        Ok(_) => {
            tracing::info!(environment = %env, by = %viewer.name, "unpinned from the dashboard");
            state.dashboard.changed();
            request_sync(&state, &env, Trigger::Poll);
            back_to(&env)
        }
        Err(e) => failure(
            &viewer,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Cannot unpin",
            &e,
        ),
    }
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

/// Where to go after signing in: a path on this dashboard, nothing else
/// (no `//host` or `/\host` a browser would take elsewhere).
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(next)
            if next.starts_with('/')
                && !next.starts_with("//")
                && !next.contains('\\')
                && !next.chars().any(char::is_control) =>
        {
            next.to_owned()
        }
        _ => "/".to_owned(),
    }
}

async fn login_form(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let viewer = viewer(&state, &headers).unwrap_or_else(Viewer::open);
    let next = local_path(q.next.as_deref());
    html(
        StatusCode::OK,
        login_page(&viewer, &next, None, state.tokens.is_empty()),
    )
}

fn login_page(viewer: &Viewer, next: &str, error: Option<&str>, open: bool) -> Markup {
    let chrome = chrome("Sign in", viewer, Section::SignIn);
    page::layout(
        &chrome,
        maud::html! {
            h1 { "Sign in" }
            @if open {
                p { "This dashboard has no API tokens configured: it is read-only and needs no sign-in. " a href="/" { "Go to the overview" } }
            } @else {
                p { "Sign in with an API token (from " code { "SLUICE_API_TOKENS" } " or " code { "--tokens-file" } "). You will see and act on the environments its scope covers." }
                @if let Some(error) = error { p.error role="alert" { (error) } }
                form.login method="post" action="/login" {
                    input type="hidden" name="next" value=(next);
                    label for="token" { "Token" }
                    input #token name="token" type="password" autocomplete="current-password" required autofocus;
                    button type="submit" { "Sign in" }
                }
            }
        },
    )
}

async fn login(State(state): State<Arc<ServerState>>, headers: HeaderMap, body: Body) -> Response {
    let anonymous = Viewer::open();
    if state.tokens.is_empty() {
        return redirect("/");
    }
    if cross_site(&headers) {
        return failure(
            &anonymous,
            StatusCode::FORBIDDEN,
            "Refused",
            "This form was sent from another site.",
        );
    }
    let Some(fields) = form(body).await else {
        return failure(
            &anonymous,
            StatusCode::PAYLOAD_TOO_LARGE,
            "Refused",
            "The form is too large.",
        );
    };
    let next = local_path(fields.get("next").map(String::as_str));
    let token = fields.get("token").map(|t| t.trim()).unwrap_or_default();
    let Some((scope, name)) = state.tokens.identify(token) else {
        tracing::info!("dashboard sign-in refused: unknown token");
        return html(
            StatusCode::UNAUTHORIZED,
            login_page(&anonymous, &next, Some("That token is not known."), false),
        );
    };
    match state
        .dashboard
        .sessions
        .open(scope, name.clone(), Instant::now())
    {
        Ok(id) => {
            tracing::info!(by = %name, "signed in to the dashboard");
            let secure = headers
                .get("x-forwarded-proto")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
            let mut response = redirect(&next);
            if let Ok(cookie) = HeaderValue::from_str(&session::set_cookie(&id, secure)) {
                response.headers_mut().insert(header::SET_COOKIE, cookie);
            }
            response
        }
        Err(e) => failure(
            &anonymous,
            StatusCode::SERVICE_UNAVAILABLE,
            "Cannot sign in",
            &e.to_string(),
        ),
    }
}

async fn logout(State(state): State<Arc<ServerState>>, headers: HeaderMap, body: Body) -> Response {
    let viewer = viewer(&state, &headers).unwrap_or_else(Viewer::open);
    let fields = form(body).await.unwrap_or_default();
    if cross_site(&headers)
        || !session::csrf_matches(&viewer, fields.get("csrf").map(String::as_str))
    {
        return failure(
            &viewer,
            StatusCode::FORBIDDEN,
            "Refused",
            "The form is stale: reload the page and try again.",
        );
    }
    if let Some(id) = session::cookie_value(&headers) {
        state.dashboard.sessions.close(id);
    }
    let mut response = redirect("/login");
    if let Ok(cookie) = HeaderValue::from_str(&session::clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// Counts a live-update stream while it is open.
struct StreamSlot(Arc<ServerState>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.dashboard.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `changed` each time the reconciler records something; the page
/// fetches itself again (so what it shows stays in the viewer's scope).
async fn events(State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    if viewer(&state, &headers).is_none() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if state.dashboard.streams.fetch_add(1, Ordering::Relaxed) >= MAX_EVENT_STREAMS {
        state.dashboard.streams.fetch_sub(1, Ordering::Relaxed);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live pages open\n",
        )
            .into_response();
    }
    let slot = StreamSlot(state.clone());
    let changes = state.dashboard.changes.subscribe();
    let stopping = state.dashboard.stopping.subscribe();
    let stream = futures::stream::unfold(
        (changes, stopping, slot),
        |(mut changes, mut stopping, slot)| async move {
            let changed = tokio::select! {
                changed = changes.changed() => changed.is_ok(),
                _ = stopping.wait_for(|s| *s) => false,
            };
            if !changed {
                return None;
            }
            let n = *changes.borrow_and_update();
            let event = Event::default().event("changed").data(n.to_string());
            Some((
                Ok::<_, std::convert::Infallible>(event),
                (changes, stopping, slot),
            ))
        },
    );
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

const STYLE: &str = include_str!("assets/sluice.css");
const SCRIPT: &str = include_str!("assets/sluice.js");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // NB: the pages name assets with the version in the query.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    security_headers(headers);
    response
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(local_path(Some("/environments/dev")), "/environments/dev");
        for hostile in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "evil",
            "/a\nb",
        ] {
            assert_eq!(local_path(Some(hostile)), "/", "{hostile:?}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn a_post_from_another_origin_is_cross_site() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "127.0.0.1:7878".parse().unwrap());
        assert!(
            !cross_site(&headers),
            "no Origin: not a browser's cross-site post"
        );
        headers.insert(header::ORIGIN, "http://127.0.0.1:7878".parse().unwrap());
        assert!(!cross_site(&headers));
        headers.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(cross_site(&headers));
        headers.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(cross_site(&headers));
    }
}
