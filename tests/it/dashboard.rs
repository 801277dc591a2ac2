//! The dashboard of a real `sluice run`, over HTTP: sign-in and scopes,
//! CSRF, read-only without tokens, paging through history, the drift diff
//! and the live-update stream. (tests/browser drives the same pages in
//! Chromium.)

use crate::support::{GatewayProcess, TestRepo, eventually, http};
use std::io::{BufRead, BufReader};

const TOKENS: &str = "dev@development:dev-token-1,root@admin:admin-token-1";

/// One request that does not follow redirects: status, headers, body.
fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut request = client
            .request(method.parse().unwrap(), url)
            .body(body.to_owned());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request is answered");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.text().await.unwrap_or_default())
    })
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn run(repo: &TestRepo, data: &std::path::Path, envs: &[(&str, &str)]) -> GatewayProcess {
    crate::support::sluice_run(repo, data, "1h", &[], envs)
}

/// Signs in with `token`; returns the `Cookie` header to send.
fn sign_in(url: &str, token: &str) -> String {
    let (status, headers, body) = request(
        "POST",
        &format!("{url}/login"),
        &[("content-type", "application/x-www-form-urlencoded")],
        &format!("token={token}&next=%2F"),
    );
    assert_eq!(status, 303, "{body}");
    assert_eq!(header(&headers, "location"), "/");
    let cookie = header(&headers, "set-cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    cookie.split(';').next().unwrap().to_owned()
}

/// The CSRF token in a page's forms.
fn csrf(page: &str) -> String {
    let at = page
        .find(r#"name="csrf" value=""#)
        .expect("a form with a CSRF field")
        + 19;
    page[at..].split('"').next().unwrap().to_owned()
}

#[test]
fn a_token_signs_in_and_scopes_what_is_shown_and_what_may_be_done() {
    let repo = TestRepo::example();
    let data = tempfile::tempdir().unwrap();
    let run = run(&repo, data.path(), &[("SLUICE_API_TOKENS", TOKENS)]);
    let url = run.url.clone();

    // Nothing without signing in.
    let (status, headers, _) = request("GET", &format!("{url}/"), &[], "");
    assert_eq!(
        (status, header(&headers, "location")),
        (303, "/login?next=%2F")
    );
    let (status, _, body) = request(
        "POST",
        &format!("{url}/login"),
        &[("content-type", "application/x-www-form-urlencoded")],
        "token=guess",
    );
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("not known"));

    let dev = sign_in(&url, "dev-token-1");
    let as_dev = [("cookie", dev.as_str())];
    eventually(30, "the overview lists development's gateway", || {
        request("GET", &format!("{url}/"), &as_dev, "")
            .2
            .contains(r#"data-gateway="dev-1""#)
    });
    let (_, _, overview) = request("GET", &format!("{url}/"), &as_dev, "");
    assert!(overview.contains(r#"<tr data-environment="development">"#));
    assert!(
        !overview.contains(r#"data-environment="production""#),
        "{overview}"
    );
    assert!(overview.contains("Signed in as <strong>dev</strong>"));
    assert_eq!(
        request(
            "GET",
            &format!("{url}/environments/production"),
            &as_dev,
            ""
        )
        .0,
        403
    );
    assert_eq!(
        request(
            "GET",
            &format!("{url}/environments/production/history"),
            &as_dev,
            ""
        )
        .0,
        403
    );

    let (status, _, page) = request(
        "GET",
        &format!("{url}/environments/development"),
        &as_dev,
        "",
    );
    assert_eq!(status, 200);
    let token = csrf(&page);
    let form = format!("csrf={token}");
    let post = |path: &str, headers: &[(&str, &str)], body: &str| {
        let mut all = vec![("content-type", "application/x-www-form-urlencoded")];
        all.extend_from_slice(headers);
        request("POST", &format!("{url}{path}"), &all, body)
    };
    // Out of scope, with a valid session and CSRF token.
    let (status, _, body) = post("/environments/production/sync", &as_dev, &form);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("not scoped to environment `production`"));
    // Without the CSRF token, with a wrong one, from another site.
    assert_eq!(post("/environments/development/sync", &as_dev, "").0, 403);
    assert_eq!(
        post("/environments/development/sync", &as_dev, "csrf=0000").0,
        403
    );
    let cross = [("cookie", dev.as_str()), ("origin", "http://evil.example")];
    assert_eq!(post("/environments/development/sync", &cross, &form).0, 403);
    // In scope.
    let (status, headers, _) = post("/environments/development/sync", &as_dev, &form);
    assert_eq!(
        (status, header(&headers, "location")),
        (303, "/environments/development")
    );
    // An unknown environment.
    assert_eq!(
        post(
            "/environments/nowhere/sync",
            &[("cookie", &sign_in(&url, "admin-token-1"))],
            &form
        )
        .0,
        403,
        "another session's CSRF token"
    );

    // The admin sees and acts on production.
    let admin = sign_in(&url, "admin-token-1");
    let as_admin = [("cookie", admin.as_str())];
    let (_, _, page) = request(
        "GET",
        &format!("{url}/environments/production"),
        &as_admin,
        "",
    );
    let admin_form = format!("csrf={}", csrf(&page));
    let (status, headers, _) = post("/environments/production/sync", &as_admin, &admin_form);
    assert_eq!(
        (status, header(&headers, "location")),
        (303, "/environments/production")
    );
    let (status, _, body) = post("/environments/nowhere/sync", &as_admin, &admin_form);
    assert_eq!(status, 404, "{body}");

    // A bearer token reads but cannot act (no session, no CSRF token).
    let bearer = [("authorization", "Bearer dev-token-1")];
    assert_eq!(request("GET", &format!("{url}/"), &bearer, "").0, 200);
    assert_eq!(
        post("/environments/development/sync", &bearer, &form).0,
        403
    );

    // Signing out ends the session.
    let (status, headers, _) = post("/logout", &as_dev, &form);
    assert_eq!(status, 303);
    assert!(header(&headers, "set-cookie").contains("Max-Age=0"));
    assert_eq!(request("GET", &format!("{url}/"), &as_dev, "").0, 303);
}

#[test]
fn without_tokens_the_dashboard_shows_everything_and_changes_nothing() {
    let repo = TestRepo::example();
    let data = tempfile::tempdir().unwrap();
    let run = run(&repo, data.path(), &[]);
    let url = run.url.clone();
    eventually(30, "every gateway in sync", || {
        let (_, _, page) = request("GET", &format!("{url}/"), &[], "");
        page.matches(r#"class="cell s-in-sync""#).count() == 5
    });
    let (status, headers, page) = request("GET", &format!("{url}/"), &[], "");
    assert_eq!(status, 200);
    for env in ["development", "eval", "staging", "production"] {
        assert!(
            page.contains(&format!(r#"<tr data-environment="{env}">"#)),
            "{env}"
        );
    }
    assert!(header(&headers, "content-security-policy").contains("default-src 'none'"));
    assert_eq!(header(&headers, "cache-control"), "no-store");
    // The cells show versions as every command does.
    let status = repo.sluice(&[
        "status",
        "--data-dir",
        data.path().to_str().unwrap(),
        "-o",
        "json",
    ]);
    let prod = status.json()["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["gateway"] == "prod-eu-1")
        .cloned()
        .unwrap();
    let version = format!(
        "{}@{}",
        &prod["desiredDigest"].as_str().unwrap()[..19],
        &prod["desiredRevision"].as_str().unwrap()[..8]
    );
    assert!(page.contains(&version), "{version}");

    let (_, _, environment) = request("GET", &format!("{url}/environments/development"), &[], "");
    assert!(environment.contains("no API tokens configured"));
    assert!(
        !environment.contains(r#"name="csrf""#),
        "no forms to act with"
    );
    let (status, _, body) = request(
        "POST",
        &format!("{url}/environments/development/sync"),
        &[("content-type", "application/x-www-form-urlencoded")],
        "csrf=x",
    );
    assert_eq!(status, 403);
    assert!(body.contains("read-only"));
    let (status, headers, css) = request("GET", &format!("{url}/assets/sluice.css?v=1"), &[], "");
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type").starts_with("text/css"));
    assert!(css.contains(".s-drifted"));
}

#[test]
fn history_pages_through_every_attempt_once() {
    let repo = TestRepo::example();
    let mut gateways = String::from("gateways:\n");
    for i in 0..120 {
        gateways.push_str(&format!(
            "  - name: dev-{i:03}\n    driver: file\n    path: gateways/development/dev-{i:03}.json\n"
        ));
    }
    repo.write("environments/development/gateways.yaml", gateways);
    repo.commit("development on 120 gateways");
    let data = tempfile::tempdir().unwrap();
    let run = run(&repo, data.path(), &[]);
    let url = run.url.clone();
    eventually(60, "120 gateways in sync", || {
        let (_, _, page) = request("GET", &format!("{url}/environments/development"), &[], "");
        page.matches(r#"data-state="in-sync""#).count() == 120
    });
    let mut next = format!("{url}/environments/development/history");
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let (status, _, page) = request("GET", &next, &[], "");
        assert_eq!(status, 200, "{page}");
        pages += 1;
        let rows: Vec<i64> = page
            .match_indices(r#"<tr class="attempt" data-id=""#)
            .map(|(at, m)| {
                page[at + m.len()..]
                    .split('"')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert!(rows.len() <= 50);
        seen.extend(rows);
        let Some(at) = page.find(r#"<a id="older" rel="next" href=""#) else {
            break;
        };
        let href = page[at + 31..]
            .split('"')
            .next()
            .unwrap()
            .replace("&amp;", "&");
        next = format!("{url}{href}");
    }
    assert_eq!(pages, 3);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no attempt twice");
    assert!(seen.len() >= 120, "{}", seen.len());
    // The API pages the same way.
    let api = format!("{url}/api/v1/environments/development/history?limit=100");
    let (_, first) = http("GET", &api, &[], "");
    let first: Vec<serde_json::Value> = serde_json::from_str(&first).unwrap();
    let last = first.last().unwrap();
    let cursor = format!("{}.{}", last["startedAt"].as_str().unwrap(), last["id"]);
    let (_, rest) = http("GET", &format!("{api}&before={cursor}"), &[], "");
    let rest: Vec<serde_json::Value> = serde_json::from_str(&rest).unwrap();
    let mut api_ids: Vec<i64> = first
        .iter()
        .chain(&rest)
        .map(|a| a["id"].as_i64().unwrap())
        .collect();
    assert_eq!(api_ids.len(), seen.len());
    api_ids.sort();
    assert_eq!(api_ids, unique);
    let (status, _, _) = request(
        "GET",
        &format!("{url}/environments/development/history?before=nonsense"),
        &[],
        "",
    );
    assert_eq!(status, 400);
}

#[test]
fn a_hand_edit_shows_as_drift_with_its_diff_and_is_announced_live() {
    let repo = TestRepo::example();
    let gateway = GatewayProcess::start(&["--ephemeral"], &[]);
    repo.write(
        "environments/development/gateways.yaml",
        format!(
            "gateways:\n  - name: dev-1\n    driver: http\n    url: {}\n    timeout: 2s\n",
            gateway.url
        ),
    );
    // Read back every second; drift is reported, not healed.
    let spec = repo
        .read("environments/development/environment.yaml")
        .replace("interval: 5m", "interval: 1s");
    assert!(spec.contains("interval: 1s, policy: detect"));
    repo.write("environments/development/environment.yaml", spec);
    repo.commit("development on a reference gateway");
    let data = tempfile::tempdir().unwrap();
    let run = run(&repo, data.path(), &[]);
    let url = run.url.clone();
    let cell = |state: &str| format!(r#"data-gateway="dev-1" data-state="{state}""#);
    eventually(30, "dev-1 in sync", || {
        request("GET", &format!("{url}/"), &[], "")
            .2
            .contains(&cell("in-sync"))
    });

    // A live page listens.
    let events = std::net::TcpStream::connect(run.address()).unwrap();
    use std::io::Write;
    (&events)
        .write_all(b"GET /events HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n")
        .unwrap();
    events
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let (heard, announced) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(events).lines() {
            let Ok(line) = line else { break };
            if line == "event: changed" && heard.send(()).is_err() {
                break;
            }
        }
    });

    // By hand: development's enforcement lowered on the gateway.
    let (_, config) = http("GET", &format!("{}/sluice/v1/config", gateway.url), &[], "");
    let mut config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["enforcement"], "alert");
    config["enforcement"] = "monitor".into();
    let (status, text) = http(
        "PUT",
        &format!("{}/admin/v1/config", gateway.url),
        &[("content-type", "application/json")],
        &config.to_string(),
    );
    assert_eq!(status, 200, "{text}");
    announced
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the events stream announces the pass");
    eventually(30, "dev-1 drifted", || {
        request("GET", &format!("{url}/"), &[], "")
            .2
            .contains(&cell("drifted"))
    });
    let (status, _, page) = request(
        "GET",
        &format!("{url}/environments/development/gateways/dev-1"),
        &[],
        "",
    );
    assert_eq!(status, 200);
    let diff = &page[page
        .find(r#"<pre class="diff" id="diff">"#)
        .unwrap_or_else(|| panic!("a diff: {page}"))..];
    let diff = &diff[..diff.find("</pre>").unwrap()];
    assert!(
        diff.contains(r#"<span class="del">-  &quot;enforcement&quot;: &quot;alert&quot;,</span>"#),
        "{diff}"
    );
    assert!(
        diff.contains(
            r#"<span class="add">+  &quot;enforcement&quot;: &quot;monitor&quot;,</span>"#
        ),
        "{diff}"
    );
    let (_, _, environment) = request("GET", &format!("{url}/environments/development"), &[], "");
    assert!(
        environment.contains("enforcement: &quot;alert&quot; → &quot;monitor&quot;"),
        "{environment}"
    );
}
