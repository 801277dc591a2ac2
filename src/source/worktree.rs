//! A snapshot of the work tree, so authors can validate before committing.

use super::{Listing, Node, Revision, Snapshot, SourceError};
use std::{
    fs,
    io::{ErrorKind, Read},
    path::{Path, PathBuf},
};

/// The files under a directory as they are on disk now.
pub struct WorkTree {
    root: PathBuf,
    revision: Revision,
}

impl WorkTree {
    pub fn open(root: &Path) -> Result<Self, SourceError> {
        let root = fs::canonicalize(root).map_err(|source| SourceError::Io {
            path: root.display().to_string(),
            source,
        })?;
        Ok(WorkTree {
            root,
            revision: Revision::WorkTree,
        })
    }

    fn full(&self, path: &str) -> PathBuf {
        if path.is_empty() {
            self.root.clone()
        } else {
            self.root.join(path)
        }
    }

    fn io(path: &str, source: std::io::Error) -> SourceError {
        SourceError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

impl Snapshot for WorkTree {
    fn revision(&self) -> &Revision {
        &self.revision
    }

    fn lstat(&self, path: &str) -> Result<Option<Node>, SourceError> {
        let full = self.full(path);
        let meta = match fs::symlink_metadata(&full) {
            Ok(meta) => meta,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                return Ok(None);
            }
            Err(e) => return Err(Self::io(path, e)),
        };
        let kind = meta.file_type();
        Ok(Some(if kind.is_symlink() {
            let target = fs::read_link(&full).map_err(|e| Self::io(path, e))?;
            Node::Symlink {
                target: target.to_string_lossy().into_owned(),
            }
        } else if kind.is_dir() {
            Node::Dir
        } else if kind.is_file() {
            Node::File { size: meta.len() }
        } else {
            Node::Other
        }))
    }

    fn list_dir(&self, path: &str, max_entries: usize) -> Result<Listing, SourceError> {
        let entries = match fs::read_dir(self.full(path)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Listing::default()),
            Err(e) => return Err(Self::io(path, e)),
        };
        let (mut names, mut unreadable) = (Vec::new(), Vec::new());
        // NB: one past the bound is enough to know the directory is over it.
        for entry in entries.take(max_entries.saturating_add(1)) {
            let entry = entry.map_err(|e| Self::io(path, e))?;
            match entry.file_name().into_string() {
                Ok(name) => names.push(name),
                Err(name) => unreadable.push(name.to_string_lossy().into_owned()),
            }
        }
        Ok(Listing::of(names, unreadable, max_entries))
    }

    fn read_file(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>, SourceError> {
        let file = fs::File::open(self.full(path)).map_err(|e| Self::io(path, e))?;
        let mut bytes = Vec::new();
        file.take(max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| Self::io(path, e))?;
        Ok(bytes)
    }
}
