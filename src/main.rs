//! The `tenantmig` command line: a thin layer over the library. `main` only
//! maps `run()`'s result to an exit code: 0 all done, 1 some schemas failed
//! or were not reached (or, for `status`, are not up to date), 2 usage,
//! configuration or connection error.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use tenantmig::output::{self, Format, HumanEvents, JsonEvents};
use tenantmig::repair::RepairAction;
use tenantmig::{
    CopyOptions, Engine, Error, EventSink, Goal, MigrateOptions, NoEvents, Selection, Settings,
    Verify,
};

/// PostgreSQL schema migrations for schema-per-tenant SaaS: shared
/// migrations once, tenant migrations fanned out across every tenant schema.
#[derive(Debug, Parser)]
#[command(name = "tenantmig", version, about, long_about = None, after_help = EXIT_CODES)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

const EXIT_CODES: &str = "Exit codes: 0 all done; 1 some schemas failed, were refused or not reached (status: not all up to date; verify: drift found; lint: findings that fail); 2 usage, configuration or connection error, or a destructive command without --yes.";

/// Flags every command takes.
#[derive(Debug, Args)]
struct Global {
    /// Configuration file [default: ./tenantmig.toml when it exists].
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// PostgreSQL URL (overrides database_url, DATABASE_URL and TENANTMIG_DATABASE_URL).
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// The shared schema [config: shared_schema; default: public].
    #[arg(long, global = true, value_name = "SCHEMA")]
    shared_schema: Option<String>,
    /// Folder of the shared migrations [config: shared_migrations; default: shared].
    #[arg(long, global = true, value_name = "DIR")]
    shared_migrations: Option<PathBuf>,
    /// Folder of the tenant migrations [config: tenant_migrations; default: tenant].
    #[arg(long, global = true, value_name = "DIR")]
    tenant_migrations: Option<PathBuf>,
    /// Output format: human text (a progress bar on a terminal) or JSON.
    #[arg(long, global = true, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors in the log output, and no progress bar.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
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

#[derive(Debug, Args)]
struct MigrateToArgs {
    /// The version, as declared in tenantmig.toml (e.g. v2).
    version: String,
    #[command(flatten)]
    filter: TenantFilter,
    /// Tenants moved at once [config: jobs; default: 4]; capped by the server's free connections.
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// Stop starting new tenants after more than N failures; in-flight ones finish [config: max_failures; default: 0].
    #[arg(long, value_name = "N")]
    max_failures: Option<usize>,
    /// Show the whole plan (schemas to create, steps, each tenant's progress) and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run: also print the SQL of every step (migrations and data-move files, placeholders in place).
    #[arg(long, requires = "dry_run")]
    sql: bool,
    /// Drop every schema this move created and forget its progress; the source schemas stay as they are. Shows the list; --yes confirms.
    #[arg(long, conflicts_with_all = ["dry_run", "tenants", "exclude"])]
    abort: bool,
    /// Confirm --abort.
    #[arg(long, requires = "abort")]
    yes: bool,
}

#[derive(Debug, Args)]
struct NewArgs {
    /// The set the migration belongs to.
    #[arg(value_enum)]
    set: ApplySet,
    /// What the migration does, in words (becomes the file name: "add tags" -> 0010_add_tags.sql).
    #[arg(required = true, num_args = 1..)]
    description: Vec<String>,
    /// Write an .up.sql/.down.sql pair, so `rollback` can undo it.
    #[arg(long)]
    reversible: bool,
    /// How to number it: as the folder does (auto), the last version + 1, or the UTC time [config: version_style; default: auto].
    #[arg(long, value_enum)]
    style: Option<tenantmig::authoring::VersionStyle>,
    /// Print the file names it would write, and write nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
struct HistoryArgs {
    /// Only this set [default: both].
    #[arg(value_enum)]
    set: Option<ApplySet>,
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// The migration's version (e.g. 9 or 0009).
    version: i64,
    /// Print the .down.sql instead.
    #[arg(long)]
    down: bool,
    /// The set to look in [default: tenant, then shared].
    #[arg(long, value_enum)]
    set: Option<ApplySet>,
}

#[derive(Debug, Subcommand)]
enum SnapshotCommand {
    /// Copy the shared schema and every tenant (or only the --tenant ones) under dated names (<schema>_snap_<YYYYMMDD_HHMMSS>).
    Create {
        #[command(flatten)]
        filter: TenantFilter,
        /// Schemas copied at once [config: jobs; default: 4].
        #[arg(long, short = 'j', value_name = "N")]
        jobs: Option<usize>,
        /// List the schemas that would be copied and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List snapshots, newest first: id, time, state, schemas, rows and size.
    List,
    /// Put a snapshot's copies back under the schemas' names, in one transaction; the schemas they replace are kept as a new snapshot. Shows the renames; --yes confirms.
    Restore {
        /// The snapshot's id (see `tenantmig snapshot list`).
        id: i64,
        /// Confirm the restore.
        #[arg(long)]
        yes: bool,
        /// Show the renames and change nothing (exit 0).
        #[arg(long, conflicts_with = "yes")]
        dry_run: bool,
    },
    /// Drop the copies of snapshots older than a duration (never a restored copy, which is live); --yes confirms.
    Prune {
        /// Age, e.g. 7d, 12h, 30m.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        older_than: std::time::Duration,
        /// Confirm the drop.
        #[arg(long)]
        yes: bool,
        /// List what would be dropped and change nothing (exit 0).
        #[arg(long, conflicts_with = "yes")]
        dry_run: bool,
    },
}

#[derive(Debug, Args)]
struct CutoverArgs {
    /// The version to make live (e.g. v2).
    version: String,
    /// Swap back: undo the version's cut-over, renames in reverse, in one transaction.
    #[arg(long)]
    revert: bool,
    /// Show the renames and change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// A migration set: the shared or the tenant migrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ApplySet {
    /// The shared migrations (a new version's shared schema).
    Shared,
    /// The tenant migrations.
    Tenant,
}

#[derive(Debug, Args)]
struct CreateSchemaArgs {
    /// The schema to create (quote names with capitals or spaces for the shell).
    name: String,
    /// Accept an existing schema instead of failing (with --apply, it is still brought to head).
    #[arg(long)]
    if_not_exists: bool,
    /// Bring the new schema to head with this migration set right away.
    #[arg(long, value_enum, value_name = "SET")]
    apply: Option<ApplySet>,
    /// Say what would be created (and, with --apply, which migrations would run) and change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
struct DropSchemaArgs {
    /// The schema to drop.
    name: String,
    /// Succeed quietly when the schema does not exist.
    #[arg(long)]
    if_exists: bool,
    /// Confirm: without it, only show what would be dropped (tables, approximate rows, size) and exit 2.
    #[arg(long)]
    yes: bool,
    /// Also allow dropping the shared or control schema (with --yes).
    #[arg(long)]
    allow_shared: bool,
    /// Only show what would be dropped (exit 0).
    #[arg(long, conflicts_with = "yes")]
    dry_run: bool,
}

#[derive(Debug, Args)]
struct CopyArgs {
    /// The schema to copy.
    source: String,
    /// The new schema; it must not exist.
    target: String,
    /// Copy the structure only; the history table's rows are still copied, so the copy knows its version.
    #[arg(long)]
    no_data: bool,
    /// Connections copying tables and building indexes at once [config: jobs; default: 4].
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// Check before the copy is put in place: row counts per table, row counts and row hashes, or nothing.
    #[arg(long, value_enum, default_value_t = Verify::Counts)]
    verify: Verify,
    /// Check the names and show what would be copied (tables, approximate rows, size); change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant schema, bring it to head and register it.
    Add {
        /// The new tenant's schema.
        name: String,
        /// Copy this up-to-date schema instead of running the tenant migrations (faster for long histories).
        #[arg(long, value_name = "SCHEMA")]
        from_template: Option<String>,
        /// Say how the tenant would be created and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Drop a tenant's schema and unregister it; without --yes only show what would go.
    Remove {
        /// The tenant's schema.
        name: String,
        /// Confirm the drop.
        #[arg(long)]
        yes: bool,
        /// Only show what would be dropped (exit 0).
        #[arg(long, conflicts_with = "yes")]
        dry_run: bool,
    },
}

/// Which tenants a command looks at.
#[derive(Debug, Args, Clone)]
struct TenantFilter {
    /// Only this tenant schema (repeatable); replaces the configured tenant source.
    #[arg(long = "tenant", value_name = "NAME")]
    tenants: Vec<String>,
    /// Leave this tenant schema out (repeatable).
    #[arg(long, value_name = "NAME")]
    exclude: Vec<String>,
}

/// Which schemas a command looks at.
#[derive(Debug, Args, Clone)]
struct SelectArgs {
    /// Only the shared schema.
    #[arg(long, conflicts_with_all = ["tenants_only", "tenants", "exclude"])]
    shared_only: bool,
    /// Only the tenant schemas.
    #[arg(long)]
    tenants_only: bool,
    #[command(flatten)]
    filter: TenantFilter,
}

impl SelectArgs {
    fn selection(&self) -> Selection {
        Selection {
            shared: !self.tenants_only,
            tenants: !self.shared_only,
            tenant_names: self.filter.tenants.clone(),
            exclude: self.filter.exclude.clone(),
        }
    }
}

#[derive(Debug, Args)]
struct MigrateArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Tenants migrated at once, one connection each [config: jobs; default: 4]; capped by the server's free connections.
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// Stop starting new tenants after more than N failures; in-flight ones finish [config: max_failures; default: 0 = stop at the first].
    #[arg(long, value_name = "N")]
    max_failures: Option<usize>,
    /// Migrate N tenants first and go on only if all of them succeed.
    #[arg(long, value_name = "N", default_value_t = 0)]
    canary: usize,
    /// Show the plan (which schemas get which versions) and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run: also print the SQL of each pending migration.
    #[arg(long, requires = "dry_run")]
    sql: bool,
    /// Apply migrations only up to this version (inclusive), e.g. 0003; later ones stay pending.
    #[arg(long, value_name = "VERSION")]
    target: Option<i64>,
}

#[derive(Debug, Args)]
struct PlanArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Also print the SQL of each pending migration.
    #[arg(long)]
    sql: bool,
    /// Plan `migrate --target VERSION`: only versions up to this one.
    #[arg(long, value_name = "VERSION")]
    target: Option<i64>,
}

#[derive(Debug, Args)]
struct LintArgs {
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
enum DenyLevel {
    /// Warnings as well as errors.
    Warnings,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    #[command(flatten)]
    filter: TenantFilter,
    /// Compare with this tenant schema [default: a scratch schema built from the tenant migrations, dropped afterwards].
    #[arg(long, value_name = "TENANT")]
    reference: Option<String>,
}

#[derive(Debug, Args)]
struct StampArgs {
    /// Record every migration up to this version (inclusive), e.g. 0003.
    version: i64,
    #[command(flatten)]
    select: SelectArgs,
    /// Schemas stamped at once, one connection each [config: jobs; default: 4].
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// Stop starting new tenants after more than N failures [config: max_failures; default: 0].
    #[arg(long, value_name = "N")]
    max_failures: Option<usize>,
    /// Show which schemas would get which history rows, and change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
struct RollbackArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Undo every applied version above VERSION; 0 undoes everything and empties the history.
    #[arg(
        long,
        value_name = "VERSION",
        required_unless_present = "steps",
        conflicts_with = "steps"
    )]
    target: Option<i64>,
    /// Undo the last N applied migrations of each schema.
    #[arg(long, value_name = "N")]
    steps: Option<usize>,
    /// Schemas rolled back at once, one connection each [config: jobs; default: 4]; capped by the server's free connections.
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// Stop starting new tenants after more than N failures; in-flight ones finish [config: max_failures; default: 0].
    #[arg(long, value_name = "N")]
    max_failures: Option<usize>,
    /// Show the plan (which schemas undo which versions) and change nothing.
    #[arg(long, conflicts_with = "yes")]
    dry_run: bool,
    /// With --dry-run: also print each .down.sql that would run.
    #[arg(long, requires = "dry_run")]
    sql: bool,
    /// Confirm: down files usually drop tables or columns, and their data with them. Without it the plan is shown and nothing runs.
    #[arg(long)]
    yes: bool,
}

#[derive(Debug, Args)]
struct RunsArgs {
    #[command(subcommand)]
    show: Option<RunsCommand>,
    /// How many runs to list, newest first.
    #[arg(long, default_value_t = 20, value_name = "N")]
    limit: i64,
}

#[derive(Debug, Subcommand)]
enum RunsCommand {
    /// One run: command, start, end, outcome, and per schema the state, versions, error, duration and attempts.
    Show {
        /// The run's id (see `tenantmig runs`).
        id: i64,
    },
}

#[derive(Debug, Args)]
struct RepairArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Mark the failed migration as applied (it was completed by hand) instead of clearing its row so it runs again.
    #[arg(long, conflicts_with = "checksums")]
    mark_applied: bool,
    /// Instead: re-record the checksums of applied migrations whose files were edited harmlessly (whitespace, comments).
    #[arg(long)]
    checksums: bool,
    /// Only show what would change (also what happens without --yes, but with exit code 0).
    #[arg(long, conflicts_with = "yes")]
    dry_run: bool,
    /// Confirm: without it, repair only shows what it would change.
    #[arg(long)]
    yes: bool,
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
fn split_migrate_to(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
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

fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(split_migrate_to(std::env::args_os().collect())) {
        Ok(cli) => cli,
        // A usage error may quote an argument, e.g. a URL given without
        // --database-url: its password is masked like any other message.
        Err(e) if e.use_stderr() => {
            eprint!("{}", tenantmig::mask::mask_secrets(&e.render().to_string()));
            return ExitCode::from(e.exit_code() as u8);
        }
        Err(e) => e.exit(),
    };
    init_logging(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(Failure::Tool(e)) => {
            // Masked again here: no message ever shows a password.
            eprintln!("error: {}", tenantmig::mask::mask_secrets(&e.to_string()));
            ExitCode::from(e.exit_code() as u8)
        }
        // A closed pipe (`tenantmig status | head`) is not an error.
        Err(Failure::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(Failure::Io(e)) => {
            eprintln!("error: writing output: {e}");
            ExitCode::from(2)
        }
    }
}

enum Failure {
    Tool(Error),
    Io(io::Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Tool(e)
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

fn init_logging(g: &Global) {
    use tracing_subscriber::EnvFilter;
    let level = if g.quiet {
        "error"
    } else {
        match g.verbose {
            0 => "warn",
            1 => "info",
            _ => "debug",
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!("tenantmig={level},{level}").replace(",debug", ",info"))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(io::stderr().is_terminal())
        .with_writer(output::LogWriter)
        .try_init();
}

/// The command line, resolved into settings (config file, environment, flags).
fn settings(g: &Global) -> Result<Settings, Error> {
    let mut s = Settings::load(g.config.as_deref())?;
    if let Some(u) = &g.database_url {
        s.database_url = Some(u.clone());
    }
    if let Some(x) = &g.shared_schema {
        s.shared_schema = x.clone();
    }
    if let Some(x) = &g.shared_migrations {
        s.shared_migrations = x.clone();
    }
    if let Some(x) = &g.tenant_migrations {
        s.tenant_migrations = x.clone();
    }
    s.validate()?;
    Ok(s)
}

/// Applies `--jobs` and `--max-failures` to the settings.
fn run_limits(
    s: &mut Settings,
    jobs: Option<usize>,
    max_failures: Option<usize>,
) -> Result<(), Error> {
    if let Some(j) = jobs {
        if j == 0 {
            return Err(Error::Usage {
                message: "--jobs must be at least 1".into(),
            });
        }
        s.jobs = j;
    }
    if let Some(m) = max_failures {
        s.max_failures = m;
    }
    Ok(())
}

fn sink(g: &Global) -> (Arc<dyn EventSink>, Option<Arc<HumanEvents>>) {
    match g.format {
        Format::Json => (Arc::new(JsonEvents::new(Box::new(io::stdout()))), None),
        Format::Human => {
            let terminal =
                io::stderr().is_terminal() && !g.quiet && std::env::var_os("CI").is_none();
            let h = Arc::new(HumanEvents::new(Box::new(io::stderr()), terminal));
            (h.clone(), Some(h))
        }
    }
}

/// The command line for the ledger, with the password of any connection
/// string masked (the ledger masks again when it stores it).
fn args_for_ledger() -> Vec<String> {
    tenantmig::mask::mask_args(&std::env::args().skip(1).collect::<Vec<_>>())
}

/// Resolves on the first Ctrl-C (SIGINT) or SIGTERM (what systemd and
/// Kubernetes send); a second signal exits at once (the server rolls back
/// whatever was in flight when the connections drop).
fn ctrl_c() -> impl std::future::Future<Output = ()> + Send + 'static {
    ctrl_c_saying(
        "interrupted: finishing in-flight migrations, starting nothing new (Ctrl-C again to abort now)",
    )
}

/// As [`ctrl_c`], printing `message` on the first signal.
fn ctrl_c_saying(message: &'static str) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    // The handlers are installed here, before the command starts, so that
    // no signal can arrive while the default action (exit) still applies.
    let mut signals = Signals::install();
    tokio::spawn(async move {
        let Some(first) = signals.next().await else {
            return;
        };
        eprintln!("{message} [{first}]");
        let _ = tx.send(());
        if let Some(second) = signals.next().await {
            eprintln!("aborted: in-flight transactions are rolled back by the server");
            std::process::exit(if second == "SIGTERM" { 143 } else { 130 });
        }
    });
    async move {
        let _ = rx.await;
    }
}

/// SIGINT and SIGTERM, as one stream.
struct Signals {
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals {
                int: signal(SignalKind::interrupt()).ok(),
                term: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// The next signal's name; `None` when no handler could be installed.
    async fn next(&mut self) -> Option<&'static str> {
        #[cfg(unix)]
        {
            let int = async {
                match self.int.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            let term = async {
                match self.term.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(()) = int => Some("SIGINT"),
                Some(()) = term => Some("SIGTERM"),
                else => None,
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.ok().map(|()| "Ctrl-C")
        }
    }
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    let g = &cli.global;
    // Not locked for the whole command: JSON events are written to stdout
    // from the workers while it runs.
    let mut out = io::stdout();
    let stdout = &mut out as &mut dyn Write;
    match &cli.command {
        Command::Migrate(a) => {
            let mut s = settings(g)?;
            run_limits(&mut s, a.jobs, a.max_failures)?;
            let selection = a.select.selection();
            let goal = a
                .target
                .map_or(Goal::Head, |version| Goal::UpTo { version });
            let (events, human) = sink(g);
            let engine = Engine::new(s, &selection, events)?;
            if a.dry_run {
                let plan = engine.plan_for(&selection, goal).await?;
                print_plan(stdout, g.format, &engine, &plan, a.sql)?;
                return Ok(0);
            }
            let opts = MigrateOptions {
                selection,
                canary: a.canary,
                dry_run: false,
                args: args_for_ledger(),
                goal,
            };
            run_and_report(stdout, g.format, &engine, &opts, human).await
        }
        Command::Plan(a) => {
            let selection = a.select.selection();
            let engine = Engine::new(settings(g)?, &selection, Arc::new(NoEvents))?;
            let goal = a
                .target
                .map_or(Goal::Head, |version| Goal::UpTo { version });
            let plan = engine.plan_for(&selection, goal).await?;
            print_plan(stdout, g.format, &engine, &plan, a.sql)?;
            Ok(0)
        }
        Command::Rollback(a) => {
            let mut s = settings(g)?;
            run_limits(&mut s, a.jobs, a.max_failures)?;
            let mut selection = a.select.selection();
            // Naming tenants limits a rollback to them: undoing the shared
            // schema's migrations takes --shared-only or no --tenant at all.
            if !a.select.filter.tenants.is_empty() {
                selection.shared = false;
            }
            let goal = Goal::Revert {
                target: a.target,
                steps: a.steps,
            };
            let (events, human) = sink(g);
            let engine = Engine::new(s, &selection, events)?;
            if a.dry_run || !a.yes {
                let plan = engine.plan_for(&selection, goal).await?;
                print_plan(stdout, g.format, &engine, &plan, a.sql)?;
                let work = plan
                    .shared
                    .iter()
                    .chain(&plan.tenants)
                    .any(|t| !t.pending.is_empty());
                if a.dry_run || !work {
                    return Ok(0);
                }
                return Err(Error::Usage {
                    message: "a rollback runs .down.sql files, which usually drop tables or columns and their rows; check the plan above (--dry-run --sql shows the SQL), then rerun with --yes".into(),
                }
                .into());
            }
            let opts = MigrateOptions {
                selection,
                args: args_for_ledger(),
                goal,
                ..MigrateOptions::default()
            };
            run_and_report(stdout, g.format, &engine, &opts, human).await
        }
        Command::Stamp(a) => {
            let mut s = settings(g)?;
            run_limits(&mut s, a.jobs, a.max_failures)?;
            let mut selection = a.select.selection();
            // As with rollback: named tenants only.
            if !a.select.filter.tenants.is_empty() {
                selection.shared = false;
            }
            let goal = Goal::Stamp { version: a.version };
            let (events, human) = sink(g);
            let engine = Engine::new(s, &selection, events)?;
            if a.dry_run {
                let plan = engine.plan_for(&selection, goal).await?;
                print_plan(stdout, g.format, &engine, &plan, false)?;
                return Ok(0);
            }
            let opts = MigrateOptions {
                selection,
                args: args_for_ledger(),
                goal,
                ..MigrateOptions::default()
            };
            run_and_report(stdout, g.format, &engine, &opts, human).await
        }
        Command::Lint(a) => lint_command(stdout, g, a).await,
        Command::Verify(a) => {
            let selection = Selection {
                shared: false,
                tenants: true,
                tenant_names: a.filter.tenants.clone(),
                exclude: a.filter.exclude.clone(),
            };
            let engine = Engine::new(settings(g)?, &selection, Arc::new(NoEvents))?;
            let report = engine
                .verify(&tenantmig::verify::VerifyOptions {
                    selection,
                    reference: a.reference.clone(),
                })
                .await?;
            match g.format {
                Format::Json => output::json_line(stdout, &report)?,
                Format::Human => output::verify_human(stdout, &report)?,
            }
            Ok(if report.has_drift() { 1 } else { 0 })
        }
        Command::Status(a) => {
            let selection = a.selection();
            let engine = Engine::new(settings(g)?, &selection, Arc::new(NoEvents))?;
            let report = engine.status(&selection).await?;
            match g.format {
                Format::Json => output::json_line(stdout, &report)?,
                Format::Human => {
                    output::status_human(stdout, &report, engine.shared_set(), engine.tenant_set())?
                }
            }
            Ok(if report.all_up_to_date() { 0 } else { 1 })
        }
        Command::Tenants(f) => {
            let selection = Selection {
                shared: false,
                tenants: false,
                tenant_names: f.tenants.clone(),
                exclude: f.exclude.clone(),
            };
            let engine = Engine::new(settings(g)?, &selection, Arc::new(NoEvents))?;
            let list = engine.tenants(&selection).await?;
            match g.format {
                Format::Json => output::json_line(stdout, &list)?,
                Format::Human => output::tenants_human(stdout, &list)?,
            }
            Ok(if list.invalid.is_empty() { 0 } else { 1 })
        }
        Command::Runs(a) => {
            let s = settings(g)?;
            let control = s.control_schema.clone();
            let engine = Engine::new(s, &Selection::default(), Arc::new(NoEvents))?;
            let mut conn = engine.connection().await?;
            match &a.show {
                None => {
                    let runs = tenantmig::ledger::list_runs(&mut conn, &control, a.limit).await?;
                    match g.format {
                        Format::Json => output::json_line(stdout, &runs)?,
                        Format::Human => output::runs_human(stdout, &runs)?,
                    }
                }
                Some(RunsCommand::Show { id }) => {
                    let (run, schemas) =
                        tenantmig::ledger::show_run(&mut conn, &control, *id).await?;
                    match g.format {
                        Format::Json => output::json_line(
                            stdout,
                            &serde_json::json!({ "run": run, "schemas": schemas }),
                        )?,
                        Format::Human => output::run_detail_human(stdout, &run, &schemas)?,
                    }
                }
            }
            Ok(0)
        }
        Command::Repair(a) => {
            let selection = a.select.selection();
            let engine = Engine::new(settings(g)?, &selection, Arc::new(NoEvents))?;
            let (items, action) = if a.checksums {
                let items = engine.checksum_candidates(&selection).await?;
                (items, RepairAction::Checksums)
            } else if a.mark_applied {
                (
                    engine.repair_candidates(&selection).await?,
                    RepairAction::MarkApplied,
                )
            } else {
                (
                    engine.repair_candidates(&selection).await?,
                    RepairAction::Clear,
                )
            };
            if items.is_empty() && g.format == Format::Json {
                output::json_line(stdout, &items)?;
                return Ok(0);
            }
            if items.is_empty() {
                writeln!(
                    stdout,
                    "nothing to repair: no schema has {}",
                    if a.checksums {
                        "an applied migration whose checksum differs from its file"
                    } else {
                        "a failed migration row"
                    }
                )?;
                return Ok(0);
            }
            let schemas = items
                .iter()
                .map(|i| i.schema.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            match g.format {
                Format::Json => output::json_line(stdout, &items)?,
                Format::Human if a.checksums => output::checksum_repairs_human(
                    stdout,
                    &items,
                    engine.shared_set(),
                    engine.tenant_set(),
                )?,
                Format::Human => {
                    let verb = if a.mark_applied {
                        "mark as applied"
                    } else {
                        "clear (so it runs again)"
                    };
                    for i in &items {
                        writeln!(
                            stdout,
                            "{} {}: failed migration {} — will {verb}{}",
                            i.phase.as_str(),
                            i.schema,
                            i.version,
                            i.detail
                                .as_ref()
                                .map(|d| format!("\n    last failure: {d}"))
                                .unwrap_or_default()
                        )?;
                    }
                }
            }
            if a.dry_run {
                return Ok(0);
            }
            if !a.yes {
                let message = if a.checksums {
                    format!(
                        "repair --checksums would re-record {} checksum(s) in {schemas} schema(s), and it cannot tell a harmless edit (whitespace, comments) from changed SQL: check the edits above (e.g. with `git diff` on the files), then rerun with --yes to confirm",
                        items.len()
                    )
                } else {
                    format!(
                        "repair changes history rows of {schemas} schema(s); check each schema by hand first (e.g. drop an INVALID index left by CREATE INDEX CONCURRENTLY), then rerun with --yes to confirm"
                    )
                };
                return Err(Error::Usage { message }.into());
            }
            let run = engine.repair(&items, action, &args_for_ledger()).await?;
            match g.format {
                Format::Json => output::json_line(
                    stdout,
                    &serde_json::json!({ "run_id": run, "repaired": items.len(), "schemas": schemas }),
                )?,
                Format::Human => writeln!(
                    stdout,
                    "repaired {} row(s) in {schemas} schema(s) (run {run}); run `tenantmig migrate` to continue",
                    items.len()
                )?,
            }
            Ok(0)
        }
        Command::CreateSchema(a) => {
            let mut s = settings(g)?;
            let selection = match a.apply {
                Some(ApplySet::Shared) => {
                    s.shared_schema = a.name.clone();
                    Selection {
                        shared: true,
                        tenants: false,
                        ..Selection::default()
                    }
                }
                Some(ApplySet::Tenant) => Selection {
                    shared: false,
                    tenants: true,
                    tenant_names: vec![a.name.clone()],
                    exclude: Vec::new(),
                },
                None => Selection::default(),
            };
            let (events, human) = sink(g);
            let engine = Engine::new(s, &selection, events)?;
            if a.dry_run {
                let exists = engine.schema_exists(&a.name).await?;
                if exists && !a.if_not_exists {
                    return Err(Error::Usage {
                        message: format!(
                            "schema {:?} already exists; pass --if-not-exists to accept it",
                            a.name
                        ),
                    }
                    .into());
                }
                writeln!(
                    stdout,
                    "{} schema {}",
                    if exists {
                        "would keep the existing"
                    } else {
                        "would create"
                    },
                    a.name
                )?;
                if a.apply.is_some() {
                    let plan = engine.plan_for(&selection, Goal::Head).await?;
                    print_plan(stdout, g.format, &engine, &plan, false)?;
                }
                return Ok(0);
            }
            let created = engine.create_schema(&a.name, a.if_not_exists).await?;
            let mut report = None;
            if a.apply.is_some() {
                let opts = MigrateOptions {
                    selection,
                    canary: 0,
                    dry_run: false,
                    args: args_for_ledger(),
                    goal: Default::default(),
                };
                let r = engine.migrate(&opts, ctrl_c()).await;
                if let Some(h) = &human {
                    h.finish();
                }
                report = Some(r?);
            }
            match g.format {
                Format::Json => output::json_line(
                    stdout,
                    &serde_json::json!({ "schema": a.name, "created": created, "run": report }),
                )?,
                Format::Human => {
                    writeln!(
                        stdout,
                        "{} schema {}",
                        if created {
                            "created"
                        } else {
                            "kept the existing"
                        },
                        a.name
                    )?;
                    if let Some(r) = &report {
                        output::run_summary_human(stdout, r)?;
                    }
                }
            }
            Ok(match &report {
                Some(r) if !r.is_success() => 1,
                _ => 0,
            })
        }
        Command::DropSchema(a) => {
            let s = settings(g)?;
            tenantmig::lifecycle::check_droppable(&a.name, &s, a.allow_shared)?;
            let engine = Engine::new(s, &Selection::default(), Arc::new(NoEvents))?;
            drop_command(
                &engine,
                g,
                stdout,
                &a.name,
                a.if_exists,
                Confirm::from_flags(a.dry_run, a.yes),
                "drop-schema",
            )
            .await
        }
        Command::CopyIntoNewSchema(a) => {
            let s = settings(g)?;
            let jobs = a.jobs.unwrap_or(s.jobs);
            let (events, human) = sink(g);
            let engine = Engine::new(s, &Selection::default(), events)?;
            if a.dry_run {
                return copy_dry_run(&engine, g, stdout, a).await;
            }
            let opts = CopyOptions {
                data: !a.no_data,
                verify: a.verify,
                ..CopyOptions::new(&a.source, &a.target, jobs)
            };
            let started = std::time::Instant::now();
            let report = engine
                .copy_schema(
                    &opts,
                    ctrl_c_saying("interrupted: stopping the copy and dropping what it built"),
                )
                .await;
            if let Some(h) = &human {
                h.finish();
            }
            let (report, error) = match report {
                Ok(r) => (Some(r), None),
                Err(e) => (None, Some(e)),
            };
            // A copy that got as far as running is a run in the ledger.
            if !matches!(
                error,
                Some(Error::Usage { .. } | Error::InvalidName(_) | Error::Connect { .. })
            ) {
                let msg = error.as_ref().map(|e| e.to_string());
                let _ = engine
                    .record_run(
                        "copy-into-new-schema",
                        &args_for_ledger(),
                        &a.target,
                        started,
                        msg.as_deref(),
                    )
                    .await;
            }
            if let Some(e) = error {
                return Err(e.into());
            }
            let report = report.expect("a report when there is no error");
            match g.format {
                Format::Json => output::json_line(stdout, &report)?,
                Format::Human => output::copy_report_human(stdout, &report)?,
            }
            Ok(0)
        }
        Command::Tenant(TenantCommand::Add {
            name,
            from_template,
            dry_run,
        }) => {
            let selection = Selection {
                shared: false,
                tenants: true,
                tenant_names: vec![name.clone()],
                exclude: Vec::new(),
            };
            let (events, human) = sink(g);
            let engine = Engine::new(settings(g)?, &selection, events)?;
            if *dry_run {
                tenantmig::ident::validate_schema_name(name).map_err(Error::from)?;
                if engine.schema_exists(name).await? {
                    return Err(Error::Usage {
                        message: format!(
                            "schema {name:?} already exists; to bring it to head run `tenantmig migrate --tenant {name}`"
                        ),
                    }
                    .into());
                }
                let how = match from_template {
                    Some(t) => format!("by copying the template schema {t}"),
                    None => {
                        let set = engine.tenant_set();
                        format!(
                            "by applying the {} tenant migrations{}",
                            set.len(),
                            set.head()
                                .map(|h| format!(" (up to {})", set.fmt_version(h)))
                                .unwrap_or_default()
                        )
                    }
                };
                let register = if engine.settings().tenants.query.is_some() {
                    "; the tenant list comes from tenants.query, so add it to the application's table too"
                } else {
                    ", then register it"
                };
                writeln!(stdout, "would create tenant schema {name} {how}{register}")?;
                return Ok(0);
            }
            let r = engine
                .tenant_add(name, from_template.as_deref(), &args_for_ledger(), ctrl_c())
                .await;
            if let Some(h) = &human {
                h.finish();
            }
            let r = r?;
            match g.format {
                Format::Json => output::json_line(stdout, &r)?,
                Format::Human => output::tenant_add_human(stdout, &r)?,
            }
            Ok(0)
        }
        Command::MigrateTo(a) => migrate_to_command(a, g, stdout).await,
        Command::New(a) => {
            let s = settings(g)?;
            let dir = match a.set {
                ApplySet::Shared => &s.shared_migrations,
                ApplySet::Tenant => &s.tenant_migrations,
            };
            let files = tenantmig::authoring::new_migration(
                dir,
                &a.description.join(" "),
                a.reversible,
                a.style.unwrap_or(s.version_style),
                chrono::Utc::now(),
                a.dry_run,
            )?;
            match g.format {
                Format::Json => output::json_line(stdout, &files)?,
                Format::Human => {
                    let verb = if a.dry_run { "would create" } else { "created" };
                    for f in &files {
                        writeln!(stdout, "{verb} {}", f.display())?;
                    }
                }
            }
            Ok(0)
        }
        Command::History(a) => {
            let s = settings(g)?;
            let mut sets = Vec::new();
            for (set, name, dir) in [
                (ApplySet::Shared, "shared", &s.shared_migrations),
                (ApplySet::Tenant, "tenant", &s.tenant_migrations),
            ] {
                if a.set.is_none_or(|x| x == set) {
                    sets.push((name, tenantmig::MigrationSet::load(dir)?));
                }
            }
            match g.format {
                Format::Json => output::json_line(
                    stdout,
                    &sets
                        .iter()
                        .map(|(name, set)| output::history_json(name, set))
                        .collect::<Vec<_>>(),
                )?,
                Format::Human => {
                    for (name, set) in &sets {
                        output::history_human(stdout, name, set)?;
                    }
                }
            }
            Ok(0)
        }
        Command::Show(a) => {
            let s = settings(g)?;
            let mut found = None;
            for (set, dir) in [
                (ApplySet::Tenant, &s.tenant_migrations),
                (ApplySet::Shared, &s.shared_migrations),
            ] {
                if a.set.is_some_and(|x| x != set) || (a.set.is_none() && !dir.is_dir()) {
                    continue;
                }
                let loaded = tenantmig::MigrationSet::load(dir)?;
                if let Some(i) = loaded.index_of(a.version) {
                    found = Some(loaded.migrations[i].clone());
                    break;
                }
            }
            let Some(m) = found else {
                return Err(Error::Usage {
                    message: format!(
                        "no migration has version {} (see tenantmig history)",
                        a.version
                    ),
                }
                .into());
            };
            let sql = if a.down {
                m.down_sql.clone().ok_or_else(|| Error::Usage {
                    message: format!(
                        "{} is not reversible: it has no .down.sql file",
                        m.path.display()
                    ),
                })?
            } else {
                m.sql.clone()
            };
            match g.format {
                Format::Json => output::json_line(
                    stdout,
                    &serde_json::json!({
                        "version": m.version, "description": m.description,
                        "path": m.path, "down": a.down, "sql": sql,
                    }),
                )?,
                Format::Human => {
                    let path = m.path.display().to_string();
                    let path = if a.down {
                        path.replace(".up.sql", ".down.sql")
                    } else {
                        path
                    };
                    writeln!(stdout, "-- {path}")?;
                    write!(stdout, "{sql}")?;
                    if !sql.ends_with('\n') {
                        writeln!(stdout)?;
                    }
                }
            }
            Ok(0)
        }
        Command::Snapshot(c) => snapshot_command(c, g, stdout).await,
        Command::Cutover(a) => {
            let engine = Engine::new(settings(g)?, &Selection::all(), Arc::new(NoEvents))?;
            let r = engine
                .cutover(&a.version, a.revert, a.dry_run, &args_for_ledger())
                .await?;
            match g.format {
                Format::Json => output::json_line(stdout, &r)?,
                Format::Human => output::cutover_human(stdout, &r)?,
            }
            Ok(0)
        }
        Command::Tenant(TenantCommand::Remove { name, yes, dry_run }) => {
            let s = settings(g)?;
            tenantmig::lifecycle::check_droppable(name, &s, false)?;
            let engine = Engine::new(s, &Selection::default(), Arc::new(NoEvents))?;
            let confirm = Confirm::from_flags(*dry_run, *yes);
            drop_command(&engine, g, stdout, name, false, confirm, "tenant remove").await
        }
    }
}

/// `tenantmig lint`: exit 1 on an error finding (or any finding with
/// `--deny warnings`).
#[cfg(feature = "lint")]
async fn lint_command(stdout: &mut dyn Write, g: &Global, a: &LintArgs) -> Result<u8, Failure> {
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
async fn lint_command(_: &mut dyn Write, _: &Global, _: &LintArgs) -> Result<u8, Failure> {
    Err(Error::Usage {
        message: "this tenantmig was built without the lint feature (it needs libclang to build PostgreSQL's parser); rebuild with default features".into(),
    }
    .into())
}

/// Prints a plan (migrate, rollback or stamp) as text or JSON.
fn print_plan(
    stdout: &mut dyn Write,
    format: Format,
    engine: &Engine,
    plan: &tenantmig::StatusReport,
    sql: bool,
) -> io::Result<()> {
    match format {
        Format::Json => output::json_line(stdout, plan),
        Format::Human => {
            output::plan_human(stdout, plan, engine.shared_set(), engine.tenant_set(), sql)
        }
    }
}

/// Runs migrate, rollback or stamp and prints the report: exit 1 unless
/// every selected schema got where the run was going.
async fn run_and_report(
    stdout: &mut dyn Write,
    format: Format,
    engine: &Engine,
    opts: &MigrateOptions,
    human: Option<Arc<HumanEvents>>,
) -> Result<u8, Failure> {
    let report = engine.migrate(opts, ctrl_c()).await;
    if let Some(h) = &human {
        h.finish();
    }
    let report = report?;
    match format {
        Format::Json => output::json_line(stdout, &report)?,
        Format::Human => output::run_summary_human(stdout, &report)?,
    }
    Ok(if report.is_success() { 0 } else { 1 })
}

/// `migrate-to VERSION`: the plan, the move, or `--abort`.
async fn migrate_to_command(
    a: &MigrateToArgs,
    g: &Global,
    stdout: &mut dyn Write,
) -> Result<u8, Failure> {
    let mut s = settings(g)?;
    run_limits(&mut s, a.jobs, a.max_failures)?;
    // Fails early, listing the declared versions.
    s.version(&a.version)?;
    let (events, human) = sink(g);
    let quiet = a.dry_run || a.abort;
    let engine = Engine::new(
        s,
        &Selection::all(),
        if quiet { Arc::new(NoEvents) } else { events },
    )?;
    if a.abort {
        let plan = engine.abort_plan(&a.version).await?;
        if plan.schemas.is_empty() {
            match g.format {
                Format::Json => output::json_line(stdout, &plan)?,
                Format::Human => writeln!(
                    stdout,
                    "the move to {} created no schema that still exists; nothing to drop",
                    a.version
                )?,
            }
            if a.yes {
                engine.abort_move(&a.version, &args_for_ledger()).await?;
            }
            return Ok(0);
        }
        if !a.yes {
            match g.format {
                Format::Json => output::json_line(
                    stdout,
                    &serde_json::json!({ "would_drop": plan.schemas, "dropped": false }),
                )?,
                Format::Human => output::abort_plan_human(stdout, &plan)?,
            }
            return Err(Error::Usage {
                message: format!(
                    "--abort drops the {} schema(s) the move to {} created, with their rows; the source schemas are not touched and nothing was changed. Rerun with --yes to confirm",
                    plan.schemas.len(),
                    a.version
                ),
            }
            .into());
        }
        let plan = engine.abort_move(&a.version, &args_for_ledger()).await?;
        match g.format {
            Format::Json => output::json_line(
                stdout,
                &serde_json::json!({ "dropped": plan.schemas, "version": plan.version }),
            )?,
            Format::Human => {
                output::abort_plan_human(stdout, &plan)?;
                writeln!(
                    stdout,
                    "dropped {} schema(s) and forgot the move's progress; the source schemas are as they were",
                    plan.schemas.len()
                )?;
            }
        }
        return Ok(0);
    }
    let opts = tenantmig::moves::MoveOptions {
        version: a.version.clone(),
        selection: Selection {
            shared: true,
            tenants: true,
            tenant_names: a.filter.tenants.clone(),
            exclude: a.filter.exclude.clone(),
        },
        dry_run: a.dry_run,
        args: args_for_ledger(),
    };
    let report = engine.migrate_to(&opts, ctrl_c()).await;
    if let Some(h) = &human {
        h.finish();
    }
    let report = report?;
    match (g.format, &report.plan) {
        (Format::Json, Some(plan)) => output::json_line(stdout, plan)?,
        (Format::Human, Some(plan)) => output::move_plan_human(stdout, plan, a.sql)?,
        (Format::Json, None) => output::json_line(stdout, &report)?,
        (Format::Human, None) => output::move_report_human(stdout, &report)?,
    }
    Ok(if report.dry_run || report.is_success() {
        0
    } else {
        1
    })
}

/// `snapshot create | list | restore | prune`.
async fn snapshot_command(
    c: &SnapshotCommand,
    g: &Global,
    stdout: &mut dyn Write,
) -> Result<u8, Failure> {
    let s = settings(g)?;
    let jobs = s.jobs;
    match c {
        SnapshotCommand::Create {
            filter,
            jobs: j,
            dry_run,
        } => {
            let jobs = j.unwrap_or(jobs);
            if jobs == 0 {
                return Err(Error::Usage {
                    message: "--jobs must be at least 1".into(),
                }
                .into());
            }
            let selection = Selection {
                shared: filter.tenants.is_empty(),
                tenants: true,
                tenant_names: filter.tenants.clone(),
                exclude: filter.exclude.clone(),
            };
            let (events, human) = sink(g);
            let engine = Engine::new(s, &Selection::default(), events)?;
            if *dry_run {
                let mut names = Vec::new();
                if selection.shared {
                    names.push(engine.settings().shared_schema.clone());
                }
                names.extend(engine.tenants(&selection).await?.names);
                let stamp = chrono::Utc::now().format("%Y%m%d_%H%M%S").to_string();
                writeln!(
                    stdout,
                    "would copy {} schema(s), {jobs} at once, e.g. {} -> {}",
                    names.len(),
                    names.first().map(String::as_str).unwrap_or("-"),
                    names
                        .first()
                        .map(|n| tenantmig::snapshot::snapshot_name(n, &stamp))
                        .unwrap_or_default()
                )?;
                for n in &names {
                    writeln!(stdout, "  {n}")?;
                }
                return Ok(0);
            }
            let r = engine
                .snapshot_create(
                    &selection,
                    jobs,
                    &args_for_ledger(),
                    ctrl_c_saying(
                        "interrupted: stopping the copies in flight (dropping what they built) and starting no new one",
                    ),
                )
                .await;
            if let Some(h) = &human {
                h.finish();
            }
            let r = r?;
            match g.format {
                Format::Json => output::json_line(stdout, &r)?,
                Format::Human => output::snapshot_report_human(stdout, &r)?,
            }
            Ok(if r.failed.is_empty() { 0 } else { 1 })
        }
        SnapshotCommand::List => {
            let engine = Engine::new(s, &Selection::default(), Arc::new(NoEvents))?;
            let list = engine.snapshot_list().await?;
            match g.format {
                Format::Json => output::json_line(stdout, &list)?,
                Format::Human => output::snapshots_human(stdout, &list)?,
            }
            Ok(0)
        }
        SnapshotCommand::Restore { id, yes, dry_run } => {
            let engine = Engine::new(s, &Selection::default(), Arc::new(NoEvents))?;
            let r = engine
                .snapshot_restore(*id, !yes, &args_for_ledger())
                .await?;
            match g.format {
                Format::Json => output::json_line(stdout, &r)?,
                Format::Human => output::restore_human(stdout, &r, *yes)?,
            }
            if !yes && !dry_run {
                return Err(Error::Usage {
                    message: format!(
                        "restoring snapshot {id} replaces {} live schema(s) (kept as a new snapshot); nothing was changed. Rerun with --yes to confirm",
                        r.renames.iter().filter(|x| x.to.contains("_snap_")).count()
                    ),
                }
                .into());
            }
            Ok(0)
        }
        SnapshotCommand::Prune {
            older_than,
            yes,
            dry_run,
        } => {
            let engine = Engine::new(s, &Selection::default(), Arc::new(NoEvents))?;
            let snaps = engine.snapshot_prune_plan(*older_than).await?;
            if snaps.is_empty() {
                match g.format {
                    Format::Json => output::json_line(
                        stdout,
                        &serde_json::json!({ "snapshots": [], "dropped": false }),
                    )?,
                    Format::Human => writeln!(
                        stdout,
                        "no snapshot is older than {}; nothing to prune",
                        humantime::format_duration(*older_than)
                    )?,
                }
                return Ok(0);
            }
            match g.format {
                Format::Json => output::json_line(
                    stdout,
                    &serde_json::json!({ "snapshots": snaps, "dropped": yes }),
                )?,
                Format::Human => output::snapshots_human(stdout, &snaps)?,
            }
            if *dry_run {
                return Ok(0);
            }
            if !yes {
                return Err(Error::Usage {
                    message: format!(
                        "prune drops the copies of {} snapshot(s) listed above; nothing was changed. Rerun with --yes to confirm",
                        snaps.len()
                    ),
                }
                .into());
            }
            let n = engine.snapshot_prune(&snaps, &args_for_ledger()).await?;
            if g.format == Format::Human {
                writeln!(
                    stdout,
                    "pruned {} snapshot(s): dropped {n} schema(s)",
                    snaps.len()
                )?;
            }
            Ok(0)
        }
    }
}

/// `drop-schema` and `tenant remove`: preview, then drop only with `--yes`.
/// `copy-into-new-schema --dry-run`: the names checked, the source's
/// tables listed, nothing changed.
async fn copy_dry_run(
    engine: &Engine,
    g: &Global,
    stdout: &mut dyn Write,
    a: &CopyArgs,
) -> Result<u8, Failure> {
    tenantmig::ident::validate_schema_name(&a.source).map_err(Error::from)?;
    tenantmig::ident::validate_schema_name(&a.target).map_err(Error::from)?;
    if engine.schema_exists(&a.target).await? {
        return Err(Error::Usage {
            message: format!(
                "schema {:?} already exists; copy-into-new-schema only creates new schemas (drop it first with `tenantmig drop-schema`)",
                a.target
            ),
        }
        .into());
    }
    let Some(preview) = engine.drop_preview(&a.source).await? else {
        return Err(Error::Usage {
            message: format!(
                "schema {:?} does not exist (names are case-sensitive)",
                a.source
            ),
        }
        .into());
    };
    match g.format {
        Format::Json => output::json_line(
            stdout,
            &serde_json::json!({ "would_copy": preview, "into": a.target, "data": !a.no_data }),
        )?,
        Format::Human => {
            let rows: i64 = preview
                .tables
                .iter()
                .filter_map(|t| t.approx_rows)
                .map(|r| r.max(0))
                .sum();
            writeln!(
                stdout,
                "would copy schema {} into the new schema {}: {} tables, about {} rows, {}{}",
                a.source,
                a.target,
                preview.tables.len(),
                output::thousands(rows as usize),
                output::human_bytes(preview.bytes),
                if a.no_data {
                    " (structure only: --no-data)"
                } else {
                    ""
                }
            )?;
        }
    }
    Ok(0)
}

/// How a destructive command was confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Confirm {
    /// `--dry-run`: show what would happen, exit 0.
    Preview,
    /// Neither flag: show what would happen, exit 2 and say how to confirm.
    Ask,
    /// `--yes`.
    Yes,
}

impl Confirm {
    fn from_flags(dry_run: bool, yes: bool) -> Self {
        match (dry_run, yes) {
            (true, _) => Confirm::Preview,
            (false, true) => Confirm::Yes,
            (false, false) => Confirm::Ask,
        }
    }
}

async fn drop_command(
    engine: &Engine,
    g: &Global,
    stdout: &mut dyn Write,
    name: &str,
    if_exists: bool,
    confirm: Confirm,
    command: &str,
) -> Result<u8, Failure> {
    let Some(preview) = engine.drop_preview(name).await? else {
        if if_exists {
            writeln!(
                io::stderr(),
                "schema {name} does not exist; nothing to drop"
            )?;
            return Ok(0);
        }
        let hint = if command == "drop-schema" {
            "; pass --if-exists to accept that"
        } else {
            ""
        };
        return Err(Error::Usage {
            message: format!("schema {name:?} does not exist (names are case-sensitive{hint})"),
        }
        .into());
    };
    if confirm != Confirm::Yes {
        match g.format {
            Format::Json => output::json_line(
                stdout,
                &serde_json::json!({ "would_drop": preview, "dropped": false }),
            )?,
            Format::Human => output::drop_preview_human(stdout, &preview)?,
        }
        if confirm == Confirm::Preview {
            return Ok(0);
        }
        return Err(Error::Usage {
            message: format!(
                "{command} is destructive: it drops schema {name:?} and everything in it; nothing was changed. Rerun with --yes to confirm"
            ),
        }
        .into());
    }
    let report = engine
        .drop_schema(name, command, &args_for_ledger())
        .await?;
    match g.format {
        Format::Json => output::json_line(stdout, &report)?,
        Format::Human => {
            output::drop_preview_human(stdout, &preview)?;
            writeln!(
                stdout,
                "dropped schema {name}{}{}",
                if report.unregistered {
                    " and removed it from the tenant registry"
                } else {
                    ""
                },
                report
                    .run_id
                    .map(|i| format!(" (run {i})"))
                    .unwrap_or_default()
            )?;
            if command == "tenant remove" && engine.settings().tenants.query.is_some() {
                writeln!(
                    stdout,
                    "  note: tenants come from tenants.query (the application's own table): remove {name} there too"
                )?;
            }
        }
    }
    Ok(0)
}
