//! Every SQL statement tenantmig sends about schemas, history tables and
//! locks. Identifiers are always quoted with [`quote_ident`]; values are
//! always bound parameters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Connection, Executor, Row};

use crate::ident::{qualified, quote_ident};
use crate::migration::{Migration, MigrationSet};
use crate::state::{AppliedRow, Checker, SchemaStatus};

/// How many history tables one catalog query reads at once. Each table read
/// takes a lock-table slot for the length of the query, so this stays well
/// under `max_locks_per_transaction * max_connections`; and planning a
/// `UNION ALL` grows faster than its branch count (measured: 100 tables plan
/// in about 11 ms, 400 in 60-90 ms), so small chunks are cheaper overall.
pub const HISTORY_CHUNK: usize = 100;

/// Whether the server knows `client_connection_check_interval` (PostgreSQL
/// 14 and later). Learned from the first connection that is refused for it.
static CHECK_INTERVAL_KNOWN: AtomicBool = AtomicBool::new(true);

/// Opens one connection, with the session defaults every tenantmig session
/// has (they survive `RESET ALL`, since they come in the start-up packet):
///
/// - `client_connection_check_interval = 1s`: when tenantmig dies (SIGKILL,
///   a lost network), the server notices within about a second and ends the
///   dead client's statement (a long `ALTER`, a `CREATE INDEX` of a copy),
///   releasing its locks, instead of running it to the end.
/// - `standard_conforming_strings = on`: string literals tenantmig renders
///   (comments of copied objects, `{tenant}` in data-move files) mean the
///   same whatever the server's or database's default is.
///
/// A server older than 14 refuses the first setting at start-up; the
/// connection is then opened again without it (and never asked for again).
pub async fn connect(opts: &PgConnectOptions) -> Result<PgConnection, sqlx::Error> {
    if CHECK_INTERVAL_KNOWN.load(Ordering::Relaxed) {
        let with_check = opts.clone().options([
            ("standard_conforming_strings", "on"),
            ("client_connection_check_interval", "1000"),
        ]);
        match PgConnection::connect_with(&with_check).await {
            Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42704") => {
                CHECK_INTERVAL_KNOWN.store(false, Ordering::Relaxed);
            }
            other => return other,
        }
    }
    PgConnection::connect_with(
        &opts
            .clone()
            .options([("standard_conforming_strings", "on")]),
    )
    .await
}

/// Schemas of `names` that exist, and whether each has a history table.
pub async fn existing_schemas(
    conn: &mut PgConnection,
    names: &[String],
    history_table: &str,
) -> Result<HashMap<String, bool>, sqlx::Error> {
    // language=SQL
    let rows = sqlx::query(
        "SELECT n.nspname::text, EXISTS (SELECT 1 FROM pg_catalog.pg_class c \
             WHERE c.relnamespace = n.oid AND c.relname = $2 AND c.relkind IN ('r', 'p')) \
         FROM pg_catalog.pg_namespace n WHERE n.nspname = ANY($1)",
    )
    .bind(names)
    .bind(history_table)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.get::<String, _>(0), r.get::<bool, _>(1)))
        .collect())
}

/// Reads the history of many schemas in a few queries and checks each
/// against `set`. Schemas without a history table get an empty history.
///
/// The rows of one chunk of tables come back in one `UNION ALL` query and are
/// folded into a [`Checker`] per schema as they stream in, so memory holds one
/// chunk's checkers, not every row.
pub async fn read_statuses(
    conn: &mut PgConnection,
    schemas: &[(String, bool)],
    history_table: &str,
    set: &MigrationSet,
) -> Result<Vec<SchemaStatus>, sqlx::Error> {
    let mut out = Vec::with_capacity(schemas.len());
    for chunk in schemas.chunks(HISTORY_CHUNK) {
        let mut checkers: Vec<Checker<'_>> = chunk.iter().map(|_| Checker::new(set)).collect();
        let mut sql = String::new();
        for (i, (schema, has_history)) in chunk.iter().enumerate() {
            if !has_history {
                continue;
            }
            if !sql.is_empty() {
                sql.push_str(" UNION ALL ");
            }
            // language=SQL
            sql.push_str(&format!(
                "SELECT {i}::int4, version, checksum, success, execution_time = {REVERTING} FROM {}",
                qualified(schema, history_table)
            ));
        }
        if !sql.is_empty() {
            let mut rows = sqlx::raw_sql(AssertSqlSafe(sql)).fetch(&mut *conn);
            while let Some(row) = rows.try_next().await? {
                let i: i32 = row.try_get(0)?;
                let applied = AppliedRow {
                    version: row.try_get(1)?,
                    checksum: row.try_get(2)?,
                    success: row.try_get(3)?,
                    reverting: row.try_get(4)?,
                };
                checkers[i as usize].push(&applied);
            }
        }
        for (c, (schema, _)) in checkers.into_iter().zip(chunk) {
            out.push(c.finish(schema.clone()));
        }
    }
    Ok(out)
}

/// Reads and checks one schema's history (used under its lock, just before
/// migrating, since the bulk read may be stale by then).
pub async fn read_status(
    conn: &mut PgConnection,
    schema: &str,
    history_table: &str,
    set: &MigrationSet,
) -> Result<SchemaStatus, sqlx::Error> {
    // language=SQL
    let sql = format!(
        "SELECT version, checksum, success, execution_time = {REVERTING} FROM {}",
        qualified(schema, history_table)
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .persistent(false)
        .fetch_all(&mut *conn)
        .await?;
    let mut c = Checker::new(set);
    for r in rows {
        c.push(&AppliedRow {
            version: r.try_get(0)?,
            checksum: r.try_get(1)?,
            success: r.try_get(2)?,
            reverting: r.try_get(3)?,
        });
    }
    Ok(c.finish(schema))
}

/// The `execution_time` of a history row whose `-- no-transaction` down
/// file is running, or was cut short (an up file's row has -1 meanwhile).
pub const REVERTING: i64 = -2;

/// Does the schema exist?
pub async fn schema_exists(conn: &mut PgConnection, schema: &str) -> Result<bool, sqlx::Error> {
    // language=SQL
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)")
        .bind(schema)
        .fetch_one(&mut *conn)
        .await
}

/// `CREATE SCHEMA IF NOT EXISTS`.
pub async fn create_schema(conn: &mut PgConnection, schema: &str) -> Result<(), sqlx::Error> {
    // language=SQL
    let sql = format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema));
    conn.execute(AssertSqlSafe(sql)).await?;
    Ok(())
}

/// Creates the history table in `schema` when missing, with sqlx's layout.
pub async fn ensure_history_table(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> Result<(), sqlx::Error> {
    // language=SQL
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {} (
            version BIGINT PRIMARY KEY,
            description TEXT NOT NULL,
            installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
            success BOOLEAN NOT NULL,
            checksum BYTEA NOT NULL,
            execution_time BIGINT NOT NULL
        )",
        qualified(schema, table)
    );
    conn.execute(AssertSqlSafe(sql)).await?;
    Ok(())
}

/// The advisory lock key of a schema. PostgreSQL scopes advisory locks to
/// the current database, so (database, schema) is covered by hashing the
/// schema name alone; a 64-bit hash makes two schemas sharing a key (and so
/// waiting on each other) vanishingly unlikely.
// language=SQL
pub(crate) const LOCK_KEY: &str = "hashtextextended('tenantmig:' || $1, 0)";

/// How a command holds a schema's advisory lock (the lock protocol, see
/// docs/src/architecture.md): a command that changes a schema holds it
/// exclusively; one that only reads it as a source (a copy, a snapshot, the
/// clone step of a move, verify) holds it shared, so that readers run
/// together but never overlap a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// `pg_advisory_lock`: the schema is being changed.
    Exclusive,
    /// `pg_advisory_lock_shared`: the schema is being read as a source.
    Shared,
}

impl LockMode {
    fn suffix(self) -> &'static str {
        match self {
            LockMode::Exclusive => "",
            LockMode::Shared => "_shared",
        }
    }
}

/// Tries once to take the schema's advisory lock (session level).
pub async fn try_lock(
    conn: &mut PgConnection,
    schema: &str,
    mode: LockMode,
) -> Result<bool, sqlx::Error> {
    // language=SQL
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT pg_try_advisory_lock{}({LOCK_KEY})",
        mode.suffix()
    )))
    .bind(schema)
    .fetch_one(&mut *conn)
    .await
}

/// Releases the schema's advisory lock (taken in `mode`).
pub async fn unlock(
    conn: &mut PgConnection,
    schema: &str,
    mode: LockMode,
) -> Result<bool, sqlx::Error> {
    // language=SQL
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT pg_advisory_unlock{}({LOCK_KEY})",
        mode.suffix()
    )))
    .bind(schema)
    .fetch_one(&mut *conn)
    .await
}

/// A backend holding a schema's advisory lock, for messages.
#[derive(Debug, Clone)]
pub struct LockHolder {
    /// Its backend pid.
    pub pid: i32,
    /// Exclusive or shared.
    pub mode: LockMode,
    /// Its `application_name` (tenantmig's runs say `tenantmig run N`).
    pub application_name: String,
    /// `active`, `idle`, `idle in transaction`, …
    pub state: Option<String>,
    /// When its current (or last) statement started.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// The start of that statement's text.
    pub query: Option<String>,
    /// The run, when the holder is a tenantmig run: its id and what the
    /// ledger says of it (`running`, `interrupted`, …).
    pub run: Option<(i64, String)>,
}

impl LockHolder {
    /// One line: who, doing what since when, and how to end it.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "backend pid {} ({} lock, application_name {:?}",
            self.pid,
            if self.mode == LockMode::Shared {
                "shared"
            } else {
                "exclusive"
            },
            self.application_name
        );
        if let Some(st) = &self.state {
            s.push_str(&format!(", state {st}"));
        }
        if let Some(t) = self.since {
            s.push_str(&format!(" since {}", t.format("%Y-%m-%d %H:%M:%S UTC")));
        }
        if let Some(q) = self.query.as_deref().filter(|q| !q.is_empty()) {
            s.push_str(&format!(", query: {}", crate::mask::mask_secrets(q)));
        }
        if let Some((id, outcome)) = &self.run {
            s.push_str(&format!("; the ledger records run {id} as {outcome}"));
        }
        s.push_str(&format!(
            "); if that process is gone, end it with SELECT pg_terminate_backend({})",
            self.pid
        ));
        s
    }
}

/// The backends holding the schema's advisory lock (other than this one).
/// `control` is the control schema, to name the run of a tenantmig holder.
pub async fn lock_holders(
    conn: &mut PgConnection,
    schema: &str,
    control: Option<&str>,
) -> Result<Vec<LockHolder>, sqlx::Error> {
    // An int8 advisory key is stored as classid = high 32 bits, objid = low.
    // language=SQL
    let rows = sqlx::query(AssertSqlSafe(format!(
        "WITH k AS (SELECT {LOCK_KEY} AS key) \
         SELECT l.pid, l.mode = 'ShareLock', coalesce(a.application_name, ''), a.state, \
                a.query_start, left(regexp_replace(a.query, '\\s+', ' ', 'g'), 120) \
         FROM pg_catalog.pg_locks l CROSS JOIN k \
         LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
           AND l.pid <> pg_catalog.pg_backend_pid() \
           AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) \
           AND l.classid::int8 = ((k.key >> 32) & 4294967295) AND l.objid::int8 = (k.key & 4294967295) \
         ORDER BY l.pid"
    )))
    .bind(schema)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let application_name: String = r.try_get(2)?;
        out.push(LockHolder {
            pid: r.try_get(0)?,
            mode: if r.try_get::<bool, _>(1)? {
                LockMode::Shared
            } else {
                LockMode::Exclusive
            },
            run: None,
            state: r.try_get(3)?,
            since: r.try_get(4)?,
            query: r.try_get(5)?,
            application_name,
        });
    }
    if let Some(control) = control {
        for h in &mut out {
            let Some(id) = run_of_application(&h.application_name) else {
                continue;
            };
            // language=SQL
            let sql = format!(
                "SELECT coalesce(outcome, 'running') FROM {} WHERE id = $1",
                qualified(control, "runs")
            );
            // No ledger (yet): the holder is named without its run.
            let found: Option<String> = sqlx::query_scalar(AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(&mut *conn)
                .await
                .unwrap_or_default();
            h.run = found.map(|o| (id, o));
        }
    }
    Ok(out)
}

/// The application name of a run's connections, and back.
pub fn run_application_name(run_id: i64) -> String {
    format!("tenantmig run {run_id}")
}

fn run_of_application(name: &str) -> Option<i64> {
    name.strip_prefix("tenantmig run ")?.parse().ok()
}

/// Polls for the schema's lock until `wait` has passed. Polling (rather than
/// `pg_advisory_lock`) keeps a stuck holder from hanging a worker forever.
pub async fn lock_with_deadline(
    conn: &mut PgConnection,
    schema: &str,
    mode: LockMode,
    wait: Duration,
) -> Result<bool, sqlx::Error> {
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(20);
    loop {
        if try_lock(conn, schema, mode).await? {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// Takes the shared advisory lock of every schema in `names` (a reader of
/// many schemas at once, such as verify), polling up to `wait` for those a
/// change holds. Returns the names still held by someone else at the
/// deadline; the locks it got stay held (release them all with
/// [`unlock_many_shared`]).
pub async fn lock_many_shared(
    conn: &mut PgConnection,
    names: &[String],
    wait: Duration,
) -> Result<Vec<String>, sqlx::Error> {
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(20);
    let mut busy = names.to_vec();
    loop {
        // language=SQL
        busy = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT n FROM unnest($1::text[]) AS n WHERE NOT pg_try_advisory_lock_shared({})",
            LOCK_KEY.replace("$1", "n")
        )))
        .bind(&busy)
        .fetch_all(&mut *conn)
        .await?;
        let now = Instant::now();
        if busy.is_empty() || now >= deadline {
            return Ok(busy);
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// Releases the shared locks of `names` (those [`lock_many_shared`] got:
/// a name not held makes PostgreSQL warn).
pub async fn unlock_many_shared(
    conn: &mut PgConnection,
    names: &[String],
) -> Result<(), sqlx::Error> {
    // language=SQL
    sqlx::query(AssertSqlSafe(format!(
        "SELECT pg_advisory_unlock_shared({}) FROM unnest($1::text[]) AS n",
        LOCK_KEY.replace("$1", "n")
    )))
    .bind(names)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Why a schema's lock could not be had.
#[derive(Debug)]
pub enum LockFailure {
    /// Still held by another backend after `lock_wait`; the message names
    /// the holders and how to end them.
    Busy(String),
    /// The database failed while asking (the connection may be unusable).
    Db(sqlx::Error),
}

/// Takes the schema's advisory lock in `mode`, waiting up to `wait`; when
/// it stays held, says by whom (see [`LockHolder::describe`]).
pub async fn acquire(
    conn: &mut PgConnection,
    schema: &str,
    mode: LockMode,
    wait: Duration,
    control: Option<&str>,
) -> Result<(), LockFailure> {
    if lock_with_deadline(conn, schema, mode, wait)
        .await
        .map_err(LockFailure::Db)?
    {
        return Ok(());
    }
    let holders = lock_holders(conn, schema, control)
        .await
        .unwrap_or_default();
    let who = if holders.is_empty() {
        "another session (it has let go since)".to_string()
    } else {
        holders
            .iter()
            .map(LockHolder::describe)
            .collect::<Vec<_>>()
            .join("; and by ")
    };
    Err(LockFailure::Busy(format!(
        "schema {schema} stayed locked for {} (lock_wait) by {who}; rerun when it has finished",
        humantime::format_duration(wait)
    )))
}

/// Is this PostgreSQL's lock-timeout error (55P03)?
pub fn is_lock_timeout(e: &sqlx::Error) -> bool {
    e.as_database_error().and_then(|d| d.code()).as_deref() == Some("55P03")
}

/// Sets the session's `lock_timeout` (at least 1 ms: 0 would mean forever).
pub async fn set_lock_timeout(conn: &mut PgConnection, wait: Duration) -> Result<(), sqlx::Error> {
    // language=SQL
    let sql = format!("SET lock_timeout = {}", wait.as_millis().max(1));
    conn.execute(sqlx::raw_sql(AssertSqlSafe(sql))).await?;
    Ok(())
}

/// Who holds locks on the tables of `schema` (and so made a statement of
/// ours wait): `" (held by backend pid 1234 (application_name …, state …
/// since …, query: …); end it with SELECT pg_terminate_backend(1234))"`, or
/// an empty string when nobody does any more. For messages only: errors
/// are swallowed. A connection in a failed transaction is rolled back
/// first.
pub async fn relation_lock_holders(conn: &mut PgConnection, schema: &str) -> String {
    relation_lock_holders_in(conn, &[schema]).await
}

/// As [`relation_lock_holders`], over the tables of several schemas (a
/// tenant's migration may wait on a table of the shared schema).
pub async fn relation_lock_holders_in(conn: &mut PgConnection, schemas: &[&str]) -> String {
    let _ = conn.execute("ROLLBACK").await;
    // language=SQL
    let rows = sqlx::query(
        "SELECT DISTINCT a.pid, coalesce(a.application_name, ''), a.state, a.query_start, \
                left(regexp_replace(a.query, '\\s+', ' ', 'g'), 120) \
         FROM pg_catalog.pg_locks l \
         JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid \
         JOIN pg_catalog.pg_class c ON c.oid = l.relation \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE l.locktype = 'relation' AND l.granted AND n.nspname = ANY($1) \
           AND l.pid <> pg_catalog.pg_backend_pid() \
         ORDER BY 1 LIMIT 5",
    )
    .bind(schemas)
    .fetch_all(&mut *conn)
    .await;
    let Ok(rows) = rows else {
        return String::new();
    };
    let mut who = Vec::new();
    for r in rows {
        let pid: i32 = r.try_get(0).unwrap_or_default();
        let mut d = format!(
            "backend pid {pid} (application_name {:?}",
            r.try_get::<String, _>(1).unwrap_or_default()
        );
        if let Ok(Some(st)) = r.try_get::<Option<String>, _>(2) {
            d.push_str(&format!(", state {st}"));
        }
        if let Ok(Some(t)) = r.try_get::<Option<chrono::DateTime<chrono::Utc>>, _>(3) {
            d.push_str(&format!(" since {}", t.format("%Y-%m-%d %H:%M:%S UTC")));
        }
        if let Ok(Some(q)) = r.try_get::<Option<String>, _>(4) {
            d.push_str(&format!(", query: {}", crate::mask::mask_secrets(&q)));
        }
        d.push_str(&format!(
            "); end it with SELECT pg_terminate_backend({pid})"
        ));
        who.push(d);
    }
    if who.is_empty() {
        String::new()
    } else {
        format!(", held by {}", who.join("; and by "))
    }
}

/// The SQL that sets a session up for migrating `schema`: first whatever
/// an earlier migration may have changed is undone (role, session
/// authorization, every setting), then the search path (the schema, then
/// the shared one), lock and statement timeouts. Sent before each migration
/// file and before each history write, so that a file that runs `SET ROLE`
/// or `SET search_path` affects neither the next file nor tenantmig's own
/// statements. It runs inside a transaction as well as outside one.
pub fn session_sql(
    schema: &str,
    shared: &str,
    lock_timeout: Duration,
    statement_timeout: Duration,
) -> String {
    let path = if schema == shared {
        quote_ident(schema)
    } else {
        format!("{}, {}", quote_ident(schema), quote_ident(shared))
    };
    // `RESET ALL` leaves the role and the session authorization alone.
    // language=SQL
    format!(
        "{RESET_SESSION}; SET search_path TO {path}; SET lock_timeout = {}; SET statement_timeout = {}",
        lock_timeout.as_millis(),
        statement_timeout.as_millis()
    )
}

/// Sets the session up for migrating `schema` (see [`session_sql`]).
pub async fn set_session(
    conn: &mut PgConnection,
    schema: &str,
    shared: &str,
    lock_timeout: Duration,
    statement_timeout: Duration,
) -> Result<(), sqlx::Error> {
    let sql = session_sql(schema, shared, lock_timeout, statement_timeout);
    conn.execute(sqlx::raw_sql(AssertSqlSafe(sql))).await?;
    Ok(())
}

/// Sets the session's search path to one schema.
pub async fn set_search_path(conn: &mut PgConnection, schema: &str) -> Result<(), sqlx::Error> {
    // language=SQL
    let sql = format!("SET search_path TO {}", quote_ident(schema));
    conn.execute(sqlx::raw_sql(AssertSqlSafe(sql))).await?;
    Ok(())
}

/// Drops a schema and everything in it, if it exists.
pub async fn drop_schema_cascade(conn: &mut PgConnection, schema: &str) -> Result<(), sqlx::Error> {
    // language=SQL
    let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", quote_ident(schema));
    conn.execute(sqlx::raw_sql(AssertSqlSafe(sql))).await?;
    Ok(())
}

/// Undoes what a migration may have changed in its session's identity and
/// settings. `RESET ALL` alone leaves `SET ROLE` and `SET SESSION
/// AUTHORIZATION` in place; resetting the session authorization is allowed
/// to anyone (it goes back to the user who logged in).
// language=SQL
const RESET_SESSION: &str = "RESET SESSION AUTHORIZATION; RESET ROLE; RESET ALL";

/// Undoes whatever a migration may have changed in the session's role,
/// session authorization and settings. Session-level advisory locks stay
/// (the caller still holds the schema's), so does the rest of the session's
/// state: [`discard_session`] clears that once no lock is held.
pub async fn reset_session(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    conn.execute(sqlx::raw_sql(RESET_SESSION)).await?;
    Ok(())
}

/// True when the session runs as the user that logged in (checked after
/// [`reset_session`]; a session that still runs as someone else is
/// dropped rather than trusted with the next schema).
pub async fn runs_as_session_user(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    // language=SQL
    sqlx::query_scalar("SELECT current_user = session_user")
        .fetch_one(&mut *conn)
        .await
}

/// Clears everything else a migration can leave in a session: temporary
/// tables, prepared statements, cursors, `LISTEN`s, cached plans and
/// sequence state, and every session-level advisory lock (`DISCARD ALL`;
/// so only once the schema's own lock is released). sqlx's cache of
/// prepared statements is emptied first, since `DISCARD ALL` deallocates
/// them on the server. Fails inside a transaction block (a migration that
/// left one open): the caller then drops the connection.
pub async fn discard_session(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    conn.clear_cached_statements().await?;
    // language=SQL
    conn.execute(sqlx::raw_sql("DISCARD ALL")).await?;
    Ok(())
}

/// Records an applied migration in the history table (inside the caller's
/// transaction, for transactional migrations).
pub async fn insert_history(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
    m: &Migration,
    success: bool,
    execution_time: i64,
) -> Result<(), sqlx::Error> {
    // language=SQL
    let sql = format!(
        "INSERT INTO {} (version, description, success, checksum, execution_time) VALUES ($1, $2, $3, $4, $5)",
        qualified(schema, table)
    );
    sqlx::query(AssertSqlSafe(sql))
        .persistent(false)
        .bind(m.version)
        .bind(&m.description)
        .bind(success)
        .bind(&m.checksum)
        .bind(execution_time)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Marks a `-- no-transaction` migration's row as succeeded.
pub async fn mark_success(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
    version: i64,
    execution_time: i64,
) -> Result<(), sqlx::Error> {
    // language=SQL
    let sql = format!(
        "UPDATE {} SET success = TRUE, execution_time = $2 WHERE version = $1",
        qualified(schema, table)
    );
    sqlx::query(AssertSqlSafe(sql))
        .persistent(false)
        .bind(version)
        .bind(execution_time)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Removes a version's history row (its migration was reverted).
pub async fn delete_history(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
    version: i64,
) -> Result<(), sqlx::Error> {
    // language=SQL
    let sql = format!(
        "DELETE FROM {} WHERE version = $1",
        qualified(schema, table)
    );
    sqlx::query(AssertSqlSafe(sql))
        .persistent(false)
        .bind(version)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Marks a version's row as not succeeded, before a `-- no-transaction`
/// down file runs: a failure or a kill then leaves the schema refused until
/// a repair. `execution_time = -2` ([`REVERTING`]) says that it was a
/// rollback that did not finish (see [`AppliedRow::reverting`]); a
/// `-- no-transaction` up file's row says -1 while it runs.
pub async fn mark_failed(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
    version: i64,
) -> Result<(), sqlx::Error> {
    // language=SQL
    let sql = format!(
        "UPDATE {} SET success = FALSE, execution_time = {REVERTING} WHERE version = $1",
        qualified(schema, table)
    );
    sqlx::query(AssertSqlSafe(sql))
        .persistent(false)
        .bind(version)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Deletes the failed (success = false) rows of a schema's history.
pub async fn delete_failed_rows(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
    versions: &[i64],
) -> Result<u64, sqlx::Error> {
    // language=SQL
    let sql = format!(
        "DELETE FROM {} WHERE success = FALSE AND version = ANY($1)",
        qualified(schema, table)
    );
    let done = sqlx::query(AssertSqlSafe(sql))
        .persistent(false)
        .bind(versions)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

/// Replaces a version's recorded checksum, if it is still `old`.
pub async fn set_checksum(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
    version: i64,
    old: &[u8],
    new: &[u8],
) -> Result<u64, sqlx::Error> {
    // language=SQL
    let sql = format!(
        "UPDATE {} SET checksum = $3 WHERE version = $1 AND checksum = $2",
        qualified(schema, table)
    );
    let done = sqlx::query(AssertSqlSafe(sql))
        .persistent(false)
        .bind(version)
        .bind(old)
        .bind(new)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

/// Sets failed rows to success (after the migration was completed by hand).
pub async fn mark_failed_rows_applied(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
    versions: &[i64],
) -> Result<u64, sqlx::Error> {
    // language=SQL
    let sql = format!(
        "UPDATE {} SET success = TRUE, execution_time = greatest(execution_time, 0) \
         WHERE success = FALSE AND version = ANY($1)",
        qualified(schema, table)
    );
    let done = sqlx::query(AssertSqlSafe(sql))
        .persistent(false)
        .bind(versions)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

/// Connections still free for this session's database and role (the
/// smallest of the server's, the database's and the role's headroom), and
/// the server's `max_connections`.
pub async fn free_connections(conn: &mut PgConnection) -> Result<(i64, i64), sqlx::Error> {
    // language=SQL
    let row = sqlx::query(
        "WITH a AS (SELECT datid, usesysid FROM pg_catalog.pg_stat_activity WHERE backend_type = 'client backend')
         SELECT least(
                    current_setting('max_connections')::int8
                        - current_setting('superuser_reserved_connections')::int8
                        - (SELECT count(*) FROM a),
                    CASE WHEN d.datconnlimit >= 0
                         THEN d.datconnlimit - (SELECT count(*) FROM a WHERE a.datid = d.oid) END,
                    CASE WHEN r.rolconnlimit >= 0
                         THEN r.rolconnlimit - (SELECT count(*) FROM a WHERE a.usesysid = r.oid) END),
                current_setting('max_connections')::int8
         FROM pg_catalog.pg_database d, pg_catalog.pg_roles r
         WHERE d.datname = current_database() AND r.rolname = current_user",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// Runs a statement of a migration (simple query protocol, so a file may
/// hold many statements and no statement is prepared).
pub async fn execute_script(conn: &mut PgConnection, sql: &str) -> Result<(), sqlx::Error> {
    conn.execute(sqlx::raw_sql(AssertSqlSafe(sql.to_string())))
        .await?;
    Ok(())
}
