//! Every SQL statement about a version move's checkpoints, the schemas it
//! created and its cut-overs (tables of the control schema, see
//! `migrations/0003_version_moves.sql`).

use std::collections::HashMap;

use serde::Serialize;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Row};

use crate::copy::ddl::lit;
use crate::ident::qualified;

/// A step's checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct StepRow {
    /// The step.
    pub step: String,
    /// `running`, `done` or `failed`.
    pub state: String,
    /// Rows read (or expected).
    pub rows_read: Option<i64>,
    /// Rows written.
    pub rows_written: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A checkpoint to write.
#[derive(Debug, Clone)]
pub(crate) struct Checkpoint<'a> {
    pub version: &'a str,
    pub source: &'a str,
    pub step: &'a str,
    pub target: &'a str,
    pub state: &'a str,
    pub run_id: Option<i64>,
    pub rows_read: Option<i64>,
    pub rows_written: Option<i64>,
    pub error: Option<&'a str>,
    pub duration_ms: Option<i64>,
}

/// The checkpoints of a version, by source schema then step.
pub(crate) async fn steps(
    conn: &mut PgConnection,
    control: &str,
    version: &str,
) -> Result<HashMap<String, HashMap<String, StepRow>>, sqlx::Error> {
    // language=SQL
    let sql = format!(
        "SELECT source_schema, step, state, rows_read, rows_written, error FROM {} WHERE version = $1",
        qualified(control, "move_steps")
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(version)
        .fetch_all(&mut *conn)
        .await?;
    let mut out: HashMap<String, HashMap<String, StepRow>> = HashMap::new();
    for r in rows {
        let step: String = r.get(1);
        out.entry(r.get(0)).or_default().insert(
            step.clone(),
            StepRow {
                step,
                state: r.get(2),
                rows_read: r.get(3),
                rows_written: r.get(4),
                error: r.get(5),
            },
        );
    }
    Ok(out)
}

/// The statement that writes a checkpoint, as text: it also runs inside
/// other transactions (a copy's rename, a data move's).
pub(crate) fn checkpoint_sql(control: &str, c: &Checkpoint) -> String {
    let opt_i = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_else(|| "NULL".into());
    let opt_s = |v: Option<&str>| v.map(lit).unwrap_or_else(|| "NULL".into());
    // language=SQL
    format!(
        "INSERT INTO {t} AS m (version, source_schema, step, target_schema, state, run_id,
                rows_read, rows_written, error, finished_at, duration_ms)
         VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})
         ON CONFLICT (version, source_schema, step) DO UPDATE SET
            target_schema = EXCLUDED.target_schema, state = EXCLUDED.state,
            run_id = EXCLUDED.run_id, rows_read = EXCLUDED.rows_read,
            rows_written = EXCLUDED.rows_written, error = EXCLUDED.error,
            started_at = CASE WHEN EXCLUDED.state = 'running' THEN now() ELSE m.started_at END,
            finished_at = EXCLUDED.finished_at, duration_ms = EXCLUDED.duration_ms",
        lit(c.version),
        lit(c.source),
        lit(c.step),
        lit(c.target),
        lit(c.state),
        opt_i(c.run_id),
        opt_i(c.rows_read),
        opt_i(c.rows_written),
        opt_s(c.error),
        if c.state == "running" {
            "NULL"
        } else {
            "now()"
        },
        opt_i(c.duration_ms),
        t = qualified(control, "move_steps"),
    )
}

/// The statement that records a schema the move created.
pub(crate) fn created_sql(control: &str, version: &str, schema: &str, source: &str) -> String {
    // language=SQL
    format!(
        "INSERT INTO {} (version, schema_name, source_schema) VALUES ({}, {}, {})
         ON CONFLICT (version, schema_name) DO NOTHING",
        qualified(control, "move_schemas"),
        lit(version),
        lit(schema),
        lit(source)
    )
}

/// Writes a checkpoint on its own.
pub(crate) async fn checkpoint(
    conn: &mut PgConnection,
    control: &str,
    c: &Checkpoint<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(AssertSqlSafe(checkpoint_sql(control, c)))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Schemas the move of `version` created, with their sources, newest last.
pub(crate) async fn created(
    conn: &mut PgConnection,
    control: &str,
    version: &str,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    // language=SQL
    let sql = format!(
        "SELECT schema_name, source_schema FROM {} WHERE version = $1 ORDER BY created_at, schema_name",
        qualified(control, "move_schemas")
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(version)
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Forgets a move: its checkpoints and created schemas (after `--abort`).
pub(crate) async fn forget(
    conn: &mut PgConnection,
    control: &str,
    version: &str,
    schema: &str,
) -> Result<(), sqlx::Error> {
    for (table, column) in [
        ("move_steps", "target_schema"),
        ("move_schemas", "schema_name"),
    ] {
        // language=SQL
        let sql = format!(
            "DELETE FROM {} WHERE version = $1 AND {column} = $2",
            qualified(control, table)
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(version)
            .bind(schema)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// A version's cut-over, if any: its state and its renames.
pub(crate) async fn cutover(
    conn: &mut PgConnection,
    control: &str,
    version: &str,
) -> Result<Option<(String, Vec<(String, String)>)>, sqlx::Error> {
    // language=SQL
    let sql = format!(
        "SELECT state, renames FROM {} WHERE version = $1",
        qualified(control, "cutovers")
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(version)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|r| {
        let renames: serde_json::Value = r.get(1);
        let pairs = serde_json::from_value(renames).unwrap_or_default();
        (r.get(0), pairs)
    }))
}

/// The statement that records a cut-over (`live`) or its revert.
pub(crate) fn cutover_sql(
    control: &str,
    version: &str,
    state: &str,
    renames: &[(String, String)],
    run_id: Option<i64>,
) -> String {
    let json = serde_json::to_string(renames).expect("renames serialise");
    let run = run_id
        .map(|n| n.to_string())
        .unwrap_or_else(|| "NULL".into());
    // language=SQL
    format!(
        "INSERT INTO {t} AS c (version, state, renames, run_id) VALUES ({}, {}, {}::jsonb, {run})
         ON CONFLICT (version) DO UPDATE SET state = EXCLUDED.state,
            renames = CASE WHEN EXCLUDED.state = 'live' THEN EXCLUDED.renames ELSE c.renames END,
            cut_at = CASE WHEN EXCLUDED.state = 'live' THEN now() ELSE c.cut_at END,
            reverted_at = CASE WHEN EXCLUDED.state = 'reverted' THEN now() END,
            run_id = EXCLUDED.run_id",
        lit(version),
        lit(state),
        lit(&json),
        t = qualified(control, "cutovers"),
    )
}
