//! The control schema: its embedded migrations, the run ledger and the
//! tenant registry.
//!
//! The ledger is written by one task that owns one connection and batches
//! per-schema records, so workers never wait on bookkeeping; it reconnects
//! when that connection is lost (see `ledger/writer.rs`). A run is alive
//! while its writer holds the run's advisory lock (`RunKey`).

mod writer;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::Digest;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Connection, Row};
use tokio::sync::mpsc;

use self::writer::{Msg, Writer};

use crate::error::{Error, Result};
use crate::events::{Phase, SchemaOutcome};
use crate::ident::qualified;
use crate::migration::{Migration, MigrationSet};

static CONTROL_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The control schema's own migrations (top-level `migrations/`, embedded).
pub fn control_migrations() -> MigrationSet {
    MigrationSet::from_migrations(
        CONTROL_MIGRATOR
            .iter()
            .map(|m| {
                Migration::new(
                    m.version,
                    m.description.to_string(),
                    m.sql.as_str().to_string(),
                )
            })
            .collect(),
    )
}

/// Does the control schema's ledger exist yet?
pub async fn ledger_exists(conn: &mut PgConnection, control: &str) -> Result<bool> {
    // language=SQL
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(qualified(control, "runs"))
        .fetch_one(&mut *conn)
        .await
        .map_err(Error::db("looking for the run ledger"))
}

/// One schema's record in a run, as sent to the ledger writer.
#[derive(Debug, Clone)]
pub struct Record {
    /// The schema.
    pub schema: String,
    /// Shared or tenant.
    pub phase: Phase,
    /// `running`, or an [`crate::events::OutcomeState`] word.
    pub state: String,
    /// Version before.
    pub from_version: Option<i64>,
    /// Version after.
    pub to_version: Option<i64>,
    /// Error text.
    pub error: Option<String>,
    /// Failing version.
    pub failed_version: Option<i64>,
    /// Failing statement.
    pub failed_statement: Option<String>,
    /// When the schema was started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Time spent.
    pub duration_ms: Option<i64>,
    /// Tries.
    pub attempts: i32,
}

impl Record {
    /// The record of a schema a worker just took.
    pub fn started(schema: &str, phase: Phase) -> Self {
        Record {
            schema: schema.to_string(),
            phase,
            state: "running".into(),
            from_version: None,
            to_version: None,
            error: None,
            failed_version: None,
            failed_statement: None,
            started_at: Some(Utc::now()),
            finished_at: None,
            duration_ms: None,
            attempts: 0,
        }
    }

    /// The record of a finished schema.
    pub fn finished(o: &SchemaOutcome) -> Self {
        Record {
            schema: o.schema.clone(),
            phase: o.phase,
            state: o.state.as_str().into(),
            from_version: o.from_version,
            to_version: o.to_version,
            error: o.error.clone(),
            failed_version: o.failed_version,
            failed_statement: o.failed_statement.clone(),
            started_at: None,
            finished_at: Some(Utc::now()),
            duration_ms: Some(o.duration_ms as i64),
            attempts: o.attempts as i32,
        }
    }

    fn merge(&mut self, newer: Record) {
        let started = self.started_at.or(newer.started_at);
        *self = newer;
        self.started_at = started;
    }
}

/// A cloneable handle that queues records for a run's ledger writer.
#[derive(Clone)]
pub struct LedgerSender(mpsc::UnboundedSender<Msg>);

impl LedgerSender {
    /// Queues a record (never blocks, never fails the caller).
    pub fn record(&self, r: Record) {
        let _ = self.0.send(Msg::Record(r));
    }
}

/// Totals written to a run's row when it ends.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunTotals {
    /// Schemas considered.
    pub total: i64,
    /// Succeeded or already up to date.
    pub ok: i64,
    /// Failed, refused or vanished.
    pub failed: i64,
    /// Not reached.
    pub skipped: i64,
    /// Stopped between migrations by Ctrl-C or SIGTERM (not done, but not
    /// failed: nothing went wrong with their migrations).
    pub stopped: i64,
}

impl RunTotals {
    /// The totals of a fan-out over `total` schemas, from how many failed
    /// (stopped ones included, as `failures()` counts them), were stopped
    /// and were not reached; the rest are ok.
    pub fn of_run(total: i64, failures: i64, stopped: i64, not_reached: i64) -> RunTotals {
        let failed = failures - stopped;
        RunTotals {
            total,
            ok: total - failed - stopped - not_reached,
            failed,
            skipped: not_reached,
            stopped,
        }
    }
}

/// The session-level advisory lock that marks a run as alive: the two-int
/// form `(namespace, run id)`, so it never meets the one-`bigint` keys of
/// schema locks. The namespace is a hash of the control schema's name, so
/// two control schemas in one database keep their runs apart.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunKey {
    /// The control schema's namespace.
    ns: i32,
    /// The run id, folded into 31 bits.
    id: i32,
}

impl RunKey {
    fn new(control: &str, run_id: i64) -> RunKey {
        RunKey {
            ns: run_namespace(control),
            id: (run_id % (1 << 31)) as i32,
        }
    }

    /// Tries once to take the lock on `conn` (it is never waited for: a
    /// holder is a live run, or a backend that has not noticed its client
    /// is gone).
    async fn try_lock(&self, conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
        // language=SQL
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(self.ns)
            .bind(self.id)
            .fetch_one(&mut *conn)
            .await
    }
}

/// The namespace half of the run locks of a control schema.
fn run_namespace(control: &str) -> i32 {
    let h = sha2::Sha256::digest(format!("tenantmig run ledger: {control}"));
    i32::from_be_bytes([h[0], h[1], h[2], h[3]])
}

/// The run ids (folded as in [`RunKey`]) whose lock is held, i.e. whose
/// process is alive: a CTE named `held` with one column `k`. `$ns` is the
/// parameter that carries the namespace as an unsigned number (as
/// `pg_locks.classid` shows it).
fn held_cte(ns: &str) -> String {
    // language=SQL
    format!(
        "held AS (SELECT l.objid::int8 AS k FROM pg_catalog.pg_locks l
                  WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                    AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
                    AND l.classid::int8 = {ns})"
    )
}

/// `pg_locks.classid` of a namespace.
fn ns_param(control: &str) -> i64 {
    i64::from(run_namespace(control) as u32)
}

/// Row states counted as ok: the schema ended at its goal.
// language=SQL
const OK_STATES: &str = "('succeeded', 'up_to_date')";

/// Row states counted as failed: failed, refused, vanished, or
/// interrupted with its run.
// language=SQL
const FAILED_STATES: &str = "('failed', 'refused', 'vanished', 'interrupted')";

/// The note of a run closed as interrupted.
const INTERRUPTED_NOTE: &str = "the process ended without closing the run (killed, or the server could not be reached at its end)";

/// Closes the runs whose process is gone (unfinished, lock free) as
/// `interrupted`: their `running` rows become `interrupted`, and their
/// totals are computed from their rows, on top of what the plan counted
/// (see [`Ledger::plan`]): ok = up to date when planned + succeeded and
/// up-to-date rows; failed = failed, refused, vanished and interrupted rows;
/// stopped = stopped rows; skipped = the rest (not reached, or not
/// recorded).
async fn close_dead_runs(conn: &mut PgConnection, control: &str) -> Result<u64, sqlx::Error> {
    let runs = qualified(control, "runs");
    let run_tenants = qualified(control, "run_tenants");
    let held = held_cte("$1");
    // language=SQL
    let sql = format!(
        "WITH {held},
         dead AS (SELECT id FROM {runs}
                  WHERE finished_at IS NULL AND (id % 2147483648) NOT IN (SELECT k FROM held)),
         counts AS (
            SELECT d.id,
                   count(*) FILTER (WHERE t.state IN {OK_STATES}) AS ok,
                   count(*) FILTER (WHERE t.state IN {FAILED_STATES} OR t.state = 'running') AS failed,
                   count(*) FILTER (WHERE t.state = 'stopped') AS stopped
            FROM dead d LEFT JOIN {run_tenants} t ON t.run_id = d.id
            GROUP BY d.id),
         rows AS (UPDATE {run_tenants} SET state = 'interrupted'
                  WHERE state = 'running' AND run_id IN (SELECT id FROM dead))
         UPDATE {runs} r SET outcome = 'interrupted', finished_at = now(), message = $2,
                tenants_ok = r.tenants_ok + c.ok,
                tenants_failed = c.failed,
                tenants_stopped = c.stopped,
                tenants_total = greatest(r.tenants_total, r.tenants_ok + c.ok + c.failed + c.stopped),
                tenants_skipped = greatest(r.tenants_total, r.tenants_ok + c.ok + c.failed + c.stopped)
                                  - r.tenants_ok - c.ok - c.failed - c.stopped
         FROM counts c WHERE r.id = c.id AND r.finished_at IS NULL"
    );
    let done = sqlx::query(AssertSqlSafe(sql))
        .bind(ns_param(control))
        .bind(INTERRUPTED_NOTE)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

/// What the ledger could not record at the end of a run. The run itself
/// went as its report says; the history tables have what was applied.
#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[error(
    "the run ledger could not be written: {message}; {} not recorded; run {run_id} stays open until the next run marks it interrupted (each schema's history table has what was applied)",
    records(*unrecorded)
)]
pub struct LedgerFault {
    /// The run.
    pub run_id: i64,
    /// The last error.
    pub message: String,
    /// Schema records that were not written.
    pub unrecorded: usize,
}

fn records(n: usize) -> String {
    if n == 1 {
        "1 schema record was".into()
    } else {
        format!("{n} schema records were")
    }
}

/// A run in progress: its id and the ledger writer.
pub struct Ledger {
    /// The run's id.
    pub run_id: i64,
    tx: mpsc::UnboundedSender<Msg>,
    task: tokio::task::JoinHandle<Writer>,
}

impl Ledger {
    /// Records a new run and starts the writer. `conn` becomes the writer's
    /// connection, and holds the run's liveness lock; `connect` opens a new
    /// one when it is lost. `running_for` is how long the command has
    /// already been working (reading state), so the recorded start is the
    /// command's real start.
    ///
    /// Runs whose process is gone are closed as `interrupted` first.
    pub async fn start(
        mut conn: PgConnection,
        connect: &PgConnectOptions,
        control: &str,
        command: &str,
        args: &[String],
        running_for: Duration,
    ) -> Result<Ledger> {
        let runs = qualified(control, "runs");
        let run_tenants = qualified(control, "run_tenants");
        // The run's row and its lock commit together: no other process
        // ever sees the row without the lock, and takes it for dead.
        let mut tx = conn.begin().await.map_err(Error::db("recording the run"))?;
        close_dead_runs(&mut tx, control)
            .await
            .map_err(Error::db("marking interrupted runs"))?;
        // language=SQL
        let sql = format!(
            "INSERT INTO {runs} (command, args, host, pid, backend_pid, started_at)
             VALUES ($1, $2, $3, $4, pg_backend_pid(), now() - make_interval(secs => $5)) RETURNING id"
        );
        let host = std::env::var("HOSTNAME").ok().or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        });
        let run_id: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(command)
            // The command line may hold a connection string: its password
            // is masked before it is stored.
            .bind(serde_json::json!(crate::mask::mask_args(args)))
            .bind(host)
            .bind(std::process::id() as i32)
            .bind(running_for.as_secs_f64())
            .fetch_one(&mut *tx)
            .await
            .map_err(Error::db("recording the run"))?;
        let key = RunKey::new(control, run_id);
        let locked = key
            .try_lock(&mut tx)
            .await
            .map_err(Error::db("recording the run"))?;
        tx.commit().await.map_err(Error::db("recording the run"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = Writer::new(
            conn,
            connect.clone(),
            key,
            locked,
            (runs, run_tenants),
            run_id,
        );
        let task = tokio::spawn(writer.run(rx));
        Ok(Ledger { run_id, tx, task })
    }

    /// Queues a record (never blocks).
    pub fn record(&self, r: Record) {
        let _ = self.tx.send(Msg::Record(r));
    }

    /// Records what the plan counted, before any schema starts: `total`
    /// schemas, `ok` of them with nothing to do. While the run works,
    /// `runs` adds its rows to these; if it dies, the run is closed with
    /// the same sums.
    pub fn plan(&self, totals: RunTotals) {
        let _ = self.tx.send(Msg::Plan(totals));
    }

    /// A handle workers use to queue records.
    pub fn sender(&self) -> LedgerSender {
        LedgerSender(self.tx.clone())
    }

    /// Writes the remaining records and closes the run's row, retrying for a
    /// few seconds. On failure, says how much was not recorded: the caller
    /// still has its report, and the next run closes this one as
    /// interrupted.
    /// Closes a fan-out run (`migrate`, `rollback`, `stamp`, `migrate-to`):
    /// `stopped` after a shutdown request, else `succeeded` or `failed`,
    /// with why it stopped early as the run's note. A ledger that cannot be
    /// closed is returned, never a reason to lose the caller's report.
    pub async fn close_run(
        self,
        stopped: Option<crate::events::StopReason>,
        success: bool,
        totals: &RunTotals,
    ) -> Option<LedgerFault> {
        let outcome = if stopped == Some(crate::events::StopReason::Shutdown) {
            "stopped"
        } else if success {
            "succeeded"
        } else {
            "failed"
        };
        self.finish(outcome, totals, stopped.map(|r| r.describe()))
            .await
            .err()
    }

    /// Writes what is left and closes the run's row with `outcome`.
    pub async fn finish(
        self,
        outcome: &str,
        totals: &RunTotals,
        message: Option<&str>,
    ) -> Result<(), LedgerFault> {
        let Ledger { run_id, tx, task } = self;
        drop(tx);
        let writer = task.await.map_err(|e| LedgerFault {
            run_id,
            message: format!("the ledger writer stopped: {e}"),
            unrecorded: 0,
        })?;
        writer.close(outcome, totals, message).await
    }
}

/// A run as listed by `tenantmig runs`.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// Id.
    pub id: i64,
    /// The command (`migrate`, `repair`...).
    pub command: String,
    /// Its arguments.
    pub args: serde_json::Value,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End, if it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// running, succeeded, failed, stopped or interrupted.
    pub outcome: String,
    /// Schemas considered.
    pub tenants_total: i32,
    /// Succeeded.
    pub tenants_ok: i32,
    /// Failed, refused or vanished.
    pub tenants_failed: i32,
    /// Not reached.
    pub tenants_skipped: i32,
    /// Stopped by Ctrl-C or SIGTERM between migrations.
    pub tenants_stopped: i32,
    /// A note (why it stopped).
    pub message: Option<String>,
}

/// One schema of a run, as shown by `tenantmig runs show`.
#[derive(Debug, Clone, Serialize)]
pub struct RunSchema {
    /// Schema.
    pub schema: String,
    /// shared or tenant.
    pub phase: String,
    /// Its state in that run.
    pub state: String,
    /// Version before.
    pub from_version: Option<i64>,
    /// Version after.
    pub to_version: Option<i64>,
    /// Error.
    pub error: Option<String>,
    /// Failing version.
    pub failed_version: Option<i64>,
    /// Failing statement.
    pub failed_statement: Option<String>,
    /// Time spent.
    pub duration_ms: Option<i64>,
    /// Tries.
    pub attempts: i32,
}

fn summary(r: &sqlx::postgres::PgRow) -> Result<RunSummary, sqlx::Error> {
    Ok(RunSummary {
        id: r.try_get("id")?,
        command: r.try_get("command")?,
        // Masked again on reading: rows written before masking existed.
        args: crate::mask::mask_json(&r.try_get("args")?),
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        outcome: r.try_get("outcome")?,
        tenants_total: r.try_get("tenants_total")?,
        tenants_ok: r.try_get("tenants_ok")?,
        tenants_failed: r.try_get("tenants_failed")?,
        tenants_skipped: r.try_get("tenants_skipped")?,
        tenants_stopped: r.try_get("tenants_stopped")?,
        message: r.try_get("message")?,
    })
}

/// The runs of `filter` (a clause over `runs r`: a `WHERE`, an `ORDER BY`
/// and a `LIMIT`) as `runs` shows them. A run that has not finished is
/// `running` while its lock is held, else `interrupted`; its totals are
/// computed live from its rows (see [`close_dead_runs`]). `$1` is the
/// namespace parameter, `$3` the note of an interrupted run.
fn runs_sql(control: &str, filter: &str) -> String {
    let runs = qualified(control, "runs");
    let run_tenants = qualified(control, "run_tenants");
    let held = held_cte("$1");
    // language=SQL
    format!(
        "WITH {held},
         v AS (SELECT r.*, r.finished_at IS NULL AND (r.id % 2147483648) NOT IN (SELECT k FROM held) AS dead
               FROM {runs} r {filter}),
         w AS (SELECT v.*, c.ok, c.failed, c.stopped,
                      greatest(v.tenants_total, v.tenants_ok + c.ok + c.failed + c.stopped) AS live_total
               FROM v LEFT JOIN LATERAL (
                   SELECT count(*) FILTER (WHERE t.state IN {OK_STATES}) AS ok,
                          count(*) FILTER (WHERE t.state IN {FAILED_STATES}
                                              OR (v.dead AND t.state = 'running')) AS failed,
                          count(*) FILTER (WHERE t.state = 'stopped') AS stopped
                   FROM {run_tenants} t WHERE t.run_id = v.id AND v.finished_at IS NULL) c ON true)
         SELECT id, command, args, started_at, finished_at,
                CASE WHEN finished_at IS NOT NULL THEN outcome
                     WHEN dead THEN 'interrupted' ELSE 'running' END AS outcome,
                CASE WHEN finished_at IS NULL THEN live_total::int4 ELSE tenants_total END AS tenants_total,
                CASE WHEN finished_at IS NULL THEN (tenants_ok + ok)::int4 ELSE tenants_ok END AS tenants_ok,
                CASE WHEN finished_at IS NULL THEN failed::int4 ELSE tenants_failed END AS tenants_failed,
                CASE WHEN finished_at IS NULL THEN (live_total - tenants_ok - ok - failed - stopped)::int4
                     ELSE tenants_skipped END AS tenants_skipped,
                CASE WHEN finished_at IS NULL THEN stopped::int4
                     ELSE tenants_stopped END AS tenants_stopped,
                CASE WHEN dead THEN coalesce(message, $3) ELSE message END AS message,
                dead
         FROM w ORDER BY id DESC"
    )
}

/// The latest runs, newest first.
pub async fn list_runs(
    conn: &mut PgConnection,
    control: &str,
    limit: i64,
) -> Result<Vec<RunSummary>> {
    if !ledger_exists(conn, control).await? {
        return Ok(Vec::new());
    }
    let sql = runs_sql(control, "ORDER BY r.id DESC LIMIT $2");
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(ns_param(control))
        .bind(limit)
        .bind(INTERRUPTED_NOTE)
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::db("reading the run ledger"))?;
    rows.iter()
        .map(summary)
        .collect::<Result<_, _>>()
        .map_err(Error::db("reading the run ledger"))
}

/// One run with its schemas (failures first), or a usage error naming the id.
pub async fn show_run(
    conn: &mut PgConnection,
    control: &str,
    id: i64,
) -> Result<(RunSummary, Vec<RunSchema>)> {
    let none = || Error::Usage {
        message: format!("there is no run {id} in the ledger; `tenantmig runs` lists the runs"),
    };
    if !ledger_exists(conn, control).await? {
        return Err(none());
    }
    let sql = runs_sql(control, "WHERE r.id = $2");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(ns_param(control))
        .bind(id)
        .bind(INTERRUPTED_NOTE)
        .fetch_optional(&mut *conn)
        .await
        .map_err(Error::db("reading the run ledger"))?
        .ok_or_else(none)?;
    let run = summary(&row).map_err(Error::db("reading the run ledger"))?;
    // language=SQL
    let sql = format!(
        "SELECT schema_name, phase, state, from_version, to_version, error, failed_version,
                failed_statement, duration_ms, attempts
         FROM {} WHERE run_id = $1
         ORDER BY phase = 'tenant', state IN ('succeeded', 'up_to_date'), schema_name",
        qualified(control, "run_tenants")
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(id)
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::db("reading the run ledger"))?;
    // A run that is gone but not closed yet: its running rows were
    // interrupted.
    let dead: bool = row
        .try_get("dead")
        .map_err(Error::db("reading the run ledger"))?;
    let schemas = rows
        .iter()
        .map(|r| {
            Ok(RunSchema {
                schema: r.try_get(0)?,
                phase: r.try_get(1)?,
                // A schema still "running" in a run that is gone was interrupted.
                state: match r.try_get::<String, _>(2)? {
                    s if dead && s == "running" => "interrupted".into(),
                    s => s,
                },
                from_version: r.try_get(3)?,
                to_version: r.try_get(4)?,
                error: r
                    .try_get::<Option<String>, _>(5)?
                    .map(|e| crate::mask::mask_secrets(&e)),
                failed_version: r.try_get(6)?,
                failed_statement: r
                    .try_get::<Option<String>, _>(7)?
                    .map(|e| crate::mask::mask_secrets(&e)),
                duration_ms: r.try_get(8)?,
                attempts: r.try_get(9)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(Error::db("reading the run ledger"))?;
    Ok((run, schemas))
}

/// The last recorded failure of each named schema (for dirty schemas):
/// schema → (run id, failed version, error, failed statement).
pub async fn last_failures(
    conn: &mut PgConnection,
    control: &str,
    schemas: &[String],
) -> Result<HashMap<String, (i64, Option<i64>, Option<String>, Option<String>)>> {
    if schemas.is_empty() || !ledger_exists(conn, control).await? {
        return Ok(HashMap::new());
    }
    // language=SQL
    let sql = format!(
        "SELECT DISTINCT ON (schema_name) schema_name, run_id, failed_version, error, failed_statement, state
         FROM {} WHERE schema_name = ANY($1) AND state IN ('failed', 'interrupted', 'running')
         ORDER BY schema_name, run_id DESC",
        qualified(control, "run_tenants")
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(schemas)
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::db("reading the run ledger"))?;
    let mut out = HashMap::new();
    for r in rows {
        let state: String = r.get(5);
        let error: Option<String> = r.get(3);
        let error = error.or_else(|| {
            (state != "failed")
                .then(|| "the run was interrupted while this migration was running".to_string())
        });
        out.insert(r.get::<String, _>(0), (r.get(1), r.get(2), error, r.get(4)));
    }
    Ok(out)
}

/// Connects with a clear error naming the (masked) URL.
pub async fn connect(opts: &PgConnectOptions, url_for_messages: &str) -> Result<PgConnection> {
    crate::db::connect(opts)
        .await
        .map_err(|source| Error::Connect {
            url: url_for_messages.to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_fault_says_what_was_not_recorded_and_what_happens_to_the_run() {
        let f = LedgerFault {
            run_id: 12,
            message: "Connection refused (os error 111)".into(),
            unrecorded: 4,
        };
        assert_eq!(
            f.to_string(),
            "the run ledger could not be written: Connection refused (os error 111); 4 schema records were not recorded; run 12 stays open until the next run marks it interrupted (each schema's history table has what was applied)"
        );
        let one = LedgerFault { unrecorded: 1, ..f };
        assert!(
            one.to_string()
                .contains("; 1 schema record was not recorded;")
        );
    }

    #[test]
    fn run_locks_of_two_control_schemas_never_share_a_key() {
        assert_ne!(run_namespace("tenantmig"), run_namespace("tenantmig_b"));
        let k = RunKey::new("tenantmig", (1 << 31) + 5);
        assert_eq!(k.id, 5);
    }
}
