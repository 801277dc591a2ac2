//! Leader election on a `coordination.k8s.io/v1` Lease, with the semantics of
//! client-go's `leaderelection`, so that one `sluice controller` replica
//! reconciles at a time.
//!
//! ```text
//!            ┌──────── every retry period (jittered) ───────┐
//!            ▼                                               │
//!   waiting: read the Lease ── held by another, not expired ─┘
//!            │  absent / holder empty / expired
//!            ▼
//!   create or replace (with the resourceVersion read; 409 = someone else won)
//!            │
//!            ▼
//!   leading: run `work` ◄── renew every retry period ──► lost: drop `work`,
//!            │              (another holder, or no         Err(Lost)
//!            │               renewal for the renew deadline)
//!            ▼
//!   `work` ends / shutdown: drop `work`, clear holderIdentity (released)
//! ```
//!
//! Expiry is judged by the local clock, never by the remote `renewTime`: an
//! elector remembers when it last saw the Lease's record change, and a holder
//! that has not renewed for `leaseDurationSeconds` since then is gone. The
//! decisions ([`standing`], [`claim`], [`released`]) are pure functions, tested
//! without I/O; [`LeaderElection`] is the thin loop around them.

use std::{
    future::Future,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{Api, api::PostParams};

/// Default time a holder's lease lasts without renewal (client-go's default).
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// Default time a leader keeps trying to renew before it gives up leading.
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// Default wait between attempts to acquire or renew.
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);

/// How leader election ends other than by `work` finishing or shutdown.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Leadership was lost while `work` ran: the renewal failed past the
    /// renew deadline, or another holder took the Lease. `work` was cancelled.
    #[error(
        "lost the leader lease (another holder took it, or it could not be renewed \
         within the renew deadline); the work was stopped"
    )]
    Lost,
}

/// Leader election for one identity on one Lease.
///
/// Share it (e.g. in an `Arc`) to ask [`is_leader`](Self::is_leader) while
/// [`run`](Self::run) is going.
#[derive(Debug)]
pub struct LeaderElection {
    leases: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    lease_duration: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
    leading: AtomicBool,
}

impl LeaderElection {
    /// Election on the Lease `namespace/name` as `identity`, which must be
    /// unique per process (e.g. `"<hostname>-<pid>-<random>"`).
    pub fn new(client: kube::Client, namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            leases: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity: identity.to_owned(),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_deadline: DEFAULT_RENEW_DEADLINE,
            retry_period: DEFAULT_RETRY_PERIOD,
            leading: AtomicBool::new(false),
        }
    }

    /// Overrides for tests: lease duration (default 15s), renew deadline
    /// (10s), retry period (2s).
    ///
    /// # Panics
    ///
    /// Unless `lease > renew > retry > 0`, as client-go requires: a leader
    /// must give up before its lease can expire under it.
    pub fn with_timing(self, lease: Duration, renew: Duration, retry: Duration) -> Self {
        assert!(
            lease > renew && renew > retry && !retry.is_zero(),
            "leader election needs lease duration > renew deadline > retry period > 0, \
             got {lease:?}, {renew:?}, {retry:?}"
        );
        Self {
            lease_duration: lease,
            renew_deadline: renew,
            retry_period: retry,
            ..self
        }
    }

    /// Waits until this process holds the lease, then runs `work` while
    /// renewing it; returns when `work` ends (releasing the lease:
    /// holderIdentity cleared so a successor need not wait out the duration)
    /// or when leadership is lost (renewal failed past the renew deadline, or
    /// another holder took it) — then `work` is dropped (cancelled) and
    /// `Err(LeaseError::Lost)` returned. `shutdown` resolving stops waiting /
    /// stops work and releases the lease.
    pub async fn run<F: Future<Output = ()>>(
        &self,
        work: F,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), LeaseError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut observed = None;

        let acquired = tokio::select! {
            () = &mut shutdown => false,
            () = self.acquire(&mut observed) => true,
        };
        if !acquired {
            // NB: shutdown may have cut off a write that did take the Lease;
            // release only clears it if it names us.
            self.release().await;
            return Ok(());
        }

        let flag = LeadingFlag::raise(&self.leading);
        tracing::info!(identity = %self.identity, lease = %self.lease_ref(), "acquired the leader lease");
        let mut last_renewal = Instant::now();
        let mut work = Box::pin(work);
        let ending = loop {
            tokio::select! {
                () = &mut work => break Ending::WorkDone,
                () = &mut shutdown => break Ending::Shutdown,
                renewal = self.renew(&mut observed, last_renewal) => match renewal {
                    Renewal::Renewed(at) => last_renewal = at,
                    Renewal::Retry => {}
                    Renewal::Lost(reason) => break Ending::Lost(reason),
                },
            }
        };
        // NB: the work stops before anyone else can start leading.
        drop(work);
        drop(flag);
        match ending {
            Ending::Lost(reason) => {
                tracing::warn!(
                    identity = %self.identity,
                    lease = %self.lease_ref(),
                    %reason,
                    "lost the leader lease; work stopped"
                );
                Err(LeaseError::Lost)
            }
            Ending::WorkDone | Ending::Shutdown => {
                self.release().await;
                Ok(())
            }
        }
    }

    /// Whether this process holds the lease right now (for /readyz or metrics).
    pub fn is_leader(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    /// Try until this process holds the Lease.
    async fn acquire(&self, observed: &mut Option<Observed>) {
        loop {
            match self.try_acquire_or_renew(observed).await {
                Ok(Attempt::Holding) => return,
                Ok(Attempt::HeldBy(holder)) => {
                    tracing::debug!(identity = %self.identity, lease = %self.lease_ref(), %holder, "the leader lease is held; waiting");
                }
                Ok(Attempt::Conflict) => {
                    tracing::debug!(identity = %self.identity, lease = %self.lease_ref(), "another elector wrote the lease first; waiting");
                }
                Err(error) => {
                    tracing::warn!(identity = %self.identity, lease = %self.lease_ref(), %error, "cannot acquire the leader lease; retrying");
                }
            }
            // client-go's jitter factor 1.2: electors do not retry in step.
            let jitter = self.retry_period.mul_f64(0.2 * rand::random::<f64>());
            tokio::time::sleep(self.retry_period + jitter).await;
        }
    }

    /// One renewal, a retry period after the last attempt.
    async fn renew(&self, observed: &mut Option<Observed>, last_renewal: Instant) -> Renewal {
        tokio::time::sleep(self.retry_period).await;
        let deadline = last_renewal + self.renew_deadline;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let failure =
            match tokio::time::timeout(remaining, self.try_acquire_or_renew(observed)).await {
                Ok(Ok(Attempt::Holding)) => return Renewal::Renewed(Instant::now()),
                Ok(Ok(Attempt::HeldBy(holder))) => {
                    return Renewal::Lost(format!("the lease is now held by {holder:?}"));
                }
                Ok(Ok(Attempt::Conflict)) => "another writer changed the lease".to_owned(),
                Ok(Err(error)) => error.to_string(),
                Err(_elapsed) => "the renewal did not finish in time".to_owned(),
            };
        if Instant::now() >= deadline {
            Renewal::Lost(format!(
                "not renewed within the renew deadline of {:?}: {failure}",
                self.renew_deadline
            ))
        } else {
            tracing::warn!(identity = %self.identity, lease = %self.lease_ref(), %failure, "cannot renew the leader lease; retrying");
            Renewal::Retry
        }
    }

    /// Read the Lease and, if it is ours or free, write ourselves in as holder
    /// with the resourceVersion read.
    async fn try_acquire_or_renew(
        &self,
        observed: &mut Option<Observed>,
    ) -> Result<Attempt, kube::Error> {
        let Some(current) = self.leases.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    namespace: Some(self.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(claim(None, &self.identity, self.lease_duration, now())),
            };
            return match self.leases.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    *observed = Some(Observed::new(created.spec.unwrap_or_default()));
                    Ok(Attempt::Holding)
                }
                Err(error) if is_conflict(&error) => Ok(Attempt::Conflict),
                Err(error) => Err(error),
            };
        };

        let spec = current.spec.clone().unwrap_or_default();
        let seen = match observed.take() {
            Some(seen) if seen.spec == spec => seen,
            _ => Observed::new(spec),
        };
        let standing = standing(
            &seen.spec,
            seen.at,
            Instant::now(),
            &self.identity,
            self.lease_duration,
        );
        if let Standing::HeldBy(holder) = standing {
            *observed = Some(seen);
            return Ok(Attempt::HeldBy(holder));
        }
        let claimed = claim(Some(&seen.spec), &self.identity, self.lease_duration, now());
        *observed = Some(seen);

        let mut lease = current;
        lease.spec = Some(claimed);
        match self
            .leases
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                *observed = Some(Observed::new(written.spec.unwrap_or_default()));
                Ok(Attempt::Holding)
            }
            Err(error) if is_conflict(&error) => Ok(Attempt::Conflict),
            Err(error) => Err(error),
        }
    }

    /// Clear holderIdentity if the Lease names us, so a successor need not
    /// wait out the lease duration. Best effort, within the renew deadline.
    async fn release(&self) {
        let outcome = tokio::time::timeout(self.renew_deadline, async {
            loop {
                let Some(mut lease) = self.leases.get_opt(&self.name).await? else {
                    return Ok(false);
                };
                let spec = lease.spec.clone().unwrap_or_default();
                if holder(&spec) != Some(self.identity.as_str()) {
                    return Ok(false);
                }
                lease.spec = Some(released(&spec, now()));
                match self
                    .leases
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => return Ok(true),
                    // Changed since we read it: read again.
                    Err(error) if is_conflict(&error) => continue,
                    Err(error) => return Err(error),
                }
            }
        })
        .await;
        match outcome {
            Ok(Ok(true)) => {
                tracing::info!(identity = %self.identity, lease = %self.lease_ref(), "released the leader lease");
            }
            Ok(Ok(false)) => {}
            Ok(Err(error)) => {
                tracing::warn!(identity = %self.identity, lease = %self.lease_ref(), %error, "cannot release the leader lease; it expires after its duration");
            }
            Err(_elapsed) => {
                tracing::warn!(identity = %self.identity, lease = %self.lease_ref(), "releasing the leader lease timed out; it expires after its duration");
            }
        }
    }

    fn lease_ref(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The Lease's record as last seen, and when it was first seen like that by
/// the local clock.
#[derive(Debug)]
struct Observed {
    spec: LeaseSpec,
    at: Instant,
}

impl Observed {
    fn new(spec: LeaseSpec) -> Self {
        Self {
            spec,
            at: Instant::now(),
        }
    }
}

enum Attempt {
    /// We hold the Lease, freshly written.
    Holding,
    /// Another live holder has it.
    HeldBy(String),
    /// Someone else wrote between our read and our write (409).
    Conflict,
}

enum Renewal {
    Renewed(Instant),
    Retry,
    Lost(String),
}

enum Ending {
    WorkDone,
    Shutdown,
    Lost(String),
}

/// `is_leader` is true exactly while this lives, even if `run` is dropped.
struct LeadingFlag<'a>(&'a AtomicBool);

impl<'a> LeadingFlag<'a> {
    fn raise(flag: &'a AtomicBool) -> Self {
        flag.store(true, Ordering::SeqCst);
        Self(flag)
    }
}

impl Drop for LeadingFlag<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Who may hold a Lease, as one elector sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// The record names this elector.
    Ours,
    /// No holder, or the holder has not renewed for the lease duration.
    Free,
    /// Another holder, renewed within the lease duration.
    HeldBy(String),
}

/// Where `identity` stands on a Lease whose record `spec` was first seen
/// (unchanged since) at `observed_at`, judged at `now` by the local clock.
/// The record's `leaseDurationSeconds` counts, or `default_duration` when it
/// has none.
pub fn standing(
    spec: &LeaseSpec,
    observed_at: Instant,
    now: Instant,
    identity: &str,
    default_duration: Duration,
) -> Standing {
    let Some(holder) = holder(spec) else {
        return Standing::Free;
    };
    if holder == identity {
        return Standing::Ours;
    }
    let duration = spec
        .lease_duration_seconds
        .and_then(|secs| u64::try_from(secs).ok())
        .map_or(default_duration, Duration::from_secs);
    if observed_at + duration > now {
        Standing::HeldBy(holder.to_owned())
    } else {
        Standing::Free
    }
}

/// The record `identity` writes to take or renew a Lease whose current record
/// is `current` (`None`: the Lease does not exist yet). A renewal keeps
/// acquireTime and leaseTransitions; a change of holder counts a transition.
pub fn claim(
    current: Option<&LeaseSpec>,
    identity: &str,
    lease_duration: Duration,
    now: MicroTime,
) -> LeaseSpec {
    let seconds = i32::try_from(lease_duration.as_secs_f64().ceil() as u64)
        .unwrap_or(i32::MAX)
        .max(1);
    let Some(current) = current else {
        return LeaseSpec {
            holder_identity: Some(identity.to_owned()),
            lease_duration_seconds: Some(seconds),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        };
    };
    let renewing = holder(current) == Some(identity);
    LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        lease_duration_seconds: Some(seconds),
        acquire_time: if renewing {
            current.acquire_time.clone().or_else(|| Some(now.clone()))
        } else {
            Some(now.clone())
        },
        renew_time: Some(now),
        lease_transitions: Some(if renewing {
            current.lease_transitions.unwrap_or(0)
        } else {
            current.lease_transitions.unwrap_or(0).saturating_add(1)
        }),
        ..current.clone()
    }
}

/// The record a holder writes to give a Lease up: no holder, and (as
/// client-go) a one-second duration, so that nobody waits on it.
pub fn released(current: &LeaseSpec, now: MicroTime) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        renew_time: Some(now),
        ..current.clone()
    }
}

/// The holder named by a record; an empty holderIdentity is none.
fn holder(spec: &LeaseSpec) -> Option<&str> {
    spec.holder_identity.as_deref().filter(|h| !h.is_empty())
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn held_by(holder: &str, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: Some(seconds),
            acquire_time: Some(time(100)),
            renew_time: Some(time(100)),
            lease_transitions: Some(4),
            ..LeaseSpec::default()
        }
    }

    fn time(seconds: i64) -> MicroTime {
        MicroTime(Timestamp::from_second(seconds).expect("a valid timestamp"))
    }

    #[test]
    fn another_holder_is_live_until_the_duration_has_passed_since_observation() {
        let seen = Instant::now();
        let spec = held_by("b", 15);
        for (after, expected) in [
            (Duration::ZERO, Standing::HeldBy("b".into())),
            (14 * SECOND, Standing::HeldBy("b".into())),
            (
                15 * SECOND - Duration::from_millis(1),
                Standing::HeldBy("b".into()),
            ),
            (15 * SECOND, Standing::Free),
            (60 * SECOND, Standing::Free),
        ] {
            assert_eq!(
                standing(&spec, seen, seen + after, "a", 3 * SECOND),
                expected,
                "{after:?} after observation"
            );
        }
    }

    #[test]
    fn expiry_ignores_the_remote_renew_time() {
        // A renewTime far in the past (a skewed remote clock) does not make a
        // lease we only just saw change expired; only local time counts.
        let seen = Instant::now();
        let mut spec = held_by("b", 15);
        spec.renew_time = Some(time(0));
        assert_eq!(
            standing(&spec, seen, seen + SECOND, "a", 3 * SECOND),
            Standing::HeldBy("b".into())
        );
    }

    #[test]
    fn the_record_duration_counts_and_the_default_fills_in() {
        let seen = Instant::now();
        let mut spec = held_by("b", 1);
        assert_eq!(
            standing(&spec, seen, seen + 2 * SECOND, "a", 30 * SECOND),
            Standing::Free
        );
        spec.lease_duration_seconds = None;
        assert_eq!(
            standing(&spec, seen, seen + 2 * SECOND, "a", 30 * SECOND),
            Standing::HeldBy("b".into())
        );
        assert_eq!(
            standing(&spec, seen, seen + 30 * SECOND, "a", 30 * SECOND),
            Standing::Free
        );
    }

    #[test]
    fn an_empty_or_missing_holder_is_free_and_our_own_is_ours() {
        let seen = Instant::now();
        let mut spec = held_by("", 15);
        assert_eq!(standing(&spec, seen, seen, "a", SECOND), Standing::Free);
        spec.holder_identity = None;
        assert_eq!(standing(&spec, seen, seen, "a", SECOND), Standing::Free);
        let spec = held_by("a", 15);
        assert_eq!(standing(&spec, seen, seen, "a", SECOND), Standing::Ours);
        assert_eq!(
            standing(&spec, seen, seen + 60 * SECOND, "a", SECOND),
            Standing::Ours
        );
    }

    #[test]
    fn creating_starts_at_zero_transitions() {
        let spec = claim(None, "a", 15 * SECOND, time(200));
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.lease_transitions, Some(0));
        assert_eq!(spec.acquire_time, Some(time(200)));
        assert_eq!(spec.renew_time, Some(time(200)));
    }

    #[test]
    fn renewing_keeps_acquire_time_and_transitions() {
        let spec = claim(Some(&held_by("a", 15)), "a", 3 * SECOND, time(200));
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_duration_seconds, Some(3));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.acquire_time, Some(time(100)));
        assert_eq!(spec.renew_time, Some(time(200)));
    }

    #[test]
    fn taking_over_counts_a_transition() {
        for previous in [held_by("b", 15), released(&held_by("b", 15), time(150))] {
            let spec = claim(Some(&previous), "a", 15 * SECOND, time(200));
            assert_eq!(spec.holder_identity.as_deref(), Some("a"));
            assert_eq!(spec.lease_transitions, Some(5));
            assert_eq!(spec.acquire_time, Some(time(200)));
            assert_eq!(spec.renew_time, Some(time(200)));
        }
    }

    #[test]
    fn claiming_keeps_fields_it_does_not_own() {
        let mut previous = held_by("b", 15);
        previous.strategy = Some("OldestEmulationVersion".into());
        let spec = claim(Some(&previous), "a", 15 * SECOND, time(200));
        assert_eq!(spec.strategy.as_deref(), Some("OldestEmulationVersion"));
    }

    #[test]
    fn sub_second_durations_round_up_to_a_whole_second() {
        let spec = claim(None, "a", Duration::from_millis(300), time(200));
        assert_eq!(spec.lease_duration_seconds, Some(1));
        let spec = claim(None, "a", Duration::from_millis(2500), time(200));
        assert_eq!(spec.lease_duration_seconds, Some(3));
    }

    #[test]
    fn releasing_clears_the_holder_and_keeps_the_count() {
        let spec = released(&held_by("a", 15), time(300));
        assert_eq!(spec.holder_identity, None);
        assert_eq!(spec.lease_duration_seconds, Some(1));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.renew_time, Some(time(300)));
        let seen = Instant::now();
        assert_eq!(standing(&spec, seen, seen, "b", SECOND), Standing::Free);
    }

    #[tokio::test]
    #[should_panic(expected = "lease duration > renew deadline > retry period")]
    async fn timing_must_leave_the_leader_time_to_give_up() {
        let client = unreachable_client();
        let _ = LeaderElection::new(client, "default", "sluice", "a").with_timing(
            2 * SECOND,
            3 * SECOND,
            SECOND,
        );
    }

    #[tokio::test]
    async fn timing_defaults_and_overrides() {
        let election = LeaderElection::new(unreachable_client(), "ns", "sluice", "a");
        assert_eq!(election.lease_duration, DEFAULT_LEASE_DURATION);
        assert_eq!(election.renew_deadline, DEFAULT_RENEW_DEADLINE);
        assert_eq!(election.retry_period, DEFAULT_RETRY_PERIOD);
        assert!(!election.is_leader());
        let election = election.with_timing(3 * SECOND, 2 * SECOND, Duration::from_millis(200));
        assert_eq!(election.lease_duration, 3 * SECOND);
        assert_eq!(election.renew_deadline, 2 * SECOND);
        assert_eq!(election.retry_period, Duration::from_millis(200));
        assert_eq!(election.lease_ref(), "ns/sluice");
    }

    /// A client that is never used to send anything.
    fn unreachable_client() -> kube::Client {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("a URL"));
        kube::Client::try_from(config).expect("a client")
    }
}
