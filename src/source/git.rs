//! A snapshot of one commit, read from git objects with git2.
//!
//! Every object is sized from its header (`Odb::read_header`, which
//! inflates nothing) before it is read, and each directory's tree is parsed
//! once and kept by path: a lookup is a walk over cached maps, never a
//! fresh `Tree::get_path`, which re-parses every tree on the way (libgit2
//! caches no tree over 4 KiB, so a lookup in a large directory costs the
//! whole directory and reading all of it costs its square).

use super::{Listing, Node, Revision, Snapshot, SourceError, verify::MAX_COMMIT_BYTES};
use git2::{ObjectType, Oid, Repository};
use std::{
    cell::RefCell,
    collections::{BTreeMap, HashMap},
    path::Path,
};

/// The most of a commit message kept (its end, where trailers are).
const MAX_MESSAGE_BYTES: usize = 64 << 10;
/// The longest symbolic link target read: Linux's PATH_MAX. No file system
/// stores a longer one; only a crafted git object has it.
const MAX_LINK_BYTES: u64 = 4096;
/// The largest tree object read: room for about 300,000 entries with
/// 80-byte names, three times the default budget of a whole revision.
const MAX_TREE_BYTES: u64 = 32 << 20;
/// Annotated tags peeled through before a revision counts as not a commit.
const MAX_TAG_HOPS: usize = 8;

/// The tree of one commit. Nothing in the work tree is read.
pub struct GitSnapshot {
    repo: Repository,
    tree: Oid,
    revision: Revision,
    message: String,
    /// Directories read so far, by path (`""` is the root).
    dirs: RefCell<HashMap<String, Dir>>,
}

/// One tree, parsed.
struct Dir {
    entries: BTreeMap<String, Entry>,
    /// Names that are not UTF-8, lossily.
    unreadable: Vec<String>,
}

#[derive(Clone, Copy)]
struct Entry {
    id: Oid,
    mode: i32,
    kind: Option<ObjectType>,
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
        let id = commit_id(&repo, rev)?.ok_or_else(not_found)?;
        let commit = repo.find_commit(id).map_err(|_| not_found())?;
        let revision = Revision::Commit(commit.id().to_string());
        // NB: trailers sit at the end; a long message is cut from the front.
        let bytes = commit.message_bytes();
        let message =
            String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(MAX_MESSAGE_BYTES)..])
                .into_owned();
        let root = commit.tree_id();
        drop(commit);
        let mut snapshot = GitSnapshot {
            repo,
            tree: root,
            revision,
            message,
            dirs: RefCell::default(),
        };
        if let Some(prefix) = subdirectory(&snapshot.repo, path) {
            let prefix = prefix.to_string_lossy().into_owned();
            let Some(tree) = snapshot.dir_id(&prefix)? else {
                return Err(SourceError::Read {
                    path: prefix,
                    revision: snapshot.revision.short().to_owned(),
                    message: "the directory is not in this commit".into(),
                });
            };
            snapshot.tree = tree;
            snapshot.dirs.get_mut().clear();
        }
        Ok(snapshot)
    }

    fn error(&self, path: &str, e: git2::Error) -> SourceError {
        SourceError::Read {
            path: path.to_owned(),
            revision: self.revision.short().to_owned(),
            message: e.message().to_owned(),
        }
    }

    /// The size of object `id`, from its header; an error when it is over
    /// `limit` (nothing is inflated either way).
    fn size(
        &self,
        what: &'static str,
        path: &str,
        id: Oid,
        limit: u64,
    ) -> Result<u64, SourceError> {
        let odb = self.repo.odb().map_err(|e| self.error(path, e))?;
        let (size, _) = odb.read_header(id).map_err(|e| self.error(path, e))?;
        let size = size as u64;
        if size > limit {
            return Err(SourceError::TooLarge {
                what,
                path: path.to_owned(),
                revision: self.revision.short().to_owned(),
                size,
                limit,
            });
        }
        Ok(size)
    }

    /// The entry at `path` (not the root), if any.
    fn entry(&self, path: &str) -> Result<Option<Entry>, SourceError> {
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        Ok(self
            .with_dir(parent, |dir| dir.entries.get(name).copied())?
            .flatten())
    }

    /// The tree at `path`, when a directory is there.
    fn dir_id(&self, path: &str) -> Result<Option<Oid>, SourceError> {
        if path.is_empty() {
            return Ok(Some(self.tree));
        }
        Ok(self
            .entry(path)?
            .filter(|e| e.kind == Some(ObjectType::Tree))
            .map(|e| e.id))
    }

    /// Runs `f` on the directory at `path`, parsing its tree the first time.
    fn with_dir<R>(&self, path: &str, f: impl FnOnce(&Dir) -> R) -> Result<Option<R>, SourceError> {
        if let Some(dir) = self.dirs.borrow().get(path) {
            return Ok(Some(f(dir)));
        }
        let Some(id) = self.dir_id(path)? else {
            return Ok(None);
        };
        self.size("directory", path, id, MAX_TREE_BYTES)?;
        let tree = self.repo.find_tree(id).map_err(|e| self.error(path, e))?;
        let mut dir = Dir {
            entries: BTreeMap::new(),
            unreadable: Vec::new(),
        };
        for entry in tree.iter() {
            match std::str::from_utf8(entry.name_bytes()) {
                Ok(name) => {
                    let entry = Entry {
                        id: entry.id(),
                        mode: entry.filemode(),
                        kind: entry.kind(),
                    };
                    dir.entries.insert(name.to_owned(), entry);
                }
                Err(_) => dir
                    .unreadable
                    .push(String::from_utf8_lossy(entry.name_bytes()).into_owned()),
            }
        }
        let result = f(&dir);
        self.dirs.borrow_mut().insert(path.to_owned(), dir);
        Ok(Some(result))
    }
}

/// The commit `rev` names, found without inflating anything larger than
/// Sluice's bounds: a full id, a ref (through annotated tags) or an
/// abbreviated id is resolved from refs and object headers; only other
/// `rev-parse` expressions (`main~2`) are left to libgit2, which reads the
/// commits on the way.
fn commit_id(repo: &Repository, rev: &str) -> Result<Option<Oid>, SourceError> {
    let hex = rev.len() >= 4 && rev.bytes().all(|b| b.is_ascii_hexdigit());
    let odb = repo.odb().map_err(|e| SourceError::Read {
        path: repo.path().display().to_string(),
        revision: rev.to_owned(),
        message: e.message().to_owned(),
    })?;
    let mut id = if hex && rev.len() == 40 {
        Oid::from_str(rev).ok()
    } else {
        None
    };
    if id.is_none() {
        id = repo
            .resolve_reference_from_short_name(rev)
            .ok()
            .and_then(|r| r.resolve().ok())
            .and_then(|r| r.target());
    }
    if id.is_none() && hex {
        id = Oid::from_str(rev)
            .ok()
            .and_then(|short| odb.exists_prefix(short, rev.len()).ok());
    }
    let Some(mut id) = id.or_else(|| repo.revparse_single(rev).ok().map(|o| o.id())) else {
        return Ok(None);
    };
    for _ in 0..=MAX_TAG_HOPS {
        let Ok((size, kind)) = odb.read_header(id) else {
            return Ok(None);
        };
        if size > MAX_COMMIT_BYTES {
            return Err(SourceError::TooLarge {
                what: if kind == ObjectType::Tag {
                    "tag"
                } else {
                    "commit"
                },
                path: id.to_string(),
                revision: rev.to_owned(),
                size: size as u64,
                limit: MAX_COMMIT_BYTES as u64,
            });
        }
        match kind {
            ObjectType::Commit => return Ok(Some(id)),
            ObjectType::Tag => match repo.find_tag(id) {
                Ok(tag) => id = tag.target_id(),
                Err(_) => return Ok(None),
            },
            _ => return Ok(None),
        }
    }
    Ok(None)
}

/// The full id of the commit `rev` names, for following a branch: found
/// as [`GitSnapshot::open`] finds it, from refs and object headers. A
/// commit over the bound is still named, so that opening its snapshot is
/// what refuses it, saying why.
pub(crate) fn peeled_commit(repo: &Repository, rev: &str) -> Option<String> {
    match commit_id(repo, rev) {
        Ok(id) => id.map(|id| id.to_string()),
        Err(SourceError::TooLarge {
            what: "commit",
            path,
            ..
        }) => Some(path),
        Err(_) => None,
    }
}

/// Whether `id` names a commit in `repo`, from its header alone
/// (`find_commit` would inflate it whole).
pub(crate) fn is_commit(repo: &Repository, id: Oid) -> bool {
    repo.odb()
        .and_then(|odb| odb.read_header(id))
        .is_ok_and(|(_, kind)| kind == ObjectType::Commit)
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
        let Some(entry) = self.entry(path)? else {
            return Ok(None);
        };
        let node = match entry.kind {
            Some(ObjectType::Tree) => Node::Dir,
            Some(ObjectType::Blob) if entry.mode == MODE_SYMLINK => {
                self.size("symbolic link", path, entry.id, MAX_LINK_BYTES)?;
                let blob = self
                    .repo
                    .find_blob(entry.id)
                    .map_err(|e| self.error(path, e))?;
                Node::Symlink {
                    target: String::from_utf8_lossy(blob.content()).into_owned(),
                }
            }
            Some(ObjectType::Blob) => Node::File {
                size: self.size("file", path, entry.id, u64::MAX)?,
            },
            _ => Node::Other,
        };
        Ok(Some(node))
    }

    fn list_dir(&self, path: &str, max_entries: usize) -> Result<Listing, SourceError> {
        let listing = self.with_dir(path, |dir| {
            // NB: the map is sorted; only the names asked for are copied.
            // NB: one more than asked, so a directory past the budget is
            // seen to be cut (`Listing::of` keeps `max_entries`).
            let names = dir
                .entries
                .keys()
                .take(max_entries.saturating_add(1))
                .cloned()
                .collect();
            Listing::of(names, dir.unreadable.clone(), max_entries)
        })?;
        Ok(listing.unwrap_or_default())
    }

    fn blob_id(&self, path: &str) -> Option<super::BlobId> {
        self.entry(path)
            .ok()
            .flatten()
            .filter(|e| e.kind == Some(ObjectType::Blob) && e.mode != MODE_SYMLINK)
            .map(|e| e.id)
    }

    fn read_file(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>, SourceError> {
        let entry = self.entry(path)?.ok_or_else(|| SourceError::Read {
            path: path.to_owned(),
            revision: self.revision.short().to_owned(),
            message: "no such file".into(),
        })?;
        // NB: the size comes from the object header, before git2 loads the
        // blob (which it does whole), so a huge blob is never read.
        self.size("file", path, entry.id, max_bytes)?;
        let odb = self.repo.odb().map_err(|e| self.error(path, e))?;
        let object = odb.read(entry.id).map_err(|e| self.error(path, e))?;
        Ok(object.data().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository whose one commit holds `packs/` with `n` files.
    fn repository_with(n: usize) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let blob = repo.blob(b"pack: {}\n").unwrap();
        let mut packs = repo.treebuilder(None).unwrap();
        for i in 0..n {
            packs.insert(format!("p{i}.yaml"), blob, 0o100644).unwrap();
        }
        let packs = packs.write().unwrap();
        let mut root = repo.treebuilder(None).unwrap();
        root.insert("packs", packs, 0o040000).unwrap();
        let tree = repo.find_tree(root.write().unwrap()).unwrap();
        let who = git2::Signature::now("t", "t@example.com").unwrap();
        repo.commit(Some("HEAD"), &who, &who, "packs", &tree, &[])
            .unwrap();
        dir
    }

    /// Review of issue 16: a git directory past the entry budget was listed
    /// cut but not marked so, and the loader then raised no finding.
    #[test]
    fn a_directory_past_the_budget_is_listed_cut_and_says_so() {
        let dir = repository_with(6);
        let snapshot = GitSnapshot::open(dir.path(), "HEAD").unwrap();
        let cut = snapshot.list_dir("packs", 5).unwrap();
        assert_eq!(cut.names.len(), 5);
        assert!(cut.truncated);
        let whole = snapshot.list_dir("packs", 6).unwrap();
        assert_eq!(whole.names.len(), 6);
        assert!(!whole.truncated);
    }
}
