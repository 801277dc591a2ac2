//! The ledger in an embedded SQLite file, for standalone mode.
//!
//! One file holds every revision seen, every apply attempt and each gateway's
//! current record. The file is opened in WAL mode so `sluice status` and
//! `sluice history` can read while `sluice run` writes, and several processes
//! may open it at once: writers wait for each other (`busy_timeout`) rather
//! than fail. Each [`SqliteLedger`] owns one connection behind a mutex; the
//! calls are short and synchronous, so async callers use `spawn_blocking`.
//!
//! Nothing here reads a clock: every time comes from the caller.

mod migrations;
#[cfg(test)]
mod tests;

use super::{
    Attempt, AttemptFinish, AttemptId, AttemptStart, BatchResult, DeployedPack, Deployment,
    DriftEpisode, EvalRun, GatewayRecord, GatewayState, HistoryCursor, Ledger, LedgerError, Millis,
    Outcome, Pin, PinEnd, Resolution, RevisionRecord, Trigger, WriteBatch,
};
use crate::config::Digest;
use rusqlite::types::Type;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior, params};
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How long a statement waits for another connection's write lock before
/// failing. Writes are single short statements (or a prune), so waiting this
/// long means something is wrong, not merely busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The ledger in an embedded SQLite file.
pub struct SqliteLedger {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLedger").finish_non_exhaustive()
    }
}

impl SqliteLedger {
    /// Opens (creating it and its directory if needed) the ledger at `path`
    /// and brings its schema up to date. An empty (0-byte) file is refused:
    /// SQLite would take it as a new database, and whatever truncated it
    /// would silently cost the whole history (see [`SqliteLedger::open_afresh`]).
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        Self::open_file(path, false)
    }

    /// [`SqliteLedger::open`], starting a new ledger where the file is
    /// empty: the operator's explicit choice (`--fresh-ledger`).
    pub fn open_afresh(path: &Path) -> Result<Self, LedgerError> {
        Self::open_file(path, true)
    }

    fn open_file(path: &Path, afresh: bool) -> Result<Self, LedgerError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                open_error(path, format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        if afresh && refuse_empty(path).is_err() {
            tracing::warn!(path = %path.display(), "the ledger file is empty; starting a new ledger as asked");
            std::fs::remove_file(path).map_err(|e| open_error(path, e.to_string()))?;
            // NB: a WAL left beside the old file would be replayed into the new one.
            remove_sidecars(path);
        }
        if !path
            .try_exists()
            .map_err(|e| open_error(path, e.to_string()))?
        {
            create(path)?;
        }
        refuse_empty(path)?;
        // NB: never SQLITE_OPEN_CREATE: a new ledger is made whole by
        // `create`, so an empty file here is always one something else left.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Self::connect(path, flags)?;
        check_is_ledger(&conn, path)?;
        migrations::migrate(&mut conn)?;
        Ok(SqliteLedger {
            conn: Mutex::new(conn),
        })
    }

    /// A connection in WAL mode with the ledger's settings.
    fn connect(path: &Path, flags: OpenFlags) -> Result<Connection, LedgerError> {
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| open_error(path, e.to_string()))?;
        let setup = |conn: &Connection| -> rusqlite::Result<String> {
            // Set first: even switching to WAL needs a lock another process may hold.
            conn.busy_timeout(BUSY_TIMEOUT)?;
            let mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))?;
            // In WAL mode, synchronous=NORMAL syncs at checkpoints rather than
            // on every commit. A commit is still durable once the statement
            // returns as far as a process crash (SIGKILL, panic, abort) goes,
            // because it is in the WAL file in the OS page cache; only power
            // loss or an OS crash can lose the last few commits, and never
            // corrupts the file. That is the failure the ledger must survive
            // (a killed `sluice run`), at a fraction of FULL's fsync cost.
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.pragma_update(None, "foreign_keys", true)?;
            Ok(mode)
        };
        let mode = setup(&conn).map_err(|e| open_error(path, e.to_string()))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open_error(
                path,
                format!("the journal mode stayed {mode:?}; the ledger needs WAL"),
            ));
        }
        Ok(conn)
    }

    /// Opens an existing ledger for reading only, for `sluice status` and
    /// `sluice history`: it never creates the file or migrates it, so a
    /// reader cannot change what the writer sees. Writes through the trait
    /// fail with a query error.
    pub fn open_read_only(path: &Path) -> Result<Self, LedgerError> {
        match path.try_exists() {
            Ok(true) => {}
            Ok(false) => {
                return Err(open_error(
                    path,
                    "no ledger file there (`sluice run` creates it)".to_string(),
                ));
            }
            Err(e) => return Err(open_error(path, e.to_string())),
        }
        refuse_empty(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .and_then(|conn| conn.busy_timeout(BUSY_TIMEOUT).map(|()| conn))
            .map_err(|e| open_error(path, e.to_string()))?;
        check_is_ledger(&conn, path)?;
        let found = migrations::user_version(&conn)?;
        if found > migrations::LATEST {
            return Err(LedgerError::TooNew {
                found,
                known: migrations::LATEST,
            });
        }
        if found < migrations::LATEST {
            return Err(open_error(
                path,
                format!(
                    "ledger schema version {found} is older than this Sluice's ({}); \
                     open it read-write once (`sluice run`) to migrate it",
                    migrations::LATEST
                ),
            ));
        }
        Ok(SqliteLedger {
            conn: Mutex::new(conn),
        })
    }

    /// The connection. A panic while the lock was held poisons the mutex, but
    /// cannot leave the connection half-way through anything: an unfinished
    /// transaction rolls back when dropped during the unwind. So the lock is
    /// taken regardless, rather than turning one panic into a dead ledger.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Makes a new ledger at `path` whole or not at all: built (WAL mode,
/// migrated) in a file of its own beside it, then linked into place, so no
/// one ever sees `path` empty, and two processes creating it at once end up
/// sharing one (the second link fails and that one is used).
fn create(path: &Path) -> Result<(), LedgerError> {
    let name = path
        .file_name()
        .map_or_else(|| "ledger".into(), |n| n.to_string_lossy().into_owned());
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let building = path.with_file_name(format!(".{name}.{}.{unique}.new", std::process::id()));
    let built = (|| {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = SqliteLedger::connect(&building, flags)?;
        migrations::migrate(&mut conn)?;
        // Closing the only connection checkpoints the WAL into the file.
        conn.close()
            .map_err(|(_, e)| open_error(&building, e.to_string()))?;
        match std::fs::hard_link(&building, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(open_error(
                path,
                format!("cannot put the new ledger in place: {e}"),
            )),
        }
    })();
    let _ = std::fs::remove_file(&building);
    remove_sidecars(&building);
    built
}

/// Removes the `-wal` and `-shm` files SQLite keeps beside `path`.
fn remove_sidecars(path: &Path) {
    for sidecar in ["-wal", "-shm"] {
        let mut file = path.to_path_buf().into_os_string();
        file.push(sidecar);
        let _ = std::fs::remove_file(file);
    }
}

/// An existing ledger file of 0 bytes is not a new ledger: something
/// truncated it (a full disk, a bad restore, a stray `>`).
fn refuse_empty(path: &Path) -> Result<(), LedgerError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() && meta.len() == 0 => Err(open_error(
            path,
            "the file is empty (0 bytes), so its records are gone; restore it from a backup, \
             or start a new ledger with --fresh-ledger"
                .into(),
        )),
        _ => Ok(()),
    }
}

/// Refuses SQLite files that are not Sluice ledgers, so a mistyped `--ledger`
/// path does not get ledger tables added to someone else's database.
fn check_is_ledger(conn: &Connection, path: &Path) -> Result<(), LedgerError> {
    let inspect = || -> rusqlite::Result<(i64, i64, i64)> {
        let application_id = conn.pragma_query_value(None, "application_id", |row| row.get(0))?;
        let version = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let objects = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))?;
        Ok((application_id, version, objects))
    };
    let (application_id, version, objects) =
        inspect().map_err(|e| open_error(path, e.to_string()))?;
    let fresh = application_id == 0 && version == 0 && objects == 0;
    if fresh || application_id == migrations::APPLICATION_ID {
        Ok(())
    } else {
        Err(open_error(
            path,
            format!(
                "not a Sluice ledger (application_id {application_id}, \
                 user_version {version}, {objects} schema objects)"
            ),
        ))
    }
}

fn open_error(path: &Path, message: String) -> LedgerError {
    LedgerError::Open {
        path: path.display().to_string(),
        message,
    }
}

/// Maps a SQLite error to a [`LedgerError::Query`] saying what was being done.
fn query_error(doing: &'static str) -> impl Fn(rusqlite::Error) -> LedgerError {
    move |e| LedgerError::Query {
        doing,
        message: e.to_string(),
    }
}

/// Digests are stored as their text and read back only as digests: a
/// corrupt or hand-edited one is an error naming its column, never a
/// version that matches nothing.
impl rusqlite::ToSql for Digest {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl rusqlite::types::FromSql for Digest {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        Digest::parse(text).ok_or_else(|| {
            rusqlite::types::FromSqlError::Other(
                format!(
                    "`{}` is not a digest (sha256:<64 hex>)",
                    crate::source::prefix(text, 80)
                )
                .into(),
            )
        })
    }
}

/// A text column holding a value the code does not know: a corrupt or
/// hand-edited file, since a newer schema is refused at open.
fn unknown_value(column: usize, what: &str, text: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        Type::Text,
        format!("unknown {what} {text:?}").into(),
    )
}

/// How the JSON columns (a deployment's or an eval run's `packs`, an eval
/// run's `failures`) are written: the one place they are encoded.
fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("records of strings and numbers serialize")
}

/// A JSON column read back, the one place they are decoded: a column that
/// does not decode is an error naming the table, row and column (never
/// "empty", which a promotion or eval gate would read as nothing there).
fn json_of<T: serde::de::DeserializeOwned>(
    row: &Row<'_>,
    column: usize,
    table: &str,
) -> Result<T, rusqlite::Error> {
    let text: String = row.get(column)?;
    serde_json::from_str(&text).map_err(|e| {
        // NB: a row is named by its id, or a revision by its commit.
        let id = row
            .get::<_, i64>("id")
            .map(|id| id.to_string())
            .or_else(|_| row.get::<_, String>("commit_id"))
            .ok();
        let name = row
            .as_ref()
            .column_name(column)
            .map_or_else(|_| column.to_string(), str::to_owned);
        rusqlite::Error::FromSqlConversionFailure(
            column,
            Type::Text,
            format!(
                "{table} row {}: column {name} is not the JSON Sluice writes ({e}): {}",
                id.as_deref().unwrap_or("?"),
                crate::source::prefix(&text, 80)
            )
            .into(),
        )
    })
}

/// Converts a retention to a cutoff: records older than the result go.
/// Saturates, so an absurdly long retention keeps everything.
fn cutoff(now: Millis, retention: Duration) -> Millis {
    now.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX))
}

const REVISION_COLUMNS: &str = "commit_id, seen_at, valid, errors, findings";

fn revision_from_row(row: &Row<'_>) -> rusqlite::Result<RevisionRecord> {
    let errors: i64 = row.get(3)?;
    Ok(RevisionRecord {
        commit: row.get(0)?,
        seen_at: row.get(1)?,
        valid: row.get(2)?,
        errors: usize::try_from(errors).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, Type::Integer, Box::new(e))
        })?,
        findings: json_of(row, 4, "revisions")?,
    })
}

const ATTEMPT_COLUMNS: &str = "id, environment, gateway, revision, digest, triggered_by, \
                               started_at, finished_at, outcome, error";

fn attempt_from_row(row: &Row<'_>) -> rusqlite::Result<Attempt> {
    let trigger: String = row.get(5)?;
    let outcome: Option<String> = row.get(8)?;
    Ok(Attempt {
        id: row.get(0)?,
        start: AttemptStart {
            environment: row.get(1)?,
            gateway: row.get(2)?,
            revision: row.get(3)?,
            digest: row.get(4)?,
            trigger: Trigger::parse(&trigger)
                .ok_or_else(|| unknown_value(5, "trigger", &trigger))?,
            started_at: row.get(6)?,
        },
        finished_at: row.get(7)?,
        outcome: outcome
            .map(|text| Outcome::parse(&text).ok_or_else(|| unknown_value(8, "outcome", &text)))
            .transpose()?,
        error: row.get(9)?,
    })
}

const GATEWAY_COLUMNS: &str = "environment, gateway, desired_digest, desired_revision, \
                               observed_digest, state, changed_at, updated_at, error";

fn gateway_from_row(row: &Row<'_>) -> rusqlite::Result<GatewayRecord> {
    let state: String = row.get(5)?;
    Ok(GatewayRecord {
        environment: row.get(0)?,
        gateway: row.get(1)?,
        desired_digest: row.get(2)?,
        desired_revision: row.get(3)?,
        observed_digest: row.get(4)?,
        state: GatewayState::parse(&state).ok_or_else(|| unknown_value(5, "state", &state))?,
        changed_at: row.get(6)?,
        updated_at: row.get(7)?,
        error: row.get(8)?,
    })
}

impl Ledger for SqliteLedger {
    /// Records a revision once per commit. Seeing the same commit again keeps
    /// its first `seen_at` (and its place in insertion order): the record says
    /// when the commit first appeared, and re-polling an unchanged branch does
    /// not make an old commit look new. The validation result is replaced,
    /// because a commit's content never changes but the rules judging it can
    /// (a Sluice upgrade), and the ledger should hold the current verdict.
    fn record_revision(&self, revision: &RevisionRecord) -> Result<(), LedgerError> {
        let doing = "recording a revision";
        let errors = i64::try_from(revision.errors).map_err(|_| LedgerError::Query {
            doing,
            message: format!("error count {} does not fit", revision.errors),
        })?;
        self.conn()
            .prepare_cached(
                "INSERT INTO revisions (commit_id, seen_at, last_seen_at, valid, errors, findings)
                 VALUES (?1, ?2, ?2, ?3, ?4, ?5)
                 ON CONFLICT (commit_id) DO UPDATE SET
                     last_seen_at = excluded.seen_at,
                     valid = excluded.valid,
                     errors = excluded.errors,
                     findings = excluded.findings",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    revision.commit,
                    revision.seen_at,
                    revision.valid,
                    errors,
                    json_text(&revision.findings)
                ])
            })
            .map(drop)
            .map_err(query_error(doing))
    }

    fn last_revision(&self) -> Result<Option<RevisionRecord>, LedgerError> {
        self.conn()
            .query_row(
                &format!(
                    "SELECT {REVISION_COLUMNS} FROM revisions
                     ORDER BY last_seen_at DESC, seq DESC LIMIT 1"
                ),
                [],
                revision_from_row,
            )
            .optional()
            .map_err(query_error("reading the last revision"))
    }

    fn start_attempt(&self, start: &AttemptStart) -> Result<AttemptId, LedgerError> {
        start_attempt(&self.conn(), start)
    }

    fn finish_attempt(
        &self,
        id: AttemptId,
        finished_at: Millis,
        outcome: Outcome,
        error: Option<&str>,
    ) -> Result<(), LedgerError> {
        finish_attempt(
            &self.conn(),
            &AttemptFinish {
                id,
                finished_at,
                outcome,
                error: error.map(str::to_owned),
            },
        )
    }

    /// NB: one transaction for the whole group: a commit per attempt is
    /// most of the ledger's cost in a large rollout.
    fn write(&self, batch: &WriteBatch) -> Result<BatchResult, LedgerError> {
        let doing = "writing a batch";
        let conn = self.conn();
        let tx = conn.unchecked_transaction().map_err(query_error(doing))?;
        let started = batch
            .starts
            .iter()
            .map(|start| start_attempt(&tx, start))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .map(Ok)
            .collect();
        // A finish that fails (unknown or already finished) fails alone;
        // one SQLite refused fails the batch.
        let finished = batch
            .finishes
            .iter()
            .map(|finish| finish_in(&tx, finish).map_err(query_error("finishing an attempt")))
            .collect::<Result<Vec<_>, _>>()?;
        for record in &batch.records {
            upsert_gateway(&tx, record)?;
        }
        // NB: after some errors (a full disk, an I/O error) SQLite rolls the
        // transaction back by itself, and every statement after that ran in
        // autocommit mode: committing now would claim the whole batch.
        if tx.is_autocommit() {
            return Err(LedgerError::Query {
                doing,
                message: "SQLite rolled the transaction back".into(),
            });
        }
        tx.commit().map_err(query_error(doing))?;
        Ok(BatchResult { started, finished })
    }

    fn unfinished_attempts(&self) -> Result<Vec<Attempt>, LedgerError> {
        let doing = "listing unfinished attempts";
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE finished_at IS NULL ORDER BY id"
            ))
            .map_err(query_error(doing))?;
        stmt.query_map([], attempt_from_row)
            .and_then(Iterator::collect)
            .map_err(query_error(doing))
    }

    fn history_page(
        &self,
        environment: &str,
        gateway: Option<&str>,
        before: Option<HistoryCursor>,
        limit: usize,
    ) -> Result<Vec<Attempt>, LedgerError> {
        let doing = "reading attempt history";
        let limit = clamp(limit);
        // NB: a row-value comparison walks the index from the cursor on;
        // with no cursor, one past every row.
        let (started_at, id) = before.map_or((i64::MAX, i64::MAX), |b| (b.started_at, b.id));
        let conn = self.conn();
        // Two statements rather than `(?2 IS NULL OR gateway = ?2)`, so each
        // can use its own index.
        let rows = match gateway {
            Some(gateway) => conn
                .prepare_cached(&format!(
                    "SELECT {ATTEMPT_COLUMNS} FROM attempts
                     WHERE environment = ?1 AND gateway = ?2 AND (started_at, id) < (?3, ?4)
                     ORDER BY started_at DESC, id DESC LIMIT ?5"
                ))
                .and_then(|mut stmt| {
                    stmt.query_map(
                        params![environment, gateway, started_at, id, limit],
                        attempt_from_row,
                    )?
                    .collect()
                }),
            None => conn
                .prepare_cached(&format!(
                    "SELECT {ATTEMPT_COLUMNS} FROM attempts
                     WHERE environment = ?1 AND (started_at, id) < (?2, ?3)
                     ORDER BY started_at DESC, id DESC LIMIT ?4"
                ))
                .and_then(|mut stmt| {
                    stmt.query_map(
                        params![environment, started_at, id, limit],
                        attempt_from_row,
                    )?
                    .collect()
                }),
        };
        rows.map_err(query_error(doing))
    }

    /// Writes a gateway's record whole, as given: the caller decides
    /// `changed_at`, since only it knows whether the state really changed.
    fn upsert_gateway(&self, record: &GatewayRecord) -> Result<(), LedgerError> {
        upsert_gateway(&self.conn(), record)
    }

    fn upsert_gateways(&self, records: &[GatewayRecord]) -> Result<(), LedgerError> {
        let doing = "writing gateway records";
        let conn = self.conn();
        // NB: one transaction for a batch: per-record commits dominate a
        // pass over thousands of gateways.
        let tx = conn.unchecked_transaction().map_err(query_error(doing))?;
        for record in records {
            upsert_gateway(&tx, record)?;
        }
        tx.commit().map_err(query_error(doing))
    }

    fn remove_gateways(&self, gone: &[(String, String)]) -> Result<(), LedgerError> {
        let doing = "removing records of gateways no longer configured";
        let conn = self.conn();
        let tx = conn.unchecked_transaction().map_err(query_error(doing))?;
        for (environment, gateway) in gone {
            tx.prepare_cached("DELETE FROM gateways WHERE environment = ?1 AND gateway = ?2")
                .and_then(|mut stmt| stmt.execute(params![environment, gateway]))
                .map_err(query_error(doing))?;
        }
        tx.commit().map_err(query_error(doing))
    }

    fn gateways(&self, environment: Option<&str>) -> Result<Vec<GatewayRecord>, LedgerError> {
        let conn = self.conn();
        let rows = match environment {
            Some(environment) => conn
                .prepare_cached(&format!(
                    "SELECT {GATEWAY_COLUMNS} FROM gateways
                     WHERE environment = ?1 ORDER BY environment, gateway"
                ))
                .and_then(|mut stmt| stmt.query_map([environment], gateway_from_row)?.collect()),
            None => conn
                .prepare_cached(&format!(
                    "SELECT {GATEWAY_COLUMNS} FROM gateways ORDER BY environment, gateway"
                ))
                .and_then(|mut stmt| stmt.query_map([], gateway_from_row)?.collect()),
        };
        rows.map_err(query_error("listing gateways"))
    }

    /// Deletes, in one transaction:
    ///
    /// - finished attempts whose `finished_at` is older than their
    ///   environment's retention. Unfinished attempts are never deleted, however
    ///   old: they are the evidence a crash left, and only resolving them (which
    ///   finishes them) lets them age out.
    /// - revisions seen before the longest retention of any environment the
    ///   ledger knows (from attempts or gateway records), because a revision is
    ///   not tied to one environment and production's history must still be
    ///   able to say what its revisions were. Even then a revision stays while
    ///   a remaining attempt or a gateway's desired state names it, and the
    ///   newest revision always stays, so [`Ledger::last_revision`] never
    ///   changes because of pruning. With no environment known yet, no
    ///   revision is deleted: there is no retention to apply.
    ///
    /// Gateway records are current state, not history, and are never pruned.
    fn prune(
        &self,
        now: Millis,
        retention: &dyn Fn(&str) -> Duration,
    ) -> Result<usize, LedgerError> {
        let doing = "pruning old records";
        let mut conn = self.conn();
        // IMMEDIATE: take the write lock up front, so a read-then-write
        // transaction cannot fail with a stale snapshot when another process
        // writes in between.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(query_error(doing))?;
        let environments = |sql: &str| -> rusqlite::Result<Vec<String>> {
            tx.prepare(sql)?.query_map([], |row| row.get(0))?.collect()
        };
        let mut deleted = 0;

        let finished =
            environments("SELECT DISTINCT environment FROM attempts WHERE finished_at IS NOT NULL")
                .map_err(query_error(doing))?;
        for environment in &finished {
            deleted += tx
                .execute(
                    "DELETE FROM attempts
                     WHERE environment = ?1 AND finished_at IS NOT NULL AND finished_at < ?2",
                    params![environment, cutoff(now, retention(environment))],
                )
                .map_err(query_error(doing))?;
        }

        let known = environments(
            "SELECT environment FROM attempts UNION SELECT environment FROM gateways
                 UNION SELECT environment FROM pins UNION SELECT environment FROM eval_runs",
        )
        .map_err(query_error(doing))?;
        if let Some(longest) = known.iter().map(|e| retention(e)).max() {
            deleted += tx
                .execute(
                    "DELETE FROM revisions
                     WHERE seen_at < ?1
                       AND seq <> (SELECT seq FROM revisions ORDER BY seen_at DESC, seq DESC LIMIT 1)
                       AND commit_id NOT IN (SELECT revision FROM attempts)
                       AND commit_id NOT IN
                           (SELECT desired_revision FROM gateways WHERE desired_revision IS NOT NULL)",
                    [cutoff(now, longest)],
                )
                .map_err(query_error(doing))?;
        }
        for environment in &known {
            let before = cutoff(now, retention(environment));
            deleted += tx
                .execute(
                    "DELETE FROM drift_episodes
                     WHERE environment = ?1 AND resolved_at IS NOT NULL AND resolved_at < ?2",
                    params![environment, before],
                )
                .map_err(query_error(doing))?;
            deleted += tx
                .execute(
                    "DELETE FROM pins
                     WHERE environment = ?1 AND ended_at IS NOT NULL AND ended_at < ?2",
                    params![environment, before],
                )
                .map_err(query_error(doing))?;
            // The newest run of each suite stays: what a gate reads.
            deleted += tx
                .execute(
                    "DELETE FROM eval_runs
                     WHERE environment = ?1 AND run_at < ?2
                       AND id NOT IN (SELECT MAX(id) FROM eval_runs
                                      WHERE environment = ?1 GROUP BY suite)",
                    params![environment, before],
                )
                .map_err(query_error(doing))?;
            // The newest deployment stays: it is what the environment runs.
            deleted += tx
                .execute(
                    "DELETE FROM deployments
                     WHERE environment = ?1 AND verified_at < ?2
                       AND id <> (SELECT MAX(id) FROM deployments WHERE environment = ?1)",
                    params![environment, before],
                )
                .map_err(query_error(doing))?;
        }
        tx.commit().map_err(query_error(doing))?;
        Ok(deleted)
    }

    fn record_deployment(&self, deployment: &Deployment) -> Result<bool, LedgerError> {
        let doing = "recording a deployment";
        let conn = self.conn();
        let newest: Option<Digest> = conn
            .prepare_cached(
                "SELECT digest FROM deployments WHERE environment = ?1 ORDER BY id DESC LIMIT 1",
            )
            .and_then(|mut stmt| {
                stmt.query_row([&deployment.environment], |row| row.get(0))
                    .optional()
            })
            .map_err(query_error(doing))?;
        if newest.as_ref() == Some(&deployment.digest) {
            return Ok(false);
        }
        conn.prepare_cached(
            "INSERT INTO deployments (environment, revision, digest, packs, verified_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                deployment.environment,
                deployment.revision,
                deployment.digest,
                json_text::<[DeployedPack]>(&deployment.packs),
                deployment.verified_at
            ])
        })
        .map_err(query_error(doing))?;
        Ok(true)
    }

    fn deployments(&self, environment: &str, limit: usize) -> Result<Vec<Deployment>, LedgerError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT environment, revision, digest, packs, verified_at, id FROM deployments
                 WHERE environment = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(query_error("listing deployments"))?;
        stmt.query_map(params![environment, clamp(limit)], |row| {
            Ok(Deployment {
                environment: row.get(0)?,
                revision: row.get(1)?,
                digest: row.get(2)?,
                packs: json_of(row, 3, "deployments")?,
                verified_at: row.get(4)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(query_error("listing deployments"))
    }

    fn open_drift(&self, episode: &DriftEpisode) -> Result<bool, LedgerError> {
        let doing = "opening a drift episode";
        let conn = self.conn();
        let updated = conn
            .prepare_cached(
                "UPDATE drift_episodes SET live_digest = ?3, changes = ?4
                 WHERE environment = ?1 AND gateway = ?2 AND resolved_at IS NULL",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    episode.environment,
                    episode.gateway,
                    episode.live_digest,
                    json_text(&episode.changes)
                ])
            })
            .map_err(query_error(doing))?;
        if updated > 0 {
            return Ok(false);
        }
        conn.prepare_cached(
            "INSERT INTO drift_episodes
                 (environment, gateway, revision, desired_digest, live_digest, changes, onset_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                episode.environment,
                episode.gateway,
                episode.revision,
                episode.desired_digest,
                episode.live_digest,
                json_text(&episode.changes),
                episode.onset_at
            ])
        })
        .map_err(query_error(doing))?;
        Ok(true)
    }

    fn resolve_drift(
        &self,
        environment: &str,
        gateway: &str,
        at: Millis,
        resolution: Resolution,
    ) -> Result<Option<DriftEpisode>, LedgerError> {
        self.conn()
            .prepare_cached(&format!(
                "UPDATE drift_episodes SET resolved_at = ?3, resolution = ?4
                 WHERE environment = ?1 AND gateway = ?2 AND resolved_at IS NULL
                 RETURNING {DRIFT_COLUMNS}"
            ))
            // NB: every row read, so the statement runs to its end and a
            // commit that fails is an error (see `start_attempt`).
            .and_then(|mut stmt| {
                stmt.query_map(
                    params![environment, gateway, at, resolution.as_str()],
                    drift_from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map(|episodes| episodes.into_iter().next())
            .map_err(query_error("resolving a drift episode"))
    }

    fn drift_episodes(
        &self,
        environment: Option<&str>,
        open_only: bool,
        limit: usize,
    ) -> Result<Vec<DriftEpisode>, LedgerError> {
        let doing = "listing drift episodes";
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {DRIFT_COLUMNS} FROM drift_episodes
                 WHERE (?1 IS NULL OR environment = ?1) AND (?2 = 0 OR resolved_at IS NULL)
                 ORDER BY onset_at DESC, id DESC LIMIT ?3"
            ))
            .map_err(query_error(doing))?;
        stmt.query_map(
            params![environment, open_only, clamp(limit)],
            drift_from_row,
        )
        .and_then(|rows| rows.collect())
        .map_err(query_error(doing))
    }
    fn pin(&self, pin: &Pin) -> Result<Option<Pin>, LedgerError> {
        let doing = "pinning an environment";
        let conn = self.conn();
        let tx = conn.unchecked_transaction().map_err(query_error(doing))?;
        let replaced = end_pin(&tx, &pin.environment, pin.at, &pin.by, PinEnd::Replaced)
            .map_err(query_error(doing))?;
        tx.prepare_cached(
            "INSERT INTO pins (environment, digest, revision, reason, pinned_by, pinned_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                pin.environment,
                pin.digest,
                pin.revision,
                pin.reason,
                pin.by,
                pin.at
            ])
        })
        .map_err(query_error(doing))?;
        tx.commit().map_err(query_error(doing))?;
        Ok(replaced)
    }

    fn unpin(
        &self,
        environment: &str,
        at: Millis,
        by: &str,
        how: PinEnd,
    ) -> Result<Option<Pin>, LedgerError> {
        end_pin(&self.conn(), environment, at, by, how).map_err(query_error("unpinning"))
    }

    fn pin_holds(&self, environment: &str, since: Millis) -> Result<(), LedgerError> {
        self.conn()
            .prepare_cached(
                "UPDATE pins SET held_since = ?2
                 WHERE environment = ?1 AND ended_at IS NULL AND held_since IS NULL",
            )
            .and_then(|mut stmt| stmt.execute(params![environment, since]))
            .map(drop)
            .map_err(query_error("marking a pin as holding"))
    }

    fn pins(&self, environment: Option<&str>) -> Result<Vec<Pin>, LedgerError> {
        let doing = "listing pins";
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {PIN_COLUMNS} FROM pins
                 WHERE ended_at IS NULL AND (?1 IS NULL OR environment = ?1)
                 ORDER BY environment"
            ))
            .map_err(query_error(doing))?;
        stmt.query_map(params![environment], pin_from_row)
            .and_then(|rows| rows.collect())
            .map_err(query_error(doing))
    }

    fn pin_history(&self, environment: &str, limit: usize) -> Result<Vec<Pin>, LedgerError> {
        let doing = "listing pin history";
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {PIN_COLUMNS} FROM pins WHERE environment = ?1 ORDER BY id DESC LIMIT ?2"
            ))
            .map_err(query_error(doing))?;
        stmt.query_map(params![environment, clamp(limit)], pin_from_row)
            .and_then(|rows| rows.collect())
            .map_err(query_error(doing))
    }

    fn record_eval_run(&self, run: &EvalRun) -> Result<(), LedgerError> {
        let doing = "recording an eval run";
        let run = run.capped();
        self.conn()
            .prepare_cached(
                "INSERT INTO eval_runs
                     (environment, suite, revision, digest, packs, passed, failed, failures, run_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    run.environment,
                    run.suite,
                    run.revision,
                    run.digest,
                    json_text(&run.packs),
                    run.passed,
                    run.failed,
                    json_text(&run.failures),
                    run.at
                ])
            })
            .map(drop)
            .map_err(query_error(doing))
    }

    fn eval_runs(
        &self,
        environment: &str,
        suite: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EvalRun>, LedgerError> {
        let doing = "listing eval runs";
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {EVAL_COLUMNS} FROM eval_runs
                 WHERE environment = ?1 AND (?2 IS NULL OR suite = ?2)
                 ORDER BY run_at DESC, id DESC LIMIT ?3"
            ))
            .map_err(query_error(doing))?;
        stmt.query_map(params![environment, suite, clamp(limit)], eval_from_row)
            .and_then(|rows| rows.collect())
            .map_err(query_error(doing))
    }
}

const PIN_COLUMNS: &str = "environment, digest, revision, reason, pinned_by, pinned_at, \
                           ended_at, ended_by, end_reason, held_since, id";

fn pin_from_row(row: &Row<'_>) -> rusqlite::Result<Pin> {
    Ok(Pin {
        environment: row.get(0)?,
        digest: row.get(1)?,
        revision: row.get(2)?,
        reason: row.get(3)?,
        by: row.get(4)?,
        at: row.get(5)?,
        ended_at: row.get(6)?,
        ended_by: row.get(7)?,
        end_reason: row
            .get::<_, Option<String>>(8)?
            .map(|text| PinEnd::parse(&text).ok_or_else(|| unknown_value(8, "end of a pin", &text)))
            .transpose()?,
        held_since: row.get(9)?,
    })
}

/// Ends an environment's pin in place, if any, and returns it ended.
fn end_pin(
    conn: &Connection,
    environment: &str,
    at: Millis,
    by: &str,
    how: PinEnd,
) -> rusqlite::Result<Option<Pin>> {
    // NB: every row read, so the statement runs to its end (see `start_attempt`).
    conn.prepare_cached(&format!(
        "UPDATE pins SET ended_at = ?2, ended_by = ?3, end_reason = ?4
         WHERE environment = ?1 AND ended_at IS NULL
         RETURNING {PIN_COLUMNS}"
    ))
    .and_then(|mut stmt| {
        stmt.query_map(params![environment, at, by, how.as_str()], pin_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()
    })
    .map(|pins| pins.into_iter().next())
}

const EVAL_COLUMNS: &str =
    "environment, suite, revision, digest, packs, passed, failed, failures, run_at, id";

fn eval_from_row(row: &Row<'_>) -> rusqlite::Result<EvalRun> {
    Ok(EvalRun {
        environment: row.get(0)?,
        suite: row.get(1)?,
        revision: row.get(2)?,
        digest: row.get(3)?,
        packs: json_of(row, 4, "eval_runs")?,
        passed: row.get(5)?,
        failed: row.get(6)?,
        failures: json_of(row, 7, "eval_runs")?,
        at: row.get(8)?,
    })
}

const DRIFT_COLUMNS: &str = "environment, gateway, revision, desired_digest, live_digest, \
                             changes, onset_at, resolved_at, resolution";

fn drift_from_row(row: &Row<'_>) -> rusqlite::Result<DriftEpisode> {
    Ok(DriftEpisode {
        environment: row.get(0)?,
        gateway: row.get(1)?,
        revision: row.get(2)?,
        desired_digest: row.get(3)?,
        live_digest: row.get(4)?,
        changes: json_of(row, 5, "drift_episodes")?,
        onset_at: row.get(6)?,
        resolved_at: row.get(7)?,
        resolution: row
            .get::<_, Option<String>>(8)?
            .map(|text| {
                Resolution::parse(&text).ok_or_else(|| unknown_value(8, "resolution", &text))
            })
            .transpose()?,
    })
}

/// A row limit as SQLite takes it.
fn clamp(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Inserts an attempt's start and returns its id.
///
/// NB: not `INSERT … RETURNING id` read with `query_row`: that reads the id
/// on the first step and leaves the statement to be reset, and an implicit
/// (autocommit) transaction commits at that reset, whose error rusqlite
/// drops. On a full disk the commit failed, the row was rolled back, and the
/// id went out anyway: applies then ran under records that did not exist.
/// `execute` steps the statement to its end, so a failed commit is an error
/// here, and the id is read only after it.
fn start_attempt(conn: &Connection, start: &AttemptStart) -> Result<AttemptId, LedgerError> {
    let doing = "starting an attempt";
    conn.prepare_cached(
        "INSERT INTO attempts
             (environment, gateway, revision, digest, triggered_by, started_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            start.environment,
            start.gateway,
            start.revision,
            start.digest,
            start.trigger.as_str(),
            start.started_at
        ])
    })
    .map_err(query_error(doing))?;
    Ok(conn.last_insert_rowid())
}

/// Finishes an unfinished attempt. The `finished_at IS NULL` guard makes
/// the check and the write one statement, so two processes racing to
/// finish the same attempt cannot both succeed.
fn finish_attempt(conn: &Connection, finish: &AttemptFinish) -> Result<(), LedgerError> {
    finish_in(conn, finish).map_err(query_error("finishing an attempt"))?
}

/// [`finish_attempt`], keeping apart what SQLite refused (the outer error:
/// the write failed) from an attempt that is missing or already finished
/// (the inner one: the write was fine, the finish is not).
fn finish_in(
    conn: &Connection,
    finish: &AttemptFinish,
) -> rusqlite::Result<Result<(), LedgerError>> {
    let id = finish.id;
    let changed = conn
        .prepare_cached(
            "UPDATE attempts SET finished_at = ?2, outcome = ?3, error = ?4
             WHERE id = ?1 AND finished_at IS NULL",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                id,
                finish.finished_at,
                finish.outcome.as_str(),
                finish.error
            ])
        })?;
    if changed == 1 {
        return Ok(Ok(()));
    }
    // Nothing changed: say whether the attempt is missing or already done.
    let existing: Option<(Option<Millis>, Option<String>)> = conn
        .query_row(
            "SELECT finished_at, outcome FROM attempts WHERE id = ?1",
            [id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    Ok(match existing {
        None => Err(LedgerError::NoSuchAttempt(id)),
        Some((finished, outcome)) => Err(LedgerError::Query {
            doing: "finishing an attempt",
            message: format!(
                "attempt {id} was already finished (at {}, {})",
                finished.map_or_else(|| "?".to_string(), |at| at.to_string()),
                outcome.as_deref().unwrap_or("?"),
            ),
        }),
    })
}

/// Writes one gateway record on a connection (or inside a transaction).
fn upsert_gateway(conn: &rusqlite::Connection, record: &GatewayRecord) -> Result<(), LedgerError> {
    conn.prepare_cached(&format!(
        "INSERT INTO gateways ({GATEWAY_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (environment, gateway) DO UPDATE SET
                     desired_digest = excluded.desired_digest,
                     desired_revision = excluded.desired_revision,
                     observed_digest = excluded.observed_digest,
                     state = excluded.state,
                     changed_at = excluded.changed_at,
                     updated_at = excluded.updated_at,
                     error = excluded.error"
    ))
    .and_then(|mut stmt| {
        stmt.execute(params![
            record.environment,
            record.gateway,
            record.desired_digest,
            record.desired_revision,
            record.observed_digest,
            record.state.as_str(),
            record.changed_at,
            record.updated_at,
            record.error
        ])
    })
    .map(drop)
    .map_err(query_error("writing a gateway record"))
}
