//! Commit signature verification (a commit's signature header is written
//! by whoever pushed it). Byte 0 picks SSH or OpenPGP and whether the
//! signed data is the genuine commit's or one with a byte changed; the
//! rest is the signature. Properties: no panic, bounded time; the genuine
//! signatures (fixtures/, and seeds of the corpus) verify; nothing verifies
//! over data its signature was not made for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::source::verify::{SignatureFormat, TrustedKeys};
use std::sync::OnceLock;

struct Keys {
    ssh: TrustedKeys,
    openpgp: TrustedKeys,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let of = |format, name: &str, key: &[u8]| {
            TrustedKeys::parse(format, &[(name.to_owned(), key.to_vec())]).unwrap()
        };
        let keys = Keys {
            ssh: of(
                SignatureFormat::Ssh,
                "ssh.pub",
                include_bytes!("../fixtures/ssh.pub"),
            ),
            openpgp: of(
                SignatureFormat::OpenPgp,
                "openpgp.asc",
                include_bytes!("../fixtures/openpgp.asc"),
            ),
        };
        // The harness checks what it claims: the fixtures verify.
        keys.ssh
            .verify(COMMIT, include_bytes!("../fixtures/ssh.sig"), SSH_SIGNED)
            .unwrap();
        keys.openpgp
            .verify(
                COMMIT,
                include_bytes!("../fixtures/openpgp.sig"),
                OPENPGP_SIGNED,
            )
            .unwrap();
        keys
    })
}

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const SSH_SIGNED: &[u8] = include_bytes!("../fixtures/ssh.signed");
const OPENPGP_SIGNED: &[u8] = include_bytes!("../fixtures/openpgp.signed");

fuzz_target!(|data: &[u8]| {
    let Some((&mode, signature)) = data.split_first() else {
        return;
    };
    let keys = keys();
    let (keys, signed) = if mode % 2 == 0 {
        (&keys.ssh, SSH_SIGNED)
    } else {
        (&keys.openpgp, OPENPGP_SIGNED)
    };
    let mut signed = signed.to_vec();
    let tampered = mode & 2 != 0;
    if tampered {
        let at = (mode as usize >> 2) % signed.len();
        signed[at] ^= 0x01;
    }
    let verified = keys.verify(COMMIT, signature, &signed);
    if tampered {
        assert!(verified.is_err(), "a signature verified over changed data");
    }
    if let Err(e) = verified {
        let _ = e.to_string();
    }
});
