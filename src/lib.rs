//! Sluice: a GitOps reconciler for AI-gateway governance policy.
//!
//! A config repository holds one directory per environment; Sluice validates
//! each revision, renders every gateway's desired state into a versioned
//! document, pushes it into the gateways, reads back what each runs and
//! keeps a ledger of which version runs where.
//!
//! | module   | job |
//! | -------- | --- |
//! | [source]    | read a repository at a commit or in the work tree; follow a branch |
//! | [config]    | types, loading, validation, rendering, digests |
//! | [gateway]   | the `Gateway` trait, its drivers, the reference gateway |
//! | [reconcile] | the loop: read, apply, verify, gates; no knowledge of where it runs |
//! | [ledger]    | which version runs where, every attempt: SQLite, in memory, or the Environments' status |
//! | [plan]      | what a change does, for its reviewer; governance-weakening changes |
//! | [eval]      | eval suites and fixtures: resolve a case, judge an answer, run suites against gateways |
//! | [verify]    | behaviour checks around a new version: which suites run, and the answer to a failure (alert, roll back, pin) |
//! | [drift]     | the drift rule (`decide`), what a drifted gateway runs against what it should; alerts |
//! | [enforce]   | the policy engine of the reference gateway: what a document does to a chat request |
//! | [promote]   | a branch that brings one environment's packs into the next one |
//! | [rollback]  | a branch that puts one environment back on a version it ran whole |
//! | [secret]    | comparing secrets in constant time |
//! | [server]    | HTTP: health, metrics, status API, git webhook |
//! | [ui]        | the dashboard: pages over the same data as the API, sign-in, live updates |
//! | [version]   | this build: version, commit, build date (`sluice version`, the API, metrics) |
//! | [clock]     | time, injected; RFC 3339 in and out of JSON |
//! | [k8s]       | Kubernetes mode: the `sluice.dev` custom resources and their CRDs, the controller, the status ledger, leader election |
//! | [cli]       | the `sluice` command |
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod cli;
pub mod clock;
pub mod config;
pub mod drift;
pub mod enforce;
pub mod eval;
pub mod gateway;
pub mod k8s;
pub mod ledger;
pub mod plan;
pub mod promote;
pub mod reconcile;
pub mod rollback;
pub mod secret;
pub mod server;
pub mod source;
pub mod ui;
pub mod verify;
pub mod version;
