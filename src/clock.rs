//! Time, injected: the reconciler asks a [`Clock`] rather than the system,
//! so tests (and promotion soaks) need no sleeps.

use crate::ledger::Millis;
use k8s_openapi::jiff::Timestamp;
use std::{
    sync::atomic::{AtomicI64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

pub trait Clock: Send + Sync {
    fn now(&self) -> Millis;
}

/// The system's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as Millis)
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn at(now: Millis) -> Self {
        ManualClock(AtomicI64::new(now))
    }

    pub fn advance(&self, by: std::time::Duration) {
        self.0.fetch_add(by.as_millis() as Millis, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

/// `2026-11-23T05:06:07Z` for a time in milliseconds (UTC, whole seconds:
/// what people read).
pub fn rfc3339(millis: Millis) -> String {
    format!("{:.0}", timestamp(millis))
}

/// `2026-11-23T05:06:07.120Z`: the form every JSON output and the API
/// carry times in (RFC 3339, UTC, milliseconds, so nothing is lost from the
/// ledger's times).
pub fn rfc3339_millis(millis: Millis) -> String {
    format!("{:.3}", timestamp(millis))
}

/// The instant, clamped to the range RFC 3339 can write (years 1–9999 and
/// a little beyond): no time the ledger holds is near either end.
fn timestamp(millis: Millis) -> Timestamp {
    let min = Timestamp::MIN.as_millisecond();
    let max = Timestamp::MAX.as_millisecond();
    Timestamp::from_millisecond(millis.clamp(min, max)).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// An RFC 3339 time (`2026-11-23T05:06:07Z`, a fraction and an offset
/// allowed) in milliseconds since the epoch; `None` when it is not one.
pub fn parse_rfc3339(text: &str) -> Option<Millis> {
    text.parse::<Timestamp>().ok().map(|t| t.as_millisecond())
}

/// Serde for times in JSON: [`rfc3339_millis`] out; in, that or the epoch
/// milliseconds older servers answered with.
pub mod json {
    use super::{Millis, parse_rfc3339, rfc3339_millis};
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        Number(Millis),
    }

    fn decode<E: Error>(value: Either) -> Result<Millis, E> {
        match value {
            Either::Number(millis) => Ok(millis),
            Either::Text(text) => parse_rfc3339(&text)
                .ok_or_else(|| E::custom(format!("not an RFC 3339 time: {text:?}"))),
        }
    }

    pub fn serialize<S: Serializer>(millis: &Millis, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&rfc3339_millis(*millis))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Millis, D::Error> {
        decode(Either::deserialize(deserializer)?)
    }

    /// The same for an optional time (`null` when absent).
    pub mod option {
        use super::{Either, Millis, decode, rfc3339_millis};
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(
            millis: &Option<Millis>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match millis {
                Some(millis) => serializer.serialize_str(&rfc3339_millis(*millis)),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Millis>, D::Error> {
            Option::<Either>::deserialize(deserializer)?
                .map(decode)
                .transpose()
        }
    }
}

/// `3s`, `4m`, `2h`, `5d`: how long ago, for people.
pub fn age(millis: Millis) -> String {
    let secs = (millis / 1000).max(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_formats_and_rfc3339_in_general() {
        for millis in [
            0,
            1_795_410_367_120,
            951_782_400_000,
            -86_400_001,
            4_102_444_799_999,
        ] {
            assert_eq!(parse_rfc3339(&rfc3339_millis(millis)), Some(millis));
            assert_eq!(
                parse_rfc3339(&rfc3339(millis)),
                Some(millis - millis.rem_euclid(1000))
            );
        }
        assert_eq!(
            parse_rfc3339("2026-11-23T06:06:07.12+01:00"),
            Some(1_795_410_367_120)
        );
        assert_eq!(
            parse_rfc3339("2026-11-23T05:06:07.123456Z"),
            Some(1_795_410_367_123)
        );
        for bad in [
            "",
            "2026-11-23",
            "2026-13-01T00:00:00Z",
            "2026-11-23T05:06:07",
            "x-y-zT1:2:3Z",
            "2026-11-23T05:06:07.Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn times_in_json_are_rfc3339_and_read_back_from_either_form() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct T {
            #[serde(with = "json")]
            at: Millis,
            #[serde(with = "json::option")]
            until: Option<Millis>,
        }
        let t = T {
            at: 1_795_410_367_120,
            until: None,
        };
        let text = serde_json::to_string(&t).unwrap();
        assert_eq!(text, r#"{"at":"2026-11-23T05:06:07.120Z","until":null}"#);
        assert_eq!(serde_json::from_str::<T>(&text).unwrap(), t);
        let old: T = serde_json::from_str(r#"{"at":1795410367120,"until":5}"#).unwrap();
        assert_eq!((old.at, old.until), (1_795_410_367_120, Some(5)));
        assert!(serde_json::from_str::<T>(r#"{"at":"yesterday","until":null}"#).is_err());
    }

    #[test]
    fn formats_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_410_367_000), "2026-11-23T05:06:07Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(
            rfc3339_millis(1_795_410_367_120),
            "2026-11-23T05:06:07.120Z"
        );
        assert_eq!(rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(age(59_000), "59s");
        assert_eq!(age(7_200_000), "2h");
    }
}
