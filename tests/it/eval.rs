//! `sluice eval` against a real HTTP gateway on 127.0.0.1, reached through
//! the real `http` driver from a real git repository.
//!
//! NB: the gateway here is a small stand-in that answers per the eval wire
//! contract (README, "Eval suites and fixtures"): `Sluice-Outcome`,
//! `Sluice-Policies`, `Sluice-Digest`, the body's `sluice` field, 403/429
//! refusals, `POST /admin/v1/reset`. When the enforcing reference gateway
//! (`sluice gateway`) is merged, [`ContractGateway`] can give way to a
//! `GatewayProcess` running it with the same repository's policy.

use crate::support::{TestRepo, sluice_with};
use axum::{
    Json, Router,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

const TOKEN_ENV: &str = "EVAL_GATEWAY_TOKEN";
const TOKEN: &str = "eval-gw-token-5c2e";
/// Requests the stand-in lets through between resets.
const RATE: usize = 5;

#[derive(Default)]
struct State {
    since_reset: usize,
    resets: usize,
}

/// A gateway answering per the contract: redacts SSNs, blocks card
/// numbers, refuses models other than gpt-4o-mini, throttles past
/// [`RATE`] requests; its upstream echoes the last user message.
struct ContractGateway {
    runtime: Option<tokio::runtime::Runtime>,
    url: String,
    state: Arc<Mutex<State>>,
}

impl ContractGateway {
    fn start() -> ContractGateway {
        let state: Arc<Mutex<State>> = Arc::default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(listener).unwrap()
        };
        let chat_state = state.clone();
        let reset_state = state.clone();
        let app = Router::new()
            .route(
                "/v1/chat/completions",
                post(move |headers: HeaderMap, Json(body): Json<Value>| {
                    let state = chat_state.clone();
                    async move { chat(&state, &headers, body) }
                }),
            )
            .route(
                "/admin/v1/reset",
                post(move |headers: HeaderMap| {
                    let state = reset_state.clone();
                    async move {
                        if !authorized(&headers) {
                            return StatusCode::UNAUTHORIZED;
                        }
                        let mut state = state.lock().unwrap();
                        state.since_reset = 0;
                        state.resets += 1;
                        StatusCode::OK
                    }
                }),
            );
        runtime.spawn(async move { axum::serve(listener, app).await });
        ContractGateway {
            runtime: Some(runtime),
            url,
            state,
        }
    }

    fn resets(&self) -> usize {
        self.state.lock().unwrap().resets
    }
}

impl Drop for ContractGateway {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
        }
    }
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

/// `ddd-dd-dddd` replaced by `[REDACTED:SSN]`.
fn redact_ssns(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let shape = "ddd-dd-dddd";
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let fits = i + shape.len() <= chars.len()
            && shape.chars().zip(&chars[i..]).all(|(s, c)| match s {
                'd' => c.is_ascii_digit(),
                _ => *c == s,
            });
        if fits {
            out.push_str("[REDACTED:SSN]");
            i += shape.len();
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

fn chat(state: &Mutex<State>, headers: &HeaderMap, body: Value) -> Response {
    const DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    if !authorized(headers) {
        return (StatusCode::UNAUTHORIZED, "no").into_response();
    }
    let contents: Vec<String> = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_str().map(str::to_owned))
        .collect();
    let refuse = |status: StatusCode, outcome: &str, policy: &str| {
        let sluice = json!({"outcome": outcome, "mode": "enforce", "digest": DIGEST,
            "actions": [{"pack": "baseline", "policy": policy, "action": outcome, "enforced": true, "detail": ""}],
            "forwarded": null});
        (
            status,
            [
                ("sluice-outcome", outcome.to_owned()),
                ("sluice-policies", policy.to_owned()),
                ("sluice-digest", DIGEST.to_owned()),
            ],
            Json(
                json!({"error": {"message": format!("refused by {policy}: {outcome}"),
                "type": "policy_violation", "code": outcome}, "sluice": sluice}),
            ),
        )
            .into_response()
    };
    if body["model"] != "gpt-4o-mini" {
        return refuse(StatusCode::FORBIDDEN, "refused-model", "model-allowlist");
    }
    {
        let mut state = state.lock().unwrap();
        state.since_reset += 1;
        if state.since_reset > RATE {
            return refuse(StatusCode::TOO_MANY_REQUESTS, "rate-limited", "rate-limit");
        }
    }
    if contents.iter().any(|c| c.contains("4111")) {
        return refuse(StatusCode::FORBIDDEN, "blocked", "pii-detector");
    }
    let mut forwarded = body.clone();
    for message in forwarded["messages"].as_array_mut().into_iter().flatten() {
        if let Some(text) = message["content"].as_str() {
            message["content"] = redact_ssns(text).into();
        }
    }
    let redacted = forwarded != body;
    let (outcome, policies) = if redacted {
        ("redacted", "pii-detector")
    } else {
        ("allowed", "")
    };
    let echoed = forwarded["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| m["content"].clone())
        .unwrap_or_default();
    let actions: Vec<Value> = (redacted)
        .then(|| json!({"pack": "baseline", "policy": "pii-detector", "action": "redact", "enforced": true, "detail": "ssn"}))
        .into_iter()
        .collect();
    (
        StatusCode::OK,
        [
            ("sluice-outcome", outcome),
            ("sluice-policies", policies),
            ("sluice-digest", DIGEST),
        ],
        Json(json!({
            "id": "chatcmpl-eval", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": echoed}}],
            "sluice": {"outcome": outcome, "mode": "enforce", "digest": DIGEST,
                "actions": actions, "forwarded": forwarded},
        })),
    )
        .into_response()
}

const PASSING: &str = r#"suite: pii
description: Personal data never reaches the model
cases:
  - name: an SSN never reaches the model
    request: { model: gpt-4o-mini, messages: [{role: user, content: "My SSN is 123-45-6789"}] }
    expect: { outcome: redacted, status: 200, policies: [pii-detector], forwardedContains: ["[REDACTED:SSN]"], forwardedNotContains: ["123-45-6789"], responseNotContains: ["6789"] }
  - name: a card in a support ticket is blocked
    fixture: ticket-with-card
    expect: { outcome: blocked, status: 403, policies: [pii-detector], forwardedNotContains: ["4111"] }
  - name: an unlisted model is refused
    fixture: ticket-with-card
    request: { model: gpt-4o, messages: [{role: user, content: "hello"}] }
    expect: { outcome: refused-model, policies: [model-allowlist] }
  - name: a burst is throttled
    request: { model: gpt-4o-mini, messages: [{role: user, content: "hi"}] }
    repeat: 6
    expect: { outcome: rate-limited, status: 429, policies: [rate-limit] }
"#;

const FIXTURE: &str = r#"fixture: ticket-with-card
description: A support ticket quoting a card number
model: gpt-4o-mini
messages:
  - { role: system, content: "You are a support assistant." }
  - { role: user, content: "My card 4111 1111 1111 1111 was charged twice" }
"#;

/// The stand-in gateway does not redact e-mail addresses.
const FAILING: &str = r#"suite: leaky
cases:
  - name: an e-mail <a@b.example> & its "owner" are redacted
    request: { model: gpt-4o-mini, messages: [{role: user, content: "Write to a@b.example"}] }
    expect: { outcome: redacted, forwardedNotContains: ["a@b.example"] }
  - name: plain text is allowed
    request: { model: gpt-4o-mini, messages: [{role: user, content: "hello"}] }
    expect: { outcome: allowed, responseContains: ["hello"] }
"#;

/// The example repository with its `eval` environment on `gateway`, and
/// the suites above.
fn repository(gateway: &ContractGateway) -> TestRepo {
    let repo = TestRepo::example();
    repo.write(
        "environments/eval/gateways.yaml",
        format!(
            "gateways:\n  - name: gw-0\n    driver: http\n    url: {}\n    tokenEnv: {TOKEN_ENV}\n    timeout: 5s\n",
            gateway.url
        ),
    );
    // NB: only this test's suites: the example's own are for the
    // enforcing reference gateway, not this stand-in.
    for file in [
        "evals/pii.eval.yaml",
        "evals/injection.eval.yaml",
        "evals/models.eval.yaml",
        "fixtures/instruction-override.fixture.yaml",
    ] {
        repo.remove(file);
    }
    repo.write("evals/pii.eval.yaml", PASSING);
    repo.write("evals/leaky.eval.yaml", FAILING);
    repo.write("fixtures/ticket-with-card.fixture.yaml", FIXTURE);
    repo.commit("eval suites against a contract gateway");
    repo
}

fn eval(repo: &TestRepo, args: &[&str]) -> crate::support::Run {
    let mut all = vec!["eval"];
    all.extend(args);
    all.extend(["--repo", repo.path().to_str().unwrap()]);
    sluice_with(
        &all,
        &[
            ("SLUICE_ALLOW_ENV", "production=PROD_*,eval=EVAL_*"),
            (TOKEN_ENV, TOKEN),
        ],
    )
}

#[test]
fn a_passing_suite_exits_0() {
    let gateway = ContractGateway::start();
    let repo = repository(&gateway);
    let run = eval(&repo, &["eval", "--suite", "pii"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    for case in [
        "an SSN never reaches the model",
        "a card in a support ticket is blocked",
        "an unlisted model is refused",
        "a burst is throttled",
    ] {
        let line = run.stdout.lines().find(|l| l.contains(case)).unwrap();
        assert!(line.starts_with("pii    gw-0"), "{line}");
        assert!(line.contains("  pass  "), "{line}");
    }
    assert!(
        run.stdout
            .contains("passed: 4 passed, 0 failed (1 suite × 1 gateway of eval)"),
        "{}",
        run.stdout
    );
    assert_eq!(gateway.resets(), 1, "the suite starts from a reset");
    // A second run starts from a reset again, so the burst counts afresh.
    assert_eq!(eval(&repo, &["eval", "--suite", "pii"]).code, 0);
    assert_eq!(gateway.resets(), 2);
    // Without the reset, the throttle from the last run is still there.
    let run = eval(&repo, &["eval", "--suite", "pii", "--no-reset"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
}

#[test]
fn a_failing_suite_exits_1_with_what_differed_and_junit() {
    let gateway = ContractGateway::start();
    let repo = repository(&gateway);
    let junit = tempfile::NamedTempFile::new().unwrap();
    let run = eval(&repo, &["eval", "--junit", junit.path().to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    crate::assert_stable!(&repo, "eval_text", &run.stdout);
    let case = r#"an e-mail <a@b.example> & its "owner" are redacted"#;
    assert!(
        run.stdout.contains(&format!(
            "leaky on gw-0: {case}\n  outcome: expected redacted, found allowed\n  forwardedNotContains: expected no \"a@b.example\", found \"Write to a@b.example\"\n"
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("FAILED: 5 passed, 1 failed (2 suites × 1 gateway of eval)"),
        "{}",
        run.stdout
    );
    // Each suite started from its own reset: pii's burst is not throttled
    // by leaky's requests.
    assert_eq!(gateway.resets(), 2);

    let xml = std::fs::read_to_string(junit.path()).unwrap();
    well_formed(&xml);
    assert!(
        xml.contains(r#"<testsuite name="leaky on gw-0" tests="2" failures="1" errors="0">"#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<testsuite name="pii on gw-0" tests="4" failures="0" errors="0">"#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<testcase name="an e-mail &lt;a@b.example&gt; &amp; its &quot;owner&quot; are redacted" classname="leaky.gw-0">"#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<failure message="outcome: expected redacted, found allowed; forwardedNotContains: expected no &quot;a@b.example&quot;, found &quot;Write to a@b.example&quot;">"#),
        "{xml}"
    );
    // `-o junit` prints the same document.
    let run = eval(&repo, &["eval", "-o", "junit"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout, xml);
}

#[test]
fn json_output_has_every_case_with_what_was_observed() {
    let gateway = ContractGateway::start();
    let repo = repository(&gateway);
    let run = eval(
        &repo,
        &["eval", "-o", "json", "--suite", "leaky", "--suite", "pii"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    crate::assert_stable!(&repo, "eval_json", &run.stdout);
    let json = run.json();
    assert_eq!(json["environment"], "eval");
    assert_eq!(json["passed"], false);
    assert_eq!(json["totals"], json!({"passed": 5, "failed": 1}));
    assert_eq!(json["revision"].as_str().unwrap().len(), 40);
    let runs = json["runs"].as_array().unwrap();
    let names: Vec<(&str, &str)> = runs
        .iter()
        .map(|r| (r["suite"].as_str().unwrap(), r["gateway"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("leaky", "gw-0"), ("pii", "gw-0")]);
    let leaky = &runs[0];
    assert_eq!(leaky["reset"], json!({"state": "done"}));
    assert_eq!(leaky["totals"], json!({"passed": 1, "failed": 1}));
    let failed = &leaky["cases"][0];
    assert_eq!(failed["passed"], false);
    assert_eq!(failed["sent"], 1);
    assert_eq!(failed["observed"]["outcome"], "allowed");
    assert_eq!(failed["observed"]["outcomeFrom"], "header");
    assert_eq!(failed["observed"]["status"], 200);
    assert_eq!(failed["observed"]["forwarded"], "Write to a@b.example");
    assert_eq!(
        failed["differences"][0],
        json!({"check": "outcome", "expected": "redacted", "found": "allowed"})
    );
    assert_eq!(failed["differences"][1]["check"], "forwardedNotContains");
    let burst = &runs[1]["cases"][3];
    assert_eq!(burst["sent"], 6);
    assert_eq!(burst["observed"]["outcome"], "rate-limited");
    assert_eq!(burst["observed"]["policies"], json!(["rate-limit"]));
    let redacted = &runs[1]["cases"][0]["observed"];
    assert_eq!(redacted["forwarded"], "My SSN is [REDACTED:SSN]");
    assert!(redacted["digest"].as_str().unwrap().starts_with("sha256:"));
}

#[test]
fn unknown_suites_and_environments_are_usage_errors() {
    let gateway = ContractGateway::start();
    let repo = repository(&gateway);
    let run = eval(&repo, &["eval", "--suite", "pi"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("no suite `pi`; suites: leaky, pii"),
        "{}",
        run.stderr
    );
    let run = eval(&repo, &["nowhere"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("the environments are: development, eval, production, staging"),
        "{}",
        run.stderr
    );
    assert_eq!(gateway.resets(), 0, "nothing was run");
}

#[test]
fn a_driver_without_a_chat_endpoint_fails_its_cases() {
    let gateway = ContractGateway::start();
    let repo = repository(&gateway);
    // staging's gateway is a `file` gateway.
    let run = eval(&repo, &["staging", "--suite", "leaky"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("note: staging-1 cannot reset its runtime state"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("error: request 1: this gateway's driver has no chat endpoint"),
        "{}",
        run.stdout
    );
}

#[test]
fn an_invalid_suite_makes_the_revision_invalid() {
    let gateway = ContractGateway::start();
    let repo = repository(&gateway);
    repo.write(
        "evals/bad.eval.yaml",
        "suite: bad\ncases:\n  - name: a\n    fixture: ticket-with-crad\n    expect: { outcome: blocked, policies: [pii-detecter] }\n",
    );
    repo.commit("a broken suite");
    let run = repo.sluice(&["validate", "--rev", "HEAD"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stdout.contains("error[eval.fixture-missing]: fixture `ticket-with-crad` does not exist\n  --> evals/bad.eval.yaml:4:14"), "{}", run.stdout);
    assert!(run.stdout.contains("error[eval.unknown-policy]: unknown policy `pii-detecter`\n  --> evals/bad.eval.yaml:5:44"), "{}", run.stdout);
    let run = eval(&repo, &["eval"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("is invalid: no suites are run"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("eval.unknown-policy"), "{}", run.stderr);
}

/// Fails unless `xml` is one well-formed XML element (with a declaration):
/// tags balanced, attribute values quoted, every `&` an entity, no stray `<`.
fn well_formed(xml: &str) {
    fn entity_ok(rest: &str) -> bool {
        let Some(end) = rest.find(';') else {
            return false;
        };
        let name = &rest[1..end];
        matches!(name, "amp" | "lt" | "gt" | "quot" | "apos")
            || name
                .strip_prefix('#')
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    }
    let body = xml
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
        .expect("an XML declaration");
    let mut stack: Vec<String> = Vec::new();
    let mut roots = 0;
    let mut i = 0;
    let bytes = body.as_bytes();
    while i < bytes.len() {
        let rest = &body[i..];
        match bytes[i] {
            b'<' => {
                let end = rest.find('>').expect("a tag ends") + i;
                let tag = &body[i + 1..end];
                if let Some(name) = tag.strip_prefix('/') {
                    assert_eq!(stack.pop().as_deref(), Some(name), "closing tag {name}");
                } else {
                    let self_closing = tag.ends_with('/');
                    let tag = tag.trim_end_matches('/');
                    let name = tag.split_whitespace().next().unwrap();
                    let attributes = &tag[name.len()..];
                    assert_eq!(
                        attributes.matches('"').count() % 2,
                        0,
                        "quoted attributes in <{tag}>"
                    );
                    assert!(
                        !attributes.contains('<'),
                        "no `<` in attributes of <{name}>"
                    );
                    for (at, _) in attributes.match_indices('&') {
                        assert!(entity_ok(&attributes[at..]), "an entity in <{name}>");
                    }
                    if stack.is_empty() {
                        roots += 1;
                    }
                    if !self_closing {
                        stack.push(name.to_owned());
                    }
                }
                i = end + 1;
            }
            b'&' => {
                assert!(
                    entity_ok(rest),
                    "an entity at {}",
                    &rest[..rest.len().min(20)]
                );
                i += 1;
            }
            b'>' => panic!("a stray `>`"),
            _ => i += 1,
        }
    }
    assert!(stack.is_empty(), "unclosed {stack:?}");
    assert_eq!(roots, 1, "one root element");
}
