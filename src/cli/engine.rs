//! What `run` and `sync` share: the followed branch, the ledger and the
//! reconciler, wired from the command line.

use super::{Cli, StateArgs};
use crate::{
    config::{self, Limits, Loaded},
    drift::notify::Notifier,
    gateway::DriverContext,
    ledger::{Ledger, SqliteLedger},
    reconcile::{Options, Reconciler, SystemClock, retry::Backoff},
    source::{Credentials, Follower},
};
use anyhow::Context;
use std::{path::PathBuf, sync::Arc, time::Duration};

/// Flags of commands that reconcile.
#[derive(Debug, Clone, clap::Args)]
pub struct EngineArgs {
    /// Branch to follow.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// Gateways worked on at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Per-request timeout for gateways that set none.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Environment variable holding an HTTPS token for the repository.
    #[arg(long)]
    pub git_token_env: Option<String>,
    /// SSH private key for the repository.
    #[arg(long)]
    pub git_ssh_key: Option<PathBuf>,
    /// A directory outside the data dir that `file` gateways with absolute
    /// paths may write (repeat for several).
    #[arg(long = "file-root", value_name = "DIR")]
    pub file_roots: Vec<PathBuf>,
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
    /// Held while the engine lives: one reconciler per ledger, so a `sync`
    /// cannot resolve the in-flight attempts of a running `run` as interrupted.
    _lock: Option<std::fs::File>,
}

/// Takes the ledger's lock file, or says who has it.
fn lock(state: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = state.with_extension("lock");
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
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
        concurrency: usize,
    ) -> anyhow::Result<Core> {
        if let Some(namespace) = &state.cluster {
            anyhow::bail!(
                "--cluster {namespace} reads what `sluice controller` keeps; this command keeps its own ledger in {}",
                state.state_path().display()
            );
        }
        std::fs::create_dir_all(&state.data_dir)
            .with_context(|| format!("creating the data directory {}", state.data_dir.display()))?;
        let lock = lock(&state.state_path())?;
        let ledger = SqliteLedger::open(&state.state_path())?;
        let mut core = Core::over(Arc::new(ledger), context, concurrency);
        core.lock = Some(lock);
        Ok(core)
    }

    /// The reconciler over `ledger` (the controller's is in status).
    pub fn over(ledger: Arc<dyn Ledger>, context: DriverContext, concurrency: usize) -> Core {
        let alerts = Notifier::start(context.secret.clone(), Default::default());
        let reconciler = Reconciler::new(
            ledger,
            Arc::new(SystemClock),
            context,
            Options {
                concurrency,
                backoff: Backoff::default(),
            },
        )
        .with_alerts(alerts.clone());
        Core {
            reconciler: Arc::new(reconciler),
            alerts,
            lock: None,
        }
    }
}

impl Engine {
    pub fn new(cli: &Cli, state: &StateArgs, args: &EngineArgs) -> anyhow::Result<Engine> {
        let data_dir = state.data_dir.clone();
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
        let mut context = DriverContext::new(data_dir.clone());
        context.timeout = args.timeout;
        context.file_roots = args.file_roots.clone();
        let core = Core::open(state, context, args.concurrency)?;
        let repo = cli.repo.to_string_lossy().into_owned();
        let follower = Follower::new(
            &repo,
            &args.branch,
            &data_dir.join("cache"),
            Credentials {
                token_env: args.git_token_env.clone(),
                ssh_key: args.git_ssh_key.clone(),
                token: None,
            },
        );
        Ok(Engine {
            follower: Arc::new(follower),
            reconciler: core.reconciler,
            alerts: core.alerts,
            limits: cli.limits(),
            _lock: core.lock,
        })
    }

    /// Loads and validates one fetched commit (off the async runtime's threads).
    pub async fn load(&self, commit: &str) -> anyhow::Result<Arc<Loaded>> {
        let follower = self.follower.clone();
        let limits = self.limits;
        let commit = commit.to_owned();
        tokio::task::spawn_blocking(move || {
            let snapshot = follower.snapshot(&commit)?;
            Ok(Arc::new(config::load(&snapshot, &limits)?))
        })
        .await?
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
