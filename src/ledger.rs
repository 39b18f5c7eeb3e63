//! The control schema: its embedded migrations, the run ledger and the
//! tenant registry.
//!
//! The ledger is written by one task that owns one connection and batches
//! per-schema records, so workers never wait on bookkeeping.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Row};
use tokio::sync::mpsc;

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
pub struct LedgerSender(mpsc::UnboundedSender<Record>);

impl LedgerSender {
    /// Queues a record (never blocks).
    pub fn record(&self, r: Record) {
        let _ = self.0.send(r);
    }
}

/// Totals written to a run's row when it ends.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunTotals {
    /// Schemas considered.
    pub total: i64,
    /// Succeeded or already up to date.
    pub ok: i64,
    /// Failed or refused.
    pub failed: i64,
    /// Not reached.
    pub skipped: i64,
}

/// A run in progress: its id and the ledger writer.
pub struct Ledger {
    /// The run's id.
    pub run_id: i64,
    tx: mpsc::UnboundedSender<Record>,
    task: tokio::task::JoinHandle<PgConnection>,
    control: String,
}

impl Ledger {
    /// Records a new run and starts the writer. `conn` becomes the writer's
    /// connection; its backend pid marks the run as alive. `running_for` is
    /// how long the command has already been working (reading state), so the
    /// recorded start is the command's real start.
    pub async fn start(
        mut conn: PgConnection,
        control: &str,
        command: &str,
        args: &[String],
        running_for: Duration,
    ) -> Result<Ledger> {
        let runs = qualified(control, "runs");
        let run_tenants = qualified(control, "run_tenants");
        // Runs whose ledger connection is gone were killed: say so.
        // language=SQL
        let sql = format!(
            "WITH dead AS (
                UPDATE {runs} SET outcome = 'interrupted', finished_at = now(),
                       message = 'the process stopped without finishing (killed or lost its connection)'
                WHERE finished_at IS NULL
                  AND (backend_pid IS NULL OR backend_pid NOT IN (SELECT pid FROM pg_catalog.pg_stat_activity))
                RETURNING id)
             UPDATE {run_tenants} SET state = 'interrupted'
             WHERE state = 'running' AND run_id IN (SELECT id FROM dead)"
        );
        sqlx::query(AssertSqlSafe(sql))
            .execute(&mut conn)
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
            .fetch_one(&mut conn)
            .await
            .map_err(Error::db("recording the run"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(writer(conn, rx, run_tenants, run_id));
        Ok(Ledger {
            run_id,
            tx,
            task,
            control: control.to_string(),
        })
    }

    /// Queues a record (never blocks).
    pub fn record(&self, r: Record) {
        let _ = self.tx.send(r);
    }

    /// A handle workers use to queue records.
    pub fn sender(&self) -> LedgerSender {
        LedgerSender(self.tx.clone())
    }

    /// Writes the remaining records and closes the run's row.
    pub async fn finish(
        self,
        outcome: &str,
        totals: &RunTotals,
        message: Option<&str>,
    ) -> Result<()> {
        let Ledger {
            run_id,
            tx,
            task,
            control,
        } = self;
        drop(tx);
        let mut conn = task.await.map_err(|e| Error::Config {
            message: format!("the ledger writer stopped: {e}"),
        })?;
        // language=SQL
        let sql = format!(
            "UPDATE {} SET finished_at = now(), outcome = $2, tenants_total = $3, tenants_ok = $4,
                    tenants_failed = $5, tenants_skipped = $6, message = $7
             WHERE id = $1",
            qualified(&control, "runs")
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(run_id)
            .bind(outcome)
            .bind(totals.total)
            .bind(totals.ok)
            .bind(totals.failed)
            .bind(totals.skipped)
            .bind(message.map(crate::mask::mask_secrets))
            .execute(&mut conn)
            .await
            .map_err(Error::db("closing the run in the ledger"))?;
        Ok(())
    }
}

async fn writer(
    mut conn: PgConnection,
    mut rx: mpsc::UnboundedReceiver<Record>,
    table: String,
    run_id: i64,
) -> PgConnection {
    let mut pending: HashMap<String, Record> = HashMap::new();
    let take = |r: Record, pending: &mut HashMap<String, Record>| match pending.get_mut(&r.schema) {
        Some(old) => old.merge(r),
        None => {
            pending.insert(r.schema.clone(), r);
        }
    };
    loop {
        // Wait for a record, then gather more for up to 100 ms to batch them.
        let Some(first) = rx.recv().await else {
            return conn;
        };
        take(first, &mut pending);
        let until = tokio::time::Instant::now() + Duration::from_millis(100);
        let mut closed = false;
        while pending.len() < 2000 {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(r)) => take(r, &mut pending),
                Ok(None) => {
                    closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let batch: Vec<Record> = pending.drain().map(|(_, r)| r).collect();
        if let Err(e) = write_batch(&mut conn, &table, run_id, &batch).await {
            tracing::error!(cause = %e, "could not write {} records to the run ledger", batch.len());
        }
        if closed {
            return conn;
        }
    }
}

async fn write_batch(
    conn: &mut PgConnection,
    table: &str,
    run_id: i64,
    batch: &[Record],
) -> Result<(), sqlx::Error> {
    let col = |f: &dyn Fn(&Record) -> Option<String>| batch.iter().map(f).collect::<Vec<_>>();
    let int = |f: &dyn Fn(&Record) -> Option<i64>| batch.iter().map(f).collect::<Vec<_>>();
    let ts = |f: &dyn Fn(&Record) -> Option<DateTime<Utc>>| batch.iter().map(f).collect::<Vec<_>>();
    // language=SQL
    let sql = format!(
        "INSERT INTO {table} AS t (run_id, schema_name, phase, state, from_version, to_version, error,
                failed_version, failed_statement, started_at, finished_at, duration_ms, attempts)
         SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[], $7::text[],
                $8::int8[], $9::text[], $10::timestamptz[], $11::timestamptz[], $12::int8[], $13::int4[])
         ON CONFLICT (run_id, schema_name) DO UPDATE SET
            state = EXCLUDED.state,
            from_version = COALESCE(EXCLUDED.from_version, t.from_version),
            to_version = COALESCE(EXCLUDED.to_version, t.to_version),
            error = EXCLUDED.error,
            failed_version = EXCLUDED.failed_version,
            failed_statement = EXCLUDED.failed_statement,
            started_at = COALESCE(t.started_at, EXCLUDED.started_at),
            finished_at = EXCLUDED.finished_at,
            duration_ms = EXCLUDED.duration_ms,
            attempts = EXCLUDED.attempts"
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(run_id)
        .bind(batch.iter().map(|r| r.schema.clone()).collect::<Vec<_>>())
        .bind(
            batch
                .iter()
                .map(|r| r.phase.as_str().to_string())
                .collect::<Vec<_>>(),
        )
        .bind(batch.iter().map(|r| r.state.clone()).collect::<Vec<_>>())
        .bind(int(&|r| r.from_version))
        .bind(int(&|r| r.to_version))
        .bind(col(&|r| r.error.as_deref().map(crate::mask::mask_secrets)))
        .bind(int(&|r| r.failed_version))
        .bind(col(&|r| r.failed_statement.clone()))
        .bind(ts(&|r| r.started_at))
        .bind(ts(&|r| r.finished_at))
        .bind(int(&|r| r.duration_ms))
        .bind(batch.iter().map(|r| r.attempts).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    Ok(())
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
    /// Failed or refused.
    pub tenants_failed: i32,
    /// Not reached.
    pub tenants_skipped: i32,
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
        message: r
            .try_get::<Option<String>, _>("message")?
            .map(|m| crate::mask::mask_secrets(&m)),
    })
}

const RUN_COLUMNS: &str = "id, command, args, started_at, finished_at, \
    CASE WHEN finished_at IS NULL AND (backend_pid IS NULL OR backend_pid NOT IN \
        (SELECT pid FROM pg_catalog.pg_stat_activity)) THEN 'interrupted' ELSE outcome END AS outcome, \
    tenants_total, tenants_ok, tenants_failed, tenants_skipped, message";

/// The latest runs, newest first.
pub async fn list_runs(
    conn: &mut PgConnection,
    control: &str,
    limit: i64,
) -> Result<Vec<RunSummary>> {
    if !ledger_exists(conn, control).await? {
        return Ok(Vec::new());
    }
    // language=SQL
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM {} ORDER BY id DESC LIMIT $1",
        qualified(control, "runs")
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(limit)
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
    // language=SQL
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM {} WHERE id = $1",
        qualified(control, "runs")
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(id)
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
    let dead = run.outcome == "interrupted";
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
                failed_statement: r.try_get(7)?,
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
