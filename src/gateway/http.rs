//! The `http` driver: a client of the Sluice gateway protocol (see
//! [`super::protocol`]).
//!
//! Every answer of the protocol maps onto one [`GatewayError`] variant so the
//! reconciler can decide what to do without looking at status codes:
//!
//! | answer | result |
//! | ------ | ------ |
//! | `200` on `PUT` | [`Applied::Swapped`], after checking the `ETag` is the digest sent ([`GatewayError::Mismatch`] otherwise) |
//! | `304` | [`Applied::Unchanged`] |
//! | `412` | [`GatewayError::Changed`] |
//! | `409` | [`GatewayError::StaleGeneration`], the running generation from the body `{"generation": N}` |
//! | `422` | [`GatewayError::Refused`] with the problems from the body |
//! | `429` | [`GatewayError::Busy`] with `Retry-After` (seconds) |
//! | `401`, `403` | [`GatewayError::Unauthorized`] |
//! | other | [`GatewayError::Status`] |
//! | no connection | [`GatewayError::Unreachable`] |
//! | no answer in time | [`GatewayError::Timeout`] |
//!
//! Reading what a gateway runs (`live`) checks `/status` against what `GET
//! /sluice/v1/config` serves (its `ETag` and the digest of its body): they
//! must agree, or the answer is [`GatewayError::Mismatch`].
//!
//! When the gateway runs nothing (`expected` is `None`), an apply sends
//! `If-None-Match: *` — the standard HTTP precondition for "only if there is
//! no current representation" — so that a config that appeared meanwhile
//! (a hand edit, another writer) answers `412` instead of being overwritten.
//!
//! The bearer token is read once, kept in a header value marked sensitive,
//! and scrubbed from any text a gateway sends back before it goes into an
//! error: it must never reach a log, the ledger or a terminal.

use super::{
    Applied, ChatBody, ChatReply, Desired, DriverContext, Gateway, GatewayError, Live,
    protocol::{self, Refused, Status},
};
use crate::config::{Digest, model};
use async_trait::async_trait;
use reqwest::{
    Method, RequestBuilder, Response, StatusCode, Url,
    header::{self, HeaderValue},
};
use std::time::Duration;

/// Largest body read from a gateway for a config (a hostile or broken gateway
/// must not make Sluice buffer without bound).
const MAX_CONFIG_BYTES: usize = 64 * 1024 * 1024;
/// Largest body read for anything else (status, problems, error text).
const MAX_SMALL_BYTES: usize = 1024 * 1024;
/// How much of an unexpected answer's body goes into an error message.
const MESSAGE_CHARS: usize = 300;

pub struct HttpGateway {
    client: reqwest::Client,
    /// Base URL without a trailing slash.
    base: String,
    /// `Bearer <token>`, marked sensitive so it is never printed by `Debug`.
    authorization: Option<HeaderValue>,
    /// The token as text a gateway echoes back may hold it: as it is, as
    /// `{:?}` quotes it (serde's "invalid type: string \"…\"") and as JSON
    /// escapes it; only to scrub it. Empty without a token.
    token_forms: Vec<String>,
    timeout: Duration,
    /// Whose gateway this is, for the log lines about it.
    environment: String,
    name: String,
}

impl std::fmt::Debug for HttpGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // NB: no token, not even its length.
        f.debug_struct("HttpGateway")
            .field("base", &self.base)
            .field("authenticated", &self.authorization.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl HttpGateway {
    /// Builds the driver for one of `environment`'s gateways: checks the
    /// URL against the operator's allowances, the timeout, and reads the
    /// token now, so a missing secret shows up when gateways are connected
    /// rather than at the first apply.
    pub fn new(
        environment: &str,
        spec: &model::HttpGateway,
        context: &DriverContext,
    ) -> Result<Self, GatewayError> {
        // NB: errors reach logs and alerts: the URL is shown without user-info.
        let shown = crate::source::follow::redact_url(&spec.url);
        let url = Url::parse(&spec.url).map_err(|e| {
            GatewayError::Config(format!("gateway `{}`: url `{shown}`: {e}", spec.name))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(GatewayError::Config(format!(
                "gateway `{}`: url `{shown}` must start with http:// or https://",
                spec.name
            )));
        }
        // NB: checked again here, not only by validation: nothing reaches a
        // host the operator did not allow, whichever path built the spec.
        context
            .secrets
            .allowances()
            .url(environment, &spec.url)
            .map_err(|denied| {
                GatewayError::Config(format!(
                    "gateway `{}`: url `{shown}`: {denied} (--allow-url)",
                    spec.name
                ))
            })?;
        let timeout = match &spec.timeout {
            None => context.timeout,
            Some(text) => text.parse().ok_or_else(|| {
                GatewayError::Config(format!(
                    "gateway `{}`: timeout `{}`: {}",
                    spec.name,
                    text.0,
                    model::DURATION_HINT
                ))
            })?,
        };
        if timeout.is_zero() {
            return Err(GatewayError::Config(format!(
                "gateway `{}`: the timeout must be longer than zero",
                spec.name
            )));
        }
        let (authorization, token) = match &spec.token_env {
            None => (None, None),
            Some(variable) => {
                let variable = &variable.0;
                let token = context
                    .secrets
                    .read(environment, variable)
                    .map_err(|denied| {
                        GatewayError::Config(format!("gateway `{}`: {denied}", spec.name))
                    })?
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        GatewayError::Config(format!(
                            "gateway `{}`: environment variable {variable} (its bearer token) is not set",
                            spec.name
                        ))
                    })?;
                let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                    GatewayError::Config(format!(
                        "gateway `{}`: the token in {variable} holds characters a header cannot carry",
                        spec.name
                    ))
                })?;
                value.set_sensitive(true);
                (Some(value), Some(token))
            }
        };
        let client = shared_client()
            .map_err(|e| GatewayError::Config(format!("gateway `{}`: {e}", spec.name)))?;
        Ok(HttpGateway {
            client,
            base: url.as_str().trim_end_matches('/').to_owned(),
            authorization,
            token_forms: token.as_deref().map_or_else(Vec::new, token_forms),
            timeout,
            environment: environment.to_owned(),
            name: spec.name.clone(),
        })
    }

    /// Dry run: would the gateway accept `body`? `Ok` or
    /// [`GatewayError::Refused`] with its problems (`POST
    /// /sluice/v1/config:validate`).
    pub async fn validate(&self, body: &str) -> Result<(), GatewayError> {
        let response = self
            .send(
                self.request(Method::POST, protocol::VALIDATE_PATH)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(body.to_owned()),
            )
            .await?;
        match response.status() {
            StatusCode::OK | StatusCode::NO_CONTENT => Ok(()),
            _ => Err(self.failure(response, None).await),
        }
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .timeout(self.timeout)
            .header(header::ACCEPT, "application/json");
        if let Some(authorization) = &self.authorization {
            request = request.header(header::AUTHORIZATION, authorization.clone());
        }
        request
    }

    async fn send(&self, request: RequestBuilder) -> Result<Response, GatewayError> {
        request.send().await.map_err(|e| self.transport(&e))
    }

    /// A failure to get an answer at all.
    fn transport(&self, e: &reqwest::Error) -> GatewayError {
        if e.is_timeout() {
            GatewayError::Timeout(self.timeout)
        } else {
            // NB: reqwest names the URL, whose user-info or query could hold a credential.
            let text = chain(e).replace(&self.base, &crate::source::follow::redact_url(&self.base));
            GatewayError::Unreachable(self.scrub(&text))
        }
    }

    /// Reads at most `limit` bytes of the body as text.
    async fn text(&self, mut response: Response, limit: usize) -> Result<String, GatewayError> {
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(&e))? {
            if bytes.len() + chunk.len() > limit {
                return Err(GatewayError::Status {
                    status: response.status().as_u16(),
                    message: format!("answer larger than {limit} bytes"),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        String::from_utf8(bytes).map_err(|_| GatewayError::Status {
            status: response.status().as_u16(),
            message: "answer is not UTF-8".into(),
        })
    }

    /// Maps an answer that is not a success onto the error it stands for.
    /// `apply` carries what an apply offered, for `412` and `409`.
    async fn failure(
        &self,
        response: Response,
        apply: Option<(Option<&Digest>, u64)>,
    ) -> GatewayError {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // The body is best effort: an error answer we cannot read is still
        // that error.
        let body = self
            .text(response, MAX_SMALL_BYTES)
            .await
            .unwrap_or_default();
        match status.as_u16() {
            412 => GatewayError::Changed {
                expected: apply
                    .and_then(|(expected, _)| expected)
                    .map_or_else(|| "nothing".to_owned(), Digest::to_string),
            },
            409 => {
                let offered = apply.map_or(0, |(_, generation)| generation);
                // NB: without a readable body, the running generation is at
                // least one past the offered one: that is what 409 means.
                let running = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("generation").and_then(serde_json::Value::as_u64))
                    .unwrap_or(offered.saturating_add(1));
                GatewayError::StaleGeneration { running, offered }
            }
            422 => {
                let problems = match serde_json::from_str::<Refused>(&body) {
                    Ok(refused) => refused
                        .problems
                        .into_iter()
                        .map(|mut p| {
                            p.path = self.scrub(&p.path);
                            p.message = self.scrub(&p.message);
                            p
                        })
                        .collect(),
                    Err(_) => vec![protocol::Problem {
                        path: String::new(),
                        message: self.message(&body, "refused without a readable list of problems"),
                    }],
                };
                GatewayError::Refused { problems }
            }
            429 => GatewayError::Busy { retry_after },
            401 | 403 => GatewayError::Unauthorized {
                status: status.as_u16(),
            },
            code => GatewayError::Status {
                status: code,
                message: self.message(
                    &body,
                    status.canonical_reason().unwrap_or("unexpected answer"),
                ),
            },
        }
    }

    /// A short, token-free message from an answer's body.
    fn message(&self, body: &str, fallback: &str) -> String {
        // NB: scrubbed before it is cut: a token straddling the cut would
        // otherwise leave its first part in the message.
        let body = self.scrub(body.trim());
        if body.is_empty() {
            return fallback.to_owned();
        }
        let mut text: String = body.chars().take(MESSAGE_CHARS).collect();
        if body.chars().count() > MESSAGE_CHARS {
            text.push('…');
        }
        text
    }

    /// Removes the token from text a gateway sent back (a misbehaving gateway
    /// might echo the request), in each of its [`token_forms`].
    fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for form in &self.token_forms {
            if text.contains(form.as_str()) {
                text = text.replace(form.as_str(), "<redacted>");
            }
        }
        text
    }

    /// An answer Sluice cannot read: `what` may quote the gateway's text (a
    /// parser's message does), so it is scrubbed.
    fn unreadable(&self, status: StatusCode, what: &str) -> GatewayError {
        GatewayError::Status {
            status: status.as_u16(),
            message: self.scrub(what),
        }
    }

    /// `GET path` as JSON, for drivers of gateways with an API of their own
    /// (the LiteLLM proxy's admin API): a non-2xx answer is its error, a body
    /// over 4 MiB or not JSON is an unreadable answer.
    pub(crate) async fn get_json(&self, path: &str) -> Result<serde_json::Value, GatewayError> {
        let response = self.send(self.request(Method::GET, path)).await?;
        let code = response.status();
        if !code.is_success() {
            return Err(self.failure(response, None).await);
        }
        let text = self.text(response, 4 << 20).await?;
        serde_json::from_str(&text)
            .map_err(|e| self.unreadable(code, &format!("{path} answered what is not JSON: {e}")))
    }

    /// Removes the bearer token from `text` (a hook's output, say).
    pub(crate) fn scrubbed(&self, text: &str) -> String {
        self.scrub(text)
    }

    /// The digest of what `GET /sluice/v1/config` serves (`None` when it
    /// serves nothing): what the gateway runs, whatever its `/status` says.
    /// NB: of the canonical form, as the file driver reads it: a gateway
    /// may re-indent what it serves.
    async fn served(&self) -> Result<Option<Digest>, GatewayError> {
        let response = self
            .send(self.request(Method::GET, protocol::CONFIG_PATH))
            .await?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            _ => return Err(self.failure(response, None).await),
        }
        let body = self.text(response, MAX_CONFIG_BYTES).await?;
        Ok(Some(super::document_digest(&body)))
    }
}

/// The spellings of `token` to scrub, worked out once per driver rather than
/// on every answer: the token, and as `{:?}` and JSON escape it (`"` and
/// `\`), each once.
fn token_forms(token: &str) -> Vec<String> {
    let debug = format!("{token:?}");
    let json = serde_json::to_string(token).unwrap_or_default();
    let mut forms = vec![token.to_owned()];
    for form in [debug.trim_matches('"'), json.trim_matches('"')] {
        if !form.is_empty() && !forms.iter().any(|f| f == form) {
            forms.push(form.to_owned());
        }
    }
    forms
}

/// One client for every gateway: its connection pool is shared, and a
/// large fleet does not pay for thousands of pools and TLS setups.
fn shared_client() -> Result<reqwest::Client, String> {
    static CLIENT: std::sync::OnceLock<Result<reqwest::Client, String>> =
        std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                // NB: a redirect could carry the token to another host.
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(64)
                .build()
                .map_err(|e| e.to_string())
        })
        .clone()
}

/// An error and its sources on one line: reqwest's own message alone is
/// often just "error sending request".
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

#[async_trait]
impl Gateway for HttpGateway {
    async fn live(&self) -> Result<Live, GatewayError> {
        let response = self
            .send(self.request(Method::GET, protocol::STATUS_PATH))
            .await?;
        let code = response.status();
        if code != StatusCode::OK {
            return Err(self.failure(response, None).await);
        }
        let text = self.text(response, MAX_SMALL_BYTES).await?;
        let status: Status = serde_json::from_str(&text)
            .map_err(|e| self.unreadable(code, &format!("unreadable status: {e}")))?;
        if status.digest.is_empty() {
            return Ok(Live {
                digest: None,
                generation: None,
            });
        }
        let digest = Digest::parse(&status.digest).ok_or_else(|| {
            self.unreadable(
                code,
                &format!("status digest `{}` is not sha256:<64 hex>", status.digest),
            )
        })?;
        Ok(Live {
            digest: Some(digest),
            generation: Some(status.generation),
        })
    }

    /// NB: what it serves is what it runs. A gateway whose /status claims
    /// one version while it serves another (a half-done swap, a lie) runs
    /// what it serves: an apply is verified against that (never recorded
    /// applied), and a healthy gateway that diverged is pushed again.
    async fn verified(&self) -> Result<Live, GatewayError> {
        let claimed = self.live().await?;
        let Some(digest) = &claimed.digest else {
            return Ok(claimed);
        };
        let served = self.served().await?;
        if served.as_ref() != Some(digest) {
            tracing::warn!(
                environment = %self.environment,
                gateway = %self.name,
                claimed = digest.short(),
                served = served.as_ref().map_or("nothing", |d| d.short()),
                "the gateway's /status claims a version its GET /sluice/v1/config does not serve"
            );
        }
        Ok(Live {
            digest: served,
            generation: claimed.generation,
        })
    }

    async fn projection(&self) -> Result<Option<serde_json::Value>, GatewayError> {
        let response = self
            .send(self.request(Method::GET, protocol::CONFIG_PATH))
            .await?;
        match response.status() {
            StatusCode::OK => Ok(Some(super::json_projection(
                &self.text(response, MAX_CONFIG_BYTES).await?,
            ))),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.failure(response, None).await),
        }
    }

    async fn apply(
        &self,
        desired: &Desired,
        expected: Option<&Digest>,
        generation: u64,
    ) -> Result<Applied, GatewayError> {
        let mut request = self
            .request(Method::PUT, protocol::CONFIG_PATH)
            .header(header::CONTENT_TYPE, "application/json")
            .header(protocol::GENERATION_HEADER, generation.to_string())
            .body(desired.body.to_string());
        request = match expected {
            Some(digest) => request.header(header::IF_MATCH, protocol::etag(digest.as_str())),
            None => request.header(header::IF_NONE_MATCH, "*"),
        };
        let response = self.send(request).await?;
        match response.status() {
            StatusCode::OK => {
                let reported = response
                    .headers()
                    .get(header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(|tag| protocol::digest_of_etag(tag).to_owned());
                match reported {
                    Some(reported) if reported == desired.digest.as_str() => Ok(Applied::Swapped {
                        digest: desired.digest.clone(),
                    }),
                    other => Err(GatewayError::Mismatch {
                        applied: desired.digest.to_string(),
                        reported: other.map_or_else(|| "no ETag".to_owned(), |r| self.scrub(&r)),
                    }),
                }
            }
            StatusCode::NOT_MODIFIED => Ok(Applied::Unchanged),
            _ => Err(self.failure(response, Some((expected, generation))).await),
        }
    }

    /// `POST /v1/chat/completions` with the driver's bearer token; every
    /// status is an answer (the body at most [`super::MAX_CHAT_BYTES`],
    /// the token scrubbed from it).
    async fn chat(&self, body: &serde_json::Value) -> Result<ChatReply, GatewayError> {
        let response = self
            .send(
                self.request(Method::POST, super::CHAT_PATH)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(body.to_string()),
            )
            .await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = self.text(response, super::MAX_CHAT_BYTES).await?;
        let body = ChatBody::from_text(self.scrub(&text));
        let mut reply = ChatReply::from_headers(status, &headers, body);
        // NB: the headers too: a gateway that echoes the request's
        // headers into its own would hand back the token (the http_answer
        // fuzz target checks every answer for it).
        for text in [&mut reply.outcome, &mut reply.digest]
            .into_iter()
            .flatten()
        {
            *text = self.scrub(text);
        }
        for policy in reply.policies.iter_mut().flatten() {
            *policy = self.scrub(policy);
        }
        Ok(reply)
    }

    /// `POST /admin/v1/reset`; a gateway without it (`404`, `405`) is
    /// [`GatewayError::Unsupported`].
    async fn reset_runtime(&self) -> Result<(), GatewayError> {
        let response = self
            .send(self.request(Method::POST, super::RESET_PATH))
            .await?;
        match response.status() {
            code if code.is_success() => Ok(()),
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
                Err(GatewayError::Unsupported("runtime reset"))
            }
            _ => Err(self.failure(response, None).await),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::Allowances, gateway::Secrets};
    use std::{path::PathBuf, sync::Arc};

    fn spec(token_env: Option<&str>, timeout: Option<&str>) -> model::HttpGateway {
        model::HttpGateway {
            name: "gw".into(),
            url: "http://127.0.0.1:9/".into(),
            token_env: token_env.map(|t| model::EnvVarName(t.into())),
            timeout: timeout.map(|t| model::DurationText(t.into())),
        }
    }

    /// An operator who allows `GW_*` variables and loopback URLs, with
    /// `secret` as every variable's value.
    fn context(secret: Option<&'static str>) -> DriverContext {
        let allowances = Allowances::new(
            vec!["*=GW_*".parse().unwrap()],
            vec!["*=http://127.0.0.1:*".parse().unwrap()],
        );
        DriverContext {
            secrets: Secrets::new(
                Arc::new(move |_| secret.map(str::to_owned)),
                Arc::new(allowances),
            ),
            timeout: Duration::from_secs(3),
            ..DriverContext::new(PathBuf::from("."))
        }
    }

    #[test]
    fn variables_and_urls_the_operator_did_not_allow_are_never_used() {
        let refused = |spec: &model::HttpGateway| {
            let Err(e) = HttpGateway::new("development", spec, &context(Some("s3cr3t-value")))
            else {
                panic!("{spec:?} must be refused");
            };
            assert!(matches!(e, GatewayError::Config(_)), "{e:?}");
            assert!(!e.to_string().contains("s3cr3t"), "{e}");
            e.to_string()
        };
        let own = refused(&spec(Some("SLUICE_API_TOKENS"), None));
        assert!(own.contains("Sluice's own"), "{own}");
        let other = refused(&spec(Some("PROD_GATEWAY_TOKEN"), None));
        assert!(
            other.contains("may not use variable PROD_GATEWAY_TOKEN"),
            "{other}"
        );
        let mut elsewhere = spec(None, None);
        elsewhere.url = "https://collector.example".into();
        let far = refused(&elsewhere);
        assert!(far.contains("may not reach"), "{far}");
        // With the default context nothing at all is allowed.
        let closed = DriverContext::new(PathBuf::from("."));
        assert!(HttpGateway::new("development", &spec(None, None), &closed).is_err());
    }

    #[test]
    fn a_missing_token_names_the_variable_only() {
        let Err(e) = HttpGateway::new("development", &spec(Some("GW_TOKEN"), None), &context(None))
        else {
            panic!("a missing token must fail");
        };
        assert!(matches!(e, GatewayError::Config(_)));
        assert!(e.to_string().contains("GW_TOKEN"), "{e}");
    }

    #[test]
    fn the_token_never_shows_in_debug() {
        let gateway = HttpGateway::new(
            "development",
            &spec(Some("GW_TOKEN"), None),
            &context(Some("s3cr3t-value")),
        )
        .unwrap();
        assert!(!format!("{gateway:?}").contains("s3cr3t"));
        assert_eq!(gateway.scrub("echo s3cr3t-value"), "echo <redacted>");
    }

    /// Token leaks the http_answer fuzz target looks for: a token at the
    /// end of a long error body was cut, not scrubbed; a parser's message
    /// quoting a token with `"` or `\` in it escapes them, which a plain
    /// replace missed.
    #[test]
    fn the_token_is_scrubbed_before_a_message_is_cut_and_where_a_parser_quotes_it() {
        const TOKEN: &str = r#"s3cr3t"quoted\value"#;
        let gateway = HttpGateway::new(
            "development",
            &spec(Some("GW_TOKEN"), None),
            &context(Some(TOKEN)),
        )
        .unwrap();
        let body = format!("{}{TOKEN}", "x".repeat(MESSAGE_CHARS - 4));
        let message = gateway.message(&body, "fallback");
        assert!(!message.contains("s3cr"), "{message}");
        let quoted = serde_json::to_string(TOKEN).unwrap();
        let status = format!(r#"{{"digest": "", "generation": {quoted}}}"#);
        let e = serde_json::from_str::<Status>(&status).unwrap_err();
        let error = gateway.unreadable(StatusCode::OK, &format!("unreadable status: {e}"));
        assert!(
            e.to_string().contains("s3cr3t"),
            "the parser quotes it: {e}"
        );
        assert!(!error.to_string().contains("s3cr3t"), "{error}");
    }

    #[test]
    fn timeouts_come_from_the_spec_or_the_context() {
        let gateway =
            HttpGateway::new("development", &spec(None, Some("250ms")), &context(None)).unwrap();
        assert_eq!(gateway.timeout, Duration::from_millis(250));
        let gateway = HttpGateway::new("development", &spec(None, None), &context(None)).unwrap();
        assert_eq!(gateway.timeout, Duration::from_secs(3));
        assert!(
            HttpGateway::new("development", &spec(None, Some("soon")), &context(None)).is_err()
        );
        assert!(HttpGateway::new("development", &spec(None, Some("0s")), &context(None)).is_err());
        let mut bad = spec(None, None);
        bad.url = "ftp://example.com".into();
        assert!(HttpGateway::new("development", &bad, &context(None)).is_err());
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut spec = spec(None, Some("2s"));
        spec.url = format!("http://127.0.0.1:{port}");
        let gateway = HttpGateway::new("development", &spec, &context(None)).unwrap();
        let e = gateway.live().await.unwrap_err();
        assert!(matches!(e, GatewayError::Unreachable(_)), "{e:?}");
    }
}
