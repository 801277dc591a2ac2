//! The Deployment behind a `configmap` gateway (`deployment:` in
//! gateways.yaml). A gateway such as LiteLLM reads its config once, at
//! start, so a new ConfigMap changes nothing until its pods restart: after
//! writing it Sluice sets `sluice.dev/config-digest` on the Deployment's pod
//! template (a template change is a rolling restart, the way `kubectl
//! rollout restart` uses an annotation of its own) and waits for the
//! rollout by the rules of `kubectl rollout status`.
//!
//! ```text
//! ConfigMap written ─► pod template annotated ─► Deployment controller rolls ─► status: complete
//!                       (generation + 1)          (new ReplicaSet up, old down)   (observedGeneration, replicas)
//! ```
//!
//! Pure functions over the Deployment object; the driver does the calls.

use crate::config::Digest;
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};
use std::time::Duration;

/// The pod-template annotation carrying the digest the pods were started for.
pub const CONFIG_DIGEST_ANNOTATION: &str = "sluice.dev/config-digest";
/// The pod-template annotation a restart after a hand edit sets.
pub const RESTARTED_AT_ANNOTATION: &str = "sluice.dev/restarted-at";
/// How long a rollout may take when `rolloutTimeout` does not say.
pub const DEFAULT_ROLLOUT_TIMEOUT: Duration = Duration::from_secs(300);

/// Where a Deployment's rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Every replica runs the current pod template and is available.
    Complete,
    /// Still rolling; says what it waits for.
    Waiting(String),
    /// The Deployment controller gave up (`progressDeadlineSeconds` passed).
    Failed(String),
}

/// Where `deployment`'s rollout stands, as `kubectl rollout status` judges
/// it: the controller has seen the current template (`observedGeneration`),
/// every wanted replica is updated, no old one is left, every updated one
/// is available.
pub fn progress(deployment: &Deployment) -> Progress {
    let generation = deployment.metadata.generation.unwrap_or(0);
    let Some(status) = deployment.status.as_ref() else {
        return Progress::Waiting("the Deployment has no status yet".into());
    };
    if status.observed_generation.unwrap_or(0) < generation {
        return Progress::Waiting(format!(
            "the Deployment controller has not seen generation {generation} yet"
        ));
    }
    let gave_up = status.conditions.iter().flatten().find(|c| {
        c.type_.as_deref() == Some("Progressing")
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if let Some(condition) = gave_up {
        return Progress::Failed(format!(
            "it exceeded its progress deadline: {}",
            condition.message.as_deref().unwrap_or("no message")
        ));
    }
    // NB: a Deployment without `replicas` wants one.
    let wanted = deployment.spec.replicas.unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < wanted {
        Progress::Waiting(format!("{updated} of {wanted} replicas updated"))
    } else if replicas > updated {
        Progress::Waiting(format!(
            "{} old replicas pending termination",
            replicas - updated
        ))
    } else if available < updated {
        Progress::Waiting(format!(
            "{available} of {updated} updated replicas available"
        ))
    } else {
        Progress::Complete
    }
}

/// The config digest `deployment`'s pod template carries.
pub fn template_digest(deployment: &Deployment) -> Option<&str> {
    deployment
        .spec
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(CONFIG_DIGEST_ANNOTATION)
        .map(String::as_str)
}

/// The merge patch that rolls a Deployment onto `digest`; `restarted_at`
/// (a time) restarts its pods even when the template already carries
/// `digest`: pods that started while the ConfigMap held a hand edit run
/// that edit, and an unchanged template would leave them running it.
pub fn patch(digest: &Digest, restarted_at: Option<&str>) -> Value {
    let mut annotations = json!({CONFIG_DIGEST_ANNOTATION: digest.as_str()});
    if let Some(at) = restarted_at {
        annotations[RESTARTED_AT_ANNOTATION] = at.into();
    }
    json!({"spec": {"template": {"metadata": {"annotations": annotations}}}})
}

/// The merge patch that puts back the annotations of Sluice's that the pod
/// template of `before` had (removing those it did not have): the
/// template as it was, so the previous ReplicaSet is scaled back up.
pub fn restore(before: &Deployment) -> Value {
    let annotations = before
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref());
    let value = |key: &str| {
        annotations
            .and_then(|a| a.get(key))
            .map_or(Value::Null, |v| Value::String(v.clone()))
    };
    json!({"spec": {"template": {"metadata": {"annotations": {
        CONFIG_DIGEST_ANNOTATION: value(CONFIG_DIGEST_ANNOTATION),
        RESTARTED_AT_ANNOTATION: value(RESTARTED_AT_ANNOTATION),
    }}}}})
}

/// What the pods of `deployment` run when its ConfigMap holds version
/// `held`, as Sluice wrote it: `held` once the pod template carries it and
/// the rollout is complete; the digest the template carries when that
/// rollout is complete (the pods started before the ConfigMap changed, or
/// were rolled back); `None` while a rollout is under way or stuck, for a
/// template Sluice never annotated, or without the Deployment. NB: `None`
/// says "not known", which the reconciler answers by applying again (the
/// patch is then a no-op and the apply waits for the rollout), not by
/// calling it drift: a rollout in progress is not a hand edit.
pub fn running(held: &Digest, deployment: Option<&Deployment>) -> Option<Digest> {
    let deployment = deployment?;
    if progress(deployment) != Progress::Complete {
        return None;
    }
    let annotated = template_digest(deployment)?;
    if annotated == held.as_str() {
        Some(held.clone())
    } else {
        Digest::parse(annotated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A Deployment of `wanted` replicas at `generation`, its template
    /// annotated with `annotated`, and the status `status` (observed
    /// generation, replicas, updated, available).
    fn deployment(
        wanted: i32,
        generation: i64,
        annotated: Option<&str>,
        status: Option<(i64, i32, i32, i32)>,
    ) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "litellm", "generation": generation},
            "spec": {
                "replicas": wanted,
                "selector": {"matchLabels": {"app": "litellm"}},
                "template": {"metadata": {
                    "labels": {"app": "litellm"},
                    "annotations": annotated.map(|a| json!({CONFIG_DIGEST_ANNOTATION: a})),
                }},
            },
            "status": status.map(|(observed, replicas, updated, available)| json!({
                "observedGeneration": observed,
                "replicas": replicas,
                "updatedReplicas": updated,
                "availableReplicas": available,
            })),
        }))
        .unwrap()
    }

    #[test]
    fn a_rollout_is_complete_as_kubectl_rollout_status_says() {
        let waiting = |d: &Deployment| matches!(progress(d), Progress::Waiting(_));
        assert!(waiting(&deployment(2, 3, None, None)), "no status yet");
        assert!(
            waiting(&deployment(2, 3, None, Some((2, 2, 2, 2)))),
            "the template change is not observed yet"
        );
        assert_eq!(
            progress(&deployment(2, 3, None, Some((3, 3, 1, 1)))),
            Progress::Waiting("1 of 2 replicas updated".into())
        );
        assert_eq!(
            progress(&deployment(2, 3, None, Some((3, 3, 2, 2)))),
            Progress::Waiting("1 old replicas pending termination".into())
        );
        assert_eq!(
            progress(&deployment(2, 3, None, Some((3, 2, 2, 1)))),
            Progress::Waiting("1 of 2 updated replicas available".into())
        );
        assert_eq!(
            progress(&deployment(2, 3, None, Some((3, 2, 2, 2)))),
            Progress::Complete
        );
        assert_eq!(
            progress(&deployment(0, 3, None, Some((3, 0, 0, 0)))),
            Progress::Complete,
            "scaled to zero"
        );

        let mut stuck = deployment(2, 3, None, Some((3, 3, 1, 2)));
        stuck.status.as_mut().unwrap().conditions = Some(vec![
            serde_json::from_value(json!({
                "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                "message": "ReplicaSet \"litellm-7d\" has timed out progressing.",
            }))
            .unwrap(),
        ]);
        assert!(
            matches!(progress(&stuck), Progress::Failed(m) if m.contains("timed out progressing"))
        );
    }

    #[test]
    fn pods_run_the_held_version_only_once_rolled_onto_it() {
        let held = Digest::of(b"new");
        let old = Digest::of(b"old");
        let done = Some((4, 1, 1, 1));
        let run = |d: Deployment| running(&held, Some(&d));
        assert_eq!(
            run(deployment(1, 4, Some(held.as_str()), done)),
            Some(held.clone())
        );
        // Rolled for an older version: the pods run that one.
        assert_eq!(run(deployment(1, 4, Some(old.as_str()), done)), Some(old));
        // Rolling, stuck, never annotated, or not a digest: not known.
        assert_eq!(
            run(deployment(1, 4, Some(held.as_str()), Some((3, 1, 1, 1)))),
            None
        );
        assert_eq!(
            run(deployment(1, 4, Some(held.as_str()), Some((4, 2, 1, 1)))),
            None
        );
        assert_eq!(run(deployment(1, 4, None, done)), None);
        assert_eq!(run(deployment(1, 4, Some("by hand"), done)), None);
        assert_eq!(running(&held, None), None);
    }

    /// `deployment` with `patch` merged over it, as the API server does.
    fn patched(deployment: &Deployment, patch: &Value) -> Deployment {
        let mut value = serde_json::to_value(deployment).unwrap();
        crate::config::merge::merge_patch(&mut value, patch);
        serde_json::from_value(value).unwrap()
    }

    fn annotations(deployment: &Deployment) -> BTreeMap<String, String> {
        let metadata = deployment.spec.template.metadata.clone();
        metadata.and_then(|m| m.annotations).unwrap_or_default()
    }

    #[test]
    fn the_patch_annotates_the_pod_template_and_restore_puts_it_back() {
        let digest = Digest::of(b"x");
        let before = deployment(1, 1, Some("sha256:old"), None);
        let once = patched(&before, &patch(&digest, None));
        assert_eq!(template_digest(&once), Some(digest.as_str()));
        assert_eq!(annotations(&once).len(), 1);
        // A restart after a hand edit changes the template even for the same digest.
        let again = patched(&once, &patch(&digest, Some("2026-12-01T23:30:00Z")));
        assert_eq!(template_digest(&again), Some(digest.as_str()));
        assert_eq!(
            annotations(&again)[RESTARTED_AT_ANNOTATION],
            "2026-12-01T23:30:00Z"
        );
        // Put back: the template as it was, the restart annotation removed.
        let back = patched(&again, &restore(&before));
        assert_eq!(annotations(&back), annotations(&before));
        let mut bare = before.clone();
        bare.spec.template.metadata = None;
        assert_eq!(template_digest(&bare), None);
        assert!(annotations(&patched(&again, &restore(&bare))).is_empty());
    }
}
