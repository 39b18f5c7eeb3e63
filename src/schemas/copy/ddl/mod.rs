//! Turns a [`SchemaDef`] into the statements that rebuild it under another
//! name, in the order the copy runs them: objects, rows, indexes, then
//! constraints, triggers, policies, comments, grants and owners.
//!
//! Every statement names the copy's objects unqualified and is run with the
//! search path set to the copy (see [`super::catalog`] for why that is the
//! whole name remapping); the schema itself is named explicitly.

mod objects;
mod post;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::HashMap;

use super::catalog::{Column, Grant, GrantKey, Relation, SchemaDef};
use crate::ident::quote_ident as q;
use objects::Node;

/// One statement and the object it builds, for messages.
#[derive(Debug, Clone)]
pub(crate) struct Stmt {
    /// E.g. `table documents`.
    pub what: String,
    /// The SQL.
    pub sql: String,
}

/// Rows of one table to copy (a whole table, or a block range of one).
#[derive(Debug, Clone)]
pub(crate) struct DataTask {
    /// The table's name in both schemas.
    pub table: String,
    /// Quoted column list (generated columns left out).
    pub columns: String,
    /// The matching select list: a column whose type is the schema's own
    /// goes through text into the copy's type.
    pub select: String,
    /// Identity columns are copied with `OVERRIDING SYSTEM VALUE`.
    pub overriding: bool,
    /// Size of the source table (or of this range).
    pub bytes: i64,
    /// The planner's row estimate.
    pub est_rows: i64,
    /// `(first block, end block)`: a slice of a large table.
    pub blocks: Option<(i64, Option<i64>)>,
}

/// A table to check after the copy.
#[derive(Debug, Clone)]
pub(crate) struct CheckedTable {
    /// The table's name.
    pub table: String,
}

/// Everything the copy runs, in order.
#[derive(Debug, Default)]
pub(crate) struct CopyPlan {
    /// Types, sequences, functions, tables, views: one transaction, in
    /// dependency order.
    pub pre: Vec<Stmt>,
    /// Rows, largest first.
    pub data: Vec<DataTask>,
    /// `REFRESH MATERIALIZED VIEW`, in dependency order.
    pub refresh: Vec<Stmt>,
    /// Indexes of plain tables and materialized views: built in parallel.
    pub indexes: Vec<Stmt>,
    /// Constraints, partitioned indexes, foreign keys, triggers, rules,
    /// policies, sequence values, comments, grants, owners: in order.
    pub post: Vec<Stmt>,
    /// `VALIDATE CONSTRAINT` of foreign keys added `NOT VALID`: each in its
    /// own transaction, after `post`.
    pub validate: Vec<Stmt>,
    /// Tables whose rows are checked.
    pub checked: Vec<CheckedTable>,
    /// What could not be copied faithfully.
    pub warnings: Vec<String>,
    /// Number of objects created (for the report).
    pub objects: usize,
}

/// A string literal ([`crate::ident::quote_literal`]).
pub(crate) use crate::ident::quote_literal as lit;

/// True when `text` names `schema` as a word (case-insensitively for a
/// lower-case name, as PostgreSQL folds unquoted names).
pub(crate) fn mentions(text: &str, schema: &str) -> bool {
    let fold = schema == schema.to_lowercase();
    let (hay, needle) = if fold {
        (text.to_lowercase(), schema.to_string())
    } else {
        (text.to_string(), schema.to_string())
    };
    let is_ident = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    let mut from = 0;
    while let Some(pos) = hay[from..].find(&needle) {
        let start = from + pos;
        let end = start + needle.len();
        let before = hay[..start].chars().next_back();
        let after = hay[end..].chars().next();
        if !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
            return true;
        }
        from = start + needle.len().max(1);
    }
    false
}

fn with_options(opts: &[String]) -> String {
    if opts.is_empty() {
        String::new()
    } else {
        format!(" WITH ({})", opts.join(", "))
    }
}

fn strip_semicolon(s: &str) -> &str {
    s.trim_end().trim_end_matches(';')
}

/// Rewrites the `SET search_path` line of a function definition so that
/// the source schema becomes the target.
fn remap_search_path(def: &str, src: &str, dst: &str) -> String {
    def.lines()
        .map(|line| {
            if line.trim_start().starts_with("SET search_path") {
                line.replace(&format!("'{src}'"), &format!("'{dst}'"))
                    .replace(&format!("\"{src}\""), &format!("\"{dst}\""))
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

struct Builder<'a> {
    d: &'a SchemaDef,
    tmp: &'a str,
    rels: HashMap<i64, &'a Relation>,
    cols: HashMap<i64, Vec<&'a Column>>,
    plan: CopyPlan,
}

impl<'a> Builder<'a> {
    fn new(d: &'a SchemaDef, tmp: &'a str) -> Self {
        let mut b = Builder {
            d,
            tmp,
            rels: d.relations.iter().map(|r| (r.oid, r)).collect(),
            cols: HashMap::new(),
            plan: CopyPlan::default(),
        };
        for c in &d.columns {
            b.cols.entry(c.rel).or_default().push(c);
        }
        b
    }

    fn rel_name(&self, oid: i64) -> String {
        self.rels
            .get(&oid)
            .map(|r| q(&r.name))
            .unwrap_or_else(|| format!("/* relation {oid} */"))
    }

    fn grants(&mut self, key: GrantKey, target: &str, owner: &str) {
        let list: Vec<Grant> = self.d.grants.get(&key).cloned().unwrap_or_default();
        let mut stmts = vec![
            format!("REVOKE ALL ON {target} FROM PUBLIC"),
            format!("REVOKE ALL ON {target} FROM {}", q(owner)),
        ];
        for g in list {
            stmts.push(format!(
                "GRANT {} ON {target} TO {}{}",
                g.privilege,
                g.grantee,
                if g.grantable {
                    " WITH GRANT OPTION"
                } else {
                    ""
                }
            ));
        }
        self.plan.post.push(Stmt {
            what: format!("privileges on {target}"),
            sql: stmts.join(";\n"),
        });
    }

    fn owner(&mut self, kind: &str, target: &str, owner: &str) {
        if owner != self.d.current_user {
            self.plan.post.push(Stmt {
                what: format!("owner of {target}"),
                sql: format!("ALTER {kind} {target} OWNER TO {}", q(owner)),
            });
        }
    }

    fn comment(&mut self, target: String, text: &Option<String>) {
        if let Some(c) = text {
            self.plan.post.push(Stmt {
                what: format!("comment on {target}"),
                sql: format!("COMMENT ON {target} IS {}", lit(c)),
            });
        }
    }

    /// Whether `oid` is a partitioned table.
    fn is_partitioned(&self, oid: i64) -> bool {
        self.rels.get(&oid).is_some_and(|r| r.kind == 'p')
    }
}

/// The `ALTER TABLE` words that give a trigger or rule (`kind`) the state
/// `tgenabled`/`ev_enabled` records; `None` for the default (`O`).
fn enabled_state(state: char, kind: &str) -> Option<String> {
    match state {
        'D' => Some(format!("DISABLE {kind}")),
        'R' => Some(format!("ENABLE REPLICA {kind}")),
        'A' => Some(format!("ENABLE ALWAYS {kind}")),
        _ => None,
    }
}

/// Node kinds in creation order when dependencies allow either.
fn rank(kind: &str) -> u8 {
    match kind {
        "type" => 0,
        "sequence" => 1,
        "function" => 2,
        "table" => 3,
        "view" => 4,
        _ => 5,
    }
}

/// Builds the plan that copies `d` (read from `src`) into the schema
/// `tmp`, which is renamed to `dst` at the end.
pub(crate) fn plan(
    d: &SchemaDef,
    src: &str,
    dst: &str,
    tmp: &str,
    with_data: bool,
    history_table: &str,
) -> CopyPlan {
    let mut b = Builder::new(d, tmp);
    b.uncopied_warnings(src);
    let mut nodes: HashMap<i64, Node> = HashMap::new();
    let post_domain_checks = b.type_nodes(&mut nodes);
    b.sequence_nodes(&mut nodes);
    b.function_nodes(&mut nodes, src, dst);
    b.relation_nodes(&mut nodes);
    b.pre_data(nodes, with_data);
    b.data_tasks(with_data, history_table);
    b.indexes();
    b.plan.post.extend(post_domain_checks);
    b.check_constraints();
    b.foreign_keys();
    b.clusters();
    b.replica_identities();
    b.triggers();
    b.rules();
    b.policies();
    b.row_security();
    b.statistics();
    b.sequence_settings();
    b.comments();
    b.owners();
    b.privileges();
    b.schema_settings();
    b.default_privileges();
    b.source_warnings(src);
    b.plan
}

/// Splits the largest tables into block ranges so that `jobs` workers can
/// share them (a TID range scan reads only its blocks).
pub(crate) fn split_large(tasks: Vec<DataTask>, jobs: usize, block_size: i64) -> Vec<DataTask> {
    if jobs < 2 || tasks.is_empty() {
        return tasks;
    }
    let total: i64 = tasks.iter().map(|t| t.bytes).sum();
    // A table holding more than a worker's fair share is cut into slices of
    // about that share.
    let share = (total / jobs as i64).max(8 * 1024 * 1024);
    let mut out = Vec::new();
    for t in tasks {
        let blocks = t.bytes / block_size.max(1);
        if t.bytes > share && blocks > 1 {
            let parts = (t.bytes / share + 1).min(jobs as i64 * 2).max(2);
            let step = blocks / parts + 1;
            let mut start = 0;
            for p in 0..parts {
                let end = if p == parts - 1 {
                    None
                } else {
                    Some(start + step)
                };
                out.push(DataTask {
                    bytes: t.bytes / parts,
                    est_rows: t.est_rows / parts,
                    blocks: Some((start, end)),
                    ..t.clone()
                });
                start += step;
            }
        } else {
            out.push(t);
        }
    }
    out.sort_by_key(|t| Reverse(t.bytes));
    out
}
