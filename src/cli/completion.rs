//! `sluice completion SHELL`: the shell's completion script, made from the
//! same clap definition as the parser and the help, so the three cannot
//! disagree.

use super::Outcome;
use clap_complete::Shell;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let mut command = super::command();
    // NB: made in memory and printed, so a closed pipe ends the process
    // as any command's does; clap_complete panics on a failed write.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "sluice", &mut script);
    print!("{}", String::from_utf8_lossy(&script));
    Ok(Outcome::Clean)
}
