//! `sluice controller`: Kubernetes mode. Wires the API client, the shared
//! reconciler, the HTTP server and (with `--leader-elect`) the Lease around
//! [`crate::k8s::controller`].

use super::{
    Cli, Outcome, StateArgs,
    access::AccessArgs,
    allow::AllowArgs,
    engine::{Core, parse_duration},
};
use crate::{
    gateway::{DriverContext, Secrets},
    k8s::{
        controller::{self, Context, SecretValues},
        lease::LeaderElection,
        ledger::StatusLedger,
    },
    server::{self, Metrics, ServerState},
};
use anyhow::Context as _;
use std::{
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};
use tokio::sync::watch;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address of the HTTP server (/healthz, /readyz, /metrics, the API
    /// and the git webhook).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// A second address serving /metrics (and the rest), e.g. for a metrics Service.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Watch only this namespace (default: every namespace).
    #[arg(long)]
    pub watch_namespace: Option<String>,
    /// A namespace whose ConfigMaps (those Sluice wrote for `configmap`
    /// gateways) are watched, so a hand edit is healed at once rather than at
    /// the next requeue; repeatable. Default: the --watch-namespace, if set;
    /// else none (ConfigMap gateways are read at each requeue only).
    #[arg(long = "gateway-namespace", value_name = "NS")]
    pub gateway_namespaces: Vec<String>,
    /// Only Environments whose labels match this selector (e.g.
    /// `sluice.dev/shard=eu`): controller deployments split environments
    /// between them, each with its own Lease.
    #[arg(long)]
    pub shard: Option<String>,
    /// Reconcile only while holding the Lease (for more than one replica).
    #[arg(long)]
    pub leader_elect: bool,
    /// The Lease's name.
    #[arg(long, default_value = "sluice-controller")]
    pub lease_name: String,
    /// The Lease's namespace (default: $POD_NAMESPACE, else the watched namespace, else `default`).
    #[arg(long)]
    pub lease_namespace: Option<String>,
    /// Gateways worked on at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Per-request timeout for gateways that set none.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How long a failing alert delivery is retried (backoff from 1s,
    /// doubling up to 60s) before it is given up and counted failed.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub alert_retry_for: Duration,
    #[command(flatten)]
    pub http: super::run::HttpArgs,
    #[command(flatten)]
    pub access: AccessArgs,
    #[command(flatten)]
    pub state: StateArgs,
    /// What each environment's `gateways.yaml` and alerts may use. Tokens
    /// of `Gateway` objects come from their Secrets and need no
    /// --allow-env; their endpoints need an --allow-url like any gateway's.
    #[command(flatten)]
    pub allow: AllowArgs,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(serve(cli, args))
}

async fn serve(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    if args.state.cluster.is_some() {
        anyhow::bail!(
            "the controller keeps its ledger in the Environments' status; drop --cluster"
        );
    }
    // NB: before the API server is reached: an open API beyond loopback is
    // refused whatever else is wrong.
    let tokens = args
        .access
        .tokens(std::iter::once(args.listen).chain(args.metrics_listen))?;
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes API (set KUBECONFIG, or run in a cluster)")?;
    let namespace = args.watch_namespace.as_deref();
    controller::check_crds(&client, namespace).await?;

    let secrets = SecretValues::default();
    let mut context = DriverContext::new(args.state.data_dir.clone());
    context.timeout = args.timeout;
    let allowances = Arc::new(args.allow.allowances(args.access.own_variables()));
    super::engine::warn_if_closed(&allowances);
    let revisions = Arc::new(crate::k8s::pin::ClusterRevisions::new(
        cli.limits(),
        allowances.clone(),
    ));
    context.secrets = {
        let secrets = secrets.clone();
        Secrets::new(Arc::new(move |name| secrets.get(name)), allowances)
            .issuing(controller::SECRET_PREFIX)
    };
    // NB: configmap gateways use the controller's client, not a second one
    // made from the environment.
    let _ = context.kube.set(client.clone());
    // NB: the ledger lives in the Environments' status, not on the pod's disk.
    let ledger = Arc::new(StatusLedger::new(
        client.clone(),
        tokio::runtime::Handle::current(),
    ));
    let core = Core::over_with(
        ledger.clone(),
        context,
        args.concurrency,
        super::engine::alert_delivery(args.alert_retry_for),
        Some(revisions.clone()),
    );

    let state = Arc::new(ServerState {
        ledger: core.reconciler.ledger().clone(),
        ledger_health: core.reconciler.ledger_health().clone(),
        ready: Default::default(),
        metrics: {
            let mut metrics = Metrics::default();
            metrics.register_alerts(core.alerts.counters());
            metrics
        },
        tokens,
        webhook_secret: args.access.webhook_secret(),
        sync: Default::default(),
        // NB: its reconciles are per Environment, with their own status:
        // `sluice sync --server` says it cannot wait here.
        passes: None,
        dashboard: Default::default(),
    });
    state.dashboard.set_revisions(revisions.clone());
    let shutdown = server::shutdown_signal()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopping = state.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopping.dashboard.stop();
        let _ = stop_tx.send(true);
    });
    let stopped = |mut stop: watch::Receiver<bool>| async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let mut servers = Vec::new();
    for address in std::iter::once(args.listen).chain(args.metrics_listen) {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("listening on {address}"))?;
        println!("listening on {}", listener.local_addr()?);
        let app = server::router(state.clone());
        let stop = stopped(stop_rx.clone());
        servers.push(tokio::spawn(server::serve(
            listener,
            app,
            args.http.limits(),
            stop,
        )));
    }
    let instance = std::env::var("POD_NAME").ok();
    let mut reconciling = Context::new(
        client.clone(),
        core.reconciler.clone(),
        ledger.clone(),
        state.clone(),
        secrets,
        args.state.data_dir.clone(),
        cli.limits(),
        instance.clone(),
    );
    reconciling.revisions = Some(revisions);
    let reconciling = Arc::new(reconciling);
    state.ready.store(true, Ordering::SeqCst);
    let stop = stopped(stop_rx.clone());
    let shard = args.shard.clone();
    let (gateway_namespaces, forbidden) =
        controller::watchable_gateway_namespaces(&client, gateway_namespaces(args)).await;
    for namespace in forbidden {
        let why = "may not list ConfigMaps there: hand edits of its configmap gateways are seen at each requeue, not at once";
        // NB: the default (the watched namespace) is often one without
        // gateways, and so without ConfigMap access: no warning for that.
        if args.gateway_namespaces.is_empty() {
            tracing::info!(namespace = %namespace, "not watching gateway ConfigMaps: {why}");
        } else {
            tracing::warn!(namespace = %namespace, "not watching gateway ConfigMaps: {why}");
        }
    }
    let work = async move {
        // NB: the records are read back before anything runs, so gates see
        // upstream deployments; what a previous leader left unfinished is
        // resolved by each Environment's first pass, which reads its gateways.
        if let Err(e) = controller::adopt_all(&reconciling, namespace, shard.as_deref()).await {
            tracing::error!(error = %e, "cannot read the ledger back from the Environments");
        }
        controller::run(
            reconciling,
            namespace,
            args.shard.as_deref(),
            &gateway_namespaces,
            stop,
        )
        .await;
    };
    if args.leader_elect {
        // Leader election: the one call site (src/k8s/lease.rs).
        let lease_namespace = args
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .or_else(|| args.watch_namespace.clone())
            .unwrap_or_else(|| "default".into());
        // NB: every replica is pid 1 in its container: the pod's hostname
        // and a random part keep identities apart.
        let identity = instance.unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "sluice".into());
            format!(
                "{host}-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            )
        });
        LeaderElection::new(client, &lease_namespace, &args.lease_name, &identity)
            .run(work, stopped(stop_rx.clone()))
            .await?;
    } else {
        work.await;
    }
    core.alerts.flush(super::sync::ALERT_GRACE).await;
    for server in servers {
        let _ = server.await;
    }
    Ok(Outcome::Clean)
}

/// The namespaces whose gateway ConfigMaps are watched: those named, else
/// the watched namespace, else none.
fn gateway_namespaces(args: &Args) -> Vec<String> {
    if args.gateway_namespaces.is_empty() {
        args.watch_namespace.iter().cloned().collect()
    } else {
        args.gateway_namespaces.clone()
    }
}
