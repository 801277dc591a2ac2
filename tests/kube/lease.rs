//! Leader election (`sluice::k8s::LeaderElection`) against the real API
//! server, with short timings: lease 3s, renew deadline 2s, retry 200ms.
//! Outcomes are awaited by polling with deadlines, never by fixed sleeps.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::{
        coordination::v1::{Lease, LeaseSpec},
        core::v1::ServiceAccount,
        rbac::v1::{PolicyRule, Role, RoleBinding},
    },
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{DeleteParams, PostParams},
};
use sluice::k8s::{LeaderElection, LeaseError};
use tokio::{sync::oneshot, task::JoinHandle};

use crate::env::{self, api_status, eventually, within};

const NAMESPACE: &str = "default";
const LEASE: Duration = Duration::from_secs(3);
const RENEW: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(200);

/// What a candidate's work has done.
#[derive(Default)]
struct Probe {
    started: AtomicBool,
    finished: AtomicBool,
    /// Set when the work future is dropped, finished or cancelled.
    stopped: AtomicBool,
}

impl Probe {
    fn started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }
    fn cancelled(&self) -> bool {
        self.stopped.load(Ordering::SeqCst) && !self.finished.load(Ordering::SeqCst)
    }
}

struct SetOnDrop(Arc<Probe>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.stopped.store(true, Ordering::SeqCst);
    }
}

/// One elector running `run` in its own task, with work that lasts until
/// `finish` is sent.
struct Candidate {
    identity: String,
    election: Arc<LeaderElection>,
    probe: Arc<Probe>,
    finish: Option<oneshot::Sender<()>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), LeaseError>>,
}

impl Candidate {
    fn start(client: &Client, lease: &str, identity: &str) -> Self {
        let election = Arc::new(
            LeaderElection::new(client.clone(), NAMESPACE, lease, identity)
                .with_timing(LEASE, RENEW, RETRY),
        );
        let probe = Arc::new(Probe::default());
        let (finish, finish_rx) = oneshot::channel::<()>();
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let work = {
            let probe = probe.clone();
            async move {
                let _stopped = SetOnDrop(probe.clone());
                probe.started.store(true, Ordering::SeqCst);
                let _ = finish_rx.await;
                probe.finished.store(true, Ordering::SeqCst);
            }
        };
        let task = tokio::spawn({
            let election = election.clone();
            async move {
                election
                    .run(work, async {
                        let _ = shutdown_rx.await;
                    })
                    .await
            }
        });
        Self {
            identity: identity.to_owned(),
            election,
            probe,
            finish: Some(finish),
            shutdown: Some(shutdown),
            task,
        }
    }

    fn leads(&self) -> bool {
        self.election.is_leader() && self.probe.started()
    }

    fn finish_work(&mut self) {
        self.finish
            .take()
            .expect("work not finished yet")
            .send(())
            .ok();
    }

    fn shut_down(&mut self) {
        self.shutdown
            .take()
            .expect("not shut down yet")
            .send(())
            .ok();
    }

    /// `run`'s result, waited for with a deadline.
    async fn outcome(&mut self, secs: u64) -> Result<(), LeaseError> {
        within(
            secs,
            &format!("{} returning from run", self.identity),
            &mut self.task,
        )
        .await
        .expect("the run task panicked")
    }
}

impl Drop for Candidate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Wait until the Lease's holder has renewed it once more (renewTime changed),
/// so that an elector started before has had time for its first look.
async fn renewed_once_more(leases: &Api<Lease>, name: &str) {
    let before = spec(leases, name).await.renew_time;
    within(10, "the leader renewing", async {
        while spec(leases, name).await.renew_time == before {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

async fn spec(leases: &Api<Lease>, name: &str) -> LeaseSpec {
    leases
        .get(name)
        .await
        .expect("reading the Lease")
        .spec
        .expect("a Lease spec")
}

fn holder(spec: &LeaseSpec) -> Option<&str> {
    spec.holder_identity.as_deref().filter(|h| !h.is_empty())
}

async fn delete(leases: &Api<Lease>, name: &str) {
    leases
        .delete(name, &DeleteParams::default())
        .await
        .expect("deleting the Lease");
}

#[tokio::test]
async fn lease_two_electors_exactly_one_leads() {
    let Some(client) = env::client().await else {
        return;
    };
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let name = env::unique_name("lease-one");
    // Both start on an absent Lease: both try to create it, one gets 409.
    let a = Candidate::start(&client, &name, "sluice-a");
    let b = Candidate::start(&client, &name, "sluice-b");
    eventually(10, "one elector leading", &(), || async {
        (a.leads() || b.leads()).then_some(())
    })
    .await;
    let (leader, follower) = if a.leads() { (&a, &b) } else { (&b, &a) };

    // For longer than the lease duration, through many renewals, exactly one
    // runs its work and is_leader agrees.
    let watch_until = Instant::now() + LEASE + Duration::from_secs(1);
    while Instant::now() < watch_until {
        assert!(leader.election.is_leader() && leader.probe.started());
        assert!(!follower.election.is_leader(), "two leaders");
        assert!(!follower.probe.started(), "the follower ran its work");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let spec = spec(&leases, &name).await;
    assert_eq!(holder(&spec), Some(leader.identity.as_str()), "{spec:?}");
    assert_eq!(spec.lease_transitions, Some(0), "{spec:?}");
    assert_eq!(spec.lease_duration_seconds, Some(3), "{spec:?}");
    assert!(spec.acquire_time.is_some() && spec.renew_time.is_some());

    drop((a, b));
    delete(&leases, &name).await;
}

#[tokio::test]
async fn lease_handover_when_work_ends_is_quick() {
    let Some(client) = env::client().await else {
        return;
    };
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let name = env::unique_name("lease-handover");
    let mut a = Candidate::start(&client, &name, "sluice-a");
    eventually(10, "sluice-a leading", &(), || async {
        (a.leads()).then_some(())
    })
    .await;
    let b = Candidate::start(&client, &name, "sluice-b");
    renewed_once_more(&leases, &name).await;
    assert!(!b.election.is_leader());

    a.finish_work();
    let ended = Instant::now();
    a.outcome(10)
        .await
        .expect("run returns Ok when the work ends");
    assert!(!a.election.is_leader());
    eventually(10, "sluice-b leading", &(), || async {
        (b.leads()).then_some(())
    })
    .await;
    let took = ended.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "handover took {took:?}; a released lease must not wait out its {LEASE:?}"
    );
    let spec = spec(&leases, &name).await;
    assert_eq!(holder(&spec), Some("sluice-b"), "{spec:?}");
    assert_eq!(spec.lease_transitions, Some(1), "{spec:?}");

    drop(b);
    delete(&leases, &name).await;
}

#[tokio::test]
async fn lease_shutdown_cancels_work_and_releases() {
    let Some(client) = env::client().await else {
        return;
    };
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let name = env::unique_name("lease-shutdown");
    let mut a = Candidate::start(&client, &name, "sluice-a");
    eventually(10, "sluice-a leading", &(), || async {
        (a.leads()).then_some(())
    })
    .await;

    a.shut_down();
    a.outcome(10).await.expect("run returns Ok on shutdown");
    assert!(a.probe.cancelled(), "shutdown must cancel the work");
    assert!(!a.election.is_leader());
    let released = spec(&leases, &name).await;
    assert_eq!(holder(&released), None, "{released:?}");

    // A successor takes the released Lease at once.
    let b = Candidate::start(&client, &name, "sluice-b");
    let started = Instant::now();
    eventually(10, "sluice-b leading", &(), || async {
        (b.leads()).then_some(())
    })
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert_eq!(spec(&leases, &name).await.lease_transitions, Some(1));

    // Shutdown while waiting: run stops waiting and returns Ok.
    let mut c = Candidate::start(&client, &name, "sluice-c");
    c.shut_down();
    c.outcome(10).await.expect("run returns Ok on shutdown");
    assert!(!c.probe.started());
    assert_eq!(
        holder(&spec(&leases, &name).await),
        Some("sluice-b"),
        "a waiting elector's shutdown must not touch the Lease"
    );

    drop(b);
    delete(&leases, &name).await;
}

#[tokio::test]
async fn lease_dead_leader_is_replaced_after_the_lease_duration() {
    let Some(client) = env::client().await else {
        return;
    };
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let name = env::unique_name("lease-dead");
    let a = Candidate::start(&client, &name, "sluice-a");
    eventually(10, "sluice-a leading", &(), || async {
        (a.leads()).then_some(())
    })
    .await;
    let b = Candidate::start(&client, &name, "sluice-b");
    renewed_once_more(&leases, &name).await;
    assert!(!b.election.is_leader());

    // sluice-a dies: its task is aborted, so it neither renews nor releases.
    a.task.abort();
    let died = Instant::now();
    eventually(10, "sluice-a's work dropped", &(), || async {
        (a.probe.cancelled()).then_some(())
    })
    .await;
    assert!(!a.election.is_leader());
    assert_eq!(holder(&spec(&leases, &name).await), Some("sluice-a"));

    eventually(15, "sluice-b leading", &(), || async {
        (b.leads()).then_some(())
    })
    .await;
    let took = died.elapsed();
    // sluice-b counts the duration from when it last saw the record change:
    // at most one retry period (plus a request) before the death.
    assert!(
        took >= LEASE - 2 * RETRY,
        "took over after {took:?}, before the {LEASE:?} lease could expire"
    );
    assert!(
        took < LEASE + RENEW + Duration::from_secs(1),
        "took over only after {took:?}"
    );
    let spec = spec(&leases, &name).await;
    assert_eq!(holder(&spec), Some("sluice-b"), "{spec:?}");
    assert_eq!(spec.lease_transitions, Some(1), "{spec:?}");

    drop(b);
    delete(&leases, &name).await;
}

#[tokio::test]
async fn lease_stolen_from_the_leader_cancels_its_work() {
    let Some(client) = env::client().await else {
        return;
    };
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let name = env::unique_name("lease-stolen");
    let mut a = Candidate::start(&client, &name, "sluice-a");
    eventually(10, "sluice-a leading", &(), || async {
        (a.leads()).then_some(())
    })
    .await;

    // A rival writes itself in as holder, as another elector would: with the
    // resourceVersion it read, retrying when sluice-a renewed in between.
    within(10, "stealing the Lease", async {
        loop {
            let mut lease = leases.get(&name).await.expect("reading the Lease");
            let spec = lease.spec.as_mut().expect("spec");
            spec.holder_identity = Some("rival".into());
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            match leases.replace(&name, &PostParams::default(), &lease).await {
                Ok(_) => break,
                Err(err) if api_status(&err) == Some(409) => continue,
                Err(err) => panic!("replacing the Lease: {err}"),
            }
        }
    })
    .await;
    let stolen = Instant::now();

    // Noticed at the next renewal (one retry period), not after a deadline.
    let outcome = a.outcome(10).await;
    let took = stolen.elapsed();
    assert!(matches!(outcome, Err(LeaseError::Lost)), "{outcome:?}");
    assert!(took < RENEW, "noticed only after {took:?}");
    assert!(
        a.probe.cancelled(),
        "the lost leader's work must be cancelled"
    );
    assert!(!a.election.is_leader());
    // A leader that lost does not release what is no longer its own.
    assert_eq!(holder(&spec(&leases, &name).await), Some("rival"));

    delete(&leases, &name).await;
}

#[tokio::test]
async fn lease_renewal_failing_past_the_deadline_loses_leadership() {
    let Some(admin) = env::client().await else {
        return;
    };
    let leases: Api<Lease> = Api::namespaced(admin.clone(), NAMESPACE);
    let name = env::unique_name("lease-forbidden");

    // The chart's Role for leader election: create any Lease, and only
    // get/update/patch the named one (no list, no watch, no delete).
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), NAMESPACE);
    let token = env::service_account_token(&accounts, named(&name)).await;
    let lease_rule = |verbs: &[&str], names: Option<Vec<String>>| PolicyRule {
        api_groups: Some(vec!["coordination.k8s.io".into()]),
        resources: Some(vec!["leases".into()]),
        resource_names: names,
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        ..PolicyRule::default()
    };
    env::grant(
        &admin,
        NAMESPACE,
        named(&name),
        vec![
            lease_rule(&["create"], None),
            lease_rule(&["get", "update", "patch"], Some(vec![name.clone()])),
        ],
    )
    .await;
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), NAMESPACE);

    // The elector retries through the 403s until the authorizer has seen the
    // binding, then creates the Lease and leads.
    let as_account = env::client_with_token(&token).await;
    let mut a = Candidate::start(&as_account, &name, "sluice-a");
    eventually(
        30,
        "sluice-a leading with the chart's Role",
        &(),
        || async { a.leads().then_some(()) },
    )
    .await;
    renewed_once_more(&leases, &name).await;

    // Renewals start failing (403) once the binding is gone; after the renew
    // deadline without a renewal the leader gives up.
    bindings
        .delete(&name, &DeleteParams::default())
        .await
        .expect("deleting the RoleBinding");
    let outcome = a.outcome(30).await;
    assert!(matches!(outcome, Err(LeaseError::Lost)), "{outcome:?}");
    assert!(
        a.probe.cancelled(),
        "the lost leader's work must be cancelled"
    );
    assert!(!a.election.is_leader());
    let spec = spec(&leases, &name).await;
    assert_eq!(holder(&spec), Some("sluice-a"), "{spec:?}");
    let last_renewal = spec.renew_time.expect("renewTime").0;
    let unrenewed = Timestamp::now().duration_since(last_renewal);
    assert!(
        unrenewed >= k8s_openapi::jiff::SignedDuration::try_from(RENEW - RETRY).expect("small"),
        "gave up {unrenewed:?} after the last renewal, before the {RENEW:?} renew deadline"
    );

    let dp = DeleteParams::default();
    let roles: Api<Role> = Api::namespaced(admin.clone(), NAMESPACE);
    roles.delete(&name, &dp).await.expect("deleting the Role");
    accounts
        .delete(&name, &dp)
        .await
        .expect("deleting the ServiceAccount");
    delete(&leases, &name).await;
}

fn named(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    }
}
