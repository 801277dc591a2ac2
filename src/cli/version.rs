//! `sluice version` (and `--version`): the version, the git commit it was
//! built from and when (see build.rs), as `kubectl version` and `flux
//! version` say it; with `--server`, the running server's too.
//!
//! Exit codes: 0 printed, 2 the server could not be asked.

use super::{Outcome, output::TextOrData as Format};
use crate::version::{BUILD, Build};
use serde::Serialize;

pub use crate::version::LINE;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// Also ask this running `sluice run` or `sluice controller` (e.g.
    /// http://127.0.0.1:7878) for its version.
    #[arg(long)]
    pub server: Option<String>,
    /// Environment variable holding the API token for --server.
    #[arg(long, default_value = "SLUICE_API_TOKEN", requires = "server")]
    pub token_env: String,
}

/// This build and a server's, as `kubectl version -o json` names them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Versions<'a> {
    client_version: &'a Build,
    server_version: &'a Build,
}

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let Some(server) = &args.server else {
        match args.output {
            Format::Json => super::output::print_json(&BUILD)?,
            Format::Yaml => super::output::print_yaml(&BUILD)?,
            Format::Text => print!("{}", text("sluice", &BUILD)),
        }
        return Ok(Outcome::Clean);
    };
    let served = super::client::version(server, &args.token_env)?;
    let versions = Versions {
        client_version: &BUILD,
        server_version: &served,
    };
    match args.output {
        Format::Json => super::output::print_json(&versions)?,
        Format::Yaml => super::output::print_yaml(&versions)?,
        Format::Text => print!(
            "{}{}",
            text("sluice", &BUILD),
            text(&format!("server {server}: sluice"), &served)
        ),
    }
    Ok(Outcome::Clean)
}

fn text(name: &str, build: &Build) -> String {
    format!(
        "{name} {}\n  commit: {}\n  built:  {}\n",
        build.version, build.commit, build.build_date
    )
}
