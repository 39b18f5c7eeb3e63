//! The steps of a copy once its source is locked and its snapshot taken:
//! the connection budget, the plan's layout, the objects under the
//! temporary name, the rows, everything built after them, the checks, and
//! the rename into place.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection, Executor};

use super::catalog::SchemaDef;
use super::ddl::{self, CheckedTable, DataTask, Stmt};
use super::source::check_not_rewritten;
use super::{
    CopyOptions, CopyTimings, Done, Job, MARK, Shared, TableCheck, Verify, batch, check_batched,
    insert_sql, run_batch, run_stmt,
};
use crate::db;
use crate::engine::{Engine, describe_db_error};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::ident::quote_ident;

/// A copy in flight: its connections and what they share.
pub(super) struct Copying<'a> {
    /// The command's own connection (a small copy runs on it alone).
    pub(super) ctl: &'a mut PgConnection,
    /// The snapshot's connection, in its `REPEATABLE READ` transaction.
    pub(super) snap: &'a mut PgConnection,
    /// The worker connections (none for a small copy).
    pub(super) workers: &'a mut Vec<PgConnection>,
    /// The source, the temporary name and the snapshot.
    pub(super) shared: &'a Arc<Shared>,
    /// One connection and batched statements.
    pub(super) small: bool,
}

/// A copy's plan, laid out for its connections.
pub(super) struct Layout {
    /// The statements, step by step (its rows are in `data`).
    pub(super) plan: ddl::CopyPlan,
    /// The rows to copy, large tables split into block ranges.
    pub(super) data: Vec<DataTask>,
    /// Size of the source tables copied.
    pub(super) bytes: i64,
    /// Tables whose rows are copied.
    pub(super) tables: usize,
    /// Connections copying at once (1 for a small copy).
    pub(super) jobs: usize,
    /// One connection and batched statements.
    pub(super) small: bool,
}

impl Engine {
    /// `--jobs`, capped by the connections free for this database and
    /// role: the control and snapshot connections come first, and one
    /// stays spare.
    pub(super) async fn copy_jobs(
        &self,
        ctl: &mut PgConnection,
        requested: usize,
    ) -> Result<usize> {
        let (free, _) = db::free_connections(ctl)
            .await
            .map_err(Error::db("counting the server's free connections"))?;
        let cap = (free - 3).max(1) as usize;
        if requested > cap {
            self.sink.emit(Event::Warning {
                message: format!(
                    "--jobs {requested} exceeds the {cap} connections free for this database and role; using {cap}"
                ),
            });
            return Ok(cap);
        }
        Ok(requested)
    }

    /// The copy's plan from the source's catalog, laid out: its warnings
    /// emitted, a small source kept to one connection (its statements sent
    /// in batches), large tables split among `jobs`; then the copy's start.
    pub(super) fn lay_out(
        &self,
        def: &SchemaDef,
        opts: &CopyOptions,
        tmp: &str,
        mut jobs: usize,
    ) -> Layout {
        let src = opts.source.as_str();
        let dst = opts.target.as_str();
        let mut plan = ddl::plan(def, src, dst, tmp, opts.data, &self.settings.history_table);
        for w in &plan.warnings {
            self.sink.emit(Event::Warning { message: w.clone() });
        }
        let bytes: i64 = plan.data.iter().map(|t| t.bytes).sum();
        // A small schema is copied over one connection, its statements sent
        // in batches: connections and round trips would cost more than the
        // parallelism saves.
        let small = bytes < opts.small_below_bytes;
        if small {
            jobs = 1;
        }
        let data = ddl::split_large(std::mem::take(&mut plan.data), jobs, 8192);
        let tables: std::collections::HashSet<&str> =
            data.iter().map(|t| t.table.as_str()).collect();
        let table_count = tables.len();
        self.sink.emit(Event::CopyStarted {
            source: src.to_string(),
            target: dst.to_string(),
            tables: table_count,
            bytes,
            jobs,
        });
        Layout {
            plan,
            data,
            bytes,
            tables: table_count,
            jobs,
            small,
        }
    }

    /// `n` worker connections, each writing into the temporary schema.
    pub(super) async fn open_workers(&self, n: usize, tmp: &str) -> Result<Vec<PgConnection>> {
        let mut workers = Vec::with_capacity(n);
        for _ in 0..n {
            let mut c = self.connection().await?;
            // language=SQL
            c.execute(sqlx::raw_sql(AssertSqlSafe(format!(
                "SET search_path TO {}; SET synchronous_commit = off; SET lock_timeout = {}",
                quote_ident(tmp),
                self.settings.lock_wait.as_millis()
            ))))
            .await
            .map_err(Error::db("setting up a copy connection"))?;
            workers.push(c);
        }
        Ok(workers)
    }

    /// The rows, everything built after them and the checks, until done or
    /// until `shutdown` resolves (an error: the copy into `dst` stopped);
    /// the worker connections are closed either way. Returns the rows
    /// copied, the indexes built and the checks.
    pub(super) async fn copy_steps(
        &self,
        mut c: Copying<'_>,
        layout: &Layout,
        nsp: i64,
        timings: &mut CopyTimings,
        dst: &str,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(i64, usize, Vec<TableCheck>)> {
        let (plan, verify) = (&layout.plan, c.shared.verify);
        let body = async {
            let rows = self.copy_rows(&mut c, &layout.data, plan, timings).await?;
            self.build_the_rest(&mut c, plan, timings).await?;
            let checks = self
                .verify_copy(&mut c, nsp, verify, &plan.checked, timings)
                .await?;
            Ok((rows, plan.indexes.len(), checks))
        };
        let outcome = tokio::select! {
            r = body => r,
            _ = shutdown => Err(Error::Failed {
                message: format!("interrupted: the copy into {dst} was stopped and its temporary schema dropped; {dst} was not created"),
            }),
        };
        for w in c.workers.drain(..) {
            let _ = w.close().await;
        }
        outcome
    }

    /// The rows, read in the snapshot: a small copy in one batch on the
    /// control connection, a large one by the workers (large tables in
    /// block ranges); then the materialized views of a large copy.
    pub(super) async fn copy_rows(
        &self,
        c: &mut Copying<'_>,
        data: &[DataTask],
        plan: &ddl::CopyPlan,
        timings: &mut CopyTimings,
    ) -> Result<i64> {
        let t0 = Instant::now();
        let mut rows = 0i64;
        if c.small && !data.is_empty() {
            // language=SQL
            let mut sql = format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT {}; \
                 SET LOCAL row_security = off",
                ddl::lit(&c.shared.snapshot)
            );
            for t in data {
                sql.push_str(";\n");
                sql.push_str(&insert_sql(c.shared, t));
            }
            sql.push_str(";\nCOMMIT");
            let res = c
                .ctl
                .execute(sqlx::raw_sql(AssertSqlSafe(sql)))
                .await
                .map_err(|e| Error::Failed {
                    message: format!(
                        "while copying the rows of {}: {}",
                        c.shared.source,
                        describe_db_error(&e)
                    ),
                })?;
            rows = res.rows_affected() as i64;
        } else if !data.is_empty() {
            let jobs_q: VecDeque<Job> = data.iter().cloned().map(Job::Data).collect();
            let done = self
                .run_jobs(c.workers, jobs_q, c.shared, Some(&mut *c.ctl))
                .await?;
            for d in done {
                if let Done::Data { rows: n, .. } = d {
                    rows += n;
                }
            }
        }
        if !c.small {
            for st in &plan.refresh {
                run_stmt(c.ctl, st).await?;
            }
        }
        timings.data_ms = t0.elapsed().as_millis() as u64;
        self.sink.emit(Event::CopyStep {
            step: format!("copied {rows} rows"),
        });
        Ok(rows)
    }

    /// Everything after the rows: indexes (in parallel on a large copy),
    /// constraints, triggers, rules, policies, comments, grants, owners,
    /// and the foreign keys validated last.
    pub(super) async fn build_the_rest(
        &self,
        c: &mut Copying<'_>,
        plan: &ddl::CopyPlan,
        timings: &mut CopyTimings,
    ) -> Result<()> {
        if c.small {
            // Everything else in one batch: materialized views, indexes,
            // constraints, foreign keys and the rest.
            let t0 = Instant::now();
            let all: Vec<Stmt> = plan
                .refresh
                .iter()
                .chain(&plan.indexes)
                .chain(&plan.post)
                .chain(&plan.validate)
                .cloned()
                .collect();
            run_batch(c.ctl, &all).await?;
            timings.constraints_ms = t0.elapsed().as_millis() as u64;
        } else {
            // Indexes, in parallel.
            let t0 = Instant::now();
            let idx: VecDeque<Job> = plan.indexes.iter().cloned().map(Job::Stmt).collect();
            self.run_jobs(c.workers, idx, c.shared, None).await?;
            timings.indexes_ms = t0.elapsed().as_millis() as u64;
            self.sink.emit(Event::CopyStep {
                step: format!("built {} indexes", plan.indexes.len()),
            });
            // Everything else, in order; then the foreign keys are
            // validated in parallel, each in its own transaction, so each
            // scan holds only locks that let writes to the referenced table
            // go on.
            let t0 = Instant::now();
            run_batch(c.ctl, &plan.post).await?;
            let v: VecDeque<Job> = plan.validate.iter().cloned().map(Job::Stmt).collect();
            self.run_jobs(c.workers, v, c.shared, None).await?;
            timings.constraints_ms = t0.elapsed().as_millis() as u64;
        }
        let _ = c.ctl.execute("RESET ALL").await;
        self.sink.emit(Event::CopyStep {
            step: format!(
                "added {} constraints, triggers, policies, comments and grants",
                plan.post.len() + plan.validate.len()
            ),
        });
        Ok(())
    }

    /// The checks: no table rewritten behind the snapshot, then the row
    /// counts (or hashes) of the copy against the snapshot, table by table.
    pub(super) async fn verify_copy(
        &self,
        c: &mut Copying<'_>,
        nsp: i64,
        verify: Verify,
        checked: &[CheckedTable],
        timings: &mut CopyTimings,
    ) -> Result<Vec<TableCheck>> {
        let (src, tmp) = (c.shared.source.as_str(), c.shared.tmp.as_str());
        let t0 = Instant::now();
        check_not_rewritten(c.snap, src, nsp).await?;
        let mut checks = Vec::new();
        if verify != Verify::None && c.small {
            checks = check_batched(c.snap, c.ctl, src, tmp, verify, checked).await?;
        } else if verify != Verify::None {
            let q: VecDeque<Job> = checked.iter().cloned().map(Job::Check).collect();
            for d in self.run_jobs(c.workers, q, c.shared, None).await? {
                if let Done::Check(check) = d {
                    checks.push(check);
                }
            }
        }
        if verify != Verify::None {
            checks.sort_by(|a, b| a.table.cmp(&b.table));
            let bad: Vec<String> = checks
                .iter()
                .filter(|c| !c.matches())
                .map(|c| {
                    format!(
                        "{}: {} rows in {src}, {} in the copy{}",
                        c.table,
                        c.source_rows,
                        c.target_rows,
                        if c.source_hash != c.target_hash {
                            ", row hashes differ"
                        } else {
                            ""
                        }
                    )
                })
                .collect();
            if !bad.is_empty() {
                return Err(Error::Failed {
                    message: format!(
                        "the copy of {src} does not match its source ({}); nothing was created",
                        bad.join("; ")
                    ),
                });
            }
            self.sink.emit(Event::CopyStep {
                step: format!(
                    "verified {} of {} tables",
                    if verify == Verify::Checksums {
                        "row counts and hashes"
                    } else {
                        "row counts"
                    },
                    checks.len()
                ),
            });
        }
        timings.verify_ms = t0.elapsed().as_millis() as u64;
        Ok(checks)
    }

    /// The finished copy into place, in one transaction: the rename, the
    /// source's comment, and the caller's `in_rename` SQL.
    pub(super) async fn rename_into_place(
        &self,
        ctl: &mut PgConnection,
        tmp: &str,
        dst: &str,
        comment: Option<&str>,
        in_rename: Option<&str>,
    ) -> Result<()> {
        // language=SQL
        let rename = format!(
            "BEGIN; ALTER SCHEMA {} RENAME TO {d}; COMMENT ON SCHEMA {d} IS {}; {} COMMIT",
            quote_ident(tmp),
            comment.map(ddl::lit).unwrap_or_else(|| "NULL".into()),
            in_rename.map(|sql| format!("{sql};")).unwrap_or_default(),
            d = quote_ident(dst)
        );
        ctl.execute(sqlx::raw_sql(AssertSqlSafe(rename)))
            .await
            .map_err(Error::db(format!("renaming the finished copy to {dst}")))?;
        self.sink.emit(Event::CopyStep {
            step: format!("renamed the copy to {dst}"),
        });
        Ok(())
    }
}

/// The copy's objects, in one transaction under the temporary name: sent
/// as one batch, and on a failure again one statement at a time, to name
/// the one that fails.
pub(super) async fn create_objects(
    ctl: &mut PgConnection,
    src: &str,
    dst: &str,
    tmp: &str,
    lock_wait: Duration,
    pre: &[Stmt],
) -> Result<()> {
    // language=SQL
    let head = format!(
        "CREATE SCHEMA {t}; COMMENT ON SCHEMA {t} IS {}; \
         SET LOCAL search_path TO {t}; SET LOCAL check_function_bodies = off; \
         SET LOCAL standard_conforming_strings = on; SET LOCAL lock_timeout = {}; \
         SET LOCAL synchronous_commit = off",
        ddl::lit(&format!("{MARK} of {src:?} into {dst:?}")),
        lock_wait.as_millis(),
        t = quote_ident(tmp)
    );
    let mut tx = ctl
        .begin()
        .await
        .map_err(Error::db("starting the copy's transaction"))?;
    tx.execute(sqlx::raw_sql(AssertSqlSafe(head.clone())))
        .await
        .map_err(Error::db(format!("creating the temporary schema {tmp}")))?;
    if tx
        .execute(sqlx::raw_sql(AssertSqlSafe(batch(pre))))
        .await
        .is_err()
    {
        // Again one statement at a time, to name the one that fails.
        drop(tx);
        tx = ctl
            .begin()
            .await
            .map_err(Error::db("starting the copy's transaction"))?;
        tx.execute(sqlx::raw_sql(AssertSqlSafe(head)))
            .await
            .map_err(Error::db(format!("creating the temporary schema {tmp}")))?;
        for st in pre {
            run_stmt(&mut tx, st).await?;
        }
    }
    tx.commit()
        .await
        .map_err(Error::db("committing the copy's objects"))?;
    Ok(())
}
