//! Everything after the rows: indexes, constraints, foreign keys,
//! triggers, rules, policies, statistics, sequence values, comments,
//! owners and privileges, in the order the copy runs them.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};

use super::{Builder, Stmt, enabled_state, lit, mentions, strip_semicolon};
use crate::copy::catalog::{Constraint, Grant, GrantKey, Index};
use crate::ident::quote_ident as q;

/// The post-data statements the indexes add, in the order they run.
#[derive(Default)]
struct IndexPost {
    /// Constraints of plain tables (those on a unique index use it).
    leaf_constraints: Vec<Stmt>,
    /// Indexes and constraints of partitioned tables (`ONLY` the parent).
    parent_indexes: Vec<Stmt>,
    /// Partitions' indexes attached to their parent's.
    attach: Vec<Stmt>,
}

/// `ALTER TABLE ONLY … ADD CONSTRAINT … PRIMARY KEY|UNIQUE USING INDEX`.
fn constraint_using_index(table: &str, c: &Constraint, i: &Index) -> Stmt {
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
    Stmt {
        what: format!("constraint {} on {}", c.name, table),
        sql: format!(
            "ALTER TABLE ONLY {table} ADD CONSTRAINT {} {word} USING INDEX {}{extra}",
            q(&c.name),
            q(&i.name)
        ),
    }
}

/// `ALTER TABLE ONLY … ADD CONSTRAINT` with the constraint's definition.
fn add_constraint(table: &str, c: &Constraint) -> Stmt {
    Stmt {
        what: format!("constraint {} on {}", c.name, table),
        sql: format!(
            "ALTER TABLE ONLY {table} ADD CONSTRAINT {} {}",
            q(&c.name),
            c.def
        ),
    }
}

/// The index's own definition.
fn create_index(i: &Index) -> Stmt {
    Stmt {
        what: format!("index {}", i.name),
        sql: i.def.clone(),
    }
}

impl<'a> Builder<'a> {
    /// Indexes. Those of plain tables and materialized views are built in
    /// parallel (a unique constraint's index too, attached to its
    /// constraint afterwards); those of partitioned tables are created ONLY
    /// on the parent and their partitions' indexes attached, as pg_dump
    /// does.
    pub(super) fn indexes(&mut self) {
        let d = self.d;
        let cons: HashMap<(&str, i64), &Constraint> = d
            .constraints
            .iter()
            .filter(|c| c.rel != 0)
            .map(|c| ((c.name.as_str(), c.rel), c))
            .collect();
        let mut idx_sorted: Vec<&Index> = d
            .indexes
            .iter()
            .filter(|i| self.rels.get(&i.rel).is_some_and(|r| !r.extension_member))
            .collect();
        idx_sorted.sort_by_key(|i| Reverse(i.table_bytes));
        let idx_names: HashMap<i64, &str> =
            d.indexes.iter().map(|i| (i.oid, i.name.as_str())).collect();
        let mut out = IndexPost::default();
        for i in &idx_sorted {
            if !i.valid && i.kind == 'i' {
                self.plan.warnings.push(format!(
                    "index {} is invalid (a failed CREATE INDEX CONCURRENTLY?) and is not copied",
                    i.name
                ));
                continue;
            }
            let con = i
                .constraint
                .as_deref()
                .and_then(|n| cons.get(&(n, i.rel)).copied());
            self.index(i, con, &mut out);
            if let Some(p) = i.parent.and_then(|p| idx_names.get(&p)) {
                out.attach.push(Stmt {
                    what: format!("index {} under {}", i.name, p),
                    sql: format!("ALTER INDEX {} ATTACH PARTITION {}", q(p), q(&i.name)),
                });
            }
        }
        self.plan.post.extend(out.leaf_constraints);
        self.plan.post.extend(out.parent_indexes);
        self.plan.post.extend(out.attach);
    }

    /// One index (and the constraint it backs, if any).
    fn index(&mut self, i: &Index, con: Option<&Constraint>, out: &mut IndexPost) {
        let table = self.rel_name(i.rel);
        match (con, self.is_partitioned(i.rel)) {
            (Some(c), false) if c.kind == 'p' || c.kind == 'u' => {
                self.plan.indexes.push(create_index(i));
                out.leaf_constraints
                    .push(constraint_using_index(&table, c, i));
            }
            (Some(c), false) => out.leaf_constraints.push(add_constraint(&table, c)),
            (Some(c), true) => out.parent_indexes.push(add_constraint(&table, c)),
            (None, true) => out.parent_indexes.push(create_index(i)),
            (None, false) => self.plan.indexes.push(create_index(i)),
        }
    }

    /// Check constraints not validated in the source stay NOT VALID.
    pub(super) fn check_constraints(&mut self) {
        let d = self.d;
        for c in d
            .constraints
            .iter()
            .filter(|c| c.rel != 0 && c.kind == 'c' && c.is_local && !c.validated)
        {
            let only = if self.is_partitioned(c.rel) {
                ""
            } else {
                "ONLY "
            };
            self.plan.post.push(Stmt {
                what: format!("constraint {}", c.name),
                sql: format!(
                    "ALTER TABLE {only}{} ADD CONSTRAINT {} {}",
                    self.rel_name(c.rel),
                    q(&c.name),
                    c.def
                ),
            });
        }
    }

    /// Foreign keys, added `NOT VALID` and validated afterwards.
    pub(super) fn foreign_keys(&mut self) {
        let d = self.d;
        for c in d.constraints.iter().filter(|c| {
            c.rel != 0 && c.kind == 'f' && c.parent == 0 && self.rels.contains_key(&c.rel)
        }) {
            let only = if self.is_partitioned(c.rel) {
                ""
            } else {
                "ONLY "
            };
            let table = self.rel_name(c.rel);
            // Added NOT VALID, then validated: the validating scan then holds
            // only SHARE UPDATE EXCLUSIVE on the copy and ROW SHARE on the
            // referenced table, so writes to a referenced shared table go on.
            self.plan.post.push(Stmt {
                what: format!("foreign key {}", c.name),
                sql: format!(
                    "ALTER TABLE {only}{table} ADD CONSTRAINT {} {}{}",
                    q(&c.name),
                    c.def,
                    if c.validated { " NOT VALID" } else { "" }
                ),
            });
            if c.validated {
                self.plan.validate.push(Stmt {
                    what: format!("foreign key {}", c.name),
                    sql: format!(
                        "ALTER TABLE {only}{table} VALIDATE CONSTRAINT {}",
                        q(&c.name)
                    ),
                });
            }
        }
    }

    /// The index each table is clustered on.
    pub(super) fn clusters(&mut self) {
        let d = self.d;
        for i in d.indexes.iter().filter(|i| i.clustered) {
            self.plan.post.push(Stmt {
                what: format!("cluster index of {}", self.rel_name(i.rel)),
                sql: format!(
                    "ALTER TABLE {} CLUSTER ON {}",
                    self.rel_name(i.rel),
                    q(&i.name)
                ),
            });
        }
    }

    /// Replica identities other than the default.
    pub(super) fn replica_identities(&mut self) {
        let d = self.d;
        for r in d.relations.iter().filter(|r| !r.extension_member) {
            let name = q(&r.name);
            match (r.kind, r.replident) {
                ('r' | 'p' | 'm', 'f') => self.plan.post.push(Stmt {
                    what: format!("replica identity of {}", r.name),
                    sql: format!("ALTER TABLE ONLY {name} REPLICA IDENTITY FULL"),
                }),
                ('r' | 'p' | 'm', 'n') => self.plan.post.push(Stmt {
                    what: format!("replica identity of {}", r.name),
                    sql: format!("ALTER TABLE ONLY {name} REPLICA IDENTITY NOTHING"),
                }),
                ('r' | 'p' | 'm', 'i') => {
                    if let Some(i) = d.indexes.iter().find(|i| i.rel == r.oid && i.replident) {
                        self.plan.post.push(Stmt {
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
    }

    /// Triggers, their states and comments.
    pub(super) fn triggers(&mut self) {
        let d = self.d;
        for t in &d.triggers {
            let table = self.rel_name(t.rel);
            self.plan.post.push(Stmt {
                what: format!("trigger {} on {}", t.name, table),
                sql: t.def.clone(),
            });
            if let Some(s) = enabled_state(t.enabled, "TRIGGER") {
                self.plan.post.push(Stmt {
                    what: format!("state of trigger {}", t.name),
                    sql: format!("ALTER TABLE {table} {s} {}", q(&t.name)),
                });
            }
            self.comment(format!("TRIGGER {} ON {table}", q(&t.name)), &t.comment);
        }
    }

    /// Rules, their states and comments.
    pub(super) fn rules(&mut self) {
        let d = self.d;
        for r in &d.rules {
            let table = self.rel_name(r.rel);
            self.plan.post.push(Stmt {
                what: format!("rule {} on {}", r.name, table),
                sql: strip_semicolon(&r.def).to_string(),
            });
            if let Some(s) = enabled_state(r.enabled, "RULE") {
                self.plan.post.push(Stmt {
                    what: format!("state of rule {}", r.name),
                    sql: format!("ALTER TABLE {table} {s} {}", q(&r.name)),
                });
            }
            self.comment(format!("RULE {} ON {table}", q(&r.name)), &r.comment);
        }
    }

    /// Row security policies and their comments.
    pub(super) fn policies(&mut self) {
        let d = self.d;
        for p in &d.policies {
            let table = self.rel_name(p.rel);
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
            self.plan.post.push(Stmt {
                what: format!("policy {} on {table}", p.name),
                sql,
            });
            self.comment(format!("POLICY {} ON {table}", q(&p.name)), &p.comment);
        }
    }

    /// Row level security switched on (and forced).
    pub(super) fn row_security(&mut self) {
        let d = self.d;
        for r in d.relations.iter().filter(|r| !r.extension_member) {
            let name = q(&r.name);
            if r.row_security {
                self.plan.post.push(Stmt {
                    what: format!("row level security of {}", r.name),
                    sql: format!("ALTER TABLE {name} ENABLE ROW LEVEL SECURITY"),
                });
            }
            if r.force_row_security {
                self.plan.post.push(Stmt {
                    what: format!("row level security of {}", r.name),
                    sql: format!("ALTER TABLE {name} FORCE ROW LEVEL SECURITY"),
                });
            }
        }
    }

    /// Extended statistics, their comments and owners.
    pub(super) fn statistics(&mut self) {
        let d = self.d;
        for s in &d.statistics {
            let unqualified = s
                .head
                .split_once('.')
                .map(|(_, n)| n.to_string())
                .unwrap_or_else(|| s.head.clone());
            self.plan.post.push(Stmt {
                what: format!("statistics {}", s.name),
                sql: s.def.replacen(&s.head, &unqualified, 1),
            });
            self.comment(format!("STATISTICS {unqualified}"), &s.comment);
            self.owner("STATISTICS", &unqualified, &s.owner);
        }
    }

    /// Sequences: ownership and current values (the next value in the copy
    /// is the next value in the source).
    pub(super) fn sequence_settings(&mut self) {
        let d = self.d;
        for s in &d.sequences {
            let Some(r) = self.rels.get(&s.oid) else {
                continue;
            };
            if r.extension_member {
                continue;
            }
            if let (false, Some((tbl, col))) = (s.identity, s.owned_by)
                && let Some(c) = d.columns.iter().find(|c| c.rel == tbl && c.num == col)
            {
                self.plan.post.push(Stmt {
                    what: format!("owner column of sequence {}", r.name),
                    sql: format!(
                        "ALTER SEQUENCE {} OWNED BY {}.{}",
                        q(&r.name),
                        self.rel_name(tbl),
                        q(&c.name)
                    ),
                });
            }
            if let Some((v, called)) = d.sequence_values.get(&s.oid) {
                self.plan.post.push(Stmt {
                    what: format!("value of sequence {}", r.name),
                    sql: format!(
                        "SELECT pg_catalog.setval({}, {v}, {called})",
                        lit(&q(&r.name))
                    ),
                });
            }
        }
    }

    /// Comments on relations, columns, types, functions, constraints, indexes.
    pub(super) fn comments(&mut self) {
        let d = self.d;
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
                self.comment(format!("{kind} {name}"), &r.comment);
            }
            for c in self.cols.get(&r.oid).cloned().unwrap_or_default() {
                self.comment(format!("COLUMN {name}.{}", q(&c.name)), &c.comment);
            }
        }
        for t in d.types.iter().filter(|t| !t.extension_member) {
            let kind = if t.kind == 'd' { "DOMAIN" } else { "TYPE" };
            self.comment(format!("{kind} {}", q(&t.name)), &t.comment);
        }
        for f in d.functions.iter().filter(|f| f.copied()) {
            self.comment(format!("{} {}", f.sql_kind(), f.signature()), &f.comment);
        }
        for c in &d.constraints {
            if c.rel != 0 && self.rels.contains_key(&c.rel) && c.parent == 0 {
                self.comment(
                    format!("CONSTRAINT {} ON {}", q(&c.name), self.rel_name(c.rel)),
                    &c.comment,
                );
            } else if c.type_oid != 0
                && let Some(t) = d.types.iter().find(|t| t.oid == c.type_oid)
            {
                self.comment(
                    format!("CONSTRAINT {} ON DOMAIN {}", q(&c.name), q(&t.name)),
                    &c.comment,
                );
            }
        }
        for i in &d.indexes {
            if i.constraint.is_none() || i.comment.is_some() {
                self.comment(format!("INDEX {}", q(&i.name)), &i.comment);
            }
        }
    }

    /// Owners, before privileges (ALTER OWNER rewrites existing grants, so
    /// grants come after it).
    pub(super) fn owners(&mut self) {
        let d = self.d;
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
                self.owner(kind, &name, &r.owner);
            }
        }
        for f in d.functions.iter().filter(|f| f.copied()) {
            self.owner(f.sql_kind(), &f.signature(), &f.owner);
        }
        for t in d
            .types
            .iter()
            .filter(|t| !t.extension_member && t.kind != 'b')
        {
            let kind = if t.kind == 'd' { "DOMAIN" } else { "TYPE" };
            self.owner(kind, &q(&t.name), &t.owner);
        }
    }

    /// Privileges on relations, columns, functions and types.
    pub(super) fn privileges(&mut self) {
        let d = self.d;
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
            self.grants(('r', r.oid, 0), &target, &r.owner);
        }
        let mut col_grants: Vec<(&GrantKey, &Vec<Grant>)> =
            d.grants.iter().filter(|(k, _)| k.0 == 'a').collect();
        col_grants.sort_by_key(|(k, _)| (k.1, k.2));
        for ((_, rel, num), list) in col_grants {
            let Some(c) = d.columns.iter().find(|c| c.rel == *rel && c.num == *num) else {
                continue;
            };
            for g in list {
                self.plan.post.push(Stmt {
                    what: format!("privilege on column {}", c.name),
                    sql: format!(
                        "GRANT {} ({}) ON TABLE {} TO {}{}",
                        g.privilege,
                        q(&c.name),
                        self.rel_name(*rel),
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
            self.grants(('p', f.oid, 0), &target, &f.owner);
        }
        for t in d
            .types
            .iter()
            .filter(|t| !t.extension_member && t.has_acl && t.kind != 'b')
        {
            let kind = if t.kind == 'd' { "DOMAIN" } else { "TYPE" };
            let target = format!("{kind} {}", q(&t.name));
            self.grants(('t', t.oid, 0), &target, &t.owner);
        }
    }

    /// The schema's owner and privileges.
    pub(super) fn schema_settings(&mut self) {
        let d = self.d;
        let schema = q(self.tmp);
        if d.owner != d.current_user {
            self.plan.post.push(Stmt {
                what: format!("owner of schema {}", self.tmp),
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
            self.grants(('n', nsp_oid, 0), &format!("SCHEMA {schema}"), &owner);
        }
    }

    /// Default privileges granted in the schema.
    pub(super) fn default_privileges(&mut self) {
        let d = self.d;
        let schema = q(self.tmp);
        for da in &d.default_acls {
            let objects = match da.objtype {
                'r' => "TABLES",
                'S' => "SEQUENCES",
                'f' => "FUNCTIONS",
                'T' => "TYPES",
                _ => "SCHEMAS",
            };
            self.plan.post.push(Stmt {
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
    }

    /// Anything that still names the source after deparsing does so inside
    /// a string or a function body: the copy cannot follow it.
    pub(super) fn source_warnings(&mut self, src: &str) {
        let mut seen = HashSet::new();
        for s in self.plan.pre.iter().chain(self.plan.post.iter()) {
            if s.what.starts_with("function ") || s.what.starts_with("privilege") {
                continue;
            }
            if mentions(&s.sql, src) && seen.insert(s.what.clone()) {
                self.plan.warnings.push(format!(
                "{} names schema {src} in its definition; the copy keeps that text, so it still refers to {src}",
                s.what
            ));
            }
        }
    }
}
