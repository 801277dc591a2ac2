//! A snapshot of one commit, read from git objects with git2.

use super::{Node, Revision, Snapshot, SourceError};
use git2::{ObjectType, Oid, Repository, Tree};
use std::path::Path;

/// The most of a commit message kept (its end, where trailers are).
const MAX_MESSAGE_BYTES: usize = 64 << 10;

/// The tree of one commit. Nothing in the work tree is read.
pub struct GitSnapshot {
    repo: Repository,
    tree: Oid,
    revision: Revision,
    message: String,
}

impl GitSnapshot {
    /// Opens the repository at `path` and resolves `rev` (a branch, tag,
    /// commit id or any `git rev-parse` expression) to a commit.
    pub fn open(path: &Path, rev: &str) -> Result<Self, SourceError> {
        // NB: `discover`, so a config repository may be a directory inside a
        // larger git repository (as examples/config-repo is in Sluice's own).
        let repo = Repository::discover(path).map_err(|e| SourceError::OpenRepository {
            path: path.display().to_string(),
            message: e.message().to_owned(),
        })?;
        let not_found = || SourceError::RevisionNotFound {
            rev: rev.to_owned(),
            path: path.display().to_string(),
        };
        let commit = repo
            .revparse_single(rev)
            .and_then(|object| object.peel_to_commit())
            .map_err(|_| not_found())?;
        let revision = Revision::Commit(commit.id().to_string());
        // NB: trailers sit at the end; a huge message is cut from the front.
        let bytes = commit.message_bytes();
        let message =
            String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(MAX_MESSAGE_BYTES)..])
                .into_owned();
        let tree = match subdirectory(&repo, path) {
            None => commit.tree_id(),
            Some(prefix) => {
                let entry = commit
                    .tree()
                    .and_then(|t| t.get_path(&prefix))
                    .map_err(|_| SourceError::Read {
                        path: prefix.display().to_string(),
                        revision: revision.short().to_owned(),
                        message: "the directory is not in this commit".into(),
                    })?;
                entry.id()
            }
        };
        drop(commit);
        Ok(GitSnapshot {
            repo,
            tree,
            revision,
            message,
        })
    }

    fn root(&self) -> Result<Tree<'_>, SourceError> {
        self.repo
            .find_tree(self.tree)
            .map_err(|e| self.error("", e))
    }

    fn error(&self, path: &str, e: git2::Error) -> SourceError {
        SourceError::Read {
            path: path.to_owned(),
            revision: self.revision.short().to_owned(),
            message: e.message().to_owned(),
        }
    }

    fn subtree(&self, path: &str) -> Result<Option<Tree<'_>>, SourceError> {
        let root = self.root()?;
        if path.is_empty() {
            return Ok(Some(root));
        }
        let Ok(entry) = root.get_path(Path::new(path)) else {
            return Ok(None);
        };
        if entry.kind() != Some(ObjectType::Tree) {
            return Ok(None);
        }
        self.repo
            .find_tree(entry.id())
            .map(Some)
            .map_err(|e| self.error(path, e))
    }
}

/// Where `path` sits inside the repository's work tree, when it is not its root.
pub(crate) fn subdirectory(repo: &Repository, path: &Path) -> Option<std::path::PathBuf> {
    let workdir = std::fs::canonicalize(repo.workdir()?).ok()?;
    let path = std::fs::canonicalize(path).ok()?;
    let relative = path.strip_prefix(&workdir).ok()?;
    (!relative.as_os_str().is_empty()).then(|| relative.to_path_buf())
}

/// git's mode for a symbolic link.
const MODE_SYMLINK: i32 = 0o120000;

impl Snapshot for GitSnapshot {
    fn revision(&self) -> &Revision {
        &self.revision
    }

    fn message(&self) -> Option<&str> {
        Some(&self.message)
    }

    fn lstat(&self, path: &str) -> Result<Option<Node>, SourceError> {
        if path.is_empty() {
            return Ok(Some(Node::Dir));
        }
        let root = self.root()?;
        let Ok(entry) = root.get_path(Path::new(path)) else {
            return Ok(None);
        };
        let node = match entry.kind() {
            Some(ObjectType::Tree) => Node::Dir,
            Some(ObjectType::Blob) if entry.filemode() == MODE_SYMLINK => {
                let blob = self
                    .repo
                    .find_blob(entry.id())
                    .map_err(|e| self.error(path, e))?;
                Node::Symlink {
                    target: String::from_utf8_lossy(blob.content()).into_owned(),
                }
            }
            Some(ObjectType::Blob) => {
                let odb = self.repo.odb().map_err(|e| self.error(path, e))?;
                let (size, _) = odb
                    .read_header(entry.id())
                    .map_err(|e| self.error(path, e))?;
                Node::File { size: size as u64 }
            }
            _ => Node::Other,
        };
        Ok(Some(node))
    }

    fn list_dir(&self, path: &str) -> Result<Vec<String>, SourceError> {
        let Some(tree) = self.subtree(path)? else {
            return Ok(Vec::new());
        };
        let mut names: Vec<String> = tree
            .iter()
            .filter_map(|entry| entry.name().ok().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    fn read_file(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>, SourceError> {
        let root = self.root()?;
        let entry = root
            .get_path(Path::new(path))
            .map_err(|e| self.error(path, e))?;
        let odb = self.repo.odb().map_err(|e| self.error(path, e))?;
        // NB: the size comes from the object header, before git2 loads the
        // blob (which it does whole), so a huge blob is never read.
        let (size, _) = odb
            .read_header(entry.id())
            .map_err(|e| self.error(path, e))?;
        if size as u64 > max_bytes {
            return Err(SourceError::Read {
                path: path.to_owned(),
                revision: self.revision.short().to_owned(),
                message: format!("{size} bytes is over the {max_bytes} byte limit"),
            });
        }
        let object = odb.read(entry.id()).map_err(|e| self.error(path, e))?;
        Ok(object.data().to_vec())
    }
}
