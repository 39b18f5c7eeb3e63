//! Configuration: `tenantmig.toml`, then `TENANTMIG_*` environment
//! variables, then command-line flags (applied by the caller).
//!
//! `DATABASE_URL` is honoured between the file and `TENANTMIG_DATABASE_URL`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ident::validate_schema_name;

/// The default configuration file, looked up in the current directory.
pub const DEFAULT_CONFIG_FILE: &str = "tenantmig.toml";

/// How transactional migrations are grouped into transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TransactionMode {
    /// All pending transactional migrations of a schema commit together: a
    /// schema ends a run at its old version or at its new one, never between.
    /// A `-- no-transaction` file ends a group.
    #[default]
    PerSchema,
    /// Each migration commits on its own, with its history row.
    PerMigration,
}

/// Where the tenant list comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantSettings {
    /// SQL returning tenant schema names in its first column, e.g. an app's
    /// own tenants table (`SELECT schema_name FROM public.customers`).
    pub query: Option<String>,
    /// A `LIKE` pattern over `pg_namespace.nspname`, e.g. `tenant_%`.
    pub pattern: Option<String>,
}

/// The resolved settings every command runs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// PostgreSQL connection URL.
    pub database_url: Option<String>,
    /// Schema that shared migrations run in.
    pub shared_schema: String,
    /// tenantmig's own schema (run ledger, tenant registry).
    pub control_schema: String,
    /// Name of the history table inside each schema.
    pub history_table: String,
    /// Folder of the shared migrations.
    pub shared_migrations: PathBuf,
    /// Folder of the tenant migrations.
    pub tenant_migrations: PathBuf,
    /// Tenant source.
    pub tenants: TenantSettings,
    /// Number of tenants migrated at once (one connection each).
    pub jobs: usize,
    /// Failures tolerated before no new tenant is started (0 = stop at the first).
    pub max_failures: usize,
    /// `lock_timeout` set in each tenant session after its advisory lock is taken.
    #[serde(with = "humantime_serde")]
    pub lock_timeout: Duration,
    /// `statement_timeout` set in each tenant session (0 = none).
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// How long to poll for a schema's advisory lock before giving up on it.
    #[serde(with = "humantime_serde")]
    pub lock_wait: Duration,
    /// How many times a migration that hit `lock_timeout` is retried.
    pub lock_retries: u32,
    /// Pause before the first retry; doubled for each further one.
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// Grouping of transactional migrations.
    pub transaction_mode: TransactionMode,
    /// Create tenant schemas that the tenant source names but do not exist.
    pub create_missing_schemas: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            database_url: None,
            shared_schema: "public".into(),
            control_schema: "tenantmig".into(),
            history_table: "_sqlx_migrations".into(),
            shared_migrations: "shared".into(),
            tenant_migrations: "tenant".into(),
            tenants: TenantSettings::default(),
            jobs: 4,
            max_failures: 0,
            lock_timeout: Duration::from_secs(5),
            statement_timeout: Duration::ZERO,
            lock_wait: Duration::from_secs(60),
            lock_retries: 3,
            retry_backoff: Duration::from_secs(1),
            transaction_mode: TransactionMode::PerSchema,
            create_missing_schemas: true,
        }
    }
}

impl Settings {
    /// Loads the settings: defaults, then the file (`path`, or
    /// `tenantmig.toml` in the current directory when it exists), then
    /// `DATABASE_URL`, then `TENANTMIG_*` variables (nested keys with `__`,
    /// e.g. `TENANTMIG_TENANTS__QUERY`).
    pub fn load(path: Option<&Path>) -> Result<Settings> {
        Self::load_from(path, std::env::vars())
    }

    /// As [`Settings::load`], with the environment given explicitly.
    pub fn load_from(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings> {
        let mut builder = config::Config::builder();
        match path {
            Some(p) => {
                if !p.is_file() {
                    return Err(Error::Config {
                        message: format!(
                            "the configuration file {} does not exist or is not a file; check the --config path",
                            p.display()
                        ),
                    });
                }
                builder =
                    builder.add_source(config::File::from(p).format(config::FileFormat::Toml));
            }
            None => {
                let p = Path::new(DEFAULT_CONFIG_FILE);
                if p.is_file() {
                    builder =
                        builder.add_source(config::File::from(p).format(config::FileFormat::Toml));
                }
            }
        }
        let mut database_url = config::Map::new();
        let mut ours = config::Map::new();
        for (k, v) in env {
            if k == "DATABASE_URL" {
                database_url.insert(k, v);
            } else if k.starts_with("TENANTMIG_") {
                ours.insert(k, v);
            }
        }
        builder = builder
            .add_source(config::Environment::default().source(Some(database_url)))
            .add_source(
                config::Environment::with_prefix("TENANTMIG")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(ours)),
            );
        let origin = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| DEFAULT_CONFIG_FILE.to_string());
        let mut settings: Settings = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| Error::Config {
                message: format!(
                    "{e} (from {origin} or TENANTMIG_* variables; see the configuration reference in the README)"
                ),
            })?;
        // An empty value switches a source off (e.g. TENANTMIG_TENANTS__QUERY=
        // to fall back from a file's query to the registry).
        for v in [&mut settings.tenants.query, &mut settings.tenants.pattern] {
            if v.as_deref().is_some_and(|q| q.trim().is_empty()) {
                *v = None;
            }
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Checks values that serde cannot: schema names, ranges, the tenant source.
    pub fn validate(&self) -> Result<()> {
        for (key, name) in [
            ("shared_schema", &self.shared_schema),
            ("control_schema", &self.control_schema),
        ] {
            validate_schema_name(name).map_err(|e| Error::Config {
                message: format!("key {key}: {e}"),
            })?;
        }
        if self.history_table.is_empty()
            || self.history_table.len() > 63
            || self.history_table.contains(['"', '\0', '.'])
        {
            return Err(Error::Config {
                message: format!(
                    "key history_table: {:?} is not a usable table name (1-63 bytes, no quotes or dots)",
                    self.history_table
                ),
            });
        }
        if self.shared_schema == self.control_schema {
            return Err(Error::Config {
                message: "keys shared_schema and control_schema name the same schema; give tenantmig its own control schema".into(),
            });
        }
        if self.jobs == 0 {
            return Err(Error::Config {
                message: "key jobs: must be at least 1".into(),
            });
        }
        if self.tenants.query.is_some() && self.tenants.pattern.is_some() {
            return Err(Error::Config {
                message: "keys tenants.query and tenants.pattern are both set; keep one of them"
                    .into(),
            });
        }
        Ok(())
    }

    /// The database URL, or an error saying how to give one.
    pub fn database_url(&self) -> Result<&str> {
        self.database_url.as_deref().ok_or_else(|| Error::Config {
            message: "no database URL: set DATABASE_URL, database_url in tenantmig.toml, or pass --database-url".into(),
        })
    }
}

/// The URL with any password replaced by `***`, for messages.
pub fn mask_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => {
            // Not parseable: hide everything between "://" and "@".
            match (url.find("://"), url.rfind('@')) {
                (Some(a), Some(b)) if b > a => format!("{}***{}", &url[..a + 3], &url[b..]),
                _ => url.to_string(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn defaults_apply_without_file_or_environment() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings::load_from(Some(&write(&dir, "")), env(&[])).unwrap();
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn environment_overrides_file_and_database_url() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            &dir,
            "jobs = 2\ndatabase_url = \"postgres://file/db\"\n[tenants]\npattern = \"t_%\"\n",
        );
        let s =
            Settings::load_from(Some(&f), env(&[("DATABASE_URL", "postgres://env/db")])).unwrap();
        assert_eq!(
            (s.jobs, s.database_url.as_deref()),
            (2, Some("postgres://env/db"))
        );
        let s = Settings::load_from(
            Some(&f),
            env(&[
                ("DATABASE_URL", "postgres://env/db"),
                ("TENANTMIG_DATABASE_URL", "postgres://ours/db"),
                ("TENANTMIG_JOBS", "9"),
                ("TENANTMIG_LOCK_TIMEOUT", "250ms"),
                ("TENANTMIG_TENANTS__PATTERN", "x_%"),
            ]),
        )
        .unwrap();
        assert_eq!(s.jobs, 9);
        assert_eq!(s.database_url.as_deref(), Some("postgres://ours/db"));
        assert_eq!(s.lock_timeout, Duration::from_millis(250));
        assert_eq!(s.tenants.pattern.as_deref(), Some("x_%"));
    }

    #[test]
    fn an_unknown_key_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Settings::load_from(Some(&write(&dir, "jbos = 3\n")), env(&[])).unwrap_err();
        assert!(err.to_string().contains("jbos"), "{err}");
        let err = Settings::load_from(Some(&write(&dir, "shared_schema = \"a;b\"\n")), env(&[]))
            .unwrap_err();
        assert!(err.to_string().contains("shared_schema"), "{err}");
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            mask_url("postgres://u:secret@h:5432/d"),
            "postgres://u:***@h:5432/d"
        );
        assert_eq!(mask_url("postgres://u@h/d"), "postgres://u@h/d");
    }

    fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let p = dir.path().join("tenantmig.toml");
        std::fs::write(&p, text).unwrap();
        p
    }
}
