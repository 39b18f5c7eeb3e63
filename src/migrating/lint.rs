//! Lints migrations before they run: statements that fail on tables with
//! rows, refuse to run where they are placed, hold locks that stop a tenant's
//! writes, or break application code that is still running.
//!
//! A tenant migration runs once per tenant schema, so one unsafe statement
//! is multiplied by thousands of schemas: a write-blocking index build or a
//! column that fails on every non-empty table is found out tenant by tenant,
//! in production. This module finds such statements beforehand, from the
//! SQL alone, without a database.
//!
//! The SQL is read with PostgreSQL's own parser (through the `pg_query`
//! crate, which embeds it), not with regular expressions: statements are
//! found exactly as the server would find them, with comments, quoting,
//! dollar-quoted bodies and every optional clause handled, and each rule
//! looks at the parse tree (the index's `concurrent` flag, a constraint's
//! `skip_validation`, the kind of `ALTER TABLE` command), not at spelling.
//!
//! An *existing table* is one the file does not create itself: a table made
//! by a `CREATE TABLE` earlier in the same file is new and empty, so locking
//! it, rewriting it or adding constraints to it is harmless, and no rule
//! about existing tables fires for it. Names are compared as the parser gives
//! them (case-sensitively, after PostgreSQL's folding of unquoted names). A
//! `CREATE TABLE` without a schema matches the name in any schema; one with
//! a schema matches only that schema. `CREATE TABLE IF NOT EXISTS` counts as
//! creating the table, and a new table renamed later in the file stays new
//! under its new name.
//!
//! Findings are advice: [`Severity::Error`] marks a statement that will
//! fail or is unsafe to run at all, [`Severity::Warning`] one that works but
//! has a safer form, given with each finding.

use std::fmt;
use std::path::{Path, PathBuf};

use pg_query::protobuf::node::Node as N;
use pg_query::protobuf::{
    AlterTableCmd, AlterTableStmt, AlterTableType, ColumnDef, ConstrType, Constraint, DropStmt,
    IndexStmt, Node, ObjectType, RangeVar, ReindexObjectType, ReindexStmt, RenameStmt,
    TransactionStmt, TransactionStmtKind, VariableSetKind,
};
use serde::Serialize;

use crate::migration::Migration;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The statement works, but there is a safer way to make the change.
    Warning,
    /// The statement will fail, or is unsafe to run at all.
    Error,
}

impl Severity {
    /// The lower-case name used in messages and JSON (`warning`, `error`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A lint rule. Serialized as its code, e.g. `index-not-concurrent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// The file is not valid SQL for PostgreSQL's parser.
    ParseError,
    /// `CREATE INDEX` without `CONCURRENTLY` on an existing table: writes to
    /// the table wait until the build ends.
    IndexNotConcurrent,
    /// A `CONCURRENTLY` operation (`CREATE INDEX`, `DROP INDEX`, `REINDEX`,
    /// `DETACH PARTITION`) in a file that runs in a transaction, which
    /// PostgreSQL refuses.
    ConcurrentlyInTransaction,
    /// `ADD COLUMN ... NOT NULL` without a default on an existing table: fails
    /// on every table that has rows.
    AddColumnNotNullWithoutDefault,
    /// `ALTER COLUMN ... TYPE` on an existing table: can rewrite the table
    /// and its indexes under an `ACCESS EXCLUSIVE` lock.
    ColumnTypeChange,
    /// A foreign key or check constraint added to an existing table without
    /// `NOT VALID`: every row is checked while writes are blocked.
    ConstraintWithoutNotValid,
    /// `DROP TABLE` of an existing table.
    DropTable,
    /// `ALTER TABLE ... DROP COLUMN` on an existing table.
    DropColumn,
    /// `ALTER TABLE ... RENAME TO` of an existing table.
    RenameTable,
    /// `ALTER TABLE ... RENAME COLUMN` on an existing table.
    RenameColumn,
    /// A `-- no-transaction` file with more than one statement (reported at
    /// the second).
    NoTransactionMultipleStatements,
    /// `BEGIN`, `COMMIT`, `ROLLBACK` or `PREPARE TRANSACTION` in a migration,
    /// whose transaction tenantmig manages itself.
    TransactionControl,
    /// `SET search_path` (also `SET LOCAL`, `RESET`, `set_config`) in a
    /// tenant migration: the names after it no longer resolve in the
    /// tenant's own schema first.
    SearchPathChange,
    /// `DROP SCHEMA` in a tenant migration.
    DropSchema,
    /// `TRUNCATE` of an existing table in a tenant migration.
    Truncate,
    /// A name qualified with a schema other than the shared schema and
    /// PostgreSQL's own (`pg_catalog`, `information_schema`, `pg_temp`) in a
    /// tenant migration, or `CREATE SCHEMA`: the object is the same for
    /// every tenant.
    OtherSchemaReference,
    /// A tenant migration that changes an object of the shared schema
    /// (creates, alters, drops, grants on or writes to a name qualified with
    /// it): it runs once per tenant. Reading or referencing a shared object
    /// is not flagged.
    SharedSchemaChange,
}

impl Rule {
    /// Every rule, in a stable order.
    pub const ALL: &'static [Rule] = &[
        Rule::ParseError,
        Rule::IndexNotConcurrent,
        Rule::ConcurrentlyInTransaction,
        Rule::AddColumnNotNullWithoutDefault,
        Rule::ColumnTypeChange,
        Rule::ConstraintWithoutNotValid,
        Rule::DropTable,
        Rule::DropColumn,
        Rule::RenameTable,
        Rule::RenameColumn,
        Rule::NoTransactionMultipleStatements,
        Rule::TransactionControl,
        Rule::SearchPathChange,
        Rule::DropSchema,
        Rule::Truncate,
        Rule::OtherSchemaReference,
        Rule::SharedSchemaChange,
    ];

    /// The rule's code, as shown in brackets and serialized (kebab-case).
    pub fn code(&self) -> &'static str {
        match self {
            Rule::ParseError => "parse-error",
            Rule::IndexNotConcurrent => "index-not-concurrent",
            Rule::ConcurrentlyInTransaction => "concurrently-in-transaction",
            Rule::AddColumnNotNullWithoutDefault => "add-column-not-null-without-default",
            Rule::ColumnTypeChange => "column-type-change",
            Rule::ConstraintWithoutNotValid => "constraint-without-not-valid",
            Rule::DropTable => "drop-table",
            Rule::DropColumn => "drop-column",
            Rule::RenameTable => "rename-table",
            Rule::RenameColumn => "rename-column",
            Rule::NoTransactionMultipleStatements => "no-transaction-multiple-statements",
            Rule::TransactionControl => "transaction-control",
            Rule::SearchPathChange => "search-path-change",
            Rule::DropSchema => "drop-schema",
            Rule::Truncate => "truncate",
            Rule::OtherSchemaReference => "other-schema-reference",
            Rule::SharedSchemaChange => "shared-schema-change",
        }
    }

    /// The rule with this code, if any.
    pub fn from_code(code: &str) -> Option<Rule> {
        Rule::ALL.iter().copied().find(|r| r.code() == code)
    }

    /// How bad a finding of this rule is.
    pub fn severity(&self) -> Severity {
        match self {
            Rule::ParseError
            | Rule::ConcurrentlyInTransaction
            | Rule::AddColumnNotNullWithoutDefault
            | Rule::TransactionControl
            | Rule::DropSchema => Severity::Error,
            Rule::IndexNotConcurrent
            | Rule::ColumnTypeChange
            | Rule::ConstraintWithoutNotValid
            | Rule::DropTable
            | Rule::DropColumn
            | Rule::RenameTable
            | Rule::RenameColumn
            | Rule::NoTransactionMultipleStatements
            | Rule::SearchPathChange
            | Rule::Truncate
            | Rule::OtherSchemaReference
            | Rule::SharedSchemaChange => Severity::Warning,
        }
    }

    /// The safer way to make the change, in one sentence.
    pub fn safer(&self) -> &'static str {
        match self {
            Rule::ParseError => {
                "fix the SQL until PostgreSQL accepts it, e.g. by running the file with psql -f against a scratch database"
            }
            Rule::IndexNotConcurrent => {
                "CREATE INDEX CONCURRENTLY ... ON ... (...) alone in its own migration whose first line is `-- no-transaction`"
            }
            Rule::ConcurrentlyInTransaction => {
                "make `-- no-transaction` the first line of the file and keep this statement alone in it"
            }
            Rule::AddColumnNotNullWithoutDefault => {
                "ADD COLUMN ... NOT NULL DEFAULT ..., or add the column nullable, backfill it, then ALTER COLUMN ... SET NOT NULL in a later migration"
            }
            Rule::ColumnTypeChange => {
                "ADD COLUMN a new column of the new type, backfill it in batches, switch reads and writes to it, then DROP COLUMN the old one in a later release"
            }
            Rule::ConstraintWithoutNotValid => {
                "ADD CONSTRAINT ... NOT VALID (only new rows are checked), then ALTER TABLE ... VALIDATE CONSTRAINT ... in a later migration"
            }
            Rule::DropTable => {
                "stop using the table in the application first, deploy that, then DROP TABLE in a later release"
            }
            Rule::DropColumn => {
                "stop using the column in the application first (ALTER COLUMN ... DROP NOT NULL if it still gets inserts), deploy that, then DROP COLUMN in a later release"
            }
            Rule::RenameTable => {
                "add the new name first (CREATE VIEW new_name AS SELECT * FROM old_name), move the application to it, then drop the old name in a later release"
            }
            Rule::RenameColumn => {
                "ADD COLUMN with the new name, backfill it, move the application to it, then DROP COLUMN the old one in a later release"
            }
            Rule::NoTransactionMultipleStatements => {
                "put each statement in its own migration whose first line is `-- no-transaction`"
            }
            Rule::TransactionControl => {
                "remove BEGIN/COMMIT/ROLLBACK: each migration already runs in one transaction with its history row, or, with `-- no-transaction` as its first line, outside any"
            }
            Rule::SearchPathChange => {
                "leave search_path alone (unqualified names already resolve in the tenant's schema, then the shared schema); to pin a function's own, give the function a SET search_path clause (CREATE FUNCTION ... SET search_path = pg_catalog)"
            }
            Rule::DropSchema => {
                "drop schemas with `tenantmig drop-schema` or `tenantmig tenant remove`, which show what goes and ask for --yes, never from a tenant migration"
            }
            Rule::Truncate => {
                "DELETE only the rows that must go (WHERE ...), in batches on large tables, or stop using the data first and drop the table in a later release"
            }
            Rule::OtherSchemaReference => {
                "leave names unqualified so they resolve in the tenant's own schema; keep what all tenants share in the shared schema and change it from a shared migration"
            }
            Rule::SharedSchemaChange => {
                "change shared objects from a shared migration, which runs once and before the tenants; a tenant migration may still read or reference them"
            }
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// One problem found in one migration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The migration file (as given to [`lint_sql`], or the migration's path).
    pub file: PathBuf,
    /// The 1-based line of the statement's first character that is neither
    /// white space nor part of a comment (for a parse error, the best line
    /// that can be told, see [`lint_sql`]; for
    /// [`Rule::NoTransactionMultipleStatements`], the second statement).
    pub line: usize,
    /// The rule that fired.
    pub rule: Rule,
    /// The rule's severity.
    pub severity: Severity,
    /// What was found, naming the object, e.g. `CREATE INDEX
    /// documents_created_at_idx on existing table documents without
    /// CONCURRENTLY`.
    pub message: String,
    /// The safer form of the change ([`Rule::safer`]).
    pub safer: String,
}

impl Finding {
    fn new(file: &Path, line: usize, rule: Rule, message: String) -> Self {
        Finding {
            file: file.to_path_buf(),
            line,
            rule,
            severity: rule.severity(),
            message,
            safer: rule.safer().to_string(),
        }
    }

    /// One line for people:
    /// `tenant/0009_x.sql:3: warning [index-not-concurrent] <message>; safer: <safer>`.
    pub fn describe(&self) -> String {
        format!(
            "{}:{}: {} [{}] {}; safer: {}",
            self.file.display(),
            self.line,
            self.severity,
            self.rule,
            self.message,
            self.safer
        )
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Where a migration runs, which decides the rules about its reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// A shared migration: runs once, in the shared schema.
    Shared,
    /// A tenant migration: runs once in every tenant schema, so whatever it
    /// does outside the tenant's own schema happens once per tenant. The
    /// rules [`Rule::SearchPathChange`], [`Rule::DropSchema`],
    /// [`Rule::Truncate`], [`Rule::OtherSchemaReference`] and
    /// [`Rule::SharedSchemaChange`] apply only here.
    Tenant {
        /// The shared schema's name (`public` by default): references to it
        /// are fine, changes to it are flagged.
        shared_schema: &'a str,
    },
}

/// Lints one migration's SQL. `no_tx` is true when the file starts with
/// `-- no-transaction` ([`crate::migration::NO_TX_MARKER`]); `scope` says
/// whether it is a tenant or a shared migration; `file` is only used in the
/// findings.
///
/// Findings come in line order. SQL that PostgreSQL's parser rejects gives
/// exactly one [`Rule::ParseError`] finding whose message is the parser's;
/// its line is that of the offending token when the statement that fails can
/// be found and the token occurs only once in it, else the line where that
/// statement starts, else 1.
pub fn lint_sql(file: &Path, sql: &str, no_tx: bool, scope: Scope) -> Vec<Finding> {
    let parsed = match pg_query::parse(sql) {
        Ok(parsed) => parsed,
        Err(e) => {
            let message = match e {
                pg_query::Error::Parse(m) => m,
                other => other.to_string(),
            };
            let line = parse_error_line(sql, &message);
            return vec![Finding::new(file, line, Rule::ParseError, message)];
        }
    };
    let mut linter = Linter {
        file,
        no_tx,
        scope,
        created: Vec::new(),
        findings: Vec::new(),
    };
    let stmts = &parsed.protobuf.stmts;
    for raw in stmts {
        let line = statement_line(sql, offset(raw.stmt_location));
        if let Some(node) = raw.stmt.as_ref().and_then(|s| s.node.as_ref()) {
            linter.statement(node, line);
        }
    }
    if no_tx && stmts.len() > 1 {
        let line = statement_line(sql, offset(stmts[1].stmt_location));
        linter.push(
            line,
            Rule::NoTransactionMultipleStatements,
            format!(
                "`-- no-transaction` file with {} statements (each runs on its own: a failure after the first leaves the schema half-changed and the migration marked failed)",
                stmts.len()
            ),
        );
    }
    let mut findings = linter.findings;
    findings.sort_by_key(|f| f.line);
    findings
}

/// Lints the up SQL of each migration of one set (see [`lint_sql`]); the
/// findings of one migration follow those of the one before.
pub fn lint_migrations<'a>(
    ms: impl IntoIterator<Item = &'a Migration>,
    scope: Scope,
) -> Vec<Finding> {
    ms.into_iter()
        .flat_map(|m| lint_sql(&m.path, &m.sql, m.no_tx, scope))
        .collect()
}

/// A table created earlier in the file: `schema` is empty when unqualified.
struct Created {
    schema: String,
    name: String,
}

/// The state of one file's lint: the tables it created so far and the
/// findings.
struct Linter<'a> {
    file: &'a Path,
    no_tx: bool,
    scope: Scope<'a>,
    created: Vec<Created>,
    findings: Vec<Finding>,
}

impl Linter<'_> {
    fn push(&mut self, line: usize, rule: Rule, message: String) {
        self.findings
            .push(Finding::new(self.file, line, rule, message));
    }

    /// True when `schema.name` (schema empty when unqualified) was created
    /// earlier in the file.
    fn is_new(&self, schema: &str, name: &str) -> bool {
        self.created
            .iter()
            .any(|c| c.name == name && (c.schema.is_empty() || c.schema == schema))
    }

    fn is_new_rel(&self, rel: Option<&RangeVar>) -> bool {
        rel.is_some_and(|r| self.is_new(&r.schemaname, &r.relname))
    }

    fn statement(&mut self, node: &N, line: usize) {
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

    /// The rules about a tenant migration's reach beyond its own schema.
    fn tenant_reach(&mut self, node: &N, line: usize, shared_schema: &str) {
        match node {
            N::VariableSetStmt(v)
                if v.name.eq_ignore_ascii_case("search_path")
                    || v.kind() == VariableSetKind::VarResetAll =>
            {
                let what = match v.kind() {
                    VariableSetKind::VarReset => "RESET search_path".to_string(),
                    VariableSetKind::VarResetAll => "RESET ALL".to_string(),
                    _ if v.is_local => "SET LOCAL search_path".to_string(),
                    _ => "SET search_path".to_string(),
                };
                self.push(line, Rule::SearchPathChange, search_path_message(&what));
            }
            N::DropStmt(d) if d.remove_type() == ObjectType::ObjectSchema => {
                let names = d.objects.iter().map(object_name).collect::<Vec<_>>();
                self.push(
                    line,
                    Rule::DropSchema,
                    format!(
                        "DROP SCHEMA {} in a tenant migration (it runs once per tenant: the first tenant drops a schema every tenant shares, or a tenant drops its own schema with everything in it)",
                        names.join(", ")
                    ),
                );
            }
            N::TruncateStmt(t) => {
                let tables: Vec<String> = t
                    .relations
                    .iter()
                    .filter_map(|r| match &r.node {
                        Some(N::RangeVar(rv)) if !self.is_new(&rv.schemaname, &rv.relname) => {
                            Some(rel_name(Some(rv)))
                        }
                        _ => None,
                    })
                    .collect();
                if !tables.is_empty() {
                    self.push(
                        line,
                        Rule::Truncate,
                        format!(
                            "TRUNCATE {} in a tenant migration (empties the table in every tenant schema under an ACCESS EXCLUSIVE lock; the rows cannot be brought back)",
                            tables.join(", ")
                        ),
                    );
                }
            }
            _ => {}
        }
        let Ok(tree) = serde_json::to_value(node) else {
            return;
        };
        if calls_set_config_search_path(&tree) {
            self.push(
                line,
                Rule::SearchPathChange,
                search_path_message("set_config('search_path', ...)"),
            );
        }
        let mut other = Vec::new();
        let mut shared = Vec::new();
        for q in qualified_names(node, &tree) {
            let list = if q.schema == shared_schema {
                if !q.target {
                    continue;
                }
                &mut shared
            } else if is_system_schema(&q.schema) {
                continue;
            } else {
                &mut other
            };
            if !list.contains(&q.what) {
                list.push(q.what);
            }
        }
        if !other.is_empty() {
            self.push(
                line,
                Rule::OtherSchemaReference,
                format!(
                    "{} in a tenant migration (the same object for every tenant, reached once per tenant, not the tenant's own)",
                    other.join(", ")
                ),
            );
        }
        if !shared.is_empty() {
            self.push(
                line,
                Rule::SharedSchemaChange,
                format!(
                    "changes {} of the shared schema from a tenant migration (it runs once per tenant: the change is made as many times as there are tenants, and the second time fails or doubles it)",
                    shared.join(", ")
                ),
            );
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
                if let Some(N::Constraint(c)) = def
                    && needs_not_valid(c)
                {
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
                if let Some(N::PartitionCmd(p)) = def
                    && p.concurrent
                {
                    self.push(
                        line,
                        Rule::ConcurrentlyInTransaction,
                        format!(
                            "ALTER TABLE {table} DETACH PARTITION {} CONCURRENTLY in a file without `-- no-transaction` (PostgreSQL refuses it inside a transaction block)",
                            rel_name(p.name.as_ref())
                        ),
                    );
                }
            }
            _ => {}
        }
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

fn search_path_message(what: &str) -> String {
    format!(
        "{what} in a tenant migration (tenantmig sets search_path to the tenant's schema, then the shared schema; after this, unqualified names may resolve, and new objects land, outside the tenant's schema)"
    )
}

/// PostgreSQL's own schemas, which a tenant migration may name.
fn is_system_schema(schema: &str) -> bool {
    matches!(schema, "pg_catalog" | "information_schema") || schema.starts_with("pg_temp")
}

/// A schema-qualified name in a statement.
struct Qualified {
    /// The schema.
    schema: String,
    /// How to show it: `audit.events`, or `schema audit`.
    what: String,
    /// True when the statement creates, changes, drops, grants on or writes
    /// to the object; false when it only reads or refers to it.
    target: bool,
}

/// Keys of the parse tree whose value is a qualified name as a list of
/// strings (a function, type, operator class or collation name...).
const NAME_LISTS: [&str; 10] = [
    "funcname",
    "names",
    "objname",
    "defnames",
    "type_name",
    "domainname",
    "collname",
    "opclass",
    "collation",
    "typename",
];

/// Keys of a statement whose names are what the statement changes.
const TARGETS: [&str; 15] = [
    "relation",
    "relations",
    "view",
    "sequence",
    "typevar",
    "into",
    "objects",
    "table",
    "defnames",
    "domainname",
    "func",
    "type_name",
    "funcname",
    "collname",
    "object",
];

/// Every schema-qualified name of a statement (`tree` is the statement's
/// parse tree as JSON), found by walking the whole tree, so no kind of
/// statement or clause is missed: relations (`schemaname` of a range
/// variable), and functions, types, operator classes and collations (a
/// list of two or three strings). `CREATE SCHEMA x` and `SET SCHEMA x`
/// count as names in schema `x`.
fn qualified_names(node: &N, tree: &serde_json::Value) -> Vec<Qualified> {
    use serde_json::Value;
    let mut out = Vec::new();
    let Some((kind, Value::Object(fields))) = tree.as_object().and_then(|o| o.iter().next()) else {
        return out;
    };
    // A dropped trigger, rule or policy is `[schema.]table.name`.
    let drop_parts = match node {
        N::DropStmt(d)
            if matches!(
                d.remove_type(),
                ObjectType::ObjectTrigger | ObjectType::ObjectRule | ObjectType::ObjectPolicy
            ) =>
        {
            3
        }
        _ => 2,
    };
    for (key, value) in fields {
        let target = match key.as_str() {
            // A trigger's function is referred to, not changed.
            "funcname" => kind == "CreateFunctionStmt",
            // A column's type is an object; a type's own name is a list.
            "type_name" => value.is_array(),
            k => TARGETS.contains(&k),
        };
        match (kind.as_str(), key.as_str(), value) {
            ("CreateSchemaStmt", "schemaname", Value::String(schema))
            | (_, "newschema", Value::String(schema))
                if !schema.is_empty() =>
            {
                out.push(Qualified {
                    schema: schema.clone(),
                    what: format!("schema {schema}"),
                    target: true,
                });
            }
            ("DropStmt", "objects", Value::Array(items)) => {
                for item in items {
                    match item.pointer("/node/List/items").and_then(string_list) {
                        Some(parts) if parts.len() >= drop_parts => out.push(Qualified {
                            schema: parts[parts.len() - drop_parts].clone(),
                            what: parts.join("."),
                            target: true,
                        }),
                        Some(_) => {}
                        None => walk_names(key, item, true, &mut out),
                    }
                }
            }
            // A comment's object list is ambiguous (`table.column` or
            // `schema.table`); its relation, if any, is enough.
            ("CommentStmt", "object", _) => {}
            _ => walk_names(key, value, target, &mut out),
        }
    }
    out
}

fn walk_names(key: &str, value: &serde_json::Value, target: bool, out: &mut Vec<Qualified>) {
    use serde_json::Value;
    match value {
        Value::Object(o) => {
            if let (Some(Value::String(schema)), Some(Value::String(rel))) =
                (o.get("schemaname"), o.get("relname"))
                && !schema.is_empty()
            {
                out.push(Qualified {
                    schema: schema.clone(),
                    what: format!("{schema}.{rel}"),
                    target,
                });
            }
            for (k, v) in o {
                walk_names(k, v, target, out);
            }
        }
        Value::Array(items) => {
            if NAME_LISTS.contains(&key)
                && let Some(parts) = string_list(value)
                && parts.len() >= 2
            {
                out.push(Qualified {
                    schema: parts[parts.len() - 2].clone(),
                    what: parts.join("."),
                    target,
                });
            }
            for v in items {
                walk_names(key, v, target, out);
            }
        }
        _ => {}
    }
}

/// The strings of a list of `String` nodes, or `None` for another list.
fn string_list(list: &serde_json::Value) -> Option<Vec<String>> {
    list.as_array()?
        .iter()
        .map(|n| {
            n.pointer("/node/String/sval")
                .and_then(|s| s.as_str())
                .map(str::to_string)
        })
        .collect()
}

/// True when the tree calls `set_config('search_path', ...)`.
fn calls_set_config_search_path(tree: &serde_json::Value) -> bool {
    use serde_json::Value;
    match tree {
        Value::Object(o) => {
            if let Some(call) = o.get("FuncCall")
                && call
                    .get("funcname")
                    .and_then(string_list)
                    .is_some_and(|n| n.last().is_some_and(|f| f == "set_config"))
                && call
                    .pointer("/args/0")
                    .is_some_and(|a| a.to_string().to_lowercase().contains("\"search_path\""))
            {
                return true;
            }
            o.values().any(calls_set_config_search_path)
        }
        Value::Array(items) => items.iter().any(calls_set_config_search_path),
        _ => false,
    }
}

/// A byte offset from the parser (never negative for statements).
fn offset(location: i32) -> usize {
    usize::try_from(location).unwrap_or(0)
}

/// The 1-based line of the first character at or after `from` that is
/// neither white space nor inside a `--` or `/* */` comment.
fn statement_line(sql: &str, from: usize) -> usize {
    let bytes = sql.as_bytes();
    let mut i = from.min(bytes.len());
    while i < bytes.len() {
        match bytes[i] {
            b if b.is_ascii_whitespace() => i += 1,
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                // PostgreSQL's block comments nest.
                let mut depth = 0usize;
                while i < bytes.len() {
                    if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            _ => break,
        }
    }
    line_at(sql, i)
}

/// The 1-based line of byte offset `at`.
fn line_at(sql: &str, at: usize) -> usize {
    let end = at.min(sql.len());
    sql.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The best line for a parse error. pg_query reports the message but not
/// the cursor position, so the failing statement is found by splitting the
/// file with PostgreSQL's scanner and parsing the pieces one by one; within
/// it, the token the message quotes (`at or near "..."`) is used when it
/// occurs exactly once.
fn parse_error_line(sql: &str, message: &str) -> usize {
    let failing = pg_query::split_with_scanner(sql).ok().and_then(|pieces| {
        pieces
            .into_iter()
            .find(|piece| pg_query::parse(piece).is_err())
            .map(|piece| (piece.as_ptr() as usize - sql.as_ptr() as usize, piece))
    });
    let (start, region) = failing.unwrap_or((0, sql));
    let near = message.split_once("at or near \"").and_then(|(_, rest)| {
        let token = rest.strip_suffix('"')?;
        (!token.is_empty()).then_some(token)
    });
    if let Some(token) = near {
        let mut hits = region.match_indices(token);
        if let (Some((at, _)), None) = (hits.next(), hits.next()) {
            return line_at(sql, start + at);
        }
    }
    if failing.is_some() {
        statement_line(sql, start)
    } else {
        1
    }
}

/// `schema.name` or `name`, as the parser gives them.
fn rel_name(rel: Option<&RangeVar>) -> String {
    match rel {
        Some(r) if r.schemaname.is_empty() => r.relname.clone(),
        Some(r) => format!("{}.{}", r.schemaname, r.relname),
        None => String::new(),
    }
}

/// The parts of a qualified name given as a list of strings.
fn name_parts(node: &Node) -> Vec<String> {
    match &node.node {
        Some(N::List(list)) => list
            .items
            .iter()
            .filter_map(|item| match &item.node {
                Some(N::String(s)) => Some(s.sval.clone()),
                _ => None,
            })
            .collect(),
        Some(N::String(s)) => vec![s.sval.clone()],
        _ => Vec::new(),
    }
}

/// A dropped object's name, dot-joined.
fn object_name(node: &Node) -> String {
    name_parts(node).join(".")
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::NO_TX_MARKER;

    const FILE: &str = "tenant/0009_x.sql";

    const TENANT: Scope = Scope::Tenant {
        shared_schema: "public",
    };

    fn lint(sql: &str) -> Vec<Finding> {
        lint_sql(Path::new(FILE), sql, false, Scope::Shared)
    }

    fn lint_no_tx(sql: &str) -> Vec<Finding> {
        lint_sql(Path::new(FILE), sql, true, Scope::Shared)
    }

    fn lint_tenant(sql: &str) -> Vec<Finding> {
        lint_sql(Path::new(FILE), sql, false, TENANT)
    }

    /// The findings of the rules about a tenant migration's reach only.
    fn reach(sql: &str) -> Vec<Finding> {
        lint_tenant(sql)
            .into_iter()
            .filter(|f| {
                matches!(
                    f.rule,
                    Rule::SearchPathChange
                        | Rule::DropSchema
                        | Rule::Truncate
                        | Rule::OtherSchemaReference
                        | Rule::SharedSchemaChange
                )
            })
            .collect()
    }

    fn rules(findings: &[Finding]) -> Vec<Rule> {
        findings.iter().map(|f| f.rule).collect()
    }

    // index-not-concurrent

    #[test]
    fn an_index_on_an_existing_table_without_concurrently_is_flagged() {
        let f = lint("CREATE INDEX documents_created_at_idx ON documents (created_at);");
        assert_eq!(rules(&f), [Rule::IndexNotConcurrent]);
        assert_eq!(f[0].severity, Severity::Warning);
        assert!(
            f[0].message.starts_with(
                "CREATE INDEX documents_created_at_idx on existing table documents without CONCURRENTLY"
            ),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn an_index_on_a_table_created_in_the_same_file_is_not_flagged() {
        let sql = "CREATE TABLE documents (id bigint PRIMARY KEY, created_at timestamptz);\n\
                   CREATE UNIQUE INDEX documents_created_at_idx ON documents (created_at);";
        assert_eq!(lint(sql), []);
    }

    #[test]
    fn an_index_created_concurrently_in_a_no_transaction_file_is_not_flagged() {
        let sql = "-- no-transaction\nCREATE INDEX CONCURRENTLY documents_created_at_idx ON documents (created_at);";
        assert_eq!(lint_no_tx(sql), []);
    }

    #[test]
    fn an_unqualified_create_covers_a_qualified_index_but_a_qualified_create_covers_only_its_schema()
     {
        let sql = "CREATE TABLE documents (id bigint);\n\
                   CREATE INDEX ON app.documents (id);";
        assert_eq!(lint(sql), []);
        let sql = "CREATE TABLE app.documents (id bigint);\n\
                   CREATE INDEX ON app.documents (id);\n\
                   CREATE INDEX ON other.documents (id);";
        let f = lint(sql);
        assert_eq!(rules(&f), [Rule::IndexNotConcurrent]);
        assert_eq!(f[0].line, 3);
        assert!(f[0].message.contains("other.documents"), "{}", f[0].message);
    }

    #[test]
    fn table_names_are_compared_as_the_parser_folds_them() {
        let sql = "CREATE TABLE Documents (id bigint);\nCREATE INDEX ON documents (id);";
        assert_eq!(lint(sql), []);
        let sql = "CREATE TABLE \"Documents\" (id bigint);\nCREATE INDEX ON documents (id);";
        assert_eq!(rules(&lint(sql)), [Rule::IndexNotConcurrent]);
    }

    // concurrently-in-transaction

    #[test]
    fn create_index_concurrently_in_a_transactional_file_is_an_error() {
        let f = lint("CREATE INDEX CONCURRENTLY executions_status_idx ON executions (status);");
        assert_eq!(rules(&f), [Rule::ConcurrentlyInTransaction]);
        assert_eq!(f[0].severity, Severity::Error);
        assert!(
            f[0].message
                .contains("CREATE INDEX CONCURRENTLY executions_status_idx on executions"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn drop_index_reindex_and_detach_partition_concurrently_in_a_transactional_file_are_errors() {
        let sql = "DROP INDEX CONCURRENTLY executions_status_idx;\n\
                   REINDEX INDEX CONCURRENTLY documents_created_at_idx;\n\
                   REINDEX (CONCURRENTLY) TABLE documents;\n\
                   ALTER TABLE events DETACH PARTITION events_2023 CONCURRENTLY;";
        let f = lint(sql);
        assert_eq!(rules(&f), [Rule::ConcurrentlyInTransaction; 4]);
        assert_eq!(f.iter().map(|f| f.line).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert!(f[0].message.contains("executions_status_idx"));
        assert!(
            f[1].message
                .contains("REINDEX INDEX CONCURRENTLY documents_created_at_idx")
        );
        assert!(
            f[2].message
                .contains("REINDEX TABLE CONCURRENTLY documents")
        );
        assert!(
            f[3].message
                .contains("DETACH PARTITION events_2023 CONCURRENTLY")
        );
    }

    #[test]
    fn concurrent_operations_in_a_no_transaction_file_are_not_flagged() {
        for sql in [
            "DROP INDEX CONCURRENTLY executions_status_idx;",
            "REINDEX TABLE CONCURRENTLY documents;",
            "ALTER TABLE events DETACH PARTITION events_2023 CONCURRENTLY;",
        ] {
            assert_eq!(lint_no_tx(sql), [], "{sql}");
        }
    }

    #[test]
    fn plain_drop_index_reindex_and_concurrently_false_in_a_transaction_are_not_flagged() {
        let sql = "DROP INDEX executions_status_idx;\n\
                   REINDEX TABLE documents;\n\
                   REINDEX (CONCURRENTLY false) TABLE documents;\n\
                   ALTER TABLE events DETACH PARTITION events_2023;";
        assert_eq!(lint(sql), []);
    }

    // add-column-not-null-without-default

    #[test]
    fn a_not_null_column_without_default_on_an_existing_table_is_an_error() {
        let f = lint("ALTER TABLE documents ADD COLUMN status text NOT NULL;");
        assert_eq!(rules(&f), [Rule::AddColumnNotNullWithoutDefault]);
        assert_eq!(f[0].severity, Severity::Error);
        assert!(
            f[0].message.starts_with(
                "ADD COLUMN status NOT NULL without DEFAULT on existing table documents"
            ),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn a_primary_key_column_without_default_counts_as_not_null() {
        let f = lint("ALTER TABLE documents ADD COLUMN uid uuid PRIMARY KEY;");
        assert_eq!(rules(&f), [Rule::AddColumnNotNullWithoutDefault]);
    }

    #[test]
    fn a_not_null_column_with_a_default_identity_or_serial_is_not_flagged() {
        for sql in [
            "ALTER TABLE documents ADD COLUMN status text NOT NULL DEFAULT 'draft';",
            "ALTER TABLE documents ADD COLUMN seq bigint NOT NULL GENERATED ALWAYS AS IDENTITY;",
            "ALTER TABLE documents ADD COLUMN seq bigserial NOT NULL;",
            "ALTER TABLE documents ADD COLUMN status text;",
        ] {
            assert_eq!(lint(sql), [], "{sql}");
        }
    }

    #[test]
    fn a_not_null_column_on_a_table_created_in_the_same_file_is_not_flagged() {
        let sql = "CREATE TABLE documents (id bigint);\n\
                   ALTER TABLE documents ADD COLUMN status text NOT NULL;";
        assert_eq!(lint(sql), []);
    }

    // column-type-change

    #[test]
    fn a_column_type_change_on_an_existing_table_is_flagged() {
        let f = lint("ALTER TABLE executions ALTER COLUMN duration_ms TYPE bigint;");
        assert_eq!(rules(&f), [Rule::ColumnTypeChange]);
        assert!(
            f[0].message
                .starts_with("ALTER COLUMN duration_ms TYPE on existing table executions"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn a_column_type_change_on_a_table_created_in_the_same_file_is_not_flagged() {
        let sql = "CREATE TABLE executions (duration_ms int);\n\
                   ALTER TABLE executions ALTER COLUMN duration_ms TYPE bigint;";
        assert_eq!(lint(sql), []);
    }

    // constraint-without-not-valid

    #[test]
    fn a_foreign_key_or_check_without_not_valid_on_an_existing_table_is_flagged() {
        let sql = "ALTER TABLE documents ADD CONSTRAINT documents_organization_id_fkey \
                   FOREIGN KEY (organization_id) REFERENCES organizations (id);\n\
                   ALTER TABLE executions ADD CHECK (duration_ms >= 0);";
        let f = lint(sql);
        assert_eq!(rules(&f), [Rule::ConstraintWithoutNotValid; 2]);
        assert!(
            f[0].message.starts_with(
                "ADD CONSTRAINT documents_organization_id_fkey FOREIGN KEY on existing table documents without NOT VALID"
            ),
            "{}",
            f[0].message
        );
        assert!(
            f[1].message
                .starts_with("ADD CHECK on existing table executions")
        );
    }

    #[test]
    fn a_column_added_with_references_on_an_existing_table_is_flagged() {
        let f = lint(
            "ALTER TABLE documents ADD COLUMN organization_id bigint REFERENCES organizations (id);",
        );
        assert_eq!(rules(&f), [Rule::ConstraintWithoutNotValid]);
        assert!(
            f[0].message
                .contains("organization_id REFERENCES organizations on existing table documents"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn a_constraint_with_not_valid_its_validation_or_a_unique_constraint_is_not_flagged() {
        let sql = "ALTER TABLE documents ADD CONSTRAINT documents_organization_id_fkey \
                   FOREIGN KEY (organization_id) REFERENCES organizations (id) NOT VALID;\n\
                   ALTER TABLE executions ADD CONSTRAINT executions_duration_check \
                   CHECK (duration_ms >= 0) NOT VALID;\n\
                   ALTER TABLE executions VALIDATE CONSTRAINT executions_duration_check;";
        assert_eq!(lint(sql), []);
    }

    #[test]
    fn constraints_on_a_table_created_in_the_same_file_are_not_flagged() {
        let sql = "CREATE TABLE documents (id bigint, organization_id bigint);\n\
                   ALTER TABLE documents ADD FOREIGN KEY (organization_id) REFERENCES organizations (id);\n\
                   ALTER TABLE documents ADD COLUMN owner_id bigint REFERENCES users (id);";
        assert_eq!(lint(sql), []);
    }

    // drop-table

    #[test]
    fn dropping_an_existing_table_is_flagged_once_per_table() {
        let f = lint("DROP TABLE legacy_exports, app.legacy_imports;");
        assert_eq!(rules(&f), [Rule::DropTable; 2]);
        assert!(f[0].message.starts_with("DROP TABLE legacy_exports "));
        assert!(f[1].message.starts_with("DROP TABLE app.legacy_imports "));
    }

    #[test]
    fn dropping_a_table_created_in_the_same_file_or_another_kind_of_object_is_not_flagged() {
        let sql = "CREATE TABLE scratch (id bigint);\n\
                   DROP TABLE scratch;\n\
                   DROP VIEW documents_view;\n\
                   DROP INDEX documents_created_at_idx;";
        assert_eq!(lint(sql), []);
    }

    // drop-column

    #[test]
    fn dropping_a_column_of_an_existing_table_is_flagged() {
        let f = lint("ALTER TABLE documents DROP COLUMN legacy_status;");
        assert_eq!(rules(&f), [Rule::DropColumn]);
        assert!(
            f[0].message
                .starts_with("DROP COLUMN legacy_status on documents"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn dropping_a_column_of_a_table_created_in_the_same_file_or_a_not_null_is_not_flagged() {
        let sql = "CREATE TABLE documents (id bigint, draft text);\n\
                   ALTER TABLE documents DROP COLUMN draft;\n\
                   ALTER TABLE executions ALTER COLUMN legacy_status DROP NOT NULL;";
        assert_eq!(lint(sql), []);
    }

    // rename-table

    #[test]
    fn renaming_an_existing_table_is_flagged() {
        let f = lint("ALTER TABLE organizations RENAME TO workspaces;");
        assert_eq!(rules(&f), [Rule::RenameTable]);
        assert!(
            f[0].message
                .starts_with("ALTER TABLE organizations RENAME TO workspaces"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn renaming_a_table_created_in_the_same_file_is_not_flagged_and_it_stays_new() {
        let sql = "CREATE TABLE workspaces_new (id bigint);\n\
                   ALTER TABLE workspaces_new RENAME TO workspaces;\n\
                   CREATE INDEX ON workspaces (id);\n\
                   CREATE VIEW teams AS SELECT * FROM organizations;";
        assert_eq!(lint(sql), []);
    }

    // rename-column

    #[test]
    fn renaming_a_column_of_an_existing_table_is_flagged() {
        let f = lint("ALTER TABLE documents RENAME COLUMN name TO title;");
        assert_eq!(rules(&f), [Rule::RenameColumn]);
        assert!(
            f[0].message
                .starts_with("ALTER TABLE documents RENAME COLUMN name TO title"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn renaming_a_column_of_a_new_table_or_of_a_view_is_not_flagged() {
        let sql = "CREATE TABLE documents (id bigint, name text);\n\
                   ALTER TABLE documents RENAME COLUMN name TO title;\n\
                   ALTER VIEW documents_view RENAME COLUMN name TO title;";
        assert_eq!(lint(sql), []);
    }

    // no-transaction-multiple-statements

    #[test]
    fn a_no_transaction_file_with_two_statements_is_flagged_at_the_second() {
        let sql = "-- no-transaction\n\
                   CREATE INDEX CONCURRENTLY executions_started_at_idx ON executions (started_at);\n\
                   \n\
                   CREATE INDEX CONCURRENTLY executions_document_id_idx ON executions (document_id);\n";
        let f = lint_no_tx(sql);
        assert_eq!(rules(&f), [Rule::NoTransactionMultipleStatements]);
        assert_eq!(f[0].line, 4);
        assert!(f[0].message.contains("2 statements"), "{}", f[0].message);
    }

    #[test]
    fn a_no_transaction_file_with_one_statement_or_a_transactional_file_with_two_is_not_flagged() {
        let one = "-- no-transaction\nCREATE INDEX CONCURRENTLY e_idx ON executions (started_at);";
        assert_eq!(lint_no_tx(one), []);
        let two = "ALTER TABLE documents ADD COLUMN summary text;\n\
                   ALTER TABLE documents ADD COLUMN summary_at timestamptz;";
        assert_eq!(lint(two), []);
    }

    // transaction-control

    #[test]
    fn begin_and_commit_in_a_migration_are_errors() {
        let f = lint("BEGIN;\nALTER TABLE documents ADD COLUMN summary text;\nCOMMIT;");
        assert_eq!(rules(&f), [Rule::TransactionControl; 2]);
        assert_eq!(f[0].severity, Severity::Error);
        assert_eq!((f[0].line, f[1].line), (1, 3));
        assert!(f[0].message.starts_with("BEGIN "));
        assert!(f[1].message.starts_with("COMMIT "));
    }

    #[test]
    fn savepoints_in_a_migration_are_not_flagged() {
        let sql = "SAVEPOINT before_backfill;\n\
                   UPDATE documents SET status = 'draft' WHERE status IS NULL;\n\
                   RELEASE SAVEPOINT before_backfill;";
        assert_eq!(lint(sql), []);
    }

    // parse-error

    #[test]
    fn a_file_that_does_not_parse_gives_one_parse_error_at_the_offending_token() {
        let sql = "-- Archiving.\n\
                   CREATE TABLE archive (id bigint);\n\
                   ALTER TABLE documents\n    ADD COLUMN archived boolean NOT NULL DEFALT false;\n\
                   DROP TABLE legacy_exports;\n";
        let f = lint(sql);
        assert_eq!(rules(&f), [Rule::ParseError]);
        assert_eq!(f[0].severity, Severity::Error);
        assert_eq!(f[0].message, "syntax error at or near \"DEFALT\"");
        assert_eq!(f[0].line, 4);
    }

    #[test]
    fn a_parse_error_is_placed_at_its_token_when_the_token_occurs_once_in_the_statement() {
        let sql = "SELECT (1);\n\n-- broken\nCREATE TABLE t (\n  a int,\n  b int,\n);";
        let f = lint(sql);
        assert_eq!(rules(&f), [Rule::ParseError]);
        assert_eq!(f[0].message, "syntax error at or near \")\"");
        assert_eq!(f[0].line, 7);
    }

    #[test]
    fn a_parse_error_whose_token_repeats_in_the_statement_is_placed_at_the_statement() {
        let sql = "SELECT 1;\n\n-- broken\nCREATE TABLE t (\n  a int,\n  b numeric(10, 2),\n);";
        let f = lint(sql);
        assert_eq!(rules(&f), [Rule::ParseError]);
        assert_eq!(f[0].message, "syntax error at or near \")\"");
        assert_eq!(f[0].line, 4);
    }

    #[test]
    fn an_unterminated_string_and_an_incomplete_file_are_parse_errors() {
        let f = lint("SELECT 1;\nUPDATE documents SET status = 'draft;\n");
        assert_eq!(rules(&f), [Rule::ParseError]);
        assert!(
            f[0].message.starts_with("unterminated quoted string"),
            "{}",
            f[0].message
        );
        assert_eq!(f[0].line, 2);
        let f = lint("SELECT 1;\n\nALTER TABLE documents ADD COLUMN");
        assert_eq!(rules(&f), [Rule::ParseError]);
        assert_eq!(f[0].message, "syntax error at end of input");
        assert_eq!(f[0].line, 3);
    }

    #[test]
    fn valid_sql_and_an_empty_file_give_no_findings() {
        assert_eq!(lint("SELECT 1;"), []);
        assert_eq!(lint(""), []);
        assert_eq!(lint("-- nothing yet\n"), []);
    }

    // lines, output and the migration entry point

    #[test]
    fn a_finding_is_placed_on_the_line_of_its_statement_keyword() {
        let sql = "-- Sorting by creation time.\n\
                   /* a block comment\n   over two lines */ CREATE INDEX documents_created_at_idx\n\
                   ON documents (created_at);\n\
                   /* outer /* nested */ still comment */\n\
                   -- next\n\
                   \n\
                   ALTER TABLE documents DROP COLUMN legacy_status;";
        let f = lint(sql);
        assert_eq!(rules(&f), [Rule::IndexNotConcurrent, Rule::DropColumn]);
        assert_eq!(f[0].line, 3);
        assert_eq!(f[1].line, 8);
    }

    #[test]
    fn lines_count_bytes_correctly_after_multibyte_text() {
        let sql = "COMMENT ON TABLE documents IS 'Dokumente – Übersicht';\n\
                   ALTER TABLE documents RENAME COLUMN name TO title;";
        assert_eq!(lint(sql)[0].line, 2);
    }

    #[test]
    fn describe_gives_file_line_severity_rule_message_and_safer_form() {
        let f = lint("\n\nCREATE INDEX documents_created_at_idx ON documents (created_at);");
        assert_eq!(
            f[0].describe(),
            format!(
                "tenant/0009_x.sql:3: warning [index-not-concurrent] {}; safer: {}",
                f[0].message,
                Rule::IndexNotConcurrent.safer()
            )
        );
        assert_eq!(f[0].to_string(), f[0].describe());
    }

    #[test]
    fn rules_serialize_as_their_codes_and_severities_in_snake_case() {
        for rule in Rule::ALL {
            let json = serde_json::to_value(rule).unwrap();
            assert_eq!(json, serde_json::json!(rule.code()));
            assert_eq!(Rule::from_code(rule.code()), Some(*rule));
            assert!(!rule.safer().is_empty() && !rule.safer().ends_with('.'));
        }
        assert_eq!(serde_json::to_value(Severity::Error).unwrap(), "error");
        let f = &lint("DROP TABLE legacy_exports;")[0];
        let json = serde_json::to_value(f).unwrap();
        assert_eq!(json["rule"], "drop-table");
        assert_eq!(json["severity"], "warning");
        assert_eq!(json["line"], 1);
        assert_eq!(json["file"], FILE);
    }

    #[test]
    fn lint_migrations_lints_each_up_file_with_its_path_and_transaction_mode() {
        let mut a = Migration::new(1, "index", "CREATE INDEX CONCURRENTLY i ON documents (id);");
        a.path = PathBuf::from("tenant/0001_index.sql");
        let mut b = Migration::new(
            2,
            "index",
            format!("{NO_TX_MARKER}\nCREATE INDEX CONCURRENTLY j ON documents (id);"),
        );
        b.path = PathBuf::from("tenant/0002_index.sql");
        b.down_sql = Some("BEGIN;".into());
        let f = lint_migrations([&a, &b], TENANT);
        assert_eq!(rules(&f), [Rule::ConcurrentlyInTransaction]);
        assert_eq!(f[0].file, Path::new("tenant/0001_index.sql"));
    }

    // search-path-change, drop-schema, truncate, other-schema-reference,
    // shared-schema-change: tenant migrations only

    #[test]
    fn changing_search_path_in_a_tenant_migration_is_flagged_but_a_functions_own_is_not() {
        for sql in [
            "SET search_path TO audit;",
            "SET LOCAL search_path = public;",
            "RESET search_path;",
            "RESET ALL;",
            "SELECT set_config('search_path', 'audit', true);",
        ] {
            let f = lint_tenant(sql);
            assert_eq!(rules(&f), [Rule::SearchPathChange], "{sql}");
            assert_eq!(f[0].severity, Severity::Warning);
            assert_eq!(lint(sql), [], "a shared migration: {sql}");
        }
        let sql = "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog AS $$ BEGIN RETURN NEW; END $$;\n\
                   SET statement_timeout = '1min';";
        assert_eq!(lint_tenant(sql), []);
    }

    #[test]
    fn drop_schema_in_a_tenant_migration_is_an_error() {
        let f = lint_tenant("DROP SCHEMA IF EXISTS legacy CASCADE;");
        assert_eq!(rules(&f), [Rule::DropSchema]);
        assert_eq!(f[0].severity, Severity::Error);
        assert!(
            f[0].message.starts_with("DROP SCHEMA legacy"),
            "{}",
            f[0].message
        );
        assert_eq!(lint("DROP SCHEMA legacy;"), []);
    }

    #[test]
    fn truncate_of_an_existing_table_in_a_tenant_migration_is_flagged() {
        let f = lint_tenant("TRUNCATE usage_events, api_keys RESTART IDENTITY;");
        assert_eq!(rules(&f), [Rule::Truncate]);
        assert!(
            f[0].message.contains("usage_events, api_keys"),
            "{}",
            f[0].message
        );
        let sql = "CREATE TABLE scratch (id int);\nTRUNCATE scratch;";
        assert_eq!(lint_tenant(sql), []);
    }

    #[test]
    fn names_qualified_with_another_schema_are_flagged_wherever_they_are() {
        for (sql, named) in [
            (
                "INSERT INTO audit.events (kind) VALUES ('x');",
                "audit.events",
            ),
            (
                "SELECT * FROM workflows w JOIN billing.accounts a ON a.id = w.account_id;",
                "billing.accounts",
            ),
            (
                "ALTER TABLE documents ADD COLUMN owner bigint REFERENCES crm.people (id);",
                "crm.people",
            ),
            (
                "CREATE INDEX ON documents USING gin (title extensions.gin_trgm_ops);",
                "extensions.gin_trgm_ops",
            ),
            (
                "ALTER TABLE documents ADD COLUMN uid uuid DEFAULT extensions.uuid_generate_v4();",
                "extensions.uuid_generate_v4",
            ),
            (
                "ALTER TABLE documents ADD COLUMN status shared_types.status;",
                "shared_types.status",
            ),
            ("CREATE SCHEMA reporting;", "schema reporting"),
            (
                "ALTER TABLE documents SET SCHEMA archive;",
                "schema archive",
            ),
            (
                "DROP TRIGGER t ON archive.documents;",
                "archive.documents.t",
            ),
            (
                "CREATE FUNCTION util.f() RETURNS int LANGUAGE sql AS 'SELECT 1';",
                "util.f",
            ),
        ] {
            let f = reach(sql);
            assert_eq!(rules(&f), [Rule::OtherSchemaReference], "{sql}");
            assert!(f[0].message.contains(named), "{sql}: {}", f[0].message);
            assert!(
                lint(sql)
                    .iter()
                    .all(|f| f.rule != Rule::OtherSchemaReference),
                "a shared migration: {sql}"
            );
        }
    }

    #[test]
    fn system_schemas_and_unqualified_names_are_not_flagged() {
        let sql = "CREATE TABLE notes (id bigint, body text COLLATE pg_catalog.\"default\", at timestamptz DEFAULT pg_catalog.now());\n\
                   SELECT count(*) FROM information_schema.tables;\n\
                   CREATE TEMP TABLE t (id int);\nINSERT INTO pg_temp.t VALUES (1);\n\
                   DROP TRIGGER notes_touch ON notes;\n\
                   COMMENT ON COLUMN notes.body IS 'text';\n\
                   SELECT extract(epoch FROM now()), 1::int, 'x'::varchar(3);";
        assert_eq!(lint_tenant(sql), []);
    }

    #[test]
    fn changing_the_shared_schema_is_flagged_but_reading_or_referencing_it_is_not() {
        for (sql, named) in [
            (
                "ALTER TABLE public.plans ADD COLUMN seats int;",
                "public.plans",
            ),
            (
                "INSERT INTO public.plans (name) VALUES ('pro');",
                "public.plans",
            ),
            (
                "UPDATE public.organizations SET active = true;",
                "public.organizations",
            ),
            (
                "CREATE TABLE public.tenant_copies (id int);",
                "public.tenant_copies",
            ),
            ("CREATE INDEX ON public.users (email);", "public.users"),
            ("GRANT SELECT ON public.plans TO reporting;", "public.plans"),
            (
                "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1';",
                "public.f",
            ),
            ("DROP TABLE IF EXISTS public.legacy;", "public.legacy"),
        ] {
            let f = reach(sql);
            assert_eq!(rules(&f), [Rule::SharedSchemaChange], "{sql}");
            assert!(f[0].message.contains(named), "{sql}: {}", f[0].message);
        }
        for sql in [
            "CREATE TABLE subscriptions (id bigint, plan_id bigint REFERENCES public.plans (id));",
            "INSERT INTO workflows (plan) SELECT name FROM public.plans;",
            "CREATE VIEW my_plans AS SELECT * FROM public.plans;",
            "ALTER TABLE documents ADD COLUMN kind public.doc_kind;",
            "CREATE TRIGGER t BEFORE UPDATE ON documents FOR EACH ROW EXECUTE FUNCTION public.touch();",
            "SELECT public.refresh_counts();",
        ] {
            assert_eq!(lint_tenant(sql), [], "{sql}");
        }
    }

    #[test]
    fn every_fixture_triggers_its_rule_and_its_clean_form_gives_no_finding() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/lint");
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(&root).unwrap() {
            let dir = entry.unwrap().path();
            let code = dir.file_name().unwrap().to_str().unwrap().to_string();
            let rule = Rule::from_code(&code).unwrap_or_else(|| panic!("no rule {code}"));
            for (name, want) in [("trigger.sql", Some(rule)), ("clean.sql", None)] {
                let path = dir.join(name);
                let sql = std::fs::read_to_string(&path).unwrap();
                let f = lint_sql(&path, &sql, sql.starts_with(NO_TX_MARKER), TENANT);
                match want {
                    Some(rule) => assert!(
                        !f.is_empty() && f.iter().all(|f| f.rule == rule),
                        "{}: {f:#?}",
                        path.display()
                    ),
                    None => assert_eq!(f, [], "{}", path.display()),
                }
            }
            seen.push(rule);
        }
        seen.sort();
        assert_eq!(seen, Rule::ALL);
    }
}
