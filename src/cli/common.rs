//! What every command shares: the global flags, the tenant and schema
//! filters, settings resolution, the event sinks, `--yes` confirmation and
//! the signal handling.

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use tenantmig::output::{self, Format, HumanEvents, JsonEvents};
use tenantmig::{Error, EventSink, Selection, Settings};

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Configuration file [default: ./tenantmig.toml when it exists].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// PostgreSQL URL (overrides database_url, DATABASE_URL and TENANTMIG_DATABASE_URL).
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// The shared schema [config: shared_schema; default: public].
    #[arg(long, global = true, value_name = "SCHEMA")]
    pub shared_schema: Option<String>,
    /// Folder of the shared migrations [config: shared_migrations; default: shared].
    #[arg(long, global = true, value_name = "DIR")]
    pub shared_migrations: Option<PathBuf>,
    /// Folder of the tenant migrations [config: tenant_migrations; default: tenant].
    #[arg(long, global = true, value_name = "DIR")]
    pub tenant_migrations: Option<PathBuf>,
    /// Output format: human text (a progress bar on a terminal) or JSON.
    #[arg(long, global = true, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors in the log output, and no progress bar.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

/// A migration set: the shared or the tenant migrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ApplySet {
    /// The shared migrations (a new version's shared schema).
    Shared,
    /// The tenant migrations.
    Tenant,
}

/// Which tenants a command looks at.
#[derive(Debug, Args, Clone)]
pub struct TenantFilter {
    /// Only this tenant schema (repeatable); replaces the configured tenant source.
    #[arg(long = "tenant", value_name = "NAME")]
    pub tenants: Vec<String>,
    /// Leave this tenant schema out (repeatable).
    #[arg(long, value_name = "NAME")]
    pub exclude: Vec<String>,
}

/// Which schemas a command looks at.
#[derive(Debug, Args, Clone)]
pub struct SelectArgs {
    /// Only the shared schema.
    #[arg(long, conflicts_with_all = ["tenants_only", "tenants", "exclude"])]
    pub shared_only: bool,
    /// Only the tenant schemas.
    #[arg(long)]
    pub tenants_only: bool,
    #[command(flatten)]
    pub filter: TenantFilter,
}

impl SelectArgs {
    pub fn selection(&self) -> Selection {
        Selection {
            shared: !self.tenants_only,
            tenants: !self.shared_only,
            tenant_names: self.filter.tenants.clone(),
            exclude: self.filter.exclude.clone(),
        }
    }
}

/// Why a command did not finish: the tool's error (exit 2, or what the
/// error says) or a failed write of its output.
pub enum Failure {
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

/// Log lines to stderr, above the progress bar; `-v`, `-q` and RUST_LOG
/// choose the level.
pub fn init_logging(g: &Global) {
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
pub fn settings(g: &Global) -> Result<Settings, Error> {
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
pub fn run_limits(
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

/// The event printers for `--format`: JSON lines on stdout, or human
/// lines (a bar on a terminal) on stderr, returned as well so that the
/// bar can be removed before the summary.
pub fn sink(g: &Global) -> (Arc<dyn EventSink>, Option<Arc<HumanEvents>>) {
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
pub fn args_for_ledger() -> Vec<String> {
    tenantmig::mask::mask_args(&std::env::args().skip(1).collect::<Vec<_>>())
}

/// Resolves on the first Ctrl-C (SIGINT) or SIGTERM (what systemd and
/// Kubernetes send); a second signal exits at once (the server rolls back
/// whatever was in flight when the connections drop).
pub fn ctrl_c() -> impl std::future::Future<Output = ()> + Send + 'static {
    ctrl_c_saying(
        "interrupted: finishing in-flight migrations, starting nothing new (Ctrl-C again to abort now)",
    )
}

/// As [`ctrl_c`], printing `message` on the first signal.
pub fn ctrl_c_saying(
    message: &'static str,
) -> impl std::future::Future<Output = ()> + Send + 'static {
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

/// How a destructive command was confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// `--dry-run`: show what would happen, exit 0.
    Preview,
    /// Neither flag: show what would happen, exit 2 and say how to confirm.
    Ask,
    /// `--yes`.
    Yes,
}

impl Confirm {
    pub fn from_flags(dry_run: bool, yes: bool) -> Self {
        match (dry_run, yes) {
            (true, _) => Confirm::Preview,
            (false, true) => Confirm::Yes,
            (false, false) => Confirm::Ask,
        }
    }
}
