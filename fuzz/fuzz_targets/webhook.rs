//! The git webhook's checks on a delivery (anyone who can reach the port
//! sends these): its headers (a GitHub signature or a GitLab token) and
//! its payload (which repository was pushed). The input is a header line,
//! then the body. Properties: no panic; a delivery is accepted exactly when
//! its signature is the body's HMAC in hex (either case) or its token is
//! the secret; repository keys are lowercase.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use sluice::server::webhook::{github_signature, pushed, repository_key, verified};

const SECRET: &str = "It's a Secret to Everybody";

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let cut = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let (header, body) = (&rest[..cut], rest.get(cut + 1..).unwrap_or_default());
    let Ok(value) = HeaderValue::from_bytes(header) else {
        return;
    };
    let mut headers = HeaderMap::new();
    let name = if kind % 2 == 0 {
        "x-hub-signature-256"
    } else {
        "x-gitlab-token"
    };
    headers.insert(name, value.clone());
    let accepted = verified(SECRET, &headers, body);
    let expected = if kind % 2 == 0 {
        let signature = github_signature(SECRET, body);
        let given = value.to_str().unwrap_or_default();
        given.len() == signature.len()
            && given.starts_with("sha256=")
            && given[7..].eq_ignore_ascii_case(&signature[7..])
    } else {
        value.as_bytes() == SECRET.as_bytes()
    };
    assert_eq!(accepted, expected, "{value:?}");
    if let Some(keys) = pushed(body) {
        assert!(!keys.is_empty());
        for key in keys {
            assert_eq!(key, key.to_ascii_lowercase());
        }
    }
    if let Ok(url) = std::str::from_utf8(body) {
        let key = repository_key(url);
        assert_eq!(key, key.to_ascii_lowercase());
    }
});
