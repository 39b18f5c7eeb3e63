//! `lint`: migrations checked with PostgreSQL's own parser (feature
//! `lint`; without it the command says how to get it).

use std::io::Write;
use std::path::PathBuf;
#[cfg(feature = "lint")]
use std::sync::Arc;

use clap::Args;
use tenantmig::Error;
#[cfg(feature = "lint")]
use tenantmig::output::{self, Format};
#[cfg(feature = "lint")]
use tenantmig::{Engine, NoEvents, Selection};

#[cfg(feature = "lint")]
use super::common::settings;
use super::common::{ApplySet, Failure, Global};

#[derive(Debug, Args)]
pub struct LintArgs {
    /// Migration files to check [default: the migrations pending in some schema, which needs the database].
    #[arg(value_name = "FILE", conflicts_with = "all")]
    files: Vec<PathBuf>,
    /// Check every migration of both sets, without connecting to the database.
    #[arg(long)]
    all: bool,
    /// Lint the FILEs as migrations of this set [default: shared for a file in the shared folder, else tenant].
    #[arg(long, value_enum, requires = "files")]
    set: Option<ApplySet>,
    /// Also fail (exit 1) on warnings, not only on errors.
    #[arg(long, value_enum, value_name = "WHAT")]
    deny: Option<DenyLevel>,
}

/// What `lint --deny` turns into a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DenyLevel {
    /// Warnings as well as errors.
    Warnings,
}

/// `tenantmig lint`: exit 1 on an error finding (or any finding with
/// `--deny warnings`).
#[cfg(feature = "lint")]
pub async fn lint(g: &Global, stdout: &mut dyn Write, a: &LintArgs) -> Result<u8, Failure> {
    use tenantmig::lint;
    let mut findings = Vec::new();
    let checked;
    if !a.files.is_empty() {
        let s = settings(g)?;
        let tenant_scope = lint::Scope::Tenant {
            shared_schema: &s.shared_schema,
        };
        let shared_dir = s.shared_migrations.canonicalize().ok();
        for f in &a.files {
            let sql = std::fs::read_to_string(f).map_err(|e| Error::Usage {
                message: format!("cannot read {}: {e}", f.display()),
            })?;
            // As when a folder is read: a byte-order mark is not SQL.
            let sql = sql.strip_prefix('\u{feff}').unwrap_or(&sql);
            let no_tx = sql.starts_with(tenantmig::migration::NO_TX_MARKER);
            // --set, else the folder the file is in: only a file of the
            // shared folder is linted as a shared migration.
            let in_shared = || {
                let file = f.canonicalize().ok();
                matches!((&file, &shared_dir), (Some(f), Some(d)) if f.starts_with(d))
            };
            let scope = match a.set {
                Some(ApplySet::Shared) => lint::Scope::Shared,
                Some(ApplySet::Tenant) => tenant_scope,
                None if in_shared() => lint::Scope::Shared,
                None => tenant_scope,
            };
            findings.extend(lint::lint_sql(f, sql, no_tx, scope));
        }
        checked = a.files.len();
    } else if a.all {
        // Files only: no database needed.
        let s = settings(g)?;
        let shared = tenantmig::MigrationSet::load(&s.shared_migrations)?;
        let tenant = tenantmig::MigrationSet::load(&s.tenant_migrations)?;
        checked = shared.len() + tenant.len();
        findings = lint::lint_migrations(&shared.migrations, lint::Scope::Shared);
        findings.extend(lint::lint_migrations(
            &tenant.migrations,
            lint::Scope::Tenant {
                shared_schema: &s.shared_schema,
            },
        ));
    } else {
        let selection = Selection::all();
        let engine = Engine::new(settings(g)?, &selection, Arc::new(NoEvents))?;
        // The status, not the plan: a plan refuses files lint should report.
        let plan = engine.status(&selection).await?;
        checked = engine.pending_migrations(&plan).len();
        findings = engine.lint_pending(&plan);
    }
    let errors = findings
        .iter()
        .filter(|f| f.severity == lint::Severity::Error)
        .count();
    match g.format {
        Format::Json => output::json_line(stdout, &findings)?,
        Format::Human => {
            for f in &findings {
                writeln!(stdout, "{}", f.describe())?;
            }
            writeln!(
                stdout,
                "{} file{} checked: {errors} error{}, {} warning{}",
                checked,
                if checked == 1 { "" } else { "s" },
                if errors == 1 { "" } else { "s" },
                findings.len() - errors,
                if findings.len() - errors == 1 {
                    ""
                } else {
                    "s"
                }
            )?;
        }
    }
    let fail = errors > 0 || (a.deny.is_some() && !findings.is_empty());
    Ok(if fail { 1 } else { 0 })
}

/// Without the `lint` feature the command only says so.
#[cfg(not(feature = "lint"))]
pub async fn lint(_: &Global, _: &mut dyn Write, _: &LintArgs) -> Result<u8, Failure> {
    Err(Error::Usage {
        message: "this tenantmig was built without the lint feature (it needs libclang to build PostgreSQL's parser); rebuild with default features".into(),
    }
    .into())
}
