//! What `sluice status` and `/api/v1/status` show, built from ledger
//! records by a pure function.

use crate::ledger::{GatewayRecord, GatewayState, Ledger, LedgerError, Millis, RevisionRecord};
use crate::source::prefix;
use serde::{Deserialize, Serialize};

/// The newest revision seen and whether it could be applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionStatus {
    pub commit: String,
    pub valid: bool,
    pub errors: usize,
    pub seen_at: Millis,
}

/// The matrix environment × gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    pub revision: Option<RevisionStatus>,
    pub gateways: Vec<GatewayRecord>,
}

impl StatusView {
    pub fn build(revision: Option<RevisionRecord>, gateways: Vec<GatewayRecord>) -> Self {
        StatusView {
            revision: revision.map(|r| RevisionStatus {
                commit: r.commit,
                valid: r.valid,
                errors: r.errors,
                seen_at: r.seen_at,
            }),
            gateways,
        }
    }

    pub fn read(ledger: &dyn Ledger, environment: Option<&str>) -> Result<Self, LedgerError> {
        Ok(Self::build(
            ledger.last_revision()?,
            ledger.gateways(environment)?,
        ))
    }

    /// Only the gateways of environments `allowed` accepts (token scopes).
    pub fn retain(mut self, allowed: impl Fn(&str) -> bool) -> Self {
        self.gateways.retain(|g| allowed(&g.environment));
        self
    }

    /// Every gateway runs what it should.
    pub fn converged(&self) -> bool {
        self.revision.as_ref().is_none_or(|r| r.valid)
            && self
                .gateways
                .iter()
                .all(|g| g.state == GatewayState::InSync)
    }
}

/// `sha256:<12>` of a digest, or `-`.
pub fn short_digest(digest: Option<&str>) -> String {
    digest.map_or("-".into(), |d| prefix(d, 19).to_owned())
}

/// `sha256:<12>@<8>`, the form versions are shown in.
pub fn version(digest: Option<&str>, revision: Option<&str>) -> String {
    match (digest, revision) {
        (Some(d), Some(r)) => format!("{}@{}", short_digest(Some(d)), prefix(r, 8)),
        (Some(d), None) => short_digest(Some(d)),
        _ => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(env: &str, state: GatewayState) -> GatewayRecord {
        GatewayRecord {
            environment: env.into(),
            gateway: "g".into(),
            desired_digest: Some(format!("sha256:{}", "a".repeat(64))),
            desired_revision: Some("0123456789abcdef".into()),
            observed_digest: None,
            state,
            changed_at: 0,
            updated_at: 0,
            error: None,
        }
    }

    #[test]
    fn converged_only_when_valid_and_all_in_sync() {
        let valid = RevisionRecord {
            commit: "c".into(),
            seen_at: 1,
            valid: true,
            errors: 0,
            findings: "[]".into(),
        };
        let view = StatusView::build(
            Some(valid.clone()),
            vec![record("dev", GatewayState::InSync)],
        );
        assert!(view.converged());
        let view = StatusView::build(
            Some(valid.clone()),
            vec![record("dev", GatewayState::Failed)],
        );
        assert!(!view.converged());
        let invalid = RevisionRecord {
            valid: false,
            errors: 2,
            ..valid
        };
        let view = StatusView::build(Some(invalid), vec![record("dev", GatewayState::InSync)]);
        assert!(!view.converged());
    }

    #[test]
    fn scopes_filter_environments() {
        let view = StatusView::build(
            None,
            vec![
                record("dev", GatewayState::InSync),
                record("prod", GatewayState::InSync),
            ],
        );
        let view = view.retain(|e| e == "dev");
        assert_eq!(view.gateways.len(), 1);
        assert_eq!(
            version(
                Some(&format!("sha256:{}", "a".repeat(64))),
                Some("0123456789")
            ),
            "sha256:aaaaaaaaaaaa@01234567"
        );
    }
}
