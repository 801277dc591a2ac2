//! The audit log of the reference gateway: one JSON line per chat request
//! in `<data-dir>/audit.jsonl`, or in memory in ephemeral mode. Records are
//! built by [`crate::enforce::audit`]; this only keeps them.
//!
//! Bounded: in memory the newest [`MAX_RECORDS`] are kept; on disk the file
//! grows (retention is the operator's business) and a read returns its last
//! [`MAX_RECORDS`] lines, holding no more than that in memory.

use serde_json::Value;
use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    io::{self, BufRead, BufReader, Write as _},
    path::PathBuf,
    sync::{Mutex, MutexGuard},
};

pub const AUDIT_FILE: &str = "audit.jsonl";
/// Records a read returns (the newest), and records kept in memory.
pub const MAX_RECORDS: usize = 10_000;

pub struct AuditLog {
    store: Mutex<Store>,
}

enum Store {
    Memory(VecDeque<String>),
    /// The file, and its handle once opened (append mode).
    File(PathBuf, Option<File>),
}

impl AuditLog {
    /// In `dir`/audit.jsonl, or in memory when `None`.
    pub fn new(dir: Option<PathBuf>) -> AuditLog {
        let store = match dir {
            Some(dir) => Store::File(dir.join(AUDIT_FILE), None),
            None => Store::Memory(VecDeque::new()),
        };
        AuditLog {
            store: Mutex::new(store),
        }
    }

    /// Kept in memory (ephemeral mode): appends do no I/O.
    pub fn in_memory(&self) -> bool {
        matches!(&*self.lock(), Store::Memory(_))
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one record (a JSON line without its newline). Blocking: call
    /// it off the async threads.
    pub fn append(&self, line: String) -> io::Result<()> {
        match &mut *self.lock() {
            Store::Memory(records) => {
                if records.len() == MAX_RECORDS {
                    records.pop_front();
                }
                records.push_back(line);
                Ok(())
            }
            Store::File(path, file) => {
                if file.is_none() {
                    *file = Some(OpenOptions::new().create(true).append(true).open(&*path)?);
                }
                let Some(file) = file.as_mut() else {
                    return Ok(());
                };
                // NB: one write per record, so a line is never interleaved.
                let mut bytes = line.into_bytes();
                bytes.push(b'\n');
                file.write_all(&bytes)
            }
        }
    }

    /// The newest [`MAX_RECORDS`] records, oldest first. A line that is not
    /// JSON (a torn write after a crash) is skipped.
    pub fn records(&self) -> io::Result<Vec<Value>> {
        let lines: Vec<String> = match &*self.lock() {
            Store::Memory(records) => records.iter().cloned().collect(),
            Store::File(path, _) => {
                let file = match File::open(path) {
                    Ok(file) => file,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(e),
                };
                let mut newest = VecDeque::with_capacity(MAX_RECORDS);
                for line in BufReader::new(file).lines() {
                    if newest.len() == MAX_RECORDS {
                        newest.pop_front();
                    }
                    newest.push_back(line?);
                }
                newest.into()
            }
        };
        Ok(lines
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect())
    }

    /// Forgets every record.
    pub fn clear(&self) -> io::Result<()> {
        match &mut *self.lock() {
            Store::Memory(records) => {
                records.clear();
                Ok(())
            }
            Store::File(path, file) => {
                *file = None;
                match File::create(&*path) {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_in_the_file_and_reset_empties_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(Some(dir.path().to_owned()));
        assert_eq!(log.records().unwrap(), Vec::<Value>::new());
        log.append(r#"{"n":1}"#.into()).unwrap();
        log.append(r#"{"n":2}"#.into()).unwrap();
        let again = AuditLog::new(Some(dir.path().to_owned()));
        assert_eq!(
            again.records().unwrap(),
            [serde_json::json!({"n": 1}), serde_json::json!({"n": 2})]
        );
        log.clear().unwrap();
        assert!(log.records().unwrap().is_empty());
        log.append(r#"{"n":3}"#.into()).unwrap();
        assert_eq!(log.records().unwrap(), [serde_json::json!({"n": 3})]);
    }

    #[test]
    fn memory_keeps_the_newest() {
        let log = AuditLog::new(None);
        for n in 0..MAX_RECORDS + 5 {
            log.append(format!(r#"{{"n":{n}}}"#)).unwrap();
        }
        let records = log.records().unwrap();
        assert_eq!(records.len(), MAX_RECORDS);
        assert_eq!(records[0]["n"], 5);
    }
}
