//! The `http` driver's handling of what a gateway answers (a gateway is
//! not trusted: it may be broken, hostile, or echo the request). A real
//! loopback server answers each request with the input: byte 0 picks the
//! driver call, byte 1 the status, byte 2 the token; the rest is header
//! lines, a 0xff byte, then the body, with every `$T` replaced by the
//! driver's bearer token. Properties: no panic, no hang; the token never
//! shows in what the driver returns, as it is or quoted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::{
    config::{Allowances, Digest, model},
    gateway::{Desired, DriverContext, Gateway, Secrets, http::HttpGateway},
};
use std::{
    io::{Read, Write},
    net::TcpListener,
    path::PathBuf,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

const TOKENS: [&str; 2] = [
    "s3cr3t-T0KEN-9f8e7d6c5b4a3210",
    r#"tok"en\with"quotes-0123456789"#,
];
const STATUSES: [u16; 16] = [
    200, 201, 204, 304, 400, 401, 403, 404, 409, 412, 422, 429, 500, 502, 503, 599,
];

struct Fixture {
    runtime: tokio::runtime::Runtime,
    drivers: Vec<HttpGateway>,
    answer: Arc<Mutex<Vec<u8>>>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let answer = Arc::new(Mutex::new(Vec::new()));
        let served = answer.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                // The request: read until its headers end (a body, if any,
                // is not needed to answer).
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = served.lock().unwrap().clone();
                let _ = stream.write_all(&answer);
                // Closing ends the answer: no keep-alive, no waiting.
            }
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let allowances = Allowances::new(
            vec!["*=GW_*".parse().unwrap()],
            vec!["*=http://127.0.0.1:*".parse().unwrap()],
        );
        let drivers = TOKENS
            .iter()
            .map(|&token| {
                let context = DriverContext {
                    secrets: Secrets::new(
                        Arc::new(move |_| Some(token.to_owned())),
                        Arc::new(allowances.clone()),
                    ),
                    timeout: Duration::from_secs(2),
                    ..DriverContext::new(PathBuf::from("."))
                };
                let spec = model::HttpGateway {
                    name: "gw".into(),
                    url: format!("http://127.0.0.1:{port}"),
                    token_env: Some(model::EnvVarName("GW_TOKEN".into())),
                    timeout: None,
                };
                HttpGateway::new("fuzz", &spec, &context).unwrap()
            })
            .collect();
        Fixture {
            runtime,
            drivers,
            answer,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let [call, status, token, rest @ ..] = data else {
        return;
    };
    let which = *token as usize % TOKENS.len();
    let secret = TOKENS[which];
    let rest = replace(rest, b"$T", secret.as_bytes());
    let cut = rest.iter().position(|&b| b == 0xff).unwrap_or(rest.len());
    let (head, body) = (&rest[..cut], rest.get(cut + 1..).unwrap_or_default());
    let status = STATUSES[*status as usize % STATUSES.len()];
    let mut answer = format!("HTTP/1.1 {status} Fuzz\r\n").into_bytes();
    for line in head.split(|&b| b == b'\n') {
        let framing = [&b"content-length"[..], b"transfer-encoding", b"connection"]
            .iter()
            .any(|h| line.len() >= h.len() && line[..h.len()].eq_ignore_ascii_case(h));
        if line.contains(&b':') && !line.contains(&b'\r') && !framing {
            answer.extend_from_slice(line);
            answer.extend_from_slice(b"\r\n");
        }
    }
    answer.extend_from_slice(
        format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    answer.extend_from_slice(body);
    let fixture = fixture();
    *fixture.answer.lock().unwrap() = answer;
    let driver = &fixture.drivers[which];
    let desired = Desired {
        environment: "fuzz".into(),
        gateway: "gw".into(),
        digest: Digest::of(b"{}"),
        body: Arc::from("{}"),
        revision: "0".repeat(40),
    };
    let expected = Digest::parse(&format!("sha256:{}", "a".repeat(64)));
    let shown = fixture.runtime.block_on(async {
        match call % 7 {
            0 => format!("{:?}", driver.live().await),
            1 => format!("{:?}", driver.verified().await),
            2 => format!("{:?}", driver.apply(&desired, expected.as_ref(), 3).await),
            3 => format!("{:?}", driver.apply(&desired, None, 0).await),
            4 => format!("{:?}", driver.validate("{}").await),
            5 => format!("{:?}", driver.projection().await),
            _ => format!(
                "{:?}",
                driver.chat(&serde_json::json!({"model": "m"})).await
            ),
        }
    });
    // The projection is the gateway's own document, shown as it is.
    if call % 7 == 5 && shown.starts_with("Ok") {
        return;
    }
    let debug = format!("{secret:?}");
    let json = serde_json::to_string(secret).unwrap();
    for form in [secret, debug.trim_matches('"'), json.trim_matches('"')] {
        assert!(!shown.contains(form), "the token leaked: {shown}");
    }
});

fn replace(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}
