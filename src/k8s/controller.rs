//! `sluice controller`: the Kubernetes mode's main loop. One kube-runtime
//! controller over `Environment`s, woken also by the `ConfigRepository`s and
//! `Gateway`s they reference and by hand edits of the ConfigMaps of
//! `configmap` gateways (in the gateway namespaces), running the same
//! [`Reconciler`] as `sluice run`.
//!
//! ```text
//!   Environment ──► suspended? ──► ConfigRepository + Secret ──► fetch (Follower)
//!        ▲                                                          │
//!        │ status (server-side apply), Events              load + validate
//!        │                                                          │
//!   status::build ◄── Reconciler::pass(only = slug) ◄── + Gateway objects
//! ```
//!
//! A reconcile is also asked for by the HTTP server's sync queue (a verified
//! git webhook, `POST /api/v1/sync`) and by `sluice.dev/requestedAt` on an
//! Environment or its ConfigRepository: it fetches anew and records the
//! trigger that asked.
//!
//! There are no finalizers: deleting an `Environment` leaves its gateways
//! running the last version (taking policy away from a gateway is not a
//! cleanup Sluice should do on its own).

use super::{
    ConfigRepository, Environment, Gateway,
    crd::{EnvironmentStatus, GitRef, requested_at},
    ledger::{AdoptError, StatusLedger, slug_of},
    status::{self, Observed, PassReport, Validation, reason},
};
use crate::{
    config::{self, Limits, Loaded, Repository, model},
    drift::shortened,
    gateway::configmap,
    ledger::Trigger,
    promote::trailer,
    reconcile::{EnvironmentReport, NoProgress, Pass, Reconciler},
    server::{ServerState, SyncRequest, webhook::repository_key},
    source::{Credentials, Follower, Target, TrustedKeys, follow::Token, prefix, verify_commit},
};
use futures::StreamExt;
use k8s_openapi::{
    api::core::v1::{ConfigMap, Secret},
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::{
        WatchStreamExt,
        controller::{Action, Controller},
        events::{Event, EventType, Recorder, Reporter},
        reflector::{self, ObjectRef},
        watcher,
    },
};
use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

/// The field manager of every status the controller writes.
pub const FIELD_MANAGER: &str = "sluice-controller";
/// Longest a fetch may take before the reconcile gives up on it.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);
/// Environments reconciled at once (each pass works on up to
/// `--concurrency` gateways).
const ENVIRONMENTS_AT_ONCE: u16 = 8;
/// How long one fetch of a repository stands for all its Environments.
const FETCH_SHARED_FOR: Duration = Duration::from_secs(2);
/// Prefix of the names under which Secret values reach the drivers. Not
/// a variable name a repository can write (the schema allows capitals,
/// digits and `_` only), and never read from the process environment.
pub const SECRET_PREFIX: &str = "sluice.dev/secret/";

/// What went wrong in the controller, one variant per failing operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the Sluice CRDs are not installed ({kind} is unknown to the API server); install them with `kubectl apply -f crds/` (or `sluice crds | kubectl apply -f -`)"
    )]
    CrdsMissing { kind: &'static str },
    #[error("cannot list {kind} objects: {source}")]
    List {
        kind: &'static str,
        source: Box<kube::Error>,
    },
    #[error("cannot read {kind} {namespace}/{name}: {source}")]
    Get {
        kind: &'static str,
        namespace: String,
        name: String,
        source: Box<kube::Error>,
    },
    #[error("cannot write the status of Environment {namespace}/{name}: {source}")]
    WriteStatus {
        namespace: String,
        name: String,
        source: Box<kube::Error>,
    },
    #[error("cannot write the SSH key of Secret {name} to {path}: {source}")]
    WriteKey {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    WriteLedger(#[from] super::ledger::FlushError),
    #[error(transparent)]
    Adopt(#[from] AdoptError),
    #[error("the reconcile pass failed: {0}")]
    Pass(#[from] crate::reconcile::ReconcileError),
}

impl Error {
    /// A short label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::CrdsMissing { .. } => "crds_missing",
            Error::List { .. } => "list",
            Error::Get { .. } => "get",
            Error::WriteStatus { .. } => "write_status",
            Error::WriteKey { .. } => "write_key",
            Error::WriteLedger(_) => "write_ledger",
            Error::Adopt(_) => "adopt",
            Error::Pass(_) => "pass",
        }
    }
}

/// Secret values the drivers read by name (`DriverContext::secrets`): filled
/// from `Gateway` objects' Secrets, falling back to the process environment
/// for `tokenEnv` in `gateways.yaml`. The store of a [`crate::gateway::Secrets`]
/// that checks the operator's allowances before asking it (see
/// `sluice controller`), so the fallback only ever sees allowed names.
#[derive(Clone, Default)]
pub struct SecretValues(Arc<RwLock<HashMap<String, String>>>);

impl SecretValues {
    /// The value under `name`: a Secret's value when the name is one the
    /// controller made, else the environment variable.
    pub fn get(&self, name: &str) -> Option<String> {
        if name.starts_with(SECRET_PREFIX) {
            let values = self.0.read().unwrap_or_else(|e| e.into_inner());
            return values.get(stored(name)).cloned();
        }
        std::env::var(name).ok()
    }

    fn insert(&self, name: &str, value: String) {
        let mut values = self.0.write().unwrap_or_else(|e| e.into_inner());
        values.insert(stored(name).to_owned(), value);
    }
}

/// Where the value of a name the controller minted is kept: by Secret,
/// without the `@resourceVersion` that makes a rotated token a new driver,
/// so a rotation replaces the old token in memory rather than keeping both.
fn stored(name: &str) -> &str {
    name.rsplit_once('@').map_or(name, |(secret, _)| secret)
}

/// What every reconcile needs.
pub struct Context {
    pub client: Client,
    /// One reconciler for the process (its drivers and ledger are shared).
    pub reconciler: Arc<Reconciler>,
    /// The reconciler's ledger, kept in the Environments' status.
    pub ledger: Arc<StatusLedger>,
    pub recorder: Recorder,
    /// Health, readiness and metrics, served by the HTTP server.
    pub server: Arc<ServerState>,
    pub secrets: SecretValues,
    pub data_dir: PathBuf,
    pub limits: Limits,
    /// Followed repositories.
    sources: Sources,
    /// Where the reconciler loads pinned revisions (the followers in use).
    pub revisions: Option<Arc<super::pin::ClusterRevisions>>,
    /// Environments reconciled once already (the first pass is `startup`).
    seen: Mutex<HashSet<String>>,
    /// Consecutive failures per Environment, for the backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The resourceVersion each Environment's last status write returned.
    written: Mutex<HashMap<String, String>>,
    /// Reconciles asked for and not yet run, by Environment: the trigger to
    /// record and when it was asked for (an older fetch does not answer it).
    requested: Mutex<HashMap<String, (Trigger, Instant)>>,
}

/// Followed repositories by namespace and name, with the spec each was
/// made for (URL, ref, verification): a changed spec replaces its entry,
/// a deleted repository drops it, so the map never holds more than the
/// repositories there are.
#[derive(Default)]
struct Sources(Mutex<HashMap<String, (String, SharedSource)>>);

/// One repository's source, shared by its Environments' reconciles.
type SharedSource = Arc<tokio::sync::Mutex<Source>>;

impl Sources {
    /// The source of repository `key` (`namespace/name`) under `spec`: a
    /// fresh one when the spec changed.
    fn get(&self, key: String, spec: String) -> SharedSource {
        let mut sources = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (known, source) = sources.entry(key).or_default();
        if *known != spec {
            *known = spec;
            *source = Arc::default();
        }
        source.clone()
    }

    fn forget(&self, key: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

/// A followed repository: the head last loaded and the last valid one.
#[derive(Default)]
struct Source {
    loaded: Option<(String, Arc<Loaded>)>,
    last_good: Option<Arc<Loaded>>,
    /// The files of the head last loaded, reused by the next head's load.
    reuse: Arc<config::Reuse>,
    /// The head last fetched, and when (it may be a refused one, never loaded).
    head: Option<String>,
    fetched_at: Option<std::time::Instant>,
    /// What the ConfigRepository's status last said.
    reported: Option<Reported>,
    /// The commit whose signature was verified, and the version of the
    /// Secret of keys it was verified with.
    verified: Option<(String, String)>,
}

/// Why a repository's head is not used: a condition reason and a message.
type Refusal = (&'static str, String);

/// What a ConfigRepository's status says: of which generation, fetched
/// (the commit) or not (why), and the `sluice.dev/requestedAt` answered.
#[derive(Clone, PartialEq)]
struct Reported {
    generation: Option<i64>,
    fetched: Result<String, Refusal>,
    handled: Option<String>,
}

impl Context {
    pub fn new(
        client: Client,
        reconciler: Arc<Reconciler>,
        ledger: Arc<StatusLedger>,
        server: Arc<ServerState>,
        secrets: SecretValues,
        data_dir: PathBuf,
        limits: Limits,
        instance: Option<String>,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance,
            },
        );
        Context {
            client,
            reconciler,
            ledger,
            recorder,
            server,
            secrets,
            data_dir,
            limits,
            sources: Sources::default(),
            revisions: None,
            seen: Mutex::default(),
            failures: Mutex::default(),
            requested: Mutex::default(),
            written: Mutex::default(),
        }
    }

    /// Asks for a reconcile of Environment `key` that fetches anew and
    /// records `trigger`. A request waiting already keeps its trigger.
    fn request(&self, key: String, trigger: Trigger) {
        let mut requested = self.requested.lock().unwrap_or_else(|e| e.into_inner());
        let entry = requested.entry(key).or_insert((trigger, Instant::now()));
        entry.1 = Instant::now();
    }

    /// The request waiting for Environment `env`, taken: one asked through
    /// [`Context::request`], else the Environment's own `sluice.dev/requestedAt`
    /// when its status has not answered that value yet.
    fn take_request(&self, env: &Environment) -> Option<(Trigger, Instant)> {
        let asked = self
            .requested
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key(env));
        asked.or_else(|| {
            let handled = env
                .status
                .as_ref()
                .and_then(|s| s.last_handled_reconcile_at.as_deref());
            requested_at(env)
                .filter(|value| Some(*value) != handled)
                .map(|_| (Trigger::Manual, Instant::now()))
        })
    }

    /// The Environments a sync request (webhook, `POST /api/v1/sync`) names
    /// (those of its environment slug, or all; for a push, those of the
    /// pushed repository), each asked to reconcile.
    async fn requested_by(
        &self,
        request: &SyncRequest,
        environments: &reflector::Store<Environment>,
        repositories: &Api<ConfigRepository>,
    ) -> Vec<ObjectRef<Environment>> {
        // NB: (namespace, name) of the ConfigRepositories pushed to; a list
        // that fails reconciles every Environment rather than none.
        let pushed: Option<HashSet<(String, String)>> = match &request.repositories {
            None => None,
            Some(keys) => match repositories.list(&ListParams::default()).await {
                Ok(list) => Some(
                    list.items
                        .iter()
                        .filter(|repo| keys.contains(&repository_key(&repo.spec.url)))
                        .map(|repo| (repo.namespace().unwrap_or_default(), repo.name_any()))
                        .collect(),
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list the ConfigRepositories; reconciling every Environment");
                    None
                }
            },
        };
        let named = environments.state().into_iter().filter(|env| {
            let of_repository = (
                env.namespace().unwrap_or_default(),
                env.spec.repository_ref.name.clone(),
            );
            request
                .environment
                .as_deref()
                .is_none_or(|slug| slug_of(env) == slug)
                && pushed.as_ref().is_none_or(|p| p.contains(&of_repository))
        });
        named
            .map(|env| {
                self.request(key(&env), request.trigger);
                ObjectRef::from_obj(&*env)
            })
            .collect()
    }
}

/// Whether a ConfigRepository's `sluice.dev/requestedAt` is not answered yet.
fn repository_requested(repo: &ConfigRepository) -> bool {
    let handled = repo
        .status
        .as_ref()
        .and_then(|s| s.last_handled_reconcile_at.as_deref());
    requested_at(repo).is_some_and(|value| Some(value) != handled)
}

/// Whether a change to a ConfigRepository is news for its Environments: a
/// spec its status does not describe yet (a new generation) or an
/// unanswered request. The controller's own status writes are neither, so
/// they wake no second pass; each Environment fetches at the repository's
/// interval, and a webhook or request wakes them all at once.
fn repository_wakes(repo: &ConfigRepository) -> bool {
    let observed = repo.status.as_ref().and_then(|s| s.observed_generation);
    observed != repo.metadata.generation || repository_requested(repo)
}

/// What wakes an Environment of its own: a new generation (a spec change)
/// or a new `sluice.dev/requestedAt`; never its status writes.
fn spec_or_request(env: &Environment) -> Option<u64> {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    env.metadata.generation.hash(&mut hasher);
    requested_at(env).hash(&mut hasher);
    Some(hasher.finish())
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// Fails with [`Error::CrdsMissing`] when the API server does not serve
/// the Sluice kinds (in `namespace`, or cluster-wide).
pub async fn check_crds(client: &Client, namespace: Option<&str>) -> Result<(), Error> {
    async fn probe<K>(
        client: &Client,
        namespace: Option<&str>,
        kind: &'static str,
    ) -> Result<(), Error>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        match api.list_metadata(&ListParams::default().limit(1)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Err(Error::CrdsMissing { kind }),
            Err(source) => Err(Error::List {
                kind,
                source: Box::new(source),
            }),
        }
    }
    probe::<ConfigRepository>(client, namespace, "ConfigRepository").await?;
    probe::<Environment>(client, namespace, "Environment").await?;
    probe::<Gateway>(client, namespace, "Gateway").await
}

/// `wanted` split into the namespaces in which this controller may list
/// the ConfigMaps Sluice wrote (to watch them) and those it may not (`403`:
/// their ConfigMap gateways are read at each requeue only).
pub async fn watchable_gateway_namespaces(
    client: &Client,
    wanted: Vec<String>,
) -> (Vec<String>, Vec<String>) {
    let mut watchable = Vec::new();
    let mut forbidden = Vec::new();
    for namespace in wanted {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
        let params = ListParams::default().labels(&managed_selector()).limit(1);
        match api.list_metadata(&params).await {
            Err(kube::Error::Api(status)) if status.code == 403 => forbidden.push(namespace),
            // NB: any other failure is the watch's to retry.
            _ => watchable.push(namespace),
        }
    }
    (watchable, forbidden)
}

/// The label selector of the ConfigMaps Sluice writes.
fn managed_selector() -> String {
    format!("{}={}", configmap::MANAGED_BY_LABEL, configmap::MANAGED_BY)
}

/// Reads back the ledger records of the Environments this controller
/// reconciles (`namespace` or all, matching `shard`), before anything is
/// resolved or applied.
pub async fn adopt_all(
    context: &Context,
    namespace: Option<&str>,
    shard: Option<&str>,
) -> Result<usize, Error> {
    let api: Api<Environment> = match namespace {
        Some(ns) => Api::namespaced(context.client.clone(), ns),
        None => Api::all(context.client.clone()),
    };
    let mut params = ListParams::default();
    if let Some(selector) = shard {
        params = params.labels(selector);
    }
    let list = api.list(&params).await.map_err(|source| Error::List {
        kind: "Environment",
        source: Box::new(source),
    })?;
    let mut adopted = 0;
    for env in &list.items {
        match context.ledger.adopt(env).await {
            Ok(()) => adopted += 1,
            Err(e) => tracing::warn!(environment = %key(env), error = %e, "not adopted"),
        }
    }
    Ok(adopted)
}

/// Runs the controller until `shutdown` resolves (in-flight reconciles finish).
/// Reconciles the Environments of `namespace` (or all) whose labels match
/// `shard` (a label selector such as `sluice.dev/shard=eu`; all when `None`),
/// so several controller deployments can split the environments between them.
/// The ConfigMaps Sluice wrote in `gateway_namespaces` are watched: a hand
/// edit wakes their Environment at once (see [`woken_by`]).
pub async fn run(
    context: Arc<Context>,
    namespace: Option<&str>,
    shard: Option<&str>,
    gateway_namespaces: &[String],
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let client = &context.client;
    // NB: only spec changes (a new generation) and requests wake an
    // Environment; its own status writes must not trigger another pass at once.
    let (store, writer) = reflector::store();
    let environments = reflector::reflector(
        writer,
        watcher(
            api::<Environment>(client, namespace),
            match shard {
                Some(selector) => watcher::Config::default().labels(selector),
                None => watcher::Config::default(),
            },
        ),
    )
    .default_backoff()
    .applied_objects()
    .predicate_filter(spec_or_request, Default::default());
    let controller = Controller::for_stream(environments, store.clone());
    // NB: the webhook and `POST /api/v1/sync` queue requests on the server;
    // each becomes a reconcile of the Environments it names.
    let by_request = store.clone();
    let pushed_to = api::<ConfigRepository>(client, namespace);
    let requests = futures::stream::unfold(context.clone(), move |context| {
        let (environments, repositories) = (by_request.clone(), pushed_to.clone());
        async move {
            let (request, _) = context.server.sync.next().await;
            let woken = context
                .requested_by(&request, &environments, &repositories)
                .await;
            tracing::info!(
                trigger = request.trigger.as_str(),
                environments = woken.len(),
                "reconcile requested"
            );
            Some((futures::stream::iter(woken), context))
        }
    })
    .flatten();
    let by_repository = store.clone();
    let requesting = context.clone();
    let by_gateway = store.clone();
    let mut controller = controller
        .watches(
            api::<ConfigRepository>(client, namespace),
            watcher::Config::default(),
            move |repo: ConfigRepository| {
                let (ns, name) = (repo.namespace(), repo.name_any());
                let (wakes, requested) = (repository_wakes(&repo), repository_requested(&repo));
                let context = requesting.clone();
                by_repository
                    .state()
                    .into_iter()
                    .filter(move |env| {
                        wakes && env.namespace() == ns && env.spec.repository_ref.name == name
                    })
                    .map(move |env| {
                        if requested {
                            context.request(key(&env), Trigger::Manual);
                        }
                        ObjectRef::from_obj(&*env)
                    })
            },
        )
        .watches(
            api::<Gateway>(client, namespace),
            watcher::Config::default(),
            move |gateway: Gateway| {
                let (ns, environment) = (gateway.namespace(), gateway.spec.environment.clone());
                by_gateway
                    .state()
                    .into_iter()
                    .filter(move |env| env.namespace() == ns && env.name_any() == environment)
                    .map(|env| ObjectRef::from_obj(&*env))
            },
        );
    if !gateway_namespaces.is_empty() {
        tracing::info!(namespaces = ?gateway_namespaces, "watching the gateway ConfigMaps");
    }
    // NB: whole objects, not metadata: a hand edit is told from the
    // controller's own writes by the data's digest.
    let managed = managed_selector();
    for gateway_namespace in gateway_namespaces {
        let by_config_map = store.clone();
        controller = controller.watches(
            Api::<ConfigMap>::namespaced(client.clone(), gateway_namespace),
            watcher::Config::default().labels(&managed),
            move |map: ConfigMap| woken_by(&map, &by_config_map),
        );
    }
    let server = context.server.clone();
    controller
        .reconcile_on(requests)
        // NB: unbounded, every Environment is reconciled at once, each
        // holding its share of the repository and its gateways' requests.
        .with_config(kube::runtime::controller::Config::default().concurrency(ENVIRONMENTS_AT_ONCE))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| {
            // NB: the dashboard's pages refresh after each Environment's pass.
            server
                .dashboard
                .passed(crate::reconcile::Clock::now(&crate::reconcile::SystemClock));
            async move {
                match result {
                    Ok((object, _)) => tracing::debug!(environment = %object, "reconciled"),
                    Err(e) => tracing::warn!(error = %e, "reconcile failed"),
                }
            }
        })
        .await;
}

/// The Environments a change to a gateway ConfigMap wakes: when it is a
/// hand edit (its data is not what Sluice wrote), every Environment whose
/// slug its `sluice.dev/environment` label names, in whichever namespace;
/// none for the controller's own writes.
fn woken_by(
    map: &ConfigMap,
    environments: &reflector::Store<Environment>,
) -> Vec<ObjectRef<Environment>> {
    let Some(slug) = configmap::edited_by_hand(map) else {
        return Vec::new();
    };
    tracing::info!(
        config_map = %format!("{}/{}", map.namespace().unwrap_or_default(), map.name_any()),
        environment = slug,
        "a gateway ConfigMap was edited by hand"
    );
    environments
        .state()
        .iter()
        .filter(|env| slug_of(env) == slug)
        .map(|env| ObjectRef::from_obj(&**env))
        .collect()
}

fn error_policy(env: Arc<Environment>, error: &Error, context: Arc<Context>) -> Action {
    let key = key(&env);
    let failures = context.failure(&key);
    tracing::warn!(environment = %key, error = %error, label = error.metric_label(), "reconcile failed; retrying");
    Action::requeue(backoff(failures, Duration::from_secs(300)))
}

/// 1s, 2s, 4s … up to `cap`.
fn backoff(failures: u32, cap: Duration) -> Duration {
    Duration::from_secs(1u64 << failures.min(16).saturating_sub(1)).min(cap)
}

fn key(env: &Environment) -> String {
    format!("{}/{}", env.namespace().unwrap_or_default(), env.name_any())
}

impl Context {
    fn failure(&self, key: &str) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let count = failures.entry(key.to_owned()).or_default();
        *count += 1;
        *count
    }

    fn success(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(key);
    }
}

/// What one reconcile found out, before it becomes a status.
struct Work {
    suspended: bool,
    blocked: Option<(&'static str, String)>,
    validation: Validation,
    pass: Option<(String, Trigger, EnvironmentReport, Time)>,
    /// The promotion the applied head records, when it is into this environment.
    promotion: Option<String>,
    /// How long until the next reconcile, when nothing wakes it earlier.
    requeue: Duration,
}

impl Work {
    fn blocked(reason: &'static str, message: impl Into<String>) -> Work {
        Work {
            suspended: false,
            blocked: Some((reason, message.into())),
            validation: Validation::Unknown,
            pass: None,
            promotion: None,
            requeue: Duration::from_secs(60),
        }
    }
}

async fn reconcile(env: Arc<Environment>, context: Arc<Context>) -> Result<Action, Error> {
    let key = key(&env);
    let Some(env) = context.current(env).await? else {
        return Ok(Action::await_change());
    };
    let started = Instant::now();
    let work = context.work(&env).await?;
    let observed = Observed {
        generation: env.metadata.generation,
        now: now(),
        suspended: work.suspended,
        blocked: work.blocked.clone(),
        validation: work.validation.clone(),
        // NB: any reconcile that ran answers the request it saw.
        handled_request: requested_at(&*env).map(str::to_owned),
        pass: work
            .pass
            .as_ref()
            .map(|(revision, trigger, report, at)| PassReport {
                revision,
                trigger: *trigger,
                report,
                started: at,
            }),
    };
    let previous = env.status.clone().unwrap_or_default();
    let status = status::build(&previous, &observed);
    context.write_status(&env, &status).await?;
    context.publish_events(&env, &previous, &work).await;
    if let Some((revision, _, report, _)) = &work.pass {
        let pass = Pass::Reconciled {
            revision: revision.clone(),
            environments: vec![report.clone()],
        };
        let now = Timestamp::now().as_millisecond() as f64 / 1000.0;
        context.server.metrics.observe(
            &pass,
            Some(report.environment.as_str()),
            started.elapsed().as_secs_f64(),
            now,
        );
    }
    if work.blocked.is_some() {
        let failures = context.failure(&key);
        return Ok(Action::requeue(backoff(failures, work.requeue)));
    }
    context.success(&key);
    Ok(Action::requeue(work.requeue))
}

impl Context {
    /// Server-side apply of the whole status, owned by [`FIELD_MANAGER`].
    /// Writes the ConfigRepository's status (Ready, revision, last fetch)
    /// when what it says changes: its Environments share one fetch.
    async fn report_repository(
        &self,
        repo: &ConfigRepository,
        reported: &mut Option<Reported>,
        fetched: &Result<String, Refusal>,
        handled: Option<&str>,
    ) {
        let reporting = Reported {
            generation: repo.metadata.generation,
            fetched: fetched.clone(),
            handled: handled.map(str::to_owned),
        };
        if reported.as_ref() == Some(&reporting) {
            return;
        }
        let (status, reason, message) = match fetched {
            Ok(commit) => ("True", "Fetched", format!("at {}", prefix(commit, 12))),
            Err((reason, message)) => ("False", *reason, shortened(message.clone(), 1024)),
        };
        // The transition time moves only when Ready flips.
        let since = repo
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .filter(|c| c.status == status)
            .map_or_else(now, |c| c.last_transition_time.clone());
        let mut patch = serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "ConfigRepository",
            "status": {
                "observedGeneration": repo.metadata.generation,
                "conditions": [{
                    "type": "Ready",
                    "status": status,
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": since,
                    "observedGeneration": repo.metadata.generation,
                }],
            },
        });
        if let Ok(commit) = fetched {
            patch["status"]["revision"] = commit.clone().into();
            patch["status"]["lastFetchTime"] = serde_json::to_value(now()).unwrap_or_default();
        }
        if let Some(handled) = handled {
            patch["status"]["lastHandledReconcileAt"] = handled.into();
        }
        let namespace = repo.namespace().unwrap_or_default();
        let api: Api<ConfigRepository> = Api::namespaced(self.client.clone(), &namespace);
        let written = api
            .patch_status(
                &repo.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await;
        match written {
            Ok(_) => *reported = Some(reporting),
            Err(e) => {
                tracing::warn!(repository = %repo.name_any(), error = %e, "cannot write the ConfigRepository's status")
            }
        }
    }

    async fn write_status(
        &self,
        env: &Environment,
        status: &EnvironmentStatus,
    ) -> Result<(), Error> {
        let namespace = env.namespace().unwrap_or_default();
        let name = env.name_any();
        let api: Api<Environment> = Api::namespaced(self.client.clone(), &namespace);
        // NB: `status.ledger` is the ledger's field manager's; applying a
        // copy here would make both own it, and an old copy could win.
        let status = EnvironmentStatus {
            ledger: None,
            ..status.clone()
        };
        let patch = serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "Environment",
            "status": status,
        });
        let written = api
            .patch_status(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(|source| Error::WriteStatus {
                source: Box::new(source),
                namespace,
                name,
            })?;
        if let Some(version) = written.resource_version() {
            let mut versions = self.written.lock().unwrap_or_else(|e| e.into_inner());
            versions.insert(key(env), version);
        }
        Ok(())
    }

    /// `env` as the API server has it now. The store a reconcile's object
    /// comes from can lag behind this controller's own last status write
    /// (a busy watch); a status built on that older one would drop what the
    /// write added (its history). Read again when the object is not the
    /// version that write returned; `None` when it is gone.
    async fn current(&self, env: Arc<Environment>) -> Result<Option<Arc<Environment>>, Error> {
        let key = key(&env);
        let written = self
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        if written.is_none() || written == env.resource_version() {
            return Ok(Some(env));
        }
        let namespace = env.namespace().unwrap_or_default();
        let api: Api<Environment> = Api::namespaced(self.client.clone(), &namespace);
        let fresh = api
            .get_opt(&env.name_any())
            .await
            .map_err(|source| Error::Get {
                kind: "Environment",
                namespace,
                name: env.name_any(),
                source: Box::new(source),
            })?;
        if fresh.is_none() {
            self.written
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        }
        Ok(fresh.map(Arc::new))
    }

    async fn publish_events(&self, env: &Environment, previous: &EnvironmentStatus, work: &Work) {
        let mut events = Vec::new();
        let event = |type_, reason: &str, note: String| Event {
            type_,
            reason: reason.to_owned(),
            note: Some(shortened(note, 1000)),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Some((reason, message)) = &work.blocked {
            let was = previous.conditions.iter().any(|c| {
                c.type_ == super::crd::condition::READY
                    && c.status == "False"
                    && c.message == *message
            });
            if !was {
                events.push(event(EventType::Warning, reason, message.clone()));
            }
        }
        if let Validation::Invalid { reason, message } = &work.validation {
            let was = previous.conditions.iter().any(|c| {
                c.type_ == super::crd::condition::VALIDATED
                    && c.status == "False"
                    && c.message == *message
            });
            if !was {
                events.push(event(EventType::Warning, reason, message.clone()));
            }
        }
        if let Some((revision, _, report, _)) = &work.pass {
            for g in &report.gateways {
                let version = format!("{}@{}", g.desired.short(), prefix(revision, 8));
                if let Some(error) = &g.error {
                    events.push(event(
                        EventType::Warning,
                        reason::APPLY_FAILED,
                        format!("{}: {error}", g.gateway),
                    ));
                } else if g.applied {
                    events.push(event(
                        EventType::Normal,
                        "Applied",
                        format!("{} runs {version}", g.gateway),
                    ));
                }
                if g.drift.is_some() {
                    let healed = g.state.settled();
                    events.push(event(
                        EventType::Warning,
                        reason::DRIFTED,
                        if healed {
                            format!(
                                "{} ran something else than Sluice verified; put back to {version}",
                                g.gateway
                            )
                        } else {
                            format!("{} runs something else than Sluice verified", g.gateway)
                        },
                    ));
                }
                if let Some(why) = &g.gated {
                    events.push(event(
                        EventType::Normal,
                        reason::GATED,
                        format!("{}: {why}", g.gateway),
                    ));
                }
            }
            if let Some(promotion) = &work.promotion
                && report
                    .gateways
                    .iter()
                    .any(|g| g.applied && g.error.is_none())
            {
                events.push(event(EventType::Normal, "Promoted", promotion.clone()));
            }
        }
        let reference = env.object_ref(&());
        for event in events {
            if let Err(e) = self.recorder.publish(&event, &reference).await {
                tracing::warn!(error = %e, reason = %event.reason, "cannot publish an Event");
            }
        }
    }

    /// Everything up to and including the pass.
    async fn work(&self, env: &Environment) -> Result<Work, Error> {
        let request = self.take_request(env);
        let namespace = env.namespace().unwrap_or_default();
        let repo_name = &env.spec.repository_ref.name;
        let repos: Api<ConfigRepository> = Api::namespaced(self.client.clone(), &namespace);
        let repo = repos
            .get_opt(repo_name)
            .await
            .map_err(|source| Error::Get {
                source: Box::new(source),
                kind: "ConfigRepository",
                namespace: namespace.clone(),
                name: repo_name.clone(),
            })?;
        let Some(repo) = repo else {
            self.sources.forget(&format!("{namespace}/{repo_name}"));
            return Ok(Work::blocked(
                "RepositoryNotFound",
                format!("ConfigRepository {namespace}/{repo_name} does not exist"),
            ));
        };
        let interval = repo
            .spec
            .interval
            .parse()
            .unwrap_or(Duration::from_secs(60))
            .max(Duration::from_secs(1));
        let blocked = |reason, message: String| {
            let mut work = Work::blocked(reason, message);
            work.requeue = interval;
            Ok(work)
        };
        let target = match &repo.spec.git_ref {
            GitRef {
                branch: Some(branch),
                ..
            } => Target::Branch(branch.clone()),
            GitRef { tag: Some(tag), .. } => Target::Tag(tag.clone()),
            GitRef {
                commit: Some(commit),
                ..
            } => Target::Commit(commit.clone()),
            // The API server's CEL rule asks for exactly one.
            _ => {
                return blocked(
                    "InvalidRef",
                    "set one of ref.branch, ref.tag, ref.commit".into(),
                );
            }
        };
        let credentials = match &repo.spec.secret_ref {
            None => Credentials::default(),
            Some(secret) => match self.credentials(&namespace, &secret.name).await? {
                Ok(credentials) => credentials,
                Err(message) => return blocked("SecretNotFound", message),
            },
        };
        // NB: the verification settings are part of the spec: a revision
        // loaded without them (or with other keys) never runs under them.
        let spec = format!("{}/{target:?}/{:?}", repo.spec.url, repo.spec.verification);
        let source = self
            .sources
            .get(format!("{namespace}/{}", repo.name_any()), spec);
        let mut source = source.lock().await;
        let follower = Arc::new(Follower::at(
            &repo.spec.url,
            target,
            &self.data_dir.join("cache").join(&namespace),
            credentials,
        ));
        if let Some(revisions) = &self.revisions {
            revisions.follow(format!("{namespace}/{}", repo.name_any()), follower.clone());
        }
        // NB: the Environments of one repository share a fetch: one made a
        // moment ago stands, rather than one round trip per Environment;
        // for a request, only one made since it was asked.
        let recent = source.fetched_at.is_some_and(|at| {
            at.elapsed() < FETCH_SHARED_FOR.min(interval)
                && request.is_none_or(|(_, asked)| at >= asked)
        });
        let fetch = {
            let follower = follower.clone();
            let known = source.head.clone();
            tokio::task::spawn_blocking(move || match known {
                Some(commit) if recent => Ok(commit),
                _ => follower.fetch(),
            })
        };
        let failed = |message: String| Err(("FetchFailed", message));
        let mut fetched = match tokio::time::timeout(FETCH_TIMEOUT, fetch).await {
            Ok(Ok(Ok(commit))) => Ok(commit),
            Ok(Ok(Err(e))) => failed(e.to_string()),
            Ok(Err(e)) => failed(e.to_string()),
            Err(_) => failed(format!("fetching took more than {FETCH_TIMEOUT:?}")),
        };
        match &fetched {
            Err(_) => {
                self.server.metrics.fetch_errors.inc();
            }
            Ok(commit) if !recent => {
                source.head = Some(commit.clone());
                source.fetched_at = Some(std::time::Instant::now());
            }
            Ok(_) => {}
        }
        // NB: a head that fails verification is never loaded; the last
        // verified revision keeps running (and its drift healed).
        let mut refused = None;
        if let (Ok(commit), Some(verification)) = (&fetched, &repo.spec.verification) {
            let checked = self
                .verify(
                    &namespace,
                    verification,
                    &follower,
                    commit,
                    &mut source.verified,
                )
                .await?;
            if let Err(refusal) = checked {
                fetched = Err(refusal.clone());
                refused = Some(refusal);
            }
        }
        // NB: a fetch made now answers the repository's request; one shared
        // from a moment ago leaves what the status says.
        let handled = if recent {
            source.reported.as_ref().and_then(|r| r.handled.clone())
        } else {
            requested_at(&repo).map(str::to_owned)
        };
        self.report_repository(&repo, &mut source.reported, &fetched, handled.as_deref())
            .await;
        let commit = match (fetched, &refused, &source.last_good) {
            (Ok(commit), _, _) => commit,
            (Err(_), Some(_), Some(last_good)) => last_good.revision.to_string(),
            (Err((reason, message)), _, _) => return blocked(reason, message),
        };
        if source.loaded.as_ref().is_none_or(|(c, _)| *c != commit) {
            let limits = self.limits;
            let allowances = self.reconciler.allowances().clone();
            let follower = follower.clone();
            let wanted = commit.clone();
            let reuse = source.reuse.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                let snapshot = follower.snapshot(&wanted)?;
                config::load_reusing(&snapshot, &limits, &allowances, &reuse)
            })
            .await;
            match loaded {
                Ok(Ok(loaded)) => {
                    let loaded = Arc::new(loaded);
                    if loaded.repository.is_some() {
                        source.last_good = Some(loaded.clone());
                    } else {
                        self.server.metrics.invalid_revisions.inc();
                    }
                    source.loaded = Some((commit.clone(), loaded));
                }
                Ok(Err(e)) => return blocked("LoadFailed", e.to_string()),
                Err(e) => return blocked("LoadFailed", e.to_string()),
            }
        }
        let Some((_, head)) = source.loaded.clone() else {
            return blocked("LoadFailed", "nothing loaded".into());
        };
        let last_good = source.last_good.clone();
        drop(source);

        let slug = slug_of(env).to_owned();
        let mut work = Work {
            suspended: env.spec.suspend,
            blocked: refused,
            validation: Validation::Valid,
            pass: None,
            promotion: None,
            requeue: interval,
        };
        // The revision to run: the head when valid, else the last good one.
        let (run, is_head) = if head.repository.is_some() {
            (Some(head.clone()), true)
        } else {
            work.validation = Validation::Invalid {
                reason: reason::VALIDATION_FAILED,
                message: findings_message(&head),
            };
            (last_good, false)
        };
        let Some(run) = run else {
            return Ok(work);
        };
        let repository = run.repository.as_ref().expect("a valid revision");
        let Some(environment) = repository.environments.get(&slug) else {
            work.validation = Validation::Invalid {
                reason: "EnvironmentNotFound",
                message: format!(
                    "{} is not an environment of the repository at {}",
                    env.spec.path,
                    prefix(&run.revision.to_string(), 8)
                ),
            };
            return Ok(work);
        };
        work.requeue = interval.min(environment.drift_interval(&repository.manifest));
        let registered = self
            .registered_gateways(&namespace, &env.name_any())
            .await?;
        let registered_names: Vec<String> =
            registered.iter().map(|g| g.name().to_owned()).collect();
        let merged = match merge_gateways(&run, &slug, registered) {
            Ok(merged) => merged,
            Err(message) => {
                work.validation = Validation::Invalid {
                    reason: reason::GATEWAY_NAME_CLASH,
                    message,
                };
                return Ok(work);
            }
        };
        if work.suspended {
            return Ok(work);
        }
        match self.ledger.adopt(env).await {
            Ok(()) => {}
            Err(taken @ AdoptError::Taken { .. }) => {
                work.blocked = Some(("DuplicateEnvironment", taken.to_string()));
                return Ok(work);
            }
            Err(e) => return Err(e.into()),
        }
        if self.ledger.take_unresolved(&slug) {
            // NB: a previous controller stopped mid-apply here: what the
            // gateway runs now says how those attempts ended.
            self.reconciler
                .resolve_unfinished(merged.repository.as_ref(), Some(&slug))
                .await?;
        }
        if let Some(upstream) = &environment.spec.promotion {
            self.observe_upstream(&namespace, &upstream.from).await?;
        }
        // NB: `spec.pin` is the pin in Kubernetes mode: recorded before the
        // pass, so the pass honours it; a target it never ran blocks applies.
        if let Err(e) = super::pin::follow_spec(
            self.ledger.as_ref(),
            &slug,
            env.spec.pin.as_ref(),
            now().0.as_millisecond(),
        ) {
            work.blocked = Some(("PinRefused", format!("spec.pin: {e}")));
            return Ok(work);
        }
        let trigger = {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            match (request, seen.insert(key(env))) {
                (Some((trigger, _)), _) => trigger,
                (None, true) => Trigger::Startup,
                (None, false) => Trigger::Poll,
            }
        };
        let started = now();
        // The head when valid; else the last good revision, kept running
        // without being recorded as the newest seen.
        let pass = if is_head {
            self.reconciler
                .pass(&merged, trigger, Some(&slug), &NoProgress)
                .await
        } else {
            self.reconciler
                .keep(&merged, trigger, Some(&slug), &NoProgress)
                .await
        };
        // NB: written whatever the pass's end: its applies that went out
        // must be in the status before anything else can fail.
        self.ledger.flush(&slug).await?;
        let pass = pass?;
        if let Pass::Reconciled {
            revision,
            environments,
        } = pass
            && let Some(report) = environments.into_iter().find(|e| e.environment == slug)
        {
            work.promotion = run
                .message
                .as_deref()
                .and_then(trailer::parse)
                .filter(|p| p.to == slug)
                .map(|p| format!("promoted from {} at {}", p.from, prefix(&revision, 8)));
            self.report_gateways(&namespace, &report, &registered_names)
                .await;
            work.pass = Some((revision, trigger, report, started));
        }
        Ok(work)
    }

    /// Checks `commit`'s signature against the trusted keys in the Secret
    /// of `verification`; a commit verified with the same Secret version
    /// is not checked again. `Ok(Err(refusal))` when it must not run.
    async fn verify(
        &self,
        namespace: &str,
        verification: &super::crd::Verification,
        follower: &Arc<Follower>,
        commit: &str,
        verified: &mut Option<(String, String)>,
    ) -> Result<Result<(), Refusal>, Error> {
        let name = &verification.secret_ref.name;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = secrets.get_opt(name).await.map_err(|source| Error::Get {
            source: Box::new(source),
            kind: "Secret",
            namespace: namespace.to_owned(),
            name: name.clone(),
        })?;
        let Some(secret) = secret else {
            return Ok(Err((
                "SecretNotFound",
                format!("Secret {namespace}/{name} (the trusted keys) does not exist"),
            )));
        };
        let version = secret.resource_version().unwrap_or_default();
        let done = (commit.to_owned(), version);
        if verified.as_ref() == Some(&done) {
            return Ok(Ok(()));
        }
        let sources: Vec<(String, Vec<u8>)> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key, value.0))
            .collect();
        let format = verification.provider.into();
        let path = follower.repository_path().to_owned();
        let wanted = commit.to_owned();
        let checked = tokio::task::spawn_blocking(move || {
            let keys = TrustedKeys::parse(format, &sources)?;
            verify_commit(&path, &wanted, &keys)
        })
        .await;
        match checked {
            Ok(Ok(signer)) => {
                tracing::info!(commit = %prefix(commit, 12), signer = %signer, "signature verified");
                *verified = Some(done);
                Ok(Ok(()))
            }
            Ok(Err(e)) => Ok(Err(("VerificationFailed", e.to_string()))),
            Err(e) => Ok(Err(("VerificationFailed", e.to_string()))),
        }
    }

    /// Reads the record of the `Environment` a promotion comes from, when
    /// another controller (shard) keeps it, for the gate.
    async fn observe_upstream(&self, namespace: &str, from: &str) -> Result<(), Error> {
        // NB: one this controller keeps is current in memory: no list.
        if self.ledger.keeps(from) {
            return Ok(());
        }
        let api: Api<Environment> = Api::namespaced(self.client.clone(), namespace);
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|source| Error::List {
                kind: "Environment",
                source: Box::new(source),
            })?;
        for upstream in list.items.iter().filter(|e| slug_of(e) == from) {
            self.ledger.observe(upstream);
        }
        Ok(())
    }

    /// Writes each `Gateway` object's status (state, observed digest,
    /// Ready) from the pass that just ran it.
    async fn report_gateways(
        &self,
        namespace: &str,
        report: &crate::reconcile::EnvironmentReport,
        registered: &[String],
    ) {
        let api: Api<Gateway> = Api::namespaced(self.client.clone(), namespace);
        for gateway in report
            .gateways
            .iter()
            .filter(|g| registered.contains(&g.gateway))
        {
            let in_sync = gateway.state.settled();
            // A condition's reason is CamelCase: `failed` → `Failed`.
            let state = gateway.state.as_str();
            let reason: String = state
                .split('-')
                .flat_map(|word| {
                    let mut chars = word.chars();
                    chars
                        .next()
                        .map(|c| c.to_ascii_uppercase())
                        .into_iter()
                        .chain(chars)
                })
                .collect();
            let patch = serde_json::json!({
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": "Gateway",
                "status": {
                    "state": gateway.state,
                    "observedDigest": gateway.observed.as_ref().map(|d| d.to_string()),
                    "conditions": [{
                        "type": "Ready",
                        "status": if in_sync { "True" } else { "False" },
                        "reason": reason,
                        "message": shortened(gateway.error.clone().or_else(|| gateway.gated.clone()).unwrap_or_default(), 1024),
                        "lastTransitionTime": now(),
                    }],
                },
            });
            let written = api
                .patch_status(
                    &gateway.gateway,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await;
            if let Err(e) = written {
                tracing::warn!(gateway = %gateway.gateway, error = %e, "cannot write the Gateway's status");
            }
        }
    }

    /// The repository credentials in Secret `name`: key `token` for HTTPS,
    /// `identity` or `ssh-privatekey` for SSH (written to a 0600 file under
    /// the data dir). `Ok(Err(message))` when the Secret or its keys are missing.
    async fn credentials(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Result<Credentials, String>, Error> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = secrets.get_opt(name).await.map_err(|source| Error::Get {
            source: Box::new(source),
            kind: "Secret",
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })?;
        let Some(secret) = secret else {
            return Ok(Err(format!("Secret {namespace}/{name} does not exist")));
        };
        let data = secret.data.unwrap_or_default();
        let value = |key: &str| {
            data.get(key)
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                .filter(|v| !v.is_empty())
        };
        let mut credentials = Credentials {
            token: value("token").map(Token),
            ..Default::default()
        };
        if let Some(key) = value("identity").or_else(|| value("ssh-privatekey")) {
            let path = self
                .data_dir
                .join("credentials")
                .join(format!("{namespace}.{name}.key"));
            write_private(&path, &key).map_err(|source| Error::WriteKey {
                name: format!("{namespace}/{name}"),
                path: path.clone(),
                source,
            })?;
            credentials.ssh_key = Some(path);
        }
        if credentials.token.is_none() && credentials.ssh_key.is_none() {
            return Ok(Err(format!(
                "Secret {namespace}/{name} has none of the keys token, identity, ssh-privatekey"
            )));
        }
        Ok(Ok(credentials))
    }

    /// The `Gateway` objects of Environment `environment`, as the drivers
    /// know them; tokens from their Secrets go into [`SecretValues`].
    async fn registered_gateways(
        &self,
        namespace: &str,
        environment: &str,
    ) -> Result<Vec<model::Gateway>, Error> {
        let api: Api<Gateway> = Api::namespaced(self.client.clone(), namespace);
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|source| Error::List {
                source: Box::new(source),
                kind: "Gateway",
            })?;
        let mut gateways = Vec::new();
        for object in list.items {
            if object.spec.environment != environment {
                continue;
            }
            let name = object.name_any();
            let mut gateway = match object.spec.to_gateway(&name) {
                Ok(gateway) => gateway,
                Err(e) => {
                    tracing::warn!(gateway = %name, error = %e, "skipping a Gateway");
                    continue;
                }
            };
            if let (model::Gateway::Http(http), Some(secret)) =
                (&mut gateway, &object.spec.secret_ref)
            {
                let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
                let found = secrets
                    .get_opt(&secret.name)
                    .await
                    .map_err(|source| Error::Get {
                        source: Box::new(source),
                        kind: "Secret",
                        namespace: namespace.to_owned(),
                        name: secret.name.clone(),
                    })?;
                if let Some(found) = found {
                    // NB: the resourceVersion is in the name, so a rotated
                    // token makes a new driver rather than reusing the old one.
                    let version = found.resource_version().unwrap_or_default();
                    let key = format!("{SECRET_PREFIX}{namespace}/{}@{version}", secret.name);
                    if let Some(token) = found.data.and_then(|d| d.get("token").cloned()) {
                        self.secrets
                            .insert(&key, String::from_utf8_lossy(&token.0).into_owned());
                    }
                    http.token_env = Some(model::EnvVarName(key));
                } else {
                    // The driver reports the missing token as the gateway's failure.
                    http.token_env = Some(model::EnvVarName(format!(
                        "{SECRET_PREFIX}{namespace}/{}",
                        secret.name
                    )));
                }
            }
            gateways.push(gateway);
        }
        Ok(gateways)
    }
}

/// `loaded` with the registered gateways added to environment `slug`; a
/// name that `gateways.yaml` already uses is refused.
pub fn merge_gateways(
    loaded: &Loaded,
    slug: &str,
    registered: Vec<model::Gateway>,
) -> Result<Loaded, String> {
    // NB: only this environment, not a deep copy of the whole repository
    // per reconcile (packs are shared `Arc`s; the manifest is small).
    let mut repository = loaded.repository.as_ref().map(|repo| Repository {
        revision: repo.revision.clone(),
        manifest: repo.manifest.clone(),
        base_packs: repo.base_packs.clone(),
        suites: repo.suites.clone(),
        fixtures: repo.fixtures.clone(),
        environments: repo
            .environments
            .get(slug)
            .map(|env| (slug.to_owned(), env.clone()))
            .into_iter()
            .collect(),
    });
    if let Some(env) = repository
        .as_mut()
        .and_then(|r| r.environments.get_mut(slug))
    {
        let clashes: Vec<&str> = registered
            .iter()
            .filter(|g| env.gateways.iter().any(|l| l.name() == g.name()))
            .map(|g| g.name())
            .collect();
        if !clashes.is_empty() {
            return Err(format!(
                "Gateway objects named like gateways in {}: {}",
                env.gateways_file,
                clashes.join(", ")
            ));
        }
        env.gateways.extend(registered);
    }
    Ok(Loaded {
        revision: loaded.revision.clone(),
        repository,
        findings: loaded.findings.clone(),
        sources: HashMap::new(),
        message: loaded.message.clone(),
    })
}

/// The first error findings, `file:line rule: message`.
fn findings_message(loaded: &Loaded) -> String {
    let errors: Vec<_> = loaded.findings.iter().filter(|f| f.is_error()).collect();
    let shown: Vec<String> = errors
        .iter()
        .take(3)
        .map(|f| match f.line {
            Some(line) => format!("{}:{line} {}: {}", f.file, f.rule, f.message),
            None => format!("{} {}: {}", f.file, f.rule, f.message),
        })
        .collect();
    let more = errors.len().saturating_sub(shown.len());
    let mut message = format!(
        "revision {} is invalid; the last good version keeps running: {}",
        prefix(&loaded.revision.to_string(), 8),
        shown.join("; ")
    );
    if more > 0 {
        message.push_str(&format!(" (and {more} more)"));
    }
    message
}

/// Writes `content` to a file only its owner can read.
fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(content.as_bytes())?;
    if !content.ends_with('\n') {
        file.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let cap = Duration::from_secs(60);
        assert_eq!(backoff(1, cap), Duration::from_secs(1));
        assert_eq!(backoff(2, cap), Duration::from_secs(2));
        assert_eq!(backoff(4, cap), Duration::from_secs(8));
        assert_eq!(backoff(30, cap), cap);
    }

    #[test]
    fn gateway_tokens_come_from_secrets_not_the_environment() {
        let values = SecretValues::default();
        values.insert(&format!("{SECRET_PREFIX}ns/gw@1"), "t0ken".into());
        assert_eq!(
            values.get(&format!("{SECRET_PREFIX}ns/gw@1")).as_deref(),
            Some("t0ken")
        );
        assert_eq!(values.get(&format!("{SECRET_PREFIX}ns/other@1")), None);
    }

    #[test]
    fn a_changed_repository_spec_replaces_its_source_and_a_deleted_one_goes() {
        let sources = Sources::default();
        let first = sources.get("ns/policy".into(), "url-a".into());
        assert!(Arc::ptr_eq(
            &first,
            &sources.get("ns/policy".into(), "url-a".into())
        ));
        for spec in ["url-b", "url-c", "url-a"] {
            let replaced = sources.get("ns/policy".into(), spec.into());
            assert!(!Arc::ptr_eq(&first, &replaced), "{spec}");
        }
        sources.get("ns/other".into(), "url-a".into());
        assert_eq!(sources.0.lock().unwrap().len(), 2);
        sources.forget("ns/other");
        assert_eq!(sources.0.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_rotated_token_replaces_the_old_one_in_memory() {
        let values = SecretValues::default();
        for (version, token) in (1..=5).map(|v| (v, format!("t0ken-{v}"))) {
            values.insert(&format!("{SECRET_PREFIX}ns/gw@{version}"), token);
        }
        assert_eq!(values.0.read().unwrap().len(), 1);
        assert_eq!(
            values.get(&format!("{SECRET_PREFIX}ns/gw@5")).as_deref(),
            Some("t0ken-5")
        );
    }

    #[test]
    fn a_hand_edited_gateway_configmap_wakes_the_environments_of_its_slug() {
        use crate::k8s::crd::{EnvironmentSpec, RepositoryRef};
        let (store, mut writer) = reflector::store::<Environment>();
        for (namespace, name, path) in [
            ("team-a", "production", "environments/production"),
            ("team-b", "prod", "environments/production"),
            ("team-a", "staging", "environments/staging"),
        ] {
            let mut env = Environment::new(
                name,
                EnvironmentSpec {
                    repository_ref: RepositoryRef {
                        name: "policy".into(),
                    },
                    path: path.into(),
                    suspend: false,
                    pin: None,
                },
            );
            env.metadata.namespace = Some(namespace.into());
            writer.apply_watcher_event(&watcher::Event::Apply(env));
        }
        let written = r#"{"enforcement":"enforce"}"#;
        let mut map = ConfigMap {
            metadata: kube::api::ObjectMeta {
                namespace: Some("ai-gateway".into()),
                name: Some("policy".into()),
                labels: Some(
                    [(
                        configmap::ENVIRONMENT_LABEL.to_owned(),
                        "production".to_owned(),
                    )]
                    .into(),
                ),
                annotations: Some(
                    [(
                        configmap::DIGEST_ANNOTATION.to_owned(),
                        config::Digest::of_json(written).unwrap().to_string(),
                    )]
                    .into(),
                ),
                ..Default::default()
            },
            data: Some([(configmap::DATA_KEY.to_owned(), written.to_owned())].into()),
            ..Default::default()
        };
        assert!(
            woken_by(&map, &store).is_empty(),
            "the controller's own write"
        );
        map.data = Some(
            [(
                configmap::DATA_KEY.to_owned(),
                r#"{"enforcement":"monitor"}"#.to_owned(),
            )]
            .into(),
        );
        let mut woken: Vec<String> = woken_by(&map, &store)
            .iter()
            .map(|r| format!("{}/{}", r.namespace.as_deref().unwrap_or_default(), r.name))
            .collect();
        woken.sort();
        assert_eq!(woken, ["team-a/production", "team-b/prod"]);
    }

    #[test]
    fn a_private_key_file_is_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials/k.key");
        write_private(&path, "KEY").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
