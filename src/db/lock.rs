//! Advisory locks of schemas (the lock protocol: exclusive for a change,
//! shared for a reader, polled up to `lock_wait`), naming who holds them,
//! and the lock-related settings and messages.

use std::time::{Duration, Instant};

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Executor, Row};

use crate::ident::qualified;

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
