//! `copy-into-new-schema`: a full copy of one schema as a new schema in the
//! same database, all or nothing.
//!
//! How it works:
//! 1. One connection opens a `REPEATABLE READ` transaction, exports its
//!    snapshot (`pg_export_snapshot`), reads the source's catalog with the
//!    search path set to the source alone (so PostgreSQL's deparser prints
//!    the source's objects unqualified, see [`catalog`]) and takes `ACCESS
//!    SHARE` locks on its tables, as `pg_dump` does.
//! 2. Types, sequences, functions, tables and views are created in one
//!    transaction under a temporary schema name, in dependency order.
//! 3. `--jobs` connections import the snapshot and copy rows inside the
//!    server (`INSERT … SELECT`, large tables split into block ranges), so
//!    the copy is consistent even while the source takes writes.
//! 4. Indexes are built in parallel after the rows; then constraints,
//!    foreign keys, triggers, rules, policies, sequence values, comments,
//!    grants and owners.
//! 5. Row counts (or row hashes) are compared table by table against the
//!    snapshot, and only then is the temporary schema renamed to the target.
//!
//! Any failure, or a kill, leaves at most the temporary schema, which the
//! next copy into the same target drops first.

pub(crate) mod catalog;
pub(crate) mod ddl;
mod source;
mod steps;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection, Executor, Row};

use crate::db::{self, LockMode};
use crate::engine::{Engine, describe_db_error};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::ident::{quote_ident, validate_schema_name};
use ddl::{CheckedTable, DataTask, Stmt};
use source::{drop_leftover, lock_and_snapshot};
use steps::{Copying, create_objects};

/// How a copy is checked before it is renamed into place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Verify {
    /// Row counts per table.
    #[default]
    Counts,
    /// Row counts and an order-independent hash of each table's rows.
    Checksums,
    /// No check.
    None,
}

/// What to copy and how.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// The schema to copy.
    pub source: String,
    /// The new schema; it must not exist.
    pub target: String,
    /// Copy rows too (false: structure only, with the history table's rows
    /// still copied, and checked, so the copy knows its version).
    pub data: bool,
    /// Connections copying tables and building indexes at once.
    pub jobs: usize,
    /// The check run before the copy is renamed into place.
    pub verify: Verify,
    /// A source with less table data than this is copied over one
    /// connection with its statements batched (fewer connections and round
    /// trips than parallelism would save); [`SMALL_COPY_BYTES`] by default.
    pub small_below_bytes: i64,
    /// SQL run in the transaction that renames the copy into place (a
    /// version move records its checkpoint there, so the copy and its
    /// record commit together).
    pub in_rename: Option<String>,
}

impl CopyOptions {
    /// A full copy with row-count checks, `jobs` connections.
    pub fn new(source: impl Into<String>, target: impl Into<String>, jobs: usize) -> Self {
        CopyOptions {
            source: source.into(),
            target: target.into(),
            data: true,
            jobs,
            verify: Verify::Counts,
            small_below_bytes: SMALL_COPY_BYTES,
            in_rename: None,
        }
    }
}

/// One table's check.
#[derive(Debug, Clone, Serialize)]
pub struct TableCheck {
    /// The table.
    pub table: String,
    /// Rows in the source (in the copy's snapshot).
    pub source_rows: i64,
    /// Rows in the copy.
    pub target_rows: i64,
    /// Hash of the source's rows (with `--verify checksums`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_hash: Option<String>,
    /// Hash of the copy's rows (with `--verify checksums`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_hash: Option<String>,
}

impl TableCheck {
    /// True when counts (and hashes, if taken) agree.
    pub fn matches(&self) -> bool {
        self.source_rows == self.target_rows && self.source_hash == self.target_hash
    }
}

/// Time spent in each step of a copy, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CopyTimings {
    /// Reading the catalog and creating the objects.
    pub schema_ms: u64,
    /// Copying rows (and refreshing materialized views).
    pub data_ms: u64,
    /// Building indexes.
    pub indexes_ms: u64,
    /// Constraints, triggers, policies, grants and the rest.
    pub constraints_ms: u64,
    /// Checking counts or hashes.
    pub verify_ms: u64,
}

/// The result of a copy.
#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    /// The source schema.
    pub source: String,
    /// The new schema.
    pub target: String,
    /// Objects created (types, sequences, functions, tables, views).
    pub objects: usize,
    /// Tables whose rows were copied.
    pub tables: usize,
    /// Rows copied.
    pub rows: i64,
    /// Size of the source tables copied.
    pub bytes: i64,
    /// Indexes built.
    pub indexes: usize,
    /// Connections used.
    pub jobs: usize,
    /// The check that was run.
    pub verify: Verify,
    /// Per-table results of the check.
    pub checks: Vec<TableCheck>,
    /// What could not be copied faithfully.
    pub warnings: Vec<String>,
    /// Time per step.
    pub timings: CopyTimings,
    /// Wall time.
    pub duration_ms: u64,
}

/// The temporary name a copy into `target` is built under: fixed per
/// target, so a rerun finds and drops what an interrupted copy left.
pub fn temp_name(target: &str) -> String {
    let h = Sha256::digest(target.as_bytes());
    format!("tenantmig_copy_{}", &hex::encode(h)[..16])
}

/// The comment that marks a temporary schema as tenantmig's own.
const MARK: &str = "tenantmig: incomplete copy";

/// Work handed to the copy's connections.
enum Job {
    Data(DataTask),
    Stmt(Stmt),
    Check(CheckedTable),
}

enum Done {
    Data { rows: i64 },
    Stmt,
    Check(TableCheck),
}

/// What the workers share.
struct Shared {
    source: String,
    tmp: String,
    snapshot: String,
    verify: Verify,
    failed: AtomicBool,
    in_flight: Mutex<Vec<(String, i64)>>,
}

impl Engine {
    /// Copies `opts.source` into the new schema `opts.target` (see the
    /// module docs). `shutdown` resolving stops the copy and drops what it
    /// built.
    pub async fn copy_schema(
        &self,
        opts: &CopyOptions,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<CopyReport> {
        let started = Instant::now();
        let src = opts.source.as_str();
        let dst = opts.target.as_str();
        validate_schema_name(src)?;
        validate_schema_name(dst)?;
        if src == dst {
            return Err(Error::Usage {
                message: format!(
                    "source and target are both {dst:?}: copy-into-new-schema needs a new name for the copy"
                ),
            });
        }
        if opts.jobs == 0 {
            return Err(Error::Usage {
                message: "--jobs must be at least 1".into(),
            });
        }
        let mut ctl = self.connection().await?;
        if !db::schema_exists(&mut ctl, src)
            .await
            .map_err(Error::db("looking up the source schema"))?
        {
            return Err(Error::Usage {
                message: format!(
                    "source schema {src:?} does not exist (check the name; names are case-sensitive)"
                ),
            });
        }
        if db::schema_exists(&mut ctl, dst)
            .await
            .map_err(Error::db("looking up the target schema"))?
        {
            return Err(Error::Usage {
                message: format!(
                    "target schema {dst:?} already exists; copy-into-new-schema never writes into an existing schema: choose a new name, or drop it first with `tenantmig drop-schema {} --yes`",
                    shell_word(dst)
                ),
            });
        }
        // The lock protocol: the target name exclusively (it is being
        // made), the source shared (it is only read): copies of one source
        // run together, but never while a command changes it.
        let s = &self.settings;
        let control = Some(s.control_schema.as_str());
        match db::acquire(&mut ctl, dst, LockMode::Exclusive, s.lock_wait, control).await {
            Ok(()) => {}
            Err(db::LockFailure::Busy(message)) => return Err(Error::Usage { message }),
            Err(db::LockFailure::Db(e)) => return Err(Error::db("locking the target name")(e)),
        }
        // A version move holds the source shared on its own connection
        // already; shared locks do not conflict, so this one is had at once.
        if let Err(failure) =
            db::acquire(&mut ctl, src, LockMode::Shared, s.lock_wait, control).await
        {
            let _ = db::unlock(&mut ctl, dst, LockMode::Exclusive).await;
            return Err(match failure {
                db::LockFailure::Busy(message) => Error::Usage { message },
                db::LockFailure::Db(e) => Error::db("locking the source schema")(e),
            });
        }
        let unlock = async |ctl: &mut PgConnection| {
            let _ = db::unlock(ctl, src, LockMode::Shared).await;
            let _ = db::unlock(ctl, dst, LockMode::Exclusive).await;
        };
        let tmp = temp_name(dst);
        // Before the copy proper: a schema under the temporary name that
        // tenantmig did not make is refused here and never dropped below.
        if let Err(e) = drop_leftover(&mut ctl, &tmp, dst, &*self.sink, s.lock_wait).await {
            unlock(&mut ctl).await;
            return Err(e);
        }
        let result = self
            .copy_locked(&mut ctl, opts, &tmp, started, shutdown)
            .await;
        if result.is_err() {
            // A small copy's batch may have left its transaction open or
            // aborted. Rolled back with the server's warning for a session
            // that has none ("there is no transaction in progress") muted:
            // the SET fails in an aborted transaction and is undone in an
            // open one.
            let _ = ctl.execute("SET client_min_messages = error").await;
            let _ = ctl.execute("ROLLBACK").await;
            let _ = ctl.execute("RESET client_min_messages").await;
            let _ = db::drop_schema_cascade(&mut ctl, &tmp).await;
        }
        unlock(&mut ctl).await;
        let _ = ctl.close().await;
        result
    }

    async fn copy_locked(
        &self,
        ctl: &mut PgConnection,
        opts: &CopyOptions,
        tmp: &str,
        started: Instant,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<CopyReport> {
        let src = opts.source.as_str();
        let dst = opts.target.as_str();
        let s = &self.settings;

        let jobs = self.copy_jobs(ctl, opts.jobs).await?;

        // The snapshot: catalog read, locks, and every read of the source.
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            "copy: checks done"
        );
        let mut snap = self.connection().await?;
        let (snapshot, nsp, def) = lock_and_snapshot(&mut snap, src, s.lock_wait).await?;

        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            "copy: catalog read and locked"
        );
        let layout = self.lay_out(&def, opts, tmp, jobs);

        // Objects, in one transaction under the temporary name.
        let mut timings = CopyTimings::default();
        create_objects(ctl, src, dst, tmp, s.lock_wait, &layout.plan.pre).await?;
        timings.schema_ms = started.elapsed().as_millis() as u64;
        self.sink.emit(Event::CopyStep {
            step: format!("created {} objects", layout.plan.objects),
        });

        let shared = Arc::new(Shared {
            source: src.to_string(),
            tmp: tmp.to_string(),
            snapshot,
            verify: opts.verify,
            failed: AtomicBool::new(false),
            in_flight: Mutex::new(Vec::new()),
        });
        // A small copy runs on the control connection alone.
        let mut workers = self
            .open_workers(if layout.small { 0 } else { layout.jobs }, tmp)
            .await?;
        // Until the rename, a commit need not wait for its WAL flush: a
        // crash before then leaves only the temporary schema anyway.
        // language=SQL
        ctl.execute(sqlx::raw_sql(AssertSqlSafe(format!(
            "SET search_path TO {}; SET synchronous_commit = off; SET lock_timeout = {}",
            quote_ident(tmp),
            s.lock_wait.as_millis()
        ))))
        .await
        .map_err(Error::db("setting up the copy's connection"))?;

        let c = Copying {
            ctl: &mut *ctl,
            snap: &mut snap,
            workers: &mut workers,
            shared: &shared,
            small: layout.small,
        };
        let (rows, n_indexes, checks) = self
            .copy_steps(c, &layout, nsp, &mut timings, dst, shutdown)
            .await?;
        let _ = snap.execute("COMMIT").await;
        let _ = snap.close().await;

        self.rename_into_place(
            ctl,
            tmp,
            dst,
            def.comment.as_deref(),
            opts.in_rename.as_deref(),
        )
        .await?;
        Ok(CopyReport {
            source: src.to_string(),
            target: dst.to_string(),
            objects: layout.plan.objects,
            tables: layout.tables,
            rows,
            bytes: layout.bytes,
            indexes: n_indexes,
            jobs: layout.jobs,
            verify: opts.verify,
            checks,
            warnings: layout.plan.warnings,
            timings,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Hands `jobs` to the worker connections from one queue. With
    /// `monitor`, that connection reports how far the tables in flight
    /// have grown while the workers run.
    async fn run_jobs(
        &self,
        workers: &mut [PgConnection],
        jobs: VecDeque<Job>,
        shared: &Arc<Shared>,
        monitor: Option<&mut PgConnection>,
    ) -> Result<Vec<Done>> {
        let queue = Mutex::new(jobs);
        let work = futures::future::try_join_all(
            workers
                .iter_mut()
                .map(|c| self.worker(c, &queue, shared.clone())),
        );
        let mut work = std::pin::pin!(work);
        let Some(m) = monitor else {
            return Ok(work.await?.into_iter().flatten().collect());
        };
        loop {
            tokio::select! {
                r = &mut work => return Ok(r?.into_iter().flatten().collect()),
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    let tables: Vec<(String, i64)> = shared
                        .in_flight
                        .lock()
                        .map(|v| v.clone())
                        .unwrap_or_default();
                    for (t, _) in tables {
                        // language=SQL
                        let size: Option<i64> = sqlx::query_scalar(
                            "SELECT pg_relation_size(c.oid)::int8 FROM pg_catalog.pg_class c \
                             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                             WHERE n.nspname = $1 AND c.relname = $2",
                        )
                        .bind(&shared.tmp)
                        .bind(&t)
                        .fetch_optional(&mut *m)
                        .await
                        .ok()
                        .flatten();
                        if let Some(bytes) = size {
                            self.sink.emit(Event::TableCopyProgress {
                                table: t,
                                bytes_written: bytes,
                            });
                        }
                    }
                }
            }
        }
    }

    async fn worker(
        &self,
        conn: &mut PgConnection,
        queue: &Mutex<VecDeque<Job>>,
        shared: Arc<Shared>,
    ) -> Result<Vec<Done>> {
        let mut out = Vec::new();
        loop {
            if shared.failed.load(Ordering::SeqCst) {
                break;
            }
            let Some(job) = queue.lock().expect("queue lock").pop_front() else {
                break;
            };
            let r = self.do_job(conn, job, &shared).await;
            match r {
                Ok(d) => out.push(d),
                Err(e) => {
                    shared.failed.store(true, Ordering::SeqCst);
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    async fn do_job(&self, conn: &mut PgConnection, job: Job, sh: &Shared) -> Result<Done> {
        let src = quote_ident(&sh.source);
        let tmp = quote_ident(&sh.tmp);
        let begin = format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT {}; SET LOCAL row_security = off",
            ddl::lit(&sh.snapshot)
        );
        match job {
            Job::Data(t) => {
                let started = Instant::now();
                self.sink.emit(Event::TableCopyStarted {
                    table: t.table.clone(),
                    bytes: t.bytes,
                    estimated_rows: t.est_rows,
                });
                if let Ok(mut v) = sh.in_flight.lock() {
                    v.push((t.table.clone(), t.bytes));
                }
                let insert = insert_sql(sh, &t);
                let doing = format!("copying the rows of {}.{}", sh.source, t.table);
                conn.execute(sqlx::raw_sql(AssertSqlSafe(begin)))
                    .await
                    .map_err(Error::db(doing.clone()))?;
                let res = conn
                    .execute(AssertSqlSafe(insert))
                    .await
                    .map_err(|e| Error::Failed {
                        message: format!("while {doing}: {}", describe_db_error(&e)),
                    })?;
                conn.execute("COMMIT").await.map_err(Error::db(doing))?;
                if let Ok(mut v) = sh.in_flight.lock()
                    && let Some(i) = v.iter().position(|(n, _)| n == &t.table)
                {
                    v.remove(i);
                }
                let rows = res.rows_affected() as i64;
                self.sink.emit(Event::TableCopied {
                    table: t.table.clone(),
                    rows,
                    bytes: t.bytes,
                    duration_ms: started.elapsed().as_millis() as u64,
                });
                Ok(Done::Data { rows })
            }
            Job::Stmt(st) => {
                run_stmt(conn, &st).await?;
                Ok(Done::Stmt)
            }
            Job::Check(c) => {
                let name = quote_ident(&c.table);
                let expr = if sh.verify == Verify::Checksums {
                    HASH_EXPR
                } else {
                    COUNT_EXPR
                };
                let doing = format!("checking {}", c.table);
                conn.execute(sqlx::raw_sql(AssertSqlSafe(begin)))
                    .await
                    .map_err(Error::db(doing.clone()))?;
                // language=SQL
                let a = sqlx::query(AssertSqlSafe(format!(
                    "SELECT {expr} FROM ONLY {src}.{name} t"
                )))
                .fetch_one(&mut *conn)
                .await
                .map_err(Error::db(doing.clone()))?;
                conn.execute("COMMIT")
                    .await
                    .map_err(Error::db(doing.clone()))?;
                // language=SQL
                let b = sqlx::query(AssertSqlSafe(format!(
                    "SELECT {expr} FROM ONLY {tmp}.{name} t"
                )))
                .fetch_one(&mut *conn)
                .await
                .map_err(Error::db(doing.clone()))?;
                Ok(Done::Check(TableCheck {
                    table: c.table,
                    source_rows: a.try_get(0).map_err(Error::db(doing.clone()))?,
                    target_rows: b.try_get(0).map_err(Error::db(doing.clone()))?,
                    source_hash: a.try_get(1).map_err(Error::db(doing.clone()))?,
                    target_hash: b.try_get(1).map_err(Error::db(doing))?,
                }))
            }
        }
    }
}

/// `INSERT … SELECT` of one data task, inside the server.
fn insert_sql(sh: &Shared, t: &DataTask) -> String {
    let range = match t.blocks {
        None => String::new(),
        Some((a, None)) => format!(" WHERE ctid >= '({a},0)'::tid"),
        Some((a, Some(b))) => format!(" WHERE ctid >= '({a},0)'::tid AND ctid < '({b},0)'::tid"),
    };
    // language=SQL
    format!(
        "INSERT INTO {tmp}.{name} ({cols}){ov} SELECT {sel} FROM ONLY {src}.{name}{range}",
        tmp = quote_ident(&sh.tmp),
        src = quote_ident(&sh.source),
        name = quote_ident(&t.table),
        cols = t.columns,
        sel = t.select,
        ov = if t.overriding {
            " OVERRIDING SYSTEM VALUE"
        } else {
            ""
        }
    )
}

/// Below this much table data a copy uses one connection and batched
/// statements, by default.
pub const SMALL_COPY_BYTES: i64 = 32 * 1024 * 1024;

/// Statements joined into one simple-query batch (one round trip; the
/// server runs a batch as one transaction).
fn batch(stmts: &[Stmt]) -> String {
    stmts
        .iter()
        .map(|s| s.sql.as_str())
        .collect::<Vec<_>>()
        .join(";\n")
}

/// Runs `stmts` as one batch; when it fails (and so changed nothing),
/// again one at a time, to name the statement that fails.
async fn run_batch(conn: &mut PgConnection, stmts: &[Stmt]) -> Result<()> {
    if stmts.is_empty() {
        return Ok(());
    }
    if conn
        .execute(sqlx::raw_sql(AssertSqlSafe(batch(stmts))))
        .await
        .is_ok()
    {
        return Ok(());
    }
    for st in stmts {
        run_stmt(conn, st).await?;
    }
    Ok(())
}

// language=SQL
const COUNT_EXPR: &str = "count(*)::int8, NULL::text";
// The sum of 64-bit slices of each row's md5: independent of row order and
// of the physical layout.
// language=SQL
const HASH_EXPR: &str = "count(*)::int8, coalesce(sum(('x' || substr(md5(t::text), 1, 16))::bit(64)::int8::numeric), 0)::text";

/// Counts (or hashes) of every table in two queries: the source's on the
/// snapshot connection, the copy's on `ctl`.
async fn check_batched(
    snap: &mut PgConnection,
    ctl: &mut PgConnection,
    src: &str,
    tmp: &str,
    verify: Verify,
    tables: &[CheckedTable],
) -> Result<Vec<TableCheck>> {
    let expr = if verify == Verify::Checksums {
        HASH_EXPR
    } else {
        COUNT_EXPR
    };
    let mut out = Vec::with_capacity(tables.len());
    for chunk in tables.chunks(100) {
        let query = |schema: &str| {
            chunk
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    format!(
                        "SELECT {i}, {expr} FROM ONLY {}.{} t",
                        quote_ident(schema),
                        quote_ident(&c.table)
                    )
                })
                .collect::<Vec<_>>()
                .join(" UNION ALL ")
        };
        let doing = "checking the copy's rows";
        let a = sqlx::query(AssertSqlSafe(query(src)))
            .fetch_all(&mut *snap)
            .await
            .map_err(Error::db(doing))?;
        let b = sqlx::query(AssertSqlSafe(query(tmp)))
            .fetch_all(&mut *ctl)
            .await
            .map_err(Error::db(doing))?;
        let get = |rows: &[sqlx::postgres::PgRow], i: i32| -> Result<(i64, Option<String>)> {
            let r = rows
                .iter()
                .find(|r| r.try_get::<i32, _>(0).ok() == Some(i))
                .ok_or_else(|| Error::Failed {
                    message: format!("{doing}: a table's result is missing"),
                })?;
            Ok((
                r.try_get(1).map_err(Error::db(doing))?,
                r.try_get(2).map_err(Error::db(doing))?,
            ))
        };
        for (i, c) in chunk.iter().enumerate() {
            let (sr, sh) = get(&a, i as i32)?;
            let (tr, th) = get(&b, i as i32)?;
            out.push(TableCheck {
                table: c.table.clone(),
                source_rows: sr,
                target_rows: tr,
                source_hash: sh,
                target_hash: th,
            });
        }
    }
    Ok(out)
}

/// Runs one statement, naming its object when it fails.
async fn run_stmt(conn: &mut PgConnection, st: &Stmt) -> Result<()> {
    conn.execute(sqlx::raw_sql(AssertSqlSafe(st.sql.clone())))
        .await
        .map_err(|e| Error::Failed {
            message: format!(
                "while creating {} in the copy: {}\n  statement: {}",
                st.what,
                describe_db_error(&e),
                st.sql
            ),
        })?;
    Ok(())
}

/// A schema name as it would be typed in a shell command.
pub(crate) fn shell_word(name: &str) -> String {
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        name.to_string()
    } else {
        format!("'{name}'")
    }
}
