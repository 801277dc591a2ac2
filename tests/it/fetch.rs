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
