//! Commit signatures: a repository with `spec.verification` runs a head
//! only when it is signed by one of the trusted public keys in its Secret.
//!
//! ```text
//!  Secret data ──► TrustedKeys::parse (once, per format)
//!                         │
//!  commit ──► gpgsig header + signed data ──► TrustedKeys::verify ──► Signer
//!             (git2 extract_signature)          │ which format? (armour line)
//!                                               ├─► openpgp: rpgp, key or signing subkey
//!                                               └─► ssh: SSHSIG, namespace `git`
//! ```
//!
//! Everything here reads input an attacker may have written (the commit and
//! its signature): sizes are bounded before anything is parsed, and every
//! failure is a [`VerifyError`] that names the commit.

mod openpgp;
mod ssh;
#[cfg(test)]
mod tests;

use git2::{ErrorCode, ObjectType, Oid, Repository};
use std::{fmt, path::Path, time::SystemTime};

/// Largest signature read from a commit; git's own are a few hundred bytes.
pub const MAX_SIGNATURE_BYTES: usize = 64 * 1024;
/// Largest value of one Secret data key (the API server's own limit for a
/// whole Secret is 1 MiB).
pub const MAX_KEY_SOURCE_BYTES: usize = 1024 * 1024;
/// Largest commit object read for its signature.
pub const MAX_COMMIT_BYTES: usize = 16 * 1024 * 1024;

/// The kind of commit signature a repository is verified with
/// (`gpg.format` in git).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureFormat {
    OpenPgp,
    Ssh,
}

impl fmt::Display for SignatureFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureFormat::OpenPgp => "OpenPGP",
            SignatureFormat::Ssh => "SSH",
        })
    }
}

/// Who signed a verified commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub format: SignatureFormat,
    /// OpenPGP: the primary key's fingerprint (upper-case hex), also when a
    /// subkey signed; SSH: `SHA256:…` as `ssh-keygen -l` shows it.
    pub fingerprint: String,
    /// OpenPGP: the key's primary user id; SSH: the allowed-signers
    /// principal, else the key's comment. May be empty.
    pub identity: String,
    /// The Secret data key the trusted key came from.
    pub source_name: String,
}

impl fmt::Display for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.identity.is_empty() {
            write!(f, "{} ", self.identity)?;
        }
        write!(
            f,
            "({} key {}, from Secret key `{}`)",
            self.format, self.fingerprint, self.source_name
        )
    }
}

/// Why a commit was not accepted, or the trusted keys could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("commit {commit} is not signed (it has no gpgsig header)")]
    Unsigned { commit: String },
    #[error(
        "commit {commit} carries {found} signature, and the repository is verified with {expected} keys"
    )]
    WrongFormat {
        commit: String,
        expected: SignatureFormat,
        found: String,
    },
    #[error("the signature on commit {commit} is not valid: {reason}")]
    BadSignature { commit: String, reason: String },
    #[error("commit {commit} is signed by {fingerprint}, which is none of the trusted keys")]
    UnknownKey { commit: String, fingerprint: String },
    #[error("the verification Secret holds no {format} public key")]
    NoKeys { format: SignatureFormat },
    #[error("Secret key `{source_name}`: {reason}")]
    BadKey { source_name: String, reason: String },
    #[error("cannot read commit {commit}: {message}")]
    Git { commit: String, message: String },
}

/// The trusted public keys, parsed once from the Secret's values.
#[derive(Debug)]
pub struct TrustedKeys {
    trusted: Trusted,
}

#[derive(Debug)]
enum Trusted {
    OpenPgp(openpgp::Keyring),
    Ssh(ssh::AllowedSigners),
}

impl TrustedKeys {
    /// Reads the trusted keys from `sources`, the Secret's (data key, value)
    /// pairs. OpenPGP: ASCII-armoured (or binary) public keys or keyrings.
    /// SSH: one key a line, `ssh-ed25519 AAAA… comment` or allowed-signers
    /// style `principal [options] keytype base64`; blank lines and `#`
    /// comments are skipped. Every source must hold at least one key.
    pub fn parse(
        format: SignatureFormat,
        sources: &[(String, Vec<u8>)],
    ) -> Result<TrustedKeys, VerifyError> {
        if sources.is_empty() {
            return Err(VerifyError::NoKeys { format });
        }
        for (name, value) in sources {
            if value.len() > MAX_KEY_SOURCE_BYTES {
                return Err(VerifyError::BadKey {
                    source_name: name.clone(),
                    reason: format!(
                        "{} bytes, more than the {MAX_KEY_SOURCE_BYTES} Sluice reads",
                        value.len()
                    ),
                });
            }
        }
        let trusted = match format {
            SignatureFormat::OpenPgp => Trusted::OpenPgp(openpgp::Keyring::parse(sources)?),
            SignatureFormat::Ssh => Trusted::Ssh(ssh::AllowedSigners::parse(sources)?),
        };
        Ok(TrustedKeys { trusted })
    }

    /// The format these keys verify.
    pub fn format(&self) -> SignatureFormat {
        match self.trusted {
            Trusted::OpenPgp(_) => SignatureFormat::OpenPgp,
            Trusted::Ssh(_) => SignatureFormat::Ssh,
        }
    }

    /// Checks `signature` (a commit's gpgsig header) over `signed_data`
    /// (the commit object without that header); `commit` names the commit
    /// in errors.
    pub fn verify(
        &self,
        commit: &str,
        signature: &[u8],
        signed_data: &[u8],
    ) -> Result<Signer, VerifyError> {
        let commit = short(commit);
        if signature.len() > MAX_SIGNATURE_BYTES {
            return Err(VerifyError::BadSignature {
                commit,
                reason: format!(
                    "the signature is {} bytes, more than the {MAX_SIGNATURE_BYTES} Sluice reads",
                    signature.len()
                ),
            });
        }
        let found = sniff(signature);
        if found != Some(self.format()) {
            return Err(VerifyError::WrongFormat {
                commit,
                expected: self.format(),
                found: describe(signature, found),
            });
        }
        match &self.trusted {
            Trusted::OpenPgp(keyring) => keyring.verify(&commit, signature, signed_data, now()),
            Trusted::Ssh(signers) => signers.verify(&commit, signature, signed_data),
        }
    }
}

/// Verifies commit `commit` (full hex id) of the git repository at
/// `repo_path` (bare or not): it must carry a signature of the keys' format,
/// valid over the commit, by one of `keys`.
pub fn verify_commit(
    repo_path: &Path,
    commit: &str,
    keys: &TrustedKeys,
) -> Result<Signer, VerifyError> {
    let git_error = |message: String| VerifyError::Git {
        commit: short(commit),
        message,
    };
    let repo = Repository::open(repo_path).map_err(|e| {
        git_error(format!(
            "cannot open the repository at {}: {}",
            repo_path.display(),
            e.message()
        ))
    })?;
    let oid =
        Oid::from_str(commit).map_err(|_| git_error(format!("`{commit}` is not a commit id")))?;
    let odb = repo.odb().map_err(|e| git_error(e.message().to_owned()))?;
    let (size, kind) = odb.read_header(oid).map_err(|e| match e.code() {
        ErrorCode::NotFound => git_error("no such object in the repository".into()),
        _ => git_error(e.message().to_owned()),
    })?;
    if kind != ObjectType::Commit {
        return Err(git_error(format!("the object is a {kind}, not a commit")));
    }
    if size > MAX_COMMIT_BYTES {
        return Err(git_error(format!(
            "the commit object is {size} bytes, more than the {MAX_COMMIT_BYTES} Sluice reads"
        )));
    }
    match repo.extract_signature(&oid, None) {
        Ok((signature, signed_data)) => keys.verify(commit, &signature, &signed_data),
        Err(e) if e.code() == ErrorCode::NotFound => Err(VerifyError::Unsigned {
            commit: short(commit),
        }),
        Err(e) => Err(git_error(e.message().to_owned())),
    }
}

/// The commit as errors show it: 12 hex digits.
fn short(commit: &str) -> String {
    super::prefix(commit, 12).to_owned()
}

/// Seconds since the epoch, for key expiry.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

const PGP_ARMOR: &[u8] = b"-----BEGIN PGP SIGNATURE-----";
const SSH_ARMOR: &[u8] = b"-----BEGIN SSH SIGNATURE-----";
const X509_ARMOR: &[u8] = b"-----BEGIN SIGNED MESSAGE-----";

/// The format of a signature, from its armour line.
fn sniff(signature: &[u8]) -> Option<SignatureFormat> {
    let text = signature.trim_ascii_start();
    if text.starts_with(PGP_ARMOR) {
        Some(SignatureFormat::OpenPgp)
    } else if text.starts_with(SSH_ARMOR) {
        Some(SignatureFormat::Ssh)
    } else {
        None
    }
}

/// "an OpenPGP", "an SSH", …: what a signature is, for [`VerifyError::WrongFormat`].
fn describe(signature: &[u8], format: Option<SignatureFormat>) -> String {
    match format {
        Some(format) => format!("an {format}"),
        None if signature.trim_ascii_start().starts_with(X509_ARMOR) => "an X.509 (gpgsm)".into(),
        None => "an unrecognised".into(),
    }
}
