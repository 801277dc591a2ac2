//! Signing in to the dashboard: an API token is exchanged once for a
//! session cookie (`HttpOnly`, `SameSite=Strict`), so the token is never
//! kept by the browser where a script could read it. Each session carries
//! a CSRF token that every form that changes something must send back.
//! Sessions live in memory, at most [`MAX_SESSIONS`], keyed by the hash
//! of their id (as API tokens are kept).

use crate::server::Scope;
use sha2::{Digest, Sha256};
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// The cookie's name.
pub const COOKIE: &str = "sluice_session";
/// How long a session lasts from sign-in.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Most sessions kept at once: sign-ins beyond it are refused until some
/// expire, so a flood of sign-ins cannot grow memory without bound.
pub const MAX_SESSIONS: usize = 10_000;

/// Who is looking at a page, and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    pub scope: Scope,
    /// The token's name (what a pin records as who made it).
    pub name: String,
    /// Present for a signed-in session: forms carry it, and only then may
    /// the viewer act (an open, token-less dashboard is read-only).
    pub csrf: Option<String>,
    /// Signed in with a session (so there is something to sign out of).
    pub signed_in: bool,
}

impl Viewer {
    /// Anyone, on a dashboard without tokens: sees all, changes nothing.
    pub fn open() -> Viewer {
        Viewer {
            scope: Scope::Open,
            name: String::new(),
            csrf: None,
            signed_in: false,
        }
    }

    pub fn sees(&self, environment: &str) -> bool {
        self.scope.allows(environment)
    }

    /// May start a sync or pin in `environment`.
    pub fn may_act(&self, environment: &str) -> bool {
        self.csrf.is_some() && self.scope != Scope::Open && self.scope.allows(environment)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("too many dashboard sessions are open; try again when some expire")]
    Full,
}

struct Session {
    scope: Scope,
    name: String,
    csrf: String,
    expires: Instant,
}

#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    /// Opens a session for a token's scope and name; returns the cookie
    /// value (the session id).
    pub fn open(&self, scope: Scope, name: String, now: Instant) -> Result<String, SessionError> {
        let id = random_hex();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.len() >= MAX_SESSIONS {
            open.retain(|_, s| s.expires > now);
        }
        if open.len() >= MAX_SESSIONS {
            return Err(SessionError::Full);
        }
        open.insert(
            hash(&id),
            Session {
                scope,
                name,
                csrf: random_hex(),
                expires: now + LIFETIME,
            },
        );
        Ok(id)
    }

    /// The viewer a cookie value stands for, while its session lasts.
    pub fn viewer(&self, id: &str, now: Instant) -> Option<Viewer> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let key = hash(id);
        match open.get(&key) {
            Some(session) if session.expires > now => Some(Viewer {
                scope: session.scope.clone(),
                name: session.name.clone(),
                csrf: Some(session.csrf.clone()),
                signed_in: true,
            }),
            Some(_) => {
                open.remove(&key);
                None
            }
            None => None,
        }
    }

    pub fn close(&self, id: &str) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&hash(id));
    }
}

/// Whether a form's CSRF field is the session's (in constant time: the
/// comparison must not tell an attacker how much of a guess was right).
pub fn csrf_matches(viewer: &Viewer, presented: Option<&str>) -> bool {
    match (&viewer.csrf, presented) {
        (Some(expected), Some(presented)) => {
            crate::secret::constant_time_eq(expected.as_bytes(), presented.as_bytes())
        }
        _ => false,
    }
}

/// The session id in a request's `Cookie` headers.
pub fn cookie_value(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
}

/// The `Set-Cookie` value for a new session; `secure` when the dashboard
/// is reached over HTTPS (behind a proxy that says so).
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        LIFETIME.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends a session in the browser.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

fn hash(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// 32 random bytes as hex: an id nobody can guess.
fn random_hex() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_stands_for_its_token_until_it_expires_or_closes() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let id = sessions
            .open(Scope::Environment("development".into()), "dev".into(), now)
            .unwrap();
        let viewer = sessions.viewer(&id, now).unwrap();
        assert!(viewer.sees("development") && !viewer.sees("production"));
        assert!(viewer.may_act("development") && !viewer.may_act("production"));
        assert!(sessions.viewer("guess", now).is_none());
        assert!(sessions.viewer(&id, now + LIFETIME).is_none(), "expired");
        let id = sessions.open(Scope::Admin, "root".into(), now).unwrap();
        sessions.close(&id);
        assert!(sessions.viewer(&id, now).is_none(), "closed");
    }

    #[test]
    fn csrf_must_match_the_session() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let id = sessions.open(Scope::Admin, "root".into(), now).unwrap();
        let viewer = sessions.viewer(&id, now).unwrap();
        let csrf = viewer.csrf.clone().unwrap();
        assert!(csrf_matches(&viewer, Some(&csrf)));
        assert!(!csrf_matches(&viewer, Some("x")));
        assert!(!csrf_matches(&viewer, None));
        assert!(!csrf_matches(&Viewer::open(), Some(&csrf)));
        assert!(!Viewer::open().may_act("development"), "open is read-only");
    }

    #[test]
    fn sessions_are_bounded() {
        let sessions = Sessions::default();
        let now = Instant::now();
        for _ in 0..MAX_SESSIONS {
            sessions.open(Scope::Admin, "a".into(), now).unwrap();
        }
        assert!(matches!(
            sessions.open(Scope::Admin, "a".into(), now),
            Err(SessionError::Full)
        ));
        // Expired ones make room.
        assert!(
            sessions
                .open(Scope::Admin, "a".into(), now + LIFETIME)
                .is_ok()
        );
    }

    #[test]
    fn the_cookie_is_found_among_others_and_is_http_only_strict() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            "theme=dark; sluice_session=abc ; x=y".parse().unwrap(),
        );
        assert_eq!(cookie_value(&headers), Some("abc"));
        let cookie = set_cookie("abc", false);
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        assert!(!cookie.contains("Secure"));
        assert!(set_cookie("abc", true).ends_with("; Secure"));
    }
}
