//! One step of a schema: copy, create, migrate, a data move, the check
//! (foreign keys, sequences).

use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection, Executor};

use super::files::{DataMove, Expect, Vars};
use super::store::Checkpoint;
use super::{
    CHECK, COPY, CREATE, MIGRATE, MoveCtx, MoveOutcome, SchemaMove, TableCount, counts, files,
    store,
};
use crate::config::Strategy;
use crate::copy::CopyOptions;
use crate::engine::{describe_db_error, migrate_schema};
use crate::error::Result;
use crate::events::{Event, OutcomeState, Phase, SchemaOutcome};
use crate::ident::quote_ident;

/// Why a step failed.
pub(super) struct StepFail {
    pub(super) message: String,
    /// The connection must be dropped.
    pub(super) broken: bool,
    /// Stopped by Ctrl-C rather than failed.
    pub(super) stopped: bool,
}

impl StepFail {
    pub(super) fn new(message: impl Into<String>) -> Self {
        StepFail {
            message: message.into(),
            broken: false,
            stopped: false,
        }
    }

    pub(super) fn db(e: sqlx::Error) -> Self {
        StepFail {
            message: describe_db_error(&e),
            broken: true,
            stopped: false,
        }
    }
}

/// Runs one step; returns the rows it read and wrote.
pub(super) async fn run_step(
    cx: &MoveCtx,
    conn: &mut PgConnection,
    m: &SchemaMove,
    step: &str,
    out: &mut MoveOutcome,
) -> Result<(Option<i64>, Option<i64>), StepFail> {
    let l = &cx.loaded;
    match step {
        COPY => {
            let done = done_sql(cx, m, step, (None, None));
            let made = store::created_sql(&cx.control, &cx.version, &m.target, &m.source);
            let jobs = if m.phase == Phase::Shared {
                cx.copy_jobs
            } else {
                1
            };
            let opts = CopyOptions {
                in_rename: Some(format!("{done}; {made}")),
                ..CopyOptions::new(&m.source, &m.target, jobs)
            };
            let run = cx.run.clone();
            let stop = async move {
                while !run.shutdown.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            let report = cx
                .copier
                .copy_schema(&opts, stop)
                .await
                .map_err(|e| StepFail {
                    message: e.to_string(),
                    broken: false,
                    stopped: cx.run.shutdown.load(Ordering::SeqCst),
                })?;
            if m.phase == Phase::Tenant {
                warn_shared_references(cx, conn, m).await;
            }
            out.counts = report
                .checks
                .iter()
                .map(|c| TableCount {
                    table: c.table.clone(),
                    source_tables: Vec::new(),
                    source_rows: c.source_rows,
                    target_rows: c.target_rows,
                })
                .collect();
            Ok((
                Some(report.checks.iter().map(|c| c.source_rows).sum()),
                Some(report.checks.iter().map(|c| c.target_rows).sum()),
            ))
        }
        CREATE => {
            let mut tx = conn.begin().await.map_err(StepFail::db)?;
            // language=SQL
            let sql = format!(
                "CREATE SCHEMA {}; {}; {}",
                quote_ident(&m.target),
                store::created_sql(&cx.control, &cx.version, &m.target, &m.source),
                done_sql(cx, m, step, (None, None))
            );
            if let Err(e) = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *tx).await {
                let _ = tx.rollback().await;
                return Err(StepFail {
                    message: format!(
                        "while creating schema {}: {}",
                        m.target,
                        describe_db_error(&e)
                    ),
                    broken: false,
                    stopped: false,
                });
            }
            tx.commit().await.map_err(StepFail::db)?;
            Ok((None, None))
        }
        MIGRATE => {
            let set = match m.phase {
                Phase::Shared => &l.shared_set,
                Phase::Tenant => &l.tenant_set,
            };
            let mut o = SchemaOutcome::new(&m.target, m.phase);
            // The source's lock is held on this connection; migrating the
            // target takes the target's own lock.
            let broken = migrate_schema(conn, &cx.run, set, m.phase, &m.target, &mut o).await;
            match o.state {
                OutcomeState::Succeeded | OutcomeState::UpToDate => Ok((None, None)),
                state => Err(StepFail {
                    message: o.error.unwrap_or_else(|| state.as_str().into()),
                    broken,
                    stopped: state == OutcomeState::Stopped,
                }),
            }
        }
        CHECK => check(cx, conn, m, out).await,
        _ => {
            let moves = match m.phase {
                Phase::Shared => &l.shared_moves,
                Phase::Tenant => &l.tenant_moves,
            };
            let dm = moves
                .iter()
                .find(|d| d.step == step)
                .ok_or_else(|| StepFail::new(format!("no data-move file for step {step}")))?;
            data_move(cx, conn, m, dm).await
        }
    }
}

/// A clone keeps a tenant's references into the current shared schema
/// (foreign keys, views); after a cut-over they would point at the old
/// version's tables. Says so, naming them.
async fn warn_shared_references(cx: &MoveCtx, conn: &mut PgConnection, m: &SchemaMove) {
    // language=SQL
    let refs: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT c.relname::text FROM pg_catalog.pg_depend d \
         JOIN pg_catalog.pg_class c ON c.oid = CASE d.classid \
              WHEN 'pg_catalog.pg_constraint'::regclass THEN (SELECT conrelid FROM pg_catalog.pg_constraint WHERE oid = d.objid) \
              ELSE (SELECT ev_class FROM pg_catalog.pg_rewrite WHERE oid = d.objid) END \
         JOIN pg_catalog.pg_class r ON r.oid = d.refobjid \
         WHERE d.refclassid = 'pg_catalog.pg_class'::regclass \
           AND d.classid IN ('pg_catalog.pg_constraint'::regclass, 'pg_catalog.pg_rewrite'::regclass) \
           AND c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1) \
           AND r.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $2) \
         ORDER BY 1 LIMIT 10",
    )
    .bind(&m.target)
    .bind(&cx.source_shared)
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_default();
    if !refs.is_empty() {
        cx.run.sink.emit(Event::Warning {
            message: format!(
                "{}: {} refer(s) to tables of {} (foreign keys or views); the copy keeps those references, which after a cut-over point at the previous version's tables: recreate them against {} with a migration of the version",
                m.target,
                refs.join(", "),
                cx.source_shared,
                cx.loaded.v.shared_schema
            ),
        });
    }
}

/// The statement that records `step` of `m` as done, for the transaction
/// that does the step's work.
fn done_sql(cx: &MoveCtx, m: &SchemaMove, step: &str, rows: (Option<i64>, Option<i64>)) -> String {
    store::checkpoint_sql(
        &cx.control,
        &Checkpoint {
            version: &cx.version,
            source: &m.source,
            step,
            target: &m.target,
            state: "done",
            run_id: Some(cx.run_id),
            rows_read: rows.0,
            rows_written: rows.1,
            error: None,
            duration_ms: None,
        },
    )
}

/// Runs one data-move file in one transaction (REPEATABLE READ, so the
/// expected count and the rows moved see the same data) with its
/// checkpoint.
async fn data_move(
    cx: &MoveCtx,
    conn: &mut PgConnection,
    m: &SchemaMove,
    dm: &DataMove,
) -> Result<(Option<i64>, Option<i64>), StepFail> {
    let v = &cx.loaded.v;
    let s = &cx.run.settings;
    let vars = Vars {
        source_schema: &m.source,
        target_schema: &m.target,
        source_shared: &cx.source_shared,
        target_shared: &v.shared_schema,
        tenant: (m.phase == Phase::Tenant).then_some(m.source.as_str()),
        tenant_id: m.tenant_id.as_deref(),
    };
    let file = dm.path.display();
    let sql = files::render(&dm.sql, &vars).map_err(|e| StepFail::new(format!("{file}: {e}")))?;
    let expect = match &dm.expect {
        Expect::Query(q) => {
            Some(files::render(q, &vars).map_err(|e| StepFail::new(format!("{file}: {e}")))?)
        }
        Expect::Unchecked => None,
    };
    let mut tx = conn
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(StepFail::db)?;
    let target_path = if m.target == v.shared_schema {
        quote_ident(&m.target)
    } else {
        format!(
            "{}, {}",
            quote_ident(&m.target),
            quote_ident(&v.shared_schema)
        )
    };
    let result = async {
        // language=SQL
        sqlx::raw_sql(AssertSqlSafe(format!(
            "SET LOCAL search_path TO {target_path}; SET LOCAL lock_timeout = {}; SET LOCAL statement_timeout = {}",
            s.lock_timeout.as_millis(),
            s.statement_timeout.as_millis()
        )))
        .execute(&mut *tx)
        .await
        .map_err(|e| format!("while setting up the session: {}", describe_db_error(&e)))?;
        let expected: Option<i64> = match &expect {
            Some(q) => Some(
                sqlx::query_scalar::<_, Option<i64>>(AssertSqlSafe(format!(
                    "SELECT ({q})::int8"
                )))
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| {
                    format!(
                        "{file}: its expect-rows query failed: {}",
                        describe_db_error(&e)
                    )
                })?
                .unwrap_or(0),
            ),
            None => None,
        };
        let written = sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await
            .map_err(|e| format!("{file}: {}", describe_db_error(&e)))?
            .rows_affected() as i64;
        if let Some(n) = expected
            && n != written
        {
            return Err(format!(
                "{file} wrote {written} rows but its expect-rows query counts {n}; nothing of this step was kept"
            ));
        }
        let done = done_sql(cx, m, &dm.step, (expected, Some(written)));
        sqlx::raw_sql(AssertSqlSafe(done))
            .execute(&mut *tx)
            .await
            .map_err(|e| format!("while recording the step: {}", describe_db_error(&e)))?;
        Ok((expected, Some(written)))
    }
    .await;
    match result {
        Ok(rows) => {
            tx.commit().await.map_err(StepFail::db)?;
            Ok(rows)
        }
        Err(message) => {
            let rolled_back = tx.rollback().await.is_ok();
            Err(StepFail {
                message,
                broken: !rolled_back,
                stopped: false,
            })
        }
    }
}

/// The checks of a moved schema: final counts (reshape), foreign keys and
/// sequences (for a target of its own, or the shared schema's final check).
async fn check(
    cx: &MoveCtx,
    conn: &mut PgConnection,
    m: &SchemaMove,
    out: &mut MoveOutcome,
) -> Result<(Option<i64>, Option<i64>), StepFail> {
    let v = &cx.loaded.v;
    let consolidated_tenant = m.phase == Phase::Tenant && v.consolidates();
    let mut rows = (None, None);
    if v.strategy == Strategy::Reshape {
        counts::final_counts(cx, conn, m, &mut out.counts).await?;
        rows = (
            Some(out.counts.iter().map(|c| c.source_rows).sum()),
            Some(out.counts.iter().map(|c| c.target_rows).sum()),
        );
    }
    if !consolidated_tenant {
        validate_foreign_keys(conn, &m.target).await?;
        set_sequences(conn, &m.target).await.map_err(StepFail::db)?;
    }
    Ok(rows)
}

/// Validates every foreign key of `schema` still marked NOT VALID.
async fn validate_foreign_keys(conn: &mut PgConnection, schema: &str) -> Result<(), StepFail> {
    // language=SQL
    let fks: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, k.conname::text FROM pg_catalog.pg_constraint k \
         JOIN pg_catalog.pg_class c ON c.oid = k.conrelid \
         WHERE k.contype = 'f' AND NOT k.convalidated \
           AND k.connamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1)",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await
    .map_err(StepFail::db)?;
    for (table, fk) in fks {
        // language=SQL
        let sql = format!(
            "ALTER TABLE {}.{} VALIDATE CONSTRAINT {}",
            quote_ident(schema),
            quote_ident(&table),
            quote_ident(&fk)
        );
        conn.execute(AssertSqlSafe(sql)).await.map_err(|e| {
            StepFail::new(format!(
                "foreign key {fk} of {schema}.{table} is not valid: {}",
                describe_db_error(&e)
            ))
        })?;
    }
    Ok(())
}

/// Sets every sequence owned by a column of `schema` past the largest value
/// in that column (never backwards).
async fn set_sequences(conn: &mut PgConnection, schema: &str) -> Result<(), sqlx::Error> {
    // language=SQL
    let owned: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(s.relname), \
                quote_ident(n2.nspname) || '.' || quote_ident(t.relname), quote_ident(a.attname) \
         FROM pg_catalog.pg_depend d \
         JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S' \
         JOIN pg_catalog.pg_namespace n ON n.oid = s.relnamespace \
         JOIN pg_catalog.pg_class t ON t.oid = d.refobjid \
         JOIN pg_catalog.pg_namespace n2 ON n2.oid = t.relnamespace \
         JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid \
         WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass \
           AND d.deptype IN ('a', 'i') AND n2.nspname = $1",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await?;
    for (seq, table, col) in owned {
        // language=SQL
        let sql = format!(
            "SELECT pg_catalog.setval({lit}, m) FROM (SELECT max({col})::int8 AS m FROM {table}) x, {seq} s \
             WHERE m IS NOT NULL AND (m > s.last_value OR (m = s.last_value AND NOT s.is_called))",
            lit = crate::copy::ddl::lit(&seq),
        );
        sqlx::query(AssertSqlSafe(sql)).execute(&mut *conn).await?;
    }
    Ok(())
}
