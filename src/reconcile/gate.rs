//! Promotion gates: an environment with `promotion: {from: U, soak: D}`
//! applies a pack version only once the ledger shows U running that same
//! pack digest — verified on every gateway and free of drift — for at least
//! D. A pure function of the ledger's records and the time, so tests drive
//! it with an injected clock.

use crate::{
    config::render::PackDigest,
    ledger::{Deployment, DriftEpisode, Millis},
};
use serde::Serialize;
use std::time::Duration;

/// What the upstream environment's records say.
pub struct Upstream<'a> {
    pub environment: &'a str,
    /// Newest first.
    pub deployments: &'a [Deployment],
    /// Its drift episodes, open or resolved.
    pub drift: &'a [DriftEpisode],
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "missing", rename_all = "kebab-case")]
pub enum Missing {
    /// Upstream does not run this digest now.
    NotUpstream,
    /// Upstream has a gateway drifting: nothing soaks meanwhile.
    UpstreamDrifting,
    /// Upstream runs it, not yet for long enough.
    Soaking { remaining_ms: u64 },
}

/// A pack the gate holds back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Waiting {
    pub pack: String,
    pub version: String,
    pub digest: String,
    #[serde(flatten)]
    pub missing: Missing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Open,
    Held(Vec<Waiting>),
}

impl Gate {
    /// For people: which packs wait, on what, and how long.
    pub fn reason(&self, upstream: &str, soak: Duration) -> Option<String> {
        let Gate::Held(waiting) = self else {
            return None;
        };
        let parts: Vec<String> = waiting
            .iter()
            .map(|w| {
                let why = match &w.missing {
                    Missing::NotUpstream => format!("{upstream} does not run it"),
                    Missing::UpstreamDrifting => format!("{upstream} is drifting"),
                    Missing::Soaking { remaining_ms } => format!(
                        "soaking in {upstream}, {} of {} to go",
                        human(Duration::from_millis(*remaining_ms)),
                        human(soak)
                    ),
                };
                format!("{} {} ({}): {why}", w.pack, w.version, short(&w.digest))
            })
            .collect();
        Some(format!("gated: {}", parts.join("; ")))
    }
}

/// Decides whether `desired` may be applied. Only packs the environment
/// never ran (in any of its deployments, `ran`) are gated: a rollback to a
/// version it ran before is not held back.
pub fn check(
    desired: &[PackDigest],
    ran: &[Deployment],
    upstream: &Upstream<'_>,
    soak: Duration,
    now: Millis,
) -> Gate {
    let running_packs: Vec<(String, String)> = ran.iter().flat_map(packs_of).collect();
    let drifting = upstream.drift.iter().any(|e| e.resolved_at.is_none());
    let waiting: Vec<Waiting> = desired
        .iter()
        .filter(|pack| !running_packs.contains(&(pack.name.clone(), pack.source.to_string())))
        .filter_map(|pack| {
            let missing = missing(pack, upstream, drifting, soak, now)?;
            Some(Waiting {
                pack: pack.name.clone(),
                version: pack.version.clone(),
                digest: pack.source.to_string(),
                missing,
            })
        })
        .collect();
    if waiting.is_empty() {
        Gate::Open
    } else {
        Gate::Held(waiting)
    }
}

fn missing(
    pack: &PackDigest,
    upstream: &Upstream<'_>,
    drifting: bool,
    soak: Duration,
    now: Millis,
) -> Option<Missing> {
    let key = (pack.name.clone(), pack.source.to_string());
    // Since when upstream has run it without a break.
    let since = upstream
        .deployments
        .iter()
        .take_while(|d| packs_of(d).contains(&key))
        .last()
        .map(|d| d.verified_at);
    let Some(since) = since else {
        return Some(Missing::NotUpstream);
    };
    if drifting {
        return Some(Missing::UpstreamDrifting);
    }
    // Drift upstream during the soak restarts it from when it ended.
    let clean_since = upstream
        .drift
        .iter()
        .filter_map(|e| e.resolved_at)
        .filter(|resolved| *resolved > since)
        .max()
        .unwrap_or(since);
    let soaked = u64::try_from(now - clean_since).unwrap_or(0);
    let needed = u64::try_from(soak.as_millis()).unwrap_or(u64::MAX);
    (soaked < needed).then(|| Missing::Soaking {
        remaining_ms: needed - soaked,
    })
}

fn packs_of(deployment: &Deployment) -> Vec<(String, String)> {
    deployment
        .packs
        .iter()
        .map(|p| (p.name.clone(), p.source.clone()))
        .collect()
}

fn short(digest: &str) -> &str {
    digest.get(..7 + 12).unwrap_or(digest)
}

fn human(duration: Duration) -> String {
    let minutes = duration.as_secs().div_ceil(60);
    match minutes {
        0..60 => format!("{minutes}m"),
        _ => format!("{}h{:02}m", minutes / 60, minutes % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Digest;

    const HOUR: Millis = 3_600_000;
    const SOAK: Duration = Duration::from_secs(3600);

    fn pack(name: &str, body: &str) -> PackDigest {
        let digest = Digest::of(body.as_bytes());
        PackDigest {
            name: name.into(),
            version: "1.0.0".into(),
            source: digest.clone(),
            digest,
        }
    }

    fn deployment(packs: &[&PackDigest], at: Millis) -> Deployment {
        Deployment {
            environment: "staging".into(),
            revision: "r".into(),
            digest: format!("sha256:{at}"),
            packs: packs.iter().map(|p| (*p).into()).collect(),
            verified_at: at,
        }
    }

    fn episode(onset: Millis, resolved: Option<Millis>) -> DriftEpisode {
        DriftEpisode {
            environment: "staging".into(),
            gateway: "s-1".into(),
            revision: "r".into(),
            desired_digest: "d".into(),
            live_digest: None,
            changes: "[]".into(),
            onset_at: onset,
            resolved_at: resolved,
            resolution: None,
        }
    }

    fn gate(
        desired: &[PackDigest],
        running: Option<Deployment>,
        deployments: &[Deployment],
        drift: &[DriftEpisode],
        now: Millis,
    ) -> Gate {
        let upstream = Upstream {
            environment: "staging",
            deployments,
            drift,
        };
        check(desired, running.as_slice(), &upstream, SOAK, now)
    }

    #[test]
    fn a_pack_waits_for_the_soak_then_passes() {
        let new = pack("support", "v2");
        let upstream = [deployment(&[&new], 10 * HOUR)];
        let held = gate(
            std::slice::from_ref(&new),
            None,
            &upstream,
            &[],
            10 * HOUR + HOUR / 4,
        );
        let Gate::Held(waiting) = &held else {
            panic!("{held:?}")
        };
        assert_eq!(
            waiting[0].missing,
            Missing::Soaking {
                remaining_ms: (3 * HOUR / 4) as u64
            }
        );
        assert!(
            held.reason("staging", SOAK)
                .unwrap()
                .contains("45m of 1h00m to go")
        );
        assert_eq!(gate(&[new], None, &upstream, &[], 11 * HOUR), Gate::Open);
    }

    #[test]
    fn only_packs_that_change_are_gated() {
        let same = pack("baseline", "v1");
        let changed = pack("support", "v2");
        let running = deployment(&[&same, &pack("support", "v1")], 0);
        let upstream = [deployment(&[&same, &changed], 10 * HOUR)];
        let Gate::Held(waiting) = gate(
            &[same, changed],
            Some(running.clone()),
            &upstream,
            &[],
            10 * HOUR,
        ) else {
            panic!("held")
        };
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].pack, "support");
    }

    #[test]
    fn a_version_the_environment_ran_before_is_not_held() {
        let old = pack("support", "v1");
        let history = [
            deployment(&[&pack("support", "v2")], 20 * HOUR),
            deployment(&[&old], 10 * HOUR),
        ];
        let upstream = Upstream {
            environment: "staging",
            deployments: &[],
            drift: &[],
        };
        assert_eq!(
            check(&[old], &history, &upstream, SOAK, 30 * HOUR),
            Gate::Open
        );
    }

    #[test]
    fn a_digest_upstream_no_longer_runs_is_not_promotable() {
        let old = pack("support", "v1");
        let upstream = [
            deployment(&[&pack("support", "v2")], 20 * HOUR),
            deployment(&[&old], 10 * HOUR),
        ];
        let Gate::Held(waiting) = gate(&[old], None, &upstream, &[], 30 * HOUR) else {
            panic!("held")
        };
        assert_eq!(waiting[0].missing, Missing::NotUpstream);
    }

    #[test]
    fn the_soak_counts_from_the_first_of_a_run_of_deployments() {
        let new = pack("support", "v2");
        let other = pack("models", "a");
        // Two deployments both carrying the pack: the soak began at the older.
        let upstream = [
            deployment(&[&new, &pack("models", "b")], 10 * HOUR + HOUR / 2),
            deployment(&[&new, &other], 10 * HOUR),
        ];
        assert_eq!(gate(&[new], None, &upstream, &[], 11 * HOUR), Gate::Open);
    }

    #[test]
    fn upstream_drift_holds_and_restarts_the_soak() {
        let new = pack("support", "v2");
        let upstream = [deployment(&[&new], 10 * HOUR)];
        let open_drift = [episode(10 * HOUR + 1, None)];
        let Gate::Held(waiting) = gate(
            std::slice::from_ref(&new),
            None,
            &upstream,
            &open_drift,
            12 * HOUR,
        ) else {
            panic!("held")
        };
        assert_eq!(waiting[0].missing, Missing::UpstreamDrifting);
        let healed = [episode(10 * HOUR + 1, Some(11 * HOUR))];
        assert!(matches!(
            gate(
                std::slice::from_ref(&new),
                None,
                &upstream,
                &healed,
                11 * HOUR + HOUR / 2
            ),
            Gate::Held(_)
        ));
        assert_eq!(
            gate(&[new], None, &upstream, &healed, 12 * HOUR),
            Gate::Open
        );
    }
}
