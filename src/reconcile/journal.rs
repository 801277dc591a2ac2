//! Ledger writes in group commits, on a thread of their own.
//!
//! An attempt must be in the ledger before its request is sent, so each
//! gateway waits for its start record; but gateways that arrive while a
//! commit is running share the next one, so a rollout costs a commit per
//! group rather than one per gateway, and the async workers never block on
//! SQLite.

use crate::ledger::{
    AttemptFinish, AttemptId, AttemptStart, GatewayRecord, Ledger, LedgerError, WriteBatch,
    WriteHealth,
};
use std::sync::{Arc, mpsc};
use tokio::sync::oneshot;

/// Most entries one commit takes.
const GROUP: usize = 512;

enum Entry {
    Start(
        AttemptStart,
        oneshot::Sender<Result<AttemptId, LedgerError>>,
    ),
    Finish(AttemptFinish),
    Records(Vec<GatewayRecord>),
    /// Answered once everything sent before it is written.
    Flush(oneshot::Sender<()>),
}

pub(super) struct Journal {
    sender: mpsc::Sender<Entry>,
    health: Arc<WriteHealth>,
}

impl Journal {
    pub(super) fn new(ledger: Arc<dyn Ledger>) -> Self {
        let (sender, receiver) = mpsc::channel();
        let health = Arc::new(WriteHealth::default());
        let writer = health.clone();
        let spawned = std::thread::Builder::new()
            .name("sluice-ledger".into())
            .spawn(move || write_groups(ledger.as_ref(), &writer, &receiver));
        if let Err(e) = spawned {
            // Every write then answers that the thread is gone: no apply
            // goes out unrecorded.
            tracing::error!(error = %e, "cannot start the ledger thread");
        }
        Journal { sender, health }
    }

    /// The ledger's write failures since the last pass that wrote everything.
    pub(super) fn health(&self) -> &Arc<WriteHealth> {
        &self.health
    }

    fn send(&self, entry: Entry) -> bool {
        self.sender.send(entry).is_ok()
    }

    /// Records an attempt as started; returns once it is committed.
    pub(super) async fn start(&self, start: AttemptStart) -> Result<AttemptId, LedgerError> {
        let (reply, answer) = oneshot::channel();
        if !self.send(Entry::Start(start, reply)) {
            return Err(gone());
        }
        answer.await.unwrap_or_else(|_| Err(gone()))
    }

    /// Finishes an attempt; written with the next group (see [`Journal::flush`]).
    pub(super) fn finish(&self, finish: AttemptFinish) {
        if !self.send(Entry::Finish(finish)) {
            tracing::error!("the ledger thread is gone; an attempt stays unfinished");
        }
    }

    pub(super) fn records(&self, records: Vec<GatewayRecord>) {
        if !records.is_empty() && !self.send(Entry::Records(records)) {
            tracing::error!("the ledger thread is gone; gateway states not written");
        }
    }

    /// Waits until everything sent so far is written.
    pub(super) async fn flush(&self) {
        let (reply, done) = oneshot::channel();
        if self.send(Entry::Flush(reply)) {
            let _ = done.await;
        }
    }
}

fn gone() -> LedgerError {
    LedgerError::Query {
        doing: "writing to the ledger",
        message: "the ledger thread stopped".into(),
    }
}

/// Runs until every sender is dropped: takes what is waiting (up to
/// [`GROUP`]) and writes it in one batch.
fn write_groups(ledger: &dyn Ledger, health: &WriteHealth, receiver: &mpsc::Receiver<Entry>) {
    while let Ok(first) = receiver.recv() {
        let mut entries = vec![first];
        while entries.len() < GROUP {
            match receiver.try_recv() {
                Ok(entry) => entries.push(entry),
                Err(_) => break,
            }
        }
        write_group(ledger, health, entries);
    }
}

fn write_group(ledger: &dyn Ledger, health: &WriteHealth, entries: Vec<Entry>) {
    let mut batch = WriteBatch::default();
    let mut replies = Vec::new();
    let mut flushed = Vec::new();
    for entry in entries {
        match entry {
            Entry::Start(start, reply) => {
                batch.starts.push(start);
                replies.push(reply);
            }
            Entry::Finish(finish) => batch.finishes.push(finish),
            Entry::Records(records) => batch.records.extend(records),
            Entry::Flush(reply) => flushed.push(reply),
        }
    }
    match ledger.write(&batch) {
        Ok(result) => {
            for (reply, id) in replies.into_iter().zip(result.started) {
                let _ = reply.send(id);
            }
            for (finish, outcome) in batch.finishes.iter().zip(result.finished) {
                if let Err(e) = outcome {
                    tracing::error!(error = %e, attempt = finish.id, "cannot finish the attempt in the ledger");
                }
            }
        }
        Err(e) => {
            // NB: one bad entry must not cost the others their records:
            // write them one by one, each with its own answer.
            tracing::warn!(error = %e, "a group commit failed; writing its entries one by one");
            health.failed(&e);
            fn written<T>(health: &WriteHealth, result: &Result<T, LedgerError>) {
                if let Err(e) = result {
                    health.failed(e);
                }
            }
            for (start, reply) in batch.starts.iter().zip(replies) {
                let started = ledger.start_attempt(start);
                written(health, &started);
                let _ = reply.send(started);
            }
            for finish in &batch.finishes {
                let error = finish.error.as_deref();
                let finished =
                    ledger.finish_attempt(finish.id, finish.finished_at, finish.outcome, error);
                // NB: not counted in the health: an attempt already
                // finished (by another writer) is not the ledger failing.
                if let Err(e) = &finished {
                    tracing::error!(error = %e, attempt = finish.id, "cannot finish the attempt in the ledger");
                }
            }
            for record in &batch.records {
                let upserted = ledger.upsert_gateway(record);
                if let Err(e) = &upserted {
                    tracing::error!(error = %e, environment = %record.environment, gateway = %record.gateway, "cannot write the gateway's state");
                }
                written(health, &upserted);
            }
        }
    }
    for reply in flushed {
        let _ = reply.send(());
    }
}
