//! SSH signatures (`gpg.format=ssh`): an armoured SSHSIG over the commit in
//! the namespace `git`, by one of the keys of an allowed-signers list.

use super::{SignatureFormat, Signer, VerifyError};
use ssh_key::{HashAlg, PublicKey, SshSig};

/// The namespace git signs commits in.
const NAMESPACE: &str = "git";

/// The trusted SSH keys.
#[derive(Debug)]
pub(super) struct AllowedSigners {
    keys: Vec<Allowed>,
}

#[derive(Debug)]
struct Allowed {
    key: PublicKey,
    /// The principal of an allowed-signers line, else the key's comment.
    identity: String,
    source_name: String,
}

impl AllowedSigners {
    pub(super) fn parse(sources: &[(String, Vec<u8>)]) -> Result<Self, VerifyError> {
        let mut keys = Vec::new();
        for (name, value) in sources {
            let bad = |reason: String| VerifyError::BadKey {
                source_name: name.clone(),
                reason,
            };
            let text = std::str::from_utf8(value)
                .map_err(|_| bad("is not text; expected SSH public keys, one a line".into()))?;
            let before = keys.len();
            for (number, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                match parse_line(line) {
                    Ok(Some((key, identity))) => keys.push(Allowed {
                        key,
                        identity,
                        source_name: name.clone(),
                    }),
                    // NB: a key restricted to other namespaces is not for git.
                    Ok(None) => {}
                    Err(reason) => return Err(bad(format!("line {}: {reason}", number + 1))),
                }
            }
            if keys.len() == before {
                return Err(bad("holds no SSH public key that may sign git commits \
                     (expected lines like `ssh-ed25519 AAAA… comment`)"
                    .into()));
            }
        }
        Ok(AllowedSigners { keys })
    }

    pub(super) fn verify(
        &self,
        commit: &str,
        armored: &[u8],
        signed_data: &[u8],
    ) -> Result<Signer, VerifyError> {
        let bad = |reason: String| VerifyError::BadSignature {
            commit: commit.to_owned(),
            reason,
        };
        let signature = SshSig::from_pem(armored)
            .map_err(|e| bad(format!("it is not a readable SSH signature ({e})")))?;
        if signature.namespace() != NAMESPACE {
            return Err(bad(format!(
                "it was made for the namespace `{}`, not `{NAMESPACE}`",
                signature.namespace()
            )));
        }
        let fingerprint = signature.public_key().fingerprint(HashAlg::Sha256);
        let Some(allowed) = self
            .keys
            .iter()
            .find(|allowed| allowed.key.key_data() == signature.public_key())
        else {
            return Err(VerifyError::UnknownKey {
                commit: commit.to_owned(),
                fingerprint: format!("the SSH key {fingerprint}"),
            });
        };
        allowed
            .key
            .verify(NAMESPACE, signed_data, &signature)
            .map_err(|e| {
                bad(format!(
                    "it does not match the commit for the SSH key {fingerprint} ({e})"
                ))
            })?;
        Ok(Signer {
            format: SignatureFormat::Ssh,
            fingerprint: fingerprint.to_string(),
            identity: allowed.identity.clone(),
            source_name: allowed.source_name.clone(),
        })
    }
}

/// One line: `keytype base64 [comment]`, or allowed-signers style
/// `principals [options] keytype base64 [comment]`. `None` for a key whose
/// `namespaces` option leaves out `git`.
fn parse_line(line: &str) -> Result<Option<(PublicKey, String)>, String> {
    let fields = split_fields(line)?;
    let (principal, options, key_fields) = match fields.as_slice() {
        [first, ..] if is_key_type(first) => (None, None, &fields[..]),
        [principal, second, ..] if is_key_type(second) => (Some(principal), None, &fields[1..]),
        [principal, options, third, ..] if is_key_type(third) => {
            (Some(principal), Some(options), &fields[2..])
        }
        _ => {
            return Err(
                "no SSH key type (ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa, …) where one was expected"
                    .into(),
            );
        }
    };
    if let Some(options) = options
        && !git_allowed(options)?
    {
        return Ok(None);
    }
    let [key_type, base64, ..] = key_fields else {
        return Err(format!("`{}` is not followed by a key", key_fields[0]));
    };
    if key_type.contains("-cert-") {
        return Err("SSH certificates are not supported; put the signer's public key".into());
    }
    let key = PublicKey::from_openssh(&format!("{key_type} {base64}"))
        .map_err(|e| format!("not a valid {key_type} public key ({e})"))?;
    let identity = match principal {
        Some(principal) => principal.clone(),
        None => key_fields[2..].join(" "),
    };
    Ok(Some((key, identity)))
}

/// Whether the allowed-signers `options` let the key sign in `git`. Options
/// Sluice cannot honour are refused rather than ignored.
fn git_allowed(options: &str) -> Result<bool, String> {
    let mut allowed = true;
    for option in split_outside_quotes(options, ',') {
        let (name, value) = option.split_once('=').unwrap_or((option, ""));
        match name.to_ascii_lowercase().as_str() {
            "namespaces" => {
                let patterns = value.trim_matches('"');
                allowed = pattern_list_matches(patterns, NAMESPACE);
            }
            "cert-authority" => {
                return Err("cert-authority (SSH certificates) is not supported".into());
            }
            "valid-after" | "valid-before" => {
                return Err(format!(
                    "the option {name} is not supported; remove the key from the Secret when it must no longer be trusted"
                ));
            }
            _ => return Err(format!("unknown option `{name}`")),
        }
    }
    Ok(allowed)
}

fn is_key_type(field: &str) -> bool {
    ["ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-"]
        .iter()
        .any(|prefix| field.starts_with(prefix))
}

/// The whitespace-separated fields of a line; double quotes keep spaces.
fn split_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                field.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !field.is_empty() {
                    fields.push(std::mem::take(&mut field));
                }
            }
            c => field.push(c),
        }
    }
    if quoted {
        return Err("a double quote is not closed".into());
    }
    if !field.is_empty() {
        fields.push(field);
    }
    Ok(fields)
}

fn split_outside_quotes(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == separator && !quoted {
            parts.push(&text[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&text[start..]);
    parts
}

/// OpenSSH pattern-list matching: `a,b*,!c` matches when some pattern
/// matches and no negated (`!`) one does.
fn pattern_list_matches(list: &str, text: &str) -> bool {
    let mut matched = false;
    for pattern in list.split(',').map(str::trim) {
        match pattern.strip_prefix('!') {
            Some(negated) if wildcard(negated, text) => return false,
            Some(_) => {}
            None => matched |= wildcard(pattern, text),
        }
    }
    matched
}

/// `*` stands for any run of characters, `?` for any one.
fn wildcard(pattern: &str, text: &str) -> bool {
    fn matches(pattern: &[char], text: &[char]) -> bool {
        match (pattern.first(), text.first()) {
            (None, None) => true,
            (Some('*'), _) => {
                matches(&pattern[1..], text) || (!text.is_empty() && matches(pattern, &text[1..]))
            }
            (Some('?'), Some(_)) => matches(&pattern[1..], &text[1..]),
            (Some(p), Some(t)) if p == t => matches(&pattern[1..], &text[1..]),
            _ => false,
        }
    }
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    matches(&pattern, &text)
}
