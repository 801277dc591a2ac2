//! The files of a config repository as Rust types. These types are the single
//! source of the JSON Schemas (`sluice schema`), so a field documented here is
//! documented for editors too.

use super::catalog::PolicySettings;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use std::{borrow::Cow, time::Duration};

/// `sluice.yaml`: the repository manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "Sluice repository manifest (sluice.yaml)")]
pub struct Manifest {
    /// How changes travel between environments.
    #[serde(default)]
    pub promotion: PromotionOrder,
    /// Settings every environment inherits unless it sets its own.
    #[serde(default)]
    pub defaults: Defaults,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PromotionOrder {
    /// Environment slugs from first to last, e.g. `[development, staging, production]`.
    #[serde(default)]
    pub order: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Defaults {
    pub enforcement: Option<Enforcement>,
    pub drift: Option<DriftSpec>,
}

/// What a gateway does when a policy fires. Ordered from weakest to strongest.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    /// Record only.
    Monitor,
    /// Record and raise an alert.
    Alert,
    /// Act: block, redact, refuse.
    Enforce,
}

/// An ordinary environment, or an `eval` one whose fixtures are reset on every
/// sync and that never receives triggers or alerts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EnvironmentKind {
    #[default]
    Standard,
    Eval,
}

/// `environments/<slug>/environment.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "Sluice environment (environments/<slug>/environment.yaml)")]
pub struct EnvironmentSpec {
    /// Lowercase letters, digits and hyphens, starting with a letter, 3–50
    /// characters; equal to the directory name.
    pub slug: String,
    /// A name for people.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Production environments get protections: weakening changes need an
    /// approval, the directory cannot be removed while flagged, longer retention.
    #[serde(default)]
    pub is_production: bool,
    #[serde(default)]
    pub kind: EnvironmentKind,
    /// Defaults to `defaults.enforcement` in sluice.yaml, then `enforce`.
    pub enforcement: Option<Enforcement>,
    pub promotion: Option<PromotionSpec>,
    pub drift: Option<DriftSpec>,
    #[serde(default)]
    pub alerts: Vec<AlertSpec>,
    /// How long the ledger keeps this environment's records (default 365d
    /// for production environments, 90d for others).
    pub retention: Option<DurationText>,
    /// Behaviour checks after every new version: eval suites run against
    /// this environment's gateways once they all run it.
    pub verify: Option<VerifySpec>,
}

/// `verify:` in environment.yaml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VerifySpec {
    /// Suites (`evals/<suite>.eval.yaml`) run after each new version.
    #[schemars(length(min = 1))]
    pub suites: Vec<String>,
    /// What a failing suite does (default `alert`).
    #[serde(default)]
    pub on_failure: OnFailure,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Alert (`verification-failed`) and keep the version running.
    #[default]
    Alert,
    /// Alert, put every gateway back on the last version that passed and pin
    /// the environment there.
    Rollback,
}

/// Where this environment's changes must come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PromotionSpec {
    /// The environment promotions come from.
    pub from: String,
    /// How long a version must run verified and drift-free upstream first.
    pub soak: Option<DurationText>,
    /// Suites that must have passed upstream, against gateways running the
    /// same pack content, before a new pack version is applied here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evals: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DriftSpec {
    /// How often live state is read back (default 1m).
    pub interval: Option<DurationText>,
    /// What to do on drift (default `detect`).
    pub policy: Option<DriftPolicy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DriftPolicy {
    /// Record the drift.
    Detect,
    /// Record and notify.
    Alert,
    /// Notify and re-apply the desired state.
    Heal,
}

/// A notification sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AlertSpec {
    pub webhook: WebhookAlert,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookAlert {
    /// The environment variable holding the webhook URL (URLs carry secrets,
    /// so they never live in the repository).
    pub url_env: EnvVarName,
    #[serde(default)]
    pub format: WebhookFormat,
    /// The environment variable holding a secret to sign payloads with (HMAC-SHA256).
    pub secret_env: Option<EnvVarName>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    #[default]
    Generic,
    Slack,
}

/// A mapping of LiteLLM's own settings, kept as the proxy reads them.
pub type LitellmMap = serde_json::Map<String, serde_json::Value>;

/// `environments/<slug>/litellm.yaml`: what the environment's LiteLLM
/// gateways run besides policy, in LiteLLM's own names. It holds no
/// secrets: provider and master keys are `os.environ/VAR` references, which
/// the operator's `--allow-env` must admit, like every `api_base` under
/// `--allow-url`. It is part of the environment's document, so a change to
/// it is a new version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "LiteLLM settings of an environment's gateways (environments/<slug>/litellm.yaml)"
)]
pub struct LitellmSettings {
    /// The models served (LiteLLM's `model_list`): what the model
    /// allow-list filters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_list: Vec<LitellmMap>,
    /// LiteLLM's `general_settings`, e.g. `master_key: os.environ/LITELLM_MASTER_KEY`.
    #[serde(default, skip_serializing_if = "LitellmMap::is_empty")]
    pub general_settings: LitellmMap,
    /// LiteLLM's `router_settings`.
    #[serde(default, skip_serializing_if = "LitellmMap::is_empty")]
    pub router_settings: LitellmMap,
    /// LiteLLM's `litellm_settings`.
    #[serde(default, skip_serializing_if = "LitellmMap::is_empty")]
    pub litellm_settings: LitellmMap,
}

/// `environments/<slug>/gateways.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "Sluice gateways (environments/<slug>/gateways.yaml)")]
pub struct GatewaysFile {
    pub gateways: Vec<Gateway>,
}

/// A gateway and how to reach it. Credentials are named, never included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "driver", rename_all = "lowercase")]
pub enum Gateway {
    /// A gateway speaking the Sluice HTTP protocol.
    Http(HttpGateway),
    /// A file that a gateway hot-reloads.
    File(FileGateway),
    /// A Kubernetes ConfigMap that a gateway mounts.
    Configmap(ConfigMapGateway),
    /// A LiteLLM proxy: its config.yaml written, the proxy restarted
    /// through an operator's hook, what it runs read back from its API.
    Litellm(LitellmGateway),
}

impl Gateway {
    pub fn name(&self) -> &str {
        match self {
            Gateway::Http(g) => &g.name,
            Gateway::File(g) => &g.name,
            Gateway::Configmap(g) => &g.name,
            Gateway::Litellm(g) => &g.name,
        }
    }

    pub fn driver(&self) -> &'static str {
        match self {
            Gateway::Http(_) => "http",
            Gateway::File(_) => "file",
            Gateway::Configmap(_) => "configmap",
            Gateway::Litellm(_) => "litellm",
        }
    }

    /// The URL the driver calls, for the operator's URL allowances.
    pub fn url(&self) -> Option<&str> {
        match self {
            Gateway::Http(g) => Some(&g.url),
            Gateway::Litellm(g) => Some(&g.url),
            Gateway::File(_) | Gateway::Configmap(_) => None,
        }
    }

    /// Where it answers model calls, when gateways.yaml says so apart from
    /// its URL (a `file` gateway's `chat:`).
    pub fn chat(&self) -> Option<&ChatEndpoint> {
        match self {
            Gateway::File(g) => g.chat.as_ref(),
            Gateway::Http(_) | Gateway::Litellm(_) | Gateway::Configmap(_) => None,
        }
    }

    /// The variable holding the credential the driver sends, and the key
    /// naming it in gateways.yaml.
    pub fn secret_env(&self) -> Option<(&EnvVarName, &'static str)> {
        match self {
            Gateway::Http(g) => g.token_env.as_ref().map(|v| (v, "tokenEnv")),
            Gateway::Litellm(g) => g.master_key_env.as_ref().map(|v| (v, "masterKeyEnv")),
            Gateway::File(_) | Gateway::Configmap(_) => None,
        }
    }

    /// The file the driver writes, where it writes one.
    pub fn path(&self) -> Option<&str> {
        match self {
            Gateway::File(g) => Some(&g.path),
            Gateway::Litellm(g) => Some(&g.path),
            Gateway::Http(_) | Gateway::Configmap(_) => None,
        }
    }

    /// Whether it runs LiteLLM's config (so its environment needs a
    /// litellm.yaml).
    pub fn runs_litellm(&self) -> bool {
        match self {
            Gateway::File(g) => g.format == FileFormat::Litellm,
            Gateway::Configmap(g) => g.format == FileFormat::Litellm,
            Gateway::Litellm(_) => true,
            Gateway::Http(_) => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpGateway {
    pub name: String,
    /// Base URL, e.g. `https://gw-eu-1.internal:8443`.
    #[schemars(regex(pattern = r"^https?://[^\s]+$"))]
    pub url: String,
    /// The environment variable holding the bearer token.
    pub token_env: Option<EnvVarName>,
    /// Per-request timeout (default 10s).
    pub timeout: Option<DurationText>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileGateway {
    pub name: String,
    /// Where the rendered config is written; relative paths are resolved
    /// against Sluice's data directory.
    #[schemars(length(min = 1))]
    pub path: String,
    /// What the file holds: Sluice's policy document (`sluice`, the
    /// default), or a LiteLLM proxy `config.yaml` (`litellm`: for a LiteLLM
    /// the user supervises, restarted on change by them; the environment
    /// needs a `litellm.yaml`).
    #[serde(default, skip_serializing_if = "FileFormat::is_default")]
    pub format: FileFormat,
    /// Where the gateway that runs this file answers model calls, so eval
    /// suites reach it (e.g. `sluice gateway --watch FILE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<ChatEndpoint>,
}

/// A gateway's OpenAI-compatible chat endpoint (`POST URL/v1/chat/completions`),
/// held to the operator's URL and variable allowances like an `http` gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChatEndpoint {
    /// Base URL, e.g. `http://127.0.0.1:18490`.
    #[schemars(regex(pattern = r"^https?://[^\s]+$"))]
    pub url: String,
    /// The environment variable holding the bearer token.
    pub token_env: Option<EnvVarName>,
    /// Per-request timeout (default 10s).
    pub timeout: Option<DurationText>,
}

/// A LiteLLM proxy that Sluice restarts to apply a config (LiteLLM has no
/// reload): the repository names the restart hook, the operator defines
/// what it runs (`--restart-hook NAME=COMMAND`), so whoever merges to the
/// repository cannot run commands on the Sluice host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LitellmGateway {
    pub name: String,
    /// The proxy's base URL, e.g. `http://127.0.0.1:4000`.
    #[schemars(regex(pattern = r"^https?://[^\s]+$"))]
    pub url: String,
    /// Where its config.yaml is written (the proxy's `--config`); relative
    /// paths are resolved against Sluice's data directory, absolute ones
    /// must be under a `--file-root`.
    #[schemars(length(min = 1))]
    pub path: String,
    /// The name of the operator's restart hook for this proxy.
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"))]
    pub restart_hook: String,
    /// The environment variable holding the proxy's master key, sent as the
    /// bearer to read back what it runs.
    pub master_key_env: Option<EnvVarName>,
    /// How long the proxy may take to answer ready after a restart (default 120s).
    pub ready_timeout: Option<DurationText>,
    /// Per-request timeout (default 10s).
    pub timeout: Option<DurationText>,
}

/// The format a `file` or `configmap` gateway writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    #[default]
    Sluice,
    Litellm,
}

impl FileFormat {
    fn is_default(&self) -> bool {
        *self == FileFormat::Sluice
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigMapGateway {
    pub name: String,
    pub namespace: String,
    pub config_map: String,
    /// What the ConfigMap holds: Sluice's policy document as `policy.json`
    /// (`sluice`, the default), or LiteLLM's `config.yaml` and its audit
    /// callback `sluice_audit.py` (`litellm`; the environment needs a
    /// `litellm.yaml`).
    #[serde(default, skip_serializing_if = "FileFormat::is_default")]
    pub format: FileFormat,
    /// The Deployment (same namespace) whose pods read the ConfigMap at
    /// start: after a change Sluice sets `sluice.dev/config-digest` on its
    /// pod template (a rolling restart) and waits for the rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub deployment: Option<String>,
    /// How long the rollout may take before the apply fails (default 5m;
    /// only with `deployment`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_timeout: Option<DurationText>,
}

/// `base/packs/<name>.yaml` or `environments/<slug>/packs/<name>.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "Sluice policy pack")]
pub struct Pack {
    pub pack: PackMeta,
    #[serde(default)]
    pub policies: Policies,
    /// Settings per policy, by policy name.
    #[serde(default)]
    pub policy: PolicySettings,
    /// What was worked out of it once: never in a file.
    #[serde(skip)]
    #[schemars(skip)]
    pub memo: PackMemo,
}

/// What is worked out of a pack the first time it is needed: its canonical
/// JSON text and digest (rendering), and what the semantic rules find in
/// it as the file it was read from. Loads that reuse a file (see
/// `config::Reuse`) share its pack, so an unchanged pack of a long-running
/// process is written and checked once. NB: packs are immutable once
/// loaded (they live in `Arc`s); a clone starts empty, so a changed copy
/// never answers from the original's memo.
#[derive(Default)]
pub struct PackMemo {
    rendered: std::sync::OnceLock<(std::sync::Arc<str>, super::Digest)>,
    checked: std::sync::OnceLock<(String, Vec<super::Finding>)>,
}

impl PackMemo {
    /// The canonical text and digest, written by `write` the first time.
    pub fn rendered(
        &self,
        write: impl FnOnce() -> (std::sync::Arc<str>, super::Digest),
    ) -> &(std::sync::Arc<str>, super::Digest) {
        self.rendered.get_or_init(write)
    }

    /// What `check` finds in the pack as `file`, worked out the first
    /// time (and again for another file, unmemoized).
    pub fn checked(
        &self,
        file: &str,
        check: impl Fn() -> Vec<super::Finding>,
    ) -> Vec<super::Finding> {
        match self.checked.get_or_init(|| (file.to_owned(), check())) {
            (memo_file, findings) if memo_file == file => findings.clone(),
            _ => check(),
        }
    }
}

impl Clone for PackMemo {
    fn clone(&self) -> Self {
        PackMemo::default()
    }
}

/// Not part of what a pack is: two packs equal in content are equal.
impl PartialEq for PackMemo {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for PackMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackMemo")
            .field("rendered", &self.rendered.get().is_some())
            .field("checked", &self.checked.get().is_some())
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PackMeta {
    /// Equal to the file name without `.yaml`.
    pub name: String,
    /// SemVer, e.g. `2.3.0`.
    pub version: String,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn enabled_by_default() -> bool {
    true
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Policies {
    /// Policies in the order they are enforced on every model call.
    #[serde(default)]
    pub chain: Vec<String>,
}

/// A duration such as `30s`, `5m`, `1h30m` or `7d`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DurationText(pub String);

pub const DURATION_HINT: &str =
    "write a duration as a number and a unit: 500ms, 30s, 5m, 1h30m, 7d";

impl JsonSchema for DurationText {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(ms|s|m|h|d))+$",
            "description": "A duration such as 30s, 5m, 1h30m or 7d.",
            "x-hint": DURATION_HINT,
        })
    }
}

impl DurationText {
    /// The duration, when the text is well formed (the schema checks it first).
    pub fn parse(&self) -> Option<Duration> {
        parse_duration(&self.0)
    }
}

/// Parses `1h30m`-style durations; `None` when malformed or absurdly long.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total: u64 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit_ms, len) = [
            ("ms", 1),
            ("s", 1_000),
            ("m", 60_000),
            ("h", 3_600_000),
            ("d", 86_400_000),
        ]
        .iter()
        .find(|(unit, _)| rest.starts_with(unit))
        .map(|(unit, ms)| (*ms, unit.len()))?;
        rest = &rest[len..];
        total = total.checked_add(number.checked_mul(unit_ms)?)?;
    }
    Some(Duration::from_millis(total))
}

/// The name of an environment variable (where secrets live).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EnvVarName(pub String);

impl JsonSchema for EnvVarName {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "EnvVarName".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[A-Z_][A-Z0-9_]*$",
            "description": "The name of an environment variable, e.g. PROD_GATEWAY_TOKEN.",
            "x-hint": "name an environment variable (capitals, digits, underscores), never the secret itself",
            "x-redact": true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("1hour"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("99999999999999999999d"), None);
    }
}
