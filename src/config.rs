//! Configuration: `tenantmig.toml`, then `TENANTMIG_*` environment
//! variables, then command-line flags (applied by the caller).
//!
//! `DATABASE_URL` is honoured between the file and `TENANTMIG_DATABASE_URL`.

use std::collections::BTreeMap;
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

/// How a version move builds its new schemas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Each source schema is copied into its target name
    /// (copy-into-new-schema), then the version's pending migrations run on
    /// the copy. For moves that keep the layout and add changes.
    Clone,
    /// The targets are built from the version's migrations, then data-move
    /// SQL files copy rows from the sources into the targets.
    Reshape,
}

impl Strategy {
    /// The word used in the configuration and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Clone => "clone",
            Strategy::Reshape => "reshape",
        }
    }
}

/// One folder or several, in a configuration value (`"tenant"` or
/// `["tenant", "v2/tenant"]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Folders {
    /// One folder.
    One(PathBuf),
    /// Several folders, read as one migration set.
    Many(Vec<PathBuf>),
}

impl Folders {
    /// The folders, in order.
    pub fn paths(&self) -> Vec<PathBuf> {
        match self {
            Folders::One(p) => vec![p.clone()],
            Folders::Many(v) => v.clone(),
        }
    }
}

/// A version that `tenantmig migrate-to VERSION` moves to: `[versions.v2]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionSettings {
    /// `clone` or `reshape`.
    pub strategy: Strategy,
    /// Name of the version's shared schema (e.g. `app_v2`).
    pub shared_schema: String,
    /// Name template of a tenant's schema in the version, with `{schema}`
    /// standing for the tenant's current name (e.g. `{schema}_v2`). Left out
    /// with `reshape`, tenants are consolidated into the shared schema.
    pub tenant_schema: Option<String>,
    /// The version's shared migrations. With `clone` they must include the
    /// migrations the copied schema already has (e.g. `["shared",
    /// "v2/shared"]`); the top-level `shared_migrations` when left out.
    pub shared_migrations: Option<Folders>,
    /// The version's tenant migrations (as `shared_migrations`).
    pub tenant_migrations: Option<Folders>,
    /// `reshape`: data-move files run once, from the shared schema into the
    /// version's shared schema.
    pub shared_moves: Option<PathBuf>,
    /// `reshape`: data-move files run once per tenant, from the tenant's
    /// schema into its target (the version's shared schema when tenants are
    /// consolidated).
    pub tenant_moves: Option<PathBuf>,
    /// SQL returning each tenant's schema name and id (two columns), for the
    /// `{tenant_id}` placeholder, e.g.
    /// `SELECT schema_name, id FROM public.organizations`.
    pub tenant_id_query: Option<String>,
    /// The column that holds the tenant's id in consolidated tables; the
    /// final per-tenant row count filters on it.
    pub tenant_column: Option<String>,
    /// `reshape`: `false` lets a schema whose final check could compare no
    /// table pass with a warning; by default (`true`) such a check fails.
    ///
    /// # Warning
    ///
    /// With `false`, a move whose data-move files rename every table and
    /// declare none of them (`-- copies:`) is counted by nothing but the
    /// files' own `expect-rows`.
    pub require_counts: Option<bool>,
    /// Suffix the current schemas get at cut-over (`public` becomes
    /// `public_v1`).
    #[serde(default = "default_previous_suffix")]
    pub previous_suffix: String,
}

fn default_previous_suffix() -> String {
    "_v1".into()
}

impl VersionSettings {
    /// The target schema of a tenant: the template applied, or the shared
    /// target when tenants are consolidated.
    pub fn tenant_target(&self, tenant: &str) -> String {
        match &self.tenant_schema {
            Some(t) => t.replace("{schema}", tenant),
            None => self.shared_schema.clone(),
        }
    }

    /// True when tenants are moved into the version's shared schema.
    pub fn consolidates(&self) -> bool {
        self.tenant_schema.is_none()
    }

    /// True when a final check that compares no table fails the schema
    /// (`require_counts`, default true).
    pub fn requires_counts(&self) -> bool {
        self.require_counts.unwrap_or(true)
    }

    fn validate(&self, name: &str, settings: &Settings) -> Result<()> {
        let bad = |what: String| Error::Config {
            message: format!("[versions.{name}]: {what}"),
        };
        validate_schema_name(&self.shared_schema)
            .map_err(|e| bad(format!("key shared_schema: {e}")))?;
        for taken in [&settings.shared_schema, &settings.control_schema] {
            if &self.shared_schema == taken {
                return Err(bad(format!(
                    "shared_schema {taken:?} is a schema in use; give the version's shared schema a new name such as \"{}_{name}\"",
                    settings.shared_schema
                )));
            }
        }
        if let Some(t) = &self.tenant_schema {
            if t.matches("{schema}").count() != 1 {
                return Err(bad(format!(
                    "key tenant_schema {t:?} must contain {{schema}} exactly once, e.g. \"{{schema}}_{name}\""
                )));
            }
            if t == "{schema}" {
                return Err(bad(
                    "key tenant_schema must add something to {schema}, or the targets would be the sources".into(),
                ));
            }
            validate_schema_name(&t.replace("{schema}", "t"))
                .map_err(|e| bad(format!("key tenant_schema: {e}")))?;
        }
        if self.previous_suffix.is_empty()
            || !self
                .previous_suffix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(bad(format!(
                "key previous_suffix {:?} must be letters, digits and underscores, e.g. \"_v1\"",
                self.previous_suffix
            )));
        }
        match self.strategy {
            Strategy::Clone => {
                if self.tenant_schema.is_none() {
                    return Err(bad(
                        "strategy clone copies each tenant into its own schema: set tenant_schema, e.g. \"{schema}_v2\"".into(),
                    ));
                }
                for (key, set) in [
                    ("shared_moves", self.shared_moves.is_some()),
                    ("tenant_moves", self.tenant_moves.is_some()),
                    ("tenant_id_query", self.tenant_id_query.is_some()),
                    ("tenant_column", self.tenant_column.is_some()),
                    ("require_counts", self.require_counts.is_some()),
                ] {
                    if set {
                        return Err(bad(format!(
                            "key {key} is for strategy reshape; remove it or set strategy = \"reshape\""
                        )));
                    }
                }
            }
            Strategy::Reshape => {
                if self.tenant_schema.is_none() && self.tenant_migrations.is_some() {
                    return Err(bad(
                        "key tenant_migrations needs tenant_schema: without it tenants are consolidated into the shared schema, whose tables come from shared_migrations".into(),
                    ));
                }
                if self.tenant_schema.is_none()
                    && self.tenant_moves.is_some()
                    && self.tenant_column.is_none()
                {
                    return Err(bad(
                        "tenants are consolidated into the shared schema (no tenant_schema): set tenant_column to the column that holds the tenant's id, so each tenant's rows can be counted".into(),
                    ));
                }
                if self.shared_migrations.is_none() {
                    return Err(bad(
                        "strategy reshape builds the new schema from its own migrations: set shared_migrations".into(),
                    ));
                }
            }
        }
        if let Some(c) = &self.tenant_column
            && (c.is_empty() || c.len() > 63 || c.contains(['"', '\0']))
        {
            return Err(bad(format!(
                "key tenant_column {c:?} is not a usable column name"
            )));
        }
        Ok(())
    }
}

/// Checks a version's name: it becomes part of commands (`migrate-to-v2`)
/// and of keys in the ledger.
pub fn validate_version_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 32
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(Error::Config {
            message: format!(
                "[versions.{name}]: a version's name is 1-32 lower-case letters, digits or underscores (e.g. v2)"
            ),
        });
    }
    Ok(())
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
    /// Versions that `migrate-to` can move to, by name (`[versions.v2]`).
    pub versions: BTreeMap<String, VersionSettings>,
    /// How `tenantmig new` numbers migrations: `auto` (as the folder
    /// does), `sequential` or `timestamp`.
    pub version_style: crate::authoring::VersionStyle,
    /// What `migrate` does with lint findings in the migrations it is about
    /// to run: `warn` (print them and go on), `deny` (refuse to start) or
    /// `off`.
    pub lint: LintPolicy,
}

/// What `migrate` does with lint findings (see `tenantmig lint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LintPolicy {
    /// Do not lint before migrating.
    Off,
    /// Print each finding as a warning, then migrate.
    #[default]
    Warn,
    /// Refuse to migrate while any pending migration has a finding.
    Deny,
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
            versions: BTreeMap::new(),
            version_style: crate::authoring::VersionStyle::Auto,
            lint: LintPolicy::Warn,
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
        let settings: Settings = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| Error::Config {
                message: format!(
                    "{e} (from {origin} or TENANTMIG_* variables; see the configuration reference, docs/src/configuration.md)"
                ),
            })?;
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
        // An empty value is refused rather than read as "no source": it is
        // far more often a variable set to nothing by mistake than a wish
        // for the registry, and the registry would then migrate other
        // tenants than intended.
        for (key, var, value) in [
            (
                "tenants.query",
                "TENANTMIG_TENANTS__QUERY",
                &self.tenants.query,
            ),
            (
                "tenants.pattern",
                "TENANTMIG_TENANTS__PATTERN",
                &self.tenants.pattern,
            ),
        ] {
            if value
                .as_deref()
                .is_some_and(|v| v.trim().trim_end_matches(';').trim().is_empty())
            {
                return Err(Error::Config {
                    message: format!(
                        "key {key} is empty; unset it (remove it from the file, or unset {var}) to use the tenant registry, or give a {}",
                        if key == "tenants.query" {
                            "query returning the tenant schema names in its first column"
                        } else {
                            "LIKE pattern over schema names"
                        }
                    ),
                });
            }
        }
        if self.tenants.query.is_some() && self.tenants.pattern.is_some() {
            return Err(Error::Config {
                message: "keys tenants.query and tenants.pattern are both set; keep one of them"
                    .into(),
            });
        }
        for (name, v) in &self.versions {
            validate_version_name(name)?;
            v.validate(name, self)?;
        }
        Ok(())
    }

    /// A declared version, or an error listing the declared ones.
    pub fn version(&self, name: &str) -> Result<&VersionSettings> {
        self.versions.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.versions.keys().map(String::as_str).collect();
            Error::Usage {
                message: if known.is_empty() {
                    format!(
                        "no version {name:?} is declared; add a [versions.{name}] table to tenantmig.toml (see docs/src/version-moves.md)"
                    )
                } else {
                    format!(
                        "no version {name:?} is declared; declared versions: {}",
                        known.join(", ")
                    )
                },
            }
        })
    }

    /// The database URL, or an error saying how to give one.
    pub fn database_url(&self) -> Result<&str> {
        self.database_url.as_deref().ok_or_else(|| Error::Config {
            message: "no database URL: set DATABASE_URL, database_url in tenantmig.toml, or pass --database-url".into(),
        })
    }
}

pub use crate::mask::mask_url;

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
    fn an_empty_tenant_query_or_pattern_is_refused_not_read_as_no_source() {
        let dir = tempfile::tempdir().unwrap();
        let empty = write(&dir, "");
        for (k, v) in [
            ("TENANTMIG_TENANTS__QUERY", ""),
            ("TENANTMIG_TENANTS__QUERY", "  ;"),
            ("TENANTMIG_TENANTS__PATTERN", ""),
        ] {
            let err = Settings::load_from(Some(&empty), env(&[(k, v)])).unwrap_err();
            assert!(
                err.to_string().contains("is empty; unset it") && err.to_string().contains(k),
                "{k}={v:?}: {err}"
            );
        }
        let f = write(&dir, "[tenants]\nquery = \"\"\n");
        let err = Settings::load_from(Some(&f), env(&[])).unwrap_err();
        assert!(err.to_string().contains("tenants.query is empty"), "{err}");
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
    fn a_version_table_reads_one_or_many_folders_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            &dir,
            "[versions.v2]\nstrategy = \"clone\"\nshared_schema = \"app_v2\"\ntenant_schema = \"{schema}_v2\"\ntenant_migrations = [\"tenant\", \"v2/tenant\"]\n\n[versions.v3]\nstrategy = \"reshape\"\nshared_schema = \"app_v3\"\nshared_migrations = \"v3/shared\"\n",
        );
        let s = Settings::load_from(Some(&f), env(&[])).unwrap();
        let v2 = s.version("v2").unwrap();
        assert_eq!(v2.strategy, Strategy::Clone);
        assert_eq!(
            v2.tenant_migrations.as_ref().unwrap().paths(),
            vec![PathBuf::from("tenant"), PathBuf::from("v2/tenant")]
        );
        assert_eq!(v2.tenant_target("t_1"), "t_1_v2");
        assert_eq!(v2.previous_suffix, "_v1");
        let v3 = s.version("v3").unwrap();
        assert!(v3.consolidates());
        assert_eq!(v3.tenant_target("t_1"), "app_v3");
        assert!(s.version("v9").unwrap_err().to_string().contains("v2, v3"));

        for (text, named) in [
            (
                "[versions.v2]\nstrategy = \"clone\"\nshared_schema = \"app_v2\"\n",
                "tenant_schema",
            ),
            (
                "[versions.v2]\nstrategy = \"clone\"\nshared_schema = \"public\"\ntenant_schema = \"{schema}_x\"\n",
                "in use",
            ),
            (
                "[versions.v2]\nstrategy = \"clone\"\nshared_schema = \"a\"\ntenant_schema = \"x\"\n",
                "{schema}",
            ),
            (
                "[versions.V2]\nstrategy = \"clone\"\nshared_schema = \"a\"\ntenant_schema = \"{schema}_x\"\n",
                "lower-case",
            ),
            (
                "[versions.v2]\nstrategy = \"reshape\"\nshared_schema = \"a\"\n",
                "shared_migrations",
            ),
            (
                "[versions.v2]\nstrategy = \"reshape\"\nshared_schema = \"a\"\nshared_migrations = \"m\"\ntenant_moves = \"t\"\n",
                "tenant_column",
            ),
            (
                "[versions.v2]\nstrategy = \"clone\"\nshared_schema = \"a\"\ntenant_schema = \"{schema}_x\"\ntenant_moves = \"m\"\n",
                "reshape",
            ),
        ] {
            let err = Settings::load_from(Some(&write(&dir, text)), env(&[])).unwrap_err();
            assert!(err.to_string().contains(named), "{text}: {err}");
        }
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
