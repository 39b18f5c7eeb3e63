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

mod lines;
mod linter;
mod reach;
mod walk;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::migration::Migration;
use lines::{offset, parse_error_line, statement_line};
use linter::Linter;

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
    let mut linter = Linter::new(file, no_tx, scope);
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
    let mut findings = linter.into_findings();
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

#[cfg(test)]
mod tests;
