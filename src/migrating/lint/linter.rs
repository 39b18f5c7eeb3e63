//! The state of one file's lint (the tables it created so far and the
//! findings), the dispatch over statement kinds, and the rules about
//! existing tables and transactions.

use std::path::Path;

use pg_query::protobuf::node::Node as N;
use pg_query::protobuf::{
    AlterTableCmd, AlterTableStmt, AlterTableType, ColumnDef, ConstrType, Constraint, DropStmt,
    IndexStmt, Node, ObjectType, PartitionCmd, RangeVar, ReindexObjectType, ReindexStmt,
    RenameStmt, TransactionStmt, TransactionStmtKind,
};

use super::walk::{name_parts, object_name, rel_name};
use super::{Finding, Rule, Scope};

/// A table created earlier in the file: `schema` is empty when unqualified.
struct Created {
    schema: String,
    name: String,
}

/// The state of one file's lint: the tables it created so far and the
/// findings.
pub(super) struct Linter<'a> {
    file: &'a Path,
    no_tx: bool,
    scope: Scope<'a>,
    created: Vec<Created>,
    findings: Vec<Finding>,
}

impl<'a> Linter<'a> {
    /// A lint of `file`, with no table created and no finding yet.
    pub(super) fn new(file: &'a Path, no_tx: bool, scope: Scope<'a>) -> Self {
        Linter {
            file,
            no_tx,
            scope,
            created: Vec::new(),
            findings: Vec::new(),
        }
    }

    /// The findings, in the order they were found.
    pub(super) fn into_findings(self) -> Vec<Finding> {
        self.findings
    }

    pub(super) fn push(&mut self, line: usize, rule: Rule, message: String) {
        self.findings
            .push(Finding::new(self.file, line, rule, message));
    }

    /// True when `schema.name` (schema empty when unqualified) was created
    /// earlier in the file.
    pub(super) fn is_new(&self, schema: &str, name: &str) -> bool {
        self.created
            .iter()
            .any(|c| c.name == name && (c.schema.is_empty() || c.schema == schema))
    }

    fn is_new_rel(&self, rel: Option<&RangeVar>) -> bool {
        rel.is_some_and(|r| self.is_new(&r.schemaname, &r.relname))
    }

    /// Applies the rules to one statement starting at `line`.
    pub(super) fn statement(&mut self, node: &N, line: usize) {
        match node {
            N::CreateStmt(c) => {
                if let Some(r) = &c.relation {
                    self.created.push(Created {
                        schema: r.schemaname.clone(),
                        name: r.relname.clone(),
                    });
                }
            }
            N::IndexStmt(i) => self.index(i, line),
            N::DropStmt(d) => self.drop(d, line),
            N::ReindexStmt(r) => self.reindex(r, line),
            N::AlterTableStmt(a) => self.alter_table(a, line),
            N::RenameStmt(r) => self.rename(r, line),
            N::TransactionStmt(t) => self.transaction(t, line),
            _ => {}
        }
        if let Scope::Tenant { shared_schema } = self.scope {
            self.tenant_reach(node, line, shared_schema);
        }
    }

    fn index(&mut self, i: &IndexStmt, line: usize) {
        let what = if i.unique {
            "CREATE UNIQUE INDEX"
        } else {
            "CREATE INDEX"
        };
        let name = if i.idxname.is_empty() {
            String::new()
        } else {
            format!(" {}", i.idxname)
        };
        let table = rel_name(i.relation.as_ref());
        if i.concurrent {
            if !self.no_tx {
                self.push(
                    line,
                    Rule::ConcurrentlyInTransaction,
                    format!(
                        "{what} CONCURRENTLY{name} on {table} in a file without `-- no-transaction` (PostgreSQL refuses it inside a transaction block)"
                    ),
                );
            }
        } else if !self.is_new_rel(i.relation.as_ref()) {
            self.push(
                line,
                Rule::IndexNotConcurrent,
                format!(
                    "{what}{name} on existing table {table} without CONCURRENTLY (writes to it wait until the build ends)"
                ),
            );
        }
    }

    fn drop(&mut self, d: &DropStmt, line: usize) {
        let kind = d.remove_type();
        if d.concurrent && !self.no_tx {
            let names = d.objects.iter().map(object_name).collect::<Vec<_>>();
            self.push(
                line,
                Rule::ConcurrentlyInTransaction,
                format!(
                    "DROP INDEX CONCURRENTLY {} in a file without `-- no-transaction` (PostgreSQL refuses it inside a transaction block)",
                    names.join(", ")
                ),
            );
        }
        if kind == ObjectType::ObjectTable {
            for object in &d.objects {
                let parts = name_parts(object);
                let Some((name, qualifiers)) = parts.split_last() else {
                    continue;
                };
                let schema = qualifiers.last().map(String::as_str).unwrap_or("");
                if !self.is_new(schema, name) {
                    self.push(
                        line,
                        Rule::DropTable,
                        format!(
                            "DROP TABLE {} (running application code that still uses it fails at once)",
                            parts.join(".")
                        ),
                    );
                }
            }
        }
    }

    fn reindex(&mut self, r: &ReindexStmt, line: usize) {
        if self.no_tx || !r.params.iter().any(is_concurrently_on) {
            return;
        }
        let target = match r.kind() {
            ReindexObjectType::ReindexObjectIndex => "INDEX",
            ReindexObjectType::ReindexObjectTable => "TABLE",
            ReindexObjectType::ReindexObjectSchema => "SCHEMA",
            ReindexObjectType::ReindexObjectSystem => "SYSTEM",
            ReindexObjectType::ReindexObjectDatabase => "DATABASE",
            ReindexObjectType::Undefined => "",
        };
        let name = match &r.relation {
            Some(rel) => rel_name(Some(rel)),
            None => r.name.clone(),
        };
        self.push(
            line,
            Rule::ConcurrentlyInTransaction,
            format!(
                "REINDEX {target} CONCURRENTLY {name} in a file without `-- no-transaction` (PostgreSQL refuses it inside a transaction block)"
            ),
        );
    }

    fn alter_table(&mut self, a: &AlterTableStmt, line: usize) {
        if a.objtype() != ObjectType::ObjectTable {
            return;
        }
        let table = rel_name(a.relation.as_ref());
        let existing = !self.is_new_rel(a.relation.as_ref());
        for cmd in &a.cmds {
            if let Some(N::AlterTableCmd(cmd)) = &cmd.node {
                self.alter_table_cmd(cmd, &table, existing, line);
            }
        }
    }

    fn alter_table_cmd(&mut self, cmd: &AlterTableCmd, table: &str, existing: bool, line: usize) {
        let def = cmd.def.as_ref().and_then(|d| d.node.as_ref());
        match cmd.subtype() {
            AlterTableType::AtAddColumn if existing => {
                if let Some(N::ColumnDef(col)) = def {
                    self.add_column(col, table, line);
                }
            }
            AlterTableType::AtAlterColumnType if existing => self.push(
                line,
                Rule::ColumnTypeChange,
                format!(
                    "ALTER COLUMN {} TYPE on existing table {table} (can rewrite the table and its indexes under an ACCESS EXCLUSIVE lock)",
                    cmd.name
                ),
            ),
            AlterTableType::AtAddConstraint if existing => {
                if let Some(N::Constraint(c)) = def {
                    self.add_constraint(c, table, line);
                }
            }
            AlterTableType::AtDropColumn if existing => self.push(
                line,
                Rule::DropColumn,
                format!(
                    "DROP COLUMN {} on {table} (running application code that still reads or writes it fails at once)",
                    cmd.name
                ),
            ),
            AlterTableType::AtDetachPartition if !self.no_tx => {
                if let Some(N::PartitionCmd(p)) = def {
                    self.detach_partition(p, table, line);
                }
            }
            _ => {}
        }
    }

    /// `ADD CONSTRAINT` on an existing table.
    fn add_constraint(&mut self, c: &Constraint, table: &str, line: usize) {
        if !needs_not_valid(c) {
            return;
        }
        let kind = constraint_kind(c);
        let name = if c.conname.is_empty() {
            kind.to_string()
        } else {
            format!("CONSTRAINT {} {kind}", c.conname)
        };
        self.push(
            line,
            Rule::ConstraintWithoutNotValid,
            format!(
                "ADD {name} on existing table {table} without NOT VALID (every row is checked while writes wait)"
            ),
        );
    }

    /// `DETACH PARTITION` in a transactional file.
    fn detach_partition(&mut self, p: &PartitionCmd, table: &str, line: usize) {
        if !p.concurrent {
            return;
        }
        self.push(
            line,
            Rule::ConcurrentlyInTransaction,
            format!(
                "ALTER TABLE {table} DETACH PARTITION {} CONCURRENTLY in a file without `-- no-transaction` (PostgreSQL refuses it inside a transaction block)",
                rel_name(p.name.as_ref())
            ),
        );
    }

    fn add_column(&mut self, col: &ColumnDef, table: &str, line: usize) {
        let constraints = col.constraints.iter().filter_map(|n| match &n.node {
            Some(N::Constraint(c)) => Some(c.as_ref()),
            _ => None,
        });
        let mut not_null = col.is_not_null;
        let mut filled = col.raw_default.is_some() || !col.identity.is_empty() || is_serial(col);
        let mut foreign_keys = Vec::new();
        for c in constraints {
            match c.contype() {
                ConstrType::ConstrNotnull | ConstrType::ConstrPrimary => not_null = true,
                ConstrType::ConstrDefault
                | ConstrType::ConstrIdentity
                | ConstrType::ConstrGenerated => filled = true,
                ConstrType::ConstrForeign if !c.skip_validation => foreign_keys.push(c),
                _ => {}
            }
        }
        if not_null && !filled {
            self.push(
                line,
                Rule::AddColumnNotNullWithoutDefault,
                format!(
                    "ADD COLUMN {} NOT NULL without DEFAULT on existing table {table} (fails on every tenant whose table has rows)",
                    col.colname
                ),
            );
        }
        for fk in foreign_keys {
            self.push(
                line,
                Rule::ConstraintWithoutNotValid,
                format!(
                    "ADD COLUMN {} REFERENCES {} on existing table {table} (every row is checked while writes wait; a column constraint cannot be NOT VALID)",
                    col.colname,
                    rel_name(fk.pktable.as_ref())
                ),
            );
        }
    }

    fn rename(&mut self, r: &RenameStmt, line: usize) {
        let table = rel_name(r.relation.as_ref());
        let existing = !self.is_new_rel(r.relation.as_ref());
        match r.rename_type() {
            ObjectType::ObjectTable => {
                if existing {
                    self.push(
                        line,
                        Rule::RenameTable,
                        format!(
                            "ALTER TABLE {table} RENAME TO {} (running application code that uses the old name fails at once)",
                            r.newname
                        ),
                    );
                } else if let Some(rel) = &r.relation {
                    self.created.push(Created {
                        schema: rel.schemaname.clone(),
                        name: r.newname.clone(),
                    });
                }
            }
            ObjectType::ObjectColumn
                if r.relation_type() == ObjectType::ObjectTable && existing =>
            {
                self.push(
                    line,
                    Rule::RenameColumn,
                    format!(
                        "ALTER TABLE {table} RENAME COLUMN {} TO {} (running application code that uses the old name fails at once)",
                        r.subname, r.newname
                    ),
                );
            }
            _ => {}
        }
    }

    fn transaction(&mut self, t: &TransactionStmt, line: usize) {
        let keyword = match t.kind() {
            TransactionStmtKind::TransStmtBegin => "BEGIN",
            TransactionStmtKind::TransStmtStart => "START TRANSACTION",
            TransactionStmtKind::TransStmtCommit => "COMMIT",
            TransactionStmtKind::TransStmtRollback => "ROLLBACK",
            TransactionStmtKind::TransStmtPrepare => "PREPARE TRANSACTION",
            TransactionStmtKind::TransStmtCommitPrepared => "COMMIT PREPARED",
            TransactionStmtKind::TransStmtRollbackPrepared => "ROLLBACK PREPARED",
            // Savepoints nest inside the runner's transaction harmlessly.
            TransactionStmtKind::TransStmtSavepoint
            | TransactionStmtKind::TransStmtRelease
            | TransactionStmtKind::TransStmtRollbackTo
            | TransactionStmtKind::Undefined => return,
        };
        self.push(
            line,
            Rule::TransactionControl,
            format!(
                "{keyword} in a migration (tenantmig manages the transaction; this one ends or splits it, so the file no longer applies all or nothing with its history row)"
            ),
        );
    }
}

/// True for a `CONCURRENTLY` option that is on (`CONCURRENTLY`,
/// `CONCURRENTLY true`, `CONCURRENTLY 1`, ...).
fn is_concurrently_on(param: &Node) -> bool {
    let Some(N::DefElem(d)) = &param.node else {
        return false;
    };
    if !d.defname.eq_ignore_ascii_case("concurrently") {
        return false;
    }
    match d.arg.as_ref().and_then(|a| a.node.as_ref()) {
        None => true,
        Some(N::Boolean(b)) => b.boolval,
        Some(N::Integer(i)) => i.ival != 0,
        Some(N::String(s)) => !matches!(
            s.sval.to_ascii_lowercase().as_str(),
            "false" | "off" | "no" | "f" | "n" | "0"
        ),
        Some(_) => true,
    }
}

/// True for a foreign key or check constraint that would check existing rows.
fn needs_not_valid(c: &Constraint) -> bool {
    matches!(
        c.contype(),
        ConstrType::ConstrForeign | ConstrType::ConstrCheck
    ) && !c.skip_validation
}

/// `FOREIGN KEY`, `CHECK` or `constraint` for messages.
fn constraint_kind(c: &Constraint) -> &'static str {
    match c.contype() {
        ConstrType::ConstrForeign => "FOREIGN KEY",
        ConstrType::ConstrCheck => "CHECK",
        _ => "constraint",
    }
}

/// True for the `serial` types, whose columns get a default from a sequence.
fn is_serial(col: &ColumnDef) -> bool {
    let Some(t) = &col.type_name else {
        return false;
    };
    if t.names.len() != 1 {
        return false;
    }
    let name = object_name(&t.names[0]);
    matches!(
        name.as_str(),
        "serial" | "bigserial" | "smallserial" | "serial2" | "serial4" | "serial8"
    )
}
