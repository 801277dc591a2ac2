//! OpenPGP signatures (`gpg.format=openpgp`): a detached signature over the
//! commit by a trusted key, or by one of its signing subkeys.
//!
//! A key is read the way gpg reads it: only self-signatures that verify
//! count; the newest one gives the key's flags and expiry; a subkey signs
//! only with a valid binding that flags it for signing and carries the
//! subkey's back-signature. Revoked and expired keys are kept, so that a
//! signature by one is refused with that reason rather than as unknown.

use super::{SignatureFormat, Signer, VerifyError};
use pgp::{
    composed::{Deserializable, DetachedSignature, SignedPublicKey, SignedPublicSubKey},
    crypto::hash::HashAlgorithm,
    packet::{PublicKey, PublicSubkey, Signature, SignatureType, SubpacketData},
    types::{KeyDetails, Tag},
};
use std::io::Cursor;

/// Signature packets read from one commit signature; git writes one.
const MAX_SIGNATURES: usize = 8;

const PUBLIC_BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
const PUBLIC_END: &str = "-----END PGP PUBLIC KEY BLOCK-----";
const PRIVATE_BEGIN: &str = "-----BEGIN PGP PRIVATE KEY BLOCK-----";

/// The trusted keys and signing subkeys.
#[derive(Debug)]
pub(super) struct Keyring {
    keys: Vec<SigningKey>,
}

/// A key or subkey that may sign data.
#[derive(Debug)]
struct SigningKey {
    key: Key,
    /// The fingerprint of this (sub)key, upper-case hex.
    fingerprint: String,
    /// The primary key's fingerprint, upper-case hex.
    primary: String,
    identity: String,
    source_name: String,
    /// Seconds since the epoch after which the key no longer signs.
    expires_at: Option<u64>,
    revoked: bool,
}

#[derive(Debug)]
enum Key {
    Primary(PublicKey),
    Subkey(PublicSubkey),
}

impl Keyring {
    pub(super) fn parse(sources: &[(String, Vec<u8>)]) -> Result<Self, VerifyError> {
        let mut keys = Vec::new();
        for (name, value) in sources {
            let bad = |reason: String| VerifyError::BadKey {
                source_name: name.clone(),
                reason,
            };
            let certificates = read_certificates(value).map_err(bad)?;
            for certificate in &certificates {
                keys.extend(signing_keys(certificate, name).map_err(bad)?);
            }
        }
        Ok(Keyring { keys })
    }

    pub(super) fn verify(
        &self,
        commit: &str,
        armored: &[u8],
        signed_data: &[u8],
        now: u64,
    ) -> Result<Signer, VerifyError> {
        let bad = |reason: String| VerifyError::BadSignature {
            commit: commit.to_owned(),
            reason,
        };
        let (signatures, _) = DetachedSignature::from_armor_many(armored)
            .map_err(|e| bad(format!("it is not a readable OpenPGP signature ({e})")))?;
        let signatures = signatures
            .take(MAX_SIGNATURES + 1)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("it is not a readable OpenPGP signature ({e})")))?;
        if signatures.is_empty() {
            return Err(bad("it holds no OpenPGP signature packet".into()));
        }
        if signatures.len() > MAX_SIGNATURES {
            return Err(bad(format!(
                "it holds more than {MAX_SIGNATURES} signature packets"
            )));
        }
        let mut refusal = None;
        for signature in &signatures {
            match self.verify_one(commit, &signature.signature, signed_data, now) {
                Ok(signer) => return Ok(signer),
                Err(e) => {
                    refusal.get_or_insert(e);
                }
            }
        }
        Err(refusal.unwrap_or_else(|| bad("it holds no OpenPGP signature packet".into())))
    }

    fn verify_one(
        &self,
        commit: &str,
        signature: &Signature,
        signed_data: &[u8],
        now: u64,
    ) -> Result<Signer, VerifyError> {
        let bad = |reason: String| VerifyError::BadSignature {
            commit: commit.to_owned(),
            reason,
        };
        match signature.typ() {
            Some(SignatureType::Binary | SignatureType::Text) => {}
            other => {
                return Err(bad(format!(
                    "it is a {other:?} signature, not a signature over data"
                )));
            }
        }
        match signature.hash_alg() {
            Some(
                hash @ (HashAlgorithm::None
                | HashAlgorithm::Md5
                | HashAlgorithm::Sha1
                | HashAlgorithm::Ripemd160),
            ) => return Err(bad(format!("it uses the weak hash {hash}"))),
            Some(_) => {}
            None => return Err(bad("it is of an unsupported signature version".into())),
        }
        let candidates: Vec<&SigningKey> = self
            .keys
            .iter()
            .filter(|key| issued_by(signature, key))
            .collect();
        if candidates.is_empty() {
            return Err(VerifyError::UnknownKey {
                commit: commit.to_owned(),
                fingerprint: issuer(signature),
            });
        }
        let mut failure = None;
        for key in candidates {
            let valid = match &key.key {
                Key::Primary(k) => signature.verify(k, Cursor::new(signed_data)),
                Key::Subkey(k) => signature.verify(k, Cursor::new(signed_data)),
            };
            if let Err(e) = valid {
                failure.get_or_insert_with(|| {
                    bad(format!(
                        "it does not match the commit for the OpenPGP key {} ({e})",
                        key.fingerprint
                    ))
                });
                continue;
            }
            if key.revoked {
                return Err(bad(format!(
                    "it was made by the OpenPGP key {}, which is revoked",
                    key.fingerprint
                )));
            }
            if let Some(expired) = key.expires_at.filter(|at| *at <= now) {
                return Err(bad(format!(
                    "it was made by the OpenPGP key {}, which expired at {expired} (seconds since 1970)",
                    key.fingerprint
                )));
            }
            if let (Some(created), Some(lifetime)) =
                (signature.created(), signature.signature_expiration_time())
                && lifetime.as_secs() != 0
                && u64::from(created.as_secs()) + u64::from(lifetime.as_secs()) <= now
            {
                return Err(bad("the signature has expired".into()));
            }
            return Ok(Signer {
                format: SignatureFormat::OpenPgp,
                fingerprint: key.primary.clone(),
                identity: key.identity.clone(),
                source_name: key.source_name.clone(),
            });
        }
        Err(failure.unwrap_or_else(|| bad("no trusted key verifies it".into())))
    }
}

/// The public keys (certificates) in one Secret value: armoured blocks,
/// as many as it holds, or binary packets.
fn read_certificates(value: &[u8]) -> Result<Vec<SignedPublicKey>, String> {
    let mut certificates = Vec::new();
    match std::str::from_utf8(value) {
        Ok(text) if text.contains(PUBLIC_BEGIN) => {
            let mut rest = text;
            while let Some(start) = rest.find(PUBLIC_BEGIN) {
                let block = &rest[start..];
                let end = block
                    .find(PUBLIC_END)
                    .map(|end| end + PUBLIC_END.len())
                    .ok_or_else(|| format!("a public key block has no `{PUBLIC_END}` line"))?;
                let (parsed, _) = SignedPublicKey::from_armor_many(&block.as_bytes()[..end])
                    .map_err(|e| format!("not a readable OpenPGP public key ({e})"))?;
                for certificate in parsed {
                    certificates.push(
                        certificate
                            .map_err(|e| format!("not a readable OpenPGP public key ({e})"))?,
                    );
                }
                rest = &block[end..];
            }
        }
        Ok(text) if text.contains(PRIVATE_BEGIN) => {
            return Err(
                "holds an OpenPGP private key; put only public keys in the Secret (gpg --armor --export KEY)"
                    .into(),
            );
        }
        _ if value.first().is_some_and(|b| b & 0x80 != 0) => {
            let parsed = SignedPublicKey::from_bytes_many(Cursor::new(value))
                .map_err(|e| format!("not a readable OpenPGP public key ({e})"))?;
            for certificate in parsed {
                certificates.push(
                    certificate.map_err(|e| format!("not a readable OpenPGP public key ({e})"))?,
                );
            }
        }
        _ => {
            return Err(format!(
                "not an OpenPGP public key: expected an ASCII-armoured block starting with `{PUBLIC_BEGIN}`"
            ));
        }
    }
    if certificates.is_empty() {
        return Err("holds no OpenPGP public key".into());
    }
    Ok(certificates)
}

/// The keys of `certificate` that may sign data; an error when it has none.
fn signing_keys(
    certificate: &SignedPublicKey,
    source_name: &str,
) -> Result<Vec<SigningKey>, String> {
    let primary = &certificate.primary_key;
    let primary_fingerprint = hex(primary);
    let details = &certificate.details;
    // Self-signatures that verify, with the user id they bind (if any).
    let mut bindings: Vec<(&Signature, Option<String>)> = Vec::new();
    for user in &details.users {
        for signature in user.signatures.iter().filter(|s| issued_by_key(s, primary)) {
            if signature
                .verify_certification(primary, Tag::UserId, &user.id)
                .is_ok()
            {
                let id = String::from_utf8_lossy(user.id.id()).into_owned();
                bindings.push((signature, Some(id)));
            }
        }
    }
    for signature in &details.direct_signatures {
        if signature.verify_key(primary).is_ok() {
            bindings.push((signature, None));
        }
    }
    let Some((binding, _)) = bindings
        .iter()
        .max_by_key(|(s, _)| (s.is_primary(), created(s)))
    else {
        return Err(format!(
            "the OpenPGP key {primary_fingerprint} has no valid self-signature"
        ));
    };
    let identity = bindings
        .iter()
        .filter(|(_, id)| id.is_some())
        .max_by_key(|(s, _)| (s.is_primary(), created(s)))
        .and_then(|(_, id)| id.clone())
        .unwrap_or_default();
    let revoked = details
        .revocation_signatures
        .iter()
        .any(|s| s.verify_key(primary).is_ok());
    let expires_at = expiry(u64::from(primary.created_at().as_secs()), binding);

    let mut keys = Vec::new();
    let signing_key = |key: Key, fingerprint: String, expires_at, revoked| SigningKey {
        key,
        fingerprint,
        primary: primary_fingerprint.clone(),
        identity: identity.clone(),
        source_name: source_name.to_owned(),
        expires_at,
        revoked,
    };
    if !has_key_flags(binding) || binding.key_flags().sign() {
        keys.push(signing_key(
            Key::Primary(primary.clone()),
            primary_fingerprint.clone(),
            expires_at,
            revoked,
        ));
    }
    for subkey in &certificate.public_subkeys {
        if let Some((fingerprint, sub_expires_at, sub_revoked)) = signing_subkey(primary, subkey) {
            keys.push(signing_key(
                Key::Subkey(subkey.key.clone()),
                fingerprint,
                earliest(expires_at, sub_expires_at),
                revoked || sub_revoked,
            ));
        }
    }
    if keys.is_empty() {
        return Err(format!(
            "the OpenPGP key {primary_fingerprint} ({identity}) has no key or subkey that may sign"
        ));
    }
    Ok(keys)
}

/// A subkey that may sign: (fingerprint, expiry, revoked).
fn signing_subkey(
    primary: &PublicKey,
    subkey: &SignedPublicSubKey,
) -> Option<(String, Option<u64>, bool)> {
    let valid = |typ: SignatureType| {
        subkey.signatures.iter().filter(move |s| {
            s.typ() == Some(typ)
                && issued_by_key(s, primary)
                && s.verify_subkey_binding(primary, &subkey.key).is_ok()
        })
    };
    let binding = valid(SignatureType::SubkeyBinding).max_by_key(|s| created(s))?;
    if !binding.key_flags().sign() {
        return None;
    }
    // NB: the back-signature proves the subkey's owner agreed to the binding;
    // without it anyone could bind a victim's signing key to their own key.
    let back = binding.embedded_signature()?;
    back.verify_primary_key_binding(&subkey.key, primary).ok()?;
    let revoked = valid(SignatureType::SubkeyRevocation).next().is_some();
    let expires_at = expiry(u64::from(subkey.key.created_at().as_secs()), binding);
    Some((hex(&subkey.key), expires_at, revoked))
}

/// Whether `signature` names `key` as its issuer (or names no issuer).
fn issued_by(signature: &Signature, key: &SigningKey) -> bool {
    match &key.key {
        Key::Primary(k) => issued_by_key(signature, k),
        Key::Subkey(k) => issued_by_key(signature, k),
    }
}

fn issued_by_key(signature: &Signature, key: &impl KeyDetails) -> bool {
    let ids = signature.issuer_key_id();
    let fingerprints = signature.issuer_fingerprint();
    (ids.is_empty() && fingerprints.is_empty())
        || ids.iter().any(|id| **id == key.legacy_key_id())
        || fingerprints.iter().any(|fp| **fp == key.fingerprint())
}

/// The issuer a signature names, for [`VerifyError::UnknownKey`].
fn issuer(signature: &Signature) -> String {
    if let Some(fingerprint) = signature.issuer_fingerprint().first() {
        format!("the OpenPGP key {fingerprint:X}")
    } else if let Some(id) = signature.issuer_key_id().first() {
        format!("the OpenPGP key id {}", id.to_string().to_uppercase())
    } else {
        "an OpenPGP key it does not name".into()
    }
}

fn hex(key: &impl KeyDetails) -> String {
    format!("{:X}", key.fingerprint())
}

fn created(signature: &Signature) -> u32 {
    signature.created().map(|t| t.as_secs()).unwrap_or(0)
}

/// When a key created at `created` expires, by its binding signature.
fn expiry(created: u64, binding: &Signature) -> Option<u64> {
    binding
        .key_expiration_time()
        .filter(|lifetime| lifetime.as_secs() != 0)
        .map(|lifetime| created + u64::from(lifetime.as_secs()))
}

fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether the signature states key flags at all (old keys may not: then
/// the primary key signs).
fn has_key_flags(signature: &Signature) -> bool {
    signature.config().is_some_and(|config| {
        config
            .hashed_subpackets()
            .any(|p| matches!(p.data, SubpacketData::KeyFlags(_)))
    })
}
