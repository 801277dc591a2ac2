//! `sluice gateway`: the reference gateway.

use super::Outcome;
use crate::gateway::reference::{self, ReferenceOptions};
use anyhow::{Context, bail};
use std::{net::SocketAddr, path::PathBuf, time::Duration};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on; port 0 picks a free port (printed on the
    /// `listening on ADDR` line).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Directory where the running config is kept.
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
    let options = ReferenceOptions {
        data: if args.ephemeral {
            None
        } else {
            args.data.clone()
        },
        token,
        reload_delay: Duration::from_millis(args.reload_delay_ms),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        reference::serve(listener, options)
            .await
            .context("reference gateway")
    })?;
    Ok(Outcome::Clean)
}
