//! The LiteLLM driver's writer and read-back parser. Byte 0 picks the mode:
//! - 0: `{"document": <policy document>, "base": <litellm.yaml settings>}`
//!   (both from the repository): what `render` writes reads back as the
//!   version it was stamped with, and projects as `projected` says;
//! - 1: a config.yaml as found on disk (a hand edit, a broken file): read
//!   back without panic, the same way twice;
//! - 2: the six admin API answers as a JSON array (a proxy's replies):
//!   projected without panic, and a projection serves itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sluice::{
    config::document::PolicyDocument,
    gateway::litellm::{self, Base, Served, Stamp},
};

const DIGEST: &str = "sha256:5d41402abc4b2a76b9719d911017c592aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const REVISION: &str = "0123456789abcdef0123456789abcdef01234567";

#[derive(serde::Deserialize)]
struct Written {
    document: PolicyDocument,
    base: Base,
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let Ok(Written { document, base }) = serde_json::from_slice::<Written>(rest) else {
                return;
            };
            let stamp = Stamp {
                digest: DIGEST,
                revision: REVISION,
            };
            let text = litellm::render(&document, &base, &stamp);
            let read = litellm::stamp_of(&text).unwrap_or_else(|| panic!("no stamp in {text}"));
            assert_eq!(
                (read.0.as_str(), read.1.as_str()),
                (DIGEST, REVISION),
                "{text}"
            );
            assert_eq!(litellm::native_of(&text).unwrap(), read.2, "{text}");
            assert_eq!(litellm::config_version(&text).as_str(), DIGEST, "{text}");
            let projected = litellm::projected(&document, &base);
            let read_back = litellm::project(&text).unwrap();
            assert_eq!(read_back, projected, "{text}");
        }
        1 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let version = litellm::config_version(text);
            assert_eq!(version, litellm::config_version(text));
            let _ = litellm::stamp_of(text);
            let _ = litellm::native_of(text);
            if let Ok(projection) = litellm::project(text) {
                assert!(litellm::serves(&projection, &projection));
            }
        }
        _ => {
            let Ok(answers) = serde_json::from_slice::<[Value; 6]>(rest) else {
                return;
            };
            let served = Served::from(answers);
            let projection = litellm::project_served(&served);
            assert!(litellm::serves(&projection, &projection));
            let _ = litellm::served_stamp(&served.models);
        }
    }
});
