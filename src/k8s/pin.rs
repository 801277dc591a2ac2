//! Pins in Kubernetes mode: an `Environment`'s `spec.pin` is recorded in
//! its status ledger (who: `kubernetes`) and honoured by the reconciler;
//! removing the field unpins. Pinned revisions are read from the followed
//! repositories' caches.

use super::crd::EnvironmentPin;
use crate::{
    config::{self, Allowances, Limits, Loaded},
    ledger::{Ledger, Millis, Pin, PinEnd},
    reconcile::{
        Revisions,
        pin::{PinError, pin_in},
    },
    source::Follower,
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

/// Who a pin from `spec.pin` is recorded as.
pub const BY: &str = "kubernetes";

/// The followed repositories, by key, for loading pinned revisions (a
/// commit id names one commit in whichever repository has it).
pub struct ClusterRevisions {
    followers: Mutex<HashMap<String, Arc<Follower>>>,
    limits: Limits,
    allowances: Arc<Allowances>,
}

impl ClusterRevisions {
    pub fn new(limits: Limits, allowances: Arc<Allowances>) -> Self {
        ClusterRevisions {
            followers: Mutex::default(),
            limits,
            allowances,
        }
    }

    /// `follower` is where repository `key`'s revisions are now.
    pub fn follow(&self, key: String, follower: Arc<Follower>) {
        let mut followers = self.followers.lock().unwrap_or_else(|e| e.into_inner());
        followers.insert(key, follower);
    }
}

#[async_trait::async_trait]
impl Revisions for ClusterRevisions {
    async fn load(&self, commit: &str) -> Result<Arc<Loaded>, String> {
        let followers: Vec<Arc<Follower>> = {
            let followers = self.followers.lock().unwrap_or_else(|e| e.into_inner());
            followers.values().cloned().collect()
        };
        let (limits, allowances, wanted) =
            (self.limits, self.allowances.clone(), commit.to_owned());
        tokio::task::spawn_blocking(move || {
            let mut last = format!("no followed repository has commit {wanted}");
            for follower in followers {
                match follower.snapshot(&wanted) {
                    Ok(snapshot) => {
                        return config::load_with(&snapshot, &limits, &allowances)
                            .map(Arc::new)
                            .map_err(|e| e.to_string());
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            Err(last)
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// Whether the pin in place is the one `spec` asks for.
fn matches(pin: &Pin, spec: &EnvironmentPin) -> bool {
    let target = match (&spec.digest, &spec.revision) {
        (Some(digest), _) => pin
            .digest
            .as_str()
            .starts_with(&digest.to_ascii_lowercase()),
        (None, Some(revision)) => pin.revision.starts_with(&revision.to_ascii_lowercase()),
        (None, None) => true,
    };
    target && pin.by == BY && pin.reason == spec.reason
}

/// Brings environment `slug`'s pin in the ledger in line with `spec.pin`:
/// pins (or re-pins) when it asks for another, unpins a pin it made when
/// the field is gone. Pins made otherwise (the API) are left alone when
/// the field is absent.
pub fn follow_spec(
    ledger: &dyn Ledger,
    slug: &str,
    spec: Option<&EnvironmentPin>,
    now: Millis,
) -> Result<(), PinError> {
    let current = ledger.pins(Some(slug))?.into_iter().next();
    match (spec, current) {
        (Some(spec), Some(pin)) if matches(&pin, spec) => Ok(()),
        (Some(spec), _) => {
            let to = spec.digest.as_deref().or(spec.revision.as_deref());
            pin_in(ledger, slug, to, spec.reason.clone(), BY, now).map(drop)
        }
        (None, Some(pin)) if pin.by == BY => {
            ledger.unpin(slug, now, BY, PinEnd::Unpinned)?;
            Ok(())
        }
        (None, _) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Deployment, MemoryLedger};

    #[test]
    fn the_spec_pins_re_pins_and_unpins_only_its_own() {
        let ledger = MemoryLedger::new();
        for (digest, revision) in [("sha256:aaaa", "1111"), ("sha256:bbbb", "2222")] {
            ledger
                .record_deployment(&Deployment {
                    environment: "prod".into(),
                    revision: revision.repeat(10),
                    digest: format!("{digest}{}", "0".repeat(60)).into(),
                    packs: Vec::new(),
                    verified_at: 0,
                })
                .unwrap();
        }
        let spec = EnvironmentPin {
            digest: None,
            revision: Some("1111".into()),
            reason: Some("incident".into()),
        };
        follow_spec(&ledger, "prod", Some(&spec), 1).unwrap();
        follow_spec(&ledger, "prod", Some(&spec), 2).unwrap();
        assert_eq!(ledger.pin_history("prod", 10).unwrap().len(), 1, "once");
        let pin = ledger.pins(Some("prod")).unwrap().remove(0);
        assert!(pin.digest.as_str().starts_with("sha256:aaaa") && pin.by == BY);
        follow_spec(&ledger, "prod", None, 3).unwrap();
        assert!(ledger.pins(None).unwrap().is_empty());
        // A pin made through the API stays when the spec has none.
        pin_in(&ledger, "prod", None, None, "alice", 4).unwrap();
        follow_spec(&ledger, "prod", None, 5).unwrap();
        assert_eq!(ledger.pins(None).unwrap()[0].by, "alice");
        let never = EnvironmentPin {
            digest: Some("sha256:cccccccccccc".into()),
            revision: None,
            reason: None,
        };
        assert!(follow_spec(&ledger, "prod", Some(&never), 6).is_err());
    }
}
