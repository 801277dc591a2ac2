//! `sluice schema`: the JSON Schemas, for editors and other tools.

use super::Outcome;
use crate::config::schema::{self, FileKind};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write one file per schema into this directory; without it, print them
    /// as one JSON object keyed by file name.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    match &args.out {
        Some(dir) => {
            for path in schema::write_all(dir)? {
                println!("wrote {path}");
            }
        }
        None => {
            let mut all = serde_json::Map::new();
            for kind in FileKind::ALL {
                all.insert(kind.schema_file().into(), schema::schema(kind).clone());
            }
            all.insert("pack-overlay.schema.json".into(), schema::overlay_schema());
            println!("{}", serde_json::to_string_pretty(&all)?);
        }
    }
    Ok(Outcome::Clean)
}
