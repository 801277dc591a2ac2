//! The custom resources of Kubernetes mode, in group `sluice.dev`, version
//! `v1alpha1`. These types are the single source of the CRDs in `crds/`
//! (`sluice crds --out crds/`); a test fails when the files are stale.
//!
//! ```text
//!   ConfigRepository ◄── repositoryRef ── Environment ◄── environment ── Gateway
//!   (url, ref, secret,                    (path, suspend;                (driver, settings,
//!    verification)                         status: conditions,            secretRef)
//!                                          versions, history)
//! ```
//!
//! Gateways listed in git (`environments/<slug>/gateways.yaml`) need no
//! `Gateway` object; the kind is for gateways the platform registers itself.
//! Credentials always come from Secrets in the object's namespace, never from
//! the spec.

// NB: several `printcolumn(...)` in one `#[kube]` share keys such as
// `type_`, which clippy takes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use crate::{
    config::{
        Digest,
        model::{self, ConfigMapGateway, DurationText, FileFormat, FileGateway, HttpGateway},
    },
    ledger::{GatewayState, Outcome, PinEnd, Resolution, Trigger},
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every Sluice kind.
pub const GROUP: &str = "sluice.dev";
/// The only served version so far.
pub const VERSION: &str = "v1alpha1";
/// Most applies an `Environment` keeps in `status.history`, newest first.
pub const HISTORY_LIMIT: usize = 20;
/// Reconcile on request (Flux's `reconcile.fluxcd.io/requestedAt`): a new
/// value on a `ConfigRepository` or an `Environment` makes the controller
/// fetch and reconcile now; the status's `lastHandledReconcileAt` says
/// which request was handled. Any text will do; `date +%s` is usual.
pub const REQUESTED_AT: &str = "sluice.dev/requestedAt";

/// The value of `sluice.dev/requestedAt` on `object`, when set.
pub fn requested_at(object: &impl kube::Resource) -> Option<&str> {
    object
        .meta()
        .annotations
        .as_ref()?
        .get(REQUESTED_AT)
        .map(String::as_str)
}

/// A git repository that Sluice follows: where, which ref, how often, with
/// which credentials, and whose signatures a head must carry.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "ConfigRepository",
    namespaced,
    status = "ConfigRepositoryStatus",
    shortname = "configrepo",
    category = "sluice",
    doc = "A git repository of governance policy that Sluice follows.",
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.url"),
    printcolumn(name = "Revision", type_ = "string", json_path = ".status.revision"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        priority = 1,
        json_path = r#".status.conditions[?(@.type=="Ready")].message"#
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ConfigRepositorySpec {
    /// Where to clone from: `https://host/path`, `ssh://git@host/path`,
    /// `git@host:path` or (unauthenticated, for mirrors inside the cluster)
    /// `git://host/path`. Credentials never go in the URL.
    #[schemars(regex(
        pattern = r"^(https?://[^\s@/]+/\S+|git://[^\s@/]+/\S+|ssh://\S+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:\S+)$"
    ))]
    pub url: String,
    /// The branch, tag or commit to follow; exactly one.
    #[serde(rename = "ref")]
    pub git_ref: GitRef,
    /// How often to fetch, e.g. `1m` (webhooks trigger fetches in between).
    #[serde(default = "default_interval")]
    pub interval: DurationText,
    /// A Secret in this namespace with the credentials: key `token` for
    /// HTTPS, or `identity` (or `ssh-privatekey`, as in a
    /// `kubernetes.io/ssh-auth` Secret) holding a private key for SSH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// Refuse heads that are not signed by one of these keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

fn default_interval() -> DurationText {
    DurationText("1m".into())
}

/// A branch, a tag or a commit.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("[has(self.branch), has(self.tag), has(self.commit)].filter(x, x).size() == 1")
        .message("set exactly one of branch, tag or commit")
)]
#[serde(rename_all = "camelCase")]
pub struct GitRef {
    /// Follow the head of this branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub branch: Option<String>,
    /// Stay on this tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub tag: Option<String>,
    /// Stay on this commit (full SHA-1 or SHA-256 hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9a-f]{40}|[0-9a-f]{64})$"))]
    pub commit: Option<String>,
}

/// A Secret in the same namespace as the object that names it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Signed commits: the head must carry a valid signature by one of the
/// public keys in the Secret (every data key holds one key or a keyring);
/// an unsigned or unknown-signed head is refused and nothing is applied.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// The kind of signature: `openpgp` or `ssh`.
    pub provider: SignatureProvider,
    /// The Secret holding the trusted public keys.
    pub secret_ref: SecretRef,
}

/// The kind of commit signature.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SignatureProvider {
    /// `gpg.format=openpgp`: ASCII-armoured OpenPGP public keys.
    Openpgp,
    /// `gpg.format=ssh`: SSH public keys, one per line (allowed-signers style).
    Ssh,
}

impl From<SignatureProvider> for crate::source::SignatureFormat {
    fn from(provider: SignatureProvider) -> Self {
        match provider {
            SignatureProvider::Openpgp => crate::source::SignatureFormat::OpenPgp,
            SignatureProvider::Ssh => crate::source::SignatureFormat::Ssh,
        }
    }
}

/// What Sluice last saw of a repository.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConfigRepositoryStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (fetched, and verified when `verification` is set).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The commit the ref pointed at on the last successful fetch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// When the repository was last fetched successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fetch_time: Option<Time>,
    /// The `sluice.dev/requestedAt` value a fetch last answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}

/// One environment of a config repository (`environments/<slug>`), kept on
/// the repository's ref by the controller.
#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "Environment",
    namespaced,
    status = "EnvironmentStatus",
    shortname = "sluiceenv",
    shortname = "senv",
    category = "sluice",
    doc = "One environment of a config repository, kept on its ref by Sluice.",
    printcolumn(name = "Path", type_ = "string", json_path = ".spec.path"),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".status.desiredVersion"
    ),
    printcolumn(
        name = "Gateways",
        type_ = "string",
        json_path = ".status.gatewaysInSync"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#
    ),
    printcolumn(
        name = "Suspended",
        type_ = "boolean",
        priority = 1,
        json_path = ".spec.suspend"
    ),
    printcolumn(
        name = "Repository",
        type_ = "string",
        priority = 1,
        json_path = ".spec.repositoryRef.name"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentSpec {
    /// The `ConfigRepository` in this namespace that holds the environment.
    pub repository_ref: RepositoryRef,
    /// The environment's directory in the repository, `environments/<slug>`.
    #[schemars(regex(pattern = r"^environments/[a-z][a-z0-9-]{1,48}[a-z0-9]$"))]
    pub path: String,
    /// Stop applying (fetching, validation and drift detection go on).
    #[serde(default)]
    pub suspend: bool,
    /// Hold the environment at a version it ran whole (by digest or by a
    /// deployment's revision; neither: what it runs now) while a rollback
    /// is reviewed; removing the field unpins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<EnvironmentPin>,
}

/// `spec.pin`: which version to hold, and why.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[x_kube(
    validation = Rule::new("!(has(self.digest) && has(self.revision))")
        .message("set at most one of digest or revision")
)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentPin {
    /// A digest the environment ran whole: `sha256:` and 12 hex or more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^sha256:[0-9a-f]{12,64}$"))]
    pub digest: Option<String>,
    /// The revision of one of its deployments (a commit id or its start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{4,64}$"))]
    pub revision: Option<String>,
    /// Why, as `sluice status` shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub reason: Option<String>,
}

/// A `ConfigRepository` in the same namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryRef {
    /// The ConfigRepository's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The condition types of an `Environment`, in the order they are reached.
pub mod condition {
    /// Everything below holds: the environment runs its desired version.
    pub const READY: &str = "Ready";
    /// The repository at the desired revision passed validation.
    pub const VALIDATED: &str = "Validated";
    /// Every gateway runs the desired version, verified by digest.
    pub const SYNCED: &str = "Synced";
    /// At least one gateway runs something else than Sluice verified.
    pub const DRIFTED: &str = "Drifted";
    /// A promotion gate (soak, approval) holds the desired version back.
    pub const GATED: &str = "Gated";
    /// Every condition type an `Environment` reports.
    pub const ALL: [&str; 5] = [READY, VALIDATED, SYNCED, DRIFTED, GATED];
}

/// Where an environment stands, written by the controller through the
/// status subresource.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Validated`, `Synced`, `Drifted` and `Gated`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The commit whose render every gateway should run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_revision: Option<String>,
    /// The digest of that render.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_digest: Option<String>,
    /// Both at a glance, as `sluice status` shows them: `sha256:<12>@<8>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_version: Option<String>,
    /// How many gateways run the desired version, e.g. `2/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateways_in_sync: Option<String>,
    /// One entry per gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub gateways: Vec<GatewayStatus>,
    /// The latest applies, newest first, at most 20.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub history: Vec<ApplyRecord>,
    /// The `sluice.dev/requestedAt` value a reconcile last answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// What Sluice's ledger remembers of this environment: the record drift
    /// detection, promotion gates and `sluice rollback` read. Written by the
    /// field manager `sluice-ledger`, before each apply and after each pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<LedgerStatus>,
}

/// The ledger's record of one environment. Times are RFC 3339 with
/// milliseconds.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LedgerStatus {
    /// What Sluice last verified on each gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<LedgerGateway>,
    /// Apply attempts per gateway, newest first: the latest 50 finished,
    /// and every unfinished one (an apply a crash interrupted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<LedgerAttempt>,
    /// Versions the environment ran whole, newest first, at most 20: what
    /// `sluice rollback` goes back to and promotion gates compare.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub deployments: Vec<LedgerDeployment>,
    /// Drift episodes, newest first: every open one and the latest 20 resolved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift_episodes: Vec<LedgerDriftEpisode>,
    /// Pins, newest first: the one in place (never ended) and the latest
    /// 10 ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pins: Vec<LedgerPin>,
    /// Eval runs, newest first: the latest 5 of each suite.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub eval_runs: Vec<LedgerEvalRun>,
}

/// A pin: the environment held at a version it ran whole.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LedgerPin {
    pub digest: Digest,
    pub revision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub by: String,
    pub at: String,
    /// Since when the pin holds the branch's head back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<String>,
    /// `unpinned`, `caught-up` or `replaced`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<PinEnd>,
}

/// A suite's run against the environment's version.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEvalRun {
    pub suite: String,
    pub revision: String,
    pub digest: Digest,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packs: Vec<LedgerPack>,
    pub passed: u32,
    pub failed: u32,
    /// At most 50.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<LedgerEvalFailure>,
    pub at: String,
}

/// A case that failed on a gateway.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LedgerEvalFailure {
    pub gateway: String,
    pub case: String,
    pub reason: String,
}

/// What Sluice last verified on one gateway.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LedgerGateway {
    pub name: String,
    pub state: GatewayState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_digest: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_digest: Option<Digest>,
    /// When the state or the observed digest last changed.
    pub changed_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One attempt to put a version on one gateway.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LedgerAttempt {
    pub gateway: String,
    pub revision: String,
    pub digest: Digest,
    pub trigger: Trigger,
    pub started_at: String,
    /// Absent while the apply is in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A version every gateway of the environment was verified at.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LedgerDeployment {
    pub revision: String,
    pub digest: Digest,
    /// The packs of that version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packs: Vec<LedgerPack>,
    pub verified_at: String,
}

/// A pack of a deployed version.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LedgerPack {
    pub name: String,
    pub version: String,
    pub digest: Digest,
    /// What promotion compares across environments (the shared base pack).
    pub source: String,
}

impl From<&crate::ledger::DeployedPack> for LedgerPack {
    fn from(pack: &crate::ledger::DeployedPack) -> Self {
        LedgerPack {
            name: pack.name.clone(),
            version: pack.version.clone(),
            digest: pack.digest.clone(),
            source: pack.source.clone(),
        }
    }
}

impl From<&LedgerPack> for crate::ledger::DeployedPack {
    fn from(pack: &LedgerPack) -> Self {
        crate::ledger::DeployedPack {
            name: pack.name.clone(),
            version: pack.version.clone(),
            digest: pack.digest.clone(),
            source: pack.source.clone(),
        }
    }
}

/// A gateway found running something other than what Sluice verified there.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LedgerDriftEpisode {
    pub gateway: String,
    pub revision: String,
    pub desired_digest: Digest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_digest: Option<Digest>,
    /// The field-level changes as JSON (dropped, `[]`, past 8 KiB).
    pub changes: String,
    pub onset_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
    /// How it ended: `healed`, `reverted`, `superseded` or `removed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
}

/// What one gateway runs.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// The gateway's name (in `gateways.yaml`, or the `Gateway` object's).
    pub name: String,
    /// Where it stands: in-sync, drifted, pending, applying, failed,
    /// unreachable or gated.
    pub state: GatewayState,
    /// The digest it should run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_digest: Option<String>,
    /// The digest it reported last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_digest: Option<String>,
    /// When the state or the observed digest last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Why, when it is not in sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One apply of a version to an environment's gateways.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApplyRecord {
    /// The commit applied.
    pub revision: String,
    /// The digest of its render.
    pub digest: String,
    /// What started it.
    pub trigger: Trigger,
    /// `applied` when every gateway verified the digest, `unchanged` when all
    /// already ran it, `failed` when one did not, `interrupted` when Sluice
    /// stopped first.
    pub outcome: Outcome,
    /// When it started.
    pub started_at: Time,
    /// When the last gateway answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// What went wrong, when something did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A gateway the platform registers with Sluice instead of listing it in
/// git: which environment it belongs to, and how to reach it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "Gateway",
    namespaced,
    status = "GatewayResourceStatus",
    shortname = "sgw",
    category = "sluice",
    doc = "A gateway registered by the platform rather than listed in git.",
    printcolumn(
        name = "Environment",
        type_ = "string",
        json_path = ".spec.environment"
    ),
    printcolumn(name = "Driver", type_ = "string", json_path = ".spec.driver"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(
        name = "Observed",
        type_ = "string",
        priority = 1,
        json_path = ".status.observedDigest"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("has(self.http) == (self.driver == 'http')")
        .message("spec.http is required with driver http, and allowed only with it"),
    validation = Rule::new("has(self.file) == (self.driver == 'file')")
        .message("spec.file is required with driver file, and allowed only with it"),
    validation = Rule::new("has(self.configmap) == (self.driver == 'configmap')")
        .message("spec.configmap is required with driver configmap, and allowed only with it"),
    validation = Rule::new("!has(self.secretRef) || self.driver == 'http'")
        .message("spec.secretRef is only used by the http driver")
)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// The `Environment` object in this namespace the gateway belongs to.
    #[schemars(length(min = 1, max = 253))]
    pub environment: String,
    /// How Sluice talks to the gateway.
    pub driver: GatewayDriver,
    /// Settings of the `http` driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSettings>,
    /// Settings of the `file` driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileSettings>,
    /// Settings of the `configmap` driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configmap: Option<ConfigMapSettings>,
    /// A Secret in this namespace whose key `token` holds the bearer token
    /// (`http` driver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

/// The gateway drivers, as in `gateways.yaml`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GatewayDriver {
    /// A gateway speaking the Sluice HTTP protocol.
    Http,
    /// A file that a gateway hot-reloads (inside the controller's data volume).
    File,
    /// A ConfigMap that a gateway mounts.
    Configmap,
}

/// `http` driver settings (as in `gateways.yaml`, with the token from a Secret).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpSettings {
    /// Base URL, e.g. `https://gw-eu-1.internal:8443`.
    #[schemars(regex(pattern = r"^https?://[^\s]+$"))]
    pub url: String,
    /// Per-request timeout (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationText>,
}

/// `file` driver settings.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FileSettings {
    /// Where the rendered config is written; relative paths are resolved
    /// against the controller's data directory.
    #[schemars(length(min = 1))]
    pub path: String,
}

/// `configmap` driver settings.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapSettings {
    /// The gateway's namespace (Sluice needs RBAC for ConfigMaps there).
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// The ConfigMap's name.
    #[schemars(length(min = 1, max = 253))]
    pub config_map: String,
    /// What it holds: `sluice` (`policy.json`, the default) or `litellm`
    /// (LiteLLM's `config.yaml` and `sluice_audit.py`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<FileFormat>,
    /// The Deployment whose pods read the ConfigMap: rolled (pod-template
    /// annotation `sluice.dev/config-digest`) on every change, and awaited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub deployment: Option<String>,
    /// How long the rollout may take (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_timeout: Option<DurationText>,
}

/// What Sluice last saw of a registered gateway (`GatewayStatus` is an
/// environment's per-gateway entry).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewayResourceStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (accepted into its environment and reachable).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Where it stands, as in its environment's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<GatewayState>,
    /// The digest it reported last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_digest: Option<String>,
}

impl GatewaySpec {
    /// The gateway as the drivers know it, named `name` (the object's name).
    /// The bearer token is not part of it: the controller reads `secretRef`.
    pub fn to_gateway(&self, name: &str) -> Result<model::Gateway, super::Error> {
        let missing = || super::Error::DriverSettings {
            gateway: name.to_owned(),
            driver: self.driver,
        };
        Ok(match self.driver {
            GatewayDriver::Http => {
                let http = self.http.as_ref().ok_or_else(missing)?;
                model::Gateway::Http(HttpGateway {
                    name: name.to_owned(),
                    url: http.url.clone(),
                    token_env: None,
                    timeout: http.timeout.clone(),
                })
            }
            GatewayDriver::File => model::Gateway::File(FileGateway {
                name: name.to_owned(),
                path: self.file.as_ref().ok_or_else(missing)?.path.clone(),
                format: Default::default(),
                chat: None,
            }),
            GatewayDriver::Configmap => {
                let cm = self.configmap.as_ref().ok_or_else(missing)?;
                model::Gateway::Configmap(ConfigMapGateway {
                    name: name.to_owned(),
                    namespace: cm.namespace.clone(),
                    config_map: cm.config_map.clone(),
                    format: cm.format.unwrap_or_default(),
                    deployment: cm.deployment.clone(),
                    rollout_timeout: cm.rollout_timeout.clone(),
                })
            }
        })
    }
}

impl GatewayDriver {
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayDriver::Http => "http",
            GatewayDriver::File => "file",
            GatewayDriver::Configmap => "configmap",
        }
    }
}

impl std::fmt::Display for GatewayDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Set condition `new` in `conditions` the Kubernetes way: one entry per
/// type; `lastTransitionTime` moves only when the status changes.
pub fn set_condition(conditions: &mut Vec<Condition>, new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            let last_transition_time = if old.status == new.status {
                old.last_transition_time.clone()
            } else {
                new.last_transition_time.clone()
            };
            *old = Condition {
                last_transition_time,
                ..new
            };
        }
        None => conditions.push(new),
    }
}

/// Put `record` first in `history`, keeping at most [`HISTORY_LIMIT`].
pub fn push_history(history: &mut Vec<ApplyRecord>, record: ApplyRecord) {
    history.insert(0, record);
    history.truncate(HISTORY_LIMIT);
}
