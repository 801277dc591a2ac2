//! The runner: every suite against every gateway, bounded. Free of any
//! command-line concern, so `sluice eval`, eval environments and
//! promotion gates share it.
//!
//! NB: on one gateway, suites run one after another and the cases of a
//! suite in order, each suite after a reset of the gateway's runtime
//! state: rate limits count per gateway, and one suite's burst must not
//! throttle another's cases. Gateways run in parallel, at most
//! `concurrency` at once.

use super::{
    judge::{Difference, Observed, judge},
    suite::{FixtureFile, Suite, resolve},
};
use crate::gateway::{Gateway, GatewayError};
use futures::StreamExt;
use serde::Serialize;
use std::{collections::BTreeMap, sync::Arc};

/// How suites are run.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Gateways exercised at once (at least 1).
    pub concurrency: usize,
    /// Reset each gateway's runtime state before each suite.
    pub reset: bool,
}

impl RunOptions {
    /// `concurrency` gateways at once, resetting before each suite.
    pub fn new(concurrency: usize) -> RunOptions {
        RunOptions {
            concurrency,
            reset: true,
        }
    }
}

/// What every suite did on every gateway.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EvalReport {
    /// One per (suite, gateway), by suite then gateway.
    pub runs: Vec<SuiteRun>,
    /// Over every run.
    pub totals: Totals,
}

/// Cases that passed and failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub passed: usize,
    pub failed: usize,
}

impl Totals {
    fn add(&mut self, other: Totals) {
        self.passed += other.passed;
        self.failed += other.failed;
    }
}

/// One suite on one gateway.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SuiteRun {
    pub suite: String,
    pub gateway: String,
    pub reset: Reset,
    pub cases: Vec<CaseRun>,
    pub totals: Totals,
}

/// How the reset before a suite went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "state", content = "detail")]
pub enum Reset {
    /// The gateway forgot its runtime state.
    Done,
    /// Not asked for.
    Skipped,
    /// The driver has none to reset: the cases ran on its current state.
    Unsupported,
    /// The reset failed (the cases ran anyway), and why.
    Failed(String),
}

/// One case on one gateway.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaseRun {
    pub name: String,
    pub passed: bool,
    /// Requests sent (up to `repeat`; fewer when one got no answer).
    pub sent: u32,
    /// The last answer, as the judge read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<Observed>,
    pub differences: Vec<Difference>,
    /// Why the case could not be judged (no request, no answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl EvalReport {
    /// Whether every case of every run passed.
    pub fn passed(&self) -> bool {
        self.totals.failed == 0
    }

    /// Totals per suite, over its gateways.
    pub fn by_suite(&self) -> BTreeMap<&str, Totals> {
        let mut totals: BTreeMap<&str, Totals> = BTreeMap::new();
        for run in &self.runs {
            totals.entry(&run.suite).or_default().add(run.totals);
        }
        totals
    }
}

/// Runs `suites` against every one of `gateways` (by name), cases
/// resolved against `fixtures`.
pub async fn run_suites(
    gateways: &[(String, Arc<dyn Gateway>)],
    suites: &[&Suite],
    fixtures: &BTreeMap<String, FixtureFile>,
    options: RunOptions,
) -> EvalReport {
    // NB: by index into a named async fn, not a closure over references:
    // rustc cannot prove such a future `Send` for every lifetime, and the
    // reconciler (in the Kubernetes controller too) runs this in its pass.
    let mut runs: Vec<SuiteRun> = futures::stream::iter(0..gateways.len())
        .map(|i| run_gateway(&gateways[i], suites, fixtures, options.reset))
        .buffer_unordered(options.concurrency.max(1))
        .flat_map(futures::stream::iter)
        .collect()
        .await;
    runs.sort_by(|a, b| (&a.suite, &a.gateway).cmp(&(&b.suite, &b.gateway)));
    let mut totals = Totals::default();
    for run in &runs {
        totals.add(run.totals);
    }
    EvalReport { runs, totals }
}

/// Every suite on one gateway, one after another.
async fn run_gateway(
    (name, gateway): &(String, Arc<dyn Gateway>),
    suites: &[&Suite],
    fixtures: &BTreeMap<String, FixtureFile>,
    reset: bool,
) -> Vec<SuiteRun> {
    let mut runs = Vec::with_capacity(suites.len());
    for suite in suites {
        runs.push(run_suite(name, gateway.as_ref(), suite, fixtures, reset).await);
    }
    runs
}

async fn run_suite(
    gateway_name: &str,
    gateway: &dyn Gateway,
    suite: &Suite,
    fixtures: &BTreeMap<String, FixtureFile>,
    reset: bool,
) -> SuiteRun {
    let reset = if !reset {
        Reset::Skipped
    } else {
        match gateway.reset_runtime().await {
            Ok(()) => Reset::Done,
            Err(GatewayError::Unsupported(_)) => Reset::Unsupported,
            Err(e) => Reset::Failed(e.to_string()),
        }
    };
    let mut cases = Vec::with_capacity(suite.cases.len());
    let mut totals = Totals::default();
    for case in &suite.cases {
        let run = run_case(gateway, case, fixtures).await;
        if run.passed {
            totals.passed += 1;
        } else {
            totals.failed += 1;
        }
        cases.push(run);
    }
    SuiteRun {
        suite: suite.suite.clone(),
        gateway: gateway_name.to_owned(),
        reset,
        cases,
        totals,
    }
}

async fn run_case(
    gateway: &dyn Gateway,
    case: &super::Case,
    fixtures: &BTreeMap<String, FixtureFile>,
) -> CaseRun {
    let failed = |sent, error: String| CaseRun {
        name: case.name.clone(),
        passed: false,
        sent,
        observed: None,
        differences: Vec::new(),
        error: Some(error),
    };
    let body = match resolve(case, fixtures) {
        Ok(body) => body,
        Err(why) => return failed(0, why.to_string()),
    };
    let mut last = None;
    for sent in 1..=case.times() {
        match gateway.chat(&body).await {
            Ok(reply) => last = Some(reply),
            Err(e) => return failed(sent - 1, format!("request {sent}: {e}")),
        }
    }
    let Some(reply) = last else {
        return failed(0, "no request was sent".into());
    };
    let verdict = judge(&body, &case.expect, &reply);
    CaseRun {
        name: case.name.clone(),
        passed: verdict.passed,
        sent: case.times(),
        observed: Some(verdict.observed),
        differences: verdict.differences,
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::Digest,
        eval::{Case, CaseRequest, Expect, Message, Outcome, Role},
        gateway::{Applied, ChatBody, ChatReply, Desired, Live},
    };
    use async_trait::async_trait;
    use serde_json::{Value, json};
    use std::sync::Mutex;

    /// A gateway that refuses after `limit` requests since its last reset,
    /// and records what it was sent.
    struct Throttling {
        limit: usize,
        seen: Mutex<usize>,
        resets: Mutex<usize>,
    }

    #[async_trait]
    impl Gateway for Throttling {
        async fn live(&self) -> Result<Live, GatewayError> {
            unreachable!()
        }
        async fn projection(&self) -> Result<Option<Value>, GatewayError> {
            unreachable!()
        }
        async fn apply(
            &self,
            _: &Desired,
            _: Option<&Digest>,
            _: u64,
        ) -> Result<Applied, GatewayError> {
            unreachable!()
        }
        async fn chat(&self, body: &Value) -> Result<ChatReply, GatewayError> {
            let mut seen = self.seen.lock().unwrap();
            *seen += 1;
            let (status, outcome) = if *seen > self.limit {
                (429, "rate-limited")
            } else {
                (200, "allowed")
            };
            Ok(ChatReply {
                status,
                outcome: Some(outcome.into()),
                body: ChatBody::Json(
                    json!({"choices": [{"message": {"content": body["messages"][0]["content"]}}]}),
                ),
                ..ChatReply::default()
            })
        }
        async fn reset_runtime(&self) -> Result<(), GatewayError> {
            *self.seen.lock().unwrap() = 0;
            *self.resets.lock().unwrap() += 1;
            Ok(())
        }
    }

    /// A gateway whose driver has no chat endpoint (the defaults).
    struct Mute;

    #[async_trait]
    impl Gateway for Mute {
        async fn live(&self) -> Result<Live, GatewayError> {
            unreachable!()
        }
        async fn projection(&self) -> Result<Option<Value>, GatewayError> {
            unreachable!()
        }
        async fn apply(
            &self,
            _: &Desired,
            _: Option<&Digest>,
            _: u64,
        ) -> Result<Applied, GatewayError> {
            unreachable!()
        }
    }

    fn case(name: &str, repeat: Option<u32>, outcome: Outcome) -> Case {
        Case {
            name: name.into(),
            request: Some(CaseRequest {
                model: Some("m".into()),
                messages: Some(vec![Message {
                    role: Role::User,
                    content: "hi".into(),
                }]),
                ..CaseRequest::default()
            }),
            fixture: None,
            repeat,
            expect: Expect::outcome(outcome),
        }
    }

    fn suite(name: &str, cases: Vec<Case>) -> Suite {
        Suite {
            suite: name.into(),
            description: None,
            cases,
        }
    }

    #[tokio::test]
    async fn cases_run_in_order_and_suites_start_from_a_reset() {
        let gateway = Arc::new(Throttling {
            limit: 3,
            seen: Mutex::new(0),
            resets: Mutex::new(0),
        });
        let burst = suite(
            "burst",
            vec![
                case("first is allowed", None, Outcome::Allowed),
                case("a burst is throttled", Some(5), Outcome::RateLimited),
            ],
        );
        let again = suite(
            "again",
            vec![case("allowed after a reset", None, Outcome::Allowed)],
        );
        let gateways: Vec<(String, Arc<dyn Gateway>)> = vec![("gw".into(), gateway.clone())];
        let report = run_suites(
            &gateways,
            &[&burst, &again],
            &BTreeMap::new(),
            RunOptions::new(4),
        )
        .await;
        assert!(report.passed(), "{report:#?}");
        assert_eq!(
            report.totals,
            Totals {
                passed: 3,
                failed: 0
            }
        );
        assert_eq!(*gateway.resets.lock().unwrap(), 2);
        assert_eq!(report.runs[0].suite, "again");
        assert_eq!(report.runs[1].cases[1].sent, 5);
        assert_eq!(
            report.by_suite()["burst"],
            Totals {
                passed: 2,
                failed: 0
            }
        );

        // Without resets, the second suite starts throttled.
        let options = RunOptions {
            concurrency: 1,
            reset: false,
        };
        let report = run_suites(&gateways, &[&burst, &again], &BTreeMap::new(), options).await;
        assert_eq!(
            report.by_suite()["again"],
            Totals {
                passed: 0,
                failed: 1
            }
        );
        assert_eq!(report.runs[0].reset, Reset::Skipped);
    }

    #[tokio::test]
    async fn a_driver_without_chat_fails_its_cases_and_says_why() {
        let gateways: Vec<(String, Arc<dyn Gateway>)> = vec![("file-1".into(), Arc::new(Mute))];
        let one = suite("one", vec![case("c", Some(3), Outcome::Allowed)]);
        let report = run_suites(&gateways, &[&one], &BTreeMap::new(), RunOptions::new(1)).await;
        let run = &report.runs[0];
        assert_eq!(run.reset, Reset::Unsupported);
        assert_eq!(run.cases[0].sent, 0);
        assert_eq!(
            run.cases[0].error.as_deref(),
            Some("request 1: this gateway's driver has no chat endpoint")
        );
        assert_eq!(
            report.totals,
            Totals {
                passed: 0,
                failed: 1
            }
        );
    }
}
