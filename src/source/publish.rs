//! Publishing a branch made by [`super::commit`]: pushing it (never
//! forced) and the link that opens its pull (merge) request.

use super::{
    Credentials,
    commit::{BranchError, open_repository},
    follow::{redact_url, remote_callbacks},
};
use git2::{PushOptions, Repository};
use std::{cell::RefCell, path::Path};

/// The URL of a remote by name, when the repository has it.
pub fn url_of(repo: &Repository, remote: &str) -> Option<String> {
    repo.find_remote(remote).ok()?.url().ok().map(str::to_owned)
}

/// Pushes `branch` to `remote` (a remote's name, else a URL or path).
/// Never forced: a branch of that name on the remote that is not an
/// ancestor is a refusal, not an overwrite. Returns the URL pushed to,
/// without credentials.
pub fn push(
    repo_path: &Path,
    branch: &str,
    remote: &str,
    credentials: &Credentials,
) -> Result<String, BranchError> {
    let repo = open_repository(repo_path)?;
    let mut handle = match repo.find_remote(remote) {
        Ok(found) => found,
        Err(_) if looks_like_location(remote) => {
            repo.remote_anonymous(remote)
                .map_err(|e| BranchError::Push {
                    remote: redact_url(remote),
                    message: e.message().to_owned(),
                })?
        }
        Err(_) => {
            return Err(BranchError::NoRemote {
                remote: remote.to_owned(),
                path: repo_path.display().to_string(),
            });
        }
    };
    let url = handle.url().ok().unwrap_or(remote).to_owned();
    let shown = redact_url(&url);
    let rejected: RefCell<Option<String>> = RefCell::new(None);
    {
        let mut callbacks = remote_callbacks(credentials, &url);
        callbacks.push_update_reference(|reference, status| {
            if let Some(status) = status {
                *rejected.borrow_mut() = Some(format!("{reference}: {status}"));
            }
            Ok(())
        });
        let mut options = PushOptions::new();
        // NB: as for fetches, no redirect to another host (the credentials
        // callback refuses any other origin too).
        options.follow_redirects(git2::RemoteRedirect::None);
        options.remote_callbacks(callbacks);
        let refspec = format!("refs/heads/{branch}:refs/heads/{branch}");
        handle
            .push(&[refspec.as_str()], Some(&mut options))
            .map_err(|e| BranchError::Push {
                remote: shown.clone(),
                message: e.message().replace(&url, &shown),
            })?;
    }
    if let Some(message) = rejected.into_inner() {
        return Err(BranchError::PushRejected {
            remote: shown,
            branch: branch.to_owned(),
            message,
        });
    }
    Ok(shown)
}

fn looks_like_location(remote: &str) -> bool {
    super::follow::is_remote(remote) || remote.contains('/') || Path::new(remote).exists()
}

/// Where to open the pull (merge) request of `branch` into `base`, when the
/// remote is on GitHub or GitLab.
pub fn pull_request_url(remote_url: &str, base: &str, branch: &str) -> Option<String> {
    let (host, project) = host_and_project(remote_url)?;
    if host == "github.com" || host.starts_with("github.") {
        Some(format!(
            "https://{host}/{project}/compare/{}...{}?expand=1",
            encode(base, false),
            encode(branch, false)
        ))
    } else if host.contains("gitlab") {
        Some(format!(
            "https://{host}/{project}/-/merge_requests/new?merge_request%5Bsource_branch%5D={}&merge_request%5Btarget_branch%5D={}",
            encode(branch, true),
            encode(base, true)
        ))
    } else {
        None
    }
}

/// What to tell the user to do with a branch made for review: push it
/// (unless `pushed`), then open its pull request, by URL when known.
/// `remote_known`: `remote` names a configured remote, or is a URL or path.
pub fn next_step(
    pushed: bool,
    remote: &str,
    base: &str,
    branch: &str,
    pull_request_url: Option<&str>,
    remote_known: bool,
) -> String {
    if !pushed && !remote_known {
        return format!(
            "this repository has no remote `{remote}`: git remote add {remote} URL, then git push {remote} {branch} and open a pull request into {base}"
        );
    }
    match (pushed, pull_request_url) {
        (true, Some(url)) => format!("open the pull request: {url}"),
        (true, None) => format!("open a pull request from {branch} into {base}"),
        (false, Some(url)) => {
            format!("git push {remote} {branch}, then open the pull request: {url}")
        }
        (false, None) => {
            format!("git push {remote} {branch}, then open a pull request into {base}")
        }
    }
}

/// `(host, owner/name)` of `https://host/owner/name(.git)`,
/// `ssh://git@host[:port]/owner/name.git` or `git@host:owner/name.git`.
fn host_and_project(url: &str) -> Option<(String, String)> {
    let (host, path) = if let Some((_, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_once('/')?;
        let host = authority.rsplit('@').next()?;
        let host = host.split(':').next()?;
        (host, path)
    } else {
        let (authority, path) = url.split_once(':')?;
        (authority.rsplit('@').next()?, path)
    };
    let project = path.trim_matches('/');
    let project = project.strip_suffix(".git").unwrap_or(project);
    (!host.is_empty() && project.contains('/'))
        .then(|| (host.to_ascii_lowercase(), project.to_owned()))
}

/// Percent-encodes what a URL path segment or query value cannot hold
/// (`/` too, in a query).
fn encode(text: &str, query: bool) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b'/' if !query => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_remotes_get_a_compare_link() {
        let expected =
            "https://github.com/acme/policy/compare/main...rollback/production-abc?expand=1";
        for url in [
            "https://github.com/acme/policy.git",
            "https://x-access-token@github.com/acme/policy",
            "git@github.com:acme/policy.git",
            "ssh://git@github.com/acme/policy.git",
        ] {
            assert_eq!(
                pull_request_url(url, "main", "rollback/production-abc").as_deref(),
                Some(expected),
                "{url}"
            );
        }
    }

    #[test]
    fn gitlab_remotes_get_a_merge_request_link() {
        assert_eq!(
            pull_request_url(
                "git@gitlab.example.com:team/sub/policy.git",
                "main",
                "rollback/p"
            )
            .as_deref(),
            Some(
                "https://gitlab.example.com/team/sub/policy/-/merge_requests/new?merge_request%5Bsource_branch%5D=rollback%2Fp&merge_request%5Btarget_branch%5D=main"
            )
        );
    }

    #[test]
    fn other_remotes_get_none() {
        assert_eq!(pull_request_url("/srv/git/policy.git", "main", "b"), None);
        assert_eq!(
            pull_request_url("file:///srv/git/policy.git", "main", "b"),
            None
        );
        assert_eq!(
            pull_request_url("https://git.example/policy.git", "main", "b"),
            None
        );
    }
}
