//! Turns a [`SchemaDef`] into the statements that rebuild it under another
//! name, in the order the copy runs them: objects, rows, indexes, then
//! constraints, triggers, policies, comments, grants and owners.
//!
//! Every statement names the copy's objects unqualified and is run with the
//! search path set to the copy (see [`super::catalog`] for why that is the
//! whole name remapping); the schema itself is named explicitly.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use super::catalog::{Column, Grant, GrantKey, Relation, SchemaDef};
use crate::ident::quote_ident as q;

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

    fn column_sql(&self, c: &Column) -> String {
        let mut s = format!("{} {}", q(&c.name), c.type_sql);
        if let Some(coll) = &c.collation {
            s.push_str(&format!(" COLLATE {coll}"));
        }
        match (c.generated, c.identity) {
            (Some(g), _) => {
                let kind = if g == 'v' { "VIRTUAL" } else { "STORED" };
                s.push_str(&format!(
                    " GENERATED ALWAYS AS ({}) {kind}",
                    c.default.as_deref().unwrap_or("NULL")
                ));
            }
            (None, Some(id)) => {
                let seq = self
                    .d
                    .sequences
                    .iter()
                    .find(|sq| sq.identity && sq.owned_by == Some((c.rel, c.num)));
                let mode = if id == 'a' { "ALWAYS" } else { "BY DEFAULT" };
                match seq {
                    Some(sq) => s.push_str(&format!(
                        " GENERATED {mode} AS IDENTITY (SEQUENCE NAME {} START WITH {} INCREMENT BY {} MINVALUE {} MAXVALUE {} CACHE {}{})",
                        self.rel_name(sq.oid),
                        sq.start,
                        sq.increment,
                        sq.min,
                        sq.max,
                        sq.cache,
                        if sq.cycle { " CYCLE" } else { " NO CYCLE" }
                    )),
                    None => s.push_str(&format!(" GENERATED {mode} AS IDENTITY")),
                }
            }
            (None, None) => {
                if let Some(def) = &c.default {
                    s.push_str(&format!(" DEFAULT {def}"));
                }
            }
        }
        if c.not_null {
            s.push_str(" NOT NULL");
        }
        s
    }

    /// `CREATE TABLE` plus the column settings that must precede the rows.
    fn table_stmts(&self, r: &Relation) -> Vec<Stmt> {
        let name = q(&r.name);
        let unlogged = if r.persistence == 'u' {
            "UNLOGGED "
        } else {
            ""
        };
        let cols = self.cols.get(&r.oid).cloned().unwrap_or_default();
        let checks: Vec<String> = self
            .d
            .constraints
            .iter()
            .filter(|c| c.rel == r.oid && c.kind == 'c' && c.is_local && c.validated)
            .map(|c| format!("CONSTRAINT {} {}", q(&c.name), c.def))
            .collect();
        let mut out = Vec::new();
        let mut sql;
        let parent = r.parents.first().copied();
        if let (true, Some(p)) = (r.is_partition, parent) {
            sql = format!(
                "CREATE {unlogged}TABLE {name} PARTITION OF {}",
                self.rel_name(p)
            );
            if !checks.is_empty() {
                sql.push_str(&format!(" (\n    {}\n)", checks.join(",\n    ")));
            }
            sql.push(' ');
            sql.push_str(r.bound.as_deref().unwrap_or("DEFAULT"));
        } else {
            let mut items: Vec<String> = cols
                .iter()
                .filter(|c| c.is_local || r.parents.is_empty())
                .map(|c| self.column_sql(c))
                .collect();
            items.extend(checks);
            sql = format!(
                "CREATE {unlogged}TABLE {name} (\n    {}\n)",
                items.join(",\n    ")
            );
            if !r.parents.is_empty() {
                let ps: Vec<String> = r.parents.iter().map(|p| self.rel_name(*p)).collect();
                sql.push_str(&format!(" INHERITS ({})", ps.join(", ")));
            }
        }
        if let Some(k) = &r.partkey {
            sql.push_str(&format!(" PARTITION BY {k}"));
        }
        sql.push_str(&with_options(&r.options));
        out.push(Stmt {
            what: format!("table {}", r.name),
            sql,
        });
        // A partition takes its columns from the parent: add what differs.
        if r.is_partition
            && let Some(p) = parent
        {
            let pcols: HashMap<&str, &&Column> = self
                .cols
                .get(&p)
                .map(|v| v.iter().map(|c| (c.name.as_str(), c)).collect())
                .unwrap_or_default();
            for c in &cols {
                let pc = pcols.get(c.name.as_str());
                if c.generated.is_none()
                    && c.identity.is_none()
                    && c.default.is_some()
                    && pc.and_then(|p| p.default.as_ref()) != c.default.as_ref()
                {
                    out.push(Stmt {
                        what: format!("default of {}.{}", r.name, c.name),
                        sql: format!(
                            "ALTER TABLE ONLY {name} ALTER COLUMN {} SET DEFAULT {}",
                            q(&c.name),
                            c.default.as_deref().unwrap_or("NULL")
                        ),
                    });
                }
                if c.not_null && !pc.is_some_and(|p| p.not_null) {
                    out.push(Stmt {
                        what: format!("not null {}.{}", r.name, c.name),
                        sql: format!(
                            "ALTER TABLE ONLY {name} ALTER COLUMN {} SET NOT NULL",
                            q(&c.name)
                        ),
                    });
                }
            }
        }
        for c in &cols {
            let col = q(&c.name);
            let mut alter = |what: &str, sql: String| {
                out.push(Stmt {
                    what: format!("{what} of {}.{}", r.name, c.name),
                    sql: format!("ALTER TABLE ONLY {name} ALTER COLUMN {col} {sql}"),
                })
            };
            if let Some(st) = c.storage {
                let word = match st {
                    'p' => "PLAIN",
                    'e' => "EXTERNAL",
                    'm' => "MAIN",
                    _ => "EXTENDED",
                };
                alter("storage", format!("SET STORAGE {word}"));
            }
            if let Some(n) = c.statistics {
                alter("statistics target", format!("SET STATISTICS {n}"));
            }
            if let Some(cm) = c.compression {
                let word = if cm == 'l' { "lz4" } else { "pglz" };
                alter("compression", format!("SET COMPRESSION {word}"));
            }
            if !c.options.is_empty() {
                alter("options", format!("SET ({})", c.options.join(", ")));
            }
        }
        out
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

    for u in &d.unsupported {
        b.plan.warnings.push(format!(
            "{u} is not copied (tenantmig does not copy this kind of object)"
        ));
    }
    for e in &d.extensions {
        b.plan.warnings.push(format!(
            "extension {e} is installed in schema {src}; its objects are not copied (install it into the copy with CREATE EXTENSION {e} SCHEMA ...)"
        ));
    }

    // Pre-data nodes: oid -> (rank, name, statements).
    struct Node {
        rank: u8,
        name: String,
        stmts: Vec<Stmt>,
    }
    let mut nodes: HashMap<i64, Node> = HashMap::new();
    let mut post_domain_checks = Vec::new();

    for t in d.types.iter().filter(|t| !t.extension_member) {
        let name = q(&t.name);
        let sql = match t.kind {
            'e' => format!(
                "CREATE TYPE {name} AS ENUM ({})",
                t.labels
                    .iter()
                    .map(|l| lit(l))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            'd' => {
                let mut s = format!(
                    "CREATE DOMAIN {name} AS {}",
                    t.base_type.as_deref().unwrap_or("text")
                );
                if let Some(c) = &t.collation {
                    s.push_str(&format!(" COLLATE {c}"));
                }
                if let Some(def) = &t.default {
                    s.push_str(&format!(" DEFAULT {def}"));
                }
                if t.not_null {
                    s.push_str(" NOT NULL");
                }
                for c in d
                    .constraints
                    .iter()
                    .filter(|c| c.type_oid == t.oid && c.kind == 'c')
                {
                    if c.validated {
                        s.push_str(&format!(" CONSTRAINT {} {}", q(&c.name), c.def));
                    } else {
                        post_domain_checks.push(Stmt {
                            what: format!("constraint {} of domain {}", c.name, t.name),
                            sql: format!(
                                "ALTER DOMAIN {name} ADD CONSTRAINT {} {}",
                                q(&c.name),
                                c.def
                            ),
                        });
                    }
                }
                s
            }
            'c' => {
                let attrs: Vec<String> = b
                    .cols
                    .get(&t.relid)
                    .map(|cs| {
                        cs.iter()
                            .map(|c| {
                                let mut s = format!("{} {}", q(&c.name), c.type_sql);
                                if let Some(co) = &c.collation {
                                    s.push_str(&format!(" COLLATE {co}"));
                                }
                                s
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                format!("CREATE TYPE {name} AS ({})", attrs.join(", "))
            }
            'r' => {
                let mut s = format!(
                    "CREATE TYPE {name} AS RANGE (SUBTYPE = {}",
                    t.range_subtype.as_deref().unwrap_or("int4")
                );
                if let Some(m) = &t.multirange_name {
                    s.push_str(&format!(", MULTIRANGE_TYPE_NAME = {m}"));
                }
                s.push(')');
                s
            }
            _ => {
                b.plan.warnings.push(format!(
                    "base type {} is not copied (a C-language type belongs in an extension)",
                    t.name
                ));
                continue;
            }
        };
        // A composite type is keyed by its relation (row types map there).
        let key = if t.kind == 'c' { t.relid } else { t.oid };
        nodes.insert(
            key,
            Node {
                rank: rank("type"),
                name: t.name.clone(),
                stmts: vec![Stmt {
                    what: format!("type {}", t.name),
                    sql,
                }],
            },
        );
    }

    for s in d.sequences.iter().filter(|s| !s.identity) {
        let Some(r) = b.rels.get(&s.oid) else {
            continue;
        };
        if r.extension_member {
            continue;
        }
        let unlogged = if r.persistence == 'u' {
            "UNLOGGED "
        } else {
            ""
        };
        nodes.insert(
            s.oid,
            Node {
                rank: rank("sequence"),
                name: r.name.clone(),
                stmts: vec![Stmt {
                    what: format!("sequence {}", r.name),
                    sql: format!(
                        "CREATE {unlogged}SEQUENCE {} AS {} START WITH {} INCREMENT BY {} MINVALUE {} MAXVALUE {} CACHE {}{}",
                        q(&r.name),
                        s.type_sql,
                        s.start,
                        s.increment,
                        s.min,
                        s.max,
                        s.cache,
                        if s.cycle { " CYCLE" } else { " NO CYCLE" }
                    ),
                }],
            },
        );
    }

    for f in d.functions.iter().filter(|f| !f.extension_member) {
        let Some(def) = &f.def else {
            b.plan.warnings.push(format!(
                "aggregate {}({}) is not copied",
                f.name, f.identity_args
            ));
            continue;
        };
        let unqualified = f
            .head
            .split_once('.')
            .map(|(_, n)| n.to_string())
            .unwrap_or_else(|| f.head.clone());
        let sql = remap_search_path(
            &def.replacen(&format!("{}(", f.head), &format!("{unqualified}("), 1),
            src,
            dst,
        );
        if mentions(&f.body, src) {
            b.plan.warnings.push(format!(
                "function {}({}) names schema {src} in its body; the copy keeps that text, so it still refers to {src}",
                f.name, f.identity_args
            ));
        }
        nodes.insert(
            f.oid,
            Node {
                rank: rank("function"),
                name: f.name.clone(),
                stmts: vec![Stmt {
                    what: format!("function {}({})", f.name, f.identity_args),
                    sql,
                }],
            },
        );
    }

    for r in d.relations.iter().filter(|r| !r.extension_member) {
        match r.kind {
            'r' | 'p' => {
                let stmts = b.table_stmts(r);
                nodes.insert(
                    r.oid,
                    Node {
                        rank: rank("table"),
                        name: r.name.clone(),
                        stmts,
                    },
                );
            }
            'v' | 'm' => {
                let def = strip_semicolon(r.viewdef.as_deref().unwrap_or(""));
                let sql = if r.kind == 'v' {
                    format!(
                        "CREATE VIEW {}{} AS\n{def}",
                        q(&r.name),
                        with_options(&r.options)
                    )
                } else {
                    format!(
                        "CREATE MATERIALIZED VIEW {}{} AS\n{def}\nWITH NO DATA",
                        q(&r.name),
                        with_options(&r.options)
                    )
                };
                let mut stmts = vec![Stmt {
                    what: format!(
                        "{} {}",
                        if r.kind == 'v' {
                            "view"
                        } else {
                            "materialized view"
                        },
                        r.name
                    ),
                    sql,
                }];
                // View column defaults (for inserts through the view).
                for c in b.cols.get(&r.oid).cloned().unwrap_or_default() {
                    if let (Some(def), 'v') = (&c.default, r.kind) {
                        stmts.push(Stmt {
                            what: format!("default of {}.{}", r.name, c.name),
                            sql: format!(
                                "ALTER VIEW {} ALTER COLUMN {} SET DEFAULT {def}",
                                q(&r.name),
                                q(&c.name)
                            ),
                        });
                    }
                }
                nodes.insert(
                    r.oid,
                    Node {
                        rank: rank("view"),
                        name: r.name.clone(),
                        stmts,
                    },
                );
            }
            'f' => b.plan.warnings.push(format!(
                "foreign table {} is not copied (recreate it with CREATE FOREIGN TABLE)",
                r.name
            )),
            _ => {}
        }
    }

    // Dependency order (Kahn), ties broken by kind then name so the order
    // is stable; a cycle falls back to that order.
    let mut deps: HashMap<i64, HashSet<i64>> = HashMap::new();
    for (a, bb) in &d.deps {
        if nodes.contains_key(a) && nodes.contains_key(bb) {
            deps.entry(*a).or_default().insert(*bb);
        }
    }
    for r in &d.relations {
        for p in &r.parents {
            if nodes.contains_key(&r.oid) && nodes.contains_key(p) {
                deps.entry(r.oid).or_default().insert(*p);
            }
        }
    }
    let mut dependents: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut waiting: HashMap<i64, usize> = HashMap::new();
    for (a, refs) in &deps {
        waiting.insert(*a, refs.len());
        for r in refs {
            dependents.entry(*r).or_default().push(*a);
        }
    }
    let mut ready: BinaryHeap<Reverse<(u8, String, i64)>> = nodes
        .iter()
        .filter(|(oid, _)| waiting.get(oid).copied().unwrap_or(0) == 0)
        .map(|(oid, n)| Reverse((n.rank, n.name.clone(), *oid)))
        .collect();
    let mut order = Vec::with_capacity(nodes.len());
    let mut done: HashSet<i64> = HashSet::new();
    while done.len() < nodes.len() {
        let next = match ready.pop() {
            Some(Reverse((_, _, oid))) => oid,
            None => {
                // A cycle: take the first remaining node in kind/name order.
                let (oid, _) = nodes
                    .iter()
                    .filter(|(oid, _)| !done.contains(*oid))
                    .min_by(|a, b| (a.1.rank, &a.1.name).cmp(&(b.1.rank, &b.1.name)))
                    .expect("a node remains");
                *oid
            }
        };
        if !done.insert(next) {
            continue;
        }
        order.push(next);
        for dep in dependents.get(&next).cloned().unwrap_or_default() {
            if let Some(w) = waiting.get_mut(&dep) {
                *w = w.saturating_sub(1);
                if *w == 0 && !done.contains(&dep) {
                    let n = &nodes[&dep];
                    ready.push(Reverse((n.rank, n.name.clone(), dep)));
                }
            }
        }
    }
    b.plan.objects = order.len();
    for oid in &order {
        let n = nodes.remove(oid).expect("node");
        b.plan.pre.extend(n.stmts);
        if let Some(r) = b.rels.get(oid)
            && r.kind == 'm'
            && r.populated
            && with_data
        {
            b.plan.refresh.push(Stmt {
                what: format!("materialized view {}", r.name),
                sql: format!("REFRESH MATERIALIZED VIEW {}", q(&r.name)),
            });
        }
    }

    // Rows: every plain table (partitions included; partitioned parents
    // hold no rows).
    for r in d
        .relations
        .iter()
        .filter(|r| r.kind == 'r' && !r.extension_member)
    {
        let cols = b.cols.get(&r.oid).cloned().unwrap_or_default();
        let copied: Vec<String> = cols
            .iter()
            .filter(|c| c.generated.is_none())
            .map(|c| q(&c.name))
            .collect();
        // Without data, the history table's rows still come along: they
        // say which version the copy's structure is at.
        let wanted = with_data || r.name == history_table;
        if wanted {
            b.plan.checked.push(CheckedTable {
                table: r.name.clone(),
            });
        }
        let select: Vec<String> = cols
            .iter()
            .filter(|c| c.generated.is_none())
            .map(|c| {
                if c.local_type {
                    format!("{}::text::{}", q(&c.name), c.type_sql)
                } else {
                    q(&c.name)
                }
            })
            .collect();
        if wanted && !copied.is_empty() {
            b.plan.data.push(DataTask {
                table: r.name.clone(),
                columns: copied.join(", "),
                select: select.join(", "),
                overriding: cols.iter().any(|c| c.identity.is_some()),
                bytes: r.bytes,
                est_rows: r.est_rows,
                blocks: None,
            });
        }
    }
    b.plan.data.sort_by_key(|t| Reverse(t.bytes));

    // Indexes. Those of plain tables and materialized views are built in
    // parallel (a unique constraint's index too, attached to its constraint
    // afterwards); those of partitioned tables are created ONLY on the
    // parent and their partitions' indexes attached, as pg_dump does.
    let partitioned: HashSet<i64> = d
        .relations
        .iter()
        .filter(|r| r.kind == 'p')
        .map(|r| r.oid)
        .collect();
    let cons: HashMap<(&str, i64), &super::catalog::Constraint> = d
        .constraints
        .iter()
        .filter(|c| c.rel != 0)
        .map(|c| ((c.name.as_str(), c.rel), c))
        .collect();
    let mut idx_sorted: Vec<&super::catalog::Index> = d
        .indexes
        .iter()
        .filter(|i| b.rels.get(&i.rel).is_some_and(|r| !r.extension_member))
        .collect();
    idx_sorted.sort_by_key(|i| Reverse(i.table_bytes));
    let mut leaf_constraints = Vec::new();
    let mut parent_indexes = Vec::new();
    let mut attach = Vec::new();
    let idx_names: HashMap<i64, &str> =
        d.indexes.iter().map(|i| (i.oid, i.name.as_str())).collect();
    for i in &idx_sorted {
        if !i.valid && i.kind == 'i' {
            b.plan.warnings.push(format!(
                "index {} is invalid (a failed CREATE INDEX CONCURRENTLY?) and is not copied",
                i.name
            ));
            continue;
        }
        let table = b.rel_name(i.rel);
        let con = i
            .constraint
            .as_deref()
            .and_then(|n| cons.get(&(n, i.rel)).copied());
        let on_partitioned = partitioned.contains(&i.rel);
        match (con, on_partitioned) {
            (Some(c), false) if c.kind == 'p' || c.kind == 'u' => {
                b.plan.indexes.push(Stmt {
                    what: format!("index {}", i.name),
                    sql: i.def.clone(),
                });
                let word = if c.kind == 'p' {
                    "PRIMARY KEY"
                } else {
                    "UNIQUE"
                };
                let mut extra = String::new();
                if c.def.contains("DEFERRABLE") && !c.def.contains("NOT DEFERRABLE") {
                    extra.push_str(" DEFERRABLE");
                    if c.def.contains("INITIALLY DEFERRED") {
                        extra.push_str(" INITIALLY DEFERRED");
                    }
                }
                leaf_constraints.push(Stmt {
                    what: format!("constraint {} on {}", c.name, table),
                    sql: format!(
                        "ALTER TABLE ONLY {table} ADD CONSTRAINT {} {word} USING INDEX {}{extra}",
                        q(&c.name),
                        q(&i.name)
                    ),
                });
            }
            (Some(c), false) => leaf_constraints.push(Stmt {
                what: format!("constraint {} on {}", c.name, table),
                sql: format!(
                    "ALTER TABLE ONLY {table} ADD CONSTRAINT {} {}",
                    q(&c.name),
                    c.def
                ),
            }),
            (Some(c), true) => parent_indexes.push(Stmt {
                what: format!("constraint {} on {}", c.name, table),
                sql: format!(
                    "ALTER TABLE ONLY {table} ADD CONSTRAINT {} {}",
                    q(&c.name),
                    c.def
                ),
            }),
            (None, true) => parent_indexes.push(Stmt {
                what: format!("index {}", i.name),
                sql: i.def.clone(),
            }),
            (None, false) => b.plan.indexes.push(Stmt {
                what: format!("index {}", i.name),
                sql: i.def.clone(),
            }),
        }
        if let Some(p) = i.parent.and_then(|p| idx_names.get(&p)) {
            attach.push(Stmt {
                what: format!("index {} under {}", i.name, p),
                sql: format!("ALTER INDEX {} ATTACH PARTITION {}", q(p), q(&i.name)),
            });
        }
    }
    b.plan.post.extend(leaf_constraints);
    b.plan.post.extend(parent_indexes);
    b.plan.post.extend(attach);
    b.plan.post.extend(post_domain_checks);

    // Check constraints not validated in the source stay NOT VALID.
    for c in d
        .constraints
        .iter()
        .filter(|c| c.rel != 0 && c.kind == 'c' && c.is_local && !c.validated)
    {
        let only = if partitioned.contains(&c.rel) {
            ""
        } else {
            "ONLY "
        };
        b.plan.post.push(Stmt {
            what: format!("constraint {}", c.name),
            sql: format!(
                "ALTER TABLE {only}{} ADD CONSTRAINT {} {}",
                b.rel_name(c.rel),
                q(&c.name),
                c.def
            ),
        });
    }
    // Foreign keys: references to the source's tables come out unqualified
    // (so they point into the copy); references elsewhere stay qualified.
    for c in d
        .constraints
        .iter()
        .filter(|c| c.rel != 0 && c.kind == 'f' && c.parent == 0 && b.rels.contains_key(&c.rel))
    {
        let only = if partitioned.contains(&c.rel) {
            ""
        } else {
            "ONLY "
        };
        let table = b.rel_name(c.rel);
        // Added NOT VALID, then validated: the validating scan then holds
        // only SHARE UPDATE EXCLUSIVE on the copy and ROW SHARE on the
        // referenced table, so writes to a referenced shared table go on.
        b.plan.post.push(Stmt {
            what: format!("foreign key {}", c.name),
            sql: format!(
                "ALTER TABLE {only}{table} ADD CONSTRAINT {} {}{}",
                q(&c.name),
                c.def,
                if c.validated { " NOT VALID" } else { "" }
            ),
        });
        if c.validated {
            b.plan.validate.push(Stmt {
                what: format!("foreign key {}", c.name),
                sql: format!(
                    "ALTER TABLE {only}{table} VALIDATE CONSTRAINT {}",
                    q(&c.name)
                ),
            });
        }
    }
    for i in d.indexes.iter().filter(|i| i.clustered) {
        b.plan.post.push(Stmt {
            what: format!("cluster index of {}", b.rel_name(i.rel)),
            sql: format!(
                "ALTER TABLE {} CLUSTER ON {}",
                b.rel_name(i.rel),
                q(&i.name)
            ),
        });
    }
    for r in d.relations.iter().filter(|r| !r.extension_member) {
        let name = q(&r.name);
        match (r.kind, r.replident) {
            ('r' | 'p' | 'm', 'f') => b.plan.post.push(Stmt {
                what: format!("replica identity of {}", r.name),
                sql: format!("ALTER TABLE ONLY {name} REPLICA IDENTITY FULL"),
            }),
            ('r' | 'p' | 'm', 'n') => b.plan.post.push(Stmt {
                what: format!("replica identity of {}", r.name),
                sql: format!("ALTER TABLE ONLY {name} REPLICA IDENTITY NOTHING"),
            }),
            ('r' | 'p' | 'm', 'i') => {
                if let Some(i) = d.indexes.iter().find(|i| i.rel == r.oid && i.replident) {
                    b.plan.post.push(Stmt {
                        what: format!("replica identity of {}", r.name),
                        sql: format!(
                            "ALTER TABLE ONLY {name} REPLICA IDENTITY USING INDEX {}",
                            q(&i.name)
                        ),
                    });
                }
            }
            _ => {}
        }
    }
    for t in &d.triggers {
        let table = b.rel_name(t.rel);
        b.plan.post.push(Stmt {
            what: format!("trigger {} on {}", t.name, table),
            sql: t.def.clone(),
        });
        if let Some(s) = enabled_state(t.enabled, "TRIGGER") {
            b.plan.post.push(Stmt {
                what: format!("state of trigger {}", t.name),
                sql: format!("ALTER TABLE {table} {s} {}", q(&t.name)),
            });
        }
        b.comment(format!("TRIGGER {} ON {table}", q(&t.name)), &t.comment);
    }
    for r in &d.rules {
        let table = b.rel_name(r.rel);
        b.plan.post.push(Stmt {
            what: format!("rule {} on {}", r.name, table),
            sql: strip_semicolon(&r.def).to_string(),
        });
        if let Some(s) = enabled_state(r.enabled, "RULE") {
            b.plan.post.push(Stmt {
                what: format!("state of rule {}", r.name),
                sql: format!("ALTER TABLE {table} {s} {}", q(&r.name)),
            });
        }
        b.comment(format!("RULE {} ON {table}", q(&r.name)), &r.comment);
    }
    for p in &d.policies {
        let table = b.rel_name(p.rel);
        let cmd = match p.cmd {
            'r' => "SELECT",
            'a' => "INSERT",
            'w' => "UPDATE",
            'd' => "DELETE",
            _ => "ALL",
        };
        let mut sql = format!(
            "CREATE POLICY {} ON {table} AS {} FOR {cmd} TO {}",
            q(&p.name),
            if p.permissive {
                "PERMISSIVE"
            } else {
                "RESTRICTIVE"
            },
            if p.roles.is_empty() {
                "PUBLIC".to_string()
            } else {
                p.roles.join(", ")
            }
        );
        if let Some(u) = &p.using {
            sql.push_str(&format!(" USING ({u})"));
        }
        if let Some(c) = &p.check {
            sql.push_str(&format!(" WITH CHECK ({c})"));
        }
        b.plan.post.push(Stmt {
            what: format!("policy {} on {table}", p.name),
            sql,
        });
        b.comment(format!("POLICY {} ON {table}", q(&p.name)), &p.comment);
    }
    for r in d.relations.iter().filter(|r| !r.extension_member) {
        let name = q(&r.name);
        if r.row_security {
            b.plan.post.push(Stmt {
                what: format!("row level security of {}", r.name),
                sql: format!("ALTER TABLE {name} ENABLE ROW LEVEL SECURITY"),
            });
        }
        if r.force_row_security {
            b.plan.post.push(Stmt {
                what: format!("row level security of {}", r.name),
                sql: format!("ALTER TABLE {name} FORCE ROW LEVEL SECURITY"),
            });
        }
    }
    for s in &d.statistics {
        let unqualified = s
            .head
            .split_once('.')
            .map(|(_, n)| n.to_string())
            .unwrap_or_else(|| s.head.clone());
        b.plan.post.push(Stmt {
            what: format!("statistics {}", s.name),
            sql: s.def.replacen(&s.head, &unqualified, 1),
        });
        b.comment(format!("STATISTICS {unqualified}"), &s.comment);
        b.owner("STATISTICS", &unqualified, &s.owner);
    }

    // Sequences: ownership and current values (the next value in the copy
    // is the next value in the source).
    for s in &d.sequences {
        let Some(r) = b.rels.get(&s.oid) else {
            continue;
        };
        if r.extension_member {
            continue;
        }
        if let (false, Some((tbl, col))) = (s.identity, s.owned_by)
            && let Some(c) = d.columns.iter().find(|c| c.rel == tbl && c.num == col)
        {
            b.plan.post.push(Stmt {
                what: format!("owner column of sequence {}", r.name),
                sql: format!(
                    "ALTER SEQUENCE {} OWNED BY {}.{}",
                    q(&r.name),
                    b.rel_name(tbl),
                    q(&c.name)
                ),
            });
        }
        if let Some((v, called)) = d.sequence_values.get(&s.oid) {
            b.plan.post.push(Stmt {
                what: format!("value of sequence {}", r.name),
                sql: format!(
                    "SELECT pg_catalog.setval({}, {v}, {called})",
                    lit(&q(&r.name))
                ),
            });
        }
    }

    // Comments.
    for r in d.relations.iter().filter(|r| !r.extension_member) {
        let name = q(&r.name);
        let kind = match r.kind {
            'v' => "VIEW",
            'm' => "MATERIALIZED VIEW",
            'S' => "SEQUENCE",
            'f' => "FOREIGN TABLE",
            'c' => "TYPE",
            _ => "TABLE",
        };
        if r.kind != 'c' {
            b.comment(format!("{kind} {name}"), &r.comment);
        }
        for c in b.cols.get(&r.oid).cloned().unwrap_or_default() {
            b.comment(format!("COLUMN {name}.{}", q(&c.name)), &c.comment);
        }
    }
    for t in d.types.iter().filter(|t| !t.extension_member) {
        let kind = if t.kind == 'd' { "DOMAIN" } else { "TYPE" };
        b.comment(format!("{kind} {}", q(&t.name)), &t.comment);
    }
    for f in d.functions.iter().filter(|f| f.copied()) {
        b.comment(format!("{} {}", f.sql_kind(), f.signature()), &f.comment);
    }
    for c in &d.constraints {
        if c.rel != 0 && b.rels.contains_key(&c.rel) && c.parent == 0 {
            b.comment(
                format!("CONSTRAINT {} ON {}", q(&c.name), b.rel_name(c.rel)),
                &c.comment,
            );
        } else if c.type_oid != 0
            && let Some(t) = d.types.iter().find(|t| t.oid == c.type_oid)
        {
            b.comment(
                format!("CONSTRAINT {} ON DOMAIN {}", q(&c.name), q(&t.name)),
                &c.comment,
            );
        }
    }
    for i in &d.indexes {
        if i.constraint.is_none() || i.comment.is_some() {
            b.comment(format!("INDEX {}", q(&i.name)), &i.comment);
        }
    }

    // Owners, then privileges (ALTER OWNER rewrites existing grants, so
    // grants come after it).
    for r in d.relations.iter().filter(|r| !r.extension_member) {
        let name = q(&r.name);
        let owned_seq = r.kind == 'S'
            && d.sequences
                .iter()
                .any(|s| s.oid == r.oid && s.owned_by.is_some());
        let kind = match r.kind {
            'v' => "VIEW",
            'm' => "MATERIALIZED VIEW",
            'S' => "SEQUENCE",
            'c' => continue,
            'f' => continue,
            _ => "TABLE",
        };
        if !owned_seq {
            b.owner(kind, &name, &r.owner);
        }
    }
    for f in d.functions.iter().filter(|f| f.copied()) {
        b.owner(f.sql_kind(), &f.signature(), &f.owner);
    }
    for t in d
        .types
        .iter()
        .filter(|t| !t.extension_member && t.kind != 'b')
    {
        let kind = if t.kind == 'd' { "DOMAIN" } else { "TYPE" };
        b.owner(kind, &q(&t.name), &t.owner);
    }
    for r in d
        .relations
        .iter()
        .filter(|r| !r.extension_member && r.has_acl)
    {
        let target = if r.kind == 'S' {
            format!("SEQUENCE {}", q(&r.name))
        } else {
            format!("TABLE {}", q(&r.name))
        };
        b.grants(('r', r.oid, 0), &target, &r.owner);
    }
    let mut col_grants: Vec<(&GrantKey, &Vec<Grant>)> =
        d.grants.iter().filter(|(k, _)| k.0 == 'a').collect();
    col_grants.sort_by_key(|(k, _)| (k.1, k.2));
    for ((_, rel, num), list) in col_grants {
        let Some(c) = d.columns.iter().find(|c| c.rel == *rel && c.num == *num) else {
            continue;
        };
        for g in list {
            b.plan.post.push(Stmt {
                what: format!("privilege on column {}", c.name),
                sql: format!(
                    "GRANT {} ({}) ON TABLE {} TO {}{}",
                    g.privilege,
                    q(&c.name),
                    b.rel_name(*rel),
                    g.grantee,
                    if g.grantable {
                        " WITH GRANT OPTION"
                    } else {
                        ""
                    }
                ),
            });
        }
    }
    for f in d.functions.iter().filter(|f| f.copied() && f.has_acl) {
        let target = format!("{} {}", f.sql_kind(), f.signature());
        b.grants(('p', f.oid, 0), &target, &f.owner);
    }
    for t in d
        .types
        .iter()
        .filter(|t| !t.extension_member && t.has_acl && t.kind != 'b')
    {
        let kind = if t.kind == 'd' { "DOMAIN" } else { "TYPE" };
        let target = format!("{kind} {}", q(&t.name));
        b.grants(('t', t.oid, 0), &target, &t.owner);
    }
    let schema = q(b.tmp);
    if d.owner != d.current_user {
        b.plan.post.push(Stmt {
            what: format!("owner of schema {}", b.tmp),
            sql: format!("ALTER SCHEMA {schema} OWNER TO {}", q(&d.owner)),
        });
    }
    if d.has_acl {
        let nsp_oid = d
            .grants
            .keys()
            .find(|k| k.0 == 'n')
            .map(|k| k.1)
            .unwrap_or(0);
        let owner = d.owner.clone();
        b.grants(('n', nsp_oid, 0), &format!("SCHEMA {schema}"), &owner);
    }
    for da in &d.default_acls {
        let objects = match da.objtype {
            'r' => "TABLES",
            'S' => "SEQUENCES",
            'f' => "FUNCTIONS",
            'T' => "TYPES",
            _ => "SCHEMAS",
        };
        b.plan.post.push(Stmt {
            what: "default privileges".into(),
            sql: format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {schema} GRANT {} ON {objects} TO {}{}",
                da.role,
                da.grant.privilege,
                da.grant.grantee,
                if da.grant.grantable {
                    " WITH GRANT OPTION"
                } else {
                    ""
                }
            ),
        });
    }

    // Anything that still names the source after deparsing does so inside
    // a string or a function body: the copy cannot follow it.
    let mut seen = HashSet::new();
    for s in b.plan.pre.iter().chain(b.plan.post.iter()) {
        if s.what.starts_with("function ") || s.what.starts_with("privilege") {
            continue;
        }
        if mentions(&s.sql, src) && seen.insert(s.what.clone()) {
            b.plan.warnings.push(format!(
                "{} names schema {src} in its definition; the copy keeps that text, so it still refers to {src}",
                s.what
            ));
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_finds_the_schema_as_a_word_only() {
        assert!(mentions("select * from t_01.docs", "t_01"));
        assert!(mentions("SELECT * FROM T_01.docs", "t_01"));
        assert!(!mentions("select * from t_012.docs", "t_01"));
        assert!(!mentions("select * from xt_01", "t_01"));
        assert!(mentions("'\"My Tenant\".x'", "My Tenant"));
        assert!(!mentions("my tenant", "My Tenant"));
    }

    #[test]
    fn search_path_lines_are_remapped_and_nothing_else() {
        let def = "CREATE FUNCTION f()\n SET search_path TO 't1', 'public'\nAS $$select 't1'$$";
        let out = remap_search_path(def, "t1", "t2");
        assert!(out.contains("SET search_path TO 't2', 'public'"));
        assert!(out.contains("select 't1'"));
    }

    #[test]
    fn large_tables_are_split_into_block_ranges() {
        let t = |name: &str, bytes: i64| DataTask {
            table: name.into(),
            columns: "a".into(),
            select: "a".into(),
            overriding: false,
            bytes,
            est_rows: 100,
            blocks: None,
        };
        let out = split_large(vec![t("big", 400 << 20), t("small", 1 << 20)], 2, 8192);
        let big: Vec<_> = out.iter().filter(|t| t.table == "big").collect();
        assert!(big.len() >= 2);
        assert_eq!(
            big.iter().filter(|t| t.blocks.unwrap().1.is_none()).count(),
            1
        );
        assert_eq!(
            big.iter().find(|t| t.blocks.unwrap().0 == 0).map(|_| 1),
            Some(1)
        );
    }
}
