//! Eval suites (`evals/<name>.eval.yaml`) and fixtures
//! (`fixtures/<name>.fixture.yaml`) as Rust types, the single source of
//! their JSON Schemas; the rules across files ([`check`]); and [`resolve`],
//! which turns a case into the chat request body it sends.

use crate::config::{catalog, finding::Finding, schema::did_you_mean};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    sync::Arc,
};

/// Where suites live, beside sluice.yaml.
pub const SUITES_DIR: &str = "evals";
/// Where fixtures live, beside sluice.yaml.
pub const FIXTURES_DIR: &str = "fixtures";
/// How a suite's file name ends (`.eval.yml` is read too).
pub const SUITE_SUFFIX: &str = ".eval.yaml";
/// How a fixture's file name ends (`.fixture.yml` is read too).
pub const FIXTURE_SUFFIX: &str = ".fixture.yaml";
/// Most times one case may send its request.
pub const MAX_REPEAT: u32 = 1000;

/// `evals/<name>.eval.yaml`: requests with the outcomes a gateway must
/// give them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "Sluice eval suite (evals/<name>.eval.yaml)")]
pub struct Suite {
    /// Equal to the file name without `.eval.yaml`.
    pub suite: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Run in this order on each gateway (rate limits count across cases).
    #[schemars(length(min = 1))]
    pub cases: Vec<Case>,
}

/// One request and what must come of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Case {
    /// Unique within the suite; names the test in reports.
    #[schemars(length(min = 1, max = 200))]
    pub name: String,
    /// The request, or what it changes of the fixture's: its `model` and
    /// `messages` replace the fixture's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<CaseRequest>,
    /// A fixture (`fixtures/<name>.fixture.yaml`) giving model and messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixture: Option<String>,
    /// Send the request this many times (at most 1000); `expect` applies to
    /// the last answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub repeat: Option<u32>,
    pub expect: Expect,
}

impl Case {
    /// How many requests the case sends.
    pub fn times(&self) -> u32 {
        self.repeat.unwrap_or(1).clamp(1, MAX_REPEAT)
    }
}

/// A chat request as a case writes it (OpenAI's shape).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CaseRequest {
    /// The model asked for, e.g. `gpt-4o-mini`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub messages: Option<Vec<Message>>,
    /// Any other field of OpenAI's request, sent as written, e.g.
    /// `{temperature: 0, max_tokens: 16}`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub params: Map<String, Value>,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Message {
    pub role: Role,
    pub content: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// What a gateway did with a request: the reference gateway's own
/// vocabulary (`Sluice-Outcome`), so the two cannot drift apart.
pub use crate::enforce::Outcome;

/// What must come of a case: every field given is checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Expect {
    pub outcome: Outcome,
    /// The HTTP status of the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 599))]
    pub status: Option<u16>,
    /// Policies that must be among those that acted (built-in, or `x-…`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// Text that must be in what left the gateway for the model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwarded_contains: Vec<String>,
    /// Text that must not be in what left the gateway for the model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwarded_not_contains: Vec<String>,
    /// Text that must be in the answer (the model's reply, or the refusal).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_contains: Vec<String>,
    /// Text that must not be in the answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_not_contains: Vec<String>,
}

impl Expect {
    /// Expects `outcome` and nothing else, for tests and callers.
    pub fn outcome(outcome: Outcome) -> Expect {
        Expect {
            outcome,
            status: None,
            policies: Vec::new(),
            forwarded_contains: Vec::new(),
            forwarded_not_contains: Vec::new(),
            response_contains: Vec::new(),
            response_not_contains: Vec::new(),
        }
    }
}

/// `fixtures/<name>.fixture.yaml`: messages several cases share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "Sluice eval fixture (fixtures/<name>.fixture.yaml)")]
pub struct Fixture {
    /// Equal to the file name without `.fixture.yaml`.
    pub fixture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The model of cases that name none in their `request`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub model: Option<String>,
    #[schemars(length(min = 1))]
    pub messages: Vec<Message>,
}

/// A suite and the file it was read from.
#[derive(Debug, Clone)]
pub struct SuiteFile {
    pub file: String,
    pub suite: Arc<Suite>,
}

/// A fixture and the file it was read from.
#[derive(Debug, Clone)]
pub struct FixtureFile {
    pub file: String,
    pub fixture: Arc<Fixture>,
}

/// The suite or fixture name a file name gives (`pii.eval.yaml` → `pii`).
pub fn stem<'a>(file_name: &'a str, suffix: &str) -> Option<&'a str> {
    let yml = suffix.replace(".yaml", ".yml");
    file_name
        .strip_suffix(suffix)
        .or_else(|| file_name.strip_suffix(yml.as_str()))
        .filter(|n| !n.is_empty() && !n.starts_with('.'))
}

/// Why a case does not make a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unresolved {
    #[error("the case has neither a `request` nor a `fixture`")]
    NoRequest,
    #[error("fixture `{0}` does not exist")]
    MissingFixture(String),
    #[error("no model: neither the request nor its fixture names one")]
    NoModel,
    #[error("no messages: the request has none and names no fixture")]
    NoMessages,
}

/// The chat request body a case sends: its fixture's model and messages,
/// with the request's `model` and `messages` in their place where it has
/// them, and the request's other `params` as written.
pub fn resolve(case: &Case, fixtures: &BTreeMap<String, FixtureFile>) -> Result<Value, Unresolved> {
    let fixture = match &case.fixture {
        None => None,
        Some(name) => Some(
            fixtures
                .get(name)
                .map(|f| f.fixture.as_ref())
                .ok_or_else(|| Unresolved::MissingFixture(name.clone()))?,
        ),
    };
    let request = match (&case.request, fixture) {
        (None, None) => return Err(Unresolved::NoRequest),
        (Some(request), _) => request.clone(),
        (None, Some(_)) => CaseRequest::default(),
    };
    let model = request
        .model
        .or_else(|| fixture.and_then(|f| f.model.clone()))
        .ok_or(Unresolved::NoModel)?;
    let messages = request
        .messages
        .or_else(|| fixture.map(|f| f.messages.clone()))
        .filter(|m| !m.is_empty())
        .ok_or(Unresolved::NoMessages)?;
    let mut body = request.params;
    body.insert("model".into(), Value::String(model));
    body.insert("messages".into(), json!(messages));
    Ok(Value::Object(body))
}

/// Suite and fixture names: lowercase letters, digits and hyphens.
fn is_valid_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
}

/// Every finding about the repository's suites and fixtures, by their
/// names (the file stems), each at the pointer it is about.
/// `broken` names fixture files that did not load (their own findings say
/// why): cases naming them are not checked against them.
pub fn check(
    suites: &BTreeMap<String, SuiteFile>,
    fixtures: &BTreeMap<String, FixtureFile>,
    broken: &BTreeSet<String>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for (name, f) in fixtures {
        name_rules(
            &f.file,
            name,
            &f.fixture.fixture,
            "/fixture",
            "fixture",
            &mut out,
        );
    }
    for (name, s) in suites {
        name_rules(&s.file, name, &s.suite.suite, "/suite", "suite", &mut out);
        check_cases(&s.file, &s.suite, fixtures, broken, &mut out);
    }
    out
}

fn name_rules(
    file: &str,
    stem: &str,
    written: &str,
    pointer: &str,
    what: &str,
    out: &mut Vec<Finding>,
) {
    let rule = |mismatch| match (what, mismatch) {
        ("suite", true) => "eval.suite-name-mismatch",
        ("suite", false) => "eval.suite-name-format",
        (_, true) => "eval.fixture-name-mismatch",
        (_, false) => "eval.fixture-name-format",
    };
    if !is_valid_name(stem) {
        out.push(
            Finding::error(
                rule(false),
                file,
                format!("{what} name `{stem}` is not valid"),
            )
            .hint("name the file with lowercase letters, digits and hyphens"),
        );
    }
    if written != stem {
        out.push(
            Finding::error(
                rule(true),
                file,
                format!("{what} `{written}` differs from its file name `{stem}`"),
            )
            .pointer(pointer)
            .hint(format!("the file name is the {what} name")),
        );
    }
}

fn check_cases(
    file: &str,
    suite: &Suite,
    fixtures: &BTreeMap<String, FixtureFile>,
    broken: &BTreeSet<String>,
    out: &mut Vec<Finding>,
) {
    let mut seen = HashSet::new();
    for (i, case) in suite.cases.iter().enumerate() {
        let at = format!("/cases/{i}");
        if !seen.insert(case.name.as_str()) {
            out.push(
                Finding::error(
                    "eval.case-duplicate",
                    file,
                    format!("case `{}` appears twice in this suite", case.name),
                )
                .pointer(format!("{at}/name"))
                .hint("case names identify results: give each its own"),
            );
        }
        for (j, policy) in case.expect.policies.iter().enumerate() {
            if !catalog::is_known(policy) {
                let hint = catalog::unknown_policy_hint(policy);
                out.push(
                    Finding::error(
                        "eval.unknown-policy",
                        file,
                        format!("unknown policy `{policy}`"),
                    )
                    .pointer(format!("{at}/expect/policies/{j}"))
                    .hint(hint),
                );
            }
        }
        if case.fixture.as_ref().is_some_and(|f| broken.contains(f)) {
            continue;
        }
        let unresolved = match resolve(case, fixtures) {
            Ok(_) => continue,
            Err(why) => why,
        };
        let finding = match &unresolved {
            Unresolved::NoRequest => {
                Finding::error("eval.case-no-request", file, unresolved.to_string())
                    .pointer(&at)
                    .hint("give the case a `request` (model and messages) or a `fixture`")
            }
            Unresolved::MissingFixture(name) => {
                let hint = did_you_mean(name, fixtures.keys().map(String::as_str))
                    .map(|m| format!("did you mean `{m}`?"))
                    .unwrap_or_else(|| format!("add {FIXTURES_DIR}/{name}{FIXTURE_SUFFIX}"));
                Finding::error("eval.fixture-missing", file, unresolved.to_string())
                    .pointer(format!("{at}/fixture"))
                    .hint(hint)
            }
            Unresolved::NoModel => {
                let where_ = if case.request.is_some() {
                    "request"
                } else {
                    "fixture"
                };
                Finding::error("eval.case-no-model", file, unresolved.to_string())
                    .pointer(format!("{at}/{where_}"))
                    .hint("set `request.model`, or `model` in the fixture")
            }
            Unresolved::NoMessages => {
                Finding::error("eval.case-no-messages", file, unresolved.to_string())
                    .pointer(format!("{at}/request"))
                    .hint("set `request.messages`, or name a `fixture`")
            }
        };
        out.push(finding);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(model: Option<&str>) -> BTreeMap<String, FixtureFile> {
        let fixture = Fixture {
            fixture: "ticket".into(),
            description: None,
            model: model.map(str::to_owned),
            messages: vec![
                Message {
                    role: Role::System,
                    content: "You are a support assistant.".into(),
                },
                Message {
                    role: Role::User,
                    content: "My card 4111 1111 1111 1111".into(),
                },
            ],
        };
        BTreeMap::from([(
            "ticket".to_owned(),
            FixtureFile {
                file: "fixtures/ticket.fixture.yaml".into(),
                fixture: Arc::new(fixture),
            },
        )])
    }

    fn case(request: Option<CaseRequest>, fixture: Option<&str>) -> Case {
        Case {
            name: "c".into(),
            request,
            fixture: fixture.map(str::to_owned),
            repeat: None,
            expect: Expect::outcome(Outcome::Allowed),
        }
    }

    #[test]
    fn a_fixture_gives_model_and_messages() {
        let body = resolve(&case(None, Some("ticket")), &fixture(Some("gpt-4o-mini"))).unwrap();
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["messages"][0]["role"], "system");
        assert_eq!(
            body["messages"][1]["content"],
            "My card 4111 1111 1111 1111"
        );
    }

    #[test]
    fn the_request_overrides_its_fixture() {
        let request = CaseRequest {
            model: Some("gpt-4o".into()),
            messages: None,
            params: Map::from_iter([("temperature".to_owned(), json!(0))]),
        };
        let body = resolve(
            &case(Some(request), Some("ticket")),
            &fixture(Some("gpt-4o-mini")),
        )
        .unwrap();
        assert_eq!(body["model"], "gpt-4o");
        assert_eq!(body["temperature"], 0);
        assert_eq!(body["messages"].as_array().unwrap().len(), 2);
        let request = CaseRequest {
            messages: Some(vec![Message {
                role: Role::User,
                content: "hi".into(),
            }]),
            ..CaseRequest::default()
        };
        let body = resolve(&case(Some(request), Some("ticket")), &fixture(Some("m"))).unwrap();
        assert_eq!(body["model"], "m");
        assert_eq!(body["messages"], json!([{"role": "user", "content": "hi"}]));
    }

    #[test]
    fn a_case_that_makes_no_request_says_why() {
        let fixtures = fixture(None);
        assert_eq!(
            resolve(&case(None, None), &fixtures),
            Err(Unresolved::NoRequest)
        );
        assert_eq!(
            resolve(&case(None, Some("nope")), &fixtures),
            Err(Unresolved::MissingFixture("nope".into()))
        );
        assert_eq!(
            resolve(&case(None, Some("ticket")), &fixtures),
            Err(Unresolved::NoModel)
        );
        let only_model = CaseRequest {
            model: Some("m".into()),
            ..CaseRequest::default()
        };
        assert_eq!(
            resolve(&case(Some(only_model), None), &fixtures),
            Err(Unresolved::NoMessages)
        );
    }

    #[test]
    fn stems_and_outcomes() {
        assert_eq!(stem("pii.eval.yaml", SUITE_SUFFIX), Some("pii"));
        assert_eq!(stem("pii.eval.yml", SUITE_SUFFIX), Some("pii"));
        assert_eq!(stem("pii.yaml", SUITE_SUFFIX), None);
        assert_eq!(stem(".eval.yaml", SUITE_SUFFIX), None);
        assert_eq!(stem("t.fixture.yaml", FIXTURE_SUFFIX), Some("t"));
        for outcome in Outcome::ALL {
            assert_eq!(Outcome::parse(outcome.as_str()), Some(outcome));
            let text = serde_json::to_value(outcome).unwrap();
            assert_eq!(text, outcome.as_str());
        }
        assert_eq!(Outcome::parse("maybe"), None);
    }

    /// The example repository with `files` added, loaded from a work tree.
    fn load_with_files(files: &[(&str, &str)]) -> crate::config::Loaded {
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
        let dir = tempfile::tempdir().unwrap();
        copy(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config-repo"),
            dir.path(),
        );
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let tree = crate::source::WorkTree::open(dir.path()).unwrap();
        crate::config::load(&tree, &crate::config::Limits::default()).unwrap()
    }

    fn located(loaded: &crate::config::Loaded) -> Vec<(&'static str, String)> {
        loaded
            .findings
            .iter()
            .map(|f| (f.rule, f.location()))
            .collect()
    }

    const PII: &str = "\
suite: pii
description: Personal data never reaches the model
cases:
  - name: an SSN never reaches the model
    request: { model: gpt-4o-mini, messages: [{role: user, content: \"My SSN is 123-45-6789\"}] }
    expect: { outcome: redacted, forwardedNotContains: [\"123-45-6789\"] }
  - name: a card in a support ticket is blocked
    fixture: ticket-with-card
    expect: { outcome: blocked, policies: [pii-detector] }
  - name: a burst is throttled
    request: { model: gpt-4o-mini, messages: [{role: user, content: \"hi\"}] }
    repeat: 20
    expect: { outcome: rate-limited }
";

    const TICKET: &str = "\
fixture: ticket-with-card
description: A support ticket quoting a card number
model: gpt-4o-mini
messages:
  - { role: system, content: \"You are a support assistant.\" }
  - { role: user, content: \"My card 4111 1111 1111 1111 was charged twice\" }
";

    #[test]
    fn suites_and_fixtures_load_into_the_repository() {
        let loaded = load_with_files(&[
            ("evals/pii.eval.yaml", PII),
            ("fixtures/ticket-with-card.fixture.yaml", TICKET),
        ]);
        assert_eq!(located(&loaded), vec![]);
        let repo = loaded.repository.unwrap();
        let pii = &repo.suites["pii"];
        assert_eq!(pii.file, "evals/pii.eval.yaml");
        assert_eq!(pii.suite.cases.len(), 3);
        assert_eq!(pii.suite.cases[2].times(), 20);
        assert_eq!(
            pii.suite.cases[1].expect.policies,
            ["pii-detector".to_owned()]
        );
        let body = resolve(&pii.suite.cases[1], &repo.fixtures).unwrap();
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(
            body["messages"][1]["content"],
            "My card 4111 1111 1111 1111 was charged twice"
        );
    }

    #[test]
    fn every_rule_is_a_finding_at_its_place() {
        let suite = "\
suite: privacy
cases:
  - name: one
    fixture: ticket-with-crad
    expect: { outcome: blocked, policies: [pii-detecter, x-mine] }
  - name: one
    request: { messages: [{role: user, content: hi}] }
    expect: { outcome: allowed }
  - name: nothing to send
    expect: { outcome: allowed }
  - name: no messages
    request: { model: gpt-4o }
    expect: { outcome: allowed }
  - name: fixture without a model
    fixture: modelless
    expect: { outcome: allowed }
";
        let modelless = "fixture: model-less\nmessages: [{role: user, content: hi}]\n";
        let loaded = load_with_files(&[
            ("evals/pii.eval.yaml", suite),
            ("fixtures/ticket-with-card.fixture.yaml", TICKET),
            ("fixtures/modelless.fixture.yaml", modelless),
            ("evals/notes.txt", "not a suite"),
        ]);
        assert!(
            loaded.repository.is_none(),
            "an invalid suite makes the revision invalid"
        );
        assert_eq!(
            located(&loaded),
            vec![
                ("file.ignored", "evals/notes.txt".to_owned()),
                (
                    "eval.suite-name-mismatch",
                    "evals/pii.eval.yaml:1:8".to_owned()
                ),
                (
                    "eval.fixture-missing",
                    "evals/pii.eval.yaml:4:14".to_owned()
                ),
                ("eval.unknown-policy", "evals/pii.eval.yaml:5:44".to_owned()),
                ("eval.case-duplicate", "evals/pii.eval.yaml:6:11".to_owned()),
                ("eval.case-no-model", "evals/pii.eval.yaml:7:14".to_owned()),
                ("eval.case-no-request", "evals/pii.eval.yaml:9:5".to_owned()),
                (
                    "eval.case-no-messages",
                    "evals/pii.eval.yaml:12:14".to_owned()
                ),
                ("eval.case-no-model", "evals/pii.eval.yaml:15:14".to_owned()),
                (
                    "eval.fixture-name-mismatch",
                    "fixtures/modelless.fixture.yaml:1:10".to_owned()
                ),
            ]
        );
        let missing = loaded
            .findings
            .iter()
            .find(|f| f.rule == "eval.fixture-missing")
            .unwrap();
        assert_eq!(
            missing.hint.as_deref(),
            Some("did you mean `ticket-with-card`?")
        );
        let unknown = loaded
            .findings
            .iter()
            .find(|f| f.rule == "eval.unknown-policy")
            .unwrap();
        assert_eq!(unknown.message, "unknown policy `pii-detecter`");
        assert_eq!(
            unknown.hint.as_deref(),
            Some("did you mean `pii-detector`?")
        );
    }

    #[test]
    fn schema_errors_are_located_too() {
        let suite = "\
suite: pii
cases:
  - name: bad
    request: { model: gpt-4o, mesages: [] }
    repeat: 5000
    expect: { outcome: redact }
";
        let fixture = "fixture: f\nmessages: []\n";
        let loaded = load_with_files(&[
            ("evals/pii.eval.yaml", suite),
            ("fixtures/f.fixture.yaml", fixture),
        ]);
        assert_eq!(
            located(&loaded),
            vec![
                ("schema.unknown-key", "evals/pii.eval.yaml:4:31".to_owned()),
                ("schema.range", "evals/pii.eval.yaml:5:13".to_owned()),
                ("schema.enum", "evals/pii.eval.yaml:6:24".to_owned()),
                ("schema.length", "fixtures/f.fixture.yaml:2:11".to_owned()),
            ]
        );
        let enum_ = loaded
            .findings
            .iter()
            .find(|f| f.rule == "schema.enum")
            .unwrap();
        assert_eq!(enum_.hint.as_deref(), Some("did you mean `redacted`?"));
    }

    #[test]
    fn a_case_naming_a_broken_fixture_is_not_also_a_finding() {
        let suite =
            "suite: pii\ncases:\n  - name: a\n    fixture: f\n    expect: { outcome: allowed }\n";
        let loaded = load_with_files(&[
            ("evals/pii.eval.yaml", suite),
            ("fixtures/f.fixture.yaml", "fixture: [\n"),
        ]);
        let rules: Vec<_> = loaded.findings.iter().map(|f| f.rule).collect();
        assert_eq!(rules, ["yaml.syntax"], "{:?}", loaded.findings);
    }
}
