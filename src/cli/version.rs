//! `sluice version` (and `--version`): the version, the git commit it was
//! built from and when (see build.rs), as `kubectl version` and `flux
//! version` say it.

use super::{Outcome, output::TextOrData as Format};
use serde::Serialize;

/// What `--version` prints after the name.
pub const LINE: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SLUICE_GIT_COMMIT_SHORT"),
    ", built ",
    env!("SLUICE_BUILD_DATE"),
    ")"
);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Build {
    version: &'static str,
    /// The full commit id, or `unknown` for a build outside git.
    commit: &'static str,
    /// RFC 3339.
    build_date: &'static str,
}

const BUILD: Build = Build {
    version: env!("CARGO_PKG_VERSION"),
    commit: env!("SLUICE_GIT_COMMIT"),
    build_date: env!("SLUICE_BUILD_DATE"),
};

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    match args.output {
        Format::Json => super::output::print_json(&BUILD)?,
        Format::Yaml => super::output::print_yaml(&BUILD)?,
        Format::Text => println!(
            "sluice {}\n  commit: {}\n  built:  {}",
            BUILD.version, BUILD.commit, BUILD.build_date
        ),
    }
    Ok(Outcome::Clean)
}
