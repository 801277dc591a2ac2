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
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;

pub async fn receive(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(secret) = &state.webhook_secret else {
        return error(
            StatusCode::NOT_FOUND,
            "the git webhook is off (no secret configured)",
        );
    };
    if !verified(secret, &headers, &body) {
        state.metrics.webhooks_rejected.inc();
        tracing::warn!("git webhook refused: missing or bad signature");
        return error(StatusCode::UNAUTHORIZED, "missing or bad signature");
    }
    tracing::info!("git webhook verified; reconciling");
    request_sync(&state, Trigger::Webhook, None).await
}

/// Whether the request carries a valid GitHub signature or GitLab token.
pub fn verified(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    if let Some(signature) = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
    {
        let Some(hex) = signature.strip_prefix("sha256=") else {
            return false;
        };
        let Some(expected) = decode_hex(hex) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            return false;
        };
        mac.update(body);
        // verify_slice compares in constant time.
        return mac.verify_slice(&expected).is_ok();
    }
    if let Some(token) = headers.get("x-gitlab-token").and_then(|v| v.to_str().ok()) {
        return constant_time_eq(token.as_bytes(), secret.as_bytes());
    }
    false
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
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
}
