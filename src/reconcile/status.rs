//! What `sluice status` and `/api/v1/status` show, built from ledger
//! records by a pure function.

use crate::config::Digest;
use crate::ledger::{
    Attempt, Deployment, GatewayRecord, GatewayState, Ledger, LedgerError, Millis, Pin,
    RevisionRecord,
};
use crate::source::prefix;
use serde::{Deserialize, Serialize};

/// The newest revision seen and whether it could be applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionStatus {
    pub commit: String,
    pub valid: bool,
    pub errors: usize,
    #[serde(with = "crate::clock::json")]
    pub seen_at: Millis,
}

/// The matrix environment × gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    pub revision: Option<RevisionStatus>,
    pub gateways: Vec<GatewayRecord>,
    /// Why the running Sluice cannot write its ledger, while it cannot
    /// (only a running server knows: the file cannot say it is full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_error: Option<String>,
    /// The pins in place: who holds which environment where, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pins: Vec<Pin>,
    /// The commit each gateway's live version came from, where the ledger
    /// knows one (see [`live_revisions`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub live_revisions: Vec<LiveRevision>,
}

/// The commit a gateway's live digest was rendered from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveRevision {
    pub environment: String,
    pub gateway: String,
    pub revision: String,
}

/// Deployments of an environment looked at for the commit of a live
/// digest that is not the desired one (a gateway left behind runs one of
/// the last few versions).
const DEPLOYMENTS_LOOKED_AT: usize = 20;

impl StatusView {
    /// The matrix from the gateways' records, with every attempt still
    /// unfinished shown as what it is: the gateway `applying` the attempt's
    /// version (in a rollout, or left so by a crash until the next pass
    /// resolves it), whatever the record last said.
    pub fn build(
        revision: Option<RevisionRecord>,
        mut gateways: Vec<GatewayRecord>,
        unfinished: &[Attempt],
    ) -> Self {
        for attempt in unfinished {
            let start = &attempt.start;
            let found = gateways
                .iter_mut()
                .find(|g| g.environment == start.environment && g.gateway == start.gateway);
            let record = match found {
                Some(record) => record,
                None => {
                    gateways.push(GatewayRecord {
                        environment: start.environment.clone(),
                        gateway: start.gateway.clone(),
                        desired_digest: None,
                        desired_revision: None,
                        observed_digest: None,
                        state: GatewayState::Applying,
                        changed_at: start.started_at,
                        updated_at: start.started_at,
                        error: None,
                    });
                    gateways.last_mut().expect("just pushed")
                }
            };
            // NB: they come oldest first, so the newest attempt wins.
            record.desired_digest = Some(start.digest.clone());
            record.desired_revision = Some(start.revision.clone());
            record.state = GatewayState::Applying;
            record.changed_at = start.started_at;
            record.updated_at = record.updated_at.max(start.started_at);
        }
        gateways.sort_by(|a, b| (&a.environment, &a.gateway).cmp(&(&b.environment, &b.gateway)));
        StatusView {
            revision: revision.map(|r| RevisionStatus {
                commit: r.commit,
                valid: r.valid,
                errors: r.errors,
                seen_at: r.seen_at,
            }),
            gateways,
            ledger_error: None,
            pins: Vec::new(),
            live_revisions: Vec::new(),
        }
    }

    pub fn read(ledger: &dyn Ledger, environment: Option<&str>) -> Result<Self, LedgerError> {
        let mut unfinished = ledger.unfinished_attempts()?;
        unfinished.retain(|a| environment.is_none_or(|e| e == a.start.environment));
        let mut view = Self::build(
            ledger.last_revision()?,
            ledger.gateways(environment)?,
            &unfinished,
        );
        view.pins = ledger.pins(environment)?;
        let mut environments: Vec<&str> = view
            .gateways
            .iter()
            .map(|g| g.environment.as_str())
            .collect();
        environments.dedup();
        let mut deployments = Vec::new();
        for env in environments {
            deployments.extend(ledger.deployments(env, DEPLOYMENTS_LOOKED_AT)?);
        }
        view.live_revisions = live_revisions(&view.gateways, &view.pins, &deployments);
        Ok(view)
    }

    /// Only the gateways of environments `allowed` accepts (token scopes).
    pub fn retain(mut self, allowed: impl Fn(&str) -> bool) -> Self {
        self.gateways.retain(|g| allowed(&g.environment));
        self.pins.retain(|p| allowed(&p.environment));
        self.live_revisions.retain(|l| allowed(&l.environment));
        self
    }

    /// What `gateway` runs, `sha256:<12>@<8>` when the commit it came from
    /// is known, else `sha256:<12>` (or `-`).
    pub fn live_version(&self, gateway: &GatewayRecord) -> String {
        let revision = self
            .live_revisions
            .iter()
            .find(|l| l.environment == gateway.environment && l.gateway == gateway.gateway)
            .map(|l| l.revision.as_str());
        version(gateway.observed_digest.as_ref(), revision)
    }

    /// Every gateway runs what it should.
    pub fn converged(&self) -> bool {
        self.ledger_error.is_none()
            && self.revision.as_ref().is_none_or(|r| r.valid)
            && self.gateways.iter().all(|g| g.state.settled())
    }
}

/// The commit each gateway's live digest came from: its desired version's
/// when it runs that, else its environment's pin's, newest deployment's
/// (`deployments` newest first) or another gateway's desired version's
/// with that digest. A digest none of them has (a hand edit) has none.
pub fn live_revisions(
    gateways: &[GatewayRecord],
    pins: &[Pin],
    deployments: &[Deployment],
) -> Vec<LiveRevision> {
    gateways
        .iter()
        .filter_map(|g| {
            let live = g.observed_digest.as_ref()?;
            let env = g.environment.as_str();
            let own = (g.desired_digest.as_ref() == Some(live))
                .then_some(g.desired_revision.as_deref())
                .flatten();
            let pinned = || {
                pins.iter()
                    .find(|p| p.environment == env && p.digest == *live)
                    .map(|p| p.revision.as_str())
            };
            let deployed = || {
                deployments
                    .iter()
                    .find(|d| d.environment == env && d.digest == *live)
                    .map(|d| d.revision.as_str())
            };
            let desired_elsewhere = || {
                gateways
                    .iter()
                    .filter(|o| o.environment == env && o.desired_digest.as_ref() == Some(live))
                    .find_map(|o| o.desired_revision.as_deref())
            };
            let revision = own
                .or_else(pinned)
                .or_else(deployed)
                .or_else(desired_elsewhere)?;
            Some(LiveRevision {
                environment: g.environment.clone(),
                gateway: g.gateway.clone(),
                revision: revision.to_owned(),
            })
        })
        .collect()
}

/// `sha256:<12>` of a digest, or `-`.
pub fn short_digest(digest: Option<&Digest>) -> String {
    digest.map_or("-".into(), |d| d.short().to_owned())
}

/// `sha256:<12>@<8>`, the form versions are shown in.
pub fn version(digest: Option<&Digest>, revision: Option<&str>) -> String {
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
            desired_digest: Some(format!("sha256:{}", "a".repeat(64)).into()),
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
            findings: Vec::new(),
        };
        let view = StatusView::build(
            Some(valid.clone()),
            vec![record("dev", GatewayState::InSync)],
            &[],
        );
        assert!(view.converged());
        let view = StatusView::build(
            Some(valid.clone()),
            vec![record("dev", GatewayState::Failed)],
            &[],
        );
        assert!(!view.converged());
        let invalid = RevisionRecord {
            valid: false,
            errors: 2,
            ..valid
        };
        let view = StatusView::build(
            Some(invalid),
            vec![record("dev", GatewayState::InSync)],
            &[],
        );
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
            &[],
        );
        let view = view.retain(|e| e == "dev");
        assert_eq!(view.gateways.len(), 1);
        assert_eq!(
            version(
                Some(&format!("sha256:{}", "a".repeat(64)).into()),
                Some("0123456789")
            ),
            "sha256:aaaaaaaaaaaa@01234567"
        );
    }

    fn unfinished(env: &str, gateway: &str, digest: &str, at: Millis) -> Attempt {
        Attempt {
            id: at,
            start: crate::ledger::AttemptStart {
                environment: env.into(),
                gateway: gateway.into(),
                revision: "feedc0de".into(),
                digest: digest.into(),
                trigger: crate::ledger::Trigger::Webhook,
                started_at: at,
            },
            finished_at: None,
            outcome: None,
            error: None,
        }
    }

    /// Issue 16: during a rollout (or after a kill mid-rollout) status
    /// showed every gateway in sync at the old version.
    #[test]
    fn an_unfinished_attempt_shows_its_gateway_applying_the_new_version() {
        let new = format!("sha256:{}", "b".repeat(64));
        let view = StatusView::build(
            None,
            vec![
                record("dev", GatewayState::InSync),
                GatewayRecord {
                    gateway: "h".into(),
                    ..record("dev", GatewayState::InSync)
                },
            ],
            &[
                unfinished("dev", "g", &new, 5),
                unfinished("dev", "new", &new, 6),
            ],
        );
        let states: Vec<(&str, GatewayState, Option<&str>)> = view
            .gateways
            .iter()
            .map(|g| {
                (
                    g.gateway.as_str(),
                    g.state,
                    g.desired_digest.as_ref().map(Digest::as_str),
                )
            })
            .collect();
        let old = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            states,
            vec![
                ("g", GatewayState::Applying, Some(new.as_str())),
                ("h", GatewayState::InSync, Some(old.as_str())),
                ("new", GatewayState::Applying, Some(new.as_str())),
            ]
        );
        assert!(!view.converged());
    }

    #[test]
    fn a_live_digest_is_shown_with_the_commit_it_came_from_when_one_is_known() {
        let digest = |c: &str| Digest::from(format!("sha256:{}", c.repeat(64)));
        let gateway = |name: &str, live: Option<Digest>| GatewayRecord {
            gateway: name.into(),
            observed_digest: live,
            ..record("dev", GatewayState::InSync)
        };
        let deployment = |d: &str, revision: &str| Deployment {
            environment: "dev".into(),
            revision: revision.into(),
            digest: digest(d),
            packs: Vec::new(),
            verified_at: 0,
        };
        let gateways = vec![
            gateway("current", Some(digest("a"))),
            gateway("behind", Some(digest("b"))),
            gateway("edited", Some(digest("e"))),
            gateway("empty", None),
        ];
        let deployments = [deployment("b", "bbbbbbbb2"), deployment("b", "bbbbbbbb1")];
        let mut view = StatusView::build(None, gateways, &[]);
        view.live_revisions = live_revisions(&view.gateways, &[], &deployments);
        let shown: Vec<String> = view.gateways.iter().map(|g| view.live_version(g)).collect();
        assert_eq!(
            shown,
            [
                "sha256:bbbbbbbbbbbb@bbbbbbbb",
                "sha256:aaaaaaaaaaaa@01234567",
                "sha256:eeeeeeeeeeee",
                "-",
            ],
            "sorted by name: behind, current, edited, empty"
        );
        assert_eq!(view.live_revisions[0].revision, "bbbbbbbb2", "the newest");
        let view = view.retain(|e| e != "dev");
        assert!(view.live_revisions.is_empty());
    }

    #[test]
    fn a_ledger_that_cannot_write_is_not_converged() {
        let mut view = StatusView::build(None, vec![record("dev", GatewayState::InSync)], &[]);
        assert!(view.converged());
        view.ledger_error = Some("disk full".into());
        assert!(!view.converged());
    }
}
