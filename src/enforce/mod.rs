//! The policy engine of the reference gateway: what a rendered policy
//! document does to one chat request. Pure: no I/O, no clock (the caller
//! passes `now`), so every outcome is tested without HTTP.
//!
//! ```text
//!  document ──► Engine::from_document ──► Engine
//!                                           │
//!  ChatRequest ──► engine.evaluate(&mut Counters, request, now)
//!                    │  packs in name order, skipping disabled ones;
//!                    │  each pack's chain in order:
//!                    │    pii-detector     redact (working copy) | block
//!                    │    prompt-injection flag | block
//!                    │    model-allowlist  refused-model
//!                    │    rate-limit       rate-limited (Counters, per pack)
//!                    │    audit-logger     (the gateway appends the record)
//!                    │    x-…              skipped: not runnable here
//!                    │  stop at the first terminal action
//!                    ▼
//!                 Evaluation { outcome, actions, forwarded }
//! ```
//!
//! The engine always works out what `enforce` would do; the document's
//! enforcement mode then decides what of it happens: `enforce` acts,
//! `alert` forwards the request unchanged and reports `flagged` when
//! anything would have acted, `monitor` forwards it unchanged and reports
//! `allowed`. Actions are recorded in every mode, with `enforced: false`
//! when they did not happen.

pub mod allowlist;
pub mod audit;
pub mod injection;
pub mod pii;
pub mod ratelimit;
pub mod request;

pub use ratelimit::Counters;
pub use request::ChatRequest;

use crate::config::{catalog, document::PolicyDocument, model::Enforcement};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::{
    fmt,
    time::{Duration, Instant},
};

/// Why a document or a request cannot be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    #[error("not a policy document: {0}")]
    Document(#[source] serde_json::Error),
    #[error("pack `{pack}`: settings of `{policy}` are invalid: {source}")]
    Settings {
        pack: String,
        policy: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("pack `{pack}`: `{policy}` is not a policy the reference gateway knows")]
    UnknownPolicy { pack: String, policy: String },
    #[error("not a chat completion request: {0}")]
    Request(#[source] serde_json::Error),
}

/// What happened to a request, as the gateway answers it (`Sluice-Outcome`)
/// and as eval suites expect it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Passed through unchanged.
    Allowed,
    /// Passed through with something removed.
    Redacted,
    /// Refused by a policy (403).
    Blocked,
    /// Passed through and marked.
    Flagged,
    /// Refused for going over a rate limit (429).
    RateLimited,
    /// Refused because the model is not allowed (403).
    RefusedModel,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Allowed,
        Outcome::Redacted,
        Outcome::Blocked,
        Outcome::Flagged,
        Outcome::RateLimited,
        Outcome::RefusedModel,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Redacted => "redacted",
            Outcome::Blocked => "blocked",
            Outcome::Flagged => "flagged",
            Outcome::RateLimited => "rate-limited",
            Outcome::RefusedModel => "refused-model",
        }
    }

    /// Whether the request is refused without reaching the upstream.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Outcome::Blocked | Outcome::RateLimited | Outcome::RefusedModel
        )
    }

    /// The outcome a gateway names (`Sluice-Outcome`, `sluice.outcome`).
    pub fn parse(text: &str) -> Option<Outcome> {
        let text = text.trim();
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one policy did (or, outside `enforce`, would have done).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    Redacted,
    Blocked,
    Flagged,
    RateLimited,
    RefusedModel,
    /// A custom `x-…` policy: the reference gateway cannot run it.
    Skipped,
}

impl ActionKind {
    /// Whether the policy acted on the request (a skip is not acting).
    pub fn acted(self) -> bool {
        self != ActionKind::Skipped
    }

    fn terminal(self) -> Option<Outcome> {
        match self {
            ActionKind::Blocked => Some(Outcome::Blocked),
            ActionKind::RateLimited => Some(Outcome::RateLimited),
            ActionKind::RefusedModel => Some(Outcome::RefusedModel),
            _ => None,
        }
    }
}

/// One entry of `sluice.actions`. `detail` never holds a detected value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub pack: String,
    pub policy: String,
    pub action: ActionKind,
    /// Whether it happened: `false` outside `enforce`, and for skips.
    pub enforced: bool,
    pub detail: String,
}

/// The verdict on one request.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub outcome: Outcome,
    pub mode: Enforcement,
    pub actions: Vec<Action>,
    /// The request as it leaves the gateway; `None` when it is refused.
    pub forwarded: Option<ChatRequest>,
    /// The size of the request as `enforce` would forward it (redacted,
    /// whatever the mode): what the audit record keeps of the prompt.
    pub screened: Size,
    /// With `rate-limited`: when the window has room again.
    pub retry_after: Option<Duration>,
}

impl Evaluation {
    /// Names of the policies that acted, in chain order (`Sluice-Policies`).
    pub fn policies(&self) -> Vec<&str> {
        self.actions
            .iter()
            .filter(|a| a.action.acted())
            .map(|a| a.policy.as_str())
            .collect()
    }
}

/// Messages and characters of text in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub messages: usize,
    pub chars: usize,
}

/// A policy document, ready to evaluate requests.
#[derive(Debug, Clone)]
pub struct Engine {
    mode: Enforcement,
    packs: Vec<PackRun>,
}

#[derive(Debug, Clone)]
struct PackRun {
    name: String,
    chain: Vec<Step>,
}

#[derive(Debug, Clone)]
enum Step {
    Audit,
    Pii(pii::Detector),
    Injection(injection::Screen),
    Allowlist(allowlist::Allowlist),
    RateLimit(ratelimit::Limit),
    Custom(String),
}

/// What a step concluded: an action, or nothing to report.
struct Verdict {
    action: ActionKind,
    detail: String,
}

impl Engine {
    /// Builds the engine of a rendered policy document (disabled packs are
    /// kept out). The document is expected to have passed
    /// [`crate::config::document::check_document`]; this only fails on
    /// what it cannot run.
    pub fn from_document(document: &Value) -> Result<Engine, EnforceError> {
        let document = PolicyDocument::deserialize(document).map_err(EnforceError::Document)?;
        let mut packs = Vec::new();
        // NB: `packs` is a BTreeMap: name order, the order documented to
        // authors.
        for (name, pack) in &document.packs {
            if !pack.enabled {
                continue;
            }
            let chain = pack
                .chain
                .iter()
                .map(|policy| step(name, policy, pack.settings.0.get(policy)))
                .collect::<Result<_, _>>()?;
            packs.push(PackRun {
                name: name.clone(),
                chain,
            });
        }
        Ok(Engine {
            mode: document.enforcement,
            packs,
        })
    }

    pub fn mode(&self) -> Enforcement {
        self.mode
    }

    /// Whether an enabled pack's chain holds `audit-logger`: then every
    /// request gets an audit record, whatever its outcome.
    pub fn audits(&self) -> bool {
        self.packs
            .iter()
            .any(|p| p.chain.iter().any(|s| matches!(s, Step::Audit)))
    }

    /// Runs every enabled pack's chain on `request` at `now`.
    pub fn evaluate(
        &self,
        counters: &mut Counters,
        request: &ChatRequest,
        now: Instant,
    ) -> Evaluation {
        let enforcing = self.mode == Enforcement::Enforce;
        let mut screened = request.clone();
        let mut actions = Vec::new();
        let mut terminal = None;
        let mut retry_after = None;
        'packs: for pack in &self.packs {
            for step in &pack.chain {
                let verdict = match step {
                    Step::Audit => None,
                    Step::Pii(detector) => detector.screen(&mut screened),
                    Step::Injection(screen) => screen.screen(&screened),
                    Step::Allowlist(allowlist) => allowlist.screen(&screened),
                    Step::RateLimit(limit) => match limit.admit(counters, &pack.name, now) {
                        Ok(()) => None,
                        Err(wait) => {
                            retry_after = Some(wait);
                            Some(limit.verdict(wait))
                        }
                    },
                    Step::Custom(_) => Some(Verdict {
                        action: ActionKind::Skipped,
                        detail: "custom policy: the reference gateway cannot run it".into(),
                    }),
                };
                let Some(verdict) = verdict else { continue };
                actions.push(Action {
                    pack: pack.name.clone(),
                    policy: step.policy().to_owned(),
                    action: verdict.action,
                    enforced: enforcing && verdict.action.acted(),
                    detail: verdict.detail,
                });
                if let Some(outcome) = verdict.action.terminal() {
                    // NB: in every mode: what is recorded is what `enforce`
                    // would have done, and it stops here.
                    terminal = Some(outcome);
                    break 'packs;
                }
            }
        }
        let acted = |kind| actions.iter().any(|a: &Action| a.action == kind);
        let would = terminal.unwrap_or(if acted(ActionKind::Redacted) {
            Outcome::Redacted
        } else if acted(ActionKind::Flagged) {
            Outcome::Flagged
        } else {
            Outcome::Allowed
        });
        let any_acted = actions.iter().any(|a| a.action.acted());
        let size = Size {
            messages: screened.messages.len(),
            chars: screened.text_chars(),
        };
        let (outcome, forwarded) = match self.mode {
            Enforcement::Enforce => (would, (!would.is_terminal()).then_some(screened)),
            Enforcement::Alert if any_acted => (Outcome::Flagged, Some(request.clone())),
            Enforcement::Alert | Enforcement::Monitor => (Outcome::Allowed, Some(request.clone())),
        };
        Evaluation {
            outcome,
            mode: self.mode,
            actions,
            forwarded,
            screened: size,
            retry_after: retry_after.filter(|_| outcome == Outcome::RateLimited),
        }
    }
}

impl Step {
    fn policy(&self) -> &str {
        match self {
            Step::Audit => "audit-logger",
            Step::Pii(_) => "pii-detector",
            Step::Injection(_) => "prompt-injection",
            Step::Allowlist(_) => "model-allowlist",
            Step::RateLimit(_) => "rate-limit",
            Step::Custom(name) => name,
        }
    }
}

fn step(pack: &str, policy: &str, settings: Option<&Value>) -> Result<Step, EnforceError> {
    fn typed<T: serde::de::DeserializeOwned>(
        pack: &str,
        policy: &str,
        settings: Option<&Value>,
    ) -> Result<T, EnforceError> {
        // NB: a policy named in the chain without settings runs with its
        // defaults; `{}` is what an absent settings block means.
        let value = settings
            .cloned()
            .unwrap_or_else(|| Value::Object(Default::default()));
        serde_json::from_value(value).map_err(|source| EnforceError::Settings {
            pack: pack.to_owned(),
            policy: policy.to_owned(),
            source,
        })
    }
    Ok(match policy {
        "audit-logger" => {
            typed::<catalog::AuditLogger>(pack, policy, settings)?;
            Step::Audit
        }
        "pii-detector" => Step::Pii(pii::Detector::new(&typed(pack, policy, settings)?)),
        "prompt-injection" => {
            Step::Injection(injection::Screen::new(&typed(pack, policy, settings)?))
        }
        "model-allowlist" => {
            Step::Allowlist(allowlist::Allowlist::new(typed(pack, policy, settings)?))
        }
        "rate-limit" => Step::RateLimit(ratelimit::Limit::new(&typed(pack, policy, settings)?)),
        custom if catalog::is_custom(custom) => Step::Custom(custom.to_owned()),
        other => {
            return Err(EnforceError::UnknownPolicy {
                pack: pack.to_owned(),
                policy: other.to_owned(),
            });
        }
    })
}

#[cfg(test)]
mod tests;
