//! Writing a commit from git objects and naming it with a new branch, for
//! the commands that hand their work over as a branch to review
//! (`rollback`, `promote`): the user's work tree, index and checked-out
//! branch are never read or written.
//!
//! ```text
//!  base head tree ─► put / remove (object database only) ─► commit (no ref)
//!                                                              │ checked by the caller
//!                                                              ▼
//!                                          create_branch: new, or same tree
//! ```

use git2::{ObjectType, Oid, Repository, Signature, Tree};
use std::path::Path;

/// git's mode for a directory.
pub const MODE_TREE: i32 = 0o040000;
/// git's mode for a regular, non-executable file.
pub const MODE_BLOB: i32 = 0o100644;

/// Why a branch could not be written or published. Each variant is one
/// operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum BranchError {
    #[error(
        "Sluice writes the branch into a local repository, and --repo {repo} is a URL: clone it and pass the clone's path"
    )]
    NotLocal { repo: String },
    #[error("cannot open the git repository at {path}: {message}")]
    OpenRepository { path: String, message: String },
    #[error("git failed while {doing}: {message}")]
    Git {
        doing: &'static str,
        message: String,
    },
    #[error("`{branch}` is not a valid branch name")]
    InvalidBranch { branch: String },
    #[error(
        "branch `{branch}` exists already (at {commit}) with other content; it is never overwritten: pass --branch NAME"
    )]
    BranchExists { branch: String, commit: String },
    #[error("no remote `{remote}` in {path} (pass --remote NAME or a URL)")]
    NoRemote { remote: String, path: String },
    #[error("cannot push to {remote}: {message}")]
    Push { remote: String, message: String },
    #[error("{remote} refused branch `{branch}` ({message}); nothing is forced")]
    PushRejected {
        remote: String,
        branch: String,
        message: String,
    },
}

/// Maps a git2 error to [`BranchError::Git`], saying what was being done.
pub fn git(doing: &'static str) -> impl FnOnce(git2::Error) -> BranchError {
    move |e| BranchError::Git {
        doing,
        message: e.message().to_owned(),
    }
}

/// Opens the git repository holding `path` (which may be a directory inside
/// it); a URL is refused, since the branch is written locally.
pub fn open_repository(path: &Path) -> Result<Repository, BranchError> {
    let shown = path.display().to_string();
    if super::follow::is_remote(&shown) {
        return Err(BranchError::NotLocal { repo: shown });
    }
    Repository::discover(path).map_err(|e| BranchError::OpenRepository {
        path: shown,
        message: e.message().to_owned(),
    })
}

/// Where the config repository sits in the git repository's tree: `""` at
/// the root, else `dir/sub/`, to put before the config repository's paths.
pub fn root_prefix(repo: &Repository, path: &Path) -> String {
    super::subdirectory(repo, path)
        .map(|p| format!("{}/", p.to_string_lossy().trim_end_matches('/')))
        .unwrap_or_default()
}

/// The user's configured identity, else `Sluice <sluice@localhost>`.
pub fn signature(repo: &Repository) -> Result<Signature<'static>, BranchError> {
    repo.signature()
        .or_else(|_| Signature::now("Sluice", "sluice@localhost"))
        .map_err(git("making the commit's signature"))
}

/// Writes a commit of `tree` on `parent` without moving any ref: nothing
/// points at it until a check has passed and a branch is made.
pub fn write_detached(
    repo: &Repository,
    message: &str,
    tree: &git2::Tree<'_>,
    parent: &git2::Commit<'_>,
) -> Result<Oid, BranchError> {
    let signature = signature(repo)?;
    repo.commit(None, &signature, &signature, message, tree, &[parent])
        .map_err(git("writing the commit"))
}

/// Points the new branch `branch` at `commit`. A branch of that name that
/// already holds the same tree is taken as it is (`false`: not created);
/// one with other content is refused, never overwritten.
pub fn create_branch(
    repo: &Repository,
    branch: &str,
    commit: Oid,
    log: &str,
) -> Result<(Oid, bool), BranchError> {
    let refname = format!("refs/heads/{branch}");
    if !git2::Reference::is_valid_name(&refname) {
        return Err(BranchError::InvalidBranch {
            branch: branch.to_owned(),
        });
    }
    let tree = repo
        .find_commit(commit)
        .map_err(git("reading the new commit"))?
        .tree_id();
    if let Ok(existing) = repo.find_reference(&refname) {
        let existing = existing
            .peel_to_commit()
            .map_err(git("reading the existing branch"))?;
        if existing.tree_id() != tree {
            return Err(BranchError::BranchExists {
                branch: branch.to_owned(),
                commit: super::prefix(&existing.id().to_string(), 8).to_owned(),
            });
        }
        return Ok((existing.id(), false));
    }
    repo.reference(&refname, commit, false, log)
        .map_err(|e| match e.code() {
            git2::ErrorCode::Exists => BranchError::BranchExists {
                branch: branch.to_owned(),
                commit: "a concurrent write".into(),
            },
            _ => git("creating the branch")(e),
        })?;
    Ok((commit, true))
}

/// Writes a copy of `root` in which `path` (`a/b/c`, relative to `root`)
/// names `entry`, rebuilding each tree on the way; returns the new root.
/// Directories missing on the way are made.
pub fn put(
    repo: &Repository,
    root: Option<&Tree<'_>>,
    path: &str,
    entry: (Oid, i32),
) -> Result<Oid, git2::Error> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    edit(repo, root, &components, Some(entry))
}

/// Writes a copy of `root` without `path`; a directory left empty goes too
/// (git keeps no empty trees). Nothing at `path` is not an error.
pub fn remove(repo: &Repository, root: &Tree<'_>, path: &str) -> Result<Oid, git2::Error> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    edit(repo, Some(root), &components, None)
}

fn edit(
    repo: &Repository,
    root: Option<&Tree<'_>>,
    components: &[&str],
    entry: Option<(Oid, i32)>,
) -> Result<Oid, git2::Error> {
    let mut builder = repo.treebuilder(root)?;
    match components {
        [] => return Err(git2::Error::from_str("an empty path names no tree entry")),
        [name] => match entry {
            Some((id, mode)) => {
                builder.insert(name, id, mode)?;
            }
            None => {
                if builder.get(name)?.is_some() {
                    builder.remove(name)?;
                }
            }
        },
        [name, rest @ ..] => {
            let existing = builder
                .get(name)?
                .filter(|e| e.kind() == Some(ObjectType::Tree))
                .map(|e| e.id());
            let subtree = existing.map(|id| repo.find_tree(id)).transpose()?;
            if entry.is_none() && subtree.is_none() {
                return builder.write();
            }
            let id = edit(repo, subtree.as_ref(), rest, entry)?;
            if repo.find_tree(id)?.is_empty() {
                builder.remove(name)?;
            } else {
                builder.insert(name, id, MODE_TREE)?;
            }
        }
    }
    builder.write()
}

/// The id and mode of what `path` names in `tree`, if anything.
pub fn entry(tree: &Tree<'_>, path: &str) -> Option<(Oid, i32)> {
    if path.is_empty() {
        return Some((tree.id(), MODE_TREE));
    }
    tree.get_path(std::path::Path::new(path))
        .ok()
        .map(|e| (e.id(), e.filemode()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_rebuilds_only_the_path_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let a = repo.blob(b"a").unwrap();
        let b = repo.blob(b"b").unwrap();
        let root = put(&repo, None, "x/y/a.yaml", (a, MODE_BLOB)).unwrap();
        let root = put(
            &repo,
            Some(&repo.find_tree(root).unwrap()),
            "z.yaml",
            (a, MODE_BLOB),
        )
        .unwrap();
        let before = repo.find_tree(root).unwrap();
        let after = put(&repo, Some(&before), "x/y/a.yaml", (b, MODE_BLOB)).unwrap();
        let after = repo.find_tree(after).unwrap();
        assert_eq!(entry(&after, "x/y/a.yaml"), Some((b, MODE_BLOB)));
        assert_eq!(entry(&after, "z.yaml"), entry(&before, "z.yaml"));
        assert_eq!(entry(&after, "missing"), None);
    }

    #[test]
    fn remove_drops_the_entry_and_directories_left_empty() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let a = repo.blob(b"a").unwrap();
        let root = put(&repo, None, "x/y/a.yaml", (a, MODE_BLOB)).unwrap();
        let root = repo.find_tree(root).unwrap();
        let root = put(&repo, Some(&root), "x/b.yaml", (a, MODE_BLOB)).unwrap();
        let before = repo.find_tree(root).unwrap();
        let after = remove(&repo, &before, "x/y/a.yaml").unwrap();
        let after = repo.find_tree(after).unwrap();
        assert_eq!(entry(&after, "x/y"), None, "an empty directory goes");
        assert_eq!(entry(&after, "x/b.yaml"), Some((a, MODE_BLOB)));
        let same = remove(&repo, &after, "nothing/here.yaml").unwrap();
        assert_eq!(same, after.id());
    }

    #[test]
    fn a_branch_is_made_once_and_never_moved() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let signature = Signature::now("T", "t@example").unwrap();
        let commit_of = |content: &[u8]| {
            let blob = repo.blob(content).unwrap();
            let tree = put(&repo, None, "f", (blob, MODE_BLOB)).unwrap();
            let tree = repo.find_tree(tree).unwrap();
            repo.commit(None, &signature, &signature, "m", &tree, &[])
                .unwrap()
        };
        let first = commit_of(b"1");
        assert_eq!(
            create_branch(&repo, "topic/a", first, "test").unwrap(),
            (first, true)
        );
        let again = commit_of(b"1");
        assert_eq!(
            create_branch(&repo, "topic/a", again, "test").unwrap(),
            (first, false),
            "the same tree: the branch is taken as it is"
        );
        let other = commit_of(b"2");
        assert!(matches!(
            create_branch(&repo, "topic/a", other, "test"),
            Err(BranchError::BranchExists { .. })
        ));
        assert!(matches!(
            create_branch(&repo, "bad..name", other, "test"),
            Err(BranchError::InvalidBranch { .. })
        ));
    }
}
