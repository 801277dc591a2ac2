//! The rollback commit's message and its default branch name.

use super::{Point, restore::Plan};
use crate::source::prefix;

/// `rollback/<env>-<12 hex of the target digest>`.
pub(super) fn default_branch(environment: &str, digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    format!("rollback/{environment}-{}", prefix(hex, 12))
}

/// What the message tells.
pub(super) struct Message<'a> {
    pub environment: &'a str,
    pub from: &'a Point,
    pub to: &'a Point,
    pub base: &'a str,
    pub head: &'a str,
    pub plan: &'a Plan,
    pub subject: Option<&'a str>,
}

/// `Roll back <env> to <to> (from <from>)`, what was restored, and trailers.
pub(super) fn commit_message(m: &Message<'_>) -> String {
    let env = m.environment;
    let subject = m.subject.map(str::to_owned).unwrap_or_else(|| {
        format!(
            "Roll back {env} to {} (from {})",
            m.to.version, m.from.version
        )
    });
    let mut body = vec![format!(
        "Restores environments/{env}/ as it was at {}, the last revision {env}\nran whole at {} before {}.",
        m.to.revision, m.to.digest, m.from.digest
    )];
    for materialised in &m.plan.materialised {
        body.push(format!(
            "Materialises pack `{}` into {}: {} changed since,\nand the other environments keep its new content.",
            materialised.pack, materialised.file, materialised.base
        ));
    }
    if let Some(enforcement) = m.plan.pinned {
        let word = serde_json::to_value(enforcement).unwrap_or_default();
        body.push(format!(
            "Pins enforcement: {} in environments/{env}/environment.yaml: the\ndefault in sluice.yaml changed since.",
            word.as_str().unwrap_or_default()
        ));
    }
    body.push(format!(
        "Every other environment renders as on {} ({}).",
        m.base,
        prefix(m.head, 8)
    ));
    format!(
        "{subject}\n\n{}\n\nSluice-Rollback: {env}\nSluice-From: {} {}\nSluice-To: {} {}\n",
        body.join("\n\n"),
        m.from.digest,
        m.from.revision,
        m.to.digest,
        m.to.revision
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::Digest, rollback::Materialised};

    fn digest(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    #[test]
    fn the_message_names_both_versions_and_carries_trailers() {
        let from = Point::of(
            digest('b').as_str(),
            "bbbbbbbb11111111111111111111111111111111",
        );
        let to = Point::of(
            digest('a').as_str(),
            "aaaaaaaa00000000000000000000000000000000",
        );
        let plan = crate::rollback::restore::Plan {
            materialised: vec![Materialised {
                pack: "baseline".into(),
                file: "environments/production/packs/baseline.yaml".into(),
                base: "base/packs/baseline.yaml".into(),
                content: String::new(),
            }],
            pinned: None,
        };
        let text = commit_message(&Message {
            environment: "production",
            from: &from,
            to: &to,
            base: "main",
            head: "cccccccc",
            plan: &plan,
            subject: None,
        });
        assert!(text.starts_with(
            "Roll back production to sha256:aaaaaaaaaaaa@aaaaaaaa (from sha256:bbbbbbbbbbbb@bbbbbbbb)\n\n"
        ));
        assert!(text.contains("base/packs/baseline.yaml changed since"));
        assert!(text.ends_with(&format!(
            "Sluice-Rollback: production\nSluice-From: {} {}\nSluice-To: {} {}\n",
            from.digest, from.revision, to.digest, to.revision
        )));
        assert_eq!(
            default_branch("production", &to.digest),
            "rollback/production-aaaaaaaaaaaa"
        );
    }
}
