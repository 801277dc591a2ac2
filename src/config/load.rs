//! Loading a repository from a snapshot: collect the files (I/O, one
//! thread), parse and schema-check them (pure, in parallel), merge overlays,
//! run the semantic rules, and locate every finding in its source.

use super::{
    EffectivePack, Environment, PackFile, PackSource, Repository,
    allow::Allowances,
    finding::{self, Finding},
    merge::merge_patch,
    model::{EnvironmentSpec, GatewaysFile, LitellmSettings, Manifest, Pack},
    reuse::{Key, Reuse},
    salvage::{self, Cut},
    schema::{self, FileKind},
    validate,
    yaml::{self, SpanIndex},
};
use crate::{
    eval::suite::{self, Fixture, FixtureFile, Suite, SuiteFile},
    source::{BlobId, ResolveError, Resolved, Revision, Snapshot, SourceError, resolve},
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::Value;
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

pub const MANIFEST: &str = "sluice.yaml";
pub const BASE_PACKS: &str = "base/packs";
pub const ENVIRONMENTS: &str = "environments";
pub const ENVIRONMENT_FILE: &str = "environment.yaml";
pub const GATEWAYS_FILE: &str = "gateways.yaml";
/// An environment's LiteLLM settings, optional.
pub const LITELLM_FILE: &str = "litellm.yaml";
pub const PACKS_DIR: &str = "packs";

/// Bounds on what one load may read.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest file read, in bytes; a larger one is a finding.
    pub max_file_bytes: u64,
    /// Most directory entries and files looked at in one revision.
    pub max_entries: usize,
    /// Most bytes read in one revision, over all files.
    pub max_total_bytes: u64,
    /// Longest one load may take: past it, the revision is invalid (a
    /// finding says why) and, under `run`, the last good one keeps running.
    pub max_load_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 1024 * 1024,
            max_entries: 100_000,
            max_total_bytes: 512 * 1024 * 1024,
            // NB: a linear read of 100,000 entries takes a few seconds on a
            // small machine; this is for what goes wrong beyond that, so
            // one revision never stalls the loop for long.
            max_load_time: Duration::from_secs(60),
        }
    }
}

/// The outcome of loading one revision.
#[derive(Debug)]
pub struct Loaded {
    pub revision: Revision,
    /// Present when no finding is an error.
    pub repository: Option<Repository>,
    /// Every finding, in stable order.
    pub findings: Vec<Finding>,
    /// Text of the files that have findings, for showing source lines.
    pub sources: HashMap<String, String>,
    /// The commit message (trailers such as a promotion's live there).
    pub message: Option<String>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(Finding::is_error)
    }
}

/// Loads and validates the repository a snapshot shows, by the
/// repository's own rules only: for commands that never read a secret nor
/// reach a gateway (render, plan, promote, rollback). Commands that act on
/// a revision use [`load_with`]. `Err` only when the snapshot itself cannot
/// be read; anything wrong with its content is a finding.
pub fn load(snapshot: &dyn Snapshot, limits: &Limits) -> Result<Loaded, SourceError> {
    load_checked(snapshot, limits, None, None)
}

/// [`load`], and every variable and URL outside the operator's
/// `allowances` is an error finding too, so such a revision is invalid and
/// nothing of it is applied.
pub fn load_with(
    snapshot: &dyn Snapshot,
    limits: &Limits,
    allowances: &Allowances,
) -> Result<Loaded, SourceError> {
    load_checked(snapshot, limits, Some(allowances), None)
}

/// [`load_with`] for a long-running process: files this `reuse` holds
/// from an earlier load (same path, same git blob) are not read, parsed
/// nor schema-checked again. What looks across files (overlays, the
/// semantic rules, the allowances) runs whole, so the outcome is the same
/// as [`load_with`]'s.
pub fn load_reusing(
    snapshot: &dyn Snapshot,
    limits: &Limits,
    allowances: &Allowances,
    reuse: &Reuse,
) -> Result<Loaded, SourceError> {
    load_checked(snapshot, limits, Some(allowances), Some(reuse))
}

fn load_checked(
    snapshot: &dyn Snapshot,
    limits: &Limits,
    allowances: Option<&Allowances>,
    reuse: Option<&Reuse>,
) -> Result<Loaded, SourceError> {
    let deadline = Instant::now() + limits.max_load_time;
    let collected = collect(snapshot, limits, deadline, reuse)?;
    let mut findings = collected.findings;
    // NB: parsing is bounded per file but not in sum; files not parsed
    // by the deadline are left out and the revision is invalid.
    let parsed = super::parallel::map(&collected.files, |raw| {
        (Instant::now() <= deadline).then(|| parse(raw))
    });
    if parsed.iter().any(Option::is_none) && !findings.iter().any(|f| f.rule == TIMED_OUT) {
        findings.push(timed_out(MANIFEST, limits));
    }
    let mut parsed: Vec<Parsed<'_>> = parsed.into_iter().flatten().collect();
    if let Some(reuse) = reuse {
        let mut used = Vec::with_capacity(parsed.len());
        for p in &mut parsed {
            if let Some((key, checked)) = p.reusable() {
                p.checked = Some(checked.clone());
                used.push((key, checked));
            }
        }
        reuse.keep(used);
    }
    findings.extend(parsed.iter().flat_map(|p| p.findings.iter().cloned()));
    let mut assembled = assemble(snapshot.revision().clone(), &parsed);
    findings.append(&mut assembled.findings);
    let mut semantic = validate::check(&assembled.draft, &collected.env_dirs, &assembled.strays);
    if let Some(allowances) = allowances {
        semantic.extend(super::allow::check(
            &assembled.draft,
            &assembled.strays,
            allowances,
        ));
    }
    // NB: what was checked of a salvaged file is reported where it is
    // written, and not at all where it may come from the salvage.
    let mut cuts = assembled.cuts;
    cuts.extend(
        parsed
            .iter()
            .filter(|p| !p.cuts.is_empty())
            .map(|p| (p.raw.path.clone(), p.cuts.clone())),
    );
    semantic.retain_mut(|f| match cuts.get(&f.file) {
        None => true,
        Some(cuts) => salvage::restore(&f.pointer, cuts)
            .map(|pointer| f.pointer = pointer)
            .is_some(),
    });
    findings.append(&mut semantic);

    let texts: HashMap<&str, &str> = collected
        .files
        .iter()
        .map(|f| (f.path.as_str(), &*f.text))
        .collect();
    locate(&mut findings, &texts);
    finding::sort(&mut findings);
    findings.dedup();
    let sources = findings
        .iter()
        .filter_map(|f| {
            texts
                .get(f.file.as_str())
                .map(|t| (f.file.clone(), t.to_string()))
        })
        .collect();
    let repository = (!findings.iter().any(Finding::is_error)).then_some(assembled.draft);
    Ok(Loaded {
        revision: snapshot.revision().clone(),
        repository,
        findings,
        sources,
        message: snapshot.message().map(str::to_owned),
    })
}

/// The rule of a load that ran out of time.
const TIMED_OUT: &str = "repo.load-timeout";

fn timed_out(path: &str, limits: &Limits) -> Finding {
    Finding::error(
        TIMED_OUT,
        path,
        format!(
            "loading this revision took longer than {:?}; stopped here and the revision counts as invalid",
            limits.max_load_time
        ),
    )
    .hint("a policy repository loads in seconds; is it holding something other than policy?")
}

/// A file read from the snapshot, not yet parsed.
struct RawFile {
    path: String,
    kind: FileKind,
    text: Arc<str>,
    /// For an environment's pack that shares a base pack's name: that name.
    overlays: Option<String>,
    /// Its git blob, when the snapshot is of a commit.
    blob: Option<BlobId>,
    /// What an earlier load made of the same blob at the same path.
    reused: Option<Arc<Checked>>,
}

impl RawFile {
    fn key(&self) -> Option<Key> {
        Some(Key {
            path: self.path.clone(),
            overlay: self.overlays.is_some(),
            blob: self.blob?,
        })
    }
}

struct Collected {
    files: Vec<RawFile>,
    /// Every directory under `environments/`, whether it loaded or not.
    env_dirs: Vec<String>,
    findings: Vec<Finding>,
}

fn collect(
    snapshot: &dyn Snapshot,
    limits: &Limits,
    deadline: Instant,
    reuse: Option<&Reuse>,
) -> Result<Collected, SourceError> {
    let mut reader = Reader {
        snapshot,
        limits,
        deadline,
        reuse,
        files: Vec::new(),
        findings: Vec::new(),
        spent: Spent::default(),
    };
    if reader.read(MANIFEST, FileKind::Manifest, None)?.is_none() {
        reader.findings.push(
            Finding::error(
                "repo.manifest-missing",
                MANIFEST,
                "no sluice.yaml at the repository root",
            )
            .hint("is --repo pointing at a Sluice config repository? `sluice init` makes one"),
        );
    }
    let base_names = reader.read_packs(BASE_PACKS, &HashSet::new())?;
    reader.read_evals(suite::SUITES_DIR, suite::SUITE_SUFFIX, FileKind::Suite)?;
    reader.read_evals(
        suite::FIXTURES_DIR,
        suite::FIXTURE_SUFFIX,
        FileKind::Fixture,
    )?;
    let mut env_dirs = Vec::new();
    for name in reader.list(ENVIRONMENTS)? {
        let dir = format!("{ENVIRONMENTS}/{name}");
        match reader.resolve(&dir)? {
            Some(Resolved::Dir { .. }) => {}
            _ => continue,
        }
        if !reader.spend(&dir, 0) {
            break;
        }
        env_dirs.push(name);
        reader.read_environment(&dir, &base_names)?;
    }
    Ok(Collected {
        files: reader.files,
        env_dirs,
        findings: reader.findings,
    })
}

struct Reader<'a> {
    snapshot: &'a dyn Snapshot,
    limits: &'a Limits,
    deadline: Instant,
    reuse: Option<&'a Reuse>,
    files: Vec<RawFile>,
    findings: Vec<Finding>,
    spent: Spent,
}

/// What reading a revision has cost so far.
#[derive(Default)]
struct Spent {
    entries: usize,
    bytes: u64,
    exhausted: bool,
}

impl Reader<'_> {
    /// Counts an entry (and the bytes it will cost); false once the
    /// revision is over its budget or its time, which is reported once,
    /// where it tripped.
    fn spend(&mut self, path: &str, bytes: u64) -> bool {
        if self.spent.exhausted {
            return false;
        }
        self.spent.entries += 1;
        self.spent.bytes += bytes;
        let limits = self.limits;
        if self.spent.entries > limits.max_entries || self.spent.bytes > limits.max_total_bytes {
            self.over_budget(path);
            return false;
        }
        if Instant::now() > self.deadline {
            self.spent.exhausted = true;
            self.findings.push(timed_out(path, limits));
            return false;
        }
        true
    }

    /// Stops reading: the revision is over its budget (reported once).
    fn over_budget(&mut self, path: &str) {
        if std::mem::replace(&mut self.spent.exhausted, true) {
            return;
        }
        let limits = self.limits;
        self.findings.push(
            Finding::error(
                "repo.too-large",
                path,
                format!(
                    "the repository is over Sluice's budget of {} entries or {} MiB; stopped reading here",
                    limits.max_entries,
                    limits.max_total_bytes >> 20
                ),
            )
            .hint("a policy repository is small; is --repo pointing at the right repository?"),
        );
    }

    /// Follows links; a link leaving the repository or looping is a finding.
    fn resolve(&mut self, path: &str) -> Result<Option<Resolved>, SourceError> {
        match resolve(self.snapshot, path) {
            Ok(resolved) => Ok(Some(resolved)),
            Err(ResolveError::Source(e)) => self.too_large(path, e).map(|()| None),
            Err(e @ ResolveError::Escapes { .. }) => {
                self.findings.push(
                    Finding::error("file.symlink-escape", path, e.to_string())
                        .hint("links may point only at files inside the repository"),
                );
                Ok(None)
            }
            Err(e @ ResolveError::Loop { .. }) => {
                self.findings
                    .push(Finding::error("file.symlink-loop", path, e.to_string()));
                Ok(None)
            }
        }
    }

    /// Entry names of a directory (following links), or none; at most
    /// what is left of the entry budget, so a huge directory is not read
    /// whole. A name Sluice cannot read is a finding, never a silent gap.
    fn list(&mut self, dir: &str) -> Result<Vec<String>, SourceError> {
        let Some(Resolved::Dir { path }) = self.resolve(dir)? else {
            return Ok(Vec::new());
        };
        let left = self.limits.max_entries.saturating_sub(self.spent.entries);
        let listing = match self.snapshot.list_dir(&path, left) {
            Ok(listing) => listing,
            Err(e) => return self.too_large(dir, e).map(|()| Vec::new()),
        };
        for name in &listing.unreadable {
            self.findings.push(
                Finding::error(
                    "file.name-not-utf8",
                    format!("{dir}/{name}"),
                    "the name is not valid UTF-8, so Sluice cannot read this entry (a pack or an environment here would be missing)",
                )
                .hint("rename it using UTF-8 (`git mv`)"),
            );
        }
        if listing.truncated {
            self.over_budget(dir);
        }
        Ok(listing.names)
    }

    /// A source error that is the content's fault (an object over Sluice's
    /// bounds) becomes a finding; any other is returned.
    fn too_large(&mut self, path: &str, e: SourceError) -> Result<(), SourceError> {
        match e {
            SourceError::TooLarge { .. } => {
                self.findings.push(
                    Finding::error("file.too-large", path, e.to_string())
                        .hint("a policy repository holds small files and short links"),
                );
                Ok(())
            }
            e => Err(e),
        }
    }

    /// Reads one file into the list; `None` when it is missing or unreadable
    /// (a finding says why, except for a plain absence).
    fn read(
        &mut self,
        path: &str,
        kind: FileKind,
        overlays: Option<String>,
    ) -> Result<Option<()>, SourceError> {
        // NB: a blob id is given only for a regular file reached without
        // links, so a file an earlier load made something of is taken as
        // it was: no link to follow, no object to read.
        let blob = self.reuse.and_then(|_| self.snapshot.blob_id(path));
        let mut file = RawFile {
            path: path.to_owned(),
            kind,
            text: Arc::from(""),
            overlays,
            blob,
            reused: None,
        };
        let max = self.limits.max_file_bytes;
        if let (Some(reuse), Some(key)) = (self.reuse, file.key())
            && let Some(checked) = reuse.get(&key)
            && checked.text.len() as u64 <= max
        {
            if self.spend(path, checked.text.len() as u64) {
                file.text = checked.text.clone();
                file.reused = Some(checked);
                self.files.push(file);
            }
            return Ok(Some(()));
        }
        let (real, size) = match self.resolve(path)? {
            None => return Ok(Some(())),
            Some(Resolved::Missing) => return Ok(None),
            Some(Resolved::File { path, size }) => (path, size),
            Some(Resolved::Dir { .. } | Resolved::Other { .. }) => {
                self.findings.push(Finding::error(
                    "file.not-a-file",
                    path,
                    "expected a YAML file, found a directory or special file",
                ));
                return Ok(Some(()));
            }
        };
        if !self.spend(path, size.min(max)) {
            return Ok(Some(()));
        }
        let bytes = if size > max {
            None
        } else {
            Some(self.snapshot.read_file(&real, max)?).filter(|b| b.len() as u64 <= max)
        };
        let Some(bytes) = bytes else {
            self.findings.push(
                Finding::error(
                    "file.too-large",
                    path,
                    format!("file is {size} bytes, over the limit of {max}"),
                )
                .hint("policy files are small; raise the limit with --max-file-size if this one must be large"),
            );
            return Ok(Some(()));
        };
        match yaml::decode(path, bytes) {
            Ok(text) => {
                file.text = text.into();
                self.files.push(file);
            }
            Err(finding) => self.findings.push(*finding),
        }
        Ok(Some(()))
    }

    /// Reads every pack file of a directory; returns the pack names found.
    fn read_packs(
        &mut self,
        dir: &str,
        base: &HashSet<String>,
    ) -> Result<HashSet<String>, SourceError> {
        // NB: sets, not scans of the names so far: a directory of 100,000
        // packs must not cost 5·10⁹ comparisons.
        let mut names: HashSet<String> = HashSet::new();
        for entry in self.list(dir)? {
            let path = format!("{dir}/{entry}");
            if self.spent.exhausted {
                break;
            }
            let Some(name) = pack_name(&entry) else {
                if !self.spend(&path, 0) {
                    break;
                }
                self.findings.push(
                    Finding::warning("file.ignored", &path, "not a pack file; ignored")
                        .hint("pack files end in .yaml or .yml"),
                );
                continue;
            };
            if !names.insert(name.to_owned()) {
                self.findings.push(Finding::error(
                    "pack.name-duplicate",
                    &path,
                    format!("a second file for pack `{name}` (both .yaml and .yml)"),
                ));
                continue;
            }
            let overlays = base.contains(name).then(|| name.to_owned());
            self.read(&path, FileKind::Pack, overlays)?;
        }
        Ok(names)
    }

    /// Reads every suite or fixture file of `dir` (a name ending in
    /// `suffix`), under the same budget as every other file; anything else
    /// there is a warning.
    fn read_evals(&mut self, dir: &str, suffix: &str, kind: FileKind) -> Result<(), SourceError> {
        let mut names: HashSet<String> = HashSet::new();
        for entry in self.list(dir)? {
            let path = format!("{dir}/{entry}");
            if self.spent.exhausted {
                break;
            }
            let Some(name) = suite::stem(&entry, suffix) else {
                if !self.spend(&path, 0) {
                    break;
                }
                self.findings.push(
                    Finding::warning("file.ignored", &path, format!("not a {dir} file; ignored"))
                        .hint(format!("files here end in {suffix}")),
                );
                continue;
            };
            if !names.insert(name.to_owned()) {
                self.findings.push(Finding::error(
                    "eval.name-duplicate",
                    &path,
                    format!("a second file for `{name}` (both .yaml and .yml)"),
                ));
                continue;
            }
            self.read(&path, kind, None)?;
        }
        Ok(())
    }

    fn read_environment(&mut self, dir: &str, base: &HashSet<String>) -> Result<(), SourceError> {
        for (file, kind) in [
            (ENVIRONMENT_FILE, FileKind::Environment),
            (GATEWAYS_FILE, FileKind::Gateways),
        ] {
            let path = format!("{dir}/{file}");
            if self.read(&path, kind, None)?.is_none() {
                self.findings.push(Finding::error(
                    "env.missing-file",
                    &path,
                    format!("every environment needs {file}"),
                ));
            }
        }
        // Optional: only environments with LiteLLM gateways have one.
        self.read(&format!("{dir}/{LITELLM_FILE}"), FileKind::Litellm, None)?;
        let known = [ENVIRONMENT_FILE, GATEWAYS_FILE, LITELLM_FILE, PACKS_DIR];
        for entry in self.list(dir)? {
            if !known.contains(&entry.as_str()) {
                if !self.spend(&format!("{dir}/{entry}"), 0) {
                    break;
                }
                let hint = schema::did_you_mean(&entry, known.into_iter())
                    .map(|m| format!("did you mean `{m}`?"))
                    .unwrap_or_else(|| format!("an environment holds {}", known.join(", ")));
                self.findings.push(
                    Finding::warning(
                        "env.unknown-file",
                        format!("{dir}/{entry}"),
                        "not read by Sluice",
                    )
                    .hint(hint),
                );
            }
        }
        self.read_packs(&format!("{dir}/{PACKS_DIR}"), base)?;
        Ok(())
    }
}

/// The pack name a file name gives, if it is a pack file.
fn pack_name(file_name: &str) -> Option<&str> {
    file_name
        .strip_suffix(".yaml")
        .or_else(|| file_name.strip_suffix(".yml"))
        .filter(|n| !n.is_empty() && !n.starts_with('.'))
}

/// What a file holds once it passed the first pass, typed in the worker
/// that parsed it so the JSON values can be dropped early. Shared, so a
/// later load reuses it (see [`Reuse`]).
#[derive(Clone)]
pub(super) enum Content {
    Manifest(Arc<Manifest>),
    Environment(Arc<EnvironmentSpec>),
    Gateways(Arc<GatewaysFile>),
    Pack(Arc<Pack>),
    /// A base pack, with its value kept for the overlays merged over it.
    BasePack(Arc<Pack>, Arc<Value>),
    /// An environment's merge patch over the base pack of the same name.
    Overlay(Arc<Value>),
    Litellm(Arc<LitellmSettings>),
    Suite(Arc<Suite>),
    Fixture(Arc<Fixture>),
}

/// A file after the YAML parse and (unless it is an overlay) the schema check.
struct Parsed<'a> {
    raw: &'a RawFile,
    /// What a later load reuses of it, when loading with a [`Reuse`].
    checked: Option<Arc<Checked>>,
    /// Present when the file met its schema, or when the part of it that
    /// does could be salvaged (then `cuts` says what was left out).
    content: Option<Content>,
    findings: Vec<Finding>,
    cuts: Vec<Cut>,
}

/// What the first pass made of one file's text: all a later load with the
/// same blob at the same path needs.
pub(super) struct Checked {
    pub(super) text: Arc<str>,
    content: Option<Content>,
    findings: Vec<Finding>,
    cuts: Vec<Cut>,
    /// For an overlay: its merge over the base pack it was last merged
    /// over, so an unchanged overlay over an unchanged base is not merged
    /// and checked again.
    merged: std::sync::Mutex<Option<Arc<Merged>>>,
}

/// One overlay merged over one base pack, and what that found.
struct Merged {
    base: Key,
    effective: Option<EffectivePack>,
    findings: Vec<Finding>,
    cuts: Option<Vec<Cut>>,
}

impl Parsed<'_> {
    /// What a later load may reuse of this file, when it came from a git blob.
    fn reusable(&self) -> Option<(Key, Arc<Checked>)> {
        let key = self.raw.key()?;
        let checked = self.checked.clone().unwrap_or_else(|| {
            Arc::new(Checked {
                text: self.raw.text.clone(),
                content: self.content.clone(),
                findings: self.findings.clone(),
                cuts: self.cuts.clone(),
                merged: Default::default(),
            })
        });
        Some((key, checked))
    }
}

fn parse(raw: &RawFile) -> Parsed<'_> {
    if let Some(checked) = &raw.reused {
        return Parsed {
            raw,
            checked: Some(checked.clone()),
            content: checked.content.clone(),
            findings: checked.findings.clone(),
            cuts: checked.cuts.clone(),
        };
    }
    let mut findings = Vec::new();
    let mut cuts = Vec::new();
    let content = match yaml::parse(&raw.path, &raw.text) {
        Err(finding) => {
            findings.push(*finding);
            None
        }
        Ok(value) if raw.overlays.is_some() => Some(Content::Overlay(Arc::new(value))),
        Ok(value) => {
            findings = schema::check(raw.kind, &raw.path, &value);
            if findings.is_empty() {
                typed(raw, value, &mut findings)
            } else {
                salvaged(raw, &value, &findings).map(|(content, salvage_cuts)| {
                    cuts = salvage_cuts;
                    content
                })
            }
        }
    };
    Parsed {
        raw,
        checked: None,
        content,
        findings,
        cuts,
    }
}

/// The typed part of a file that fails its schema, for the semantic rules
/// (see [`salvage`]). Only for environments, gateways and packs: what is
/// cut from a suite, a fixture, LiteLLM settings or the manifest changes
/// what other files are checked against, and would be findings there.
fn salvaged(raw: &RawFile, value: &Value, findings: &[Finding]) -> Option<(Content, Vec<Cut>)> {
    if !matches!(
        raw.kind,
        FileKind::Environment | FileKind::Gateways | FileKind::Pack
    ) {
        return None;
    }
    let salvaged = salvage::salvage(raw.kind, &raw.path, value, findings)?;
    // NB: a salvaged value the types still refuse is left out silently:
    // its schema findings already say what is wrong.
    let content = typed(raw, salvaged.value, &mut Vec::new())?;
    Some((content, salvaged.cuts))
}

/// The typed content of a file that met its schema. A file that meets the
/// schema but not the type would be a bug in the schema; it is still a finding.
fn typed(raw: &RawFile, value: Value, findings: &mut Vec<Finding>) -> Option<Content> {
    fn into<T: DeserializeOwned>(value: &Value) -> Result<T, serde_json::Error> {
        T::deserialize(value)
    }
    let content = match raw.kind {
        FileKind::Manifest => into(&value).map(|m| Content::Manifest(Arc::new(m))),
        FileKind::Environment => into(&value).map(|e| Content::Environment(Arc::new(e))),
        FileKind::Gateways => into(&value).map(|g| Content::Gateways(Arc::new(g))),
        FileKind::Pack if raw.path.starts_with(BASE_PACKS) => {
            into(&value).map(|pack| Content::BasePack(Arc::new(pack), Arc::new(value)))
        }
        FileKind::Pack => into(&value).map(|pack| Content::Pack(Arc::new(pack))),
        FileKind::Litellm => into(&value).map(|settings| Content::Litellm(Arc::new(settings))),
        FileKind::Suite => into(&value).map(|s| Content::Suite(Arc::new(s))),
        FileKind::Fixture => into(&value).map(|f| Content::Fixture(Arc::new(f))),
        FileKind::Document => unreachable!("repositories hold no rendered documents"),
    };
    content
        .map_err(|e| findings.push(Finding::error("schema.invalid", &raw.path, e.to_string())))
        .ok()
}

struct Assembled {
    draft: Repository,
    findings: Vec<Finding>,
    strays: validate::Strays,
    /// What was cut from overlays merged into packs that fail the schema.
    cuts: HashMap<String, Vec<Cut>>,
}

/// Builds the typed repository from the files that passed the first pass,
/// merging overlays over their base packs and checking the result.
fn assemble(revision: Revision, parsed: &[Parsed<'_>]) -> Assembled {
    let mut findings = Vec::new();
    let mut cuts = HashMap::new();
    let manifest = parsed
        .iter()
        .find_map(|p| match &p.content {
            Some(Content::Manifest(m)) => Some(Manifest::clone(m)),
            _ => None,
        })
        .unwrap_or_default();

    let mut base_values: HashMap<&str, (&str, &Value, Option<Key>)> = HashMap::new();
    let mut base_packs = BTreeMap::new();
    for p in parsed {
        if let Some(Content::BasePack(pack, value)) = &p.content {
            let name = file_stem(&p.raw.path);
            // NB: an overlay over a salvaged base would be checked against
            // what was cut from another file: it is left out, as before.
            if p.cuts.is_empty() {
                base_values.insert(name, (p.raw.path.as_str(), value.as_ref(), p.raw.key()));
            }
            base_packs.insert(
                name.to_owned(),
                PackFile {
                    file: p.raw.path.clone(),
                    pack: pack.clone(),
                },
            );
        }
    }
    let gateways: HashMap<&str, &GatewaysFile> = parsed
        .iter()
        .filter_map(|p| match &p.content {
            Some(Content::Gateways(g)) => Some((p.raw.path.as_str(), g.as_ref())),
            _ => None,
        })
        .collect();
    let mut env_packs: HashMap<&str, Vec<&Parsed<'_>>> = HashMap::new();
    for p in parsed
        .iter()
        .filter(|p| p.raw.path.starts_with(ENVIRONMENTS))
    {
        if matches!(p.content, Some(Content::Pack(_) | Content::Overlay(_))) {
            let dir = parent_dir(parent_dir(&p.raw.path));
            env_packs.entry(dir).or_default().push(p);
        }
    }

    let mut environments = BTreeMap::new();
    for p in parsed {
        let Some(Content::Environment(spec)) = &p.content else {
            continue;
        };
        let dir = parent_dir(&p.raw.path);
        let slug = file_stem(dir).to_owned();
        let gateways_file = format!("{dir}/{GATEWAYS_FILE}");
        let mut packs: BTreeMap<String, EffectivePack> = base_packs
            .iter()
            .map(|(name, base)| {
                let source = PackSource::Base {
                    file: base.file.clone(),
                };
                (
                    name.clone(),
                    EffectivePack {
                        pack: base.pack.clone(),
                        source,
                    },
                )
            })
            .collect();
        for own in env_packs.get(dir).into_iter().flatten() {
            let name = file_stem(&own.raw.path).to_owned();
            let effective = match &own.content {
                Some(Content::Overlay(patch)) => {
                    base_values
                        .get(name.as_str())
                        .and_then(|(base_file, base, base_key)| {
                            merged(
                                own,
                                patch,
                                (base_file, base, base_key.as_ref()),
                                &mut findings,
                                &mut cuts,
                            )
                        })
                }
                Some(Content::Pack(pack)) => Some(EffectivePack {
                    pack: pack.clone(),
                    source: PackSource::Own {
                        file: own.raw.path.clone(),
                    },
                }),
                _ => None,
            };
            match effective {
                Some(effective) => {
                    packs.insert(name, effective);
                }
                None => {
                    packs.remove(&name);
                }
            }
        }
        let litellm_file = format!("{dir}/{LITELLM_FILE}");
        let litellm = parsed.iter().find_map(|p| match &p.content {
            Some(Content::Litellm(settings)) if p.raw.path == litellm_file => {
                Some(settings.clone())
            }
            _ => None,
        });
        environments.insert(
            slug.clone(),
            Environment {
                slug,
                spec_file: p.raw.path.clone(),
                spec: EnvironmentSpec::clone(spec),
                litellm,
                gateways: gateways
                    .get(gateways_file.as_str())
                    .map(|g| g.gateways.clone())
                    .unwrap_or_default(),
                gateways_file,
                packs,
            },
        );
    }
    let mut strays = strays(parsed, &environments);
    let mut suites = BTreeMap::new();
    let mut fixtures = BTreeMap::new();
    for p in parsed {
        let file = p.raw.path.clone();
        let name = |suffix| {
            let entry = file.rsplit('/').next().unwrap_or(&file);
            suite::stem(entry, suffix).unwrap_or(entry).to_owned()
        };
        match &p.content {
            Some(Content::Suite(s)) => {
                let name = name(suite::SUITE_SUFFIX);
                suites.insert(
                    name,
                    SuiteFile {
                        file,
                        suite: s.clone(),
                    },
                );
            }
            None if p.raw.kind == FileKind::Fixture => {
                strays.broken_fixtures.insert(name(suite::FIXTURE_SUFFIX));
            }
            Some(Content::Fixture(f)) => {
                let name = name(suite::FIXTURE_SUFFIX);
                fixtures.insert(
                    name,
                    FixtureFile {
                        file,
                        fixture: f.clone(),
                    },
                );
            }
            _ => {}
        }
    }
    Assembled {
        draft: Repository {
            revision,
            manifest,
            base_packs,
            environments,
            suites,
            fixtures,
        },
        findings,
        strays,
        cuts,
    }
}

/// Gateways and own packs of environments whose environment.yaml did not
/// load: still checked, so one broken file does not hide the findings of
/// its neighbours.
fn strays(parsed: &[Parsed<'_>], environments: &BTreeMap<String, Environment>) -> validate::Strays {
    let loaded = |path: &str| {
        let dir = if path.contains(&format!("/{PACKS_DIR}/")) {
            parent_dir(parent_dir(path))
        } else {
            parent_dir(path)
        };
        environments.contains_key(file_stem(dir))
    };
    let mut strays = validate::Strays::default();
    for p in parsed
        .iter()
        .filter(|p| p.raw.path.starts_with(ENVIRONMENTS) && !loaded(&p.raw.path))
    {
        match &p.content {
            Some(Content::Gateways(g)) => strays
                .gateways
                .push((p.raw.path.clone(), g.gateways.clone())),
            Some(Content::Pack(pack)) => strays.packs.push((p.raw.path.clone(), pack.clone())),
            _ => {}
        }
    }
    strays
}

/// [`overlay`], or what the same merge gave an earlier load: the overlay
/// reused (see [`Reuse`]) and last merged over the same base blob.
fn merged(
    own: &Parsed<'_>,
    patch: &Value,
    (base_file, base, base_key): (&str, &Value, Option<&Key>),
    findings: &mut Vec<Finding>,
    cuts: &mut HashMap<String, Vec<Cut>>,
) -> Option<EffectivePack> {
    let (Some(checked), Some(base_key)) = (&own.checked, base_key) else {
        return overlay(own, patch, base_file, base, findings, cuts);
    };
    let mut slot = checked.merged.lock().unwrap_or_else(|e| e.into_inner());
    let memo = match slot.as_ref().filter(|m| &m.base == base_key) {
        Some(memo) => memo.clone(),
        None => {
            let mut found = Vec::new();
            let mut cut = HashMap::new();
            let effective = overlay(own, patch, base_file, base, &mut found, &mut cut);
            let memo = Arc::new(Merged {
                base: base_key.clone(),
                effective,
                findings: found,
                cuts: cut.remove(&own.raw.path),
            });
            *slot = Some(memo.clone());
            memo
        }
    };
    findings.extend(memo.findings.iter().cloned());
    if let Some(cut) = &memo.cuts {
        cuts.insert(own.raw.path.clone(), cut.clone());
    }
    memo.effective.clone()
}

/// Merges an overlay over its base pack and checks the result as a whole
/// pack; a result that fails the schema is salvaged (its cuts go in `cuts`).
fn overlay(
    own: &Parsed<'_>,
    patch: &Value,
    base_file: &str,
    base: &Value,
    findings: &mut Vec<Finding>,
    cuts: &mut HashMap<String, Vec<Cut>>,
) -> Option<EffectivePack> {
    let mut merged = base.clone();
    merge_patch(&mut merged, patch);
    let problems = schema::check(FileKind::Pack, &own.raw.path, &merged);
    let pack = if problems.is_empty() {
        Pack::deserialize(&merged)
            .map_err(|e| {
                findings.push(Finding::error(
                    "schema.invalid",
                    &own.raw.path,
                    e.to_string(),
                ))
            })
            .ok()?
    } else {
        let salvaged = salvage::salvage(FileKind::Pack, &own.raw.path, &merged, &problems);
        let hint = format!("checked after merging this overlay over {base_file}");
        findings.extend(problems.into_iter().map(|f| {
            let hint = f.hint.clone().unwrap_or_else(|| hint.clone());
            f.hint(hint)
        }));
        // NB: as for a file, a salvage the types refuse is left out silently.
        let salvaged = salvaged?;
        let pack = Pack::deserialize(&salvaged.value).ok()?;
        cuts.insert(own.raw.path.clone(), salvaged.cuts);
        pack
    };
    Some(EffectivePack {
        pack: Arc::new(pack),
        source: PackSource::Overlay {
            base: base_file.to_owned(),
            overlay: own.raw.path.clone(),
        },
    })
}

fn parent_dir(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

/// A file's name without its directory and `.yaml`/`.yml` (a pack's name).
pub(super) fn file_stem(path: &str) -> &str {
    let name = path.rsplit('/').next().unwrap_or(path);
    pack_name(name).unwrap_or(name)
}

/// Fills in line and column from each finding's pointer, indexing only the
/// files that have findings.
fn locate(findings: &mut [Finding], texts: &HashMap<&str, &str>) {
    let mut indexes: HashMap<String, SpanIndex> = HashMap::new();
    for finding in findings.iter_mut().filter(|f| f.line.is_none()) {
        let Some(text) = texts.get(finding.file.as_str()) else {
            continue;
        };
        let index = indexes
            .entry(finding.file.clone())
            .or_insert_with(|| SpanIndex::build(text));
        finding.place(index.locate(&finding.pointer, finding.at_key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> crate::source::WorkTree {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config-repo");
        crate::source::WorkTree::open(&root).unwrap()
    }

    fn too_large(limits: &Limits) -> Vec<Finding> {
        let loaded = load(&example(), limits).unwrap();
        assert!(
            loaded.repository.is_none(),
            "an over-budget revision is invalid"
        );
        loaded
            .findings
            .into_iter()
            .filter(|f| f.rule == "repo.too-large")
            .collect()
    }

    #[test]
    fn a_revision_over_the_entry_budget_stops_with_one_finding() {
        let limits = Limits {
            max_entries: 5,
            ..Limits::default()
        };
        assert_eq!(too_large(&limits).len(), 1);
    }

    #[test]
    fn a_revision_over_the_byte_budget_stops_with_one_finding() {
        let limits = Limits {
            max_total_bytes: 600,
            ..Limits::default()
        };
        assert_eq!(too_large(&limits).len(), 1);
    }

    #[test]
    fn a_load_past_its_deadline_stops_with_one_finding() {
        // NB: a zero deadline has passed by the first entry read: the
        // same path a slow revision takes, without waiting for one.
        let limits = Limits {
            max_load_time: Duration::ZERO,
            ..Limits::default()
        };
        let loaded = load(&example(), &limits).unwrap();
        assert!(
            loaded.repository.is_none(),
            "a timed-out revision is invalid"
        );
        let timed_out: Vec<_> = loaded
            .findings
            .iter()
            .filter(|f| f.rule == TIMED_OUT)
            .collect();
        assert_eq!(timed_out.len(), 1, "{:?}", loaded.findings);
    }

    #[test]
    fn a_directory_past_the_entry_budget_is_not_listed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let packs = dir.path().join("base/packs");
        std::fs::create_dir_all(&packs).unwrap();
        for i in 0..50 {
            std::fs::write(packs.join(format!("p{i}.yaml")), "").unwrap();
        }
        let tree = crate::source::WorkTree::open(dir.path()).unwrap();
        let listing = crate::source::Snapshot::list_dir(&tree, "base/packs", 10).unwrap();
        assert_eq!(listing.names.len(), 10);
        assert!(listing.truncated);
        let limits = Limits {
            max_entries: 10,
            ..Limits::default()
        };
        let loaded = load(&tree, &limits).unwrap();
        let over: Vec<_> = loaded
            .findings
            .iter()
            .filter(|f| f.rule == "repo.too-large")
            .collect();
        assert_eq!(over.len(), 1, "{:?}", loaded.findings);
    }

    /// The example committed in a fresh git repository.
    struct Committed(tempfile::TempDir);

    impl Committed {
        fn example() -> Committed {
            let committed = Committed(crate::config::copy_example());
            committed.git(&["init", "-q", "-b", "main"]);
            committed.commit("example");
            committed
        }

        fn git(&self, args: &[&str]) {
            let status = std::process::Command::new("git")
                .current_dir(self.0.path())
                .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
                .args(args)
                .status()
                .unwrap();
            assert!(status.success(), "git {args:?}");
        }

        fn write(&self, path: &str, text: &str) {
            let path = self.0.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }

        fn commit(&self, message: &str) -> crate::source::GitSnapshot {
            self.git(&["add", "-A"]);
            self.git(&["commit", "-q", "--allow-empty", "-m", message]);
            crate::source::GitSnapshot::open(self.0.path(), "HEAD").unwrap()
        }
    }

    /// A snapshot that counts the files read through it.
    struct Counting<'a>(&'a dyn Snapshot, std::cell::Cell<usize>);

    impl Snapshot for Counting<'_> {
        fn revision(&self) -> &Revision {
            self.0.revision()
        }
        fn lstat(&self, path: &str) -> Result<Option<crate::source::Node>, SourceError> {
            self.0.lstat(path)
        }
        fn list_dir(
            &self,
            path: &str,
            max_entries: usize,
        ) -> Result<crate::source::Listing, SourceError> {
            self.0.list_dir(path, max_entries)
        }
        fn read_file(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>, SourceError> {
            self.1.set(self.1.get() + 1);
            self.0.read_file(path, max_bytes)
        }
        fn message(&self) -> Option<&str> {
            self.0.message()
        }
        fn blob_id(&self, path: &str) -> Option<BlobId> {
            self.0.blob_id(path)
        }
    }

    fn allow_all() -> Allowances {
        let vars: Vec<crate::config::allow::VariableRule> = vec!["*=*".parse().unwrap()];
        let urls: Vec<crate::config::allow::UrlRule> = vec!["*=*".parse().unwrap()];
        Allowances::new(vars, urls)
    }

    /// The outcome of a load as the tests compare it: every finding (with
    /// its place) and every environment's version.
    fn outcome(loaded: &Loaded) -> (Vec<Finding>, Vec<(String, String)>) {
        let versions = loaded
            .repository
            .as_ref()
            .map(|repo| {
                repo.environments
                    .values()
                    .map(|env| {
                        let (_, digest, _) = super::super::render::environment_version(repo, env);
                        (env.slug.clone(), digest.to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        (loaded.findings.clone(), versions)
    }

    #[test]
    fn a_commit_changing_one_file_reads_that_file_only_and_loads_as_a_fresh_load_does() {
        let repo = Committed::example();
        let limits = Limits::default();
        let allowances = allow_all();
        let reuse = Reuse::new();
        let first = repo.commit("again");
        let counted = Counting(&first, Default::default());
        let fresh = load_reusing(&counted, &limits, &allowances, &reuse).unwrap();
        let files = counted.1.get();
        assert!(files > 5, "the first load reads every file ({files})");
        assert_eq!(reuse.len(), files);

        let staging = "environments/staging/environment.yaml";
        let text = std::fs::read_to_string(repo.0.path().join(staging)).unwrap();
        repo.write(staging, &text.replace("Staging", "Staging, renamed"));
        let second = repo.commit("rename staging");
        let counted = Counting(&second, Default::default());
        let reused = load_reusing(&counted, &limits, &allowances, &reuse).unwrap();
        assert_eq!(counted.1.get(), 1, "only the changed file is read");
        assert_eq!(
            outcome(&reused),
            outcome(&load_with(&second, &limits, &allowances).unwrap())
        );
        assert!(!fresh.has_errors(), "{:?}", fresh.findings);
    }

    #[test]
    fn reused_files_keep_their_findings_and_places() {
        let repo = Committed::example();
        let limits = Limits::default();
        let allowances = allow_all();
        // A pack with a schema error and a semantic one, in a file that
        // does not change between the two loads.
        let broken = "environments/eval/packs/red-team.yaml";
        let text = std::fs::read_to_string(repo.0.path().join(broken)).unwrap();
        repo.write(
            broken,
            &text
                .replace(
                    "sample: 200",
                    "sample: 200\n  rate-limit:\n    requests_per_minute: -1",
                )
                .replace("name: red-team", "name: red-teams"),
        );
        // And an overlay whose merge fails the pack schema.
        let overlay = "environments/production/packs/baseline.yaml";
        let text = std::fs::read_to_string(repo.0.path().join(overlay)).unwrap();
        repo.write(
            overlay,
            &text.replace("action: block\n    pci_mode", "action: mask\n    pci_mode"),
        );
        let first = repo.commit("break red-team and production's baseline");
        let reuse = Reuse::new();
        let before = load_reusing(&first, &limits, &allowances, &reuse).unwrap();
        assert!(before.has_errors(), "{:?}", before.findings);
        repo.write("environments/staging/packs/extra.yaml", "policy: {}\n");
        let second = repo.commit("an unrelated file");
        let reused = load_reusing(&second, &limits, &allowances, &reuse).unwrap();
        let fresh = load_with(&second, &limits, &allowances).unwrap();
        assert_eq!(outcome(&reused), outcome(&fresh));
        let located: Vec<_> = reused
            .findings
            .iter()
            .filter(|f| f.file == broken)
            .collect();
        assert!(
            !located.is_empty() && located.iter().all(|f| f.line.is_some()),
            "{located:?}"
        );
        assert!(reused.sources.contains_key(broken));
        let rules = |file: &str| -> Vec<&str> {
            let mut rules: Vec<&str> = reused
                .findings
                .iter()
                .filter(|f| f.file == file)
                .map(|f| f.rule)
                .collect();
            rules.dedup();
            rules
        };
        assert!(
            rules(broken).contains(&"pack.name-mismatch"),
            "{:?}",
            reused.findings
        );
        assert!(!rules(overlay).is_empty(), "{:?}", reused.findings);
        // A third load, every file as before: the memos answer alone.
        let third = repo.commit("nothing");
        let again = load_reusing(&third, &limits, &allowances, &reuse).unwrap();
        assert_eq!(outcome(&again), outcome(&fresh));
    }

    #[test]
    fn a_file_that_becomes_an_overlay_is_checked_again() {
        let repo = Committed::example();
        let limits = Limits::default();
        let allowances = allow_all();
        let reuse = Reuse::new();
        let first = repo.commit("again");
        let before = load_reusing(&first, &limits, &allowances, &reuse).unwrap();
        assert!(!before.has_errors(), "{:?}", before.findings);
        // The eval environment's own red-team pack gets a base pack of the
        // same name: the same blob at the same path is now an overlay.
        repo.write(
            "base/packs/red-team.yaml",
            "pack:\n  name: red-team\n  version: 1.0.0\npolicies:\n  chain: [prompt-injection]\npolicy:\n  prompt-injection:\n    action: block\n",
        );
        let second = repo.commit("a base red-team pack");
        let reused = load_reusing(&second, &limits, &allowances, &reuse).unwrap();
        let fresh = load_with(&second, &limits, &allowances).unwrap();
        assert_eq!(outcome(&reused), outcome(&fresh));
        let red_team = |loaded: &Loaded| {
            let repo = loaded.repository.as_ref().unwrap();
            repo.environments["eval"].packs["red-team"].source.clone()
        };
        assert!(
            matches!(red_team(&reused), PackSource::Overlay { .. }),
            "{:?}",
            red_team(&reused)
        );
    }

    #[test]
    fn the_example_is_well_within_the_default_budget() {
        let loaded = load(&example(), &Limits::default()).unwrap();
        assert!(loaded.repository.is_some());
    }
}
