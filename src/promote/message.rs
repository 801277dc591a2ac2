//! The promotion commit's message and its default branch name.

use super::trailer::{self, Promotion};
use crate::{
    config::{Digest, Environment},
    source::prefix,
};

/// `promote/<from>-to-<to>-<12 hex of TO's new digest>`.
pub(super) fn default_branch(from: &str, to: &str, digest: &Digest) -> String {
    let hex = digest.as_str().strip_prefix("sha256:").unwrap_or_default();
    format!("promote/{from}-to-{to}-{}", prefix(hex, 12))
}

/// Subject, one line per pack, the forced reason, and the trailers.
pub(super) fn commit_message(
    record: &Promotion,
    target: &Environment,
    subject: Option<&str>,
) -> String {
    let (from, to) = (&record.from, &record.to);
    let subject = subject.map(str::to_owned).unwrap_or_else(|| {
        let packs: Vec<String> = record
            .packs
            .iter()
            .map(|p| format!("{} {}", p.name, p.version))
            .collect();
        format!("Promote {} from {from} to {to}", packs.join(", "))
    });
    let lines: Vec<String> = record
        .packs
        .iter()
        .map(|p| {
            format!(
                "Promote {} {} {}… from {}@{}",
                p.name,
                p.version,
                p.digest.short(),
                p.source_env,
                prefix(&p.source_revision, 8)
            )
        })
        .collect();
    let mut paragraphs = vec![subject, lines.join("\n")];
    if let Some(reason) = &record.forced {
        let takes = target.spec.promotion.as_ref().map_or_else(
            || format!("{to} has no promotion.from"),
            |p| format!("{to} takes promotions from {}", p.from),
        );
        paragraphs.push(format!("Forced ({takes}): {reason}"));
    }
    paragraphs.push(trailer::format(record));
    let mut text = paragraphs.join("\n\n");
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::{self, Limits},
        promote::trailer::PromotedPack,
    };

    #[test]
    fn the_message_lists_packs_and_parses_back() {
        let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config-repo");
        let tree = crate::source::WorkTree::open(&example).unwrap();
        let repo = config::load(&tree, &Limits::default())
            .unwrap()
            .repository
            .unwrap();
        let digest = Digest::parse(&format!("sha256:{}", "1a2b".repeat(16))).unwrap();
        let record = Promotion {
            from: "staging".into(),
            to: "production".into(),
            packs: vec![PromotedPack {
                name: "support".into(),
                version: "2.4.0".into(),
                digest: digest.clone(),
                source_env: "staging".into(),
                source_revision: "9f8e7d6c5b4a39281706f5e4d3c2b1a0f9e8d7c6".into(),
            }],
            forced: None,
        };
        let text = commit_message(&record, &repo.environments["production"], None);
        assert!(
            text.starts_with(
                "Promote support 2.4.0 from staging to production\n\n\
                 Promote support 2.4.0 sha256:1a2b1a2b1a2b… from staging@9f8e7d6c\n\n\
                 Sluice-Promotion: staging -> production\n"
            ),
            "{text}"
        );
        assert_eq!(trailer::parse(&text), Some(record.clone()));

        let forced = Promotion {
            from: "development".into(),
            forced: Some("hotfix INC-7".into()),
            packs: vec![PromotedPack {
                source_env: "development".into(),
                ..record.packs[0].clone()
            }],
            ..record
        };
        let text = commit_message(
            &forced,
            &repo.environments["production"],
            Some("Hotfix to production"),
        );
        assert!(text.starts_with("Hotfix to production\n\n"), "{text}");
        assert!(
            text.contains("Forced (production takes promotions from staging): hotfix INC-7\n\n"),
            "{text}"
        );
        assert!(text.ends_with("Sluice-Forced: hotfix INC-7\n"), "{text}");
        assert_eq!(trailer::parse(&text), Some(forced));
        assert_eq!(
            default_branch("staging", "production", &digest),
            "promote/staging-to-production-1a2b1a2b1a2b"
        );
    }
}
