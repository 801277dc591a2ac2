//! API tokens scoped to one environment or `admin`, kept only as sha256
//! hashes and compared in constant time.

use axum::{
    Json,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};

/// What a token may read and act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Admin,
    Environment(String),
    /// No tokens are configured: the API is open (on loopback, or where the
    /// operator said `--allow-open-api`; see [`Tokens::check_exposure`]).
    Open,
}

impl Scope {
    pub fn allows(&self, environment: &str) -> bool {
        match self {
            Scope::Admin | Scope::Open => true,
            Scope::Environment(e) => e == environment,
        }
    }
}

#[derive(Default)]
pub struct Tokens {
    /// Hash, scope and name (what a pin records as who made it).
    hashed: Vec<([u8; 32], Scope, String)>,
}

#[derive(Debug, thiserror::Error)]
#[error("token line {line}: expected `SCOPE TOKEN` (SCOPE is `admin` or an environment slug)")]
pub struct TokenParseError {
    line: usize,
}

/// An API without tokens would answer anyone who can reach the address.
#[derive(Debug, thiserror::Error)]
#[error(
    "no API tokens are set, so anyone who reaches {address} could read every environment's status and history and start reconciles; set API tokens (SLUICE_API_TOKENS or --tokens-file), listen on a loopback address, or pass --allow-open-api to serve an open API on purpose"
)]
pub struct OpenApiError {
    address: std::net::SocketAddr,
}

impl Tokens {
    /// Whether no token is configured (the API is open).
    pub fn is_empty(&self) -> bool {
        self.hashed.is_empty()
    }

    /// Refuses an open API on an address other hosts can reach, unless
    /// the operator allows it on purpose (`allow_open`).
    pub fn check_exposure(
        &self,
        addresses: impl IntoIterator<Item = std::net::SocketAddr>,
        allow_open: bool,
    ) -> Result<(), OpenApiError> {
        if !self.is_empty() || allow_open {
            return Ok(());
        }
        // NB: 0.0.0.0 and :: are not loopback: they listen everywhere.
        match addresses.into_iter().find(|a| !a.ip().is_loopback()) {
            Some(address) => Err(OpenApiError { address }),
            None => Ok(()),
        }
    }

    /// Reads `SCOPE TOKEN` lines (or `SCOPE:TOKEN`, comma-separated, as in
    /// an environment variable). Blank lines and `#` comments are skipped.
    /// `NAME@SCOPE` names the token (what a pin it makes records as who
    /// pinned); unnamed, it is `token:SCOPE`.
    pub fn parse(text: &str) -> Result<Tokens, TokenParseError> {
        let mut tokens = Tokens::default();
        let entries = text.split(['\n', ',']).map(str::trim).enumerate();
        for (i, entry) in entries.filter(|(_, e)| !e.is_empty() && !e.starts_with('#')) {
            let (scope, token) = entry
                .split_once([' ', ':'])
                .map(|(s, t)| (s.trim(), t.trim()))
                .filter(|(s, t)| !s.is_empty() && !t.is_empty())
                .ok_or(TokenParseError { line: i + 1 })?;
            let (name, scope) = match scope.split_once('@') {
                Some((name, scope)) if !name.is_empty() && !scope.is_empty() => {
                    (name.to_owned(), scope)
                }
                Some(_) => return Err(TokenParseError { line: i + 1 }),
                None => (format!("token:{scope}"), scope),
            };
            let scope = match scope {
                "admin" => Scope::Admin,
                env => Scope::Environment(env.to_owned()),
            };
            tokens
                .hashed
                .push((Sha256::digest(token.as_bytes()).into(), scope, name));
        }
        Ok(tokens)
    }

    /// The scope and name of a token, if it is one of these.
    pub fn identify(&self, token: &str) -> Option<(Scope, String)> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        // NB: every stored hash is compared, each in constant time, so timing
        // says nothing about which (if any) matched.
        for (hash, scope, name) in &self.hashed {
            let same = crate::secret::constant_time_eq(hash, &presented);
            if same && found.is_none() {
                found = Some((scope.clone(), name.clone()));
            }
        }
        found
    }

    /// The scope of the request's bearer token, checked against the
    /// environment it asks about; `401` or `403` otherwise.
    #[allow(clippy::result_large_err)]
    pub fn authorize(
        &self,
        headers: &HeaderMap,
        environment: Option<&str>,
    ) -> Result<Scope, Response> {
        self.authorize_named(headers, environment)
            .map(|(scope, _)| scope)
    }

    /// [`Tokens::authorize`], with the token's name (`api` on an open API).
    #[allow(clippy::result_large_err)]
    pub fn authorize_named(
        &self,
        headers: &HeaderMap,
        environment: Option<&str>,
    ) -> Result<(Scope, String), Response> {
        if self.is_empty() {
            return Ok((Scope::Open, "api".to_owned()));
        }
        let refuse = |status: StatusCode, message: &str| {
            (status, Json(serde_json::json!({ "error": message }))).into_response()
        };
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .ok_or_else(|| refuse(StatusCode::UNAUTHORIZED, "a bearer token is required"))?;
        let (scope, name) = self
            .identify(token)
            .ok_or_else(|| refuse(StatusCode::UNAUTHORIZED, "unknown token"))?;
        match (environment, &scope) {
            (Some(env), scope) if !scope.allows(env) => Err(refuse(
                StatusCode::FORBIDDEN,
                &format!("this token is not scoped to environment `{env}`"),
            )),
            _ => Ok((scope, name)),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is
/// matched case-insensitively (RFC 9110 §11.1, as RFC 7235 before it);
/// spaces around the token are not part of it.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        headers
    }

    #[test]
    fn scopes_limit_environments() {
        let tokens = Tokens::parse("development dev-token\nadmin root-token\n# comment\n").unwrap();
        assert_eq!(
            tokens
                .authorize(&bearer("dev-token"), Some("development"))
                .unwrap(),
            Scope::Environment("development".into())
        );
        let refused = tokens
            .authorize(&bearer("dev-token"), Some("production"))
            .unwrap_err();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert!(
            tokens
                .authorize(&bearer("root-token"), Some("production"))
                .is_ok()
        );
        let unknown = tokens.authorize(&bearer("guess"), None).unwrap_err();
        assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
        let missing = tokens.authorize(&HeaderMap::new(), None).unwrap_err();
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        let tokens = Tokens::parse("admin root-token").unwrap();
        for value in [
            "Bearer root-token",
            "bearer root-token",
            "BEARER  root-token ",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            assert_eq!(
                tokens.authorize(&headers, None).unwrap(),
                Scope::Admin,
                "{value}"
            );
        }
        assert_eq!(bearer_token("Basic cm9vdA=="), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer   "), None);
        assert_eq!(bearer_token("Bearerroot-token"), None);
    }

    #[test]
    fn an_open_api_is_refused_beyond_loopback_unless_allowed() {
        let open = Tokens::default();
        let at = |text: &str| -> std::net::SocketAddr { text.parse().unwrap() };
        for loopback in ["127.0.0.1:7878", "[::1]:7878"] {
            assert!(
                open.check_exposure([at(loopback)], false).is_ok(),
                "{loopback}"
            );
        }
        for reachable in ["0.0.0.0:8080", "[::]:8080", "10.0.0.7:8080"] {
            let refused = open
                .check_exposure([at("127.0.0.1:1"), at(reachable)], false)
                .unwrap_err();
            assert!(refused.to_string().contains(reachable), "{refused}");
            assert!(
                refused.to_string().contains("--allow-open-api"),
                "{refused}"
            );
            assert!(open.check_exposure([at(reachable)], true).is_ok());
        }
        let guarded = Tokens::parse("admin a1").unwrap();
        assert!(guarded.check_exposure([at("0.0.0.0:8080")], false).is_ok());
    }

    #[test]
    fn parses_the_environment_variable_form() {
        let tokens = Tokens::parse("production:p1, admin:a1").unwrap();
        assert_eq!(tokens.hashed.len(), 2);
        assert!(Tokens::parse("justonetoken").is_err());
    }

    #[test]
    fn a_token_may_be_named_and_is_named_by_its_scope_otherwise() {
        let tokens = Tokens::parse("alice@production p1\nadmin a1").unwrap();
        let (scope, name) = tokens
            .authorize_named(&bearer("p1"), Some("production"))
            .unwrap();
        assert_eq!(scope, Scope::Environment("production".into()));
        assert_eq!(name, "alice");
        let (_, name) = tokens.authorize_named(&bearer("a1"), None).unwrap();
        assert_eq!(name, "token:admin");
        assert!(Tokens::parse("@production p1").is_err());
    }
}
