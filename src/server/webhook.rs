//! The git webhook: a verified push starts a reconcile at once.
//!
//! GitHub signs the body with HMAC-SHA256 (`X-Hub-Signature-256:
//! sha256=<hex>`); GitLab sends the shared secret (`X-Gitlab-Token`). Both
//! are checked in constant time against the secret from the environment.
//! Without a configured secret the hook answers `404`: an unauthenticated
//! trigger is not offered.

use super::{ServerState, error, request_sync};
use crate::ledger::Trigger;
use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use futures::StreamExt as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;

/// Largest delivery read: GitHub caps webhook payloads at 25 MB. The body
/// is hashed as it arrives, and held only up to [`MAX_KEPT`].
const MAX_BODY: usize = 25 << 20;
/// Largest delivery kept to read which repository was pushed; a bigger
/// one (a push of many commits) reconciles every repository.
const MAX_KEPT: usize = 1 << 20;

pub async fn receive(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(secret) = &state.webhook_secret else {
        return error(
            StatusCode::NOT_FOUND,
            "the git webhook is off (no secret configured)",
        );
    };
    // NB: what the headers alone decide is decided before any of the body
    // is read; a GitHub signature needs the body, read bounded (and within
    // the server's request timeout).
    let mut mac = match check(secret, &headers) {
        Check::Decided(false) => None,
        Check::Decided(true) => Some(None),
        Check::Signed { mac, expected } => Some(Some((mac, expected))),
    };
    // NB: a GitLab token is checked before any of the body is read; a
    // GitHub signature as the body arrives, which is kept (up to
    // MAX_KEPT) only to say which repository was pushed.
    let mut kept = Some(Vec::new());
    let mut complete = true;
    if mac.is_some() {
        let mut stream = body.into_data_stream();
        let mut read = 0usize;
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else {
                complete = false;
                break;
            };
            read += chunk.len();
            if read > MAX_BODY {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("a webhook delivery is at most {} MiB", MAX_BODY >> 20),
                );
            }
            if let Some(Some((mac, _))) = &mut mac {
                mac.update(&chunk);
            }
            if read > MAX_KEPT {
                kept = None;
            } else if let Some(kept) = &mut kept {
                kept.extend_from_slice(&chunk);
            }
        }
    }
    let accepted = match mac {
        None => false,
        Some(None) => true,
        // verify_slice compares in constant time.
        Some(Some((mac, expected))) => complete && mac.verify_slice(&expected).is_ok(),
    };
    if !accepted {
        state.metrics.webhooks_rejected.inc();
        tracing::warn!("git webhook refused: missing or bad signature");
        return error(StatusCode::UNAUTHORIZED, "missing or bad signature");
    }
    let repositories = kept.filter(|_| complete).and_then(|body| pushed(&body));
    tracing::info!(repositories = ?repositories, "git webhook verified; reconciling");
    request_sync(&state, Trigger::Webhook, None, repositories).await
}

/// The repository a GitHub or GitLab push names, as [`repository_key`]s of
/// each URL it gives for it; `None` when the body says none.
pub fn pushed(body: &[u8]) -> Option<Vec<String>> {
    let payload: serde_json::Value = serde_json::from_slice(body).ok()?;
    let fields = [
        ("repository", "clone_url"),
        ("repository", "ssh_url"),
        ("repository", "git_url"),
        ("repository", "html_url"),
        ("repository", "git_http_url"),
        ("repository", "git_ssh_url"),
        ("project", "git_http_url"),
        ("project", "git_ssh_url"),
        ("project", "web_url"),
    ];
    let mut keys: Vec<String> = fields
        .iter()
        .filter_map(|(object, field)| payload.get(object)?.get(field)?.as_str())
        .map(repository_key)
        .collect();
    keys.sort();
    keys.dedup();
    (!keys.is_empty()).then_some(keys)
}

/// What two URLs of one repository have in common: host (and port) and
/// path, lowercase, without scheme, user, trailing `/` or `.git`:
/// `https://github.com/Org/Policy.git` and `git@github.com:org/policy` are
/// both `github.com/org/policy`.
pub fn repository_key(url: &str) -> String {
    let url = url.trim().to_ascii_lowercase();
    let rest = match url.split_once("://") {
        Some((_, rest)) => rest.to_owned(),
        // scp-like `user@host:path`
        None => url.replacen(':', "/", 1),
    };
    let rest = match rest.split_once('/') {
        Some((authority, path)) => {
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            format!("{host}/{path}")
        }
        None => rest
            .rsplit_once('@')
            .map_or(rest.clone(), |(_, host)| host.to_owned()),
    };
    let rest = rest.trim_end_matches('/');
    rest.strip_suffix(".git").unwrap_or(rest).to_owned()
}

/// What a delivery's headers say about it.
enum Check {
    /// Accepted or refused without the body (a GitLab token, or no or a
    /// malformed signature).
    Decided(bool),
    /// A GitHub signature, to check against the body's HMAC.
    Signed {
        mac: Box<Hmac<Sha256>>,
        expected: Vec<u8>,
    },
}

fn check(secret: &str, headers: &HeaderMap) -> Check {
    if let Some(signature) = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
    {
        let expected = signature.strip_prefix("sha256=").and_then(decode_hex);
        return match (expected, Hmac::<Sha256>::new_from_slice(secret.as_bytes())) {
            (Some(expected), Ok(mac)) => Check::Signed {
                mac: Box::new(mac),
                expected,
            },
            _ => Check::Decided(false),
        };
    }
    if let Some(token) = headers.get("x-gitlab-token").and_then(|v| v.to_str().ok()) {
        return Check::Decided(crate::secret::constant_time_eq(
            token.as_bytes(),
            secret.as_bytes(),
        ));
    }
    Check::Decided(false)
}

/// Whether the request carries a valid GitHub signature or GitLab token
/// (the streaming check `receive` makes, over a body in hand: for tests and
/// the fuzz targets).
pub fn verified(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    match check(secret, headers) {
        Check::Decided(accepted) => accepted,
        Check::Signed { mut mac, expected } => {
            mac.update(body);
            mac.verify_slice(&expected).is_ok()
        }
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    // NB: hex digits only: `from_str_radix` alone also takes a sign, so
    // `+f` would pass as a byte and two spellings of one signature would
    // verify (found by fuzzing).
    if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `sha256=<hex>` for a body, as GitHub sends it (for tests and tools).
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's published example ("Validating webhook deliveries").
    #[test]
    fn the_signature_matches_githubs_test_vector() {
        let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(
            github_signature("It's a Secret to Everybody", b"Hello, World!"),
            expected
        );
        let mut headers = HeaderMap::new();
        headers.insert("x-hub-signature-256", expected.parse().unwrap());
        assert!(verified(
            "It's a Secret to Everybody",
            &headers,
            b"Hello, World!"
        ));
    }

    #[test]
    fn the_urls_of_one_repository_share_a_key() {
        for url in [
            "https://github.com/Org/Policy.git",
            "https://token@github.com/org/policy/",
            "git@github.com:org/policy.git",
            "ssh://git@github.com/org/policy",
            "git://github.com/org/policy",
        ] {
            assert_eq!(repository_key(url), "github.com/org/policy", "{url}");
        }
        assert_eq!(
            repository_key("git://127.0.0.1:9418/policy"),
            "127.0.0.1:9418/policy"
        );
        assert_ne!(
            repository_key("https://github.com/org/policy"),
            repository_key("https://github.com/org/other")
        );
    }

    #[test]
    fn a_push_says_which_repository() {
        let github = br#"{"ref":"refs/heads/main","repository":{"clone_url":"https://github.com/org/policy.git","ssh_url":"git@github.com:org/policy.git"}}"#;
        assert_eq!(pushed(github), Some(vec!["github.com/org/policy".into()]));
        let gitlab = br#"{"object_kind":"push","project":{"git_http_url":"https://gitlab.example.com/org/policy.git","git_ssh_url":"git@gitlab.example.com:org/policy.git"}}"#;
        assert_eq!(
            pushed(gitlab),
            Some(vec!["gitlab.example.com/org/policy".into()])
        );
        assert_eq!(pushed(br#"{"ref":"refs/heads/main"}"#), None);
        assert_eq!(pushed(b"not json"), None);
    }

    #[test]
    fn github_and_gitlab_deliveries() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-hub-signature-256",
            github_signature("s3", body).parse().unwrap(),
        );
        assert!(verified("s3", &headers, body));
        assert!(!verified("other", &headers, body));
        assert!(!verified("s3", &headers, b"tampered"));

        let mut headers = HeaderMap::new();
        headers.insert("x-gitlab-token", "s3".parse().unwrap());
        assert!(verified("s3", &headers, body));
        assert!(!verified("s4", &headers, body));
        assert!(!verified("s3", &HeaderMap::new(), body));
    }

    /// Found by fuzzing: `u8::from_str_radix` takes `+f` for `0f`, so a
    /// signature had more than one accepted spelling.
    #[test]
    fn a_signature_is_hex_digits_only() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let signature = github_signature("s3", body);
        let hex = signature.strip_prefix("sha256=").unwrap();
        let at = (0..hex.len())
            .step_by(2)
            .find(|&i| hex.as_bytes()[i] == b'0')
            .expect("some byte of the MAC is below 0x10");
        let signed = |hex: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                "x-hub-signature-256",
                format!("sha256={hex}").parse().unwrap(),
            );
            verified("s3", &headers, body)
        };
        assert!(signed(hex));
        assert!(signed(&hex.to_ascii_uppercase()), "hex is case-blind");
        let plus = format!("{}+{}", &hex[..at], &hex[at + 1..]);
        assert!(!signed(&plus), "{plus}");
    }
}
