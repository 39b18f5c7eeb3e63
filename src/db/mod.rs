//! Every SQL statement tenantmig sends about schemas, history tables and
//! locks. Identifiers are always quoted with [`quote_ident`]; values are
//! always bound parameters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::TryStreamExt;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Connection, Executor, Row};

use crate::ident::{qualified, quote_ident};
use crate::migration::{Migration, MigrationSet};
use crate::state::{AppliedRow, Checker, SchemaStatus};

mod lock;

pub(crate) use lock::LOCK_KEY;
pub use lock::{
    LockFailure, LockHolder, LockMode, acquire, is_lock_timeout, lock_holders, lock_many_shared,
    lock_with_deadline, relation_lock_holders, relation_lock_holders_in, run_application_name,
    set_lock_timeout, try_lock, unlock, unlock_many_shared,
};

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
