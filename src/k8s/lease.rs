//! Leader election on a `coordination.k8s.io` Lease.
//!
//! NB: STUB. This file only fixes the interface `sluice controller` codes
//! against; the real implementation (branch `lease`) replaces it whole at
//! merge. Here `run` runs `work` as if this process always led.

use kube::Client;
use std::{
    future::Future,
    sync::atomic::{AtomicBool, Ordering},
};

/// What went wrong holding the Lease.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("cannot hold the Lease {namespace}/{name}: {message}")]
    Hold {
        namespace: String,
        name: String,
        message: String,
    },
}

/// Leader election for one Lease.
pub struct LeaderElection {
    #[allow(dead_code)]
    client: Client,
    #[allow(dead_code)]
    namespace: String,
    #[allow(dead_code)]
    name: String,
    #[allow(dead_code)]
    identity: String,
    leading: AtomicBool,
}

impl LeaderElection {
    pub fn new(
        client: Client,
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        LeaderElection {
            client,
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            leading: AtomicBool::new(false),
        }
    }

    /// Runs `work` while this process holds the Lease, until `shutdown`
    /// resolves (or `work` ends).
    pub async fn run(
        &self,
        work: impl Future<Output = ()>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), LeaseError> {
        self.leading.store(true, Ordering::SeqCst);
        tokio::select! {
            _ = work => {}
            _ = shutdown => {}
        }
        self.leading.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Whether this process holds the Lease now.
    pub fn is_leader(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }
}
