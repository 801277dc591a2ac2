//! Sluice: a GitOps reconciler for AI-gateway governance policy.
//!
//! A config repository holds one directory per environment; Sluice validates
//! each revision, renders every gateway's desired state into a versioned
//! document, and (in later parts) pushes it into the gateways and keeps a
//! ledger of which version runs where.
//!
//! | module   | job |
//! | -------- | --- |
//! | [source] | read a repository at a commit or in the work tree |
//! | [config] | types, loading, validation, rendering, digests |
//! | [cli]    | the `sluice` command |
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod cli;
pub mod config;
pub mod source;
pub mod gateway;
pub mod ledger;
