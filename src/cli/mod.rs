//! The command line: one module per command family, each with its clap
//! arguments, its handler (resolve the flags, call the library, print) and
//! its human printer. [`run`] dispatches; `common` holds what every command
//! shares.

use std::io::{self, Write};

use clap::{Parser, Subcommand};

pub mod common;

mod authoring;
mod lint;
mod migrate;
mod moves;
mod repair;
mod schemas;
mod snapshot;
mod status;
mod verify;

use authoring::{HistoryArgs, NewArgs, ShowArgs};
use common::{Failure, Global, SelectArgs, TenantFilter};
use lint::LintArgs;
use migrate::{MigrateArgs, PlanArgs, RollbackArgs, StampArgs};
use moves::{CutoverArgs, MigrateToArgs};
use repair::RepairArgs;
use schemas::{CopyArgs, CreateSchemaArgs, DropSchemaArgs, TenantCommand};
use snapshot::SnapshotCommand;
use status::RunsArgs;
use verify::VerifyArgs;

/// PostgreSQL schema migrations for schema-per-tenant SaaS: shared
/// migrations once, tenant migrations fanned out across every tenant schema.
#[derive(Debug, Parser)]
#[command(name = "tenantmig", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

const EXIT_CODES: &str = "Exit codes: 0 all done; 1 some schemas failed, were refused or not reached (status: not all up to date; verify: drift found; lint: findings that fail); 2 usage, configuration or connection error, or a destructive command without --yes.";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending migrations: the shared schema first, then every tenant, concurrently.
    Migrate(MigrateArgs),
    /// Show what `migrate` would do (the same as `migrate --dry-run`).
    Plan(PlanArgs),
    /// Undo applied migrations with their .down.sql files, newest first: every selected tenant, then the shared schema.
    Rollback(RollbackArgs),
    /// Record migrations up to VERSION as applied without running them, to adopt schemas built by another tool.
    Stamp(StampArgs),
    /// Check migrations for statements that fail or lock on tables with rows, or reach beyond a tenant's schema, with PostgreSQL's own parser: the pending ones, every one (--all) or the files named.
    Lint(LintArgs),
    /// Drift check: compare every tenant's real structure (from the catalogs) with a reference; exit 1 on any difference.
    Verify(VerifyArgs),
    /// Show each schema's applied version, pending count and state; exit 1 unless all are up to date.
    Status(SelectArgs),
    /// List the tenants and where the list came from.
    Tenants(TenantFilter),
    /// List recorded runs, or show one run's per-schema outcomes.
    Runs(RunsArgs),
    /// Clear the failed row a `-- no-transaction` migration left, after fixing the schema by hand; or, with --checksums, re-record checksums after harmless edits.
    Repair(RepairArgs),
    /// Create an empty schema, optionally bringing it to head with the shared or tenant migrations.
    CreateSchema(CreateSchemaArgs),
    /// Drop a schema and everything in it; without --yes only show what would go.
    DropSchema(DropSchemaArgs),
    /// Copy a schema (structure, rows, history) into a new schema of the same database, all or nothing.
    CopyIntoNewSchema(CopyArgs),
    /// Add or remove a tenant.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Move to a declared version ([versions.NAME]): build its schemas beside the current ones, fill and check them. `migrate-to-NAME` is the same command.
    MigrateTo(MigrateToArgs),
    /// Write a new, empty migration file with the next version (sequential or timestamp, as the folder does).
    New(NewArgs),
    /// List the migrations of a set, in order, with their checksums and which are reversible.
    History(HistoryArgs),
    /// Print the SQL of one migration (or its .down.sql with --down).
    Show(ShowArgs),
    /// Rollback points: copies of schemas under dated names, restored by renaming.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Make a moved version live by renaming schemas in one transaction (the version's schemas take the current names; the current ones keep a suffix).
    Cutover(CutoverArgs),
}

/// Global flags that take a value (so their value is not a command).
const VALUE_FLAGS: [&str; 6] = [
    "--config",
    "--database-url",
    "--shared-schema",
    "--shared-migrations",
    "--tenant-migrations",
    "--format",
];

/// `migrate-to-v2 ...` is `migrate-to v2 ...`: splits the command word.
pub fn split_migrate_to(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut out = Vec::with_capacity(args.len() + 1);
    let mut it = args.into_iter();
    out.extend(it.next());
    let mut skip_value = false;
    while let Some(a) = it.next() {
        let text = a.to_string_lossy().into_owned();
        if skip_value {
            skip_value = false;
        } else if VALUE_FLAGS.contains(&text.as_str()) {
            skip_value = true;
        } else if !text.starts_with('-') {
            match text.strip_prefix("migrate-to-") {
                Some(version) if !version.is_empty() => {
                    out.push("migrate-to".into());
                    out.push(version.into());
                }
                _ => out.push(a),
            }
            out.extend(it);
            return out;
        }
        out.push(a);
    }
    out
}

/// Runs the command: an exit code, or why there is none.
pub async fn run(cli: Cli) -> Result<u8, Failure> {
    let g = &cli.global;
    // Not locked for the whole command: JSON events are written to stdout
    // from the workers while it runs.
    let mut out = io::stdout();
    let stdout = &mut out as &mut dyn Write;
    match &cli.command {
        Command::Migrate(a) => migrate::migrate(g, stdout, a).await,
        Command::Plan(a) => migrate::plan(g, stdout, a).await,
        Command::Rollback(a) => migrate::rollback(g, stdout, a).await,
        Command::Stamp(a) => migrate::stamp(g, stdout, a).await,
        Command::Lint(a) => lint::lint(g, stdout, a).await,
        Command::Verify(a) => verify::verify(g, stdout, a).await,
        Command::Status(a) => status::status(g, stdout, a).await,
        Command::Tenants(f) => status::tenants(g, stdout, f).await,
        Command::Runs(a) => status::runs(g, stdout, a).await,
        Command::Repair(a) => repair::repair(g, stdout, a).await,
        Command::CreateSchema(a) => schemas::create_schema(g, stdout, a).await,
        Command::DropSchema(a) => schemas::drop_schema(g, stdout, a).await,
        Command::CopyIntoNewSchema(a) => schemas::copy_into_new_schema(g, stdout, a).await,
        Command::Tenant(c) => schemas::tenant(g, stdout, c).await,
        Command::MigrateTo(a) => moves::migrate_to(g, stdout, a).await,
        Command::Cutover(a) => moves::cutover(g, stdout, a).await,
        Command::New(a) => authoring::new(g, stdout, a).await,
        Command::History(a) => authoring::history(g, stdout, a).await,
        Command::Show(a) => authoring::show(g, stdout, a).await,
        Command::Snapshot(c) => snapshot::snapshot(g, stdout, c).await,
    }
}
