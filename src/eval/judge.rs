//! The judge: a case's expectation and a gateway's answer → a verdict with
//! every difference. Pure; tested with captured answers.
//!
//! What the gateway did is read, in this order:
//!
//! | what | from |
//! | ---- | ---- |
//! | outcome | the `Sluice-Outcome` header; else the body's `sluice.outcome`; else inferred from the status (below) |
//! | policies that acted | the `Sluice-Policies` header; else `sluice.actions[].policy`; else none known |
//! | what was forwarded | `sluice.forwarded` where the body has it (`null`: nothing left the gateway); else, on a `2xx`, the answer's `choices[0].message.content` (a gateway such as LiteLLM whose test upstream echoes what it received); else nothing |
//! | the response | on a `2xx`, `choices[0].message.content`; else `error.message`; else the body as text |
//!
//! Inferring the outcome of a gateway that does not name it (LiteLLM):
//!
//! | status | outcome |
//! | ------ | ------- |
//! | `2xx` | `redacted` when what was forwarded is not the request's text (some message is missing from it and it is not the last user message alone), else `allowed` |
//! | `429` | `rate-limited` |
//! | `400`, `401`, `403` whose error says a model or key is not allowed (`not allowed`, `can only access`, `invalid model`, …) | `refused-model` |
//! | other `400`, `403` (a guardrail's refusal) | `blocked` |
//! | anything else | unknown: every expected outcome differs |
//!
//! `flagged` is never inferred: only a gateway that says so reports it.

use super::suite::{Expect, Outcome};
use crate::gateway::{ChatBody, ChatReply};
use serde::Serialize;
use serde_json::Value;
use std::fmt;

/// Characters of a forwarded text or response kept in a report.
pub const MAX_SHOWN_CHARS: usize = 2_000;

/// What a gateway did with one request, as the judge read it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Observed {
    pub status: u16,
    /// `None`: the answer says nothing the judge can read as an outcome.
    pub outcome: Option<Outcome>,
    pub outcome_from: OutcomeSource,
    pub policies: Vec<String>,
    /// What left the gateway for the model (shortened); `None`: nothing.
    pub forwarded: Option<String>,
    /// The answer's text (shortened).
    pub response: String,
    /// The config the gateway says it ran (`Sluice-Digest`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// Where an observed outcome came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum OutcomeSource {
    /// `Sluice-Outcome`.
    Header,
    /// The body's `sluice.outcome`.
    Body,
    /// Inferred from the status and the text (see the module docs).
    Inferred,
}

/// One check of an expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Check {
    Outcome,
    Status,
    Policies,
    ForwardedContains,
    ForwardedNotContains,
    ResponseContains,
    ResponseNotContains,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Outcome => "outcome",
            Check::Status => "status",
            Check::Policies => "policies",
            Check::ForwardedContains => "forwardedContains",
            Check::ForwardedNotContains => "forwardedNotContains",
            Check::ResponseContains => "responseContains",
            Check::ResponseNotContains => "responseNotContains",
        }
    }
}

/// One way an answer differs from what the case expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Difference {
    pub check: Check,
    pub expected: String,
    pub found: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: expected {}, found {}",
            self.check.as_str(),
            self.expected,
            self.found
        )
    }
}

/// The judge's word on one answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub passed: bool,
    pub observed: Observed,
    pub differences: Vec<Difference>,
}

/// Judges `reply`, the answer to `request` (the body sent), against `expect`.
pub fn judge(request: &Value, expect: &Expect, reply: &ChatReply) -> Verdict {
    let sent = message_texts(request);
    let forwarded = forwarded(reply);
    let response = response_text(reply);
    let (outcome, outcome_from) = outcome(reply, forwarded.as_deref(), &sent, &response);
    let policies = policies(reply);

    let mut differences = Vec::new();
    let mut differ = |check, expected: String, found: String| {
        differences.push(Difference {
            check,
            expected,
            found,
        })
    };
    if outcome != Some(expect.outcome) {
        differ(
            Check::Outcome,
            expect.outcome.to_string(),
            outcome.map_or_else(
                || format!("no outcome the judge can read (status {})", reply.status),
                |o| o.to_string(),
            ),
        );
    }
    if let Some(status) = expect.status
        && status != reply.status
    {
        differ(Check::Status, status.to_string(), reply.status.to_string());
    }
    let missing: Vec<&str> = expect
        .policies
        .iter()
        .filter(|p| !policies.contains(p))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        let found = if policies.is_empty() {
            "none reported".to_owned()
        } else {
            policies.join(", ")
        };
        differ(
            Check::Policies,
            format!("{} among those that acted", missing.join(", ")),
            found,
        );
    }
    let shown_forwarded = || {
        forwarded
            .as_deref()
            .map_or_else(|| "nothing forwarded".to_owned(), quoted)
    };
    for text in &expect.forwarded_contains {
        if !forwarded
            .as_deref()
            .is_some_and(|f| f.contains(text.as_str()))
        {
            differ(Check::ForwardedContains, quoted(text), shown_forwarded());
        }
    }
    for text in &expect.forwarded_not_contains {
        if forwarded
            .as_deref()
            .is_some_and(|f| f.contains(text.as_str()))
        {
            differ(
                Check::ForwardedNotContains,
                format!("no {}", quoted(text)),
                shown_forwarded(),
            );
        }
    }
    for text in &expect.response_contains {
        if !response.contains(text.as_str()) {
            differ(Check::ResponseContains, quoted(text), quoted(&response));
        }
    }
    for text in &expect.response_not_contains {
        if response.contains(text.as_str()) {
            differ(
                Check::ResponseNotContains,
                format!("no {}", quoted(text)),
                quoted(&response),
            );
        }
    }
    Verdict {
        passed: differences.is_empty(),
        observed: Observed {
            status: reply.status,
            outcome,
            outcome_from,
            policies,
            forwarded: forwarded.map(|f| shortened(&f)),
            response: shortened(&response),
            digest: reply.digest.clone(),
        },
        differences,
    }
}

/// A text as a difference shows it: quoted, shortened.
fn quoted(text: &str) -> String {
    format!("{:?}", shortened(text))
}

fn shortened(text: &str) -> String {
    if text.chars().count() <= MAX_SHOWN_CHARS {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(MAX_SHOWN_CHARS).collect();
    cut.push('…');
    cut
}

fn sluice_field(reply: &ChatReply) -> Option<&Value> {
    reply.body.json().and_then(|b| b.get("sluice"))
}

fn success(reply: &ChatReply) -> bool {
    (200..300).contains(&reply.status)
}

/// The text of a message's content: a string, or the text parts of a list.
fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::String(text) => Some(text.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        _ => None,
    }
}

/// The contents of a request's messages, in order.
fn message_texts(request: &Value) -> Vec<String> {
    request
        .get("messages")
        .and_then(Value::as_array)
        .map(|messages| {
            messages
                .iter()
                .filter_map(|m| m.get("content").and_then(content_text))
                .collect()
        })
        .unwrap_or_default()
}

/// The content of the last user message of a request.
fn last_user_text(request_texts: &[String], request: Option<&Value>) -> Option<String> {
    let Some(request) = request else {
        return request_texts.last().cloned();
    };
    request
        .get("messages")
        .and_then(Value::as_array)?
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content").and_then(content_text))
}

/// What left the gateway, as text.
fn forwarded(reply: &ChatReply) -> Option<String> {
    if let Some(sluice) = sluice_field(reply)
        && let Some(forwarded) = sluice.get("forwarded")
    {
        return match forwarded {
            Value::Null => None,
            Value::Object(_) if forwarded.get("messages").is_some() => {
                Some(message_texts(forwarded).join("\n"))
            }
            Value::String(text) => Some(text.clone()),
            other => Some(other.to_string()),
        };
    }
    if !success(reply) {
        return None;
    }
    reply.body.json().and_then(choice_text)
}

fn choice_text(body: &Value) -> Option<String> {
    body.pointer("/choices/0/message/content")
        .and_then(content_text)
}

/// The answer's text: the reply, or the refusal's message.
fn response_text(reply: &ChatReply) -> String {
    match &reply.body {
        ChatBody::Text(text) => text.clone(),
        ChatBody::Json(body) => {
            let message = if success(reply) {
                choice_text(body)
            } else {
                body.pointer("/error/message")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            message.unwrap_or_else(|| body.to_string())
        }
    }
}

fn outcome(
    reply: &ChatReply,
    forwarded: Option<&str>,
    sent: &[String],
    response: &str,
) -> (Option<Outcome>, OutcomeSource) {
    if let Some(outcome) = reply.outcome.as_deref().and_then(Outcome::parse) {
        return (Some(outcome), OutcomeSource::Header);
    }
    if let Some(outcome) = sluice_field(reply)
        .and_then(|s| s.get("outcome"))
        .and_then(Value::as_str)
        .and_then(Outcome::parse)
    {
        return (Some(outcome), OutcomeSource::Body);
    }
    (
        infer_outcome(reply.status, response, forwarded, sent),
        OutcomeSource::Inferred,
    )
}

/// The outcome of an answer that does not name it (see the module docs).
/// `error` is the refusal's message, `sent` the request's message texts.
pub fn infer_outcome(
    status: u16,
    error: &str,
    forwarded: Option<&str>,
    sent: &[String],
) -> Option<Outcome> {
    match status {
        200..=299 => Some(match forwarded {
            Some(forwarded) if !unchanged(forwarded, sent) => Outcome::Redacted,
            _ => Outcome::Allowed,
        }),
        429 => Some(Outcome::RateLimited),
        400 | 401 | 403 if refuses_model(error) => Some(Outcome::RefusedModel),
        400 | 403 => Some(Outcome::Blocked),
        _ => None,
    }
}

/// Whether `forwarded` is the request's text: every message in it, or
/// the last user message alone (an echo upstream that answers with it).
fn unchanged(forwarded: &str, sent: &[String]) -> bool {
    sent.iter().all(|text| forwarded.contains(text.as_str()))
        || last_user_text(sent, None).is_some_and(|last| forwarded.trim() == last.trim())
}

/// Whether a refusal says a model (or the key asking for it) is not allowed.
fn refuses_model(error: &str) -> bool {
    let error = error.to_ascii_lowercase();
    let about = error.contains("model") || error.contains("key");
    let refused = [
        "not allowed",
        "not permitted",
        "can only access",
        "no access",
        "does not have access",
        "not authorized to access",
        "invalid model",
        "unsupported model",
        "model not found",
    ]
    .iter()
    .any(|phrase| error.contains(phrase));
    about && refused
}

fn policies(reply: &ChatReply) -> Vec<String> {
    if let Some(policies) = &reply.policies {
        return policies.clone();
    }
    let mut found: Vec<String> = sluice_field(reply)
        .and_then(|s| s.get("actions"))
        .and_then(Value::as_array)
        .map(|actions| {
            actions
                .iter()
                .filter_map(|a| a.get("policy").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(content: &str) -> Value {
        json!({"model": "gpt-4o-mini", "messages": [
            {"role": "system", "content": "You are a support assistant."},
            {"role": "user", "content": content},
        ]})
    }

    /// An answer of the reference gateway, per the contract.
    fn sluice_reply(status: u16, outcome: &str, policies: &[&str], forwarded: Value) -> ChatReply {
        let actions: Vec<Value> = policies
            .iter()
            .map(|p| json!({"pack": "baseline", "policy": p, "action": outcome, "enforced": true, "detail": ""}))
            .collect();
        let sluice = json!({"outcome": outcome, "mode": "enforce", "digest": "sha256:ab",
            "actions": actions, "forwarded": forwarded});
        let body = if status == 200 {
            let echoed = forwarded
                .pointer("/messages/1/content")
                .cloned()
                .unwrap_or_default();
            json!({"choices": [{"message": {"role": "assistant", "content": echoed}}], "sluice": sluice})
        } else {
            json!({"error": {"message": format!("refused: {outcome}"), "type": "policy_violation", "code": outcome}, "sluice": sluice})
        };
        ChatReply {
            status,
            outcome: Some(outcome.into()),
            policies: Some(policies.iter().map(|p| p.to_string()).collect()),
            digest: Some("sha256:ab".into()),
            body: ChatBody::Json(body),
        }
    }

    /// An answer of LiteLLM with an echo upstream: no Sluice fields.
    fn litellm_reply(status: u16, body: Value) -> ChatReply {
        ChatReply {
            status,
            body: ChatBody::Json(body),
            ..ChatReply::default()
        }
    }

    fn echo(content: &str) -> Value {
        json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": content}}]})
    }

    fn expect(outcome: Outcome) -> Expect {
        Expect::outcome(outcome)
    }

    fn checks(verdict: &Verdict) -> Vec<Check> {
        verdict.differences.iter().map(|d| d.check).collect()
    }

    #[test]
    fn every_outcome_the_gateway_names_is_read() {
        for outcome in Outcome::ALL {
            let status = match outcome {
                Outcome::Blocked | Outcome::RefusedModel => 403,
                Outcome::RateLimited => 429,
                _ => 200,
            };
            let forwarded = if status == 200 {
                request("hi")
            } else {
                Value::Null
            };
            let reply = sluice_reply(status, outcome.as_str(), &[], forwarded);
            let verdict = judge(&request("hi"), &expect(outcome), &reply);
            assert!(verdict.passed, "{outcome}: {verdict:?}");
            assert_eq!(verdict.observed.outcome_from, OutcomeSource::Header);
            // Any other expected outcome is one difference, naming both.
            let other = Outcome::ALL.into_iter().find(|o| *o != outcome).unwrap();
            let verdict = judge(&request("hi"), &expect(other), &reply);
            assert_eq!(checks(&verdict), [Check::Outcome]);
            assert_eq!(
                verdict.differences[0].to_string(),
                format!("outcome: expected {other}, found {outcome}")
            );
        }
    }

    #[test]
    fn the_body_names_the_outcome_without_the_header() {
        let mut reply = sluice_reply(200, "flagged", &["prompt-injection"], request("x"));
        reply.outcome = None;
        reply.policies = None;
        let mut want = expect(Outcome::Flagged);
        want.policies = vec!["prompt-injection".into()];
        let verdict = judge(&request("x"), &want, &reply);
        assert!(verdict.passed, "{verdict:?}");
        assert_eq!(verdict.observed.outcome_from, OutcomeSource::Body);
    }

    #[test]
    fn every_check_reports_what_differed() {
        let sent = request("My SSN is 123-45-6789");
        let forwarded = request("My SSN is [REDACTED:SSN]");
        let reply = sluice_reply(200, "redacted", &["pii-detector"], forwarded);
        let all_pass = Expect {
            outcome: Outcome::Redacted,
            status: Some(200),
            policies: vec!["pii-detector".into()],
            forwarded_contains: vec!["[REDACTED:SSN]".into()],
            forwarded_not_contains: vec!["123-45-6789".into()],
            response_contains: vec!["REDACTED".into()],
            response_not_contains: vec!["6789".into()],
        };
        let verdict = judge(&sent, &all_pass, &reply);
        assert!(verdict.passed, "{verdict:?}");

        let all_fail = Expect {
            outcome: Outcome::Allowed,
            status: Some(403),
            policies: vec!["pii-detector".into(), "rate-limit".into()],
            forwarded_contains: vec!["123-45-6789".into()],
            forwarded_not_contains: vec!["[REDACTED:SSN]".into()],
            response_contains: vec!["sorry".into()],
            response_not_contains: vec!["SSN".into()],
        };
        let verdict = judge(&sent, &all_fail, &reply);
        assert!(!verdict.passed);
        assert_eq!(
            checks(&verdict),
            [
                Check::Outcome,
                Check::Status,
                Check::Policies,
                Check::ForwardedContains,
                Check::ForwardedNotContains,
                Check::ResponseContains,
                Check::ResponseNotContains,
            ]
        );
        let said: Vec<String> = verdict.differences.iter().map(|d| d.to_string()).collect();
        assert_eq!(said[1], "status: expected 403, found 200");
        assert_eq!(
            said[2],
            "policies: expected rate-limit among those that acted, found pii-detector"
        );
        assert!(
            said[3].starts_with("forwardedContains: expected \"123-45-6789\", found \"You are"),
            "{}",
            said[3]
        );
        assert_eq!(
            said[5],
            "responseContains: expected \"sorry\", found \"My SSN is [REDACTED:SSN]\""
        );
    }

    #[test]
    fn a_refusal_forwards_nothing() {
        let reply = sluice_reply(403, "blocked", &["pii-detector"], Value::Null);
        let mut want = expect(Outcome::Blocked);
        want.forwarded_not_contains = vec!["4111".into()];
        assert!(judge(&request("4111"), &want, &reply).passed);
        want.forwarded_contains = vec!["4111".into()];
        let verdict = judge(&request("4111"), &want, &reply);
        assert_eq!(
            verdict.differences[0].to_string(),
            "forwardedContains: expected \"4111\", found nothing forwarded"
        );
        assert_eq!(verdict.observed.response, "refused: blocked");
    }

    #[test]
    fn litellm_answers_are_inferred() {
        // An echo upstream answering with what it received, unchanged.
        let sent = request("hello there");
        let reply = litellm_reply(200, echo("hello there"));
        let verdict = judge(&sent, &expect(Outcome::Allowed), &reply);
        assert!(verdict.passed, "{verdict:?}");
        assert_eq!(verdict.observed.outcome_from, OutcomeSource::Inferred);
        assert_eq!(verdict.observed.forwarded.as_deref(), Some("hello there"));

        // Presidio-style masking before the upstream.
        let sent = request("My SSN is 123-45-6789");
        let reply = litellm_reply(200, echo("My SSN is <US_SSN>"));
        let mut want = expect(Outcome::Redacted);
        want.forwarded_not_contains = vec!["123-45-6789".into()];
        assert!(judge(&sent, &want, &reply).passed);

        // LiteLLM's own rate limiter.
        let reply = litellm_reply(
            429,
            json!({"error": {"message": "Max parallel request limit reached. Hit limit for api_key: 88dc28. tpm_limit: 100, current_tpm: 122, rpm_limit: 2, current_rpm: 3", "type": "None", "param": "None", "code": "429"}}),
        );
        assert!(judge(&sent, &expect(Outcome::RateLimited), &reply).passed);

        // A key restricted to some models.
        let reply = litellm_reply(
            401,
            json!({"error": {"message": "Authentication Error, key not allowed to access model. This key can only access models=['gpt-4o-mini']. Tried to access gpt-4o", "type": "key_model_access_denied", "param": "model", "code": "401"}}),
        );
        assert!(judge(&sent, &expect(Outcome::RefusedModel), &reply).passed);

        // A model the proxy does not serve.
        let reply = litellm_reply(
            400,
            json!({"error": {"message": "{'error': '/chat/completions: Invalid model name passed in model=gpt-5. Call `/v1/models` to view available models for your key.'}", "type": "None", "param": "None", "code": "400"}}),
        );
        assert!(judge(&sent, &expect(Outcome::RefusedModel), &reply).passed);

        // A guardrail's refusal.
        let reply = litellm_reply(
            400,
            json!({"error": {"message": "{'error': 'Violated guardrail policy', 'bedrock_guardrail_response': 'credit card'}", "type": "None", "param": "None", "code": "400"}}),
        );
        let verdict = judge(&sent, &expect(Outcome::Blocked), &reply);
        assert!(verdict.passed, "{verdict:?}");
        assert_eq!(verdict.observed.forwarded, None);

        // A bad master key is no outcome at all.
        let reply = litellm_reply(
            401,
            json!({"error": {"message": "Authentication Error, Invalid proxy server token passed. Received API Key = sk-...7890", "type": "auth_error", "param": "None", "code": "401"}}),
        );
        let verdict = judge(&sent, &expect(Outcome::Blocked), &reply);
        assert_eq!(verdict.observed.outcome, None);
        assert_eq!(
            verdict.differences[0].found,
            "no outcome the judge can read (status 401)"
        );
        // A crashed upstream neither.
        let reply = ChatReply {
            status: 502,
            body: ChatBody::Text("Bad Gateway".into()),
            ..ChatReply::default()
        };
        assert_eq!(
            judge(&sent, &expect(Outcome::Allowed), &reply)
                .observed
                .outcome,
            None
        );
    }

    #[test]
    fn policies_come_from_actions_without_the_header() {
        let mut reply = sluice_reply(
            403,
            "blocked",
            &["pii-detector", "audit-logger"],
            Value::Null,
        );
        reply.policies = None;
        let verdict = judge(&request("x"), &expect(Outcome::Blocked), &reply);
        assert_eq!(verdict.observed.policies, ["pii-detector", "audit-logger"]);
        let mut want = expect(Outcome::Blocked);
        want.policies = vec!["rate-limit".into()];
        let reply = litellm_reply(400, json!({"error": {"message": "guardrail"}}));
        let verdict = judge(&request("x"), &want, &reply);
        assert_eq!(
            verdict.differences[0].to_string(),
            "policies: expected rate-limit among those that acted, found none reported"
        );
    }

    #[test]
    fn long_texts_are_shortened_in_reports() {
        let long = "a".repeat(10_000);
        let reply = litellm_reply(200, echo(&long));
        let verdict = judge(&request(&long), &expect(Outcome::Allowed), &reply);
        assert!(verdict.passed);
        assert_eq!(
            verdict.observed.response.chars().count(),
            MAX_SHOWN_CHARS + 1
        );
    }
}
