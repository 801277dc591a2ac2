//! Verifying behaviour: eval suites and fixtures from the repository, run
//! against gateways' OpenAI-compatible `POST /v1/chat/completions`.
//!
//! ```text
//! evals/*.eval.yaml ─┐                      ┌─► judge (pure): expectation
//! fixtures/*.yaml ───┴─► resolve (pure) ─► chat ─┘   + reply → verdict
//!                        a case → a body    (driver)        │
//!                                                           ▼
//!                             EvalReport ◄── run_suites (bounded, per gateway in order)
//!                                 │
//!                                 └─► text, JSON, JUnit (`sluice eval`)
//! ```
//!
//! Only [`run`] does I/O, and only through the [`crate::gateway::Gateway`]
//! trait; everything else is a pure function over data.

pub mod judge;
pub mod junit;
pub mod run;
pub mod suite;

pub use judge::{Check, Difference, Observed, Verdict, judge};
pub use run::{CaseRun, EvalReport, Reset, RunOptions, SuiteRun, Totals, run_suites};
pub use suite::{
    Case, CaseRequest, Expect, Fixture, FixtureFile, Message, Outcome, Role, Suite, SuiteFile,
    resolve,
};
