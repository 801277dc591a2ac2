//! The apply log of the reference gateway: `<data-dir>/applies.jsonl`, one
//! JSON line each time the config it runs changes. It is the gateway's own
//! account of what it ran, for anyone checking a reconciler from outside
//! (the chaos soak compares it with Sluice's ledger): `state.json` holds
//! only the latest swap, and a log on standard error is gone with a killed
//! process.
//!
//! A line is written after the config is persisted and before the swap is
//! served or answered, so nobody has seen a config the log does not name.
//! A process stopped between the two writes runs the persisted config when
//! it comes back; opening the data directory then writes the missing line
//! (`via: restart`) before serving, so the last line always names what the
//! gateway runs. Ephemeral gateways keep no log.

use serde::{Deserialize, Serialize};
use std::{
    fs::{File, OpenOptions},
    io::{self, Read as _, Seek as _, SeekFrom, Write as _},
    path::Path,
};

pub const APPLIES_FILE: &str = "applies.jsonl";

/// How far from its end the log is read for its last line: far more than
/// a line takes, so reading stays cheap however long the log grows.
const TAIL_BYTES: u64 = 64 * 1024;

/// What made the gateway run a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    /// `PUT /sluice/v1/config`: a reconciler's apply.
    Protocol,
    /// `PUT /admin/v1/config`: a hand edit.
    HandEdit,
    /// The `--watch` file changed.
    Watch,
    /// Found persisted on start without a line: the process stopped after
    /// persisting a swap and before logging it.
    Restart,
}

/// One swap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub digest: String,
    /// The generation the gateway reports from then on.
    pub generation: u64,
    /// When, in milliseconds since the Unix epoch (the ledger's unit).
    pub at: i64,
    pub via: Via,
}

/// Appends one line, durably (the config it names is already on disk).
pub fn append(dir: &Path, applied: &Applied) -> io::Result<()> {
    let mut line = serde_json::to_vec(applied).map_err(io::Error::other)?;
    line.push(b'\n');
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(APPLIES_FILE))?;
    // NB: one write per line, so a line is never interleaved or split.
    file.write_all(&line)?;
    file.sync_data()
}

/// The newest line, if any. A torn last line (a crash mid-write) is
/// skipped for the one before it.
pub fn last(dir: &Path) -> io::Result<Option<Applied>> {
    let mut file = match File::open(dir.join(APPLIES_FILE)) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let length = file.metadata()?.len();
    file.seek(SeekFrom::Start(length.saturating_sub(TAIL_BYTES)))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    Ok(tail
        .split(|b| *b == b'\n')
        .rev()
        .find_map(|line| serde_json::from_slice(line).ok()))
}

/// Every line, oldest first (torn ones skipped).
pub fn read(dir: &Path) -> io::Result<Vec<Applied>> {
    match std::fs::read(dir.join(APPLIES_FILE)) {
        Ok(bytes) => Ok(bytes
            .split(|b| *b == b'\n')
            .filter_map(|line| serde_json::from_slice(line).ok())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(digest: &str, generation: u64) -> Applied {
        Applied {
            digest: digest.into(),
            generation,
            at: 1_795_428_245_000,
            via: Via::Protocol,
        }
    }

    #[test]
    fn lines_come_back_in_order_and_a_torn_one_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(last(dir.path()).unwrap(), None);
        assert_eq!(read(dir.path()).unwrap(), vec![]);
        append(dir.path(), &applied("sha256:a", 1)).unwrap();
        append(dir.path(), &applied("sha256:b", 2)).unwrap();
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(APPLIES_FILE))
            .unwrap();
        file.write_all(br#"{"digest":"sha256:c","gener"#).unwrap();
        assert_eq!(last(dir.path()).unwrap(), Some(applied("sha256:b", 2)));
        assert_eq!(
            read(dir.path()).unwrap(),
            vec![applied("sha256:a", 1), applied("sha256:b", 2)]
        );
    }

    #[test]
    fn the_last_line_is_found_past_the_tail_window_of_a_long_log() {
        let dir = tempfile::tempdir().unwrap();
        // Written in one go: 2,000 appends would be 2,000 fsyncs.
        let mut log = Vec::new();
        for generation in 0..2_000 {
            log.extend(serde_json::to_vec(&applied("sha256:a", generation)).unwrap());
            log.push(b'\n');
        }
        std::fs::write(dir.path().join(APPLIES_FILE), log).unwrap();
        assert!(
            std::fs::metadata(dir.path().join(APPLIES_FILE))
                .unwrap()
                .len()
                > TAIL_BYTES
        );
        assert_eq!(last(dir.path()).unwrap(), Some(applied("sha256:a", 1_999)));
    }

    #[test]
    fn a_line_is_json_with_its_via_in_kebab_case() {
        let line = serde_json::to_string(&Applied {
            via: Via::HandEdit,
            ..applied("sha256:a", 7)
        })
        .unwrap();
        assert_eq!(
            line,
            r#"{"digest":"sha256:a","generation":7,"at":1795428245000,"via":"hand-edit"}"#
        );
    }
}
