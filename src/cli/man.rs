//! `sluice man --out DIR`: the man pages, made from the same clap
//! definition as the parser, the help and the completions (as ripgrep
//! makes its own): `sluice.1`, and `sluice-COMMAND.1` for each command.

use super::Outcome;
use anyhow::Context;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory to write the pages into (made if missing), e.g.
    /// /usr/local/share/man/man1.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let out = &args.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut command = super::command().disable_help_subcommand(true);
    // NB: building names each command `sluice-COMMAND`, the pages' names.
    command.build();
    let written = write(command, out)?;
    println!("wrote {written} man pages to {}", out.display());
    Ok(Outcome::Clean)
}

/// Writes the page of `command` and of each command under it that is not
/// hidden; returns how many.
fn write(command: clap::Command, out: &Path) -> anyhow::Result<usize> {
    let mut written = 0;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        written += write(sub.clone(), out)?;
    }
    let page = clap_mangen::Man::new(command)
        .source(format!("sluice {}", crate::version::VERSION))
        .manual("Sluice Manual")
        .date(crate::version::DATE.get(..10).unwrap_or_default());
    let path = out.join(page.get_filename());
    let mut roff = Vec::new();
    page.render(&mut roff)?;
    std::fs::write(&path, roff).with_context(|| format!("writing {}", path.display()))?;
    Ok(written + 1)
}
