//! One schema's work under its lock: the lock itself, creation (or a
//! schema that vanished), the goal applied again, then the migrations in
//! transaction groups or one `-- no-transaction` file at a time, with the
//! session reset around each file.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::run::{RunCtx, refused};
use crate::config::TransactionMode;
use crate::db::{self, LockMode};
use crate::error::Result;
use crate::events::{Event, OutcomeState, Phase, SchemaOutcome};
use crate::migration::{Migration, MigrationSet, split_statements};

/// A step that failed: which migration, which statement, and why.
#[derive(Debug)]
pub(super) struct StepError {
    version: Option<i64>,
    statement: Option<String>,
    pub(super) source: sqlx::Error,
}

impl StepError {
    fn plain(source: sqlx::Error) -> Self {
        StepError {
            version: None,
            statement: None,
            source,
        }
    }
}

pub(crate) use crate::error::describe_db_error;

/// Migrates one schema on `conn`. Returns true when the connection must be
/// dropped (it may still hold the schema's lock or an open transaction).
pub(crate) async fn migrate_schema(
    conn: &mut PgConnection,
    cx: &RunCtx,
    set: &MigrationSet,
    phase: Phase,
    schema: &str,
    out: &mut SchemaOutcome,
) -> bool {
    let s = &cx.settings;
    match db::acquire(
        conn,
        schema,
        LockMode::Exclusive,
        s.lock_wait,
        Some(&s.control_schema),
    )
    .await
    {
        Ok(()) => {}
        Err(db::LockFailure::Busy(message)) => {
            out.error = Some(message);
            return false;
        }
        Err(db::LockFailure::Db(e)) => {
            out.error = Some(format!(
                "while locking schema {schema}: {}",
                describe_db_error(&e)
            ));
            return true;
        }
    }
    let result = migrate_locked(conn, cx, set, phase, schema, out).await;
    if let Err(e) = result {
        out.state = OutcomeState::Failed;
        let what = match e.version {
            Some(v) => {
                let desc = set
                    .index_of(v)
                    .map(|i| set.migrations[i].description.as_str())
                    .unwrap_or("");
                let (verb, prep) = if cx.goal.is_revert() {
                    ("reverting", "in")
                } else {
                    ("applying", "to")
                };
                format!(
                    "while {verb} {} ({desc}) {prep} schema {schema}",
                    set.fmt_version(v)
                )
            }
            None => format!("while migrating schema {schema}"),
        };
        let mut why = describe_db_error(&e.source);
        if db::is_lock_timeout(&e.source) {
            // Who made it wait: whoever still holds locks on the tables it
            // touches (the tenant's own, or the shared schema's).
            why.push_str(&format!(
                " after {} tries of lock_timeout {}",
                out.attempts.max(1),
                humantime::format_duration(s.lock_timeout)
            ));
            why.push_str(
                &db::relation_lock_holders_in(conn, &[schema, s.shared_schema.as_str()]).await,
            );
        }
        out.error = Some(format!("{what}: {why}"));
        out.failed_version = e.version;
        out.failed_statement = e.statement;
    }
    // Always give the schema back: reset the session (role, session
    // authorization, settings), release the lock. If that fails, or the
    // session still runs as someone other than the user who logged in, the
    // caller drops the connection, which releases the lock too.
    let cleanup = async {
        db::reset_session(conn).await?;
        let unlocked = db::unlock(conn, schema, LockMode::Exclusive).await?;
        Ok::<_, sqlx::Error>(unlocked && db::runs_as_session_user(conn).await?)
    }
    .await;
    !matches!(cleanup, Ok(true))
}

async fn migrate_locked(
    conn: &mut PgConnection,
    cx: &RunCtx,
    set: &MigrationSet,
    phase: Phase,
    schema: &str,
    out: &mut SchemaOutcome,
) -> Result<(), StepError> {
    let s = &cx.settings;
    let revert = cx.goal.is_revert();
    if !ensure_exists(conn, cx, phase, schema, out).await? {
        return Ok(());
    }
    // Sent again before each migration file and each history write: what
    // one file changes in the session never reaches the next one.
    let session = db::session_sql(
        schema,
        &s.shared_schema,
        s.lock_timeout,
        s.statement_timeout,
    );
    db::execute_script(conn, &session)
        .await
        .map_err(StepError::plain)?;
    db::ensure_history_table(conn, schema, &s.history_table)
        .await
        .map_err(StepError::plain)?;
    // Read again under the lock: the bulk read may be stale by now.
    let mut st = db::read_status(conn, schema, &s.history_table, set)
        .await
        .map_err(StepError::plain)?;
    out.from_version = st.applied_version;
    out.to_version = st.applied_version;
    if st.state.is_refused() {
        let r = refused(&st, phase, set);
        out.state = r.state;
        out.error = r.error;
        return Ok(());
    }
    // What stays applied as a rollback goes (for the outcome's to_version).
    let remaining = crate::state::applied_versions(&st, set);
    cx.goal.apply(&mut st, set);
    let pending: Vec<&Migration> = st
        .pending
        .iter()
        .filter_map(|v| set.index_of(*v).map(|i| &set.migrations[i]))
        .collect();
    if pending.is_empty() {
        out.state = OutcomeState::UpToDate;
        return Ok(());
    }
    if revert && let Some(m) = pending.iter().find(|m| !m.is_reversible()) {
        // The plan checked this; a run that applied more since may not.
        out.state = OutcomeState::Refused;
        out.error = Some(format!(
            "migration {} has no .down.sql; nothing was reverted here",
            set.fmt_version(m.version)
        ));
        return Ok(());
    }
    if cx.goal.is_stamp() {
        return stamp(conn, cx, schema, &pending, out).await;
    }
    run_pending(conn, cx, schema, &session, &pending, remaining, out).await
}

/// Whether the schema is there to work on; creates it when the run may
/// (it was missing when the run planned, and its source still lists it).
/// False, with the outcome set, when there is nothing to do or it must
/// not be created: a rollback of a missing schema is up to date, a schema
/// that existed at planning and is gone has vanished, and a stamp or
/// `create_missing_schemas = false` never creates one.
async fn ensure_exists(
    conn: &mut PgConnection,
    cx: &RunCtx,
    phase: Phase,
    schema: &str,
    out: &mut SchemaOutcome,
) -> Result<bool, StepError> {
    let s = &cx.settings;
    if db::schema_exists(conn, schema)
        .await
        .map_err(StepError::plain)?
    {
        return Ok(true);
    }
    if cx.goal.is_revert() {
        out.state = OutcomeState::UpToDate;
        return Ok(false);
    }
    // Never bring back a schema that someone dropped while the run went
    // on: only a schema missing at planning may be created, and only
    // while its tenant source still lists it.
    if !cx.may_create.missing_at_plan.contains(schema) {
        out.state = OutcomeState::Vanished;
        out.error = Some(format!(
            "schema {schema} vanished during the run: it existed when the run planned and was dropped before its turn; it was not re-created"
        ));
        return Ok(false);
    }
    if phase == Phase::Tenant
        && cx.may_create.recheck_source
        && !crate::tenants::still_listed(conn, s, schema)
            .await
            .map_err(StepError::plain)?
    {
        out.state = OutcomeState::Vanished;
        out.error = Some(format!(
            "tenant {schema} was removed from the tenant source during the run; its schema was not created"
        ));
        return Ok(false);
    }
    if cx.goal.is_stamp() {
        out.state = OutcomeState::Failed;
        out.error = Some(format!(
            "schema {schema} does not exist; stamp adopts existing schemas (create it with `tenantmig migrate` instead)"
        ));
        return Ok(false);
    }
    if phase == Phase::Tenant && !s.create_missing_schemas {
        out.state = OutcomeState::Failed;
        out.error = Some(format!(
            "schema {schema} does not exist and create_missing_schemas is false; create it or set create_missing_schemas = true"
        ));
        return Ok(false);
    }
    db::create_schema(conn, schema)
        .await
        .map_err(StepError::plain)?;
    out.created = true;
    Ok(true)
}

/// `stamp`: history rows only, all in one transaction: the schema was built
/// by something else and is declared to match these versions.
async fn stamp(
    conn: &mut PgConnection,
    cx: &RunCtx,
    schema: &str,
    pending: &[&Migration],
    out: &mut SchemaOutcome,
) -> Result<(), StepError> {
    let table = &cx.settings.history_table;
    let mut tx = conn.begin().await.map_err(StepError::plain)?;
    for m in pending {
        db::insert_history(&mut tx, schema, table, m, true, 0)
            .await
            .map_err(|e| StepError {
                version: Some(m.version),
                statement: None,
                source: e,
            })?;
    }
    tx.commit().await.map_err(StepError::plain)?;
    for m in pending {
        out.applied.push(m.version);
        out.to_version = out.to_version.max(Some(m.version));
        cx.sink.emit(Event::MigrationStamped {
            schema: schema.to_string(),
            version: m.version,
        });
    }
    out.state = OutcomeState::Succeeded;
    Ok(())
}

/// Runs (or reverts) the pending migrations in their groups, retrying a
/// group that hit `lock_timeout`, and stopping between groups on a
/// shutdown. `remaining` is what stays applied, for a rollback's
/// `to_version`.
async fn run_pending(
    conn: &mut PgConnection,
    cx: &RunCtx,
    schema: &str,
    session: &str,
    pending: &[&Migration],
    mut remaining: Vec<i64>,
    out: &mut SchemaOutcome,
) -> Result<(), StepError> {
    let s = &cx.settings;
    let revert = cx.goal.is_revert();
    let is_no_tx = |m: &Migration| if revert { m.down_no_tx() } else { m.no_tx };
    for group in groups(pending, s.transaction_mode, is_no_tx) {
        if cx.shutdown.load(Ordering::SeqCst) {
            out.state = OutcomeState::Stopped;
            out.error = Some("interrupted before the next migration; rerun to finish".into());
            return Ok(());
        }
        let mut attempt = 0u32;
        let applied = loop {
            attempt += 1;
            out.attempts = attempt;
            let no_tx = is_no_tx(group[0]);
            let dir = if revert {
                Direction::Revert
            } else {
                Direction::Apply
            };
            let unit = Unit {
                schema,
                table: &s.history_table,
                session: Some(session),
                dir,
            };
            let r = if no_tx {
                run_no_tx(conn, &unit, group[0]).await
            } else {
                run_group(conn, &unit, &group).await
            };
            match r {
                Ok(a) => break a,
                Err(e) if db::is_lock_timeout(&e.source) && !no_tx && attempt <= s.lock_retries => {
                    let pause = s.retry_backoff * 2u32.saturating_pow(attempt - 1);
                    tracing::warn!(schema, attempt, "lock_timeout hit; retrying in {pause:?}");
                    tokio::time::sleep(pause).await;
                }
                Err(e) => return Err(e),
            }
        };
        for (v, d) in applied {
            let (schema, duration_ms) = (schema.to_string(), d.as_millis() as u64);
            if revert {
                out.reverted.push(v);
                remaining.retain(|r| *r != v);
                out.to_version = remaining.last().copied();
                cx.sink.emit(Event::MigrationReverted {
                    schema,
                    version: v,
                    duration_ms,
                });
            } else {
                out.applied.push(v);
                out.to_version = out.to_version.max(Some(v));
                cx.sink.emit(Event::MigrationApplied {
                    schema,
                    version: v,
                    duration_ms,
                });
            }
        }
    }
    out.state = OutcomeState::Succeeded;
    Ok(())
}

/// Splits pending migrations into units that each run in one go: a
/// `-- no-transaction` file alone; transactional files one by one, or
/// consecutive ones together with [`TransactionMode::PerSchema`].
/// `no_tx` says which file counts (the up file, or the down file when
/// reverting).
fn groups<'a>(
    pending: &[&'a Migration],
    mode: TransactionMode,
    no_tx: impl Fn(&Migration) -> bool,
) -> Vec<Vec<&'a Migration>> {
    let mut out: Vec<Vec<&Migration>> = Vec::new();
    for m in pending {
        let join = mode == TransactionMode::PerSchema
            && !no_tx(m)
            && out.last().is_some_and(|g| !no_tx(g[0]));
        if join {
            out.last_mut().expect("last group").push(m);
        } else {
            out.push(vec![m]);
        }
    }
    out
}

/// Which way a unit of migrations runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    /// The up SQL, then a history row.
    Apply,
    /// The `.down.sql`, then the history row goes.
    Revert,
}

impl Direction {
    fn sql(self, m: &Migration) -> &str {
        match self {
            Direction::Apply => &m.sql,
            Direction::Revert => m.down_sql.as_deref().unwrap_or_default(),
        }
    }
}

/// Where and how a unit of migrations runs.
#[derive(Clone, Copy)]
pub(super) struct Unit<'a> {
    /// The schema.
    pub(super) schema: &'a str,
    /// Its history table.
    pub(super) table: &'a str,
    /// The session set-up ([`db::session_sql`]) restored before each file
    /// and each history write; none where nothing else shares the session
    /// (the control schema, scratch schemas).
    pub(super) session: Option<&'a str>,
    /// Apply or revert.
    pub(super) dir: Direction,
}

impl Unit<'_> {
    async fn restore_session(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        match self.session {
            Some(sql) => db::execute_script(conn, sql).await,
            None => Ok(()),
        }
    }
}

/// Runs transactional migrations in one transaction, each with its history
/// change: applied, the SQL and its new row commit together, so a migration
/// never runs twice and a schema is never left half-migrated; reverted, the
/// `.down.sql` and the removal of its row commit together, so a migration
/// is either still applied or fully undone.
pub(super) async fn run_group(
    conn: &mut PgConnection,
    unit: &Unit<'_>,
    group: &[&Migration],
) -> Result<Vec<(i64, Duration)>, StepError> {
    let Unit {
        schema, table, dir, ..
    } = *unit;
    let mut tx = conn.begin().await.map_err(StepError::plain)?;
    if let Err(e) = unit.restore_session(&mut tx).await {
        let _ = tx.rollback().await;
        return Err(StepError::plain(e));
    }
    let mut done = Vec::with_capacity(group.len());
    for m in group {
        let t0 = Instant::now();
        let r = match db::execute_script(&mut tx, dir.sql(m)).await {
            // The file may have changed the session (`SET ROLE`, a plain
            // `SET search_path`, which outlives the commit): undone before
            // its history row and the next file.
            Ok(()) => match unit.restore_session(&mut tx).await {
                Err(e) => Err(e),
                Ok(()) => match dir {
                    Direction::Apply => {
                        let took = t0.elapsed().as_nanos() as i64;
                        db::insert_history(&mut tx, schema, table, m, true, took).await
                    }
                    Direction::Revert => {
                        db::delete_history(&mut tx, schema, table, m.version).await
                    }
                },
            },
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            let _ = tx.rollback().await;
            return Err(StepError {
                version: Some(m.version),
                statement: None,
                source: e,
            });
        }
        done.push((m.version, t0.elapsed()));
    }
    tx.commit().await.map_err(|e| StepError {
        version: group.last().map(|m| m.version),
        statement: None,
        source: e,
    })?;
    Ok(done)
}

/// Runs a `-- no-transaction` file statement by statement, with its history
/// row marked success = false first and settled only at the end: applied,
/// the row turns true; reverted, it goes. A failure or a kill leaves the
/// false row, which later runs refuse until `tenantmig repair` (after a
/// failed undo: clear when it was finished by hand, `--mark-applied` when
/// the migration was put back by hand).
async fn run_no_tx(
    conn: &mut PgConnection,
    unit: &Unit<'_>,
    m: &Migration,
) -> Result<Vec<(i64, Duration)>, StepError> {
    let Unit {
        schema, table, dir, ..
    } = *unit;
    let err = |statement: Option<String>| {
        move |source| StepError {
            version: Some(m.version),
            statement,
            source,
        }
    };
    unit.restore_session(conn).await.map_err(err(None))?;
    match dir {
        Direction::Apply => db::insert_history(conn, schema, table, m, false, -1).await,
        Direction::Revert => db::mark_failed(conn, schema, table, m.version).await,
    }
    .map_err(err(None))?;
    let t0 = Instant::now();
    for stmt in split_statements(dir.sql(m)) {
        db::execute_script(conn, &stmt.sql)
            .await
            .map_err(err(Some(format!("line {}: {}", stmt.line, stmt.sql))))?;
    }
    let took = t0.elapsed();
    unit.restore_session(conn).await.map_err(err(None))?;
    match dir {
        Direction::Apply => {
            db::mark_success(conn, schema, table, m.version, took.as_nanos() as i64).await
        }
        Direction::Revert => db::delete_history(conn, schema, table, m.version).await,
    }
    .map_err(err(None))?;
    Ok(vec![(m.version, took)])
}

/// Applies one migration with its history row, in a transaction or, for a
/// `-- no-transaction` file, statement by statement (used to build scratch
/// schemas, where no lock, retry or ledger is needed).
pub(crate) async fn apply_migration(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
    m: &Migration,
) -> Result<(), sqlx::Error> {
    let unit = Unit {
        schema,
        table,
        session: None,
        dir: Direction::Apply,
    };
    let r = if m.no_tx {
        run_no_tx(conn, &unit, m).await
    } else {
        run_group(conn, &unit, &[m]).await
    };
    r.map(|_| ()).map_err(|e| e.source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_transaction_files_split_groups_and_per_migration_mode_never_groups() {
        let a = Migration::new(1, "a", "select 1");
        let b = Migration::new(2, "b", "select 2");
        let c = Migration::new(3, "c", "-- no-transaction\nselect 3");
        let d = Migration::new(4, "d", "select 4");
        let p = vec![&a, &b, &c, &d];
        let g: Vec<Vec<i64>> = groups(&p, TransactionMode::PerSchema, |m| m.no_tx)
            .iter()
            .map(|g| g.iter().map(|m| m.version).collect())
            .collect();
        assert_eq!(g, vec![vec![1, 2], vec![3], vec![4]]);
        assert_eq!(
            groups(&p, TransactionMode::PerMigration, |m| m.no_tx).len(),
            4
        );
    }
}
