//! Whole-version moves: `tenantmig migrate-to VERSION`, its `--abort`, and
//! `tenantmig cutover VERSION [--revert]`.
//!
//! A move builds a version's schemas beside the current ones and leaves the
//! current ones untouched:
//! - `clone`: each source schema is copied into its target name
//!   ([`Engine::copy_schema`]), then the version's pending migrations run on
//!   the copy;
//! - `reshape`: each target is created and built from the version's
//!   migrations, then data-move files ([`files`]) copy rows from the source
//!   into it, once for the shared schema and once per tenant. Without a
//!   tenant name template, every tenant is moved into the version's shared
//!   schema (consolidation into row-level tenancy).
//!
//! The shared schema moves first, then the tenants concurrently under
//! `--jobs`. Every (schema, step) is checkpointed in the control schema's
//! `move_steps` table: a copy's checkpoint commits with the copy's rename, a
//! data move's with its rows, so a rerun skips finished steps and redoes an
//! interrupted one from a clean state, and no row is moved twice.
//!
//! Before a schema counts as moved, its checks run: row counts (clone: the
//! copy's check of every table; reshape: each file's rows read against rows
//! written, then a final count per target table and tenant against the
//! source tables its files declare copying, `-- copies:`, or else the
//! source table of the same name; a check that can compare no table fails
//! unless the version sets `require_counts = false`), every foreign key
//! valid, and every sequence owned by a target column set past the largest
//! value copied.
//!
//! # Layout
//! - `plan`: loading a version, the steps of each phase, the plan;
//! - `run`: `migrate_to`, the tenant pool, one schema's steps under its
//!   source's lock;
//! - `steps`: one step (copy, create, migrate, a data move, the check);
//! - `cutover`: `cutover` and its revert, `rename_schemas`;
//! - `abort`: `migrate-to --abort`;
//! - `files`, `counts`, `store`: data-move files, final counts, the move
//!   tables of the control schema.

mod counts;
pub mod files;
pub(crate) mod store;

mod abort;
mod cutover;
mod plan;
mod run;
mod steps;

pub(crate) use cutover::rename_schemas;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::config::{Strategy, VersionSettings};
use crate::engine::{Engine, RunCtx, Selection};
use crate::events::{Event, EventSink, OutcomeState, Phase, SchemaOutcome, StopReason};
use crate::migration::MigrationSet;
use files::DataMove;

/// Step names.
const COPY: &str = "copy";
const CREATE: &str = "create";
const MIGRATE: &str = "migrate";
const CHECK: &str = "check";

/// Options of `migrate-to`.
#[derive(Debug, Clone, Default)]
pub struct MoveOptions {
    /// The version's name (`v2`).
    pub version: String,
    /// `--tenant` / `--exclude` (the shared schema always moves first).
    pub selection: Selection,
    /// Only plan.
    pub dry_run: bool,
    /// The command line, recorded in the ledger.
    pub args: Vec<String>,
}

/// One step of a phase, as the plan shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StepPlan {
    /// The step's name in the ledger (`copy`, `migrate`, `move 0001`...).
    pub step: String,
    /// What it does, for people.
    pub what: String,
    /// The SQL it runs, placeholders still in place (migrations and
    /// data-move files; none for copies and checks).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sql: Vec<(String, String)>,
}

/// One source schema in a move.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaMove {
    /// The schema moved from.
    pub source: String,
    /// The schema moved into.
    pub target: String,
    /// Shared or tenant.
    pub phase: Phase,
    /// The tenant's id (from `tenant_id_query`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Its steps, in order.
    pub steps: Vec<String>,
    /// Those already done by earlier runs.
    pub done: Vec<String>,
    /// Why it cannot move, when it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

impl SchemaMove {
    /// True when every step is done.
    pub fn is_complete(&self) -> bool {
        self.steps.iter().all(|s| self.done.contains(s))
    }
}

/// What a move will do.
#[derive(Debug, Clone, Serialize)]
pub struct MovePlan {
    /// The version.
    pub version: String,
    /// How targets are built.
    pub strategy: Strategy,
    /// True when tenants move into the version's shared schema.
    pub consolidates: bool,
    /// The shared schema's move.
    pub shared: SchemaMove,
    /// Every selected tenant's move.
    pub tenants: Vec<SchemaMove>,
    /// Schemas the move will create that do not exist yet.
    pub to_create: Vec<String>,
    /// The shared phase's steps.
    pub shared_steps: Vec<StepPlan>,
    /// Each tenant's steps.
    pub tenant_steps: Vec<StepPlan>,
    /// Where the tenant list came from.
    pub source: String,
}

impl MovePlan {
    /// Tenants with work, grouped by the steps they have left.
    pub fn groups(&self) -> Vec<(Vec<String>, Vec<&str>)> {
        let mut m: std::collections::BTreeMap<Vec<String>, Vec<&str>> = Default::default();
        for t in self.tenants.iter().filter(|t| t.refused.is_none()) {
            let left: Vec<String> = t
                .steps
                .iter()
                .filter(|s| !t.done.contains(s))
                .cloned()
                .collect();
            if !left.is_empty() {
                m.entry(left).or_default().push(&t.source);
            }
        }
        let mut v: Vec<_> = m.into_iter().collect();
        v.sort_by_key(|(_, names)| std::cmp::Reverse(names.len()));
        v
    }
}

/// A step's result.
#[derive(Debug, Clone, Serialize)]
pub struct StepOutcome {
    /// The step.
    pub step: String,
    /// `done`, `skipped` (done by an earlier run) or `failed`.
    pub state: String,
    /// Rows read (or expected) by the step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_read: Option<i64>,
    /// Rows written by the step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_written: Option<i64>,
    /// Time taken.
    pub duration_ms: u64,
}

/// A table counted by a check.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TableCount {
    /// The table (in the target).
    pub table: String,
    /// The source tables it was counted against, when they are not the one
    /// table of the same name (declared by `-- copies:` lines).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source_tables: Vec<String>,
    /// Its rows in the source (the sum over `source_tables`, if any).
    pub source_rows: i64,
    /// Its rows in the target (the tenant's rows, when consolidated).
    pub target_rows: i64,
}

/// How one source schema's move ended.
#[derive(Debug, Clone, Serialize)]
pub struct MoveOutcome {
    /// The source.
    pub source: String,
    /// The target.
    pub target: String,
    /// Shared or tenant.
    pub phase: Phase,
    /// Succeeded, failed, refused or stopped.
    pub state: OutcomeState,
    /// Its steps in this run.
    pub steps: Vec<StepOutcome>,
    /// The final counts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub counts: Vec<TableCount>,
    /// Why it failed, naming the step (and the table and counts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Time taken.
    pub duration_ms: u64,
}

impl MoveOutcome {
    fn new(m: &SchemaMove) -> Self {
        MoveOutcome {
            source: m.source.clone(),
            target: m.target.clone(),
            phase: m.phase,
            state: OutcomeState::Succeeded,
            steps: Vec::new(),
            counts: Vec::new(),
            error: None,
            duration_ms: 0,
        }
    }

    fn as_schema_outcome(&self) -> SchemaOutcome {
        let mut o = SchemaOutcome::new(&self.source, self.phase);
        o.state = self.state;
        o.error = self.error.clone();
        o.duration_ms = self.duration_ms;
        o.attempts = 1;
        o
    }
}

/// What a `migrate-to` run did.
#[derive(Debug, Clone, Serialize)]
pub struct MoveReport {
    /// The run's id in the ledger (none for a dry run).
    pub run_id: Option<i64>,
    /// The version.
    pub version: String,
    /// How targets were built.
    pub strategy: Strategy,
    /// True when nothing was changed.
    pub dry_run: bool,
    /// The plan (in the JSON of a dry run only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<MovePlan>,
    /// The shared schema's outcome (none when it was already moved and
    /// only checked again).
    pub shared: Option<MoveOutcome>,
    /// Outcomes of the tenants that had work or were refused.
    pub tenants: Vec<MoveOutcome>,
    /// Tenants moved completely by earlier runs.
    pub tenants_already_moved: usize,
    /// Tenants with work that were never started.
    pub not_reached: Vec<String>,
    /// Why the run stopped early, if it did.
    pub stopped: Option<StopReason>,
    /// Wall time.
    pub duration_ms: u64,
    /// What the run ledger could not record, if anything (the report, and
    /// the move's checkpoints, are still the truth about the run).
    pub ledger_error: Option<crate::ledger::LedgerFault>,
}

impl MoveReport {
    /// Failed, refused or stopped schemas.
    pub fn failures(&self) -> impl Iterator<Item = &MoveOutcome> {
        self.shared
            .iter()
            .chain(&self.tenants)
            .filter(|o| o.state.is_failure())
    }

    /// True when every selected schema is moved and checked.
    pub fn is_success(&self) -> bool {
        self.failures().next().is_none() && self.not_reached.is_empty() && self.stopped.is_none()
    }
}

/// What `migrate-to --abort` removes.
#[derive(Debug, Clone, Serialize)]
pub struct AbortPlan {
    /// The version.
    pub version: String,
    /// Schemas the move created that still exist (tenants first).
    pub schemas: Vec<String>,
}

/// One rename of a cut-over.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Rename {
    /// The current name.
    pub from: String,
    /// The new name.
    pub to: String,
}

/// What a cut-over (or its revert) renames.
#[derive(Debug, Clone, Serialize)]
pub struct CutoverReport {
    /// The version.
    pub version: String,
    /// True for `--revert`.
    pub revert: bool,
    /// True when nothing was changed.
    pub dry_run: bool,
    /// The renames, in the order they run (one transaction).
    pub renames: Vec<Rename>,
    /// The ledger run.
    pub run_id: Option<i64>,
}

/// A version's migration sets and data-move files, loaded.
struct Loaded {
    v: VersionSettings,
    shared_set: Arc<MigrationSet>,
    tenant_set: Arc<MigrationSet>,
    shared_moves: Vec<DataMove>,
    tenant_moves: Vec<DataMove>,
}

/// Keeps copy events (per-table bars) of many concurrent copies out of the
/// output; the command reports per schema itself.
pub(crate) struct QuietCopies(pub(crate) Arc<dyn EventSink>);

impl EventSink for QuietCopies {
    fn emit(&self, event: Event) {
        match event {
            Event::CopyStarted { .. }
            | Event::CopyStep { .. }
            | Event::TableCopyStarted { .. }
            | Event::TableCopyProgress { .. }
            | Event::TableCopied { .. } => {}
            e => self.0.emit(e),
        }
    }
}

/// What the move's workers share.
struct MoveCtx {
    run: Arc<RunCtx>,
    version: String,
    loaded: Loaded,
    control: String,
    run_id: i64,
    copier: Engine,
    copy_jobs: usize,
    source_shared: String,
    /// Warnings already given in this run (one per kind of schema and set
    /// of tables, not one per tenant).
    warned: Mutex<HashSet<String>>,
}

impl Engine {
    /// The same engine, with copy events left out of its output.
    pub(crate) fn quiet_copier(&self) -> Engine {
        Engine {
            settings: self.settings.clone(),
            connect: self.connect.clone(),
            url_masked: self.url_masked.clone(),
            shared_set: self.shared_set.clone(),
            tenant_set: self.tenant_set.clone(),
            sink: Arc::new(QuietCopies(self.sink.clone())),
        }
    }
}
