//! The ledger writer: one task with one connection that batches the
//! per-schema records of a run, holds the run's liveness lock, and outlives
//! its connection.
//!
//! Nothing here can stop or fail the migration work: workers only queue
//! records on an unbounded channel. When a write fails, the connection is
//! dropped, the records are kept (merged per schema, so memory holds at most
//! one record per schema), and the writer reconnects after a pause that
//! doubles from 100 ms to 5 s, for as long as the run lasts. Its new
//! connection takes the run's lock again. At the end, [`Writer::close`]
//! tries for a few more seconds to write what is left and close the run,
//! and otherwise says what it could not record.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Connection};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{LedgerFault, Record, RunKey, RunTotals};
use crate::engine::describe_db_error;

/// How long records are gathered into one batch.
const BATCH_WINDOW: Duration = Duration::from_millis(100);

/// Records per batch at most.
const BATCH_MAX: usize = 2000;

/// How often an idle writer checks that its connection (which holds the
/// run's liveness lock) is still there.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// The first pause after a failed write; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);

/// The longest pause between two attempts.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Bound on opening a connection (a server that does not answer).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound on one write (a connection that hangs instead of failing).
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the end of a run keeps trying to write what is left.
const CLOSE_TRYING: Duration = Duration::from_secs(5);

/// What workers and the engine send to the writer.
pub(super) enum Msg {
    /// A schema's record.
    Record(Record),
    /// The run's planned totals (see [`super::Ledger::plan`]).
    Plan(RunTotals),
}

/// The writer's state, handed back to [`super::Ledger::finish`] when the
/// channel closes.
pub(super) struct Writer {
    /// How to open a new connection.
    connect: PgConnectOptions,
    /// The connection, when it is believed to work.
    conn: Option<PgConnection>,
    /// True while `conn` holds the run's liveness lock.
    locked: bool,
    /// The run's liveness lock.
    key: RunKey,
    /// The run's id.
    run_id: i64,
    /// `<control>.runs`, quoted.
    runs: String,
    /// `<control>.run_tenants`, quoted.
    run_tenants: String,
    /// Records not written yet, one per schema (the newest, merged).
    pending: HashMap<String, Record>,
    /// The planned totals, once known.
    plan: Option<RunTotals>,
    /// True when the run's row must be updated (new plan, new connection).
    row_stale: bool,
    /// No attempt before this instant (back-off after a failure).
    retry_at: Option<Instant>,
    /// The next pause after a failure.
    backoff: Duration,
    /// The last error, for the final message.
    last_error: Option<String>,
    /// True between a failure and the next success (to log each once).
    failing: bool,
}

impl Writer {
    /// A writer on `conn`, which already holds the run's lock when `locked`.
    pub(super) fn new(
        conn: PgConnection,
        connect: PgConnectOptions,
        key: RunKey,
        locked: bool,
        (runs, run_tenants): (String, String),
        run_id: i64,
    ) -> Writer {
        Writer {
            connect,
            conn: Some(conn),
            locked,
            key,
            run_id,
            runs,
            run_tenants,
            pending: HashMap::new(),
            plan: None,
            row_stale: false,
            retry_at: None,
            backoff: RETRY_FIRST,
            last_error: None,
            failing: false,
        }
    }

    /// Writes records as they come until the channel closes, then returns
    /// itself with whatever could not be written yet.
    pub(super) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) -> Writer {
        let mut next_check = Instant::now() + IDLE_CHECK;
        loop {
            let wake = self.retry_at.unwrap_or(next_check);
            tokio::select! {
                msg = rx.recv() => {
                    let Some(msg) = msg else { return self };
                    self.take(msg);
                    if self.retry_at.is_none() {
                        // Gather more for a moment, to write them in one go.
                        let until = Instant::now() + BATCH_WINDOW;
                        while self.pending.len() < BATCH_MAX {
                            match tokio::time::timeout_at(until, rx.recv()).await {
                                Ok(Some(m)) => self.take(m),
                                Ok(None) => return self,
                                Err(_) => break,
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
            if self.retry_at.is_some_and(|t| Instant::now() < t) {
                continue;
            }
            self.sync().await;
            next_check = Instant::now() + IDLE_CHECK;
        }
    }

    fn take(&mut self, msg: Msg) {
        match msg {
            Msg::Record(r) => match self.pending.get_mut(&r.schema) {
                Some(old) => old.merge(r),
                None => {
                    self.pending.insert(r.schema.clone(), r);
                }
            },
            Msg::Plan(totals) => {
                self.plan = Some(totals);
                self.row_stale = true;
            }
        }
    }

    /// One attempt to bring the ledger up to date; on failure, schedules
    /// the next one.
    async fn sync(&mut self) {
        match self.try_sync().await {
            Ok(()) => {
                if self.failing {
                    tracing::warn!(run = self.run_id, "the run ledger is written again");
                }
                self.failing = false;
                self.retry_at = None;
                self.backoff = RETRY_FIRST;
            }
            Err(e) => self.failed(&e),
        }
    }

    fn failed(&mut self, e: &sqlx::Error) {
        // A connection that failed once is not trusted again: a new one
        // takes the run's lock afresh.
        self.conn = None;
        self.locked = false;
        let cause = describe_db_error(e);
        if !self.failing {
            tracing::warn!(
                run = self.run_id,
                cause = %cause,
                "the run ledger could not be written; keeping its {} record(s) and retrying",
                self.pending.len()
            );
        }
        self.failing = true;
        self.last_error = Some(cause);
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(RETRY_MAX);
    }

    /// Reconnects if needed, takes the run's lock again, updates the run's
    /// row, and writes the pending records; pings when there is nothing to
    /// write (a killed connection is noticed, and replaced, within
    /// [`IDLE_CHECK`], so the run does not look dead while it works).
    async fn try_sync(&mut self) -> Result<(), sqlx::Error> {
        let fresh = self.conn.is_none();
        self.ensure_connection().await?;
        let Writer {
            conn,
            locked,
            key,
            run_id,
            runs,
            run_tenants,
            pending,
            plan,
            row_stale,
            ..
        } = self;
        let conn = conn.as_mut().expect("connected");
        let mut wrote = false;
        if !*locked {
            // Another backend may still hold it (an old connection the
            // server has not noticed is gone): the run still looks alive
            // then, and the lock is tried again next time.
            *locked = key.try_lock(conn).await?;
            *row_stale |= *locked;
        }
        if *row_stale {
            bounded(mark_alive(conn, runs, *run_id, plan.as_ref())).await?;
            *row_stale = false;
            wrote = true;
        }
        if !pending.is_empty() {
            let batch: Vec<&Record> = pending.values().collect();
            bounded(write_batch(conn, run_tenants, *run_id, &batch)).await?;
            pending.clear();
            wrote = true;
        }
        if !wrote && !fresh {
            bounded(conn.ping()).await?;
        }
        Ok(())
    }

    async fn ensure_connection(&mut self) -> Result<(), sqlx::Error> {
        if self.conn.is_none() {
            let conn = tokio::time::timeout(CONNECT_TIMEOUT, crate::db::connect(&self.connect))
                .await
                .map_err(|_| timed_out("connecting", CONNECT_TIMEOUT))??;
            self.conn = Some(conn);
            self.locked = false;
        }
        Ok(())
    }

    /// Writes what is left and closes the run's row, in one transaction,
    /// trying for [`CLOSE_TRYING`]; then closes the connection, which
    /// releases the run's lock.
    pub(super) async fn close(
        mut self,
        outcome: &str,
        totals: &RunTotals,
        message: Option<&str>,
    ) -> Result<(), LedgerFault> {
        let deadline = Instant::now() + CLOSE_TRYING;
        self.backoff = RETRY_FIRST;
        loop {
            match self.try_close(outcome, totals, message).await {
                Ok(()) => {
                    if self.failing {
                        tracing::warn!(run = self.run_id, "the run ledger is written again");
                    }
                    if let Some(c) = self.conn.take() {
                        let _ = c.close().await;
                    }
                    return Ok(());
                }
                Err(e) => {
                    self.failing = true;
                    self.conn = None;
                    self.last_error = Some(describe_db_error(&e));
                }
            }
            if Instant::now() + self.backoff > deadline {
                break;
            }
            tokio::time::sleep(self.backoff).await;
            self.backoff = (self.backoff * 2).min(RETRY_MAX);
        }
        Err(LedgerFault {
            run_id: self.run_id,
            message: self.last_error.unwrap_or_default(),
            unrecorded: self.pending.len(),
        })
    }

    async fn try_close(
        &mut self,
        outcome: &str,
        totals: &RunTotals,
        message: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        self.ensure_connection().await?;
        let conn = self.conn.as_mut().expect("connected");
        let batch: Vec<&Record> = self.pending.values().collect();
        let (runs, run_tenants, run_id) = (&self.runs, &self.run_tenants, self.run_id);
        bounded(async {
            let mut tx = conn.begin().await?;
            if !batch.is_empty() {
                write_batch(&mut tx, run_tenants, run_id, &batch).await?;
            }
            // language=SQL
            let sql = format!(
                "UPDATE {runs} SET finished_at = now(), outcome = $2, tenants_total = $3,
                        tenants_ok = $4, tenants_failed = $5, tenants_skipped = $6, message = $7,
                        tenants_stopped = $8
                 WHERE id = $1"
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(run_id)
                .bind(outcome)
                .bind(totals.total)
                .bind(totals.ok)
                .bind(totals.failed)
                .bind(totals.skipped)
                .bind(message.map(crate::mask::mask_secrets))
                .bind(totals.stopped)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        })
        .await?;
        self.pending.clear();
        Ok(())
    }
}

/// Runs one database step with [`WRITE_TIMEOUT`].
async fn bounded<T>(step: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, sqlx::Error> {
    tokio::time::timeout(WRITE_TIMEOUT, step)
        .await
        .map_err(|_| timed_out("writing", WRITE_TIMEOUT))?
}

fn timed_out(doing: &str, after: Duration) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "{doing} timed out after {}",
            humantime::format_duration(after)
        ),
    ))
}

/// Marks the run as alive on this connection: its backend pid, and, if
/// another process closed the run as interrupted while the writer was
/// reconnecting, the run opened again with its planned totals (the closer
/// had replaced them with counts from the rows).
async fn mark_alive(
    conn: &mut PgConnection,
    runs: &str,
    run_id: i64,
    plan: Option<&RunTotals>,
) -> Result<(), sqlx::Error> {
    let plan = plan.cloned().unwrap_or_default();
    // language=SQL
    let sql = format!(
        "UPDATE {runs} SET backend_pid = pg_backend_pid(), outcome = 'running', finished_at = NULL,
                message = NULL, tenants_total = $2, tenants_ok = $3, tenants_failed = $4,
                tenants_skipped = $5, tenants_stopped = $6
         WHERE id = $1 AND (finished_at IS NULL OR outcome = 'interrupted')"
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(run_id)
        .bind(plan.total)
        .bind(plan.ok)
        .bind(plan.failed)
        .bind(plan.skipped)
        .bind(plan.stopped)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Upserts records, one statement for the whole batch. Writing a record
/// twice (after a connection died between the commit and its answer) is
/// harmless.
async fn write_batch(
    conn: &mut PgConnection,
    table: &str,
    run_id: i64,
    batch: &[&Record],
) -> Result<(), sqlx::Error> {
    let col =
        |f: &dyn Fn(&Record) -> Option<String>| batch.iter().map(|r| f(r)).collect::<Vec<_>>();
    let int = |f: &dyn Fn(&Record) -> Option<i64>| batch.iter().map(|r| f(r)).collect::<Vec<_>>();
    let ts = |f: &dyn Fn(&Record) -> Option<DateTime<Utc>>| {
        batch.iter().map(|r| f(r)).collect::<Vec<_>>()
    };
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
        .bind(col(&|r| Some(r.schema.clone())))
        .bind(col(&|r| Some(r.phase.as_str().to_string())))
        .bind(col(&|r| Some(r.state.clone())))
        .bind(int(&|r| r.from_version))
        .bind(int(&|r| r.to_version))
        .bind(col(&|r| r.error.as_deref().map(crate::mask::mask_secrets)))
        .bind(int(&|r| r.failed_version))
        .bind(col(&|r| {
            r.failed_statement.as_deref().map(crate::mask::mask_secrets)
        }))
        .bind(ts(&|r| r.started_at))
        .bind(ts(&|r| r.finished_at))
        .bind(int(&|r| r.duration_ms))
        .bind(batch.iter().map(|r| r.attempts).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    Ok(())
}
