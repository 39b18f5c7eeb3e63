//! Data-move files of a `reshape` version move: reading them, their
//! `-- expect-rows:` and `-- copies:` headers, and their placeholders.
//!
//! A data-move file is named like a migration (`0001_workflows.sql`) and
//! runs in one transaction, once per source schema. Before it runs, these
//! placeholders are replaced:
//!
//! | placeholder | replaced by |
//! | --- | --- |
//! | `{source_schema}` | the schema rows are read from, as a quoted identifier |
//! | `{target_schema}` | the schema rows are written to, as a quoted identifier |
//! | `{source_shared}` | the current shared schema, as a quoted identifier |
//! | `{target_shared}` | the version's shared schema, as a quoted identifier |
//! | `{tenant}` | the tenant's schema name, as a string literal (tenant files only) |
//! | `{tenant_id}` | the tenant's id from `tenant_id_query`, as a string literal (tenant files only) |
//!
//! The first lines of a file must include `-- expect-rows: <query>`, a query
//! returning the number of rows the file must write (the rows it reads); the
//! move compares it with the rows the file's statements report, in the same
//! transaction, and fails the step when they differ. `-- expect-rows: none`
//! opts out explicitly.
//!
//! A file may also say which tables it copies, one `-- copies: <source
//! table> -> <target table>` line per pair, in the same leading comments.
//! The final check of each schema counts every declared target table (the
//! tenant's rows of it, when consolidated) against its declared source
//! tables; tables that are not declared are compared by name. Declaring is
//! what lets a file that renames a table (`workflow_workflow` into
//! `workflow`) be counted.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::copy::ddl::lit;
use crate::error::{Error, Result};
use crate::ident::quote_ident;
use crate::migration::MigrationSet;

/// Every placeholder a data-move file may use.
pub const PLACEHOLDERS: [&str; 6] = [
    "source_schema",
    "target_schema",
    "source_shared",
    "target_shared",
    "tenant",
    "tenant_id",
];

/// What a data-move file must write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// As many rows as this query returns (placeholders allowed).
    Query(String),
    /// Not checked (`-- expect-rows: none`).
    Unchecked,
}

/// A `-- copies: <source> -> <target>` declaration: rows of a table of the
/// source schema go to a table of the target schema.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Copies {
    /// The table read, in the file's source schema (its name as the catalog
    /// spells it, unquoted).
    pub source: String,
    /// The table written, in the file's target schema.
    pub target: String,
}

/// One data-move file.
#[derive(Debug, Clone, Serialize)]
pub struct DataMove {
    /// Its version (file order).
    pub version: i64,
    /// The description from its name.
    pub description: String,
    /// Its path.
    pub path: PathBuf,
    /// Its SQL, placeholders in place.
    pub sql: String,
    /// Its row check.
    pub expect: Expect,
    /// The tables it declares copying (`-- copies:` lines), for the final
    /// check.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<Copies>,
    /// Its step name in the ledger (`move 0001`).
    pub step: String,
}

/// Values of the placeholders for one source schema.
#[derive(Debug, Clone)]
pub struct Vars<'a> {
    /// `{source_schema}`.
    pub source_schema: &'a str,
    /// `{target_schema}`.
    pub target_schema: &'a str,
    /// `{source_shared}`.
    pub source_shared: &'a str,
    /// `{target_shared}`.
    pub target_shared: &'a str,
    /// `{tenant}` (none in shared files).
    pub tenant: Option<&'a str>,
    /// `{tenant_id}` (none in shared files, or without `tenant_id_query`).
    pub tenant_id: Option<&'a str>,
}

/// True when `sql` uses the placeholder `name`.
pub fn uses(sql: &str, name: &str) -> bool {
    sql.contains(&format!("{{{name}}}"))
}

/// Replaces the placeholders. Schemas become quoted identifiers, the tenant
/// and its id string literals; a `{word}` that is not a placeholder (e.g.
/// in a JSON or array literal) is left as it is.
pub fn render(sql: &str, vars: &Vars) -> Result<String, String> {
    let mut out = String::with_capacity(sql.len() + 64);
    let mut rest = sql;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..name_len];
        if after[name_len..].starts_with('}') && PLACEHOLDERS.contains(&name) {
            let value = match name {
                "source_schema" => quote_ident(vars.source_schema),
                "target_schema" => quote_ident(vars.target_schema),
                "source_shared" => quote_ident(vars.source_shared),
                "target_shared" => quote_ident(vars.target_shared),
                "tenant" => lit(vars
                    .tenant
                    .ok_or("{tenant} is only available in tenant data-move files".to_string())?),
                _ => lit(vars.tenant_id.ok_or_else(|| {
                    if vars.tenant.is_none() {
                        "{tenant_id} is only available in tenant data-move files".to_string()
                    } else {
                        "{tenant_id} needs the version's tenant_id_query".to_string()
                    }
                })?),
            };
            out.push_str(&value);
            rest = &after[name_len + 1..];
        } else {
            out.push('{');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Reads the header of a data-move file.
fn parse_expect(sql: &str) -> Option<Expect> {
    for comment in header_lines(sql) {
        if let Some(q) = comment.strip_prefix("expect-rows:") {
            let q = q.trim().trim_end_matches(';').trim();
            return Some(if q.eq_ignore_ascii_case("none") {
                Expect::Unchecked
            } else {
                Expect::Query(q.to_string())
            });
        }
    }
    None
}

/// The leading comment lines of a file (before its first other line),
/// without their `--`, trimmed.
fn header_lines(sql: &str) -> impl Iterator<Item = &str> {
    sql.lines()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map_while(|t| t.strip_prefix("--"))
        .map(str::trim)
}

/// Reads the `-- copies: <source> -> <target>` lines of a file's header.
fn parse_copies(sql: &str) -> Result<Vec<Copies>, String> {
    let mut out = Vec::new();
    for line in header_lines(sql) {
        let Some(pair) = line.strip_prefix("copies:") else {
            continue;
        };
        let usage = "write `-- copies: <source table> -> <target table>`, one pair per line, e.g. `-- copies: workflow_workflow -> workflow`";
        let Some((source, target)) = pair.split_once("->") else {
            return Err(format!("`-- copies:{pair}` has no `->`; {usage}"));
        };
        let mut names = [source.trim(), target.trim()].map(|n| n.to_string());
        for (name, side) in names.iter_mut().zip(["source", "target"]) {
            if name.is_empty() {
                return Err(format!("`-- copies:{pair}` names no {side} table; {usage}"));
            }
            if name.contains(['"', '\0', ' ', '\t', ',']) || name.len() > 63 {
                return Err(format!(
                    "`-- copies:{pair}`: {name:?} is not a table name; write it unquoted, as the catalog spells it (1-63 bytes, no quotes, spaces or commas); {usage}"
                ));
            }
            if name.contains(['.', '{']) {
                return Err(format!(
                    "`-- copies:{pair}`: name the {side} table without its schema: the source table is read from {{source_schema}}, the target table written in {{target_schema}}"
                ));
            }
        }
        let [source, target] = names;
        let c = Copies { source, target };
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// Reads a folder of data-move files. `tenant` says whether they run per
/// tenant (else once, for the shared schema).
pub fn load(dir: &Path, tenant: bool) -> Result<Vec<DataMove>> {
    let set = MigrationSet::load(dir)?;
    let mut out = Vec::with_capacity(set.len());
    for m in &set.migrations {
        let bad = |reason: String| Error::MigrationFile {
            path: m.path.clone(),
            reason,
        };
        if m.down_sql.is_some() {
            return Err(bad(
                "a data-move file has no .up/.down pair; name it <version>_<description>.sql"
                    .into(),
            ));
        }
        if m.no_tx {
            return Err(bad(
                "data-move files always run in a transaction (with their checkpoint); remove -- no-transaction".into(),
            ));
        }
        if let Some(tc) = crate::migration::transaction_control(&m.sql) {
            return Err(bad(format!(
                "line {}: {}: a data-move file runs in one transaction with its checkpoint, which this would end or split; remove it",
                tc.line, tc.keyword
            )));
        }
        let expect = parse_expect(&m.sql).ok_or_else(|| {
            bad("the file has no `-- expect-rows: <query>` line in its leading comments; add one returning the number of rows the file writes (e.g. `-- expect-rows: SELECT count(*) FROM {source_schema}.workflows`), or `-- expect-rows: none` to skip the check".into())
        })?;
        let copies = parse_copies(&m.sql).map_err(bad)?;
        for p in PLACEHOLDERS {
            for q in ['\'', '"'] {
                if m.sql.contains(&format!("{q}{{{p}}}{q}")) {
                    return Err(bad(format!(
                        "{q}{{{p}}}{q}: placeholders are replaced by complete, already quoted SQL; write {{{p}}} without quotes"
                    )));
                }
            }
        }
        if !tenant {
            for p in ["tenant", "tenant_id"] {
                if uses(&m.sql, p) {
                    return Err(bad(format!(
                        "{{{p}}} is only available in tenant data-move files; a shared file runs once, for no tenant"
                    )));
                }
            }
        }
        out.push(DataMove {
            version: m.version,
            description: m.description.clone(),
            path: m.path.clone(),
            sql: m.sql.clone(),
            expect,
            copies,
            step: format!("move {}", set.fmt_version(m.version)),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(tenant: Option<&'a str>, id: Option<&'a str>) -> Vars<'a> {
        Vars {
            source_schema: "t 1",
            target_schema: "app_v2",
            source_shared: "public",
            target_shared: "app_v2",
            tenant,
            tenant_id: id,
        }
    }

    #[test]
    fn placeholders_become_quoted_identifiers_and_literals() {
        let sql = "INSERT INTO {target_schema}.w SELECT {tenant_id}, {tenant}, '{\"a\": 1}', '{x}' FROM {source_schema}.w";
        let out = render(sql, &vars(Some("t 1"), Some("4'2"))).unwrap();
        assert_eq!(
            out,
            "INSERT INTO \"app_v2\".w SELECT '4''2', 't 1', '{\"a\": 1}', '{x}' FROM \"t 1\".w"
        );
        let out = render("SELECT {tenant_id}", &vars(Some("t 1"), Some(r"a\'b"))).unwrap();
        assert_eq!(
            out, r"SELECT E'a\\''b'",
            "readable whatever standard_conforming_strings"
        );
    }

    #[test]
    fn tenant_placeholders_outside_a_tenant_are_refused() {
        let err = render("select {tenant}", &vars(None, None)).unwrap_err();
        assert!(err.contains("tenant data-move"), "{err}");
        let err = render("select {tenant_id}", &vars(Some("t"), None)).unwrap_err();
        assert!(err.contains("tenant_id_query"), "{err}");
    }

    #[test]
    fn the_expect_rows_header_is_read_from_the_leading_comments_only() {
        assert_eq!(
            parse_expect("-- moves workflows\n-- expect-rows: SELECT count(*) FROM x;\nINSERT 1"),
            Some(Expect::Query("SELECT count(*) FROM x".into()))
        );
        assert_eq!(
            parse_expect("-- expect-rows: none\nselect 1"),
            Some(Expect::Unchecked)
        );
        assert_eq!(parse_expect("select 1;\n-- expect-rows: 1"), None);
    }

    #[test]
    fn copies_lines_declare_source_and_target_tables_in_the_header_only() {
        let sql = "-- expect-rows: none\n--copies: workflow_workflow -> workflow\n\n-- copies:a->b\n-- copies: a -> b\nINSERT 1;\n-- copies: x -> y";
        assert_eq!(
            parse_copies(sql).unwrap(),
            vec![
                Copies {
                    source: "workflow_workflow".into(),
                    target: "workflow".into()
                },
                Copies {
                    source: "a".into(),
                    target: "b".into()
                },
            ]
        );
        assert_eq!(
            parse_copies("-- expect-rows: none\nselect 1").unwrap(),
            vec![]
        );
    }

    #[test]
    fn a_malformed_copies_line_is_refused_with_its_syntax() {
        for (line, says) in [
            ("-- copies: a b", "no `->`"),
            ("-- copies: -> b", "no source table"),
            ("-- copies: a ->", "no target table"),
            ("-- copies: \"A\" -> b", "unquoted"),
            ("-- copies: a, b -> c", "unquoted"),
            ("-- copies: {source_schema}.a -> b", "without its schema"),
            ("-- copies: a -> app.b", "without its schema"),
        ] {
            let err = parse_copies(line).unwrap_err();
            assert!(err.contains(says), "{line}: {err}");
        }
    }

    #[test]
    fn a_file_without_header_or_with_quoted_placeholders_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("0001_a.sql"), "INSERT INTO x SELECT 1").unwrap();
        let err = load(dir.path(), true).unwrap_err().to_string();
        assert!(err.contains("expect-rows"), "{err}");
        std::fs::write(
            dir.path().join("0001_a.sql"),
            "-- expect-rows: none\nSELECT '{tenant}'",
        )
        .unwrap();
        let err = load(dir.path(), true).unwrap_err().to_string();
        assert!(err.contains("without quotes"), "{err}");
        std::fs::write(
            dir.path().join("0001_a.sql"),
            "-- expect-rows: none\nSELECT {tenant_id}",
        )
        .unwrap();
        let err = load(dir.path(), false).unwrap_err().to_string();
        assert!(err.contains("only available in tenant"), "{err}");
        let moves = load(dir.path(), true).unwrap();
        assert_eq!(moves[0].step, "move 0001");
        std::fs::write(
            dir.path().join("0001_a.sql"),
            "-- expect-rows: none\n-- copies: a\nSELECT 1",
        )
        .unwrap();
        let err = load(dir.path(), true).unwrap_err().to_string();
        assert!(err.contains("0001_a.sql") && err.contains("->"), "{err}");
    }
}
