//! `verify`: drift detection. Every tenant schema's real structure is read
//! from the catalogs in a few bulk queries, fingerprinted, and compared with
//! a reference: a named tenant, or a scratch schema built from the tenant
//! migrations and dropped afterwards.
//!
//! The catalog rows come back as `(schema, kind, name, definition)`, with
//! every definition printed by PostgreSQL itself (`format_type`,
//! `pg_get_indexdef`, `pg_get_constraintdef`, …) and the schema's own name
//! taken out, so two tenants built by the same migrations give the same
//! rows. Fingerprinting and comparing thousands of schemas run in parallel
//! (rayon) once the rows are fetched; only one chunk of schemas is held at a
//! time, and a difference list is computed once per distinct fingerprint.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use futures::TryStreamExt;
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Row};

use crate::db::{self, LockMode};
use crate::engine::{Engine, Selection, apply_migration};
use crate::error::{Error, Result};
use crate::ident::{quote_ident, validate_schema_name};
use crate::tenants;

/// Schemas whose catalog rows are fetched and compared at once.
const CHUNK: usize = 500;

/// The prefix of scratch reference schemas (a leading underscore keeps them
/// out of the usual tenant patterns).
const SCRATCH_PREFIX: &str = "_tenantmig_verify_";

/// The comment that marks a scratch schema as tenantmig's own.
const SCRATCH_MARKER: &str = "tenantmig verify scratch schema; dropped when verify ends";

/// What `verify` compares against.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Which tenants (the shared schema is not part of `verify`).
    pub selection: Selection,
    /// Compare with this tenant instead of a scratch schema built from the
    /// tenant migrations.
    pub reference: Option<String>,
}

/// One object of a schema: its kind and name, and its definition as
/// PostgreSQL prints it.
type Structure = BTreeMap<(String, String), String>;

/// Tenants that share one structure.
#[derive(Debug, Clone, Serialize)]
pub struct DriftGroup {
    /// The structure's fingerprint (SHA-256 of its catalog rows, hex).
    pub fingerprint: String,
    /// True when it is the reference's structure.
    pub matches_reference: bool,
    /// The tenants with this structure, in source order.
    pub tenants: Vec<String>,
    /// How it differs from the reference ("index documents_created_at_idx
    /// missing"); empty when it matches.
    pub differences: Vec<String>,
}

/// What `verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The reference, in words ("tenant t_0001", "scratch schema built from
    /// 9 tenant migrations").
    pub reference: String,
    /// The reference's fingerprint.
    pub reference_fingerprint: String,
    /// Objects in the reference.
    pub reference_objects: usize,
    /// Tenants compared.
    pub tenants_checked: usize,
    /// Tenants of the source whose schema does not exist.
    pub missing: Vec<String>,
    /// Names the tenant source gave that are not valid schema names.
    pub invalid: Vec<String>,
    /// Tenants grouped by structure, the reference's group first, then the
    /// largest.
    pub groups: Vec<DriftGroup>,
    /// Wall time.
    pub duration_ms: u64,
}

impl VerifyReport {
    /// True when some tenant differs from the reference, or is missing.
    pub fn has_drift(&self) -> bool {
        !self.missing.is_empty()
            || !self.invalid.is_empty()
            || self.groups.iter().any(|g| !g.matches_reference)
    }

    /// Tenants that differ from the reference.
    pub fn drifted(&self) -> usize {
        self.groups
            .iter()
            .filter(|g| !g.matches_reference)
            .map(|g| g.tenants.len())
            .sum()
    }
}

impl Engine {
    /// Compares every selected tenant's structure with the reference.
    pub async fn verify(&self, opts: &VerifyOptions) -> Result<VerifyReport> {
        let started = Instant::now();
        let s = &self.settings;
        let mut conn = self.connection().await?;
        let list = tenants::resolve(
            &mut conn,
            s,
            &opts.selection.tenant_names,
            &opts.selection.exclude,
        )
        .await?;
        let exists = db::existing_schemas(&mut conn, &list.names, &s.history_table)
            .await
            .map_err(Error::db("listing tenant schemas"))?;
        let (present, missing): (Vec<String>, Vec<String>) = list
            .names
            .iter()
            .cloned()
            .partition(|n| exists.contains_key(n));
        // Definitions print other schemas' objects qualified, the shared
        // schema's as the application sees them.
        db::set_search_path(&mut conn, &s.shared_schema)
            .await
            .map_err(Error::db("setting the search path"))?;

        let (reference_name, reference) = self.reference(&mut conn, opts).await?;
        let reference_fingerprint = fingerprint(&reference);

        let groups = self
            .drift_groups(&mut conn, &present, &reference, &reference_fingerprint)
            .await?;
        let _ = conn.close().await;
        Ok(VerifyReport {
            reference: reference_name,
            reference_fingerprint,
            reference_objects: reference.len(),
            tenants_checked: present.len(),
            missing,
            invalid: list.invalid.iter().map(|i| i.name.clone()).collect(),
            groups,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// The reference, in words, and its structure: the tenant named by
    /// `--reference`, or a scratch schema built from the tenant migrations.
    async fn reference(
        &self,
        conn: &mut PgConnection,
        opts: &VerifyOptions,
    ) -> Result<(String, Structure)> {
        Ok(match &opts.reference {
            Some(name) => {
                validate_schema_name(name).map_err(|e| Error::Usage {
                    message: format!("--reference: {e}"),
                })?;
                if !db::schema_exists(&mut *conn, name)
                    .await
                    .map_err(Error::db("looking up the reference schema"))?
                {
                    return Err(Error::Usage {
                        message: format!(
                            "--reference {name}: no such schema; name an existing tenant, or leave --reference out to compare with the tenant migrations"
                        ),
                    });
                }
                let st = self
                    .read_locked(&mut *conn, std::slice::from_ref(name))
                    .await?;
                (
                    format!("tenant {name}"),
                    st.into_values().next().unwrap_or_default(),
                )
            }
            None => {
                let reference = self.scratch_reference(&mut *conn).await?;
                (
                    format!(
                        "a scratch schema built from the tenant migrations ({})",
                        self.tenant_set.len()
                    ),
                    reference,
                )
            }
        })
    }

    /// The `present` tenants grouped by structure, read a chunk at a time,
    /// each group's tenants in source order, the reference's group first,
    /// then the largest.
    async fn drift_groups(
        &self,
        conn: &mut PgConnection,
        present: &[String],
        reference: &Structure,
        reference_fingerprint: &str,
    ) -> Result<Vec<DriftGroup>> {
        let mut groups: HashMap<String, DriftGroup> = HashMap::new();
        let mut order: HashMap<String, usize> = HashMap::new();
        for (n, name) in present.iter().enumerate() {
            order.insert(name.clone(), n);
        }
        for chunk in present.chunks(CHUNK) {
            let structures = self.read_locked(&mut *conn, chunk).await?;
            // Fingerprints in parallel; a difference list once per new one.
            let prints: Vec<(String, String)> = structures
                .par_iter()
                .map(|(schema, st)| (schema.clone(), fingerprint(st)))
                .collect();
            let mut fresh: Vec<(String, &Structure)> = Vec::new();
            for (schema, print) in &prints {
                if !groups.contains_key(print) && !fresh.iter().any(|(p, _)| p == print) {
                    fresh.push((print.clone(), &structures[schema]));
                }
            }
            let diffs: Vec<(String, Vec<String>)> = fresh
                .par_iter()
                .map(|(print, st)| (print.clone(), differences(st, reference)))
                .collect();
            for (print, differences) in diffs {
                groups.insert(
                    print.clone(),
                    DriftGroup {
                        matches_reference: print == reference_fingerprint,
                        fingerprint: print,
                        tenants: Vec::new(),
                        differences,
                    },
                );
            }
            for (schema, print) in prints {
                groups
                    .get_mut(&print)
                    .expect("a group per fingerprint")
                    .tenants
                    .push(schema);
            }
        }
        let mut groups: Vec<DriftGroup> = groups.into_values().collect();
        for g in &mut groups {
            g.tenants.sort_by_key(|t| order.get(t).copied());
        }
        groups.sort_by(|a, b| {
            (
                !a.matches_reference,
                std::cmp::Reverse(a.tenants.len()),
                &a.tenants,
            )
                .cmp(&(
                    !b.matches_reference,
                    std::cmp::Reverse(b.tenants.len()),
                    &b.tenants,
                ))
        });
        Ok(groups)
    }

    /// Reads the structures of `names` under their shared advisory locks
    /// (the lock protocol: a reader never overlaps a change, so a tenant in
    /// the middle of a migration is read before or after it, not during).
    async fn read_locked(
        &self,
        conn: &mut PgConnection,
        names: &[String],
    ) -> Result<HashMap<String, Structure>> {
        let s = &self.settings;
        let busy = db::lock_many_shared(conn, names, s.lock_wait)
            .await
            .map_err(Error::db("locking the tenant schemas to read"))?;
        let result = if let Some(name) = busy.first() {
            let holders = db::lock_holders(conn, name, Some(&s.control_schema))
                .await
                .unwrap_or_default();
            Err(Error::Usage {
                message: format!(
                    "schema {name}{} stayed locked for {} (lock_wait) by {}; nothing was compared: rerun when it has finished",
                    if busy.len() > 1 {
                        format!(" (and {} more)", busy.len() - 1)
                    } else {
                        String::new()
                    },
                    humantime::format_duration(s.lock_wait),
                    holders
                        .iter()
                        .map(db::LockHolder::describe)
                        .collect::<Vec<_>>()
                        .join("; and by ")
                ),
            })
        } else {
            read_structures(conn, names).await
        };
        let got: Vec<String> = names
            .iter()
            .filter(|n| !busy.contains(n))
            .cloned()
            .collect();
        let _ = db::unlock_many_shared(conn, &got).await;
        result
    }

    /// Builds a scratch schema from the tenant migrations, reads its
    /// structure and drops it again, whatever happened in between.
    async fn scratch_reference(&self, conn: &mut PgConnection) -> Result<Structure> {
        let s = &self.settings;
        drop_leftover_scratches(conn).await?;
        let name = format!("{SCRATCH_PREFIX}{:08x}", rand_suffix());
        let mut build = self.connection().await?;
        // The lock tells a later verify that this scratch schema is in use.
        db::lock_with_deadline(&mut build, &name, LockMode::Exclusive, s.lock_wait)
            .await
            .map_err(Error::db("locking the scratch schema"))?;
        let built = async {
            let at = |v: Option<i64>| move |e: sqlx::Error| (v, e);
            db::create_schema(&mut build, &name)
                .await
                .map_err(at(None))?;
            // language=SQL
            let comment = format!(
                "COMMENT ON SCHEMA {} IS '{SCRATCH_MARKER}'",
                quote_ident(&name)
            );
            db::execute_script(&mut build, &comment)
                .await
                .map_err(at(None))?;
            db::ensure_history_table(&mut build, &name, &s.history_table)
                .await
                .map_err(at(None))?;
            db::set_session(
                &mut build,
                &name,
                &s.shared_schema,
                s.lock_timeout,
                s.statement_timeout,
            )
            .await
            .map_err(at(None))?;
            for m in &self.tenant_set.migrations {
                apply_migration(&mut build, &name, &s.history_table, m)
                    .await
                    .map_err(at(Some(m.version)))?;
            }
            Ok(())
        }
        .await;
        let built = match built {
            Ok(()) => Ok(()),
            // Creating the scratch schema itself was refused: the role's
            // privileges, not the migrations.
            Err((None, e))
                if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42501") =>
            {
                Err(Error::Usage {
                    message: format!(
                        "verify could not create its scratch schema {name} ({}): this role needs CREATE on the database to build the reference from the tenant migrations; grant it, or compare with a tenant instead (--reference NAME)",
                        crate::engine::describe_db_error(&e)
                    ),
                })
            }
            Err((version, e)) => Err(Error::Usage {
                message: format!(
                    "the tenant migrations do not build a scratch schema{}: {}; fix the migration, or compare with a tenant (--reference NAME)",
                    version
                        .map(|v| format!(" (at {})", self.tenant_set.fmt_version(v)))
                        .unwrap_or_default(),
                    crate::engine::describe_db_error(&e)
                ),
            }),
        };
        let structure = match built {
            Ok(()) => read_structures(conn, std::slice::from_ref(&name))
                .await
                .map(|mut m| m.remove(&name).unwrap_or_default()),
            Err(e) => Err(e),
        };
        let _ = db::reset_session(&mut build).await;
        let dropped = db::drop_schema_cascade(&mut build, &name).await;
        let _ = db::unlock(&mut build, &name, LockMode::Exclusive).await;
        let _ = build.close().await;
        dropped.map_err(Error::db(format!("dropping the scratch schema {name}")))?;
        structure
    }
}

/// Drops scratch schemas a killed verify left behind: only those that carry
/// tenantmig's marker and whose lock nobody holds.
async fn drop_leftover_scratches(conn: &mut PgConnection) -> Result<()> {
    // language=SQL
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_catalog.pg_namespace
         WHERE starts_with(nspname, $1)
           AND obj_description(oid, 'pg_namespace') = $2",
    )
    .bind(SCRATCH_PREFIX)
    .bind(SCRATCH_MARKER)
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::db("looking for leftover scratch schemas"))?;
    for name in names {
        if db::try_lock(conn, &name, LockMode::Exclusive)
            .await
            .map_err(Error::db("locking a leftover scratch schema"))?
        {
            let r = db::drop_schema_cascade(conn, &name).await;
            let _ = db::unlock(conn, &name, LockMode::Exclusive).await;
            r.map_err(Error::db(format!(
                "dropping the leftover scratch schema {name}"
            )))?;
        }
    }
    Ok(())
}

fn rand_suffix() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    t ^ std::process::id().rotate_left(16)
}

/// Every object of the given schemas, in one query: relations, columns,
/// constraints, indexes, functions and triggers, each with PostgreSQL's own
/// definition, the schema's name taken out.
async fn read_structures(
    conn: &mut PgConnection,
    schemas: &[String],
) -> Result<HashMap<String, Structure>> {
    // language=SQL
    const SQL: &str = r#"
WITH ns AS (
    SELECT oid, nspname FROM pg_catalog.pg_namespace WHERE nspname = ANY($1)
)
SELECT ns.nspname::text,
       CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
                      WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table'
                      ELSE 'sequence' END,
       c.relname::text,
       CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid)
            WHEN c.relkind = 'p' THEN 'partitioned by ' || pg_catalog.pg_get_partkeydef(c.oid)
            ELSE '' END
  FROM pg_catalog.pg_class c JOIN ns ON c.relnamespace = ns.oid
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
UNION ALL
SELECT ns.nspname::text, 'column', c.relname || '.' || a.attname,
       pg_catalog.format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || CASE a.attidentity WHEN 'a' THEN ' generated always as identity'
                             WHEN 'd' THEN ' generated by default as identity' ELSE '' END
       || CASE WHEN a.attgenerated = 's' THEN ' generated always as ' ELSE '' END
       || coalesce(CASE WHEN a.attgenerated = 's' THEN '' ELSE ' default ' END
                   || pg_catalog.pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN ns ON c.relnamespace = ns.oid
  LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
UNION ALL
SELECT ns.nspname::text, 'constraint', c.relname || '.' || co.conname,
       pg_catalog.pg_get_constraintdef(co.oid)
  FROM pg_catalog.pg_constraint co
  JOIN pg_catalog.pg_class c ON c.oid = co.conrelid
  JOIN ns ON co.connamespace = ns.oid
UNION ALL
SELECT ns.nspname::text, 'index', i.relname::text, pg_catalog.pg_get_indexdef(i.oid)
       || CASE WHEN NOT x.indisvalid THEN ' (INVALID)' ELSE '' END
  FROM pg_catalog.pg_index x
  JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
  JOIN ns ON i.relnamespace = ns.oid
UNION ALL
SELECT ns.nspname::text, 'function',
       p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')',
       coalesce(pg_catalog.pg_get_function_result(p.oid), p.prokind::text) || ' language ' || l.lanname
       || ' ' || p.provolatile::text || ': ' || p.prosrc
  FROM pg_catalog.pg_proc p
  JOIN ns ON p.pronamespace = ns.oid
  JOIN pg_catalog.pg_language l ON l.oid = p.prolang
UNION ALL
SELECT ns.nspname::text, 'trigger', c.relname || '.' || t.tgname, pg_catalog.pg_get_triggerdef(t.oid)
  FROM pg_catalog.pg_trigger t
  JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
  JOIN ns ON c.relnamespace = ns.oid
 WHERE NOT t.tgisinternal
"#;
    // How PostgreSQL prints each name (quoted only when it must be), to
    // take it out of the definitions.
    // language=SQL
    let printed: HashMap<String, String> =
        sqlx::query_as("SELECT n, quote_ident(n) FROM unnest($1::text[]) AS n")
            .bind(schemas)
            .fetch_all(&mut *conn)
            .await
            .map_err(Error::db("quoting schema names"))?
            .into_iter()
            .collect();
    let mut out: HashMap<String, Structure> = schemas
        .iter()
        .map(|s| (s.clone(), Structure::new()))
        .collect();
    let mut rows = sqlx::query(SQL).bind(schemas).fetch(&mut *conn);
    while let Some(row) = rows
        .try_next()
        .await
        .map_err(Error::db("reading tenant structures from the catalogs"))?
    {
        let schema: String = row.get(0);
        let kind: String = row.get(1);
        let name: String = row.get(2);
        let def: Option<String> = row.get(3);
        if let Some(st) = out.get_mut(&schema) {
            let def = unqualify(&def.unwrap_or_default(), &printed[&schema]);
            st.insert((kind, name), def);
        }
    }
    Ok(out)
}

/// Takes a schema's own name, as PostgreSQL prints it, out of a definition
/// (`t_01.items` → `items`), so the same object prints the same in every
/// tenant.
fn unqualify(def: &str, printed: &str) -> String {
    def.trim().replace(&format!("{printed}."), "")
}

/// SHA-256 over a structure's sorted rows.
fn fingerprint(st: &Structure) -> String {
    let mut h = Sha256::new();
    for ((kind, name), def) in st {
        for part in [kind, name, def] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
    }
    hex::encode(&h.finalize()[..8])
}

/// What differs between a schema and the reference, in words.
fn differences(st: &Structure, reference: &Structure) -> Vec<String> {
    let mut out = Vec::new();
    for ((kind, name), expected) in reference {
        match st.get(&(kind.clone(), name.clone())) {
            None => out.push(format!("{kind} {name} missing")),
            Some(def) if def != expected => out.push(describe_change(kind, name, def, expected)),
            Some(_) => {}
        }
    }
    for (kind, name) in st.keys() {
        if !reference.contains_key(&(kind.clone(), name.clone())) {
            out.push(format!("{kind} {name} not in the reference"));
        }
    }
    out
}

fn describe_change(kind: &str, name: &str, def: &str, expected: &str) -> String {
    const LONG: usize = 120;
    let short = |s: &str| {
        if s.chars().count() > LONG {
            format!("{}…", s.chars().take(LONG).collect::<String>())
        } else {
            s.to_string()
        }
    };
    match kind {
        "column" => format!("{kind} {name} {def}, expected {expected}"),
        "function" | "view" | "materialized view" => {
            format!("{kind} {name} has a different definition")
        }
        _ => format!(
            "{kind} {name} is `{}`, expected `{}`",
            short(def),
            short(expected)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(rows: &[(&str, &str, &str)]) -> Structure {
        rows.iter()
            .map(|(k, n, d)| ((k.to_string(), n.to_string()), d.to_string()))
            .collect()
    }

    #[test]
    fn a_schema_name_is_taken_out_of_definitions_quoted_or_not() {
        assert_eq!(
            unqualify("CREATE INDEX i ON t_01.items USING btree (name)", "t_01"),
            "CREATE INDEX i ON items USING btree (name)"
        );
        assert_eq!(
            unqualify(
                "nextval('\"Acme Co\".items_id_seq'::regclass)",
                "\"Acme Co\""
            ),
            "nextval('items_id_seq'::regclass)"
        );
    }

    #[test]
    fn differences_name_missing_extra_and_changed_objects() {
        let reference = st(&[
            ("table", "executions", ""),
            ("column", "executions.status", "character varying(32)"),
            ("index", "documents_created_at_idx", "CREATE INDEX …"),
        ]);
        let tenant = st(&[
            ("table", "executions", ""),
            ("column", "executions.status", "text"),
            ("table", "scratch", ""),
        ]);
        assert_eq!(
            differences(&tenant, &reference),
            vec![
                "column executions.status text, expected character varying(32)",
                "index documents_created_at_idx missing",
                "table scratch not in the reference",
            ]
        );
        assert!(differences(&reference, &reference).is_empty());
    }

    #[test]
    fn equal_structures_have_equal_fingerprints_and_any_change_shows() {
        let a = st(&[("table", "t", ""), ("column", "t.a", "integer")]);
        let mut b = a.clone();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        b.insert(("column".into(), "t.a".into()), "bigint".into());
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }
}
