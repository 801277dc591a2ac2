//! `sluice gateway`: the reference gateway.

use super::Outcome;
use std::{net::SocketAddr, path::PathBuf};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Directory where the running config is kept.
    #[arg(long)]
    pub data: PathBuf,
    /// Environment variable holding the bearer token clients must present.
    #[arg(long)]
    pub token_env: Option<String>,
}

pub fn run(_args: &Args) -> anyhow::Result<Outcome> {
    anyhow::bail!("not built yet")
}
