//! Access to a config repository's files: at a git commit (read from git
//! objects, never the work tree) or from the work tree, behind one trait.
//!
//! ```text
//!  --rev REV ──► GitSnapshot  ─┐
//!                              ├─► Snapshot ──► resolve() ──► config::load
//!  (no rev)  ──► WorkTree     ─┘    (lstat, list, read)   (symlinks stay inside)
//! ```
//!
//! [`commit`] and [`publish`] go the other way: they write a commit from git
//! objects and hand it over as a branch (for `rollback` and `promote`).
//!
//! Symbolic links are followed by [`resolve`] itself rather than by the
//! operating system, so the same rule holds for both: a link that stays inside
//! the repository is followed, one that points outside is refused.

pub mod commit;
pub mod follow;
mod git;
pub mod publish;
pub mod verify;
mod worktree;

pub use follow::{Credentials, Follower, Target};
pub use git::GitSnapshot;
pub(crate) use git::subdirectory;
pub use verify::{SignatureFormat, Signer, TrustedKeys, VerifyError, verify_commit};
pub use worktree::WorkTree;

use std::fmt;

/// Links followed while resolving one path before it counts as a loop
/// (the same bound Linux uses).
const MAX_LINK_HOPS: usize = 40;

/// Errors from reading a repository.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot open git repository at {path}: {message}")]
    OpenRepository { path: String, message: String },
    #[error("revision '{rev}' not found in {path}")]
    RevisionNotFound { rev: String, path: String },
    #[error("cannot read {path} at {revision}: {message}")]
    Read {
        path: String,
        revision: String,
        message: String,
    },
    /// A git object or file over the size Sluice reads: content, not a
    /// broken snapshot, so a load reports it as a finding.
    #[error(
        "cannot read {what} {path} at {revision}: it is {size} bytes, over the {limit}-byte limit Sluice reads"
    )]
    TooLarge {
        what: &'static str,
        path: String,
        revision: String,
        size: u64,
        limit: u64,
    },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Which state of the repository a snapshot shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revision {
    /// A commit, by its full hex id.
    Commit(String),
    /// The uncommitted work tree.
    WorkTree,
}

impl Revision {
    /// The form used in versions: 8 hex digits of the commit, or `worktree`.
    pub fn short(&self) -> &str {
        match self {
            Revision::Commit(id) => prefix(id, 8),
            Revision::WorkTree => "worktree",
        }
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Revision::Commit(id) => f.write_str(id),
            Revision::WorkTree => f.write_str("worktree"),
        }
    }
}

/// At most the first `chars` bytes of an id or digest, for display; the
/// whole text when that would split a character (ids from a server may be
/// anything).
pub fn prefix(text: &str, chars: usize) -> &str {
    text.get(..chars.min(text.len())).unwrap_or(text)
}

/// What a path names, without following a final symbolic link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File {
        size: u64,
    },
    Dir,
    Symlink {
        target: String,
    },
    /// Sockets, devices, git submodules: never configuration.
    Other,
}

/// The entries of one directory, as far as they were read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Names, sorted.
    pub names: Vec<String>,
    /// Entries whose names are not UTF-8, shown lossily. NB: Sluice cannot
    /// name them in a path, so they are reported rather than skipped: a
    /// pack or an environment must never vanish without a word.
    pub unreadable: Vec<String>,
    /// The directory holds more entries than were asked for.
    pub truncated: bool,
}

impl Listing {
    /// The listing of `names` (sorted here), cut to `max_entries`.
    fn of(mut names: Vec<String>, unreadable: Vec<String>, max_entries: usize) -> Listing {
        names.sort();
        let truncated = names.len() + unreadable.len() > max_entries;
        names.truncate(max_entries);
        Listing {
            names,
            unreadable,
            truncated,
        }
    }
}

/// A read-only view of the repository's files. Paths are relative to the
/// repository root and use `/`; the empty path is the root.
pub trait Snapshot {
    fn revision(&self) -> &Revision;
    /// The node at `path`, or `None` when nothing is there.
    fn lstat(&self, path: &str) -> Result<Option<Node>, SourceError>;
    /// The entries of a directory, at most `max_entries` of them (none
    /// when nothing is there).
    fn list_dir(&self, path: &str, max_entries: usize) -> Result<Listing, SourceError>;
    /// The bytes of a regular file, at most `max_bytes + 1` of them so a
    /// caller can tell that a file grew past its limit.
    fn read_file(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>, SourceError>;
    /// The commit message, for a snapshot of a commit.
    fn message(&self) -> Option<&str> {
        None
    }
    /// The git blob id of the regular file at `path`, for a snapshot of a
    /// commit: one id is one content, so a long-running process reuses
    /// what it made of a file it has seen (`config::Reuse`). `None` for a
    /// work tree, whose files may change under it.
    fn blob_id(&self, _path: &str) -> Option<BlobId> {
        None
    }
}

/// A git object id: the same id, the same bytes.
pub type BlobId = git2::Oid;

/// Where a path leads once symbolic links are followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    File { path: String, size: u64 },
    Dir { path: String },
    Other { path: String },
    Missing,
}

/// Why a path could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("symbolic link {link} points outside the repository ({target})")]
    Escapes { link: String, target: String },
    #[error("symbolic link {link} does not resolve (a loop, or more than {MAX_LINK_HOPS} links)")]
    Loop { link: String },
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// Follows `path` through the snapshot, following symbolic links only while
/// they stay inside the repository.
pub fn resolve(snapshot: &dyn Snapshot, path: &str) -> Result<Resolved, ResolveError> {
    let mut pending: Vec<String> = components(path).rev().map(str::to_owned).collect();
    let mut resolved: Vec<String> = Vec::new();
    let mut last_link: Option<(String, String)> = None;
    let mut hops = 0;
    while let Some(component) = pending.pop() {
        match component.as_str() {
            "." => continue,
            ".." => {
                if resolved.pop().is_none() {
                    let (link, target) =
                        last_link.unwrap_or_else(|| (path.to_owned(), path.to_owned()));
                    return Err(ResolveError::Escapes { link, target });
                }
                continue;
            }
            _ => {}
        }
        resolved.push(component);
        let here = resolved.join("/");
        match snapshot.lstat(&here)? {
            None => return Ok(Resolved::Missing),
            Some(Node::Dir) => {}
            Some(Node::Symlink { target }) => {
                hops += 1;
                if hops > MAX_LINK_HOPS {
                    return Err(ResolveError::Loop { link: here });
                }
                if target.starts_with('/') {
                    return Err(ResolveError::Escapes { link: here, target });
                }
                resolved.pop();
                pending.extend(components(&target).rev().map(str::to_owned));
                last_link = Some((here, target));
            }
            Some(node) => {
                if !pending.is_empty() {
                    return Ok(Resolved::Missing);
                }
                return Ok(match node {
                    Node::File { size } => Resolved::File { path: here, size },
                    _ => Resolved::Other { path: here },
                });
            }
        }
    }
    Ok(Resolved::Dir {
        path: resolved.join("/"),
    })
}

fn components(path: &str) -> impl DoubleEndedIterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty())
}

/// Opens the snapshot a command asked for: the commit `rev` names, or the
/// work tree when there is none.
pub fn open(repo: &std::path::Path, rev: Option<&str>) -> Result<Box<dyn Snapshot>, SourceError> {
    match rev {
        Some(rev) => Ok(Box::new(GitSnapshot::open(repo, rev)?)),
        None => Ok(Box::new(WorkTree::open(repo)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A snapshot held in memory, for the resolution logic alone.
    struct Fake {
        nodes: BTreeMap<String, Node>,
        revision: Revision,
    }

    impl Fake {
        fn new(nodes: &[(&str, Node)]) -> Self {
            Fake {
                nodes: nodes
                    .iter()
                    .map(|(p, n)| (p.to_string(), n.clone()))
                    .collect(),
                revision: Revision::WorkTree,
            }
        }
    }

    impl Snapshot for Fake {
        fn revision(&self) -> &Revision {
            &self.revision
        }
        fn lstat(&self, path: &str) -> Result<Option<Node>, SourceError> {
            Ok(self.nodes.get(path).cloned())
        }
        fn list_dir(&self, _: &str, _: usize) -> Result<Listing, SourceError> {
            Ok(Listing::default())
        }
        fn read_file(&self, _: &str, _: u64) -> Result<Vec<u8>, SourceError> {
            Ok(vec![])
        }
    }

    fn link(target: &str) -> Node {
        Node::Symlink {
            target: target.into(),
        }
    }

    #[test]
    fn follows_links_inside_the_repository() {
        let fake = Fake::new(&[
            ("base", Node::Dir),
            ("base/a.yaml", Node::File { size: 3 }),
            ("env", Node::Dir),
            ("env/a.yaml", link("../base/a.yaml")),
        ]);
        assert_eq!(
            resolve(&fake, "env/a.yaml").unwrap(),
            Resolved::File {
                path: "base/a.yaml".into(),
                size: 3
            }
        );
    }

    #[test]
    fn refuses_links_that_leave_the_repository() {
        let fake = Fake::new(&[
            ("env", Node::Dir),
            ("env/abs.yaml", link("/etc/passwd")),
            ("env/up.yaml", link("../../secret.yaml")),
        ]);
        assert!(matches!(
            resolve(&fake, "env/abs.yaml"),
            Err(ResolveError::Escapes { .. })
        ));
        assert!(matches!(
            resolve(&fake, "env/up.yaml"),
            Err(ResolveError::Escapes { .. })
        ));
    }

    #[test]
    fn detects_loops() {
        let fake = Fake::new(&[("a", link("b")), ("b", link("a"))]);
        assert!(matches!(
            resolve(&fake, "a"),
            Err(ResolveError::Loop { .. })
        ));
    }
}
