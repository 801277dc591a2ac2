//! Kubernetes integration tests against a real API server (kube-apiserver and
//! etcd built from Go modules by `scripts/k8s-test-env.sh`).
//!
//! Run them with:
//!
//! ```text
//! scripts/k8s-test-env.sh run -- cargo test --test kube
//! ```
//!
//! Without a server they are skipped with a note on stderr, except under
//! `CI=true`, where they fail. See `tests/kube/env.rs` and
//! `docs/k8s-test-env.md`.

mod configmap;
mod controller;
mod core_objects;
mod crd;
#[path = "../common/crds.rs"]
mod crds;
mod env;
#[path = "../common/git_daemon.rs"]
mod git_daemon;
mod lease;
mod rbac;
mod sluice_crds;
