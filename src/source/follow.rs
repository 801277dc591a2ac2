//! Following a branch: a local repository is read in place; a remote one
//! (`file://`, `git://`, `https://` with a token from the environment, `ssh`
//! with a key file) is fetched into a bare cache repository, after a cheap
//! check of the remote head so an unchanged branch costs one round trip.

use super::{
    GitSnapshot, SourceError,
    git::{is_commit, peeled_commit},
};
use git2::{Cred, Direction, FetchOptions, Oid, RemoteCallbacks, RemoteRedirect, Repository};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How to authenticate to a remote. Secrets are named, never held in config
/// (the controller reads a token from a Secret and holds it as a [`Token`]).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// Environment variable holding an HTTPS token.
    pub token_env: Option<String>,
    /// An HTTPS token held in memory (read from a Kubernetes Secret); used
    /// before `token_env`.
    pub token: Option<Token>,
    /// Private key file for SSH remotes.
    pub ssh_key: Option<PathBuf>,
}

/// A secret value held in memory: never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(pub String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

enum Location {
    Local(PathBuf),
    Remote { url: String, cache: PathBuf },
}

/// What a follower stays on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The head of a branch, as it moves.
    Branch(String),
    /// A tag (moved only if someone moves the tag).
    Tag(String),
    /// One commit, by full id.
    Commit(String),
}

impl Target {
    fn name(&self) -> &str {
        match self {
            Target::Branch(name) | Target::Tag(name) | Target::Commit(name) => name,
        }
    }

    /// The remote ref to list and fetch; none for a commit.
    fn remote_ref(&self) -> Option<String> {
        match self {
            Target::Branch(name) => Some(format!("refs/heads/{name}")),
            Target::Tag(name) => Some(format!("refs/tags/{name}")),
            Target::Commit(_) => None,
        }
    }

    /// Where the fetched ref is kept in the cache.
    fn tracking(&self) -> String {
        match self {
            Target::Branch(name) => format!("{TRACKING_PREFIX}{name}"),
            Target::Tag(name) => format!("{TRACKING_PREFIX}tags/{name}"),
            Target::Commit(id) => format!("{TRACKING_PREFIX}commits/{id}"),
        }
    }
}

/// A branch (or tag, or commit) of a repository, kept up to date.
pub struct Follower {
    location: Location,
    target: Target,
    credentials: Credentials,
}

/// Whether `repo` names a remote rather than a local path.
pub fn is_remote(repo: &str) -> bool {
    repo.contains("://") || (repo.contains('@') && repo.contains(':') && !Path::new(repo).exists())
}

const TRACKING_PREFIX: &str = "refs/remotes/sluice/";
/// Longest a fetch's transfer may run.
const FETCH_DEADLINE: Duration = Duration::from_secs(110);
/// Most a fetch may download: a policy repository is small; a remote that
/// sends more is broken or hostile.
const MAX_FETCH_BYTES: usize = 1 << 30;

impl Follower {
    pub fn new(repo: &str, branch: &str, cache_root: &Path, credentials: Credentials) -> Self {
        Self::at(
            repo,
            Target::Branch(branch.to_owned()),
            cache_root,
            credentials,
        )
    }

    pub fn at(repo: &str, target: Target, cache_root: &Path, credentials: Credentials) -> Self {
        let location = if is_remote(repo) {
            let hash = Sha256::digest(repo.as_bytes());
            let name: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
            Location::Remote {
                url: repo.to_owned(),
                cache: cache_root.join("repos").join(name),
            }
        } else {
            Location::Local(PathBuf::from(repo))
        };
        Follower {
            location,
            target,
            credentials,
        }
    }

    /// The repository snapshots are read from (the cache, for a remote).
    pub fn repository_path(&self) -> &Path {
        match &self.location {
            Location::Local(path) => path,
            Location::Remote { cache, .. } => cache,
        }
    }

    /// Where the branch is after bringing the local copy up to date: the
    /// full commit id of its head.
    pub fn fetch(&self) -> Result<String, SourceError> {
        match &self.location {
            Location::Local(path) => {
                let repo = open(path)?;
                let name = self.target.name();
                // NB: from refs and object headers: a huge commit at the
                // head is named here and refused when its snapshot opens.
                self.target
                    .remote_ref()
                    .and_then(|full| peeled_commit(&repo, &full))
                    .or_else(|| peeled_commit(&repo, name))
                    .ok_or_else(|| SourceError::RevisionNotFound {
                        rev: name.to_owned(),
                        path: path.display().to_string(),
                    })
            }
            Location::Remote { url, cache } => self.fetch_remote(url, cache),
        }
    }

    fn fetch_remote(&self, url: &str, cache: &Path) -> Result<String, SourceError> {
        let repo = match Repository::open_bare(cache) {
            Ok(repo) => repo,
            Err(_) => {
                std::fs::create_dir_all(cache).map_err(|source| SourceError::Io {
                    path: cache.display().to_string(),
                    source,
                })?;
                Repository::init_bare(cache).map_err(|e| remote_error(url, e))?
            }
        };
        // NB: libgit2 follows a redirect to another host on the first
        // request unless told not to, and the listing below connects without
        // fetch options: only the repository's `http.followRedirects` reaches
        // it. The credentials callback refuses any other origin as well.
        let mut config = repo.config().map_err(|e| remote_error(url, e))?;
        if config.get_bool("http.followRedirects").ok() != Some(false) {
            config
                .set_bool("http.followRedirects", false)
                .map_err(|e| remote_error(url, e))?;
        }
        let tracking = self.target.tracking();
        let not_found = || SourceError::RevisionNotFound {
            rev: self.target.name().to_owned(),
            path: redact_url(url),
        };
        let mut remote = repo
            .remote_anonymous(url)
            .map_err(|e| remote_error(url, e))?;
        let refspecs: Vec<String> = match self.target.remote_ref() {
            Some(wanted) => {
                let local_head = repo.refname_to_id(&tracking).ok();
                let remote_head = {
                    let connection = remote
                        .connect_auth(Direction::Fetch, Some(self.callbacks(url)), None)
                        .map_err(|e| remote_error(url, e))?;
                    let head = connection
                        .list()
                        .map_err(|e| remote_error(url, e))?
                        .iter()
                        .find(|h| h.name() == wanted)
                        .map(|h| h.oid());
                    head.ok_or_else(not_found)?
                };
                if local_head == Some(remote_head) {
                    return peeled_commit(&repo, &tracking).ok_or_else(not_found);
                }
                vec![format!("+{wanted}:{tracking}")]
            }
            // NB: a commit, once fetched, never changes: no round trip.
            None => {
                if let Some(id) = Oid::from_str(self.target.name())
                    .ok()
                    .filter(|id| is_commit(&repo, *id))
                {
                    return Ok(id.to_string());
                }
                vec![
                    format!("+refs/heads/*:{TRACKING_PREFIX}heads/*"),
                    format!("+refs/tags/*:{TRACKING_PREFIX}tags/*"),
                ]
            }
        };
        let mut options = FetchOptions::new();
        options.follow_redirects(RemoteRedirect::None);
        let mut callbacks = self.callbacks(url);
        // NB: a remote that streams without end (or too slowly) is cut off
        // here, inside the fetch, rather than left running on its thread.
        let deadline = Instant::now() + FETCH_DEADLINE;
        callbacks.transfer_progress(move |progress| {
            progress.received_bytes() <= MAX_FETCH_BYTES && Instant::now() < deadline
        });
        options.remote_callbacks(callbacks);
        let refspecs: Vec<&str> = refspecs.iter().map(String::as_str).collect();
        remote
            .fetch(&refspecs, Some(&mut options), None)
            .map_err(|e| match e.code() {
                git2::ErrorCode::User => SourceError::OpenRepository {
                    path: redact_url(url),
                    message: format!(
                        "the fetch was stopped: more than {} MiB or {:?}",
                        MAX_FETCH_BYTES >> 20,
                        FETCH_DEADLINE
                    ),
                },
                _ => remote_error(url, e),
            })?;
        match &self.target {
            Target::Commit(id) => Oid::from_str(id)
                .ok()
                .filter(|id| is_commit(&repo, *id))
                .map(|id| id.to_string())
                .ok_or_else(not_found),
            _ => peeled_commit(&repo, &tracking).ok_or_else(not_found),
        }
    }

    fn callbacks(&self, url: &str) -> RemoteCallbacks<'static> {
        remote_callbacks(&self.credentials, url)
    }

    /// The snapshot of one commit of the followed repository.
    pub fn snapshot(&self, commit: &str) -> Result<GitSnapshot, SourceError> {
        GitSnapshot::open(self.repository_path(), commit)
    }
}

/// Callbacks that authenticate to the remote at `url` with `credentials`
/// (fetch and push alike). A token goes only to `url`'s origin.
pub(crate) fn remote_callbacks(credentials: &Credentials, url: &str) -> RemoteCallbacks<'static> {
    let mut callbacks = RemoteCallbacks::new();
    let credentials = credentials.clone();
    let expected = origin(url);
    let configured = redact_url(url);
    // libgit2 asks again after a refusal (up to its replay limit), and
    // the key or token will not have changed: each is offered once per
    // connection.
    let mut token_offered = false;
    let mut key_offered = false;
    callbacks.credentials(move |asking, username, allowed| {
        // NB: libgit2 asks again at the new address after a redirect, and
        // it compares only host names (not ports or schemes) before
        // following one: the token is for the origin the operator
        // configured, and a server elsewhere that asks is refused here.
        let token_configured = credentials.token.is_some() || credentials.token_env.is_some();
        if allowed.is_user_pass_plaintext() && token_configured && origin(asking) != expected {
            return Err(git2::Error::from_str(&format!(
                "{} asks for credentials (after a redirect?), but the token is only for the \
                 origin of {configured}: not sent",
                redact_url(asking)
            )));
        }
        if allowed.is_ssh_key()
            && let Some(key) = &credentials.ssh_key
        {
            if key_offered {
                return Err(git2::Error::from_str(&format!(
                    "the remote refused the SSH key {}",
                    key.display()
                )));
            }
            key_offered = true;
            return Cred::ssh_key(username.unwrap_or("git"), None, key, None);
        }
        if allowed.is_user_pass_plaintext()
            && let Some(Token(token)) = &credentials.token
        {
            if token_offered {
                return Err(git2::Error::from_str(
                    "the remote refused the token from the Secret",
                ));
            }
            token_offered = true;
            return Cred::userpass_plaintext(username.unwrap_or("x-access-token"), token);
        }
        if allowed.is_user_pass_plaintext()
            && let Some(var) = credentials.token_env.as_deref()
        {
            if token_offered {
                return Err(git2::Error::from_str(&format!(
                    "the remote refused the token in ${var}"
                )));
            }
            match std::env::var(var) {
                Ok(token) => {
                    token_offered = true;
                    let user = username.unwrap_or("x-access-token");
                    return Cred::userpass_plaintext(user, &token);
                }
                Err(_) if !allowed.is_default() => {
                    return Err(git2::Error::from_str(&format!(
                        "the remote asks for credentials and ${var} is not set"
                    )));
                }
                Err(_) => {}
            }
        }
        Cred::default()
    });
    callbacks
}

/// Scheme, host and port (the scheme's default when none is given) of a
/// URL: what must match for a credential to be sent. `None` for what is not
/// a URL (an scp-like `git@host:path`).
fn origin(url: &str) -> Option<(String, String, Option<u16>)> {
    let parsed = url::Url::parse(url).ok()?;
    Some((
        parsed.scheme().to_ascii_lowercase(),
        parsed.host_str()?.to_ascii_lowercase(),
        parsed.port_or_known_default(),
    ))
}

fn open(path: &Path) -> Result<Repository, SourceError> {
    Repository::discover(path).map_err(|e| SourceError::OpenRepository {
        path: path.display().to_string(),
        message: e.message().to_owned(),
    })
}

/// git2's message, without anything that could carry a credential: a URL's
/// user-info is cut before it is shown.
fn remote_error(url: &str, e: git2::Error) -> SourceError {
    SourceError::OpenRepository {
        path: redact_url(url),
        message: e.message().replace(url, &redact_url(url)),
    }
}

/// `url` as it may be shown: the user-info (which ends at the last `@` before
/// the host, so a password may itself hold an `@`) becomes `***`, and so does
/// the value of every query parameter named like a secret
/// (`private_token`, `api_key`, `sig`, ...).
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(at) => (&url[..at + 3], &url[at + 3..]),
        None => ("", url),
    };
    // NB: user-info ends at the last `@` before the host; a password may
    // hold a raw `/`, `?` or `#` (it should be escaped, but gets pasted as
    // is), so an `@` after one still ends user-info when a `:` came first
    // (`user:pa/ss@host`). An `@` in a path (`host/org/@scope`) does not.
    // When in doubt this hides too much, never too little.
    let userinfo = (!scheme.is_empty())
        .then(|| rest.rfind('@'))
        .flatten()
        .filter(|at| {
            let before = &rest[..*at];
            let first = before.split(['/', '?', '#']).next().unwrap_or("");
            first.len() == before.len() || first.contains(':')
        });
    let (masked, location) = match userinfo {
        Some(at) => (true, &rest[at + 1..]),
        None => (false, rest),
    };
    let (before_fragment, fragment) = match location.find('#') {
        Some(at) => location.split_at(at),
        None => (location, ""),
    };
    let (location, query) = match before_fragment.find('?') {
        Some(at) => (&before_fragment[..at], Some(&before_fragment[at + 1..])),
        None => (before_fragment, None),
    };
    let mut shown = String::from(scheme);
    if masked {
        shown.push_str("***@");
    }
    shown.push_str(location);
    if let Some(query) = query {
        shown.push('?');
        let parameters: Vec<String> = query
            .split('&')
            .map(|parameter| match parameter.split_once('=') {
                Some((name, _)) if secret_name(name) => format!("{name}=***"),
                _ => parameter.to_owned(),
            })
            .collect();
        shown.push_str(&parameters.join("&"));
    }
    shown.push_str(fragment);
    shown
}

/// Whether a query parameter's name says its value is a credential.
fn secret_name(name: &str) -> bool {
    const WORDS: [&str; 9] = [
        "token",
        "secret",
        "password",
        "passwd",
        "key",
        "sig",
        "auth",
        "credential",
        "session",
    ];
    let name = name.to_ascii_lowercase();
    WORDS.iter().any(|word| name.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_remotes_from_paths() {
        assert!(is_remote("https://git.example/policy.git"));
        assert!(is_remote("file:///srv/policy"));
        assert!(is_remote("git@git.example:team/policy.git"));
        assert!(!is_remote("./policy"));
        assert!(!is_remote("/srv/policy"));
    }

    #[test]
    fn a_token_never_shows_in_debug() {
        let credentials = Credentials {
            token: Some(Token("s3cret".into())),
            ..Default::default()
        };
        assert!(!format!("{credentials:?}").contains("s3cret"));
    }

    #[test]
    fn urls_lose_their_credentials_in_messages() {
        assert_eq!(
            redact_url("https://user:s3cret@git.example/p.git"),
            "https://***@git.example/p.git"
        );
        assert_eq!(
            redact_url("https://git.example/p.git"),
            "https://git.example/p.git"
        );
    }

    #[test]
    fn redaction_covers_passwords_with_at_signs_and_secret_parameters() {
        let table = [
            ("http://bob:SECRET@tok@host/p.git", "http://***@host/p.git"),
            ("http://bob:SECRET@tok@host", "http://***@host"),
            (
                "https://host/p.git?private_token=SECRET",
                "https://host/p.git?private_token=***",
            ),
            (
                "https://host/p?ref=main&access_token=SECRET&page=2",
                "https://host/p?ref=main&access_token=***&page=2",
            ),
            (
                "https://host/p?API_KEY=SECRET",
                "https://host/p?API_KEY=***",
            ),
            (
                "https://host/p?key=SECRET&sig=SECRET",
                "https://host/p?key=***&sig=***",
            ),
            (
                "https://host/p?X-Amz-Signature=SECRET",
                "https://host/p?X-Amz-Signature=***",
            ),
            (
                "https://host/p?password=SECRET#top",
                "https://host/p?password=***#top",
            ),
            (
                "https://u:SECRET@host/p?secret=SECRET",
                "https://***@host/p?secret=***",
            ),
            // A raw `#`, `?` or `/` in a password still ends at the host.
            ("https://u:p#SECRET@host/x", "https://***@host/x"),
            ("https://u:p?SECRET@host/x", "https://***@host/x"),
            ("https://u:p/SECRET@host/x", "https://***@host/x"),
            // An `@` in the path is not user-info.
            ("https://host/org/@scope/p", "https://host/org/@scope/p"),
            ("https://host/p?ref=main", "https://host/p?ref=main"),
            ("git@host:team/p.git", "git@host:team/p.git"),
            ("/srv/policy", "/srv/policy"),
        ];
        for (url, shown) in table {
            assert_eq!(redact_url(url), shown, "{url}");
            assert!(!redact_url(url).contains("SECRET"), "{url}");
        }
    }
}
