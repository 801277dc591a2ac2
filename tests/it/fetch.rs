//! `sluice sync` following a branch over git's smart HTTP protocol, with the
//! token from `--git-token-env`, against `git http-backend` on loopback.

use crate::support::{GitHttp, Run, TestRepo, sluice_with};
use std::path::Path;

const USER: &str = "x-access-token";
const TOKEN: &str = "tok-3f9a1c7e";
const TOKEN_ENV: &str = "SLUICE_TEST_GIT_TOKEN";

/// `sluice sync --repo URL --git-token-env VAR -o json` with `envs` set.
fn sync(url: &str, data: &Path, token_env: &str, envs: &[(&str, &str)]) -> Run {
    sluice_with(
        &[
            "sync",
            "--repo",
            url,
            "--git-token-env",
            token_env,
            "--data-dir",
            data.to_str().unwrap(),
            "-o",
            "json",
        ],
        envs,
    )
}

fn gateway_file(data: &Path, env: &str, gateway: &str) -> String {
    std::fs::read_to_string(data.join(format!("gateways/{env}/{gateway}.json"))).unwrap()
}

#[test]
fn sync_follows_a_remote_over_http_with_a_token() {
    let origin = TestRepo::example();
    let server = GitHttp::serve(origin.path(), USER, TOKEN);
    let data = tempfile::tempdir().unwrap();
    let url = server.url(None);

    let run = sync(&url, data.path(), TOKEN_ENV, &[(TOKEN_ENV, TOKEN)]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let head = origin.git(&["rev-parse", "HEAD"]).trim().to_owned();
    assert_eq!(run.json()["revision"], head.as_str());
    // The token went out in answer to a challenge, not unasked.
    assert!(server.refused() >= 1, "no 401 challenge was answered");
    assert!(server.served() >= 2, "served {}", server.served());

    let text = origin.read("base/packs/models.yaml");
    origin.write("base/packs/models.yaml", text.replace("600", "900"));
    let next = origin.commit("rate");
    let run = sync(&url, data.path(), TOKEN_ENV, &[(TOKEN_ENV, TOKEN)]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.json()["revision"], next.as_str());
    assert!(gateway_file(data.path(), "eval", "eval-1").contains("\"requests_per_minute\":900"));
}

#[test]
fn sync_without_the_token_fails_naming_the_repository() {
    let origin = TestRepo::example();
    let server = GitHttp::serve(origin.path(), USER, TOKEN);
    let data = tempfile::tempdir().unwrap();
    let url = server.url(None);

    // A variable nobody sets.
    let run = sync(&url, data.path(), "SLUICE_TEST_GIT_TOKEN_UNSET", &[]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains(&url), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("$SLUICE_TEST_GIT_TOKEN_UNSET is not set"),
        "{}",
        run.stderr
    );
    assert_eq!(server.served(), 0);
    assert_eq!(server.refused(), 1);
}

#[test]
fn sync_with_a_wrong_token_fails_once_and_never_shows_it() {
    let origin = TestRepo::example();
    let server = GitHttp::serve(origin.path(), USER, TOKEN);
    let data = tempfile::tempdir().unwrap();
    let url = server.url(None);
    let wrong = "wrong-7d2e9b41";

    let run = sync(&url, data.path(), TOKEN_ENV, &[(TOKEN_ENV, wrong)]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains(&url), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("refused the token in ${TOKEN_ENV}")),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains(wrong) && !run.stderr.contains(wrong));
    assert_eq!(server.served(), 0);
    // The challenge, then the refused token; no retrying the same token.
    assert_eq!(server.refused(), 2, "{}", run.stderr);
}

#[test]
fn a_password_in_the_url_is_never_shown() {
    let origin = TestRepo::example();
    let server = GitHttp::serve(origin.path(), USER, TOKEN);
    let data = tempfile::tempdir().unwrap();
    let url = server.url(Some("user:SECRET"));

    for envs in [&[][..], &[(TOKEN_ENV, "wrong-7d2e9b41")][..]] {
        let run = sync(&url, data.path(), TOKEN_ENV, envs);
        assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains(&server.url(Some("***"))),
            "{}",
            run.stderr
        );
        assert!(!run.stdout.contains("SECRET"), "{}", run.stdout);
        assert!(!run.stderr.contains("SECRET"), "{}", run.stderr);
    }
    assert_eq!(server.served(), 0);
}

/// A follower of `target` on `origin` served by `git daemon`, cached in `cache`.
fn follower(url: &str, target: sluice::source::Target, cache: &Path) -> sluice::source::Follower {
    sluice::source::Follower::at(url, target, cache, Default::default())
}

#[test]
fn a_tag_or_a_commit_is_followed_where_a_branch_would_move() {
    use sluice::source::Target;
    let origin = TestRepo::example();
    let first = origin.git(&["rev-parse", "HEAD"]).trim().to_owned();
    origin.git(&["tag", "-a", "v1", "-m", "release 1"]);
    let models = origin.read("base/packs/models.yaml");
    origin.write("base/packs/models.yaml", models.replace("600", "700"));
    let second = origin.commit("after the tag");
    let server = crate::support::GitDaemon::serve(origin.path());
    let cache = tempfile::tempdir().unwrap();

    let branch = follower(&server.url(), Target::Branch("main".into()), cache.path());
    assert_eq!(branch.fetch().unwrap(), second);
    // An annotated tag is followed to its commit, not past it.
    let tag = follower(&server.url(), Target::Tag("v1".into()), cache.path());
    assert_eq!(tag.fetch().unwrap(), first);
    assert_eq!(tag.fetch().unwrap(), first, "unchanged on the next fetch");
    let commit = follower(&server.url(), Target::Commit(first.clone()), cache.path());
    assert_eq!(commit.fetch().unwrap(), first);
    // A commit the remote does not have is a clear error.
    let missing = follower(&server.url(), Target::Commit("0".repeat(40)), cache.path());
    let error = missing.fetch().unwrap_err().to_string();
    assert!(error.contains(&"0".repeat(40)), "{error}");

    // The same, from a local path.
    let local = origin.path().to_str().unwrap();
    assert_eq!(
        follower(local, Target::Tag("v1".into()), cache.path())
            .fetch()
            .unwrap(),
        first
    );
    assert_eq!(
        follower(local, Target::Commit(first.clone()), cache.path())
            .fetch()
            .unwrap(),
        first
    );
    // The snapshot at a tag's commit loads.
    let snapshot = tag.snapshot(&first).unwrap();
    let loaded = sluice::config::load(&snapshot, &Default::default()).unwrap();
    assert!(loaded.repository.is_some());
}

/// Two loopback listeners: the configured origin, which redirects every
/// request to the same path on a second port (after a Basic challenge when
/// `challenge_first`; with a challenge on the redirect itself when
/// `challenge_on_redirect`), and that second port, which asks for
/// credentials and counts the requests that brought an `Authorization`
/// header.
struct Redirector {
    runtime: Option<tokio::runtime::Runtime>,
    origin: u16,
    elsewhere_seen: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    elsewhere_authorized: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Redirector {
    fn start(challenge_first: bool, challenge_on_redirect: bool) -> Redirector {
        use axum::{http::StatusCode, response::IntoResponse};
        use std::sync::{Arc, atomic::AtomicUsize, atomic::Ordering};
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let bind = || {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let port = listener.local_addr().unwrap().port();
            let _context = runtime.enter();
            (tokio::net::TcpListener::from_std(listener).unwrap(), port)
        };
        let (origin_listener, origin) = bind();
        let (elsewhere_listener, elsewhere) = bind();
        let challenge = || {
            (
                StatusCode::UNAUTHORIZED,
                [("www-authenticate", "Basic realm=\"git\"")],
                "authentication required\n",
            )
                .into_response()
        };
        let redirect =
            axum::Router::new().fallback(move |request: axum::extract::Request| async move {
                if challenge_first && !request.headers().contains_key("authorization") {
                    return challenge();
                }
                let target = request
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default();
                let mut response = (
                    StatusCode::FOUND,
                    [("location", format!("http://127.0.0.1:{elsewhere}{target}"))],
                )
                    .into_response();
                if challenge_on_redirect {
                    response.headers_mut().insert(
                        "www-authenticate",
                        axum::http::HeaderValue::from_static("Basic realm=\"git\""),
                    );
                }
                response
            });
        let elsewhere_seen = Arc::new(AtomicUsize::new(0));
        let elsewhere_authorized = Arc::new(AtomicUsize::new(0));
        let (seen, authorized) = (elsewhere_seen.clone(), elsewhere_authorized.clone());
        let lure = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let (seen, authorized) = (seen.clone(), authorized.clone());
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                if request.headers().contains_key("authorization") {
                    authorized.fetch_add(1, Ordering::SeqCst);
                }
                challenge()
            }
        });
        runtime.spawn(async move { axum::serve(origin_listener, redirect).await });
        runtime.spawn(async move { axum::serve(elsewhere_listener, lure).await });
        Redirector {
            runtime: Some(runtime),
            origin,
            elsewhere_seen,
            elsewhere_authorized,
        }
    }
}

impl Drop for Redirector {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
        }
    }
}

/// Fetches through a [`Redirector`]: how many requests reached the other
/// port, how many of them carried credentials, and the fetch's error.
fn fetch_through(challenge_first: bool, challenge_on_redirect: bool) -> (usize, usize, String) {
    use sluice::source::{Credentials, Follower, follow::Token};
    use std::sync::atomic::Ordering;
    let server = Redirector::start(challenge_first, challenge_on_redirect);
    let cache = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}/policy.git", server.origin);
    let credentials = Credentials {
        token: Some(Token(TOKEN.to_owned())),
        ..Default::default()
    };
    let follower = Follower::new(&url, "main", cache.path(), credentials);
    let error = follower.fetch().unwrap_err().to_string();
    (
        server.elsewhere_seen.load(Ordering::SeqCst),
        server.elsewhere_authorized.load(Ordering::SeqCst),
        error,
    )
}

#[test]
fn the_token_never_follows_a_redirect_to_another_port() {
    for challenge_first in [false, true] {
        let (seen, authorized, error) = fetch_through(challenge_first, false);
        assert!(
            seen >= 1,
            "the redirect was not followed, so nothing was tested: {error}"
        );
        assert_eq!(
            authorized, 0,
            "credentials went to another origin (challenge first: {challenge_first}): {error}"
        );
        assert!(error.contains("only for the origin of"), "{error}");
        assert!(!error.contains(TOKEN), "{error}");
    }
}

/// A known gap, kept as a test: after the origin accepted the token, a
/// redirect from it that carries a challenge of its own makes libgit2 replay
/// the stored credential at the new address (same host, another port: an
/// off-host redirect is refused) before the credentials callback is asked.
/// Closing it needs a smart-HTTP transport of Sluice's own.
#[test]
#[ignore = "known gap: libgit2 replays a stored credential on a challenging same-host redirect"]
fn the_token_never_follows_a_challenging_redirect_to_another_port() {
    let (seen, authorized, error) = fetch_through(true, true);
    assert!(seen >= 1, "{error}");
    assert_eq!(authorized, 0, "{error}");
}
