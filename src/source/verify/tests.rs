//! Real repositories, real keys: commits are signed by the `git` CLI with
//! `ssh-keygen` and `gpg`, as an author would sign them. A missing tool
//! fails the test; nothing is skipped.

use super::*;
use std::{
    fs,
    path::PathBuf,
    process::{Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
};
use tempfile::TempDir;

/// Runs a tool of the machine and returns what it printed.
fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} cannot run (is it installed?): {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A git repository in a temporary directory, untouched by the user's
/// git configuration.
struct Repo {
    dir: TempDir,
}

impl Repo {
    fn new() -> Repo {
        let repo = Repo {
            dir: tempfile::tempdir().unwrap(),
        };
        run(repo.git().args(["init", "-q"]));
        repo
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn git(&self) -> Command {
        let mut git = Command::new("git");
        git.current_dir(self.path())
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .args([
                "-c",
                "user.name=Sluice Test",
                "-c",
                "user.email=test@sluice.dev",
            ])
            .args(["-c", "commit.gpgsign=false"]);
        git
    }

    /// Commits a change with `git` (configured for signing or not) and
    /// `git commit … SIGN`, and returns the commit id.
    fn commit_with(&self, mut git: Command, sign: &[&str]) -> String {
        static CHANGE: AtomicUsize = AtomicUsize::new(0);
        let change = CHANGE.fetch_add(1, Ordering::Relaxed);
        fs::write(
            self.path().join("sluice.yaml"),
            format!("change: {change}\n"),
        )
        .unwrap();
        run(self.git().args(["add", "-A"]));
        run(git.args(["commit", "-q", "-m", "policy change"]).args(sign));
        run(self.git().args(["rev-parse", "HEAD"]))
            .trim()
            .to_owned()
    }

    fn unsigned_commit(&self) -> String {
        self.commit_with(self.git(), &[])
    }

    fn ssh_commit(&self, key: &SshKey) -> String {
        let mut git = self.git();
        git.args(["-c", "gpg.format=ssh", "-c"])
            .arg(format!("user.signingkey={}", key.public_path.display()));
        self.commit_with(git, &["-S"])
    }

    fn gpg_commit(&self, gpg: &Gpg, fingerprint: &str) -> String {
        self.gpg_commit_with(gpg, fingerprint, Path::new("gpg"))
    }

    fn gpg_commit_with(&self, gpg: &Gpg, fingerprint: &str, program: &Path) -> String {
        let mut git = self.git();
        git.env("GNUPGHOME", gpg.home.path())
            .args(["-c", "gpg.format=openpgp", "-c"])
            .arg(format!("gpg.program={}", program.display()))
            .arg("-c")
            .arg(format!("user.signingkey={fingerprint}"));
        self.commit_with(git, &["-S"])
    }

    /// Writes a copy of commit `id` changed by `edit` (the raw object text)
    /// and returns the copy's id: how a forger would alter a signed commit.
    fn forge(&self, id: &str, edit: impl FnOnce(String) -> String) -> String {
        let raw = run(self.git().args(["cat-file", "commit", id]));
        let mut writer = self
            .git()
            .args(["hash-object", "-t", "commit", "-w", "--stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        writer
            .stdin
            .take()
            .unwrap()
            .write_all(edit(raw).as_bytes())
            .unwrap();
        let output = writer.wait_with_output().unwrap();
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// The commit's signature and the data it signs, as git2 reads them.
    fn signature(&self, id: &str) -> (Vec<u8>, Vec<u8>) {
        let repo = Repository::open(self.path()).unwrap();
        let (signature, data) = repo
            .extract_signature(&Oid::from_str(id).unwrap(), None)
            .unwrap();
        (signature.to_vec(), data.to_vec())
    }

    fn verify(&self, id: &str, keys: &TrustedKeys) -> Result<Signer, VerifyError> {
        verify_commit(self.path(), id, keys)
    }
}

/// An ed25519 key made by `ssh-keygen`.
struct SshKey {
    _dir: TempDir,
    public_path: PathBuf,
    /// `ssh-ed25519 AAAA… comment`
    public: String,
    /// `SHA256:…` as `ssh-keygen -l` prints it.
    fingerprint: String,
}

fn ssh_key(comment: &str) -> SshKey {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("key");
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(&private));
    let public_path = dir.path().join("key.pub");
    let public = fs::read_to_string(&public_path).unwrap().trim().to_owned();
    let listed = run(Command::new("ssh-keygen").arg("-lf").arg(&public_path));
    let fingerprint = listed.split_whitespace().nth(1).unwrap().to_owned();
    SshKey {
        _dir: dir,
        public_path,
        public,
        fingerprint,
    }
}

/// A throw-away GnuPG home; its agent is stopped when it is dropped.
struct Gpg {
    home: TempDir,
}

impl Gpg {
    fn new() -> Gpg {
        Gpg {
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn gpg(&self) -> Command {
        let mut gpg = Command::new("gpg");
        gpg.env("GNUPGHOME", self.home.path())
            .args(["--batch", "--quiet", "--no-tty"]);
        gpg
    }

    /// Generates a key for `uid` (`algorithm`, `usage` as `--quick-gen-key`
    /// takes them) and returns its fingerprint.
    fn generate(&self, uid: &str, algorithm: &str, usage: &str) -> String {
        run(self
            .gpg()
            .args(["--passphrase", "", "--quick-gen-key", uid, algorithm, usage])
            .arg("never"));
        let listed = run(self.gpg().args(["--with-colons", "--list-keys", uid]));
        listed
            .lines()
            .find_map(|line| line.strip_prefix("fpr:"))
            .and_then(|rest| rest.split(':').nth(8))
            .unwrap()
            .to_owned()
    }

    /// A key made and used on 1 January 2020 that expired a day later,
    /// and a gpg program for `gpg.program` that still lives on that day.
    fn generate_expired(&self, uid: &str) -> (String, PathBuf) {
        const THEN: &str = "20200101T120000!";
        run(self
            .gpg()
            .args(["--faked-system-time", THEN, "--passphrase", ""])
            .args(["--quick-gen-key", uid, "ed25519", "sign", "1d"]));
        let listed = run(self.gpg().args(["--with-colons", "--list-keys", uid]));
        let fingerprint = listed
            .lines()
            .find_map(|line| line.strip_prefix("fpr:"))
            .and_then(|rest| rest.split(':').nth(8))
            .unwrap()
            .to_owned();
        let program = self.home.path().join("gpg-2020");
        fs::write(
            &program,
            format!("#!/bin/sh\nexec gpg --faked-system-time {THEN} \"$@\"\n"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
        (fingerprint, program)
    }

    fn add_signing_subkey(&self, fingerprint: &str, algorithm: &str) {
        run(self
            .gpg()
            .args([
                "--passphrase",
                "",
                "--quick-add-key",
                fingerprint,
                algorithm,
            ])
            .args(["sign", "never"]));
    }

    /// The armoured public keys of `fingerprints`, in one block.
    fn export(&self, fingerprints: &[&str]) -> Vec<u8> {
        run(self.gpg().args(["--armor", "--export"]).args(fingerprints)).into_bytes()
    }

    /// Revokes the key with the certificate gpg made when generating it.
    fn revoke(&self, fingerprint: &str) {
        let certificate = self
            .home
            .path()
            .join(format!("openpgp-revocs.d/{fingerprint}.rev"));
        // NB: gpg guards the stored certificate with a leading ':'.
        let text = fs::read_to_string(certificate).unwrap().replace(
            ":-----BEGIN PGP PUBLIC KEY BLOCK-----",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----",
        );
        let armored = self.home.path().join("revocation.asc");
        fs::write(&armored, text).unwrap();
        run(self.gpg().arg("--import").arg(armored));
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

fn keys(format: SignatureFormat, sources: &[(&str, &[u8])]) -> TrustedKeys {
    TrustedKeys::parse(format, &sources_of(sources)).unwrap()
}

fn sources_of(sources: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
    sources
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_vec()))
        .collect()
}

fn parse_error(format: SignatureFormat, sources: &[(&str, &[u8])]) -> VerifyError {
    TrustedKeys::parse(format, &sources_of(sources)).unwrap_err()
}

/// The key part of `ssh-ed25519 AAAA… comment`.
fn without_comment(public: &str) -> String {
    public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A signed commit's raw object with its gpgsig header's last line of
/// base64 altered (a character well before the end, so real bits change).
fn flip_signature(raw: String) -> String {
    let end = raw.find("\n -----END").unwrap();
    let at = end - 8;
    let old = raw.as_bytes()[at];
    let new = if old == b'A' { "g" } else { "A" };
    let mut forged = raw;
    forged.replace_range(at..at + 1, new);
    forged
}

#[test]
fn an_ssh_signed_commit_verifies_with_its_key() {
    let repo = Repo::new();
    let signer = ssh_key("alice@laptop");
    let other = ssh_key("bob@laptop");
    let commit = repo.ssh_commit(&signer);

    let plain = keys(
        SignatureFormat::Ssh,
        &[
            ("bob.pub", other.public.as_bytes()),
            ("alice.pub", signer.public.as_bytes()),
        ],
    );
    assert_eq!(
        repo.verify(&commit, &plain).unwrap(),
        Signer {
            format: SignatureFormat::Ssh,
            fingerprint: signer.fingerprint.clone(),
            identity: "alice@laptop".into(),
            source_name: "alice.pub".into(),
        }
    );

    let allowed_signers = format!(
        "# release owners\n\n{}\nalice@example.com namespaces=\"file,gi?\" {}\n",
        other.public,
        without_comment(&signer.public)
    );
    let allowed = keys(
        SignatureFormat::Ssh,
        &[("allowed_signers", allowed_signers.as_bytes())],
    );
    let verified = repo.verify(&commit, &allowed).unwrap();
    assert_eq!(verified.identity, "alice@example.com");
    assert_eq!(verified.fingerprint, signer.fingerprint);
    assert_eq!(
        verified.to_string(),
        format!(
            "alice@example.com (SSH key {}, from Secret key `allowed_signers`)",
            signer.fingerprint
        )
    );
}

#[test]
fn an_ssh_signature_by_another_key_is_unknown() {
    let repo = Repo::new();
    let signer = ssh_key("mallory@laptop");
    let trusted = ssh_key("alice@laptop");
    let commit = repo.ssh_commit(&signer);
    // A key allowed for other namespaces only is no key for git either.
    let allowed_signers = format!(
        "alice@example.com {}\nmallory@example.com namespaces=\"file,!git\" {}\n",
        trusted.public, signer.public
    );
    let keys = keys(
        SignatureFormat::Ssh,
        &[("allowed_signers", allowed_signers.as_bytes())],
    );
    let error = repo.verify(&commit, &keys).unwrap_err();
    let VerifyError::UnknownKey {
        commit: shown,
        fingerprint,
    } = &error
    else {
        panic!("expected UnknownKey, got {error:?}");
    };
    assert_eq!(shown, &commit[..12]);
    assert_eq!(fingerprint, &format!("the SSH key {}", signer.fingerprint));
    assert_eq!(
        error.to_string(),
        format!(
            "commit {} is signed by the SSH key {}, which is none of the trusted keys",
            &commit[..12],
            signer.fingerprint
        )
    );
}

#[test]
fn an_unsigned_or_missing_commit_is_refused() {
    let repo = Repo::new();
    let key = ssh_key("alice@laptop");
    let keys = keys(
        SignatureFormat::Ssh,
        &[("alice.pub", key.public.as_bytes())],
    );
    let commit = repo.unsigned_commit();
    let error = repo.verify(&commit, &keys).unwrap_err();
    assert!(matches!(error, VerifyError::Unsigned { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "commit {} is not signed (it has no gpgsig header)",
            &commit[..12]
        )
    );

    let missing = "0123456789abcdef0123456789abcdef01234567";
    let error = repo.verify(missing, &keys).unwrap_err();
    assert!(
        matches!(&error, VerifyError::Git { message, .. } if message.contains("no such object")),
        "{error:?}"
    );
    let error = repo.verify("HEAD", &keys).unwrap_err();
    assert!(matches!(error, VerifyError::Git { .. }), "{error:?}");
}

#[test]
fn a_tampered_ssh_commit_or_signature_is_refused() {
    let repo = Repo::new();
    let key = ssh_key("alice@laptop");
    let keys = keys(
        SignatureFormat::Ssh,
        &[("alice.pub", key.public.as_bytes())],
    );
    let commit = repo.ssh_commit(&key);
    repo.verify(&commit, &keys).unwrap();

    let reworded = repo.forge(&commit, |raw| raw.replace("policy change", "policy chance"));
    let error = repo.verify(&reworded, &keys).unwrap_err();
    assert!(
        matches!(&error, VerifyError::BadSignature { reason, .. } if reason.contains(&key.fingerprint)),
        "{error:?}"
    );

    let flipped = repo.forge(&commit, flip_signature);
    let error = repo.verify(&flipped, &keys).unwrap_err();
    assert!(
        matches!(error, VerifyError::BadSignature { .. }),
        "{error:?}"
    );
}

#[test]
fn an_ssh_signature_for_another_namespace_is_refused() {
    let repo = Repo::new();
    let key = ssh_key("alice@laptop");
    let keys = keys(
        SignatureFormat::Ssh,
        &[("alice.pub", key.public.as_bytes())],
    );
    let commit = repo.unsigned_commit();
    // Sign the very commit object, but as a `file` signature.
    let raw = run(repo.git().args(["cat-file", "commit", &commit]));
    let message = repo.path().join("commit.txt");
    fs::write(&message, &raw).unwrap();
    run(Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "file", "-f"])
        .arg(&key.public_path)
        .arg(&message));
    let signature = fs::read_to_string(repo.path().join("commit.txt.sig")).unwrap();
    let header = format!("gpgsig {}", signature.trim_end().replace('\n', "\n "));
    let forged = repo.forge(&commit, |raw| {
        let (headers, body) = raw.split_once("\n\n").unwrap();
        format!("{headers}\n{header}\n\n{body}")
    });
    let error = repo.verify(&forged, &keys).unwrap_err();
    assert!(
        matches!(&error, VerifyError::BadSignature { reason, .. } if reason.contains("namespace `file`")),
        "{error:?}"
    );
}

#[test]
fn a_signature_of_the_other_format_is_refused() {
    let repo = Repo::new();
    let gpg = Gpg::new();
    let fingerprint = gpg.generate("Test <t@example.com>", "ed25519", "sign");
    let ssh = ssh_key("alice@laptop");
    let pgp_commit = repo.gpg_commit(&gpg, &fingerprint);
    let ssh_commit = repo.ssh_commit(&ssh);
    let ssh_keys = keys(
        SignatureFormat::Ssh,
        &[("alice.pub", ssh.public.as_bytes())],
    );
    let pgp_keys = keys(
        SignatureFormat::OpenPgp,
        &[("test.asc", &gpg.export(&[&fingerprint]))],
    );

    let error = repo.verify(&pgp_commit, &ssh_keys).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "commit {} carries an OpenPGP signature, and the repository is verified with SSH keys",
            &pgp_commit[..12]
        )
    );
    let error = repo.verify(&ssh_commit, &pgp_keys).unwrap_err();
    assert!(
        matches!(
            &error,
            VerifyError::WrongFormat { expected: SignatureFormat::OpenPgp, found, .. } if found == "an SSH"
        ),
        "{error:?}"
    );
}

#[test]
fn an_openpgp_signed_commit_verifies_with_its_key() {
    let repo = Repo::new();
    let gpg = Gpg::new();
    let fingerprint = gpg.generate("Test <t@example.com>", "ed25519", "sign");
    let commit = repo.gpg_commit(&gpg, &fingerprint);
    let keys = keys(
        SignatureFormat::OpenPgp,
        &[("test.asc", &gpg.export(&[&fingerprint]))],
    );
    assert_eq!(
        repo.verify(&commit, &keys).unwrap(),
        Signer {
            format: SignatureFormat::OpenPgp,
            fingerprint,
            identity: "Test <t@example.com>".into(),
            source_name: "test.asc".into(),
        }
    );

    let unsigned = repo.unsigned_commit();
    assert!(matches!(
        repo.verify(&unsigned, &keys),
        Err(VerifyError::Unsigned { .. })
    ));
    let reworded = repo.forge(&commit, |raw| raw.replace("policy change", "policy chance"));
    let error = repo.verify(&reworded, &keys).unwrap_err();
    assert!(
        matches!(error, VerifyError::BadSignature { .. }),
        "{error:?}"
    );
}

#[test]
fn an_openpgp_signing_subkey_verifies_for_its_primary_key() {
    let repo = Repo::new();
    let gpg = Gpg::new();
    let release = gpg.generate("Release <release@example.com>", "rsa2048", "cert");
    gpg.add_signing_subkey(&release, "rsa2048");
    let other = gpg.generate("Other <other@example.com>", "ed25519", "sign");
    let commit = repo.gpg_commit(&gpg, &release);
    // One armoured keyring with both keys, beside a second block.
    let mut keyring = gpg.export(&[&other, &release]);
    keyring.extend_from_slice(b"\n");
    keyring.extend(gpg.export(&[&other]));
    let keys = keys(SignatureFormat::OpenPgp, &[("keyring.asc", &keyring)]);
    let signer = repo.verify(&commit, &keys).unwrap();
    assert_eq!(signer.fingerprint, release);
    assert_eq!(signer.identity, "Release <release@example.com>");
}

#[test]
fn an_openpgp_signature_by_another_or_a_revoked_key_is_refused() {
    let repo = Repo::new();
    let gpg = Gpg::new();
    let signer = gpg.generate("Mallory <m@example.com>", "ed25519", "sign");
    let trusted = gpg.generate("Alice <a@example.com>", "ed25519", "sign");
    let commit = repo.gpg_commit(&gpg, &signer);
    let keys_of = |fingerprint: &str| {
        keys(
            SignatureFormat::OpenPgp,
            &[("alice.asc", &gpg.export(&[fingerprint]))],
        )
    };

    let error = repo.verify(&commit, &keys_of(&trusted)).unwrap_err();
    assert!(
        matches!(&error, VerifyError::UnknownKey { fingerprint, .. } if fingerprint == &format!("the OpenPGP key {signer}")),
        "{error:?}"
    );

    gpg.revoke(&signer);
    let error = repo.verify(&commit, &keys_of(&signer)).unwrap_err();
    assert!(
        matches!(&error, VerifyError::BadSignature { reason, .. } if reason.contains("revoked")),
        "{error:?}"
    );
}

#[test]
fn an_openpgp_signature_by_an_expired_key_is_refused() {
    let repo = Repo::new();
    let gpg = Gpg::new();
    let (fingerprint, program) = gpg.generate_expired("Old <old@example.com>");
    let commit = repo.gpg_commit_with(&gpg, &fingerprint, &program);
    let keys = keys(
        SignatureFormat::OpenPgp,
        &[("old.asc", &gpg.export(&[&fingerprint]))],
    );
    let error = repo.verify(&commit, &keys).unwrap_err();
    assert!(
        matches!(&error, VerifyError::BadSignature { reason, .. } if reason.contains("expired")),
        "{error:?}"
    );
}

#[test]
fn key_errors_name_the_secret_key_and_the_fault() {
    use SignatureFormat::{OpenPgp, Ssh};
    let key = ssh_key("alice@laptop");
    let cases: Vec<(SignatureFormat, &[u8], &str)> = vec![
        (Ssh, b"ssh-ed25519 not-base64 alice", "line 1: not a valid ssh-ed25519 public key"),
        (Ssh, b"# only a comment\n\n", "holds no SSH public key that may sign git commits"),
        (Ssh, b"alice@example.com\n", "line 1: no SSH key type"),
        (Ssh, b"\xff\xfe", "is not text"),
        (Ssh, b"alice@example.com namespaces=\"git ssh-ed25519 AAAA", "a double quote is not closed"),
        (OpenPgp, b"hello", "not an OpenPGP public key: expected an ASCII-armoured block"),
        (
            OpenPgp,
            b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot base64 at all\n-----END PGP PUBLIC KEY BLOCK-----\n",
            "not a readable OpenPGP public key",
        ),
        (OpenPgp, b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQ", "has no `-----END PGP PUBLIC KEY BLOCK-----` line"),
        (
            OpenPgp,
            b"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQ==\n-----END PGP PRIVATE KEY BLOCK-----\n",
            "holds an OpenPGP private key",
        ),
        (OpenPgp, b"\x99\x00\x01", "not a readable OpenPGP public key"),
    ];
    for (format, value, expected) in cases {
        let error = match format {
            // A good key beside the bad one changes nothing.
            Ssh => parse_error(format, &[("good", key.public.as_bytes()), ("team", value)]),
            OpenPgp => parse_error(format, &[("team", value)]),
        };
        let VerifyError::BadKey {
            source_name,
            reason,
        } = &error
        else {
            panic!("{value:?}: expected BadKey, got {error:?}");
        };
        assert_eq!(source_name, "team", "{error}");
        assert!(reason.contains(expected), "{value:?}: {reason}");
        assert!(
            error.to_string().starts_with("Secret key `team`: "),
            "{error}"
        );
    }

    for (options, expected) in [
        (
            "cert-authority",
            "cert-authority (SSH certificates) is not supported",
        ),
        (
            "valid-before=\"20300101\"",
            "the option valid-before is not supported",
        ),
        ("no-touch-required", "unknown option `no-touch-required`"),
    ] {
        let line = format!("alice@example.com {options} {}", key.public);
        let error = parse_error(Ssh, &[("team", line.as_bytes())]);
        assert!(error.to_string().contains(expected), "{error}");
    }

    let huge = vec![b'#'; MAX_KEY_SOURCE_BYTES + 1];
    let error = parse_error(Ssh, &[("huge", &huge)]);
    assert!(
        matches!(&error, VerifyError::BadKey { source_name, .. } if source_name == "huge"),
        "{error:?}"
    );
    let error = parse_error(OpenPgp, &[]);
    assert_eq!(
        error.to_string(),
        "the verification Secret holds no OpenPGP public key"
    );
}

#[test]
fn hostile_signatures_are_refused_without_panicking() {
    let repo = Repo::new();
    let gpg = Gpg::new();
    let fingerprint = gpg.generate("Test <t@example.com>", "ed25519", "sign");
    let ssh = ssh_key("alice@laptop");
    let cases = [
        (
            repo.gpg_commit(&gpg, &fingerprint),
            keys(
                SignatureFormat::OpenPgp,
                &[("test.asc", &gpg.export(&[&fingerprint]))],
            ),
        ),
        (
            repo.ssh_commit(&ssh),
            keys(
                SignatureFormat::Ssh,
                &[("alice.pub", ssh.public.as_bytes())],
            ),
        ),
    ];
    for (commit, keys) in &cases {
        let (signature, data) = repo.signature(commit);
        keys.verify(commit, &signature, &data).unwrap();
        let armour_end = signature.windows(8).position(|w| w == b"-----END").unwrap();

        // Cut short anywhere before the closing line: never valid.
        for cut in 0..armour_end {
            assert!(
                keys.verify(commit, &signature[..cut], &data).is_err(),
                "{} bytes of the signature verified",
                cut
            );
        }
        // Any byte changed: whatever the answer, no panic; a changed byte of
        // the armour's header or base64 body never verifies.
        for at in 0..signature.len() {
            for replacement in [b'A', b'/', b'-', b'\n', 0xff] {
                let mut changed = signature.clone();
                if changed[at] == replacement {
                    continue;
                }
                changed[at] = replacement;
                let _ = keys.verify(commit, &changed, &data);
            }
        }
        // Garbage inside a well-formed armour.
        let header = &signature[..signature.iter().position(|b| *b == b'\n').unwrap()];
        let footer = &signature[armour_end..];
        for body in [&b"!!!!"[..], b"AAAA", b"", &[b'A'; 60_000]] {
            let garbage = [header, b"\n\n", body, b"\n", footer].concat();
            let error = keys.verify(commit, &garbage, &data).unwrap_err();
            assert!(
                matches!(error, VerifyError::BadSignature { .. }),
                "{error:?}"
            );
        }
        // More than Sluice reads.
        let mut huge = signature.clone();
        huge.resize(MAX_SIGNATURE_BYTES + 1, b'A');
        let error = keys.verify(commit, &huge, &data).unwrap_err();
        assert!(
            matches!(&error, VerifyError::BadSignature { reason, .. } if reason.contains("more than")),
            "{error:?}"
        );
    }
}
