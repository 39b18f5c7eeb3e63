//! Finding the tenant list: a configured query, a name pattern over
//! `pg_namespace`, the registry, or names given on the command line.

use serde::Serialize;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Row};

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::ident::{InvalidName, qualified, validate_schema_name};

/// Where a tenant list came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TenantSource {
    /// `tenants.query` from the configuration.
    Query {
        /// The SQL.
        sql: String,
    },
    /// `tenants.pattern`, a `LIKE` pattern over schema names.
    Pattern {
        /// The pattern.
        pattern: String,
    },
    /// The registry table in the control schema.
    Registry {
        /// The qualified table.
        table: String,
    },
    /// `--tenant` names on the command line.
    CommandLine,
}

impl TenantSource {
    /// A phrase for people ("tenants.query: SELECT …").
    pub fn describe(&self) -> String {
        match self {
            TenantSource::Query { sql } => format!("tenants.query: {sql}"),
            TenantSource::Pattern { pattern } => {
                format!("tenants.pattern: schemas LIKE '{pattern}'")
            }
            TenantSource::Registry { table } => format!("the registry table {table}"),
            TenantSource::CommandLine => "--tenant names on the command line".into(),
        }
    }
}

/// The resolved tenant list.
#[derive(Debug, Clone, Serialize)]
pub struct TenantList {
    /// Where it came from.
    pub source: TenantSource,
    /// Valid tenant schema names, in the source's order, without duplicates.
    pub names: Vec<String>,
    /// Names the source gave that are not valid schema names.
    pub invalid: Vec<InvalidName>,
    /// Names left out because they are the shared, control or a system
    /// schema ([`reserved_reason`]); [`resolve`] logs a warning for each.
    pub reserved: Vec<String>,
    /// Names left out by `--exclude`.
    pub excluded: Vec<String>,
}

/// Resolves the tenant list. `explicit` (`--tenant`) replaces the configured
/// source; `exclude` (`--exclude`) removes names from the result.
pub async fn resolve(
    conn: &mut PgConnection,
    settings: &Settings,
    explicit: &[String],
    exclude: &[String],
) -> Result<TenantList> {
    let (source, raw): (TenantSource, Vec<String>) = if !explicit.is_empty() {
        (TenantSource::CommandLine, explicit.to_vec())
    } else if let Some(sql) = &settings.tenants.query {
        let trimmed = sql.trim().trim_end_matches(';');
        // The query's first column, as text, whatever its type.
        // language=SQL
        let wrapped = format!("SELECT q.tenant_schema::text FROM ({trimmed}) AS q(tenant_schema)");
        let rows = sqlx::raw_sql(AssertSqlSafe(wrapped))
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| Error::Config {
                message: format!("tenants.query failed: {}; the query must return tenant schema names in its first column", crate::error::describe_db_error(&e)),
            })?;
        let mut names = Vec::with_capacity(rows.len());
        for r in rows {
            let name: Option<String> = r
                .try_get(0)
                .map_err(Error::db("reading tenants.query rows"))?;
            if let Some(n) = name {
                names.push(n);
            }
        }
        (TenantSource::Query { sql: sql.clone() }, names)
    } else if let Some(pattern) = &settings.tenants.pattern {
        // language=SQL
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT nspname::text FROM pg_catalog.pg_namespace \
             WHERE nspname LIKE $1 AND nspname !~ '^pg_' AND nspname <> 'information_schema' ORDER BY 1",
        )
        .bind(pattern)
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::db("listing schemas for tenants.pattern"))?;
        (
            TenantSource::Pattern {
                pattern: pattern.clone(),
            },
            names,
        )
    } else {
        let table = qualified(&settings.control_schema, "tenants");
        // language=SQL
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(&table)
            .fetch_one(&mut *conn)
            .await
            .map_err(Error::db("looking for the tenant registry"))?;
        let names = if exists {
            // language=SQL
            sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT schema_name FROM {table} ORDER BY schema_name"
            )))
            .fetch_all(&mut *conn)
            .await
            .map_err(Error::db("reading the tenant registry"))?
        } else {
            Vec::new()
        };
        (TenantSource::Registry { table }, names)
    };
    let list = sort_out(source, raw, settings, exclude);
    // Said, not silently dropped: `--tenant public` is usually a mistake.
    for name in &list.reserved {
        if let Some(why) = reserved_reason(name, settings) {
            tracing::warn!(
                "left schema {name} out of the tenants ({}): {why}",
                list.source.describe()
            );
        }
    }
    Ok(list)
}

/// Why a schema can never be a tenant, or `None` when it can be one: the
/// shared schema, the control schema and PostgreSQL's own schemas
/// (`information_schema`, `pg_*`).
pub fn reserved_reason(name: &str, settings: &Settings) -> Option<&'static str> {
    if name == settings.shared_schema {
        Some(
            "it is the shared schema, where the shared migrations run once (select it with --shared-only)",
        )
    } else if name == settings.control_schema {
        Some("it is tenantmig's control schema (the run ledger and the tenant registry)")
    } else if name == "information_schema" || name.starts_with("pg_") {
        Some("it is one of PostgreSQL's own schemas")
    } else {
        None
    }
}

/// Splits raw names into valid, invalid, reserved and excluded ones.
pub fn sort_out(
    source: TenantSource,
    raw: Vec<String>,
    settings: &Settings,
    exclude: &[String],
) -> TenantList {
    let mut seen = std::collections::HashSet::new();
    let mut list = TenantList {
        source,
        names: Vec::new(),
        invalid: Vec::new(),
        reserved: Vec::new(),
        excluded: Vec::new(),
    };
    for name in raw {
        if !seen.insert(name.clone()) {
            continue;
        }
        if reserved_reason(&name, settings).is_some() {
            list.reserved.push(name);
            continue;
        }
        if let Err(e) = validate_schema_name(&name) {
            list.invalid.push(e);
            continue;
        }
        if exclude.contains(&name) {
            list.excluded.push(name);
            continue;
        }
        list.names.push(name);
    }
    list
}

/// Does the configured tenant source (not `--tenant` names) still list
/// `schema`? Asked, under the schema's lock, before a run creates a schema
/// that was missing when it planned: a tenant removed from the source in
/// the meantime is not created.
pub async fn still_listed(
    conn: &mut PgConnection,
    settings: &Settings,
    schema: &str,
) -> std::result::Result<bool, sqlx::Error> {
    if let Some(sql) = &settings.tenants.query {
        let trimmed = sql.trim().trim_end_matches(';');
        // language=SQL
        let wrapped = format!(
            "SELECT EXISTS (SELECT 1 FROM ({trimmed}) AS q(tenant_schema) WHERE q.tenant_schema::text = $1)"
        );
        sqlx::query_scalar(AssertSqlSafe(wrapped))
            .persistent(false)
            .bind(schema)
            .fetch_one(&mut *conn)
            .await
    } else if let Some(pattern) = &settings.tenants.pattern {
        // language=SQL
        sqlx::query_scalar("SELECT $1 LIKE $2")
            .bind(schema)
            .bind(pattern)
            .fetch_one(&mut *conn)
            .await
    } else {
        let table = qualified(&settings.control_schema, "tenants");
        // language=SQL
        sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT to_regclass($2) IS NOT NULL AND EXISTS (SELECT 1 FROM {table} WHERE schema_name = $1)"
        )))
        .bind(schema)
        .bind(&table)
        .fetch_one(&mut *conn)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_schema_and_bad_names_never_reach_the_tenant_list() {
        let s = Settings::default();
        let raw = [
            "public",
            "t1",
            "x\"; drop schema public cascade; --",
            "t2",
            "t1",
            "tenantmig",
            "t3",
            "information_schema",
            "pg_toast",
        ]
        .map(String::from)
        .to_vec();
        let l = sort_out(TenantSource::CommandLine, raw, &s, &["t3".to_string()]);
        assert_eq!(l.names, vec!["t1", "t2"]);
        assert_eq!(
            l.reserved,
            vec!["public", "tenantmig", "information_schema", "pg_toast"]
        );
        assert!(
            reserved_reason("public", &s)
                .unwrap()
                .contains("shared schema")
        );
        assert!(
            reserved_reason("pg_toast", &s)
                .unwrap()
                .contains("PostgreSQL")
        );
        assert_eq!(reserved_reason("t1", &s), None);
        assert_eq!(l.excluded, vec!["t3"]);
        assert_eq!(l.invalid.len(), 1);
        assert!(l.invalid[0].to_string().contains("drop schema"));
    }
}
