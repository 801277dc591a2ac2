//! `POST /v1/chat/completions`: the running config enforced on an
//! OpenAI-compatible chat request.
//!
//! ```text
//!  body ─► parse (400) ─► running config? (503 no_config)
//!       ─► engine.evaluate ─► audit record (when a chain has audit-logger)
//!       ─► blocked / refused-model: 403, rate-limited: 429 + Retry-After
//!       └► otherwise: forward (possibly redacted) to the upstream;
//!          its answer + "sluice"
//! ```
//!
//! Every evaluated answer carries `Sluice-Outcome`, `Sluice-Policies`
//! (policies that acted, chain order, comma-separated), `Sluice-Digest`,
//! `Sluice-Request-Id`, and a top-level `"sluice"` object: `outcome`,
//! `mode`, `digest`, `request_id`, `actions` (`pack`, `policy`, `action`,
//! `enforced`, `detail`) and `forwarded` (the body as it left the gateway,
//! or `null`).

use super::{Shared, rfc3339};
use crate::enforce::{ChatRequest, Evaluation, Outcome, audit};
use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

pub const CHAT_PATH: &str = "/v1/chat/completions";
pub const OUTCOME_HEADER: &str = "sluice-outcome";
pub const POLICIES_HEADER: &str = "sluice-policies";
pub const DIGEST_HEADER: &str = "sluice-digest";
pub const REQUEST_ID_HEADER: &str = "sluice-request-id";
/// Largest upstream answer relayed; a bigger one is a `502`.
const MAX_UPSTREAM_BYTES: usize = 16 * 1024 * 1024;
/// How long the upstream may take to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(120);

/// Where allowed requests go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Upstream {
    /// Answer in-process: the completion's content is the forwarded text.
    #[default]
    Echo,
    /// An OpenAI-compatible server: the full URL of its chat endpoint.
    Http { endpoint: String },
}

impl Upstream {
    /// `echo`, or an OpenAI-compatible base URL, with or without its `/v1`:
    /// `http://host:4000` and `http://host:4000/v1` both post to
    /// `http://host:4000/v1/chat/completions`.
    pub fn parse(text: &str) -> Result<Upstream, String> {
        if text == "echo" {
            return Ok(Upstream::Echo);
        }
        let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(format!(
                "`{text}`: the upstream must be an http(s) URL or `echo`"
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("`{text}`: a base URL has no query or fragment"));
        }
        let base = url.as_str().trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        Ok(Upstream::Http {
            endpoint: format!("{base}{CHAT_PATH}"),
        })
    }
}

/// The answer of the echo upstream: a chat completion whose content is the
/// text of every forwarded message, joined with `\n`: exactly what would
/// have left the gateway.
pub fn echo_completion(forwarded: &ChatRequest, id: &str, created: u64) -> Value {
    let content = forwarded.joined_text();
    json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion",
        "created": created,
        "model": forwarded.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    })
}

/// An OpenAI-style error answer.
pub fn error_body(message: &str, kind: &str, code: &str) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub(super) async fn chat_completions(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request = match ChatRequest::parse(&body) {
        Ok(request) => request,
        Err(e) => {
            let body = error_body(&e.to_string(), "invalid_request_error", "invalid_request");
            return json_response(StatusCode::BAD_REQUEST, &body);
        }
    };
    if request.rest.get("stream") == Some(&Value::Bool(true)) {
        let body = error_body(
            "the reference gateway does not stream; send \"stream\": false",
            "invalid_request_error",
            "stream_unsupported",
        );
        return json_response(StatusCode::BAD_REQUEST, &body);
    }
    // Only what a chat needs: the whole `Running` holds the document text.
    let running = {
        let state = shared.lock();
        state
            .running
            .as_ref()
            .map(|r| (r.engine.clone(), r.digest.clone()))
    };
    let Some((engine, digest)) = running else {
        let body = error_body(
            "the gateway runs no config yet",
            "service_unavailable",
            "no_config",
        );
        return json_response(StatusCode::SERVICE_UNAVAILABLE, &body);
    };
    let evaluation = {
        // NB: the counters are held for the whole evaluation (text scans
        // included: linear, and capped by the body limit), so rate-limit
        // admission and the chain are one step per request.
        let mut counters = shared.counters();
        engine.evaluate(&mut counters, &request, Instant::now())
    };
    let request_id = format!("{:016x}", rand::random::<u64>());
    let digest = digest.as_str();
    if engine.audits() {
        let record = audit::record(
            &request,
            &evaluation,
            digest,
            &request_id,
            rfc3339(SystemTime::now()),
        );
        let line = serde_json::to_string(&record).unwrap_or_default();
        // NB: a file append goes to the blocking pool; a memory append
        // is a push, and a thread hop would cost more than it.
        let written = if shared.audit.in_memory() {
            shared.audit.append(line)
        } else {
            let log = shared.clone();
            tokio::task::spawn_blocking(move || log.audit.append(line))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        };
        if let Err(e) = written {
            // NB: a request that cannot be audited is not served: the
            // chain promised a record of every call.
            tracing::error!(error = %e, "could not append the audit record");
            let body = error_body(
                "the audit record could not be written",
                "server_error",
                "audit_failed",
            );
            return json_response(StatusCode::INTERNAL_SERVER_ERROR, &body);
        }
    }
    let sluice = sluice_object(&evaluation, digest, &request_id);
    let (status, mut body) = answer(&shared, &evaluation, &request_id).await;
    if let Value::Object(map) = &mut body {
        map.insert("sluice".into(), sluice);
    }
    let mut response = json_response(status, &body);
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    set(OUTCOME_HEADER, evaluation.outcome.as_str());
    set(POLICIES_HEADER, &evaluation.policies().join(","));
    set(DIGEST_HEADER, digest);
    set(REQUEST_ID_HEADER, &request_id);
    if let Some(wait) = evaluation.retry_after {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    response
}

/// The status and body before `"sluice"` is added: a refusal, the echo, or
/// what the upstream answered.
async fn answer(shared: &Shared, evaluation: &Evaluation, request_id: &str) -> (StatusCode, Value) {
    let forwarded = match &evaluation.forwarded {
        Some(forwarded) if !evaluation.outcome.is_terminal() => forwarded,
        _ => {
            let status = match evaluation.outcome {
                Outcome::RateLimited => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::FORBIDDEN,
            };
            let message = evaluation
                .actions
                .last()
                .map_or("refused by policy", |a| a.detail.as_str());
            let body = error_body(message, "policy_violation", evaluation.outcome.as_str());
            return (status, body);
        }
    };
    match &shared.upstream {
        Upstream::Echo => {
            let created = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            (
                StatusCode::OK,
                echo_completion(forwarded, &format!("sluice-{request_id}"), created),
            )
        }
        Upstream::Http { endpoint } => {
            let sent = shared
                .client
                .post(endpoint)
                .timeout(UPSTREAM_TIMEOUT)
                .json(&forwarded.to_value())
                .send()
                .await;
            let upstream_error = |message: String| {
                tracing::warn!(%endpoint, %message, "upstream failed");
                (
                    StatusCode::BAD_GATEWAY,
                    error_body(&message, "upstream_error", "upstream_error"),
                )
            };
            let mut response = match sent {
                Ok(response) => response,
                Err(e) => return upstream_error(format!("the upstream did not answer: {e}")),
            };
            let status =
                StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            // NB: read in chunks up to a cap: an upstream is trusted with
            // the prompt, not with the gateway's memory.
            let mut bytes = Vec::new();
            loop {
                match response.chunk().await {
                    Ok(Some(chunk)) if bytes.len() + chunk.len() <= MAX_UPSTREAM_BYTES => {
                        bytes.extend_from_slice(&chunk);
                    }
                    Ok(Some(_)) => {
                        return upstream_error(format!(
                            "the upstream answered more than {MAX_UPSTREAM_BYTES} bytes"
                        ));
                    }
                    Ok(None) => break,
                    Err(e) => return upstream_error(format!("reading the upstream's answer: {e}")),
                }
            }
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(body @ Value::Object(_)) => (status, body),
                Ok(_) | Err(_) => upstream_error(format!(
                    "the upstream answered {status} without a JSON object"
                )),
            }
        }
    }
}

/// The `"sluice"` object of every evaluated answer.
fn sluice_object(evaluation: &Evaluation, digest: &str, request_id: &str) -> Value {
    json!({
        "outcome": evaluation.outcome,
        "mode": evaluation.mode,
        "digest": digest,
        "request_id": request_id,
        "actions": evaluation.actions,
        "forwarded": evaluation.forwarded.as_ref().map(ChatRequest::to_value),
    })
}

#[cfg(test)]
#[path = "chat_tests.rs"]
mod tests;
