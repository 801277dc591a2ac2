//! `sluice gateway`: the reference gateway.

use super::Outcome;
use crate::gateway::reference::{self, ReferenceOptions, chat::Upstream};
use anyhow::{Context, bail};
use std::{net::SocketAddr, path::PathBuf, time::Duration};

pub const LONG_ABOUT: &str = "\
Run the reference gateway: speaks the Sluice gateway protocol, keeps its config \
on disk, and enforces the packs it runs on an OpenAI-compatible chat endpoint.

Endpoints (all behind the bearer token when --token-env is given):

  Sluice protocol   GET/PUT /sluice/v1/config, GET /sluice/v1/status,
                    POST /sluice/v1/config:validate
  Chat              POST /v1/chat/completions
                      403 blocked | refused-model, 429 rate-limited (Retry-After),
                      400 not a chat request, 413 too large, 503 no config yet;
                      otherwise the upstream's answer. Every evaluated answer has
                      Sluice-Outcome, Sluice-Policies, Sluice-Digest headers and
                      a \"sluice\" object {outcome, mode, digest, actions, forwarded}.
  Admin             PUT /admin/v1/config (hand edit), POST|DELETE /admin/v1/faults,
                    GET /admin/v1/audit ({\"records\": [...]}),
                    POST /admin/v1/reset (clears audit log and rate-limit counters)

With audit-logger in a chain, each chat request appends a record to \
<data>/audit.jsonl (memory with --ephemeral): sizes of the prompt, never its text. \
Each swap of the running config appends a line to <data>/applies.jsonl before it \
is answered ({digest, generation, at, via}): what the gateway ran, by its own account.";

pub const AFTER_HELP: &str = "\
Examples:
  sluice gateway --ephemeral --listen 127.0.0.1:8443
  sluice gateway --data ./gw --token-env GW_TOKEN --upstream http://127.0.0.1:4000/v1
  sluice gateway --ephemeral --listen 127.0.0.1:18490 --watch .sluice/gateways/eval/eval-1.json
  sluice gateway --data ./fleet --gateways 50 --listen 127.0.0.1:19000   # 19000-19049, ./fleet/0 ... ./fleet/49

  curl -s localhost:8443/v1/chat/completions -H 'content-type: application/json' \\
    -d '{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"SSN 123-45-6789\"}]}'
  curl -s localhost:8443/admin/v1/audit
  curl -s -X POST localhost:8443/admin/v1/reset";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on; port 0 picks a free port (printed on the
    /// `listening on ADDR` line).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Directory where the running config and the audit log (`audit.jsonl`) are kept.
    #[arg(
        long,
        required_unless_present = "ephemeral",
        conflicts_with = "ephemeral"
    )]
    pub data: Option<PathBuf>,
    /// Environment variable holding the bearer token clients must present.
    /// Without it, the gateway is open to anyone who can reach it.
    #[arg(long)]
    pub token_env: Option<String>,
    /// Keep nothing on disk: after a restart the gateway runs nothing, as a
    /// gateway that lost its state would.
    #[arg(long)]
    pub ephemeral: bool,
    /// Where allowed chat requests go: `echo` answers in-process with the
    /// text that would have been forwarded; otherwise an OpenAI-compatible
    /// base URL, with or without its `/v1` (both post to
    /// `BASE/v1/chat/completions`). The client's bearer token is not passed on.
    #[arg(long, default_value = "echo", value_parser = Upstream::parse)]
    pub upstream: Upstream,
    /// Also run the config in this file, reloading it when it changes: the
    /// gateway behind a `file` driver (name its address in the gateway's
    /// `chat:` in gateways.yaml, so suites reach it).
    #[arg(long, value_name = "FILE")]
    pub watch: Option<PathBuf>,
    /// Host this many gateways in this one process: gateway I (from 0)
    /// listens on the --listen port + I (each on a free port with port 0)
    /// and keeps its state in <data>/I. Each has its own config, faults
    /// and audit log; all share the token and the upstream. A fleet for
    /// soaks and benches without a process per gateway.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub gateways: u16,
    /// Make every reload take this long, in milliseconds (to see `429`).
    #[arg(long, default_value_t = 0, hide = true)]
    pub reload_delay_ms: u64,
}

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let token = match &args.token_env {
        None => None,
        Some(variable) => match std::env::var(variable) {
            Ok(token) if !token.is_empty() => Some(token),
            // NB: running open because a secret is missing would be worse
            // than not running.
            _ => bail!("environment variable {variable} (the gateway's bearer token) is not set"),
        },
    };
    if args.gateways > 1 && args.watch.is_some() {
        bail!("--watch runs one gateway: it cannot be combined with --gateways");
    }
    let options = ReferenceOptions {
        data: if args.ephemeral {
            None
        } else {
            args.data.clone()
        },
        token,
        reload_delay: Duration::from_millis(args.reload_delay_ms),
        upstream: args.upstream.clone(),
        watch: args.watch.clone(),
    };
    let fleet = fleet(args, &options)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let mut gateways = Vec::with_capacity(fleet.len());
        for (listen, options) in fleet {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            gateways.push((listener, options));
        }
        reference::serve_all(gateways)
            .await
            .context("reference gateway")
    })?;
    Ok(Outcome::Clean)
}

/// Where each gateway of the process listens and keeps its state: one as
/// given, or `--gateways N` on consecutive ports with a data directory each.
fn fleet(
    args: &Args,
    options: &ReferenceOptions,
) -> anyhow::Result<Vec<(SocketAddr, ReferenceOptions)>> {
    if args.gateways == 1 {
        return Ok(vec![(args.listen, options.clone())]);
    }
    (0..args.gateways)
        .map(|i| {
            let mut listen = args.listen;
            if listen.port() != 0 {
                let port = listen.port().checked_add(i).with_context(|| {
                    format!(
                        "--gateways {} from port {} runs past port 65535",
                        args.gateways,
                        args.listen.port()
                    )
                })?;
                listen.set_port(port);
            }
            let options = ReferenceOptions {
                data: options.data.as_ref().map(|d| d.join(i.to_string())),
                ..options.clone()
            };
            Ok((listen, options))
        })
        .collect()
}
