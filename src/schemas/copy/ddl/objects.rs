//! The pre-data objects — types, sequences, functions, tables, views — in
//! dependency order, then the rows to copy.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use super::{
    Builder, CheckedTable, DataTask, Stmt, lit, mentions, rank, remap_search_path, strip_semicolon,
    with_options,
};
use crate::copy::catalog::{Column, Relation, SchemaDef, TypeDef};
use crate::ident::quote_ident as q;

/// A pre-data object: its rank (kind), name and statements.
pub(super) struct Node {
    rank: u8,
    name: String,
    stmts: Vec<Stmt>,
}

impl Node {
    fn new(kind: &str, name: &str, stmts: Vec<Stmt>) -> Self {
        Node {
            rank: rank(kind),
            name: name.to_string(),
            stmts,
        }
    }
}

/// `CREATE TYPE … AS ENUM`.
fn enum_sql(name: &str, t: &TypeDef) -> String {
    format!(
        "CREATE TYPE {name} AS ENUM ({})",
        t.labels
            .iter()
            .map(|l| lit(l))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// `CREATE TYPE … AS RANGE`.
fn range_sql(name: &str, t: &TypeDef) -> String {
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

impl<'a> Builder<'a> {
    /// Warnings for what the schema holds that is never copied.
    pub(super) fn uncopied_warnings(&mut self, src: &str) {
        let d = self.d;
        for u in &d.unsupported {
            self.plan.warnings.push(format!(
                "{u} is not copied (tenantmig does not copy this kind of object)"
            ));
        }
        for e in &d.extensions {
            self.plan.warnings.push(format!(
                "extension {e} is installed in schema {src}; its objects are not copied (install it into the copy with CREATE EXTENSION {e} SCHEMA ...)"
            ));
        }
    }

    /// `CREATE DOMAIN`; its check constraints not validated in the source
    /// go to `post_checks`, added after the rows.
    fn domain_sql(&self, name: &str, t: &TypeDef, post_checks: &mut Vec<Stmt>) -> String {
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
        for c in self
            .d
            .constraints
            .iter()
            .filter(|c| c.type_oid == t.oid && c.kind == 'c')
        {
            if c.validated {
                s.push_str(&format!(" CONSTRAINT {} {}", q(&c.name), c.def));
            } else {
                post_checks.push(Stmt {
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

    /// `CREATE TYPE … AS (…)` of a composite type.
    fn composite_sql(&self, name: &str, t: &TypeDef) -> String {
        let attrs: Vec<String> = self
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

    /// The types' nodes; returns the domain checks to add after the rows.
    pub(super) fn type_nodes(&mut self, nodes: &mut HashMap<i64, Node>) -> Vec<Stmt> {
        let mut post_domain_checks = Vec::new();
        for t in self.d.types.iter().filter(|t| !t.extension_member) {
            let name = q(&t.name);
            let sql = match t.kind {
                'e' => enum_sql(&name, t),
                'd' => self.domain_sql(&name, t, &mut post_domain_checks),
                'c' => self.composite_sql(&name, t),
                'r' => range_sql(&name, t),
                _ => {
                    self.plan.warnings.push(format!(
                        "base type {} is not copied (a C-language type belongs in an extension)",
                        t.name
                    ));
                    continue;
                }
            };
            // A composite type is keyed by its relation (row types map there).
            let key = if t.kind == 'c' { t.relid } else { t.oid };
            let what = format!("type {}", t.name);
            nodes.insert(key, Node::new("type", &t.name, vec![Stmt { what, sql }]));
        }
        post_domain_checks
    }

    /// The nodes of the sequences not owned by an identity column.
    pub(super) fn sequence_nodes(&mut self, nodes: &mut HashMap<i64, Node>) {
        for s in self.d.sequences.iter().filter(|s| !s.identity) {
            let Some(r) = self.rels.get(&s.oid) else {
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
            let stmt = Stmt {
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
            };
            nodes.insert(s.oid, Node::new("sequence", &r.name, vec![stmt]));
        }
    }

    /// The functions' nodes: their definitions, unqualified, with the
    /// `search_path` setting remapped.
    pub(super) fn function_nodes(&mut self, nodes: &mut HashMap<i64, Node>, src: &str, dst: &str) {
        for f in self.d.functions.iter().filter(|f| !f.extension_member) {
            let Some(def) = &f.def else {
                self.plan.warnings.push(format!(
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
                self.plan.warnings.push(format!(
                    "function {}({}) names schema {src} in its body; the copy keeps that text, so it still refers to {src}",
                    f.name, f.identity_args
                ));
            }
            let what = format!("function {}({})", f.name, f.identity_args);
            nodes.insert(
                f.oid,
                Node::new("function", &f.name, vec![Stmt { what, sql }]),
            );
        }
    }

    /// `CREATE VIEW` or `CREATE MATERIALIZED VIEW … WITH NO DATA`, and a
    /// view's column defaults.
    fn view_stmts(&self, r: &Relation) -> Vec<Stmt> {
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
        for c in self.cols.get(&r.oid).cloned().unwrap_or_default() {
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
        stmts
    }

    /// The nodes of the tables and views.
    pub(super) fn relation_nodes(&mut self, nodes: &mut HashMap<i64, Node>) {
        for r in self.d.relations.iter().filter(|r| !r.extension_member) {
            match r.kind {
                'r' | 'p' => {
                    nodes.insert(r.oid, Node::new("table", &r.name, self.table_stmts(r)));
                }
                'v' | 'm' => {
                    nodes.insert(r.oid, Node::new("view", &r.name, self.view_stmts(r)));
                }
                'f' => self.plan.warnings.push(format!(
                    "foreign table {} is not copied (recreate it with CREATE FOREIGN TABLE)",
                    r.name
                )),
                _ => {}
            }
        }
    }

    /// The nodes' statements in dependency order, and the refreshes of the
    /// populated materialized views (in the same order).
    pub(super) fn pre_data(&mut self, mut nodes: HashMap<i64, Node>, with_data: bool) {
        let order = dependency_order(self.d, &nodes);
        self.plan.objects = order.len();
        for oid in &order {
            let n = nodes.remove(oid).expect("node");
            self.plan.pre.extend(n.stmts);
            if let Some(r) = self.rels.get(oid)
                && r.kind == 'm'
                && r.populated
                && with_data
            {
                self.plan.refresh.push(Stmt {
                    what: format!("materialized view {}", r.name),
                    sql: format!("REFRESH MATERIALIZED VIEW {}", q(&r.name)),
                });
            }
        }
    }

    /// Rows: every plain table (partitions included; partitioned parents
    /// hold no rows), largest first.
    pub(super) fn data_tasks(&mut self, with_data: bool, history_table: &str) {
        let d = self.d;
        for r in d
            .relations
            .iter()
            .filter(|r| r.kind == 'r' && !r.extension_member)
        {
            let cols = self.cols.get(&r.oid).cloned().unwrap_or_default();
            let copied: Vec<String> = cols
                .iter()
                .filter(|c| c.generated.is_none())
                .map(|c| q(&c.name))
                .collect();
            // Without data, the history table's rows still come along: they
            // say which version the copy's structure is at.
            let wanted = with_data || r.name == history_table;
            if wanted {
                self.plan.checked.push(CheckedTable {
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
                self.plan.data.push(DataTask {
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
        self.plan.data.sort_by_key(|t| Reverse(t.bytes));
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
            self.partition_column_stmts(r, p, &cols, &mut out);
        }
        column_settings(r, &cols, &mut out);
        out
    }

    /// The defaults and `NOT NULL`s in which partition `r`'s columns differ
    /// from those of its parent `p`.
    fn partition_column_stmts(&self, r: &Relation, p: i64, cols: &[&Column], out: &mut Vec<Stmt>) {
        let name = q(&r.name);
        let pcols: HashMap<&str, &&Column> = self
            .cols
            .get(&p)
            .map(|v| v.iter().map(|c| (c.name.as_str(), c)).collect())
            .unwrap_or_default();
        for c in cols {
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
}

/// Dependency order (Kahn), ties broken by kind then name so the order is
/// stable; a cycle falls back to that order.
fn dependency_order(d: &SchemaDef, nodes: &HashMap<i64, Node>) -> Vec<i64> {
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
    order
}

/// Storage, statistics target, compression and options of the columns of
/// `r` that differ from the defaults.
fn column_settings(r: &Relation, cols: &[&Column], out: &mut Vec<Stmt>) {
    let name = q(&r.name);
    for c in cols {
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
}
