//! The ledger's schema, as a versioned list of migrations.
//!
//! The schema version lives in `PRAGMA user_version` (part of the database
//! header, so it changes in the same transaction as the tables). Migration `n`
//! (counting from 1) takes a file from version `n - 1` to `n`. Each runs in its
//! own `BEGIN IMMEDIATE` transaction that re-reads the version first, so two
//! processes opening a fresh file at once do not both apply it, and a crash
//! mid-migration leaves the previous version intact. Migrations are append-only:
//! once released, a step is never edited, only followed by another.

use super::query_error;
use crate::ledger::LedgerError;
use rusqlite::{Connection, TransactionBehavior};

/// Marks the file as a Sluice ledger (`PRAGMA application_id`, "SLCE"), so
/// opening some other SQLite file by mistake is refused instead of having
/// ledger tables added to it.
pub(super) const APPLICATION_ID: i64 = 0x534C_4345;

/// Every migration, oldest first; the schema version a file reaches is the
/// number applied.
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4];

/// The schema version this Sluice writes and understands.
pub(super) const LATEST: i64 = MIGRATIONS.len() as i64;

/// Version 1: revisions, attempts and gateway records.
///
/// Column names avoid SQL keywords (`commit`, `trigger`) so no statement
/// needs quoting. Enumerations are stored as their kebab-case text without a
/// CHECK, because SQLite cannot alter a CHECK without rebuilding the table;
/// a value the code does not know fails loudly when read instead, and
/// [`LATEST`] stops an older Sluice from reading a newer file at all.
const V1: &str = "
PRAGMA application_id = 1397506885;

-- Every revision seen and its validation result. `seq` is insertion order,
-- which breaks ties between revisions seen in the same millisecond.
CREATE TABLE revisions (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    commit_id TEXT    NOT NULL UNIQUE,
    seen_at   INTEGER NOT NULL,
    valid     INTEGER NOT NULL CHECK (valid IN (0, 1)),
    errors    INTEGER NOT NULL CHECK (errors >= 0),
    findings  TEXT    NOT NULL
);
CREATE INDEX revisions_newest ON revisions (seen_at DESC, seq DESC);

-- Every apply attempt. AUTOINCREMENT so an id is never reused, even after
-- the newest rows are pruned: a record refers to one attempt forever.
CREATE TABLE attempts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    environment  TEXT    NOT NULL,
    gateway      TEXT    NOT NULL,
    revision     TEXT    NOT NULL,
    digest       TEXT    NOT NULL,
    triggered_by TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    outcome      TEXT,
    error        TEXT,
    -- finished and outcome come together or not at all
    CHECK ((finished_at IS NULL) = (outcome IS NULL))
);
CREATE INDEX attempts_gateway_history
    ON attempts (environment, gateway, started_at DESC, id DESC);
CREATE INDEX attempts_environment_history
    ON attempts (environment, started_at DESC, id DESC);
CREATE INDEX attempts_unfinished ON attempts (id) WHERE finished_at IS NULL;

-- The current desired and observed state of each gateway.
CREATE TABLE gateways (
    environment      TEXT    NOT NULL,
    gateway          TEXT    NOT NULL,
    desired_digest   TEXT,
    desired_revision TEXT,
    observed_digest  TEXT,
    state            TEXT    NOT NULL,
    changed_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    error            TEXT,
    PRIMARY KEY (environment, gateway)
) WITHOUT ROWID;
";

/// Version 2: when each revision was last seen, so the newest head is
/// "last" even when a branch is reset to a commit seen before (a rollback).
const V2: &str = "
ALTER TABLE revisions ADD COLUMN last_seen_at INTEGER;
UPDATE revisions SET last_seen_at = seen_at;
CREATE INDEX revisions_by_last_seen ON revisions (last_seen_at DESC, seq DESC);
";

/// Version 3: the versions each environment ran whole (for rollback and
/// promotion gates) and drift episodes.
const V3: &str = "
-- An environment ran `digest` (from `revision`) on every gateway, verified,
-- from `verified_at`; one row per change of version.
CREATE TABLE deployments (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    environment TEXT    NOT NULL,
    revision    TEXT    NOT NULL,
    digest      TEXT    NOT NULL,
    packs       TEXT    NOT NULL,
    verified_at INTEGER NOT NULL
);
CREATE INDEX deployments_newest ON deployments (environment, id DESC);

-- A gateway found running something other than what Sluice verified there,
-- from `onset_at` until `resolved_at`. At most one open episode per gateway.
CREATE TABLE drift_episodes (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    environment    TEXT    NOT NULL,
    gateway        TEXT    NOT NULL,
    revision       TEXT    NOT NULL,
    desired_digest TEXT    NOT NULL,
    live_digest    TEXT,
    changes        TEXT    NOT NULL,
    onset_at       INTEGER NOT NULL,
    resolved_at    INTEGER,
    resolution     TEXT
);
CREATE UNIQUE INDEX drift_open ON drift_episodes (environment, gateway)
    WHERE resolved_at IS NULL;
CREATE INDEX drift_history ON drift_episodes (environment, onset_at DESC, id DESC);
";

/// Version 4: pins (an environment held at a version it ran whole) and
/// eval runs (a suite's results against an environment's version).
const V4: &str = "
-- A pin is in place from `pinned_at` until `ended_at`; ended pins are
-- history. At most one in place per environment.
CREATE TABLE pins (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    environment TEXT    NOT NULL,
    digest      TEXT    NOT NULL,
    revision    TEXT    NOT NULL,
    reason      TEXT,
    pinned_by   TEXT    NOT NULL,
    pinned_at   INTEGER NOT NULL,
    held_since  INTEGER,
    ended_at    INTEGER,
    ended_by    TEXT,
    end_reason  TEXT,
    CHECK ((ended_at IS NULL) = (end_reason IS NULL))
);
CREATE UNIQUE INDEX pins_in_place ON pins (environment) WHERE ended_at IS NULL;
CREATE INDEX pins_history ON pins (environment, id DESC);

-- A suite's run against an environment's version; `packs` and `failures`
-- are JSON arrays.
CREATE TABLE eval_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    environment TEXT    NOT NULL,
    suite       TEXT    NOT NULL,
    revision    TEXT    NOT NULL,
    digest      TEXT    NOT NULL,
    packs       TEXT    NOT NULL,
    passed      INTEGER NOT NULL CHECK (passed >= 0),
    failed      INTEGER NOT NULL CHECK (failed >= 0),
    failures    TEXT    NOT NULL,
    run_at      INTEGER NOT NULL
);
CREATE INDEX eval_runs_newest ON eval_runs (environment, suite, run_at DESC, id DESC);
CREATE INDEX eval_runs_by_environment ON eval_runs (environment, run_at DESC, id DESC);
";

/// Reads the schema version.
pub(super) fn user_version(conn: &Connection) -> Result<i64, LedgerError> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(query_error("reading the ledger schema version"))
}

/// Whether a file at schema `found` needs migrating; a newer one is refused.
fn behind(found: i64) -> Result<bool, LedgerError> {
    if found > LATEST {
        return Err(LedgerError::TooNew {
            found,
            known: LATEST,
        });
    }
    Ok(found < LATEST)
}

/// Brings the file up to [`LATEST`], applying only the steps it lacks.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), LedgerError> {
    loop {
        // Checked before taking the write lock too, so a reader-writer of a
        // newer file fails without blocking anyone.
        if !behind(user_version(conn)?)? {
            return Ok(());
        }
        let doing = "migrating the ledger schema";
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(query_error(doing))?;
        // Another process may have migrated while this one waited for the lock.
        let found = user_version(&tx)?;
        if !behind(found)? {
            return Ok(());
        }
        let step = usize::try_from(found).map_err(|_| LedgerError::Query {
            doing,
            message: format!("negative schema version {found}"),
        })?;
        tx.execute_batch(MIGRATIONS[step])
            .map_err(query_error(doing))?;
        tx.pragma_update(None, "user_version", found + 1)
            .map_err(query_error(doing))?;
        tx.commit().map_err(query_error(doing))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_application_id_in_the_schema_matches_the_constant() {
        assert!(V1.contains(&format!("application_id = {APPLICATION_ID};")));
    }
}
