//! The machine-readable part of a promotion commit: git trailers in the
//! message's last paragraph, written by `sluice promote` and read back by
//! the gates (which call [`parse`] on the head commit's message).
//!
//! ```text
//! Promote models 2.2.0 from staging to production
//!
//! Promote models 2.2.0 sha256:1a2b3c4d5e6f… from staging@9f8e7d6c
//!
//! Sluice-Promotion: staging -> production
//! Sluice-Pack: models 2.2.0 sha256:<64 hex> staging@<40 hex commit>
//! Sluice-Forced: <reason>                      (only when forced)
//! ```
//!
//! Reading follows git's own rules (`git interpret-trailers`): the subject
//! paragraph is never trailers; the last paragraph is, when every line is a
//! `Key: value` trailer or a continuation, or when a quarter of them are and
//! one is Sluice's or `Signed-off-by`. Other trailers are ignored; the
//! Sluice ones must be well formed, or the message is refused as a whole.

use crate::config::Digest;
use std::fmt::Write as _;

/// `Sluice-Promotion: <from> -> <to>`.
pub const PROMOTION: &str = "Sluice-Promotion";
/// `Sluice-Pack: <name> <version> <sha256:64 hex> <from>@<commit>`.
pub const PACK: &str = "Sluice-Pack";
/// `Sluice-Forced: <reason>`: promoted past `promotion.from`.
pub const FORCED: &str = "Sluice-Forced";

/// What a promotion commit says it promoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    pub from: String,
    pub to: String,
    pub packs: Vec<PromotedPack>,
    /// The reason given with `--force`, when `from` is not `to`'s
    /// `promotion.from`.
    pub forced: Option<String>,
}

/// One pack of a promotion, as it ran in the source environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotedPack {
    pub name: String,
    pub version: String,
    /// The pack's digest in the source environment (what the target must
    /// render for it).
    pub digest: Digest,
    pub source_env: String,
    /// The full commit id the pack was read from.
    pub source_revision: String,
}

/// One `Key: value` trailer, continuation lines joined with a space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trailer {
    pub key: String,
    pub value: String,
}

/// Why a message's Sluice trailers cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrailerError {
    #[error("malformed {key} trailer `{value}`: {expected}")]
    Malformed {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{key} appears {count} times; a promotion has one")]
    Repeated { key: &'static str, count: usize },
    #[error("{key} without a {PROMOTION} trailer")]
    Orphan { key: &'static str },
    #[error("a {PROMOTION} trailer without any {PACK} trailer")]
    NoPacks,
    #[error("pack `{name}` is listed twice")]
    DuplicatePack { name: String },
    #[error("pack `{name}` comes from `{source_env}`, but the promotion is from `{from}`")]
    SourceMismatch {
        name: String,
        source_env: String,
        from: String,
    },
}

/// The promotion a commit message records; `None` when it records none or
/// its Sluice trailers are malformed (see [`read`] for why).
pub fn parse(message: &str) -> Option<Promotion> {
    read(message).ok().flatten()
}

/// The promotion a commit message records: `Ok(None)` when it has no
/// Sluice promotion trailers, an error when they are malformed.
pub fn read(message: &str) -> Result<Option<Promotion>, TrailerError> {
    let all = trailers(message);
    let of = |key: &str| -> Vec<&str> {
        all.iter()
            .filter(|t| t.key.eq_ignore_ascii_case(key))
            .map(|t| t.value.as_str())
            .collect()
    };
    let (promotions, packs, forced) = (of(PROMOTION), of(PACK), of(FORCED));
    let Some(promotion) = promotions.first() else {
        return match (packs.is_empty(), forced.is_empty()) {
            (true, true) => Ok(None),
            (false, _) => Err(TrailerError::Orphan { key: PACK }),
            (_, false) => Err(TrailerError::Orphan { key: FORCED }),
        };
    };
    for (key, values) in [(PROMOTION, &promotions), (FORCED, &forced)] {
        if values.len() > 1 {
            return Err(TrailerError::Repeated {
                key,
                count: values.len(),
            });
        }
    }
    let (from, to) = promotion
        .split_once(" -> ")
        .map(|(f, t)| (f.trim(), t.trim()))
        .filter(|(f, t)| is_word(f) && is_word(t) && f != t)
        .ok_or_else(|| TrailerError::Malformed {
            key: PROMOTION,
            value: (*promotion).to_owned(),
            expected: "expected `<from> -> <to>`, two different environments",
        })?;
    if packs.is_empty() {
        return Err(TrailerError::NoPacks);
    }
    let mut promoted: Vec<PromotedPack> = Vec::with_capacity(packs.len());
    for value in packs {
        let pack = pack(value)?;
        if pack.source_env != from {
            return Err(TrailerError::SourceMismatch {
                name: pack.name,
                source_env: pack.source_env,
                from: from.to_owned(),
            });
        }
        if promoted.iter().any(|p| p.name == pack.name) {
            return Err(TrailerError::DuplicatePack { name: pack.name });
        }
        promoted.push(pack);
    }
    let forced = match forced.first() {
        Some(reason) if reason.trim().is_empty() => {
            return Err(TrailerError::Malformed {
                key: FORCED,
                value: String::new(),
                expected: "expected the reason given with --force",
            });
        }
        reason => reason.map(|r| r.trim().to_owned()),
    };
    Ok(Some(Promotion {
        from: from.to_owned(),
        to: to.to_owned(),
        packs: promoted,
        forced,
    }))
}

/// `<name> <version> <sha256:64 hex> <from>@<commit>`.
fn pack(value: &str) -> Result<PromotedPack, TrailerError> {
    let malformed = || TrailerError::Malformed {
        key: PACK,
        value: value.to_owned(),
        expected: "expected `<name> <version> <sha256:64 hex> <environment>@<full commit id>`",
    };
    let fields: Vec<&str> = value.split_whitespace().collect();
    let [name, version, digest, source] = fields.as_slice() else {
        return Err(malformed());
    };
    let digest = Digest::parse(digest).ok_or_else(malformed)?;
    let (source_env, revision) = source.split_once('@').ok_or_else(malformed)?;
    let full_id = matches!(revision.len(), 40 | 64)
        && revision
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !is_word(name) || !is_word(version) || !is_word(source_env) || !full_id {
        return Err(malformed());
    }
    Ok(PromotedPack {
        name: (*name).to_owned(),
        version: (*version).to_owned(),
        digest,
        source_env: source_env.to_owned(),
        source_revision: revision.to_owned(),
    })
}

/// A name, slug or version: non-empty, no whitespace, no `@`.
fn is_word(text: &str) -> bool {
    !text.is_empty() && !text.contains(|c: char| c.is_whitespace() || c == '@')
}

/// The trailer block that records `promotion`: one line per trailer, each
/// ending in a newline, for the last paragraph of a commit message. A
/// forced reason is written on one line.
pub fn format(promotion: &Promotion) -> String {
    let mut out = format!("{PROMOTION}: {} -> {}\n", promotion.from, promotion.to);
    for pack in &promotion.packs {
        let _ = writeln!(
            out,
            "{PACK}: {} {} {} {}@{}",
            pack.name, pack.version, pack.digest, pack.source_env, pack.source_revision
        );
    }
    if let Some(reason) = &promotion.forced {
        let reason: Vec<&str> = reason.split_whitespace().collect();
        let _ = writeln!(out, "{FORCED}: {}", reason.join(" "));
    }
    out
}

/// The trailers of a commit message's last paragraph, as git reads them.
pub fn trailers(message: &str) -> Vec<Trailer> {
    let lines: Vec<&str> = message
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::trim_end)
        .collect();
    // NB: the first paragraph is the subject, never trailers.
    let Some(body) = lines.iter().position(|l| l.is_empty()) else {
        return Vec::new();
    };
    let lines = &lines[body..];
    let end = lines
        .iter()
        .rposition(|l| !l.is_empty())
        .map_or(0, |i| i + 1);
    let start = lines[..end]
        .iter()
        .rposition(|l| l.is_empty())
        .map_or(0, |i| i + 1);
    let paragraph = &lines[start..end];
    if paragraph.is_empty() {
        return Vec::new();
    }
    let mut found: Vec<Trailer> = Vec::new();
    let (mut trailer_lines, mut other_lines, mut recognised) = (0usize, 0usize, false);
    let mut continues = false;
    for line in paragraph {
        if line.starts_with([' ', '\t']) {
            if continues && let Some(last) = found.last_mut() {
                last.value.push(' ');
                last.value.push_str(line.trim());
                continue;
            }
            other_lines += 1;
            continue;
        }
        match trailer(line) {
            Some(t) => {
                trailer_lines += 1;
                recognised |= t.key.to_ascii_lowercase().starts_with("sluice-")
                    || t.key.eq_ignore_ascii_case("Signed-off-by");
                found.push(t);
                continues = true;
            }
            None => {
                other_lines += 1;
                continues = false;
            }
        }
    }
    let is_block =
        trailer_lines > 0 && (other_lines == 0 || (recognised && trailer_lines * 3 >= other_lines));
    if is_block { found } else { Vec::new() }
}

/// `Key: value`, the key made of letters, digits and hyphens.
fn trailer(line: &str) -> Option<Trailer> {
    let (key, value) = line.split_once(':')?;
    let key = key.trim_end();
    let well_formed =
        !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    well_formed.then(|| Trailer {
        key: key.to_owned(),
        value: value.trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMIT: &str = "9f8e7d6c5b4a39281706f5e4d3c2b1a0f9e8d7c6";

    fn digest(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    fn promotion(forced: Option<&str>) -> Promotion {
        Promotion {
            from: "staging".into(),
            to: "production".into(),
            packs: vec![
                PromotedPack {
                    name: "models".into(),
                    version: "2.2.0".into(),
                    digest: digest('a'),
                    source_env: "staging".into(),
                    source_revision: COMMIT.into(),
                },
                PromotedPack {
                    name: "support".into(),
                    version: "2.4.0-rc.1+build.7".into(),
                    digest: digest('b'),
                    source_env: "staging".into(),
                    source_revision: COMMIT.into(),
                },
            ],
            forced: forced.map(str::to_owned),
        }
    }

    fn message(trailers: &str) -> String {
        format!(
            "Promote models 2.2.0 from staging to production\n\nWhy: a body line.\n\n{trailers}"
        )
    }

    #[test]
    fn format_then_parse_is_the_identity() {
        for forced in [
            None,
            Some("hotfix for INC-42, approved by the release owner"),
        ] {
            let promotion = promotion(forced);
            let text = format(&promotion);
            assert_eq!(parse(&message(&text)), Some(promotion.clone()), "{text}");
        }
        let text = format(&promotion(None));
        assert_eq!(
            text,
            format!(
                "Sluice-Promotion: staging -> production\n\
                 Sluice-Pack: models 2.2.0 {} staging@{COMMIT}\n\
                 Sluice-Pack: support 2.4.0-rc.1+build.7 {} staging@{COMMIT}\n",
                digest('a'),
                digest('b')
            )
        );
    }

    #[test]
    fn a_multi_line_reason_is_written_on_one_line() {
        let text = format(&promotion(Some("first line\n  second line")));
        assert!(
            text.ends_with("Sluice-Forced: first line second line\n"),
            "{text}"
        );
        let parsed = parse(&message(&text)).unwrap();
        assert_eq!(parsed.forced.as_deref(), Some("first line second line"));
    }

    #[test]
    fn other_trailers_and_case_are_tolerated() {
        let text = format!(
            "Signed-off-by: A <a@example>\n{}sluice-approved-by: release-owner\nCo-authored-by: B <b@example>\n",
            format(&promotion(None)).replace("Sluice-Promotion", "sluice-promotion")
        );
        let parsed = parse(&message(&text)).unwrap();
        assert_eq!(parsed.packs.len(), 2);
        assert_eq!(parsed.to, "production");
        // Trailing blank lines and CRLF line ends do not matter.
        let crlf = message(&format!("{text}\n\n")).replace('\n', "\r\n");
        assert_eq!(parse(&crlf), Some(parsed));
    }

    #[test]
    fn trailers_count_only_in_the_last_paragraph() {
        let text = format!(
            "Subject\n\n{}\nA closing paragraph that is prose.\n",
            format(&promotion(None))
        );
        assert_eq!(read(&text), Ok(None));
        // The subject alone is never trailers.
        assert_eq!(read("Sluice-Promotion: staging -> production"), Ok(None));
        assert_eq!(read("Just a subject\n\nAnd a body.\n"), Ok(None));
        // A prose line inside the block: git still reads it as trailers
        // when a quarter of the lines are, one of them Sluice's.
        let mixed = message(&format!(
            "{}Reviewed in the weekly sync.\n",
            format(&promotion(None))
        ));
        assert_eq!(parse(&mixed).map(|p| p.packs.len()), Some(2));
    }

    #[test]
    fn malformed_sluice_trailers_are_refused() {
        let good = format(&promotion(None));
        let cases = [
            (
                good.replace(
                    &format!("staging@{COMMIT}\nSluice-Pack: support"),
                    "staging@9f8e7d6c\nSluice-Pack: support",
                ),
                "short commit",
            ),
            (good.replace(" sha256:aaaa", " sha1:aaaa"), "bad digest"),
            (good.replace("models 2.2.0 ", "models "), "missing field"),
            (
                good.replace("staging -> production", "staging production"),
                "no arrow",
            ),
            (
                good.replace("staging -> production", "staging -> staging"),
                "same environment",
            ),
            (
                good.replace("models 2.2.0 sha256:aaaa", "support 2.2.0 sha256:aaaa"),
                "duplicate",
            ),
            (
                good.replace(
                    &format!("models 2.2.0 {} staging@", digest('a')),
                    &format!("models 2.2.0 {} development@", digest('a')),
                ),
                "other source",
            ),
            (
                format!("{good}Sluice-Promotion: staging -> production\n"),
                "repeated",
            ),
            (
                "Sluice-Promotion: staging -> production\n".to_owned(),
                "no packs",
            ),
            (
                good.lines().skip(1).map(|l| format!("{l}\n")).collect(),
                "orphan packs",
            ),
            (format!("{good}Sluice-Forced:\n"), "empty reason"),
        ];
        for (text, case) in cases {
            assert!(read(&message(&text)).is_err(), "{case}: {text}");
            assert_eq!(parse(&message(&text)), None, "{case}");
        }
    }

    #[test]
    fn continuation_lines_join_the_trailer_above() {
        let found = trailers("S\n\nSluice-Forced: a long\n  reason\nOther: x\n");
        assert_eq!(
            found,
            vec![
                Trailer {
                    key: "Sluice-Forced".into(),
                    value: "a long reason".into()
                },
                Trailer {
                    key: "Other".into(),
                    value: "x".into()
                },
            ]
        );
    }
}
