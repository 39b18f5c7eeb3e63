//! tenantmig: PostgreSQL schema migrations for schema-per-tenant SaaS.
//!
//! Shared migrations run once, in the shared schema; tenant migrations fan
//! out concurrently across every tenant schema, each under its own advisory
//! lock, with per-tenant isolation and a run ledger. The history table in
//! each schema has sqlx's `_sqlx_migrations` layout and SHA-384 checksums, so
//! sqlx-cli and tenantmig agree on every schema.
//!
//! The library is usable on its own: an application can run the same
//! orchestration at start-up.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tenantmig::Error> {
//! use std::sync::Arc;
//! use tenantmig::{Engine, MigrateOptions, NoEvents, Selection, Settings};
//!
//! let settings = Settings::load(None)?;
//! let engine = Engine::new(settings, &Selection::all(), Arc::new(NoEvents))?;
//! let opts = MigrateOptions { selection: Selection::all(), ..Default::default() };
//! let report = engine.migrate(&opts, std::future::pending()).await?;
//! assert!(report.is_success());
//! # Ok(()) }
//! ```
//!
//! # Layout
//! Folders by domain: [`migrating`] (files, state, engine, authoring,
//! repair, lint), [`schemas`] (copy, lifecycle, snapshot, verify),
//! [`moves`], [`control`] (ledger, tenant sources); beside them the
//! cross-cutting modules (config, ident, mask, db, events, output, error).
//! Every module is re-exported at the crate root:
//!
//! - [`authoring`]: `new` (the next version, the file or pair).
//! - [`migration`]: migration files and sets (plain data, checksums, statement splitting).
//! - [`state`]: a schema's state from its history rows (a pure function).
//! - [`config`]: settings from `tenantmig.toml`, `TENANTMIG_*` and flags.
//! - [`ident`]: schema name validation and quoting.
//! - [`mask`]: passwords masked in every message, log line and ledger row.
//! - `db`: every SQL statement about schemas, history tables and locks.
//! - [`tenants`]: tenant sources (query, pattern, registry, command line).
//! - [`ledger`]: the control schema, run ledger and registry.
//! - [`engine`]: status, plan and migrate; emits [`Event`]s.
//! - [`copy`]: copy-into-new-schema (catalog read, DDL in dependency order,
//!   parallel row copy from one exported snapshot, checks).
//! - [`moves`]: version moves (`migrate-to`, `--abort`, `cutover`) and
//!   their data-move files.
//! - [`snapshot`]: rollback points (copies under dated names, restore by
//!   renaming).
//! - [`lifecycle`]: create-schema, drop-schema, tenant add and remove.
//! - `lint`: checks migrations with PostgreSQL's own parser before they run
//!   (feature `lint`, on by default).
//! - [`output`]: human and JSON printers of events, and the helpers the
//!   command printers (in the binary's `cli/`) share.

// Folders by domain; the modules are also re-exported here, at the crate
// root, so that every path (`tenantmig::engine`, `crate::copy`, …) reads
// the same wherever a module lives.
pub mod control;
pub mod migrating;
pub mod moves;
pub mod schemas;

pub mod config;
mod db;
mod error;
pub mod events;
pub mod ident;
pub mod mask;
pub mod output;

pub use control::{ledger, tenants};
#[cfg(feature = "lint")]
pub use migrating::lint;
pub use migrating::{authoring, engine, migration, repair, state};
pub use schemas::{copy, lifecycle, snapshot, verify};

pub use config::{LintPolicy, Settings, Strategy, TransactionMode, VersionSettings};
pub use copy::{CopyOptions, CopyReport, Verify};
pub use engine::{Engine, MigrateOptions, RunReport, Selection, StatusReport};
pub use error::{Error, Result};
pub use events::{
    CollectEvents, Event, EventSink, NoEvents, OutcomeState, Phase, SchemaOutcome, StopReason,
};
pub use migration::{Migration, MigrationSet};
pub use state::{Goal, SchemaState, SchemaStatus};
