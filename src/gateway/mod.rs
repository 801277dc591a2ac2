//! Gateways: where desired state goes. A small trait — read what a gateway
//! runs, apply a new version — and its drivers:
//!
//! | driver | live state from | apply by |
//! | ------ | --------------- | -------- |
//! | `http` | `GET /sluice/v1/status` (cheap), `GET /sluice/v1/config` | `PUT /sluice/v1/config` with `If-Match` and `Sluice-Generation` |
//! | `file` | the file's canonical digest | temp file, fsync, rename |
//! | `configmap` | the ConfigMap's `policy.json` (or `config.yaml`), digested; with a `deployment`, only once its pods rolled onto it | update conditional on `resourceVersion`, then a pod-template annotation and the rollout |
//! | `litellm` | the stamp LiteLLM's admin API serves, the config file, what the API says it enforces | LiteLLM's config.yaml written, the proxy restarted by the operator's hook, its readiness awaited, the previous file put back if it does not come up |
//!
//! The reconciler knows only the trait; `connect` picks the driver named in
//! `gateways.yaml`. A driver owns its wire format: it reports what it runs
//! as a digest (equal to the desired digest exactly when it runs that
//! version) and as a projection ([`Gateway::projection`]) that the drift
//! code diffs against its projection of the desired state
//! ([`Gateway::projected`]); nothing outside the driver parses its format.

pub mod configmap;
pub(crate) mod file;
mod format;
pub mod http;
pub mod litellm;
pub mod litellm_proxy;
pub mod protocol;
pub mod reference;
pub mod restart;
pub mod rollout;

use crate::config::{
    Digest,
    allow::{Allowances, Denied},
    model,
};
use async_trait::async_trait;
use serde_json::Value;
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

pub use protocol::Problem;

/// Where the reference gateway forgets its runtime state.
pub const RESET_PATH: &str = "/admin/v1/reset";
/// Where OpenAI-compatible gateways take chat requests.
pub const CHAT_PATH: &str = "/v1/chat/completions";

/// One gateway's desired state, ready to send.
#[derive(Debug, Clone)]
pub struct Desired {
    pub environment: String,
    pub gateway: String,
    pub digest: Digest,
    /// Canonical JSON: the bytes the digest covers.
    pub body: Arc<str>,
    /// The commit the version came from.
    pub revision: String,
}

#[cfg(test)]
impl Desired {
    /// A desired state carrying `body` (JSON), for driver tests.
    pub(crate) fn of_body(body: &str) -> Desired {
        Desired {
            environment: "dev".into(),
            gateway: "g".into(),
            digest: Digest::of_json(body).expect("test bodies are JSON"),
            body: Arc::from(body),
            revision: "abc".into(),
        }
    }
}

/// What a gateway reports it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    /// `None`: the gateway runs nothing (new, or restarted empty), which is
    /// not drift: the reconciler pushes again.
    pub digest: Option<Digest>,
    /// The generation of the running config, where the driver keeps one.
    pub generation: Option<u64>,
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The gateway swapped to the new config and reports its digest.
    Swapped { digest: Digest },
    /// It already ran that digest (`304`); nothing was done.
    Unchanged,
}

/// Why a gateway operation failed. Each variant is one answer of the protocol
/// or one way of not getting an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error("gateway changed since it was read (412): expected {expected}")]
    Changed { expected: String },
    #[error("gateway runs a newer generation ({running}) than this one ({offered}) (409)")]
    StaleGeneration { running: u64, offered: u64 },
    #[error("gateway refused the config (422): {}", summary(.problems))]
    Refused { problems: Vec<Problem> },
    #[error("gateway is busy reloading (429)")]
    Busy { retry_after: Option<Duration> },
    #[error("gateway refused the credentials ({status})")]
    Unauthorized { status: u16 },
    #[error("gateway answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("gateway did not answer within {0:?}")]
    Timeout(Duration),
    #[error("gateway is unreachable: {0}")]
    Unreachable(String),
    #[error("gateway reports {reported} after applying {applied}")]
    Mismatch { applied: String, reported: String },
    #[error("{0}")]
    Io(String),
    #[error("gateway is misconfigured: {0}")]
    Config(String),
    /// NB: not transient: the deadline already waited as long as the
    /// operator allows for the gateway's pods.
    #[error("gateway's rollout did not complete: {0}")]
    Rollout(String),
    /// The driver cannot do this at all (a `file` gateway has no chat
    /// endpoint; LiteLLM has no runtime reset): not a failure of the
    /// gateway, and callers say so rather than pretend it was done.
    #[error("this gateway's driver has no {0}")]
    Unsupported(&'static str),
}

fn summary(problems: &[Problem]) -> String {
    let shown: Vec<String> = problems
        .iter()
        .take(3)
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect();
    let more = problems.len().saturating_sub(3);
    if more > 0 {
        format!("{} (and {more} more)", shown.join("; "))
    } else {
        shown.join("; ")
    }
}

impl GatewayError {
    /// Worth trying again after a backoff: the gateway may answer differently.
    pub fn is_transient(&self) -> bool {
        match self {
            GatewayError::Busy { .. }
            | GatewayError::Timeout(_)
            | GatewayError::Unreachable(_)
            | GatewayError::Io(_) => true,
            GatewayError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// A short label for metrics and the ledger.
    pub fn label(&self) -> &'static str {
        match self {
            GatewayError::Changed { .. } => "changed",
            GatewayError::StaleGeneration { .. } => "stale-generation",
            GatewayError::Refused { .. } => "refused",
            GatewayError::Busy { .. } => "busy",
            GatewayError::Unauthorized { .. } => "unauthorized",
            GatewayError::Status { .. } => "error-status",
            GatewayError::Timeout(_) => "timeout",
            GatewayError::Unreachable(_) => "unreachable",
            GatewayError::Mismatch { .. } => "mismatch",
            GatewayError::Io(_) => "io",
            GatewayError::Config(_) => "config",
            GatewayError::Rollout(_) => "rollout",
            GatewayError::Unsupported(_) => "unsupported",
        }
    }
}

/// A gateway as the reconciler sees it.
#[async_trait]
pub trait Gateway: Send + Sync {
    /// What it runs now; cheap enough to call on every pass.
    async fn live(&self) -> Result<Live, GatewayError>;

    /// What it runs, checked as far as the driver can (the `http` driver
    /// reads what the gateway serves, not only what its status claims):
    /// after an apply, and in drift scans.
    async fn verified(&self) -> Result<Live, GatewayError> {
        self.live().await
    }

    /// What it runs, as a projection the drift code diffs field by field
    /// against [`Gateway::projected`] of the desired state, or `None` when
    /// it runs nothing. NB: the driver owns its wire format; the reconciler
    /// and the drift code never parse it, they compare projections.
    async fn projection(&self) -> Result<Option<Value>, GatewayError>;

    /// The desired state as this driver projects what it writes: for
    /// drivers that carry Sluice's document, the document itself.
    fn projected(&self, desired: &Desired) -> Value {
        serde_json::from_str(&desired.body).unwrap_or(Value::Null)
    }

    /// Applies `desired` if the gateway still runs `expected` (the digest last
    /// read; `None` when it ran nothing), as generation `generation`.
    async fn apply(
        &self,
        desired: &Desired,
        expected: Option<&Digest>,
        generation: u64,
    ) -> Result<Applied, GatewayError>;

    /// Sends one OpenAI-compatible chat request (`POST
    /// /v1/chat/completions`) through the gateway, as a client would, and
    /// returns its answer whatever the status: a `403` refusal is an answer
    /// the eval judge reads, not an error. `Err` only when there is no
    /// answer to read.
    async fn chat(&self, _body: &Value) -> Result<ChatReply, GatewayError> {
        Err(GatewayError::Unsupported("chat endpoint"))
    }

    /// Forgets the gateway's runtime state (rate-limit counters and the
    /// like) so eval suites start from the same place every time.
    /// [`GatewayError::Unsupported`] when the driver has no such thing.
    async fn reset_runtime(&self) -> Result<(), GatewayError> {
        Err(GatewayError::Unsupported("runtime reset"))
    }
}

/// Largest chat answer read from a gateway.
pub const MAX_CHAT_BYTES: usize = 4 << 20;

/// A gateway's answer to one chat request, as far as Sluice reads it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatReply {
    pub status: u16,
    /// `Sluice-Outcome`, as the gateway wrote it.
    pub outcome: Option<String>,
    /// `Sluice-Policies`: the policies that acted.
    pub policies: Option<Vec<String>>,
    /// `Sluice-Digest`: the config the gateway ran the request under.
    pub digest: Option<String>,
    pub body: ChatBody,
}

/// An answer's body: JSON when it parses, else its text (at most
/// [`MAX_CHAT_BYTES`]).
#[derive(Debug, Clone, PartialEq)]
pub enum ChatBody {
    Json(Value),
    Text(String),
}

impl Default for ChatBody {
    fn default() -> Self {
        ChatBody::Text(String::new())
    }
}

impl ChatBody {
    pub fn from_text(text: String) -> ChatBody {
        match serde_json::from_str(&text) {
            Ok(value) => ChatBody::Json(value),
            Err(_) => ChatBody::Text(text),
        }
    }

    pub fn json(&self) -> Option<&Value> {
        match self {
            ChatBody::Json(value) => Some(value),
            ChatBody::Text(_) => None,
        }
    }
}

impl ChatReply {
    /// The `Sluice-*` headers of an answer, read into a reply with `body`.
    pub fn from_headers(status: u16, headers: &reqwest::header::HeaderMap, body: ChatBody) -> Self {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().chars().take(1024).collect::<String>())
        };
        ChatReply {
            status,
            outcome: header("sluice-outcome"),
            policies: header("sluice-policies").map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect()
            }),
            digest: header("sluice-digest"),
            body,
        }
    }
}

/// Largest live document projected field by field; a bigger one (a broken
/// or hostile gateway) is one whole-document value.
const MAX_PROJECTED_BYTES: usize = 4 << 20;

/// The version a text holding Sluice's JSON document is: the digest of its
/// canonical form (formatting does not count); text that is not JSON (a
/// broken hand edit) gets the digest of its bytes, so it still differs from
/// every version. One rule for the `http`, `file` and `configmap` drivers.
pub(crate) fn document_digest(text: &str) -> Digest {
    Digest::of_json(text).unwrap_or_else(|| Digest::of(text.as_bytes()))
}

/// The projection of a config held as Sluice's JSON document (the `http`,
/// `file` and `configmap` drivers): the document, or the text itself when
/// it is not JSON (a broken hand edit) or too large to compare.
pub(crate) fn json_projection(text: &str) -> Value {
    if text.len() > MAX_PROJECTED_BYTES {
        return Value::String(format!(
            "<a document of {} bytes: too large to compare>",
            text.len()
        ));
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// Reads a secret by name: the process environment, or (in Kubernetes) a Secret.
pub type SecretSource = dyn Fn(&str) -> Option<String> + Send + Sync;

/// The secrets drivers and alert sinks may read, as the operator lets each
/// environment see them: a name the allowances do not cover for that
/// environment is refused before the store is asked, so a path that skipped
/// validation still cannot read it.
#[derive(Clone)]
pub struct Secrets {
    store: Arc<SecretSource>,
    allowances: Arc<Allowances>,
    /// Names Sluice minted itself for values it took from the platform
    /// (the Kubernetes Secrets of `Gateway` objects): not process variables,
    /// and their store never reads them from the environment.
    issued: Option<&'static str>,
}

impl Secrets {
    /// `store` behind `allowances`.
    pub fn new(store: Arc<SecretSource>, allowances: Arc<Allowances>) -> Self {
        Secrets {
            store,
            allowances,
            issued: None,
        }
    }

    /// The process environment behind `allowances`.
    pub fn process(allowances: Allowances) -> Self {
        Secrets::new(
            Arc::new(|name| std::env::var(name).ok()),
            Arc::new(allowances),
        )
    }

    /// Names under `prefix` are the store's own (see [`Secrets::issued`]).
    pub fn issuing(mut self, prefix: &'static str) -> Self {
        self.issued = Some(prefix);
        self
    }

    /// The value of `name` for one of `environment`'s gateways or alert
    /// sinks: `Err` when the operator does not allow it there, `None` when
    /// it is not set.
    pub fn read(&self, environment: &str, name: &str) -> Result<Option<String>, Denied> {
        if !self.issued.is_some_and(|prefix| name.starts_with(prefix)) {
            self.allowances.variable(environment, name)?;
        }
        Ok((self.store)(name))
    }

    pub fn allowances(&self) -> &Allowances {
        &self.allowances
    }
}

/// How drivers reach the outside world: where relative file paths live,
/// where secrets come from, and the default request timeout.
#[derive(Clone)]
pub struct DriverContext {
    /// Base for relative `file` gateway paths.
    pub data_dir: PathBuf,
    /// Directories outside the data dir that `file` gateways may write:
    /// the operator's choice (`--file-root`), never the repository's.
    pub file_roots: Vec<PathBuf>,
    /// Secrets by environment-variable name, and the operator's allowances
    /// (which also say which URLs each environment may reach).
    pub secrets: Secrets,
    pub timeout: Duration,
    /// The Kubernetes API, for `configmap` gateways (made on first use).
    pub kube: configmap::KubeClient,
    /// The operator's restart hooks, for gateways that load their config
    /// only when they start (`litellm`).
    pub restarts: Arc<restart::Restarts>,
}

impl DriverContext {
    /// A context that allows no variable and no URL until given the
    /// operator's allowances.
    pub fn new(data_dir: PathBuf) -> Self {
        DriverContext {
            data_dir,
            file_roots: Vec::new(),
            secrets: Secrets::process(Allowances::default()),
            timeout: Duration::from_secs(10),
            kube: configmap::KubeClient::default(),
            restarts: Arc::default(),
        }
    }
}

/// Where a `file` gateway writes: a relative path under the data dir
/// (validation keeps it there); an absolute one only under a `--file-root`.
fn file_path(path: &str, context: &DriverContext) -> Result<PathBuf, GatewayError> {
    let path = Path::new(path);
    if path.is_relative() {
        return Ok(context.data_dir.join(path));
    }
    if context.file_roots.iter().any(|root| path.starts_with(root)) {
        return Ok(path.to_path_buf());
    }
    Err(GatewayError::Config(format!(
        "{} is outside the directories this Sluice may write; allow its directory with --file-root",
        path.display()
    )))
}

/// What a gateway's driver writes for `desired`, as it writes it: LiteLLM's
/// config.yaml for a `file` or `configmap` gateway with `format: litellm`,
/// Sluice's document otherwise (`sluice render -o native`).
pub fn native(spec: &model::Gateway, desired: &Desired) -> Result<String, GatewayError> {
    match spec {
        model::Gateway::File(file) => format::render(file.format, desired),
        model::Gateway::Configmap(map) => format::render(map.format, desired),
        model::Gateway::Litellm(_) => format::render(model::FileFormat::Litellm, desired),
        _ => Ok(desired.body.to_string()),
    }
}

/// The driver for one of `environment`'s gateways.
pub fn connect(
    environment: &str,
    spec: &model::Gateway,
    context: &DriverContext,
) -> Result<Arc<dyn Gateway>, GatewayError> {
    match spec {
        model::Gateway::Http(http) => Ok(Arc::new(http::HttpGateway::new(
            environment,
            http,
            context,
        )?)),
        model::Gateway::File(file) => {
            let gateway = file::FileGateway::new(file_path(&file.path, context)?, file.format);
            Ok(Arc::new(match &file.chat {
                None => gateway,
                Some(chat) => {
                    let spec = model::HttpGateway {
                        name: file.name.clone(),
                        url: chat.url.clone(),
                        token_env: chat.token_env.clone(),
                        timeout: chat.timeout.clone(),
                    };
                    gateway.with_chat(http::HttpGateway::new(environment, &spec, context)?)
                }
            }))
        }
        model::Gateway::Configmap(spec) => {
            Ok(Arc::new(configmap::ConfigMapGateway::new(spec, context)))
        }
        model::Gateway::Litellm(spec) => Ok(Arc::new(litellm_proxy::LitellmProxy::new(
            environment,
            spec,
            file_path(&spec.path, context)?,
            context,
        )?)),
    }
}
