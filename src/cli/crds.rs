//! `sluice crds`: the CustomResourceDefinitions of Kubernetes mode.

use super::Outcome;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write one file per CRD (`<plural>.sluice.dev.yaml`) into this
    /// directory; without it, print them as one multi-document YAML stream.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    match &args.out {
        Some(dir) => {
            for path in crate::k8s::write_all(dir)? {
                println!("wrote {}", path.display());
            }
        }
        None => print!("{}", crate::k8s::all_to_yaml()?),
    }
    Ok(Outcome::Clean)
}
