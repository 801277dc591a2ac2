//! What a promotion changes: FROM's pack files read from the base head and
//! set against TO's, byte for byte.

use super::{ENVIRONMENTS, Kept, PackVersion, PromoteError, PromotedFile};
use crate::{
    config::{
        Environment, Limits, PackSource, Repository,
        render::{PackDigest, pack_digests},
    },
    source::{GitSnapshot, Resolved, Snapshot, resolve},
};
use std::collections::BTreeMap;

/// The pack files TO gets (with their bytes), the ones it already holds,
/// and its own that FROM has no file for.
pub(super) struct Changes {
    pub promoted: Vec<(PromotedFile, Vec<u8>)>,
    pub unchanged: Vec<String>,
    pub kept: Vec<Kept>,
}

/// Sets FROM's pack files (all, or the ones `only` names) against TO's on
/// the base head that `snapshot` shows.
pub(super) fn changes(
    snapshot: &GitSnapshot,
    limits: &Limits,
    revision: &str,
    (repo, source, target): (&Repository, &Environment, &Environment),
    only: Option<&[String]>,
) -> Result<Changes, PromoteError> {
    let read = |file: &str| read_file(snapshot, file, limits, revision);
    let source_digests = by_name(pack_digests(repo, source));
    let target_digests = by_name(pack_digests(repo, target));
    let source_names: Vec<&str> = own_files(source).map(|(name, _)| name).collect();
    let mut changes = Changes {
        promoted: Vec::new(),
        unchanged: Vec::new(),
        kept: own_files(target)
            .filter(|(name, _)| !source_names.contains(name))
            .map(|(name, file)| Kept {
                name: name.to_owned(),
                file: file.to_owned(),
            })
            .collect(),
    };
    for (name, file) in source_files(source, only)? {
        let bytes = read(&file)?;
        let file_name = file.rsplit('/').next().unwrap_or(&file);
        let destination = format!("{ENVIRONMENTS}/{}/packs/{file_name}", target.slug);
        let existing = own_file(target, &name);
        if existing.as_deref() == Some(destination.as_str()) && read(&destination)? == bytes {
            changes.unchanged.push(name);
            continue;
        }
        let theirs = &source_digests[&name];
        let file = PromotedFile {
            previous: target_digests.get(&name).map(|p| PackVersion {
                version: p.version.clone(),
                digest: p.digest.clone(),
            }),
            version: theirs.version.clone(),
            digest: theirs.digest.clone(),
            replaces: existing.filter(|e| *e != destination),
            name,
            file: destination,
            source: file,
        };
        changes.promoted.push((file, bytes));
    }
    Ok(changes)
}

/// The pack files of an environment's own (whole packs and overlays), as
/// `(pack name, file)`.
fn own_files(env: &Environment) -> impl Iterator<Item = (&str, &str)> {
    env.packs
        .iter()
        .filter_map(|(name, effective)| match &effective.source {
            PackSource::Own { file } | PackSource::Overlay { overlay: file, .. } => {
                Some((name.as_str(), file.as_str()))
            }
            PackSource::Base { .. } => None,
        })
}

fn own_file(env: &Environment, name: &str) -> Option<String> {
    own_files(env)
        .find(|(n, _)| *n == name)
        .map(|(_, f)| f.to_owned())
}

/// FROM's pack files to promote: all, or the ones `only` names (each must
/// be one).
fn source_files(
    source: &Environment,
    only: Option<&[String]>,
) -> Result<Vec<(String, String)>, PromoteError> {
    let all: Vec<(String, String)> = own_files(source)
        .map(|(n, f)| (n.to_owned(), f.to_owned()))
        .collect();
    let Some(only) = only else {
        return Ok(all);
    };
    let unknown: Vec<String> = only
        .iter()
        .filter(|n| !all.iter().any(|(name, _)| name == *n))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(PromoteError::UnknownPacks {
            from: source.slug.clone(),
            names: unknown,
            own: all.iter().map(|(n, _)| n.clone()).collect(),
            inherited: source
                .packs
                .iter()
                .filter(|(_, p)| matches!(p.source, PackSource::Base { .. }))
                .map(|(n, _)| n.clone())
                .collect(),
        });
    }
    Ok(all
        .into_iter()
        .filter(|(name, _)| only.contains(name))
        .collect())
}

/// The bytes of a file in the snapshot, symbolic links followed.
fn read_file(
    snapshot: &GitSnapshot,
    file: &str,
    limits: &Limits,
    revision: &str,
) -> Result<Vec<u8>, PromoteError> {
    let failed = |message: String| PromoteError::ReadPack {
        file: file.to_owned(),
        revision: revision.to_owned(),
        message,
    };
    match resolve(snapshot, file).map_err(|e| failed(e.to_string()))? {
        Resolved::File { path, .. } => snapshot
            .read_file(&path, limits.max_file_bytes)
            .map_err(|e| failed(e.to_string())),
        Resolved::Missing => Err(failed("no such file".into())),
        _ => Err(failed("not a regular file".into())),
    }
}

pub(super) fn by_name(packs: Vec<PackDigest>) -> BTreeMap<String, PackDigest> {
    packs.into_iter().map(|p| (p.name.clone(), p)).collect()
}
