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

#[path = "kube/configmap.rs"]
mod configmap;
#[path = "kube/controller.rs"]
mod controller;
#[path = "kube/core.rs"]
mod core_objects;
#[path = "kube/crd.rs"]
mod crd;
#[path = "common/crds.rs"]
mod crds;
#[path = "kube/env.rs"]
mod env;
#[path = "common/git_daemon.rs"]
mod git_daemon;
#[path = "kube/lease.rs"]
mod lease;
#[path = "kube/rbac.rs"]
mod rbac;
#[path = "kube/sluice.rs"]
mod sluice_crds;
