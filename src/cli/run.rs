//! `sluice run`: follow a branch and keep every environment's gateways on
//! it, on one machine, with the ledger in a SQLite file and an HTTP server
//! for health, metrics, status and the git webhook.

use super::{
    Cli, Outcome, StateArgs,
    access::AccessArgs,
    engine::{Engine, EngineArgs, parse_duration},
};
use crate::source::prefix;
use crate::{
    config::Loaded,
    ledger::Trigger,
    reconcile::{Clock, NoProgress, Pass, SystemClock},
    server::{self, Metrics, PassOutcome, ServerState, SyncRequest},
};
use anyhow::Context;
use std::{
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};
use tokio::sync::watch;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How often to check the branch and reconcile.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Address of the HTTP server (health, metrics, API, webhook).
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub access: AccessArgs,
    /// How long in-flight applies may finish after SIGTERM/SIGINT.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// The HTTP server's limits (`sluice run` and `sluice controller`).
#[derive(Debug, clap::Args)]
pub struct HttpArgs {
    /// Longest a client may take to send a request's headers; also how long
    /// an idle kept-alive connection stays open.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub http_header_timeout: Duration,
    /// Longest one HTTP request may take, its body included (then `408`).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub http_request_timeout: Duration,
    /// Most HTTP connections open at once; more wait to be accepted.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_connections: u32,
}

impl HttpArgs {
    pub fn limits(&self) -> server::HttpLimits {
        server::HttpLimits {
            header_timeout: self.http_header_timeout,
            request_timeout: self.http_request_timeout,
            max_connections: self.http_max_connections as usize,
        }
    }
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(serve(cli, args))
}

async fn serve(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let own = args.access.own_variables();
    // NB: before anything is fetched: an open API beyond loopback is refused.
    let tokens = args.access.tokens([args.listen])?;
    let engine = Engine::new(cli, &args.state, &args.engine, args.engine.allowances(own))?;
    let state = Arc::new(ServerState {
        ledger: engine.reconciler.ledger().clone(),
        ledger_health: engine.reconciler.ledger_health().clone(),
        ready: Default::default(),
        metrics: {
            let mut metrics = Metrics::default();
            metrics.register_alerts(engine.alerts.counters());
            metrics
        },
        tokens,
        webhook_secret: args.access.webhook_secret(),
        sync: Default::default(),
        passes: Some(Default::default()),
        dashboard: Default::default(),
    });
    state.dashboard.set_revisions(engine.revisions.clone());
    // A few missed polls before the dashboard calls its data stale.
    state
        .dashboard
        .set_stale_after(args.interval.saturating_mul(3).max(Duration::from_secs(60)));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let shutdown = server::shutdown_signal()?;
    let address = listener.local_addr()?;
    println!("listening on {address}");
    println!("dashboard: http://{address}/");
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopping = state.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: letting in-flight applies finish");
        stopping.dashboard.stop();
        let _ = stop_tx.send(true);
    });
    let server = {
        let mut stop = stop_rx.clone();
        let app = server::router(state.clone());
        let limits = args.http.limits();
        tokio::spawn(server::serve(listener, app, limits, async move {
            let _ = stop.wait_for(|s| *s).await;
        }))
    };
    reconcile_loop(&engine, &state, stop_rx, args).await;
    engine.alerts.flush(super::sync::ALERT_GRACE).await;
    let _ = server.await;
    Ok(Outcome::Clean)
}

/// Passes until told to stop: at start, every interval, and on each sync
/// request (webhook or `sluice sync --server`). An invalid head is recorded
/// and the last good revision keeps being reconciled.
async fn reconcile_loop(
    engine: &Engine,
    state: &ServerState,
    mut stop: watch::Receiver<bool>,
    args: &Args,
) {
    let mut current: Option<(String, Arc<Loaded>)> = None;
    let mut pruned: Option<Instant> = None;
    let mut last_good: Option<Arc<Loaded>> = None;
    let mut drift = DriftSchedule::default();
    let mut next_poll = Instant::now() + args.interval;
    let mut request = Some((
        SyncRequest {
            trigger: Trigger::Startup,
            environment: None,
            repositories: None,
            received: Instant::now(),
        },
        None,
    ));
    loop {
        let due = drift.next();
        // NB: `asked` is the highest number of the queued requests this
        // pass is for; passes nobody queued (start, poll, drift) have none.
        let (next, asked) = match request.take() {
            Some(request) => request,
            None => tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep_until(next_poll.into()) => (SyncRequest {
                    trigger: Trigger::Poll,
                    environment: None,
                    repositories: None,
                    received: Instant::now(),
                }, None),
                _ = sleep_until(due.as_ref().map(|(_, at)| *at)) => (SyncRequest {
                    trigger: Trigger::Drift,
                    environment: due.map(|(env, _)| env),
                    repositories: None,
                    received: Instant::now(),
                }, None),
                (request, number) = state.sync.next() => (request, Some(number)),
            },
        };
        let answer = |outcome: PassOutcome| {
            if let (Some(passes), Some(number)) = (&state.passes, asked) {
                passes.publish(next.environment.as_deref(), number, outcome);
            }
        };
        if next.trigger == Trigger::Drift {
            // NB: a scan reads the gateways against what was last applied;
            // it does not fetch.
            if let Some(good) = &last_good {
                tokio::select! {
                    _ = scan(engine, state, good, &next) => {}
                    _ = async {
                        let _ = stop.wait_for(|s| *s).await;
                        tokio::time::sleep(args.shutdown_grace).await;
                    } => {
                        tracing::warn!("shutdown grace expired during a drift scan");
                        let _ = engine.reconciler.resolve_unfinished(good.repository.as_ref(), None).await;
                        return;
                    }
                }
                drift.scanned(good, next.environment.as_deref());
            }
            continue;
        }
        if next.environment.is_none() {
            next_poll = Instant::now() + args.interval;
        }
        let fetched = Instant::now();
        let commit = match engine.fetch().await {
            Ok(commit) => commit,
            Err(e) => {
                state.metrics.fetch_errors.inc();
                tracing::warn!(error = %e, "cannot fetch the branch; keeping what runs");
                answer(PassOutcome::NotRun(format!(
                    "cannot fetch the branch: {e:#}"
                )));
                continue;
            }
        };
        state
            .metrics
            .fetch_seconds
            .observe(fetched.elapsed().as_secs_f64());
        if current.as_ref().is_none_or(|(c, _)| *c != commit) {
            // NB: the commit just fetched, not a second fetch.
            match engine.load(&commit).await {
                Ok(loaded) => {
                    tracing::debug!("loaded and validated the head");
                    current = Some((commit, loaded));
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot load the branch head");
                    answer(PassOutcome::NotRun(format!(
                        "cannot load the branch head: {e:#}"
                    )));
                    continue;
                }
            }
        }
        let Some((_, loaded)) = current.clone() else {
            continue;
        };
        // NB: attempts a stopped Sluice left unfinished are resolved by the
        // pass, each when its gateway is read: one environment's frozen
        // gateways hold up no other environment, nor readiness.
        if loaded.repository.is_some() {
            last_good = Some(loaded.clone());
            state.ready.store(true, Ordering::SeqCst);
            state.dashboard.follow(loaded.clone());
        }
        let started = Instant::now();
        let keep_last_good = last_good.clone().filter(|_| loaded.repository.is_none());
        let passes =
            std::iter::once((loaded.clone(), true)).chain(keep_last_good.map(|l| (l, false)));
        for (revision, is_head) in passes {
            let pass = async {
                let reconciler = &engine.reconciler;
                let only = next.environment.as_deref();
                if is_head {
                    reconciler
                        .pass(&revision, next.trigger, only, &NoProgress)
                        .await
                } else {
                    reconciler
                        .keep(&revision, next.trigger, only, &NoProgress)
                        .await
                }
            };
            let pass = tokio::select! {
                pass = pass => pass,
                _ = async {
                    let _ = stop.wait_for(|s| *s).await;
                    tokio::time::sleep(args.shutdown_grace).await;
                } => {
                    tracing::warn!("shutdown grace expired; unfinished applies are resolved at the next start");
                    let _ = engine.reconciler.resolve_unfinished(revision.repository.as_ref(), None).await;
                    return;
                }
            };
            match pass {
                Ok(pass) => {
                    report(state, &pass, started, &next);
                    if is_head {
                        answer(asked_for(&revision, next.environment.as_deref(), pass));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "reconcile pass failed");
                    if is_head {
                        answer(PassOutcome::NotRun(format!("the pass failed: {e:#}")));
                    }
                }
            }
        }
        if let Some(good) = &last_good {
            // A pass reads every gateway it covers: that is a scan too.
            drift.scanned(good, next.environment.as_deref());
        }
        // NB: hourly, not per pass: retention is counted in days, and a
        // prune must not sit between a webhook and its apply.
        if pruned.is_none_or(|at| at.elapsed() >= PRUNE_EVERY)
            && let Some(repo) = last_good.as_ref().and_then(|l| l.repository.as_ref())
        {
            prune(engine, repo);
            pruned = Some(Instant::now());
        }
        if *stop.borrow() {
            return;
        }
    }
}

const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// What a sync request for `only` gets from the pass over the head: the
/// pass, unless the head has no such environment (gone since the request
/// was checked), which the pass would show as nothing to do.
fn asked_for(head: &Loaded, only: Option<&str>, pass: Pass) -> PassOutcome {
    if let (Some(env), Some(repo)) = (only, &head.repository)
        && !repo.environments.contains_key(env)
    {
        return PassOutcome::NotRun(format!(
            "no environment `{env}` at revision {}; {}",
            head.revision.short(),
            crate::config::environment_hint(env, repo.environments.keys().map(String::as_str))
        ));
    }
    PassOutcome::Ran(pass)
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// When each environment's next drift scan is due (`drift.interval`).
#[derive(Default)]
struct DriftSchedule {
    due: std::collections::HashMap<String, Instant>,
}

impl DriftSchedule {
    /// The environment whose scan is due first.
    fn next(&self) -> Option<(String, Instant)> {
        self.due
            .iter()
            .min_by_key(|(_, at)| **at)
            .map(|(env, at)| (env.clone(), *at))
    }

    /// `only` (or every environment) was just read: its next scan is one
    /// interval away. Environments gone from the repository are forgotten.
    fn scanned(&mut self, loaded: &Loaded, only: Option<&str>) {
        let Some(repo) = &loaded.repository else {
            return;
        };
        self.due
            .retain(|env, _| repo.environments.contains_key(env));
        let now = Instant::now();
        for env in repo.environments.values() {
            if only.is_none_or(|o| o == env.slug) || !self.due.contains_key(&env.slug) {
                let interval = env.drift_interval(&repo.manifest);
                self.due.insert(env.slug.clone(), now + interval);
            }
        }
    }
}

/// One environment's drift scan: a pass over the last applied revision.
async fn scan(engine: &Engine, state: &ServerState, loaded: &Loaded, request: &SyncRequest) {
    let started = Instant::now();
    let only = request.environment.as_deref();
    match engine
        .reconciler
        .keep(loaded, Trigger::Drift, only, &NoProgress)
        .await
    {
        Ok(pass) => report(state, &pass, started, request),
        Err(e) => tracing::error!(error = %e, "drift scan failed"),
    }
}

/// Drops ledger records past each environment's retention (`retention` in
/// environment.yaml; default production 365 days, others 90).
fn prune(engine: &Engine, repo: &crate::config::Repository) {
    let retention = |environment: &str| match repo.environments.get(environment) {
        Some(env) => env.retention(),
        // NB: an environment no longer in the repository keeps the longer
        // retention: its records may be all that is left of it.
        None => crate::ledger::default_retention(true),
    };
    match engine
        .reconciler
        .ledger()
        .prune(SystemClock.now(), &retention)
    {
        Ok(0) => {}
        Ok(rows) => tracing::info!(rows, "pruned ledger records past retention"),
        Err(e) => tracing::warn!(error = %e, "cannot prune the ledger"),
    }
}

fn report(state: &ServerState, pass: &Pass, started: Instant, request: &SyncRequest) {
    let now = SystemClock.now();
    state.metrics.observe(
        pass,
        request.environment.as_deref(),
        started.elapsed().as_secs_f64(),
        now as f64 / 1000.0,
    );
    state.dashboard.passed(now);
    match pass {
        Pass::ValidationFailed { revision, errors } => {
            tracing::warn!(revision = %revision, errors, "ValidationFailed: the last good version keeps running");
        }
        Pass::Reconciled {
            revision,
            environments,
        } => {
            for env in environments {
                tracing::info!(
                    environment = %env.environment,
                    revision = %prefix(revision, 8),
                    trigger = request.trigger.as_str(),
                    in_sync = env.in_sync(),
                    gateways = env.gateways.len(),
                    since_request_ms = request.received.elapsed().as_millis() as u64,
                    "reconciled"
                );
            }
        }
    }
}
