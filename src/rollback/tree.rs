//! Editing git trees in the object database: the user's work tree and
//! index are never read or written.

use git2::{ObjectType, Oid, Repository, Tree};

/// git's mode for a directory.
pub const MODE_TREE: i32 = 0o040000;
/// git's mode for a regular, non-executable file.
pub const MODE_BLOB: i32 = 0o100644;

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
    put_components(repo, root, &components, entry)
}

fn put_components(
    repo: &Repository,
    root: Option<&Tree<'_>>,
    components: &[&str],
    entry: (Oid, i32),
) -> Result<Oid, git2::Error> {
    let mut builder = repo.treebuilder(root)?;
    match components {
        [] => return Err(git2::Error::from_str("an empty path names no tree entry")),
        [name] => {
            builder.insert(name, entry.0, entry.1)?;
        }
        [name, rest @ ..] => {
            let existing = builder
                .get(name)?
                .filter(|e| e.kind() == Some(ObjectType::Tree))
                .map(|e| e.id());
            let subtree = existing.map(|id| repo.find_tree(id)).transpose()?;
            let id = put_components(repo, subtree.as_ref(), rest, entry)?;
            builder.insert(name, id, MODE_TREE)?;
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
}
