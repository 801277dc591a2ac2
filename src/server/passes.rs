//! The passes sync requests asked for, kept for whoever waits on them, so
//! `sluice sync --server` can report its pass as `sluice sync --once`
//! does (as `argocd app sync` and `flux reconcile` wait for theirs).
//!
//! ```text
//! POST /api/v1/sync ──► SyncQueue (merges; numbers requests 1, 2, 3 … as they arrive)
//!   202 {request: 3}        │ next(): the merged request and the highest number in it
//!                           ▼
//!                     sluice run's loop: fetch, load, pass
//!                           │ publish(scope, covers: 3, outcome)
//!                           ▼
//! GET /api/v1/sync/3 ◄── Passes: the newest pass of each scope (every environment, or one)
//!   202 while none covers 3 (long-polled: ?wait=30s), then 200 with the pass
//! ```
//!
//! A pass covers request N when it was started for a queued request
//! numbered N or higher: the queue numbers requests as they arrive, so
//! every request up to N had arrived when it started. A request that
//! arrives while a pass runs waits in the queue for the next pass, so it
//! always gets one that started after it. Only the newest pass of each
//! scope is kept: memory is bounded by the number of environments.
//!
//! `sluice controller` keeps no passes (its reconciles are per Environment
//! object, with their own status): there the sync answer carries no
//! request number and `GET /api/v1/sync/{request}` answers `404`.

use super::{Scope, ServerState, error, listen::Deadline};
use crate::reconcile::Pass;
use axum::{
    Extension, Json,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use std::{collections::HashMap, sync::Arc, time::Duration};
use tokio::sync::watch;

/// Longest one `GET /api/v1/sync/{request}` waits before answering `202`.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// What became of a pass a sync request asked for.
#[derive(Debug, Clone)]
pub enum PassOutcome {
    Ran(Pass),
    /// It could not run (the branch could not be fetched or loaded, the
    /// ledger failed): why.
    NotRun(String),
}

impl PassOutcome {
    /// As the API answers it: the pass as `sluice sync --once -o json`
    /// prints it, with only the environments `shown` accepts; or
    /// `{"result": "error", "error": WHY}`.
    fn to_json(&self, shown: impl Fn(&str) -> bool) -> serde_json::Value {
        match self {
            PassOutcome::Ran(Pass::Reconciled {
                revision,
                environments,
            }) => serde_json::to_value(Pass::Reconciled {
                revision: revision.clone(),
                environments: environments
                    .iter()
                    .filter(|e| shown(&e.environment))
                    .cloned()
                    .collect(),
            }),
            PassOutcome::Ran(pass) => serde_json::to_value(pass),
            PassOutcome::NotRun(why) => Ok(serde_json::json!({ "result": "error", "error": why })),
        }
        .unwrap_or_else(|e| serde_json::json!({ "result": "error", "error": e.to_string() }))
    }
}

#[derive(Debug)]
struct Finished {
    /// The highest request number it covers.
    covers: u64,
    outcome: Arc<PassOutcome>,
}

/// The newest finished pass of each scope: `None` every environment,
/// `Some(env)` one.
type Board = HashMap<Option<String>, Finished>;

/// The finished passes of `sluice run`, by scope (see the module's doc).
pub struct Passes {
    board: watch::Sender<Board>,
}

impl Default for Passes {
    fn default() -> Self {
        Passes {
            board: watch::Sender::new(Board::new()),
        }
    }
}

impl Passes {
    /// A pass over `scope` (one environment, or all) finished for the
    /// queued requests numbered up to `covers`.
    pub fn publish(&self, scope: Option<&str>, covers: u64, outcome: PassOutcome) {
        let outcome = Arc::new(outcome);
        self.board.send_modify(|board| {
            if scope.is_none() {
                // NB: a pass over every environment answers for all that
                // came before it: the one-environment passes can go.
                board.retain(|_, finished| finished.covers > covers);
            }
            board.insert(scope.map(str::to_owned), Finished { covers, outcome });
        });
    }

    /// A finished pass that covers `request` and includes `env` (all
    /// environments for `None`).
    fn find(board: &Board, request: u64, env: Option<&str>) -> Option<Arc<PassOutcome>> {
        let own = env.and_then(|env| board.get(&Some(env.to_owned())));
        own.into_iter()
            .chain(board.get(&None))
            .find(|finished| finished.covers >= request)
            .map(|finished| finished.outcome.clone())
    }

    /// [`Passes::find`], waiting up to `within` for such a pass to finish.
    pub async fn wait(
        &self,
        request: u64,
        env: Option<&str>,
        within: Duration,
    ) -> Option<Arc<PassOutcome>> {
        let mut board = self.board.subscribe();
        let mut found = None;
        let _ = tokio::time::timeout(
            within,
            board.wait_for(|board| {
                found = Self::find(board, request, env);
                found.is_some()
            }),
        )
        .await;
        found
    }
}

#[derive(Deserialize)]
pub(super) struct PassQuery {
    env: Option<String>,
    /// How long to wait for the pass before answering `202` (e.g. `30s`;
    /// at most [`MAX_WAIT`]); default: answer at once.
    wait: Option<String>,
}

/// `GET /api/v1/sync/{request}`: the pass of a sync request, `200` once
/// one covering it finished, `202` while it is queued or running.
pub(super) async fn pass(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path(request): Path<u64>,
    Query(q): Query<PassQuery>,
    deadline: Option<Extension<Deadline>>,
) -> Response {
    let scope = match state.tokens.authorize(&headers, q.env.as_deref()) {
        Ok(scope) => scope,
        Err(response) => return response,
    };
    // NB: as `POST /api/v1/sync`: a scoped token's request was for its
    // own environment.
    let env = match &scope {
        Scope::Environment(env) => Some(env.clone()),
        Scope::Admin | Scope::Open => q.env.clone(),
    };
    let Some(passes) = &state.passes else {
        return error(
            StatusCode::NOT_FOUND,
            "this server does not keep its passes (sluice controller): follow the Environments' status",
        );
    };
    if request == 0 || request > state.sync.issued() {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "no sync request {request} here (the server numbers them from 1 since it started)"
            ),
        );
    }
    let mut within = match q.wait.as_deref() {
        None => Duration::ZERO,
        Some(text) => match crate::config::model::parse_duration(text) {
            Some(wait) => wait.min(MAX_WAIT),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("`wait` is a duration (e.g. 500ms, 30s), not `{text}`"),
                );
            }
        },
    };
    if let Some(Extension(deadline)) = deadline {
        // NB: answer 202 before the request timeout would answer 408.
        within = within.min(deadline.left().saturating_sub(Duration::from_millis(500)));
    }
    match passes.wait(request, env.as_deref(), within).await {
        Some(outcome) => Json(
            outcome.to_json(|e| scope.allows(e) && env.as_deref().is_none_or(|only| only == e)),
        )
        .into_response(),
        None => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "request": request, "finished": false })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reconciled(envs: &[&str]) -> PassOutcome {
        PassOutcome::Ran(Pass::Reconciled {
            revision: "c0ffee".into(),
            environments: envs
                .iter()
                .map(|e| crate::reconcile::EnvironmentReport {
                    environment: (*e).into(),
                    gateways: Vec::new(),
                })
                .collect(),
        })
    }

    fn shown(outcome: Option<Arc<PassOutcome>>) -> Vec<String> {
        let json = outcome.expect("a pass").to_json(|_| true);
        json["environments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["environment"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn a_request_is_answered_by_a_pass_that_covers_it_and_its_environment() {
        let passes = Passes::default();
        let board = || passes.board.borrow();
        passes.publish(Some("dev"), 2, reconciled(&["dev"]));
        assert_eq!(shown(Passes::find(&board(), 2, Some("dev"))), ["dev"]);
        assert!(Passes::find(&board(), 3, Some("dev")).is_none(), "not yet");
        assert!(
            Passes::find(&board(), 1, Some("prod")).is_none(),
            "not its scope"
        );
        assert!(
            Passes::find(&board(), 1, None).is_none(),
            "not every environment"
        );

        passes.publish(Some("prod"), 3, reconciled(&["prod"]));
        assert_eq!(shown(Passes::find(&board(), 2, Some("dev"))), ["dev"]);
        assert_eq!(shown(Passes::find(&board(), 3, Some("prod"))), ["prod"]);

        // A pass over everything answers every earlier request, and makes
        // the one-environment passes redundant.
        passes.publish(None, 5, reconciled(&["dev", "prod"]));
        assert_eq!(board().len(), 1);
        assert_eq!(
            shown(Passes::find(&board(), 2, Some("dev"))),
            ["dev", "prod"]
        );
        assert_eq!(shown(Passes::find(&board(), 5, None)), ["dev", "prod"]);
        assert!(Passes::find(&board(), 6, Some("dev")).is_none());
    }

    #[test]
    fn an_answer_shows_only_what_its_filter_allows() {
        let json = reconciled(&["dev", "prod"]).to_json(|e| e == "dev");
        assert_eq!(json["result"], "reconciled");
        assert_eq!(json["environments"].as_array().unwrap().len(), 1);
        let json = PassOutcome::NotRun("cannot fetch".into()).to_json(|_| true);
        assert_eq!(
            json,
            serde_json::json!({"result": "error", "error": "cannot fetch"})
        );
    }

    #[tokio::test]
    async fn a_waiter_is_woken_by_the_pass_it_waits_for() {
        let passes = Arc::new(Passes::default());
        let waiting = {
            let passes = passes.clone();
            tokio::spawn(async move { passes.wait(1, Some("dev"), MAX_WAIT).await })
        };
        tokio::task::yield_now().await;
        passes.publish(Some("prod"), 1, reconciled(&["prod"]));
        passes.publish(Some("dev"), 1, reconciled(&["dev"]));
        assert_eq!(shown(waiting.await.unwrap()), ["dev"]);
        let none = passes.wait(2, Some("dev"), Duration::from_millis(10)).await;
        assert!(none.is_none());
    }
}
