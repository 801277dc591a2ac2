//! The reference gateway's request handling (whoever reaches its port
//! sends these): up to four requests in a row, split at 0xfe bytes; each
//! one's first byte picks the route (config `PUT` with or without a
//! precondition, validate, chat, status, config `GET`, the admin `PUT`,
//! audit, reset: not the fault injection, whose hangs are the point) and
//! the rest is its body. Properties: no panic; no `500`; a `PUT` answered
//! `200` is what `/status` reports next.
#![no_main]

use axum::body::Body;
use http::{Method, Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use sluice::gateway::{
    protocol,
    reference::{
        ADMIN_AUDIT_PATH, ADMIN_CONFIG_PATH, ADMIN_RESET_PATH, ReferenceGateway, ReferenceOptions,
        chat::CHAT_PATH,
    },
};
use std::sync::OnceLock;
use tower::ServiceExt as _;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(async {
        let gateway = ReferenceGateway::open(ReferenceOptions::default()).unwrap();
        let router = gateway.router();
        for request in data.split(|&b| b == 0xfe).take(4) {
            let Some((&route, body)) = request.split_first() else {
                continue;
            };
            let (method, path) = match route % 9 {
                0..=1 => (Method::PUT, protocol::CONFIG_PATH),
                2 => (Method::POST, protocol::VALIDATE_PATH),
                3 => (Method::POST, CHAT_PATH),
                4 => (Method::GET, protocol::STATUS_PATH),
                5 => (Method::GET, protocol::CONFIG_PATH),
                6 => (Method::PUT, ADMIN_CONFIG_PATH),
                7 => (Method::GET, ADMIN_AUDIT_PATH),
                _ => (Method::POST, ADMIN_RESET_PATH),
            };
            let mut builder = Request::builder()
                .method(method.clone())
                .uri(path)
                .header("content-type", "application/json");
            if route % 9 == 0 {
                builder = builder
                    .header("if-none-match", "*")
                    .header(protocol::GENERATION_HEADER, (route / 9).to_string());
            }
            let answer = router
                .clone()
                .oneshot(builder.body(Body::from(body.to_vec())).unwrap())
                .await
                .unwrap();
            let status = answer.status();
            assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{method} {path}");
            let etag = answer
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .map(|t| protocol::digest_of_etag(t).to_owned());
            if path == protocol::CONFIG_PATH && method == Method::PUT && status == StatusCode::OK {
                let status = router
                    .clone()
                    .oneshot(
                        Request::get(protocol::STATUS_PATH)
                            .body(Body::empty())
                            .unwrap(),
                    )
                    .await
                    .unwrap();
                let bytes = axum::body::to_bytes(status.into_body(), 1 << 20)
                    .await
                    .unwrap();
                let status: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(
                    status.get("digest").and_then(|d| d.as_str()),
                    etag.as_deref(),
                    "{status}"
                );
            }
        }
    });
});
