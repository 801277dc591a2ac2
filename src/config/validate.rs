//! The second validation pass: rules that span fields and files. Runs over
//! whatever loaded, so one broken file does not hide the findings of others.

use super::{
    Environment, PackSource, Repository, catalog,
    finding::Finding,
    load::{ENVIRONMENTS, MANIFEST},
    model::{EnvironmentKind, Gateway, Pack},
    schema::did_you_mean,
    yaml::escape,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub const SLUICE_MIN_SLUG: usize = 3;
pub const SLUICE_MAX_SLUG: usize = 50;

/// Every semantic finding about a (possibly partial) repository.
/// Files of environments that did not load (see `load::strays`).
#[derive(Debug, Default)]
pub struct Strays {
    pub gateways: Vec<(String, Vec<Gateway>)>,
    pub packs: Vec<(String, std::sync::Arc<Pack>)>,
    /// Names of fixture files that did not load: a case naming one is not
    /// also a finding.
    pub broken_fixtures: BTreeSet<String>,
}

pub fn check(repo: &Repository, env_dirs: &[String], strays: &Strays) -> Vec<Finding> {
    let mut out = Vec::new();
    if env_dirs.is_empty() {
        out.push(
            Finding::error(
                "repo.no-environments",
                ENVIRONMENTS,
                "the repository has no environments",
            )
            .hint("add environments/<slug>/environment.yaml and gateways.yaml"),
        );
    }
    for base in repo.base_packs.values() {
        check_pack(&base.file, &base.pack, &mut out);
    }
    check_slugs(repo, &mut out);
    for env in repo.environments.values() {
        check_environment(env, &mut out);
        check_gateways(&env.gateways_file, &env.gateways, &mut out);
        for (name, effective) in &env.packs {
            match &effective.source {
                PackSource::Base { .. } => {}
                PackSource::Own { file } => {
                    let pack = &effective.pack;
                    out.extend(pack.memo.checked(file, || {
                        let mut found = Vec::new();
                        check_pack(file, pack, &mut found);
                        found
                    }));
                }
                PackSource::Overlay { overlay, .. } => {
                    let base = repo.base_packs.get(name).map(|b| b.pack.as_ref());
                    out.extend(check_overlay(overlay, name, &effective.pack, base));
                }
            }
        }
    }
    for env in repo.environments.values() {
        if let Some(settings) = &env.litellm {
            check_litellm(repo, env, settings, &mut out);
        }
        for (i, gateway) in env.gateways.iter().enumerate() {
            if gateway.runs_litellm() && env.litellm.is_none() {
                let at = match gateway {
                    Gateway::File(_) | Gateway::Configmap(_) => "format",
                    _ => "driver",
                };
                out.push(
                    Finding::error(
                        "litellm.no-settings",
                        &env.gateways_file,
                        format!(
                            "gateway `{}` writes LiteLLM's config, but the environment has no {}",
                            gateway.name(),
                            super::load::LITELLM_FILE
                        ),
                    )
                    .pointer(format!("/gateways/{i}/{at}"))
                    .hint(format!(
                        "add {} with the model_list its LiteLLM serves",
                        env.litellm_file()
                    )),
                );
            }
        }
    }
    for env in repo.environments.values().filter(|e| e.spec.is_production) {
        check_prerelease(repo, env, &mut out);
    }
    check_promotion(repo, env_dirs, &mut out);
    out.extend(crate::eval::suite::check(
        &repo.suites,
        &repo.fixtures,
        &strays.broken_fixtures,
    ));
    for env in repo.environments.values() {
        check_suite_references(repo, env, &mut out);
    }
    check_file_paths(repo, &mut out);
    for (file, gateways) in &strays.gateways {
        check_gateways(file, gateways, &mut out);
    }
    for (file, pack) in &strays.packs {
        check_pack(file, pack, &mut out);
    }
    out
}

/// Findings about a merged overlay that the overlay itself causes: what the
/// base pack already gets wrong is reported once, at the base.
fn check_overlay(file: &str, name: &str, merged: &Pack, base: Option<&Pack>) -> Vec<Finding> {
    let findings_of = |pack: &Pack, file: &str| {
        let mut found = Vec::new();
        check_pack_body(file, pack, &mut found);
        if pack.pack.name != name {
            found.push(name_mismatch(file, pack, name));
        }
        found
    };
    let inherited: BTreeSet<(&str, String)> = base
        .map(|b| findings_of(b, file))
        .unwrap_or_default()
        .into_iter()
        .map(|f| (f.rule, f.pointer))
        .collect();
    findings_of(merged, file)
        .into_iter()
        .filter(|f| !inherited.contains(&(f.rule, f.pointer.clone())))
        .collect()
}

/// Lowercase letters, digits and hyphens, starting with a letter, 3–50 characters.
/// An environment with LiteLLM settings runs LiteLLM gateways: its
/// settings hold no literal secret, and every setting of its policy that
/// LiteLLM cannot express is a finding at the pack line that sets it
/// (`litellm.unsupported`), before anything is applied: a gateway must not
/// be said to enforce what it cannot.
fn check_litellm(
    repo: &Repository,
    env: &super::Environment,
    settings: &super::model::LitellmSettings,
    out: &mut Vec<Finding>,
) {
    let file = env.litellm_file();
    if let Ok(value) = serde_json::to_value(settings) {
        literal_secrets(&file, &value, "", None, out);
        code_hooks(&file, &value, "", out);
    }
    let document = super::render::policy_document(repo, env);
    for unsupported in crate::gateway::litellm::unsupported(&document) {
        let (file, pointer) = pack_location(repo, env, &unsupported.pointer);
        out.push(
            Finding::error("litellm.unsupported", file, unsupported.message)
                .pointer(pointer)
                .hint("LiteLLM cannot enforce this as written: change the setting, or run this environment on gateways that can"),
        );
    }
}

/// Where a pointer into an environment's document was written: the pack
/// file (`/packs/<p>/settings/<policy>/…` is its `/policy/<policy>/…`, an
/// overlay's line where the overlay sets it) or environment.yaml.
fn pack_location(repo: &Repository, env: &super::Environment, pointer: &str) -> (String, String) {
    if pointer == "/enforcement" {
        return if env.spec.enforcement.is_some() || repo.manifest.defaults.enforcement.is_none() {
            (env.spec_file.clone(), pointer.to_owned())
        } else {
            (MANIFEST.to_owned(), "/defaults/enforcement".to_owned())
        };
    }
    let Some(rest) = pointer.strip_prefix("/packs/") else {
        return (env.spec_file.clone(), String::new());
    };
    let (pack, within) = rest.split_once('/').unwrap_or((rest, ""));
    let within = match within.split_once('/') {
        Some(("settings", rest)) => format!("/policy/{rest}"),
        None if within == "settings" => "/policy".to_owned(),
        Some(("chain", rest)) => format!("/policies/chain/{rest}"),
        None if within == "chain" => "/policies/chain".to_owned(),
        _ => String::new(),
    };
    let file = match env.packs.get(pack).map(|p| &p.source) {
        Some(PackSource::Own { file } | PackSource::Base { file }) => file.clone(),
        Some(PackSource::Overlay { overlay, .. }) => overlay.clone(),
        None => env.spec_file.clone(),
    };
    (file, within)
}

/// Keys whose value LiteLLM imports and runs as Python (`callbacks`,
/// `success_callback`, `custom_auth`, …) or hands requests to: a repository
/// author must not choose code the gateway runs nor where it sends calls
/// (Sluice adds its own audit callback).
fn code_hooks(file: &str, value: &serde_json::Value, pointer: &str, out: &mut Vec<Finding>) {
    let map = match value {
        serde_json::Value::Object(map) => map,
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                code_hooks(file, item, &format!("{pointer}/{i}"), out);
            }
            return;
        }
        _ => return,
    };
    for (key, child) in map {
        let at = format!("{pointer}/{}", super::yaml::escape(key));
        let lower = key.to_ascii_lowercase();
        if lower.contains("callback") || lower.starts_with("custom_") {
            out.push(
                Finding::error(
                    "litellm.code-not-allowed",
                    file,
                    format!("`{key}` makes LiteLLM run code or send calls the repository chooses"),
                )
                .pointer(at)
                .at_key()
                .hint("remove it: Sluice renders the audit callback itself, and code a gateway runs is the operator's to install"),
            );
        } else {
            code_hooks(file, child, &at, out);
        }
    }
}

/// Keys that carry a credential when set literally.
fn secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.ends_with("_key")
        || key == "key"
        || ["token", "secret", "password"]
            .iter()
            .any(|word| key.contains(word))
}

/// A credential written into litellm.yaml rather than named as
/// `os.environ/VAR` (which the operator allows and LiteLLM reads).
fn literal_secrets(
    file: &str,
    value: &serde_json::Value,
    pointer: &str,
    key: Option<&str>,
    out: &mut Vec<Finding>,
) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                literal_secrets(
                    file,
                    v,
                    &format!("{pointer}/{}", super::yaml::escape(k)),
                    Some(k),
                    out,
                );
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                literal_secrets(file, v, &format!("{pointer}/{i}"), key, out);
            }
        }
        serde_json::Value::String(text)
            if key.is_some_and(secret_key) && !text.starts_with("os.environ/") =>
        {
            out.push(
                Finding::error(
                    "litellm.literal-secret",
                    file,
                    format!("`{}` holds a credential in the repository", key.unwrap_or_default()),
                )
                .pointer(pointer)
                .hint("name the variable that holds it instead: os.environ/VAR (allowed with --allow-env)")
                .redacted(),
            );
        }
        _ => {}
    }
}

pub fn is_valid_slug(slug: &str) -> bool {
    (SLUICE_MIN_SLUG..=SLUICE_MAX_SLUG).contains(&slug.len())
        && slug.starts_with(|c: char| c.is_ascii_lowercase())
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn check_slugs(repo: &Repository, out: &mut Vec<Finding>) {
    let mut claimed: HashMap<&str, &str> = HashMap::new();
    for (dir, env) in &repo.environments {
        let slug = env.spec.slug.as_str();
        let file = &env.spec_file;
        if !is_valid_slug(slug) {
            out.push(
                Finding::error(
                    "env.slug-format",
                    file,
                    format!("slug `{slug}` is not valid"),
                )
                .pointer("/slug")
                .hint("use 3–50 lowercase letters, digits and hyphens, starting with a letter"),
            );
        }
        if slug != dir {
            out.push(
                Finding::error(
                    "env.slug-mismatch",
                    file,
                    format!("slug `{slug}` differs from its directory `{ENVIRONMENTS}/{dir}`"),
                )
                .pointer("/slug")
                .hint("the directory name is the slug: rename one to match the other"),
            );
        }
        if let Some(first) = claimed.insert(slug, file) {
            out.push(
                Finding::error(
                    "env.slug-duplicate",
                    file,
                    format!("slug `{slug}` is already used by {first}"),
                )
                .pointer("/slug"),
            );
        }
    }
}

fn check_environment(env: &Environment, out: &mut Vec<Finding>) {
    let file = &env.spec_file;
    if env.spec.kind == EnvironmentKind::Eval {
        if env.spec.is_production {
            out.push(
                Finding::error(
                    "env.eval-production",
                    file,
                    "an eval environment cannot be a production environment",
                )
                .pointer("/isProduction"),
            );
        }
        if !env.spec.alerts.is_empty() {
            out.push(
                Finding::error(
                    "env.eval-alerts",
                    file,
                    "eval environments never send alerts",
                )
                .pointer("/alerts")
                .hint("remove `alerts`, or make this a standard environment"),
            );
        }
    }
    let durations = [
        ("/retention", env.spec.retention.as_ref()),
        (
            "/promotion/soak",
            env.spec.promotion.as_ref().and_then(|p| p.soak.as_ref()),
        ),
        (
            "/drift/interval",
            env.spec.drift.as_ref().and_then(|d| d.interval.as_ref()),
        ),
    ];
    for (pointer, duration) in durations {
        if let Some(d) = duration
            && d.parse().is_none()
        {
            out.push(
                Finding::error(
                    "env.duration",
                    file,
                    format!("duration `{}` is out of range", d.0),
                )
                .pointer(pointer),
            );
        }
    }
    if let Some(interval) = env.spec.drift.as_ref().and_then(|d| d.interval.as_ref())
        && interval.parse().is_some_and(|d| d.as_secs() < 1)
    {
        out.push(
            Finding::error(
                "env.drift-interval",
                file,
                "drift interval must be at least 1s",
            )
            .pointer("/drift/interval"),
        );
    }
}

/// Gateway names: DNS labels (they name ConfigMaps and metrics labels).
fn is_valid_gateway_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn check_gateways(file: &str, gateways: &[Gateway], out: &mut Vec<Finding>) {
    let mut seen = BTreeSet::new();
    for (i, gateway) in gateways.iter().enumerate() {
        let name = gateway.name();
        let pointer = format!("/gateways/{i}/name");
        if !is_valid_gateway_name(name) {
            out.push(
                Finding::error(
                    "gateway.name-format",
                    file,
                    format!("gateway name `{name}` is not valid"),
                )
                .pointer(&pointer)
                .hint("use up to 63 lowercase letters, digits and hyphens"),
            );
        }
        if !seen.insert(name) {
            out.push(
                Finding::error(
                    "gateway.name-duplicate",
                    file,
                    format!("gateway `{name}` is listed twice in this environment"),
                )
                .pointer(&pointer),
            );
        }
        if let Some(path) = gateway.path()
            && !is_confined(path)
        {
            out.push(
                Finding::error(
                    "gateway.path-escape",
                    file,
                    "a gateway's path may not climb out with `..`",
                )
                .pointer(format!("/gateways/{i}/path"))
                .hint("use a path relative to Sluice's data directory, e.g. gateways/production/edge.json, or an absolute one the operator allows with --file-root"),
            );
        }
        if let Gateway::Configmap(map) = gateway
            && map.deployment.is_none()
            && map.rollout_timeout.is_some()
        {
            out.push(
                Finding::error(
                    "gateway.rollout-without-deployment",
                    file,
                    "`rolloutTimeout` bounds the rollout of a `deployment`, and this gateway names none",
                )
                .pointer(format!("/gateways/{i}/rolloutTimeout"))
                .hint("name the Deployment whose pods read the ConfigMap with `deployment`, or remove `rolloutTimeout`"),
            );
        }
        if let Some(url) = gateway.url()
            && carries_credentials(url)
        {
            out.push(
                Finding::error(
                    "gateway.credentials-in-url",
                    file,
                    "the gateway URL carries credentials",
                )
                .pointer(format!("/gateways/{i}/url"))
                .hint("remove them from the URL and name an environment variable with `tokenEnv`")
                .redacted(),
            );
        }
    }
}

/// A relative path that never climbs: whoever can merge to the repository
/// must not be able to make Sluice write anywhere else.
/// No `..` anywhere: a relative path stays under the data dir, an absolute
/// one under whichever `--file-root` admits it (checked by the driver).
fn is_confined(path: &str) -> bool {
    use std::path::Component;
    let path = std::path::Path::new(path);
    path.file_name().is_some()
        && path.components().all(|c| {
            matches!(
                c,
                Component::Normal(_) | Component::CurDir | Component::RootDir
            )
        })
}

/// File gateways of the whole repository that write the same file.
fn check_file_paths(repo: &Repository, out: &mut Vec<Finding>) {
    let mut seen: HashMap<std::path::PathBuf, String> = HashMap::new();
    for env in repo.environments.values() {
        for (i, gateway) in env.gateways.iter().enumerate() {
            let Some(path) = gateway.path() else {
                continue;
            };
            let normal: std::path::PathBuf = std::path::Path::new(path).components().collect();
            let here = format!("{}/{}", env.slug, gateway.name());
            if let Some(first) = seen.insert(normal, here.clone()) {
                out.push(
                    Finding::error(
                        "gateway.path-duplicate",
                        &env.gateways_file,
                        format!("gateway {here} writes the same file as {first}"),
                    )
                    .pointer(format!("/gateways/{i}/path")),
                );
            }
        }
    }
}

/// `https://user:secret@host` or a token in the query string.
pub(super) fn carries_credentials(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let query = rest
        .split_once('?')
        .map_or("", |(_, q)| q)
        .to_ascii_lowercase();
    authority.contains('@')
        || ["token=", "key=", "secret=", "password="]
            .iter()
            .any(|k| query.contains(k))
}

fn name_mismatch(file: &str, pack: &Pack, name: &str) -> Finding {
    Finding::error(
        "pack.name-mismatch",
        file,
        format!(
            "pack name `{}` differs from its file name `{name}`",
            pack.pack.name
        ),
    )
    .pointer("/pack/name")
    .hint("the file name is the pack name")
}

fn check_pack(file: &str, pack: &Pack, out: &mut Vec<Finding>) {
    let stem = super::load::file_stem(file);
    if !is_valid_gateway_name(stem) {
        out.push(
            Finding::error(
                "pack.name-format",
                file,
                format!("pack name `{stem}` is not valid"),
            )
            .hint("name pack files with lowercase letters, digits and hyphens"),
        );
    }
    if pack.pack.name != stem {
        out.push(name_mismatch(file, pack, stem));
    }
    check_pack_body(file, pack, out);
}

pub(crate) fn check_pack_body(file: &str, pack: &Pack, out: &mut Vec<Finding>) {
    if let Err(e) = semver::Version::parse(&pack.pack.version) {
        out.push(
            Finding::error(
                "pack.version-semver",
                file,
                format!("version `{}` is not SemVer: {e}", pack.pack.version),
            )
            .pointer("/pack/version")
            .hint("write MAJOR.MINOR.PATCH, e.g. 2.3.0"),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, policy) in pack.policies.chain.iter().enumerate() {
        let pointer = format!("/policies/chain/{i}");
        if !catalog::is_known(policy) {
            let hint = catalog::unknown_policy_hint(policy);
            out.push(
                Finding::error(
                    "pack.chain-unknown-policy",
                    file,
                    format!("unknown policy `{policy}`"),
                )
                .pointer(&pointer)
                .hint(hint),
            );
        }
        if !seen.insert(policy) {
            out.push(
                Finding::error(
                    "pack.chain-duplicate",
                    file,
                    format!("policy `{policy}` appears twice in the chain"),
                )
                .pointer(&pointer),
            );
        }
    }
    for policy in pack.policy.0.keys() {
        if !seen.contains(policy) {
            out.push(
                Finding::warning(
                    "pack.settings-unused",
                    file,
                    format!("settings for `{policy}`, which is not in the chain"),
                )
                .pointer(format!("/policy/{}", escape(policy)))
                .at_key()
                .hint("add it to policies.chain, or remove its settings"),
            );
        }
    }
}

/// `verify.suites` and `promotion.evals` name suites under `evals/`.
fn check_suite_references(repo: &Repository, env: &Environment, out: &mut Vec<Finding>) {
    let verify = env.spec.verify.iter().flat_map(|v| v.suites.iter());
    let gate = env.spec.promotion.iter().flat_map(|p| p.evals.iter());
    let named = verify
        .enumerate()
        .map(|(i, suite)| (format!("/verify/suites/{i}"), suite))
        .chain(
            gate.enumerate()
                .map(|(i, suite)| (format!("/promotion/evals/{i}"), suite)),
        );
    for (pointer, suite) in named {
        if repo.suites.contains_key(suite) {
            continue;
        }
        let hint = did_you_mean(suite, repo.suites.keys().map(String::as_str))
            .map(|m| format!("did you mean `{m}`?"))
            .unwrap_or_else(|| format!("add evals/{suite}.eval.yaml, or name an existing suite"));
        out.push(
            Finding::error(
                "env.unknown-suite",
                &env.spec_file,
                format!("no eval suite `{suite}` (evals/{suite}.eval.yaml)"),
            )
            .pointer(pointer)
            .hint(hint),
        );
    }
}

/// A pre-release pack version (`2.2.0-dev.1`) in production is allowed but
/// never silent: it is usually a development build promoted by mistake.
fn check_prerelease(repo: &Repository, env: &Environment, out: &mut Vec<Finding>) {
    for (name, effective) in &env.packs {
        let version = &effective.pack.pack.version;
        let Ok(parsed) = semver::Version::parse(version) else {
            continue;
        };
        if parsed.pre.is_empty() {
            continue;
        }
        // NB: at the file that sets the version: an overlay usually keeps
        // its base pack's.
        let file = match &effective.source {
            PackSource::Base { file } | PackSource::Own { file } => file,
            PackSource::Overlay { base, overlay } => {
                let inherited = repo
                    .base_packs
                    .get(name)
                    .is_some_and(|b| b.pack.pack.version == *version);
                if inherited { base } else { overlay }
            }
        };
        out.push(
            Finding::warning(
                "pack.prerelease-in-production",
                file,
                format!(
                    "production environment `{}` runs pre-release version {version} of pack `{}`",
                    env.slug, effective.pack.pack.name
                ),
            )
            .pointer("/pack/version")
            .hint("promote a release version (MAJOR.MINOR.PATCH without a pre-release part)"),
        );
    }
}

/// `env_dirs` is every environment directory, loaded or not, so a broken
/// environment.yaml does not also make every reference to it a finding.
fn check_promotion(repo: &Repository, env_dirs: &[String], out: &mut Vec<Finding>) {
    let envs = &repo.environments;
    let exists = |slug: &str| env_dirs.iter().any(|d| d == slug);
    let known = || env_dirs.iter().map(String::as_str);
    let order = &repo.manifest.promotion.order;
    let mut seen = BTreeSet::new();
    for (i, slug) in order.iter().enumerate() {
        let pointer = format!("/promotion/order/{i}");
        if !exists(slug) {
            out.push(
                Finding::error(
                    "promotion.unknown-environment",
                    MANIFEST,
                    format!("promotion order names `{slug}`, which is not an environment"),
                )
                .pointer(&pointer)
                .hint_opt(did_you_mean(slug, known()).map(|m| format!("did you mean `{m}`?"))),
            );
        }
        if !seen.insert(slug) {
            out.push(
                Finding::error(
                    "promotion.repeat",
                    MANIFEST,
                    format!("`{slug}` appears twice in the promotion order"),
                )
                .pointer(&pointer)
                .hint("the promotion order is a chain: each environment once"),
            );
        }
    }
    let mut edges: BTreeMap<&str, &str> = BTreeMap::new();
    for (slug, env) in envs {
        let Some(from) = env.spec.promotion.as_ref().map(|p| p.from.as_str()) else {
            continue;
        };
        let file = &env.spec_file;
        if from == slug {
            out.push(
                Finding::error(
                    "promotion.from-self",
                    file,
                    "an environment cannot promote from itself",
                )
                .pointer("/promotion/from"),
            );
            continue;
        }
        if !exists(from) {
            out.push(
                Finding::error(
                    "promotion.from-unknown",
                    file,
                    format!("promotion.from names `{from}`, which is not an environment"),
                )
                .pointer("/promotion/from")
                .hint_opt(did_you_mean(from, known()).map(|m| format!("did you mean `{m}`?"))),
            );
            continue;
        }
        if let Some(position) = order.iter().position(|o| o == slug)
            && position > 0
            && order[position - 1] != from
        {
            out.push(
                Finding::error(
                    "promotion.order-conflict",
                    file,
                    format!(
                        "promotion.from is `{from}`, but sluice.yaml's promotion order puts `{}` before `{slug}`",
                        order[position - 1]
                    ),
                )
                .pointer("/promotion/from"),
            );
        }
        edges.insert(slug, from);
    }
    for cycle in cycles(&edges) {
        let first = cycle[0];
        let Some(file) = envs.get(first).map(|e| &e.spec_file) else {
            continue;
        };
        let path: Vec<&str> = cycle.iter().copied().chain([first]).collect();
        out.push(
            Finding::error(
                "promotion.cycle",
                file,
                format!("promotion goes round in a cycle: {}", path.join(" ← ")),
            )
            .pointer("/promotion/from")
            .hint("promotion must flow one way; break the cycle"),
        );
    }
}

/// Each cycle of a graph where every node has at most one outgoing edge,
/// once, starting from its smallest node.
fn cycles<'a>(edges: &BTreeMap<&'a str, &'a str>) -> Vec<Vec<&'a str>> {
    let mut found: BTreeSet<Vec<&str>> = BTreeSet::new();
    for &start in edges.keys() {
        let mut path = vec![start];
        let mut here = start;
        while let Some(&next) = edges.get(here) {
            if let Some(at) = path.iter().position(|&p| p == next) {
                let mut cycle = path[at..].to_vec();
                let min = cycle
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, s)| **s)
                    .map_or(0, |(i, _)| i);
                cycle.rotate_left(min);
                found.insert(cycle);
                break;
            }
            if path.len() > edges.len() {
                break;
            }
            path.push(next);
            here = next;
        }
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(is_valid_slug("production"));
        assert!(is_valid_slug("eu-west-1"));
        assert!(!is_valid_slug("ab"));
        assert!(!is_valid_slug("Prod"));
        assert!(!is_valid_slug("1prod"));
        assert!(!is_valid_slug(&"a".repeat(51)));
        assert!(is_valid_slug(&"a".repeat(50)));
    }

    #[test]
    fn finds_each_cycle_once() {
        let edges = BTreeMap::from([("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")]);
        assert_eq!(cycles(&edges), vec![vec!["a", "b", "c"]]);
        let chain = BTreeMap::from([("prod", "staging"), ("staging", "dev")]);
        assert!(cycles(&chain).is_empty());
    }

    #[test]
    fn urls_with_credentials() {
        assert!(carries_credentials("https://user:pw@gw:8443"));
        assert!(carries_credentials("https://gw/x?token=abc"));
        assert!(!carries_credentials(
            "https://gw-eu-1.internal:8443/path@v1"
        ));
    }
}
