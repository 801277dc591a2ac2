//! What a long-running process (`sluice run`, the controller) keeps of the
//! revisions it loaded: each file as read, parsed and schema-checked, by
//! its path and git blob id. A commit that changes one file of a large
//! repository reads and parses that file only; what looks across files
//! (overlays, the semantic rules, the allowances) runs whole, so a load
//! that reuses gives what a fresh one gives.

use super::load::Checked;
use crate::source::BlobId;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

/// The files of the last load, shared by the loads of one process.
#[derive(Default)]
pub struct Reuse {
    files: Mutex<HashMap<Key, Arc<Checked>>>,
}

/// One file's identity: the same path and blob (and the same overlay role,
/// which depends on the base packs beside it) is the same first pass.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Key {
    pub(super) path: String,
    pub(super) overlay: bool,
    pub(super) blob: BlobId,
}

impl Reuse {
    pub fn new() -> Reuse {
        Reuse::default()
    }

    pub(super) fn get(&self, key: &Key) -> Option<Arc<Checked>> {
        self.lock().get(key).cloned()
    }

    /// Keeps what one load used and drops the rest: memory holds one
    /// revision's files, however many revisions the process sees.
    pub(super) fn keep(&self, used: impl IntoIterator<Item = (Key, Arc<Checked>)>) {
        let used: HashMap<Key, Arc<Checked>> = used.into_iter().collect();
        *self.lock() = used;
    }

    /// How many files are kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of the files' text kept (what the reuse costs in memory,
    /// besides the typed content the repository holds anyway).
    pub fn text_bytes(&self) -> usize {
        self.lock().values().map(|c| c.text.len()).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<Checked>>> {
        // NB: the map is replaced whole under the lock, never left half
        // written, so a poisoned lock still holds a consistent map.
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for Reuse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reuse").field("files", &self.len()).finish()
    }
}
