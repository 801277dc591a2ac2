//! What the operator allows each environment of a repository to use: the
//! environment variables its gateways and alert sinks may name, and the
//! URLs its gateways and alert sinks may reach.
//!
//! The repository's authors decide policy; the operator decides which of
//! the process's secrets and which hosts an environment may touch (Argo CD's
//! AppProject source/destination restrictions are the model). Both lists
//! are deny-by-default: an environment the operator gave nothing may name no
//! variable and reach no URL. Sluice's own variables (anything starting
//! `SLUICE_`, and the names the operator configured for Sluice itself) are
//! never allowed, whatever the patterns say.
//!
//! Rules are written `ENVIRONMENT=PATTERN`, where ENVIRONMENT is a slug or
//! a glob over slugs (`*`, `prod-*`):
//!
//! - a variable pattern is a name with `*` for any run of characters:
//!   `production=PROD_GW_*`, `*=ALERT_HOOK_*`;
//! - a URL pattern is `scheme://host[:port][/path]`: the scheme is exact;
//!   in the host, `*` stands for part of one DNS label (it never crosses a
//!   `.`, so `*.internal` does not admit `evil.example/x.internal`); the
//!   port is a number or `*`, and without one only the scheme's default
//!   port is allowed; a path admits itself and what lies below it. A
//!   pattern of `*` alone admits any URL.
//!
//! Pure: no I/O, no environment reads. Validation reports what falls
//! outside as findings; the secret readers refuse it again at read time.

use super::{finding::Finding, model::Gateway};
use reqwest::Url;

/// The prefix of Sluice's own variables, never an environment's credential.
pub const RESERVED_PREFIX: &str = "SLUICE_";

/// The operator's allowances for every environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowances {
    variables: Vec<Rule<NamePattern>>,
    urls: Vec<Rule<UrlPattern>>,
    /// Names Sluice itself reads (its API tokens, webhook secret, git
    /// token), beyond those under [`RESERVED_PREFIX`].
    reserved: Vec<String>,
}

/// One `ENVIRONMENT=PATTERN` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule<P> {
    environments: Glob,
    pattern: P,
    /// As the operator wrote it, for messages.
    text: String,
}

/// A variable rule, parsed from `ENVIRONMENT=NAME_GLOB`.
pub type VariableRule = Rule<NamePattern>;
/// A URL rule, parsed from `ENVIRONMENT=URL_PATTERN`.
pub type UrlRule = Rule<UrlPattern>;

/// Why an operator's rule could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowError {
    #[error("`{0}` is not ENVIRONMENT=PATTERN (e.g. production=PROD_GW_*)")]
    NoEnvironment(String),
    #[error(
        "`{0}`: an environment is a slug or a glob over slugs (lowercase letters, digits, `-`, `*`)"
    )]
    Environment(String),
    #[error("`{0}`: a variable pattern holds capitals, digits, `_` and `*` only")]
    Variable(String),
    #[error(
        "`{0}`: variables starting {RESERVED_PREFIX} are Sluice's own and never allowed to an environment; choose another prefix"
    )]
    Reserved(String),
    #[error(
        "`{0}`: a URL pattern is scheme://host[:port][/path] with http or https (or `*` for any URL)"
    )]
    Url(String),
}

/// Why an environment may not use a variable or reach a URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error(
        "{name} is one of Sluice's own variables, never a credential for an environment's gateways or alert sinks"
    )]
    Reserved { name: String },
    #[error("environment `{environment}` may not use variable {name}: {}", allowed_text(.allowed, "variables"))]
    Variable {
        environment: String,
        name: String,
        /// The operator's patterns that apply to this environment.
        allowed: Vec<String>,
    },
    // NB: no URL in the message: an alert sink's URL is a secret.
    #[error("environment `{environment}` may not reach that URL: {}", allowed_text(.allowed, "URLs"))]
    Url {
        environment: String,
        allowed: Vec<String>,
    },
}

fn allowed_text(allowed: &[String], what: &str) -> String {
    if allowed.is_empty() {
        format!("the operator allows it no {what}")
    } else {
        format!("the operator allows it {}", allowed.join(", "))
    }
}

impl Allowances {
    /// Allowances with these rules; nothing else is allowed.
    pub fn new(variables: Vec<VariableRule>, urls: Vec<UrlRule>) -> Self {
        Allowances {
            variables,
            urls,
            reserved: Vec::new(),
        }
    }

    /// Marks `name` as Sluice's own (e.g. the variable holding its API
    /// tokens): never allowed, whatever the patterns say.
    pub fn reserve(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        if !self.reserved.contains(&name) {
            self.reserved.push(name);
        }
        self
    }

    /// Whether a variable is Sluice's own.
    pub fn is_reserved(&self, name: &str) -> bool {
        name.starts_with(RESERVED_PREFIX) || self.reserved.iter().any(|r| r == name)
    }

    /// May environment `environment` name variable `name`?
    pub fn variable(&self, environment: &str, name: &str) -> Result<(), Denied> {
        if self.is_reserved(name) {
            return Err(Denied::Reserved {
                name: name.to_owned(),
            });
        }
        let applying = applying(&self.variables, environment);
        if applying.iter().any(|rule| rule.pattern.matches(name)) {
            return Ok(());
        }
        Err(Denied::Variable {
            environment: environment.to_owned(),
            name: name.to_owned(),
            allowed: applying.iter().map(|r| r.pattern.0.clone()).collect(),
        })
    }

    /// May environment `environment` reach `url`? A URL that does not
    /// parse, or carries user-info, is never allowed.
    pub fn url(&self, environment: &str, url: &str) -> Result<(), Denied> {
        let applying = applying(&self.urls, environment);
        let parsed = Url::parse(url).ok().filter(|u| {
            u.username().is_empty() && u.password().is_none() && u.host_str().is_some()
        });
        if let Some(parsed) = parsed
            && applying.iter().any(|rule| rule.pattern.matches(&parsed))
        {
            return Ok(());
        }
        Err(Denied::Url {
            environment: environment.to_owned(),
            allowed: applying.iter().map(|r| r.pattern.text.clone()).collect(),
        })
    }

    /// The rules as the operator wrote them: variables, then URLs.
    pub fn describe(&self) -> (Vec<&str>, Vec<&str>) {
        (
            self.variables.iter().map(|r| r.text.as_str()).collect(),
            self.urls.iter().map(|r| r.text.as_str()).collect(),
        )
    }
}

fn applying<'a, P>(rules: &'a [Rule<P>], environment: &str) -> Vec<&'a Rule<P>> {
    rules
        .iter()
        .filter(|r| r.environments.matches(environment))
        .collect()
}

/// Splits `ENVIRONMENT=PATTERN` and checks the environment glob.
fn split(text: &str) -> Result<(Glob, &str), AllowError> {
    let (environments, pattern) = text
        .split_once('=')
        .filter(|(e, p)| !e.is_empty() && !p.is_empty())
        .ok_or_else(|| AllowError::NoEnvironment(text.to_owned()))?;
    let valid = environments
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '*');
    if !valid {
        return Err(AllowError::Environment(text.to_owned()));
    }
    Ok((Glob(environments.to_owned()), pattern))
}

impl std::str::FromStr for VariableRule {
    type Err = AllowError;

    fn from_str(text: &str) -> Result<Self, AllowError> {
        let text = text.trim();
        let (environments, pattern) = split(text)?;
        let valid = pattern
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '*');
        if !valid {
            return Err(AllowError::Variable(text.to_owned()));
        }
        // NB: a pattern that can only match Sluice's own names is a mistake
        // worth stopping for; `*` alone still admits everything else.
        let literal = pattern.split('*').next().unwrap_or("");
        if literal.starts_with(RESERVED_PREFIX) {
            return Err(AllowError::Reserved(text.to_owned()));
        }
        Ok(Rule {
            environments,
            pattern: NamePattern(pattern.to_owned()),
            text: text.to_owned(),
        })
    }
}

impl std::str::FromStr for UrlRule {
    type Err = AllowError;

    fn from_str(text: &str) -> Result<Self, AllowError> {
        let text = text.trim();
        let (environments, pattern) = split(text)?;
        let pattern = UrlPattern::parse(pattern).ok_or_else(|| AllowError::Url(text.to_owned()))?;
        Ok(Rule {
            environments,
            pattern,
            text: text.to_owned(),
        })
    }
}

/// `*` for any run of characters, everything else literal.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Glob(String);

impl Glob {
    fn matches(&self, text: &str) -> bool {
        glob(self.0.as_bytes(), text.as_bytes(), None)
    }
}

/// A variable-name glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePattern(String);

impl NamePattern {
    fn matches(&self, name: &str) -> bool {
        glob(self.0.as_bytes(), name.as_bytes(), None)
    }
}

/// Matches `text` against `pattern`, where `*` is any run of bytes other
/// than `stop`. Iterative with one backtrack point: linear-ish, no recursion.
fn glob(pattern: &[u8], text: &[u8], stop: Option<u8>) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star
            && Some(text[st]) != stop
        {
            // Let the last star swallow one more byte.
            star = Some((sp, st + 1));
            p = sp + 1;
            t = st + 1;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// `scheme://host[:port][/path]`, or `*` for any URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPattern {
    /// `None`: any URL.
    parts: Option<UrlParts>,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct UrlParts {
    scheme: String,
    /// Lowercase; `*` within one label.
    host: String,
    /// `None`: any port.
    port: Option<u16>,
    /// Without a trailing `/`; empty: any path.
    path: String,
}

impl UrlPattern {
    fn parse(text: &str) -> Option<UrlPattern> {
        if text == "*" {
            return Some(UrlPattern {
                parts: None,
                text: text.to_owned(),
            });
        }
        let (scheme, rest) = text.split_once("://")?;
        let default_port = match scheme {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        if authority.is_empty() || authority.contains(['@', '?', '#']) || path.contains(['?', '#'])
        {
            return None;
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (inside, after) = v6.split_once(']')?;
            (format!("[{inside}]"), after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host.to_owned(), Some(port)),
                None => (authority.to_owned(), None),
            }
        };
        let port = match port {
            None => Some(default_port),
            Some("*") => None,
            Some(number) => Some(number.parse().ok()?),
        };
        let host = host.to_ascii_lowercase();
        let host_valid = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.*[]:".contains(c));
        if !host_valid {
            return None;
        }
        let path = path.trim_end_matches('*').trim_end_matches('/').to_owned();
        if path.contains('*') {
            return None;
        }
        Some(UrlPattern {
            parts: Some(UrlParts {
                scheme: scheme.to_owned(),
                host,
                port,
                path,
            }),
            text: text.to_owned(),
        })
    }

    fn matches(&self, url: &Url) -> bool {
        let Some(parts) = &self.parts else {
            return true;
        };
        // NB: the parsed host is normalised (lowercase, IPv4 in dotted
        // form, IPv6 in brackets), so `http://2130706433` is 127.0.0.1.
        let Some(host) = url.host_str() else {
            return false;
        };
        let path = url.path();
        url.scheme() == parts.scheme
            && glob(parts.host.as_bytes(), host.as_bytes(), Some(b'.'))
            && parts
                .port
                .is_none_or(|port| url.port_or_known_default() == Some(port))
            && (parts.path.is_empty()
                || path == parts.path
                || path
                    .strip_prefix(&parts.path)
                    .is_some_and(|rest| rest.starts_with('/')))
    }
}

/// Validation's side: every variable and gateway URL of the repository
/// that the allowances do not cover, as an error finding at the value.
/// Environments that did not load are checked by their directory name.
pub(super) fn check(
    repo: &super::Repository,
    strays: &super::validate::Strays,
    allowances: &Allowances,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for env in repo.environments.values() {
        check_gateways(
            &env.slug,
            &env.gateways_file,
            &env.gateways,
            allowances,
            &mut out,
        );
        if let Some(settings) = &env.litellm {
            check_litellm(env, settings, allowances, &mut out);
        }
        for (i, alert) in env.spec.alerts.iter().enumerate() {
            let hook = &alert.webhook;
            let pointer = format!("/alerts/{i}/webhook");
            let variables = std::iter::once(("urlEnv", &hook.url_env))
                .chain(hook.secret_env.as_ref().map(|s| ("secretEnv", s)));
            for (key, variable) in variables {
                let at = format!("{pointer}/{key}");
                if let Err(denied) = allowances.variable(&env.slug, &variable.0) {
                    out.push(variable_finding(&env.spec_file, at, &env.slug, denied));
                }
            }
        }
    }
    for (file, gateways) in &strays.gateways {
        let slug = file
            .strip_prefix("environments/")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default();
        check_gateways(slug, file, gateways, allowances, &mut out);
    }
    out
}

fn check_gateways(
    slug: &str,
    file: &str,
    gateways: &[Gateway],
    allowances: &Allowances,
    out: &mut Vec<Finding>,
) {
    for (i, gateway) in gateways.iter().enumerate() {
        if let Some((variable, key)) = gateway.secret_env()
            && let Err(denied) = allowances.variable(slug, &variable.0)
        {
            let at = format!("/gateways/{i}/{key}");
            out.push(variable_finding(file, at, slug, denied));
        }
        if let Some(chat) = gateway.chat() {
            if let Some(variable) = &chat.token_env
                && let Err(denied) = allowances.variable(slug, &variable.0)
            {
                let at = format!("/gateways/{i}/chat/tokenEnv");
                out.push(variable_finding(file, at, slug, denied));
            }
            if let Err(denied) = allowances.url(slug, &chat.url) {
                out.push(
                    url_finding(file, gateway.name(), &chat.url, slug, denied)
                        .pointer(format!("/gateways/{i}/chat/url")),
                );
            }
        }
        let Some(url) = gateway.url() else {
            continue;
        };
        if let Err(denied) = allowances.url(slug, url) {
            out.push(
                url_finding(file, gateway.name(), url, slug, denied)
                    .pointer(format!("/gateways/{i}/url")),
            );
        }
    }
}

fn url_finding(file: &str, gateway: &str, url: &str, slug: &str, denied: Denied) -> Finding {
    let hint = format!(
        "the operator allows URLs with --allow-url {slug}=PATTERN (or SLUICE_ALLOW_URL), e.g. {slug}=https://gw-*.internal:8443"
    );
    let finding = Finding::error(
        "allow.url-not-allowed",
        file,
        format!("gateway `{gateway}`: {denied}"),
    )
    .hint(hint);
    // NB: a URL with credentials in it is shown masked, as by
    // `gateway.credentials-in-url`.
    if super::validate::carries_credentials(url) {
        finding.redacted()
    } else {
        finding
    }
}

/// An environment's LiteLLM settings name provider keys (`os.environ/VAR`,
/// read by LiteLLM, not by Sluice) and model endpoints (`api_base`): held to
/// the same allowances as its gateways, or an author could point a model at
/// their own host with the operator's provider key.
fn check_litellm(
    env: &super::Environment,
    settings: &super::model::LitellmSettings,
    allowances: &Allowances,
    out: &mut Vec<Finding>,
) {
    let file = env.litellm_file();
    let base = match serde_json::to_value(settings) {
        Ok(serde_json::Value::Object(base)) => base,
        _ => return,
    };
    for (pointer, variable) in crate::gateway::litellm::variables(&base) {
        if let Err(denied) = allowances.variable(&env.slug, &variable) {
            out.push(variable_finding(&file, pointer, &env.slug, denied));
        }
    }
    for (pointer, url) in crate::gateway::litellm::urls(&base) {
        if let Err(denied) = allowances.url(&env.slug, &url) {
            let slug = &env.slug;
            let mut finding = Finding::error("allow.url-not-allowed", &file, denied.to_string())
                .pointer(pointer)
                .hint(format!(
                    "the operator allows URLs with --allow-url {slug}=PATTERN (or SLUICE_ALLOW_URL)"
                ));
            if super::validate::carries_credentials(&url) {
                finding = finding.redacted();
            }
            out.push(finding);
        }
    }
}

fn variable_finding(file: &str, pointer: String, slug: &str, denied: Denied) -> Finding {
    let (rule, hint) = match &denied {
        Denied::Reserved { .. } => (
            "allow.env-reserved",
            "name a variable the operator set aside for this environment's gateways".to_owned(),
        ),
        _ => (
            "allow.env-not-allowed",
            format!(
                "name a variable the operator allows here, or ask them to allow it with --allow-env {slug}=NAME (or SLUICE_ALLOW_ENV)"
            ),
        ),
    };
    Finding::error(rule, file, denied.to_string())
        .pointer(pointer)
        .hint(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowances(variables: &[&str], urls: &[&str]) -> Allowances {
        Allowances::new(
            variables.iter().map(|v| v.parse().unwrap()).collect(),
            urls.iter().map(|u| u.parse().unwrap()).collect(),
        )
    }

    #[test]
    fn variables_are_allowed_per_environment_and_denied_by_default() {
        let allow = allowances(
            &["production=PROD_GW_*", "*=ALERT_HOOK_*", "dev-*=DEV_*"],
            &[],
        )
        .reserve("GIT_TOKEN");
        let table = [
            ("production", "PROD_GW_TOKEN", true),
            ("production", "PROD_GW_", true),
            ("production", "PROD_DB_PASSWORD", false),
            ("development", "PROD_GW_TOKEN", false),
            ("development", "ALERT_HOOK_SLACK", true),
            ("dev-eu", "DEV_TOKEN", true),
            ("development", "DEV_TOKEN", false),
            ("staging", "AWS_SECRET_ACCESS_KEY", false),
            // Sluice's own, whatever the patterns say.
            ("production", "SLUICE_API_TOKENS", false),
            ("production", "GIT_TOKEN", false),
        ];
        for (environment, name, allowed) in table {
            assert_eq!(
                allow.variable(environment, name).is_ok(),
                allowed,
                "{environment} {name}"
            );
        }
        assert!(
            Allowances::default()
                .variable("development", "ANY")
                .is_err()
        );
        let everything = allowances(&["*=*"], &[]);
        assert!(everything.variable("x", "PROD_GW_TOKEN").is_ok());
        assert_eq!(
            everything.variable("x", "SLUICE_WEBHOOK_SECRET"),
            Err(Denied::Reserved {
                name: "SLUICE_WEBHOOK_SECRET".into()
            })
        );
    }

    #[test]
    fn a_denial_says_what_the_operator_allows_there() {
        let allow = allowances(&["production=PROD_GW_*", "staging=STG_*"], &[]);
        let denied = allow.variable("production", "STG_TOKEN").unwrap_err();
        assert_eq!(
            denied.to_string(),
            "environment `production` may not use variable STG_TOKEN: the operator allows it PROD_GW_*"
        );
        let none = allow.variable("development", "X").unwrap_err().to_string();
        assert!(
            none.ends_with("the operator allows it no variables"),
            "{none}"
        );
    }

    #[test]
    fn urls_are_allowed_by_scheme_host_port_and_path() {
        let allow = allowances(
            &[],
            &[
                "production=https://gw-*.internal:8443",
                "production=https://edge.internal/sluice",
                "development=http://127.0.0.1:*",
                "development=http://[::1]:*",
                "lab=*",
            ],
        );
        let table = [
            ("production", "https://gw-eu-1.internal:8443", true),
            ("production", "https://GW-EU-1.Internal:8443/", true),
            ("production", "https://gw-eu-1.internal:8443/any/path", true),
            // `*` does not cross a dot, nor a slash.
            ("production", "https://gw-evil.com/a.internal:8443", false),
            ("production", "https://gw-a.evil.internal:8443", false),
            ("production", "http://gw-eu-1.internal:8443", false),
            ("production", "https://gw-eu-1.internal", false),
            ("production", "https://gw-eu-1.internal:9443", false),
            // Default port only when the pattern names none.
            ("production", "https://edge.internal", false),
            ("production", "https://edge.internal/sluice", true),
            ("production", "https://edge.internal:443/sluice/v2", true),
            ("production", "https://edge.internal/sluicex", false),
            ("production", "https://edge.internal/sluice/../admin", false),
            ("production", "https://edge.internal:8443/sluice", false),
            ("production", "https://user:pw@gw-a.internal:8443", false),
            ("development", "http://127.0.0.1:40123", true),
            ("development", "http://[::1]:40123", true),
            ("development", "http://2130706433:80", true),
            ("development", "http://127.0.0.2:80", false),
            ("development", "https://gw-eu-1.internal:8443", false),
            ("staging", "http://127.0.0.1:1", false),
            ("lab", "https://anywhere.example", true),
            ("production", "not a url", false),
        ];
        for (environment, url, allowed) in table {
            assert_eq!(
                allow.url(environment, url).is_ok(),
                allowed,
                "{environment} {url}"
            );
        }
    }

    #[test]
    fn malformed_rules_are_refused() {
        let variable = |t: &str| t.parse::<VariableRule>().unwrap_err();
        let url = |t: &str| t.parse::<UrlRule>().unwrap_err();
        assert!(matches!(variable("PROD_*"), AllowError::NoEnvironment(_)));
        assert!(matches!(variable("=PROD_*"), AllowError::NoEnvironment(_)));
        assert!(matches!(
            variable("Prod=PROD_*"),
            AllowError::Environment(_)
        ));
        assert!(matches!(variable("prod=prod_*"), AllowError::Variable(_)));
        assert!(matches!(
            variable("prod=SLUICE_GW_*"),
            AllowError::Reserved(_)
        ));
        assert!(matches!(url("prod=ftp://gw"), AllowError::Url(_)));
        assert!(matches!(url("prod=https://u@gw"), AllowError::Url(_)));
        assert!(matches!(url("prod=https://gw/a*b"), AllowError::Url(_)));
        assert!(matches!(url("prod=https://gw:port"), AllowError::Url(_)));
        assert!(matches!(url("prod=gw.internal"), AllowError::Url(_)));
    }

    #[test]
    fn globs() {
        assert!(glob(b"A*B*C", b"AxxBxxC", None));
        assert!(!glob(b"A*B*C", b"AxxBxx", None));
        assert!(glob(b"*", b"", None));
        assert!(glob(b"a*.b", b"axx.b", Some(b'.')));
        assert!(!glob(b"a*.b", b"ax.x.b", Some(b'.')));
    }
    /// The bundled example with `files` written over it, loaded as an
    /// operator who allows production its own variables and loopback URLs.
    fn load_example_with(files: &[(&str, &str)]) -> crate::config::Loaded {
        let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config-repo");
        let dir = tempfile::tempdir().unwrap();
        copy(&example, dir.path());
        for (path, text) in files {
            std::fs::write(dir.path().join(path), text).unwrap();
        }
        let tree = crate::source::WorkTree::open(dir.path()).unwrap();
        let allow = allowances(
            &["production=PROD_*", "development=DEV_GW_*"],
            &["*=http://127.0.0.1:*"],
        )
        .reserve("GIT_TOKEN");
        crate::config::load_with(&tree, &crate::config::Limits::default(), &allow).unwrap()
    }

    fn copy(from: &std::path::Path, to: &std::path::Path) {
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                std::fs::create_dir_all(&target).unwrap();
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }

    fn located(loaded: &crate::config::Loaded) -> Vec<String> {
        loaded
            .findings
            .iter()
            .map(|f| format!("{} {}", f.rule, f.location()))
            .collect()
    }

    const HOSTILE: &str = "gateways:
  - name: dev-1
    driver: file
    path: gateways/development/dev-1.json
  - name: grab-api
    driver: http
    url: http://127.0.0.1:9
    tokenEnv: SLUICE_API_TOKENS
  - name: grab-prod
    driver: http
    url: http://127.0.0.1:9
    tokenEnv: PROD_GATEWAY_TOKEN
  - name: grab-git
    driver: http
    url: https://collector.example
    tokenEnv: GIT_TOKEN
";

    #[test]
    fn a_development_gateway_naming_other_secrets_is_invalid_at_the_value() {
        let loaded = load_example_with(&[("environments/development/gateways.yaml", HOSTILE)]);
        assert!(loaded.repository.is_none(), "the revision must be invalid");
        let file = "environments/development/gateways.yaml";
        assert_eq!(
            located(&loaded),
            [
                format!("allow.env-reserved {file}:8:15"),
                format!("allow.env-not-allowed {file}:12:15"),
                format!("allow.url-not-allowed {file}:15:10"),
                format!("allow.env-reserved {file}:16:15"),
            ]
        );
        let prod = &loaded.findings[1];
        assert_eq!(
            prod.message,
            "environment `development` may not use variable PROD_GATEWAY_TOKEN: the operator allows it DEV_GW_*"
        );
        assert!(
            prod.hint
                .as_deref()
                .unwrap()
                .contains("--allow-env development=")
        );
        assert!(loaded.findings[0].message.contains("Sluice's own"));
    }

    #[test]
    fn a_litellm_gateway_is_held_to_the_allowances_and_needs_its_settings() {
        let gateways = "gateways:
  - name: proxy-1
    driver: litellm
    url: https://collector.example
    path: litellm/proxy-1/config.yaml
    restartHook: proxy-1
    masterKeyEnv: PROD_LITELLM_MASTER_KEY
";
        let loaded = load_example_with(&[("environments/development/gateways.yaml", gateways)]);
        let file = "environments/development/gateways.yaml";
        assert_eq!(
            located(&loaded),
            [
                format!("litellm.no-settings {file}:3:13"),
                format!("allow.url-not-allowed {file}:4:10"),
                format!("allow.env-not-allowed {file}:7:19"),
            ]
        );
    }

    #[test]
    fn alert_variables_are_checked_like_gateway_tokens() {
        let environment = "slug: development
name: Development
alerts:
  - webhook: { urlEnv: DEV_GW_HOOK, secretEnv: SLUICE_WEBHOOK_SECRET }
  - webhook: { urlEnv: PROD_ALERT_WEBHOOK }
";
        let loaded =
            load_example_with(&[("environments/development/environment.yaml", environment)]);
        let file = "environments/development/environment.yaml";
        assert_eq!(
            located(&loaded),
            [
                format!("allow.env-reserved {file}:4:48"),
                format!("allow.env-not-allowed {file}:5:24"),
            ]
        );
    }

    #[test]
    fn the_example_is_valid_for_an_operator_who_allows_its_variables() {
        let loaded = load_example_with(&[]);
        assert!(!loaded.has_errors(), "{:?}", located(&loaded));
    }
}
