//! What `run` and `sync` share: the followed branch, the ledger and the
//! reconciler, wired from the command line.

use super::{Cli, StateArgs, allow::AllowArgs};
use crate::{
    config::{self, Allowances, Limits, Loaded},
    drift::notify::{Delivery, Notifier},
    gateway::{DriverContext, Secrets},
    ledger::{Ledger, SqliteLedger},
    reconcile::{Options, Reconciler, Revisions, SystemClock, retry::Backoff},
    source::{Credentials, Follower},
};
use anyhow::Context;
use std::{path::PathBuf, sync::Arc, time::Duration};

/// How commands that read gateways reach them: `run`, `sync`, `drift`, `diff`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReachArgs {
    /// Gateways worked on at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Per-request timeout for gateways that set none.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// A directory outside the data dir that `file` gateways with absolute
    /// paths may write (repeat for several).
    #[arg(long = "file-root", value_name = "DIR")]
    pub file_roots: Vec<PathBuf>,
    #[command(flatten)]
    pub allow: AllowArgs,
}

impl ReachArgs {
    /// How drivers reach the outside world under these flags: the data
    /// directory, `--file-root`s, the timeout, and secrets from the process
    /// environment behind `allowances`.
    pub fn driver_context(&self, data_dir: PathBuf, allowances: Arc<Allowances>) -> DriverContext {
        let mut context = DriverContext::new(data_dir);
        context.timeout = self.timeout;
        context.file_roots = self.file_roots.clone();
        context.secrets = Secrets::new(Arc::new(|name| std::env::var(name).ok()), allowances);
        context
    }
}

/// Flags of commands that reconcile.
#[derive(Debug, Clone, clap::Args)]
pub struct EngineArgs {
    /// Branch to follow.
    #[arg(long, default_value = "main")]
    pub branch: String,
    #[command(flatten)]
    pub reach: ReachArgs,
    /// Environment variable holding an HTTPS token for the repository.
    #[arg(long)]
    pub git_token_env: Option<String>,
    /// SSH private key for the repository.
    #[arg(long)]
    pub git_ssh_key: Option<PathBuf>,
    /// Start a new ledger when the ledger file is empty (0 bytes) instead of
    /// refusing it: its history is gone either way.
    #[arg(long)]
    pub fresh_ledger: bool,
    /// A command that restarts a gateway which reads its config only when
    /// it starts (a `litellm` gateway names it with `restartHook: NAME`);
    /// run with `sh -c`, told SLUICE_ENVIRONMENT, SLUICE_GATEWAY and
    /// SLUICE_CONFIG (repeat for several). The repository names a hook,
    /// only the operator says what it runs; `ENV/NAME=COMMAND` lets only
    /// environment ENV's gateways name it.
    #[arg(long = "restart-hook", value_name = "[ENV/]NAME=COMMAND", value_parser = crate::gateway::restart::parse_hook)]
    pub restart_hooks: Vec<(String, String)>,
    /// How many of one environment's gateways may be restarting at once.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub restarts_per_environment: u16,
    /// How long a failing alert delivery is retried (backoff from 1s,
    /// doubling up to 60s) before it is given up and counted failed.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub alert_retry_for: Duration,
}

impl EngineArgs {
    /// [`ReachArgs::driver_context`], with the restart hooks.
    pub fn driver_context(&self, data_dir: PathBuf, allowances: Arc<Allowances>) -> DriverContext {
        let mut context = self.reach.driver_context(data_dir, allowances);
        context.restarts = Arc::new(crate::gateway::restart::Restarts::new(
            self.restart_hooks.iter().cloned().collect(),
            usize::from(self.restarts_per_environment),
        ));
        context
    }

    /// The operator's allowances; `own` names the variables the command
    /// reads for itself (the git token's is added here), never allowed.
    pub fn allowances<'a>(&'a self, own: impl IntoIterator<Item = &'a str>) -> Allowances {
        let git = self.git_token_env.as_deref();
        self.reach.allow.allowances(own.into_iter().chain(git))
    }
}

/// Alert delivery retried for `retry_for` (`--alert-retry-for`).
pub fn alert_delivery(retry_for: Duration) -> Delivery {
    Delivery {
        give_up_after: retry_for,
        ..Delivery::default()
    }
}

/// Longest a fetch may take before the loop gives up on it for this pass.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    config::model::parse_duration(text)
        .ok_or_else(|| format!("`{text}` is not a duration (e.g. 500ms, 30s, 5m, 1h)"))
}

pub struct Engine {
    pub follower: Arc<Follower>,
    pub reconciler: Arc<Reconciler>,
    /// Drift and failure alerts on their way out; flush before exiting.
    pub alerts: Arc<Notifier>,
    pub limits: Limits,
    /// What the operator allows each environment; a revision that goes
    /// beyond it is invalid.
    pub allowances: Arc<Allowances>,
    /// Loads any revision of the followed repository (pins, the dashboard).
    pub revisions: Arc<dyn Revisions>,
    /// The files of the head last loaded, reused by the next head's load
    /// (pins load without it: an old revision must not evict the head's).
    reuse: Arc<config::Reuse>,
    /// Held while the engine lives: one reconciler per ledger, so a `sync`
    /// cannot resolve the in-flight attempts of a running `run` as interrupted.
    _lock: Option<std::fs::File>,
}

/// The ledger file as the file system names it: symlinks resolved, so two
/// paths to one ledger share one lock. A file not made yet is named by its
/// resolved directory.
fn canonical(state: &std::path::Path) -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::fs::canonicalize(state) {
        return Ok(path);
    }
    let parent = state
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let parent =
        std::fs::canonicalize(parent).with_context(|| format!("resolving {}", parent.display()))?;
    Ok(match state.file_name() {
        Some(name) => parent.join(name),
        None => parent,
    })
}

/// Takes the ledger's lock file, or says who has it.
fn lock(state: &std::path::Path) -> anyhow::Result<std::fs::File> {
    // NB: keyed on the file, not the path given: the same state.db through
    // a symlink must not get a lock of its own and a second reconciler.
    let path = canonical(state)?.with_extension("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another `sluice run` or `sluice sync` is using {} (lock {}); use `sluice sync --server URL` to ask it to reconcile",
            state.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// The reconciler over a ledger, with its alerts: what `run`, `sync` and
/// `controller` share.
pub struct Core {
    pub reconciler: Arc<Reconciler>,
    /// Drift and failure alerts on their way out; flush before exiting.
    pub alerts: Arc<Notifier>,
    /// The SQLite ledger's lock, held while the reconciler lives.
    pub lock: Option<std::fs::File>,
}

impl Core {
    /// Takes the SQLite ledger's lock and opens it; the drivers reach the
    /// world through `context`.
    pub fn open(
        state: &StateArgs,
        context: DriverContext,
        args: &EngineArgs,
        revisions: Option<Arc<dyn Revisions>>,
    ) -> anyhow::Result<Core> {
        // NB: `--cluster` is refused before this (`NOT_FOR`): the
        // commands that reconcile keep their own ledger.
        state.make_data_dir()?;
        let lock = lock(&state.state_path())?;
        let ledger = if args.fresh_ledger {
            SqliteLedger::open_afresh(&state.state_path())?
        } else {
            SqliteLedger::open(&state.state_path())?
        };
        let mut core = Core::over_with(
            Arc::new(ledger),
            context,
            args.reach.concurrency,
            alert_delivery(args.alert_retry_for),
            revisions,
        );
        core.lock = Some(lock);
        Ok(core)
    }

    /// The reconciler over `ledger` (the controller's is in status),
    /// loading pinned revisions with `revisions`, delivering alerts as
    /// `delivery` says.
    pub fn over_with(
        ledger: Arc<dyn Ledger>,
        context: DriverContext,
        concurrency: usize,
        delivery: Delivery,
        revisions: Option<Arc<dyn Revisions>>,
    ) -> Core {
        let alerts = Notifier::start(context.secrets.clone(), delivery);
        let mut reconciler = Reconciler::new(
            ledger,
            Arc::new(SystemClock),
            context,
            Options {
                concurrency,
                backoff: Backoff::default(),
            },
        )
        .with_alerts(alerts.clone());
        if let Some(revisions) = revisions {
            reconciler = reconciler.with_revisions(revisions);
        }
        Core {
            reconciler: Arc::new(reconciler),
            alerts,
            lock: None,
        }
    }
}

impl Engine {
    /// The engine the flags describe; `allowances` are the operator's
    /// (from [`EngineArgs::allowances`]).
    pub fn new(
        cli: &Cli,
        state: &StateArgs,
        args: &EngineArgs,
        allowances: Allowances,
    ) -> anyhow::Result<Engine> {
        let data_dir = state.data_dir.clone();
        state.make_data_dir()?;
        warn_if_closed(&allowances);
        let allowances = Arc::new(allowances);
        let context = args.driver_context(data_dir.clone(), allowances.clone());
        let repo = cli.repo.to_string_lossy().into_owned();
        let follower = Arc::new(Follower::new(
            &repo,
            &args.branch,
            &data_dir.join("cache"),
            Credentials {
                token_env: args.git_token_env.clone(),
                ssh_key: args.git_ssh_key.clone(),
                token: None,
            },
        ));
        let revisions = Arc::new(FollowedRevisions {
            follower: follower.clone(),
            limits: cli.limits(),
            allowances: allowances.clone(),
        });
        let revisions: Arc<dyn Revisions> = revisions;
        let core = Core::open(state, context, args, Some(revisions.clone()))?;
        Ok(Engine {
            follower,
            reconciler: core.reconciler,
            alerts: core.alerts,
            limits: cli.limits(),
            allowances,
            revisions,
            reuse: Arc::default(),
            _lock: core.lock,
        })
    }

    /// Loads and validates one fetched commit (off the async runtime's threads).
    pub async fn load(&self, commit: &str) -> anyhow::Result<Arc<Loaded>> {
        let follower = self.follower.clone();
        let limits = self.limits;
        let allowances = self.allowances.clone();
        let reuse = self.reuse.clone();
        let wanted = commit.to_owned();
        let load = tokio::task::spawn_blocking(move || {
            let snapshot = follower.snapshot(&wanted)?;
            Ok(Arc::new(config::load_reusing(
                &snapshot,
                &limits,
                &allowances,
                &reuse,
            )?))
        });
        // NB: the load stops itself at its deadline, as a finding that makes
        // the revision invalid (the last good one keeps running); this is
        // the backstop for a step it cannot interrupt, so the loop moves on.
        let backstop = limits.max_load_time.saturating_mul(2);
        match tokio::time::timeout(backstop, load).await {
            Ok(result) => result?,
            Err(_) => anyhow::bail!(
                "loading commit {} took more than {backstop:?}; keeping what runs",
                crate::source::prefix(commit, 8)
            ),
        }
    }

    /// Only the head commit (cheap when the remote has not moved). Bounded
    /// in time: a remote that hangs must not wedge the loop.
    pub async fn fetch(&self) -> anyhow::Result<String> {
        let follower = self.follower.clone();
        let fetch = tokio::task::spawn_blocking(move || follower.fetch());
        match tokio::time::timeout(FETCH_TIMEOUT, fetch).await {
            Ok(result) => Ok(result??),
            Err(_) => anyhow::bail!("fetching the branch took more than {FETCH_TIMEOUT:?}"),
        }
    }
}

/// Pinned revisions, read from the followed repository's cache (a pinned
/// revision is one the environment ran, so it was fetched) and validated
/// as the head is, under the operator's allowances.
struct FollowedRevisions {
    follower: Arc<Follower>,
    limits: Limits,
    allowances: Arc<Allowances>,
}

#[async_trait::async_trait]
impl Revisions for FollowedRevisions {
    async fn load(&self, commit: &str) -> Result<Arc<Loaded>, String> {
        let follower = self.follower.clone();
        let limits = self.limits;
        let allowances = self.allowances.clone();
        let wanted = commit.to_owned();
        tokio::task::spawn_blocking(move || {
            let snapshot = follower.snapshot(&wanted).map_err(|e| e.to_string())?;
            config::load_with(&snapshot, &limits, &allowances)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// Notes at start when the operator allowed nothing: every `tokenEnv`,
/// `urlEnv`, `secretEnv` and http gateway URL is then a finding.
pub fn warn_if_closed(allowances: &Allowances) {
    let (variables, urls) = allowances.describe();
    if variables.is_empty() {
        tracing::info!(
            "no --allow-env given: no environment may name a variable (tokenEnv, urlEnv, secretEnv)"
        );
    }
    if urls.is_empty() {
        tracing::info!(
            "no --allow-url given: no environment may reach an http gateway or alert sink"
        );
    }
}
