//! The final count of a `reshape` schema: which target table is counted
//! against which source tables (`count_plan`, pure), and the count itself
//! (`final_counts`), in one statement so one snapshot reads both schemas.
//!
//! A target table named by a data-move file's `-- copies: <source> ->
//! <target>` lines is counted against the sum of its declared source
//! tables; every other source table against the target table of the same
//! name. A consolidated tenant's target rows are those whose
//! `tenant_column` holds its id. A check that can compare no table while
//! the source has tables fails, unless the version sets `require_counts =
//! false`: a final check that compares nothing must not pass silently.

use std::collections::BTreeMap;

use sqlx::AssertSqlSafe;
use sqlx::postgres::PgConnection;

use super::files::Copies;
use super::steps::StepFail;
use super::{MoveCtx, SchemaMove, TableCount};
use crate::events::{Event, Phase};
use crate::ident::quote_ident;

/// One comparison of a final check: a target table against the source
/// tables its rows come from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Comparison {
    /// The table in the target.
    target: String,
    /// The tables of the source whose rows it must hold, together.
    sources: Vec<String>,
}

/// What a final check compares.
#[derive(Debug, Default, PartialEq, Eq)]
struct CountPlan {
    /// The comparisons, by target table.
    compared: Vec<Comparison>,
    /// Tables of the source that no comparison counts.
    uncompared: Vec<String>,
}

/// Decides what a final check compares, from the tables of both schemas
/// (`target`: name to whether it has the tenant column) and the `-- copies:`
/// pairs of the phase's data-move files (each with the file's path, for
/// messages). A declared target table is
/// counted against the sum of its declared sources (distinct tables); every
/// other source table against the target table of the same name, unless
/// that one is declared. With `tenant_column` (a consolidated tenant), only
/// target tables with that column can be counted; a declared one without it
/// is an error, as is a declared table that does not exist.
fn count_plan(
    source: &[String],
    target: &BTreeMap<String, bool>,
    declared: &[(String, Copies)],
    tenant_column: Option<&str>,
    (source_schema, target_schema): (&str, &str),
) -> Result<CountPlan, String> {
    let mut by_target: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (file, c) in declared {
        let said = format!("{file} declares `-- copies: {} -> {}`", c.source, c.target);
        if !source.contains(&c.source) {
            return Err(format!(
                "{said}, but {source_schema} has no table {}",
                c.source
            ));
        }
        match (target.get(&c.target), tenant_column) {
            (None, _) => {
                return Err(format!(
                    "{said}, but {target_schema} has no table {}",
                    c.target
                ));
            }
            (Some(false), Some(col)) => {
                return Err(format!(
                    "{said}, but {target_schema}.{} has no column {col}, so the tenant's rows in it cannot be counted",
                    c.target
                ));
            }
            _ => {}
        }
        let sources = by_target.entry(&c.target).or_default();
        if !sources.contains(&c.source) {
            sources.push(c.source.clone());
        }
    }
    let declared_source = |t: &String| declared.iter().any(|(_, c)| &c.source == t);
    let mut plan = CountPlan::default();
    for t in source {
        if declared_source(t) {
            continue;
        }
        match target.get(t) {
            Some(has)
                if (tenant_column.is_none() || *has) && !by_target.contains_key(t.as_str()) =>
            {
                plan.compared.push(Comparison {
                    target: t.clone(),
                    sources: vec![t.clone()],
                })
            }
            _ => plan.uncompared.push(t.clone()),
        }
    }
    plan.compared
        .extend(by_target.into_iter().map(|(target, sources)| Comparison {
            target: target.to_string(),
            sources,
        }));
    plan.compared.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(plan)
}

/// The final count of a `reshape` schema (see [`count_plan`]): every
/// comparison in one statement, so one snapshot reads the source and the
/// target, into `counts`. Fails the step on a difference, naming the source
/// and target tables and both counts, and when it can compare no table at
/// all while the source has tables (unless the version sets
/// `require_counts = false`, which warns instead).
pub(super) async fn final_counts(
    cx: &MoveCtx,
    conn: &mut PgConnection,
    m: &SchemaMove,
    counts: &mut Vec<TableCount>,
) -> Result<(), StepFail> {
    let v = &cx.loaded.v;
    let consolidated_tenant = m.phase == Phase::Tenant && v.consolidates();
    let declared: Vec<(String, Copies)> = match m.phase {
        Phase::Shared => &cx.loaded.shared_moves,
        Phase::Tenant => &cx.loaded.tenant_moves,
    }
    .iter()
    .flat_map(|d| {
        d.copies
            .iter()
            .map(|c| (d.path.display().to_string(), c.clone()))
    })
    .collect();
    let tenant_column = v.tenant_column.as_deref().filter(|_| consolidated_tenant);
    let (source_tables, target_tables) = schema_tables(cx, conn, m, tenant_column).await?;
    // A consolidated tenant's rows are told apart by its id.
    let filter = match (tenant_column, m.tenant_id.as_deref()) {
        (Some(col), Some(id)) => Some((col, id)),
        _ => None,
    };
    let unattributable = if !consolidated_tenant {
        None
    } else if tenant_column.is_none() {
        Some(format!(
            "its rows in {} cannot be told from other tenants': the version has no tenant_column (set it to the column that holds the tenant's id)",
            m.target
        ))
    } else if filter.is_none() {
        Some(format!(
            "its rows in {} cannot be told from other tenants': it has no id (set tenant_id_query to a query returning each tenant's schema name and id)",
            m.target
        ))
    } else {
        None
    };
    let plan = match &unattributable {
        Some(_) => CountPlan {
            compared: Vec::new(),
            uncompared: source_tables.clone(),
        },
        None => count_plan(
            &source_tables,
            &target_tables,
            &declared,
            tenant_column,
            (&m.source, &m.target),
        )
        .map_err(StepFail::new)?,
    };

    let with_column = tenant_column
        .map(|c| format!(" with a column {c}"))
        .unwrap_or_default();
    if plan.compared.is_empty() {
        return nothing_compared(cx, m, &source_tables, unattributable, &with_column);
    }
    if !plan.uncompared.is_empty() {
        warn_once(
            cx,
            format!("some {:?} {:?}", m.phase, plan.uncompared),
            format!(
                "{}: the final check does not count table(s) {}: {} has no table of the same name{with_column}, and no data-move file declares them (`-- copies: {} -> <target table>`); only the files' expect-rows count their rows (warned once per run for {} schemas with these tables)",
                m.source,
                list(&plan.uncompared),
                m.target,
                plan.uncompared[0],
                m.phase.as_str()
            ),
        );
    }

    *counts = count_rows(conn, m, &plan, filter).await?;
    let bad: Vec<String> = counts
        .iter()
        .filter(|c| c.source_rows != c.target_rows)
        .map(|c| {
            let sources = if c.source_tables.is_empty() {
                std::slice::from_ref(&c.table)
            } else {
                &c.source_tables[..]
            };
            format!(
                "source table{} {} {} {} rows but target table {}.{} has {}{}",
                if sources.len() > 1 { "s" } else { "" },
                sources
                    .iter()
                    .map(|t| format!("{}.{t}", m.source))
                    .collect::<Vec<_>>()
                    .join(" + "),
                if sources.len() > 1 { "have" } else { "has" },
                c.source_rows,
                m.target,
                c.table,
                c.target_rows,
                filter
                    .map(|(col, id)| format!(" where {col} = {id}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    if !bad.is_empty() {
        return Err(StepFail::new(format!(
            "row counts differ: {}",
            bad.join("; ")
        )));
    }
    Ok(())
}

/// The tables of the source and of the target (name to whether it has the
/// tenant column), the history table left out.
async fn schema_tables(
    cx: &MoveCtx,
    conn: &mut PgConnection,
    m: &SchemaMove,
    tenant_column: Option<&str>,
) -> Result<(Vec<String>, BTreeMap<String, bool>), StepFail> {
    // language=SQL
    let tables: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT n.nspname::text, c.relname::text, EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a \
             WHERE a.attrelid = c.oid AND a.attname = $4 AND a.attnum > 0 AND NOT a.attisdropped) \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname IN ($1, $2) AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
           AND c.relname <> $3 \
         ORDER BY 2",
    )
    .bind(&m.source)
    .bind(&m.target)
    .bind(&cx.run.settings.history_table)
    .bind(tenant_column.unwrap_or(""))
    .fetch_all(&mut *conn)
    .await
    .map_err(StepFail::db)?;
    let source_tables: Vec<String> = tables
        .iter()
        .filter(|(n, _, _)| *n == m.source)
        .map(|(_, t, _)| t.clone())
        .collect();
    let target_tables: BTreeMap<String, bool> = tables
        .iter()
        .filter(|(n, _, _)| *n == m.target)
        .map(|(_, t, has)| (t.clone(), *has))
        .collect();
    Ok((source_tables, target_tables))
}

/// The end of a final check that compares no table: passes when the source
/// has none, else fails (or, with `require_counts = false`, warns once)
/// saying why (`unattributable`: a consolidated tenant's rows cannot be
/// told apart).
fn nothing_compared(
    cx: &MoveCtx,
    m: &SchemaMove,
    source_tables: &[String],
    unattributable: Option<String>,
    with_column: &str,
) -> Result<(), StepFail> {
    let v = &cx.loaded.v;
    if source_tables.is_empty() {
        return Ok(());
    }
    let unattributable_reason = unattributable.is_some();
    let why = unattributable.unwrap_or_else(|| {
        format!(
            "none of the {} table(s) of {} ({}) has a table of the same name in {}{with_column}, and no data-move file declares what it copies",
            source_tables.len(),
            m.source,
            list(source_tables),
            m.target
        )
    });
    if v.requires_counts() {
        let declare = if unattributable_reason {
            "Or".to_string()
        } else {
            format!(
                "Declare each table a data-move file copies in its leading comments, `-- copies: <source table> -> <target table>` (e.g. `-- copies: {} -> <its table in {}>`), or",
                source_tables[0], m.target
            )
        };
        return Err(StepFail::new(format!(
            "the final check could compare no table: {why}. {declare} set require_counts = false in [versions.{}] to let a schema whose check compares no table pass with a warning",
            cx.version
        )));
    }
    warn_once(
        cx,
        format!(
            "none {:?} {} {:?}",
            m.phase, unattributable_reason, source_tables
        ),
        format!(
            "{}: the final check compared no table ({why}); it passes because [versions.{}] sets require_counts = false (warned once per run for {} schemas like this one)",
            m.source,
            cx.version,
            m.phase.as_str()
        ),
    );
    Ok(())
}

/// Up to ten names, joined.
fn list(t: &[String]) -> String {
    let mut s = t.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
    if t.len() > 10 {
        s.push_str(", ...");
    }
    s
}

/// Counts the compared tables in one statement (a consolidated tenant's
/// target rows by `filter`, its column and id), sorted by target table.
async fn count_rows(
    conn: &mut PgConnection,
    m: &SchemaMove,
    plan: &CountPlan,
    filter: Option<(&str, &str)>,
) -> Result<Vec<TableCount>, StepFail> {
    let lit = crate::copy::ddl::lit;
    let cond = filter
        .map(|(col, id)| format!(" WHERE {} = {}", quote_ident(col), lit(id)))
        .unwrap_or_default();
    let parts: Vec<String> = plan
        .compared
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let sources = c
                .sources
                .iter()
                .map(|t| {
                    format!(
                        "(SELECT count(*) FROM {}.{})",
                        quote_ident(&m.source),
                        quote_ident(t)
                    )
                })
                .collect::<Vec<_>>()
                .join(" + ");
            format!(
                "SELECT {i}::int4, ({sources})::int8, (SELECT count(*) FROM {}.{}{cond})",
                quote_ident(&m.target),
                quote_ident(&c.target)
            )
        })
        .collect();
    // language=SQL
    let rows: Vec<(i32, i64, i64)> = sqlx::query_as(AssertSqlSafe(parts.join(" UNION ALL ")))
        .fetch_all(&mut *conn)
        .await
        .map_err(StepFail::db)?;
    let mut counts: Vec<TableCount> = rows
        .into_iter()
        .map(|(i, source_rows, target_rows)| {
            let c = &plan.compared[i as usize];
            TableCount {
                table: c.target.clone(),
                source_tables: if c.sources == [c.target.clone()] {
                    Vec::new()
                } else {
                    c.sources.clone()
                },
                source_rows,
                target_rows,
            }
        })
        .collect();
    counts.sort_by(|a, b| a.table.cmp(&b.table));
    Ok(counts)
}

/// Emits `message` as a warning unless a warning with the same `key` was
/// already given in this run.
fn warn_once(cx: &MoveCtx, key: String, message: String) {
    if cx.warned.lock().expect("warned lock").insert(key) {
        cx.run.sink.emit(Event::Warning { message });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn target(v: &[(&str, bool)]) -> BTreeMap<String, bool> {
        v.iter().map(|(t, has)| (t.to_string(), *has)).collect()
    }

    fn copies(source: &str, target: &str) -> (String, Copies) {
        (
            "0001_w.sql".into(),
            Copies {
                source: source.into(),
                target: target.into(),
            },
        )
    }

    fn cmp(target: &str, sources: &[&str]) -> Comparison {
        Comparison {
            target: target.into(),
            sources: names(sources),
        }
    }

    const SCHEMAS: (&str, &str) = ("t1", "app_v2");

    #[test]
    fn tables_of_the_same_name_are_compared_and_a_renamed_one_is_not() {
        let plan = count_plan(
            &names(&["tags", "workflow_workflow"]),
            &target(&[("tags", true), ("workflow", true)]),
            &[],
            Some("tenant_id"),
            SCHEMAS,
        )
        .unwrap();
        assert_eq!(plan.compared, vec![cmp("tags", &["tags"])]);
        assert_eq!(plan.uncompared, names(&["workflow_workflow"]));
    }

    #[test]
    fn a_declared_copy_counts_the_renamed_table() {
        let plan = count_plan(
            &names(&["workflow", "workflow_workflow"]),
            &target(&[("workflow", true)]),
            &[copies("workflow_workflow", "workflow")],
            Some("tenant_id"),
            SCHEMAS,
        )
        .unwrap();
        // The declaration replaces the same-name pairing of `workflow`.
        assert_eq!(plan.compared, vec![cmp("workflow", &["workflow_workflow"])]);
        assert_eq!(plan.uncompared, names(&["workflow"]));
    }

    #[test]
    fn several_sources_of_one_target_are_summed_once_each() {
        let plan = count_plan(
            &names(&["a", "b"]),
            &target(&[("ab", false), ("a", false)]),
            &[copies("a", "ab"), copies("b", "ab"), copies("a", "ab")],
            None,
            SCHEMAS,
        )
        .unwrap();
        assert_eq!(plan.compared, vec![cmp("ab", &["a", "b"])]);
        assert!(plan.uncompared.is_empty());
    }

    #[test]
    fn a_table_without_the_tenant_column_is_compared_only_when_not_consolidated() {
        let (s, t) = (names(&["notes"]), target(&[("notes", false)]));
        let plan = count_plan(&s, &t, &[], Some("tenant_id"), SCHEMAS).unwrap();
        assert!(plan.compared.is_empty());
        let plan = count_plan(&s, &t, &[], None, SCHEMAS).unwrap();
        assert_eq!(plan.compared, vec![cmp("notes", &["notes"])]);
    }

    #[test]
    fn a_declaration_naming_a_missing_or_unattributable_table_is_an_error() {
        let s = names(&["a"]);
        let err = count_plan(
            &s,
            &target(&[("b", true)]),
            &[copies("x", "b")],
            None,
            SCHEMAS,
        )
        .unwrap_err();
        assert!(
            err.contains("0001_w.sql declares `-- copies: x -> b`, but t1 has no table x"),
            "{err}"
        );
        let err = count_plan(
            &s,
            &target(&[("b", true)]),
            &[copies("a", "c")],
            None,
            SCHEMAS,
        )
        .unwrap_err();
        assert!(err.contains("app_v2 has no table c"), "{err}");
        let err = count_plan(
            &s,
            &target(&[("b", false)]),
            &[copies("a", "b")],
            Some("tenant_id"),
            SCHEMAS,
        )
        .unwrap_err();
        assert!(err.contains("app_v2.b has no column tenant_id"), "{err}");
    }
}
