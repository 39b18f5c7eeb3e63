//! The library's error type.

use std::path::PathBuf;

/// Everything that can stop a tenantmig command as a whole.
///
/// Per-tenant failures are not errors of this type: they are outcomes in a
/// [`crate::RunReport`], so that one failing tenant never hides the others.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration could not be read or has a bad key or value.
    #[error("configuration: {message}")]
    Config {
        /// What is wrong and what to do about it.
        message: String,
    },

    /// A command-line argument or combination of arguments is not usable.
    #[error("{message}")]
    Usage {
        /// What is wrong and what to do about it.
        message: String,
    },

    /// A migration folder is missing or unreadable.
    #[error("cannot read migration folder {}: {source}", path.display())]
    MigrationDir {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A migration file is malformed (name, encoding, duplicate version...).
    #[error("bad migration file {}: {reason}", path.display())]
    MigrationFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A schema name is not acceptable.
    #[error(transparent)]
    InvalidName(#[from] crate::ident::InvalidName),

    /// The database could not be reached.
    #[error("cannot connect to {url}: {}", describe_db_error(source))]
    Connect {
        /// The URL with its password masked.
        url: String,
        /// The driver's error.
        source: sqlx::Error,
    },

    /// A command ran and did not succeed (a copy that failed its check, a
    /// statement that failed while building a schema, an interruption).
    /// Whatever it had built was removed.
    #[error("{message}")]
    Failed {
        /// What failed, naming the object and the cause.
        message: String,
    },

    /// The run ledger could not be written at the end of a run (the work
    /// itself went as its report says).
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerFault),

    /// A database operation failed outside any single tenant.
    #[error("while {doing}: {}", describe_db_error(source))]
    Database {
        /// What was being done.
        doing: String,
        /// The driver's error.
        source: sqlx::Error,
    },
}

impl Error {
    /// Wraps a database error with what was being done.
    pub fn db(doing: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Error {
        let doing = doing.into();
        move |source| Error::Database { doing, source }
    }

    /// The process exit code this error maps to: 2 for usage, configuration,
    /// input and connection errors, 1 for failures while running.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Database { .. } | Error::Failed { .. } | Error::Ledger(_) => 1,
            _ => 2,
        }
    }
}

fn severity_word(s: sqlx::postgres::PgSeverity) -> &'static str {
    use sqlx::postgres::PgSeverity::*;
    match s {
        Panic => "PANIC",
        Fatal => "FATAL",
        Error => "ERROR",
        Warning => "WARNING",
        Notice => "NOTICE",
        Debug => "DEBUG",
        Info => "INFO",
        Log => "LOG",
    }
}

/// A database error for people: PostgreSQL's severity, message, detail and
/// hint, and the SQLSTATE, but not the driver's "at line N" (a line of
/// PostgreSQL's own C source, which tells an operator nothing). Other
/// errors as the driver prints them.
pub fn describe_db_error(e: &sqlx::Error) -> String {
    if let Some(pg) = e
        .as_database_error()
        .and_then(|d| d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>())
    {
        let mut s = format!("{}: {}", severity_word(pg.severity()), pg.message());
        if let Some(d) = pg.detail() {
            s.push_str(&format!(" (detail: {d})"));
        }
        if let Some(h) = pg.hint() {
            s.push_str(&format!(" (hint: {h})"));
        }
        s.push_str(&format!(" [SQLSTATE {}]", pg.code()));
        s
    } else {
        e.to_string()
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
