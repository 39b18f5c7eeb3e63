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

mod counts;
pub mod files;
pub(crate) mod store;

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection, Executor, Row};

use crate::config::{Strategy, VersionSettings};
use crate::copy::CopyOptions;
use crate::db::{self, LockMode};
use crate::engine::{Engine, RunCtx, Selection, describe_db_error, migrate_schema};
use crate::error::{Error, Result};
use crate::events::{Event, EventSink, OutcomeState, Phase, SchemaOutcome, StopReason};
use crate::ident::{quote_ident, validate_schema_name};
use crate::ledger::{Ledger, Record, RunTotals};
use crate::migration::MigrationSet;
use crate::state::SchemaState;
use files::{DataMove, Expect, Vars};
use store::Checkpoint;

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

    fn load_version(&self, name: &str) -> Result<Loaded> {
        let v = self.settings.version(name)?.clone();
        let set = |f: &Option<crate::config::Folders>, default: &std::path::Path| {
            let dirs = f
                .as_ref()
                .map(|f| f.paths())
                .unwrap_or_else(|| vec![default.to_path_buf()]);
            MigrationSet::load_all(&dirs)
        };
        let shared_set = set(&v.shared_migrations, &self.settings.shared_migrations)?;
        let tenant_set = if v.consolidates() {
            MigrationSet::default()
        } else {
            set(&v.tenant_migrations, &self.settings.tenant_migrations)?
        };
        // The version's schemas are built with these files: one that ends
        // or starts a transaction itself is refused before anything runs.
        for m in shared_set.migrations.iter().chain(&tenant_set.migrations) {
            m.check_transaction_control(false)?;
        }
        let shared_moves = match &v.shared_moves {
            Some(d) => files::load(d, false)?,
            None => Vec::new(),
        };
        let tenant_moves = match &v.tenant_moves {
            Some(d) => files::load(d, true)?,
            None => Vec::new(),
        };
        if tenant_moves
            .iter()
            .any(|m| files::uses(&m.sql, "tenant_id"))
            && v.tenant_id_query.is_none()
        {
            return Err(Error::Config {
                message: format!(
                    "[versions.{name}]: the tenant data-move files use {{tenant_id}}; set tenant_id_query to a query returning each tenant's schema name and id"
                ),
            });
        }
        Ok(Loaded {
            v,
            shared_set: Arc::new(shared_set),
            tenant_set: Arc::new(tenant_set),
            shared_moves,
            tenant_moves,
        })
    }

    fn steps_for(&self, l: &Loaded, phase: Phase) -> Vec<StepPlan> {
        let (set, moves) = match phase {
            Phase::Shared => (&l.shared_set, &l.shared_moves),
            Phase::Tenant => (&l.tenant_set, &l.tenant_moves),
        };
        let consolidated = phase == Phase::Tenant && l.v.consolidates();
        let mut out = Vec::new();
        match l.v.strategy {
            Strategy::Clone => out.push(StepPlan {
                step: COPY.into(),
                what: "copy-into-new-schema from the source (rows counted table by table)".into(),
                sql: Vec::new(),
            }),
            Strategy::Reshape if !consolidated => out.push(StepPlan {
                step: CREATE.into(),
                what: "create the target schema".into(),
                sql: Vec::new(),
            }),
            Strategy::Reshape => {}
        }
        if !consolidated && !set.is_empty() {
            out.push(StepPlan {
                step: MIGRATE.into(),
                what: format!(
                    "apply the version's pending {} migrations (up to {})",
                    phase.as_str(),
                    set.head()
                        .map(|h| set.fmt_version(h).to_string())
                        .unwrap_or_default()
                ),
                sql: set
                    .migrations
                    .iter()
                    .map(|m| (m.path.display().to_string(), m.sql.clone()))
                    .collect(),
            });
        }
        for m in moves {
            out.push(StepPlan {
                step: m.step.clone(),
                what: format!(
                    "data move {} (one transaction; {}{})",
                    m.path.display(),
                    match &m.expect {
                        Expect::Query(q) => format!("rows written must equal {q}"),
                        Expect::Unchecked => "rows not checked".into(),
                    },
                    m.copies
                        .iter()
                        .map(|c| format!("; copies {} -> {}", c.source, c.target))
                        .collect::<String>()
                ),
                sql: vec![(m.path.display().to_string(), m.sql.clone())],
            });
        }
        out.push(StepPlan {
            step: CHECK.into(),
            what: match (phase, consolidated) {
                (Phase::Shared, _) => {
                    "after the tenants: counts, foreign keys valid, sequences past the copied ids"
                        .into()
                }
                (Phase::Tenant, true) => format!(
                    "count the tenant's rows in every table declared by -- copies: or of the same name{}",
                    l.v.tenant_column
                        .as_deref()
                        .map(|c| format!(" (WHERE {c} = the tenant's id)"))
                        .unwrap_or_default()
                ),
                (Phase::Tenant, false) => {
                    "counts, foreign keys valid, sequences past the copied ids".into()
                }
            },
            sql: Vec::new(),
        });
        out
    }

    /// The plan of a move: what each schema has left to do, or why it
    /// cannot move. Reads only.
    pub async fn move_plan(&self, opts: &MoveOptions) -> Result<MovePlan> {
        let loaded = self.load_version(&opts.version)?;
        let mut conn = self.connection().await?;
        self.plan_with(&mut conn, &loaded, opts).await
    }

    async fn plan_with(
        &self,
        conn: &mut PgConnection,
        l: &Loaded,
        opts: &MoveOptions,
    ) -> Result<MovePlan> {
        let s = &self.settings;
        let v = &l.v;
        let version = opts.version.as_str();
        let selection = Selection {
            shared: true,
            tenants: true,
            ..opts.selection.clone()
        };
        let status = self.status_with(conn, &selection).await?;
        let control_exists = crate::ledger::ledger_exists(conn, &s.control_schema).await?;
        let (done, created, cut) = if control_exists && self.has_move_tables(conn).await? {
            let c = &s.control_schema;
            (
                store::steps(conn, c, version)
                    .await
                    .map_err(Error::db("reading the move's checkpoints"))?,
                store::created(conn, c, version)
                    .await
                    .map_err(Error::db("reading the move's schemas"))?
                    .into_iter()
                    .map(|(n, _)| n)
                    .collect::<HashSet<String>>(),
                store::cutover(conn, c, version)
                    .await
                    .map_err(Error::db("reading the version's cut-over"))?,
            )
        } else {
            Default::default()
        };
        if let Some((state, _)) = &cut
            && state == "live"
        {
            return Err(Error::Usage {
                message: format!(
                    "version {version} is live (cut over); there is nothing to move. To move again, revert first: tenantmig cutover {version} --revert"
                ),
            });
        }
        let ids = match &v.tenant_id_query {
            Some(q) => tenant_ids(conn, q).await?,
            None => HashMap::new(),
        };
        let needs_id = l
            .tenant_moves
            .iter()
            .any(|m| files::uses(&m.sql, "tenant_id"));
        let shared_steps = self.steps_for(l, Phase::Shared);
        let tenant_steps = self.steps_for(l, Phase::Tenant);
        let names = |steps: &[StepPlan]| steps.iter().map(|p| p.step.clone()).collect::<Vec<_>>();
        let done_of = |source: &str| -> Vec<String> {
            done.get(source)
                .map(|m| {
                    m.values()
                        .filter(|r| r.state == "done")
                        .map(|r| r.step.clone())
                        .collect()
                })
                .unwrap_or_default()
        };

        // Targets that exist: each must be one this move created.
        let mut targets: Vec<String> = vec![v.shared_schema.clone()];
        if !v.consolidates() {
            targets.extend(status.tenants.iter().map(|t| v.tenant_target(&t.schema)));
        }
        let existing = db::existing_schemas(conn, &targets, &s.history_table)
            .await
            .map_err(Error::db("looking up the target schemas"))?;
        let foreign = |target: &str| existing.contains_key(target) && !created.contains(target);

        let shared_src = status.shared.as_ref().expect("shared selected");
        let mut shared = SchemaMove {
            source: s.shared_schema.clone(),
            target: v.shared_schema.clone(),
            phase: Phase::Shared,
            tenant_id: None,
            steps: names(&shared_steps),
            done: done_of(&s.shared_schema),
            refused: None,
        };
        if foreign(&v.shared_schema) {
            shared.refused = Some(format!(
                "the target schema {} exists and was not created by migrate-to {version}; drop or rename it, or choose another shared_schema",
                v.shared_schema
            ));
        } else if shared_src.state == SchemaState::Missing {
            shared.refused = Some(format!(
                "the shared schema {} does not exist",
                s.shared_schema
            ));
        } else if shared_src.state.is_refused()
            || (v.strategy == Strategy::Reshape && shared_src.state != SchemaState::UpToDate)
        {
            shared.refused = Some(format!(
                "the shared schema {} is {} for the current shared migrations; data moves are written for their head: run tenantmig migrate --shared-only first",
                s.shared_schema,
                shared_src.state.label()
            ));
        }
        if let Some(r) = &shared.refused {
            return Err(Error::Usage {
                message: format!("cannot move to {version}: {r}"),
            });
        }

        let mut tenants = Vec::with_capacity(status.tenants.len());
        for t in &status.tenants {
            let target = v.tenant_target(&t.schema);
            let mut m = SchemaMove {
                source: t.schema.clone(),
                target: target.clone(),
                phase: Phase::Tenant,
                tenant_id: ids.get(&t.schema).cloned(),
                steps: names(&tenant_steps),
                done: done_of(&t.schema),
                refused: None,
            };
            m.refused = if t.state == SchemaState::InvalidName {
                Some(t.detail.clone().unwrap_or_else(|| "invalid name".into()))
            } else if t.state == SchemaState::Missing {
                Some(format!("schema {} does not exist", t.schema))
            } else if t.state.is_refused() {
                Some(format!(
                    "its history is {} ({}); see tenantmig status",
                    t.state.label(),
                    t.detail.clone().unwrap_or_default()
                ))
            } else if v.strategy == Strategy::Reshape && t.state != SchemaState::UpToDate {
                Some(format!(
                    "it is {} (at {}) for the current tenant migrations; data moves are written for their head: run tenantmig migrate --tenant {} first",
                    t.state.label(),
                    t.applied_version
                        .map(|v| self.tenant_set.fmt_version(v).to_string())
                        .unwrap_or_else(|| "nothing".into()),
                    t.schema
                ))
            } else if let Err(e) = validate_schema_name(&target) {
                Some(format!("its target name is not usable: {e}"))
            } else if !v.consolidates() && foreign(&target) {
                Some(format!(
                    "the target schema {target} exists and was not created by migrate-to {version}; drop or rename it"
                ))
            } else if needs_id && m.tenant_id.is_none() {
                Some(format!(
                    "tenant_id_query returned no id for {}; the data-move files need {{tenant_id}}",
                    t.schema
                ))
            } else {
                None
            };
            tenants.push(m);
        }
        let mut to_create = Vec::new();
        if !existing.contains_key(&v.shared_schema) {
            to_create.push(v.shared_schema.clone());
        }
        if !v.consolidates() {
            to_create.extend(
                tenants
                    .iter()
                    .filter(|t| t.refused.is_none() && !existing.contains_key(&t.target))
                    .map(|t| t.target.clone()),
            );
        }
        Ok(MovePlan {
            version: version.to_string(),
            strategy: v.strategy,
            consolidates: v.consolidates(),
            shared,
            tenants,
            to_create,
            shared_steps,
            tenant_steps,
            source: status.source.unwrap_or_default(),
        })
    }

    async fn has_move_tables(&self, conn: &mut PgConnection) -> Result<bool> {
        // language=SQL
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(crate::ident::qualified(
                &self.settings.control_schema,
                "move_steps",
            ))
            .fetch_one(&mut *conn)
            .await
            .map_err(Error::db("looking for the move tables"))
    }

    /// Moves to a version (see the module docs). `shutdown` resolving lets
    /// the steps in flight finish and starts nothing new.
    pub async fn migrate_to(
        &self,
        opts: &MoveOptions,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<MoveReport> {
        let started = Instant::now();
        let s = &self.settings;
        let loaded = self.load_version(&opts.version)?;
        let mut control = self.connection().await?;
        let plan = self.plan_with(&mut control, &loaded, opts).await?;
        let mut report = MoveReport {
            run_id: None,
            version: opts.version.clone(),
            strategy: loaded.v.strategy,
            dry_run: opts.dry_run,
            plan: None,
            shared: None,
            tenants: Vec::new(),
            tenants_already_moved: plan
                .tenants
                .iter()
                .filter(|t| t.refused.is_none() && t.is_complete())
                .count(),
            not_reached: Vec::new(),
            stopped: None,
            duration_ms: 0,
            ledger_error: None,
        };
        if opts.dry_run {
            report.plan = Some(plan);
            report.duration_ms = started.elapsed().as_millis() as u64;
            return Ok(report);
        }
        self.ensure_control(&mut control).await?;

        // One move of a version at a time.
        let lock_name = format!("migrate-to {}", opts.version);
        let mut guard = self.connection().await?;
        match db::acquire(
            &mut guard,
            &lock_name,
            LockMode::Exclusive,
            s.lock_wait,
            Some(&s.control_schema),
        )
        .await
        {
            Ok(()) => {}
            Err(db::LockFailure::Busy(why)) => {
                return Err(Error::Usage {
                    message: format!(
                        "another tenantmig migrate-to {} is running: {why}",
                        opts.version
                    ),
                });
            }
            Err(db::LockFailure::Db(e)) => return Err(Error::db("locking the move")(e)),
        }

        let (free, _) = db::free_connections(&mut control)
            .await
            .map_err(Error::db("counting the server's free connections"))?;
        let led = Ledger::start(
            control,
            &self.connect,
            &s.control_schema,
            "migrate-to",
            &opts.args,
            started.elapsed(),
        )
        .await?;
        self.sink.emit(Event::RunStarted { run_id: led.run_id });
        report.run_id = Some(led.run_id);

        // Workers migrate targets with the version's shared schema on their
        // search path.
        let mut run_settings = s.clone();
        run_settings.shared_schema = loaded.v.shared_schema.clone();
        run_settings.create_missing_schemas = false;
        let cx = Arc::new(MoveCtx {
            run: RunCtx::start(
                run_settings,
                self.connect
                    .clone()
                    .application_name(&db::run_application_name(led.run_id)),
                self.sink.clone(),
                led.sender(),
                shutdown,
                crate::state::Goal::Head,
                // A move's targets are made by its own steps before they
                // are migrated: none may be created by the migration.
                Default::default(),
            ),
            version: opts.version.clone(),
            control: s.control_schema.clone(),
            run_id: led.run_id,
            copier: self.quiet_copier(),
            copy_jobs: s.jobs,
            source_shared: s.shared_schema.clone(),
            warned: Mutex::new(HashSet::new()),
            loaded,
        });

        // Shared phase: its copy or build and data moves, before any tenant.
        let shared_ok;
        {
            let m = &plan.shared;
            let pending = !m.is_complete();
            self.sink.emit(Event::PhaseStarted {
                phase: Phase::Shared,
                schemas: pending as usize,
                jobs: 1,
            });
            let mut conn = None;
            let out = run_schema(&cx, &mut conn, m, false).await;
            if let Some(c) = conn {
                let _ = c.close().await;
            }
            shared_ok = !out.state.is_failure();
            if !shared_ok {
                cx.run.halt(StopReason::SharedFailed);
            }
            if pending || !shared_ok {
                report.shared = Some(out);
            }
        }

        // Tenant phase.
        let mut work = Vec::new();
        for t in &plan.tenants {
            if let Some(r) = &t.refused {
                let mut o = MoveOutcome::new(t);
                o.state = OutcomeState::Refused;
                o.error = Some(r.clone());
                let so = o.as_schema_outcome();
                cx.run.record_finished(&so);
                self.sink.emit(Event::SchemaFinished { outcome: so });
                report.tenants.push(o);
            } else if !t.is_complete() {
                work.push(t.clone());
            }
        }
        if shared_ok && !work.is_empty() && !cx.run.stopped() {
            // Each tenant holds one connection; a copy opens two more
            // (its control and snapshot connections) besides its own.
            let per = match cx.loaded.v.strategy {
                Strategy::Clone => 4,
                Strategy::Reshape => 1,
            };
            let cap = (((free - 2).max(1)) as usize / per).max(1);
            let mut jobs = s.jobs.min(work.len());
            if jobs > cap {
                self.sink.emit(Event::Warning {
                    message: format!(
                        "--jobs {} needs about {} connections; {} are free for this database and role, so {cap} tenants move at once",
                        s.jobs,
                        s.jobs * per,
                        free
                    ),
                });
                jobs = cap;
            }
            self.sink.emit(Event::MoveStarted {
                version: opts.version.clone(),
                tenants: work.len(),
                jobs,
            });
            self.sink.emit(Event::PhaseStarted {
                phase: Phase::Tenant,
                schemas: work.len(),
                jobs,
            });
            let (done, not_reached) = tenant_pool(cx.clone(), work, jobs).await;
            report.tenants.extend(done);
            report.not_reached = not_reached;
        } else if !work.is_empty() {
            report.not_reached = work.into_iter().map(|t| t.source).collect();
        }

        // The shared schema's checks run last: sequences must pass the ids
        // every tenant brought into a consolidated schema.
        if shared_ok && !cx.run.shutdown.load(Ordering::SeqCst) {
            let mut conn = None;
            let out = run_schema(&cx, &mut conn, &plan.shared, true).await;
            if let Some(c) = conn {
                let _ = c.close().await;
            }
            let failed = out.state.is_failure();
            match report.shared.as_mut() {
                Some(prev) => {
                    prev.steps.extend(out.steps);
                    prev.counts = out.counts;
                    if failed {
                        prev.state = out.state;
                        prev.error = out.error;
                    }
                }
                None if failed => report.shared = Some(out),
                None => {}
            }
        }
        let _ = db::unlock(&mut guard, &lock_name, LockMode::Exclusive).await;
        let _ = guard.close().await;

        report.stopped = *cx.run.stop_reason.lock().expect("stop reason lock");
        report.duration_ms = started.elapsed().as_millis() as u64;
        let stopped = report
            .failures()
            .filter(|o| o.state == OutcomeState::Stopped)
            .count() as i64;
        let totals = RunTotals::of_run(
            1 + plan.tenants.len() as i64,
            report.failures().count() as i64,
            stopped,
            report.not_reached.len() as i64,
        );
        drop(cx);
        // As for migrate: a ledger that cannot be written is said in the
        // report, never a reason to lose it.
        report.ledger_error = led
            .close_run(report.stopped, report.is_success(), &totals)
            .await;
        Ok(report)
    }

    /// What `migrate-to VERSION --abort` would drop.
    pub async fn abort_plan(&self, version: &str) -> Result<AbortPlan> {
        self.settings.version(version)?;
        let mut conn = self.connection().await?;
        let mut schemas = Vec::new();
        if crate::ledger::ledger_exists(&mut conn, &self.settings.control_schema).await?
            && self.has_move_tables(&mut conn).await?
        {
            let c = &self.settings.control_schema;
            if let Some((state, _)) = store::cutover(&mut conn, c, version)
                .await
                .map_err(Error::db("reading the version's cut-over"))?
                && state == "live"
            {
                return Err(Error::Usage {
                    message: format!(
                        "version {version} is live (cut over): its schemas now carry the original names and --abort would drop live data. Revert first: tenantmig cutover {version} --revert"
                    ),
                });
            }
            let made = store::created(&mut conn, c, version)
                .await
                .map_err(Error::db("reading the move's schemas"))?;
            let names: Vec<String> = made.iter().map(|(n, _)| n.clone()).collect();
            let exists = db::existing_schemas(&mut conn, &names, &self.settings.history_table)
                .await
                .map_err(Error::db("looking up the move's schemas"))?;
            let shared = &self.settings.version(version)?.shared_schema;
            // Tenants' schemas first, the shared one last.
            for (n, _) in made.iter().filter(|(n, _)| n != shared) {
                schemas.push(n.clone());
            }
            if made.iter().any(|(n, _)| n == shared) {
                schemas.push(shared.clone());
            }
            schemas.retain(|n| exists.contains_key(n));
        }
        Ok(AbortPlan {
            version: version.to_string(),
            schemas,
        })
    }

    /// Drops every schema the move to `version` created and forgets its
    /// checkpoints; the sources are not touched. Refused while the version
    /// is live.
    pub async fn abort_move(&self, version: &str, args: &[String]) -> Result<AbortPlan> {
        let started = Instant::now();
        let plan = self.abort_plan(version).await?;
        let mut conn = self.connection().await?;
        self.ensure_control(&mut conn).await?;
        let c = &self.settings.control_schema;
        let lock_name = format!("migrate-to {version}");
        match db::acquire(
            &mut conn,
            &lock_name,
            LockMode::Exclusive,
            self.settings.lock_wait,
            Some(c),
        )
        .await
        {
            Ok(()) => {}
            Err(db::LockFailure::Busy(why)) => {
                return Err(Error::Usage {
                    message: format!(
                        "a tenantmig migrate-to {version} is running; stop it (Ctrl-C) before aborting: {why}"
                    ),
                });
            }
            Err(db::LockFailure::Db(e)) => return Err(Error::db("locking the move")(e)),
        }
        let result = async {
            for name in &plan.schemas {
                // language=SQL
                conn.execute(AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {} CASCADE",
                    quote_ident(name)
                )))
                .await
                .map_err(Error::db(format!("dropping {name}")))?;
                store::forget(&mut conn, c, version, name)
                    .await
                    .map_err(Error::db("forgetting the move's checkpoints"))?;
            }
            // Checkpoints of steps whose schema never came to be.
            // language=SQL
            for table in ["move_steps", "move_schemas"] {
                sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM {} WHERE version = $1",
                    crate::ident::qualified(c, table)
                )))
                .bind(version)
                .execute(&mut conn)
                .await
                .map_err(Error::db("forgetting the move's checkpoints"))?;
            }
            Ok::<_, Error>(())
        }
        .await;
        let _ = db::unlock(&mut conn, &lock_name, LockMode::Exclusive).await;
        let _ = conn.close().await;
        let err = result.as_ref().err().map(|e: &Error| e.to_string());
        self.record_run(
            "migrate-to --abort",
            args,
            &self.settings.version(version)?.shared_schema.clone(),
            started,
            err.as_deref(),
        )
        .await?;
        result.map(|_| plan)
    }

    /// The renames of a cut-over to `version` (or of its revert), checked:
    /// every tenant of the tenant source must be moved and checked, and no
    /// new name may be taken.
    pub async fn cutover_plan(&self, version: &str, revert: bool) -> Result<Vec<Rename>> {
        let v = self.settings.version(version)?.clone();
        let s = &self.settings;
        let mut conn = self.connection().await?;
        let has = crate::ledger::ledger_exists(&mut conn, &s.control_schema).await?
            && self.has_move_tables(&mut conn).await?;
        let cut = if has {
            store::cutover(&mut conn, &s.control_schema, version)
                .await
                .map_err(Error::db("reading the version's cut-over"))?
        } else {
            None
        };
        if revert {
            return match cut {
                Some((state, renames)) if state == "live" => Ok(renames
                    .into_iter()
                    .rev()
                    .map(|(from, to)| Rename { from: to, to: from })
                    .collect()),
                _ => Err(Error::Usage {
                    message: format!(
                        "version {version} is not live; there is no cut-over to revert"
                    ),
                }),
            };
        }
        if matches!(&cut, Some((state, _)) if state == "live") {
            return Err(Error::Usage {
                message: format!(
                    "version {version} is already live; tenantmig cutover {version} --revert swaps back"
                ),
            });
        }
        let loaded = self.load_version(version)?;
        let plan = self
            .plan_with(
                &mut conn,
                &loaded,
                &MoveOptions {
                    version: version.into(),
                    ..Default::default()
                },
            )
            .await?;
        let mut unfinished: Vec<String> = plan
            .tenants
            .iter()
            .filter(|t| !t.is_complete())
            .map(|t| match &t.refused {
                Some(r) => format!("{} ({r})", t.source),
                None => t.source.clone(),
            })
            .collect();
        if !plan.shared.is_complete() {
            unfinished.insert(0, format!("{} (the shared schema)", plan.shared.source));
        }
        if !unfinished.is_empty() {
            let n = unfinished.len();
            unfinished.truncate(10);
            return Err(Error::Usage {
                message: format!(
                    "cannot cut over to {version}: {n} schema(s) are not moved and checked yet: {}{}; run tenantmig migrate-to {version} until it succeeds",
                    unfinished.join(", "),
                    if n > 10 { ", ..." } else { "" }
                ),
            });
        }
        let suffix = &v.previous_suffix;
        let mut renames = Vec::new();
        let aside = |name: &str| format!("{name}{suffix}");
        renames.push(Rename {
            from: s.shared_schema.clone(),
            to: aside(&s.shared_schema),
        });
        renames.push(Rename {
            from: v.shared_schema.clone(),
            to: s.shared_schema.clone(),
        });
        for t in &plan.tenants {
            renames.push(Rename {
                from: t.source.clone(),
                to: aside(&t.source),
            });
            if !v.consolidates() {
                renames.push(Rename {
                    from: t.target.clone(),
                    to: t.source.clone(),
                });
            }
        }
        let mut bad = Vec::new();
        for r in &renames {
            if let Err(e) = validate_schema_name(&r.to) {
                bad.push(format!("{}: {e}", r.from));
            }
        }
        let taken: Vec<String> = renames
            .iter()
            .filter(|r| r.to.ends_with(suffix.as_str()))
            .map(|r| r.to.clone())
            .collect();
        let exists = db::existing_schemas(&mut conn, &taken, &s.history_table)
            .await
            .map_err(Error::db("looking up the names cut-over needs"))?;
        let mut taken: Vec<&String> = exists.keys().collect();
        taken.sort();
        if !taken.is_empty() {
            bad.push(format!(
                "schema(s) {} already exist; cut-over needs those names for the current schemas (drop or rename them, or set versions.{version}.previous_suffix)",
                taken
                    .iter()
                    .take(10)
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !bad.is_empty() {
            return Err(Error::Usage {
                message: format!("cannot cut over to {version}: {}", bad.join("; ")),
            });
        }
        Ok(renames)
    }

    /// Makes `version` live (or, with `revert`, swaps back) by renaming
    /// schemas in one transaction, under every schema's advisory lock.
    pub async fn cutover(
        &self,
        version: &str,
        revert: bool,
        dry_run: bool,
        args: &[String],
    ) -> Result<CutoverReport> {
        let started = Instant::now();
        let renames = self.cutover_plan(version, revert).await?;
        let mut report = CutoverReport {
            version: version.into(),
            revert,
            dry_run,
            renames,
            run_id: None,
        };
        if dry_run {
            return Ok(report);
        }
        let s = &self.settings;
        let mut conn = self.connection().await?;
        self.ensure_control(&mut conn).await?;
        let pairs: Vec<(String, String)> = report
            .renames
            .iter()
            .map(|r| (r.from.clone(), r.to.clone()))
            .collect();
        let result = async {
            let mut tx = conn
                .begin()
                .await
                .map_err(Error::db("starting the cut-over"))?;
            let record = store::cutover_sql(
                &s.control_schema,
                version,
                if revert { "reverted" } else { "live" },
                &pairs,
                None,
            );
            rename_schemas(
                &mut tx,
                &report.renames,
                s.lock_wait,
                s.lock_timeout,
                &record,
                "cut-over",
            )
            .await?;
            tx.commit()
                .await
                .map_err(Error::db("committing the cut-over"))?;
            Ok(())
        }
        .await;
        let _ = conn.close().await;
        let err = result.as_ref().err().map(|e: &Error| e.to_string());
        let run = self
            .record_run(
                if revert {
                    "cutover --revert"
                } else {
                    "cutover"
                },
                args,
                &s.shared_schema,
                started,
                err.as_deref(),
            )
            .await?;
        result?;
        report.run_id = Some(run);
        Ok(report)
    }
}

/// Renames schemas inside the caller's transaction, under every name's
/// advisory lock (transaction-level, waited for up to `lock_wait`) and
/// `lock_timeout`, then runs `then`
/// (the record of the renames) in the same transaction. `what` names the
/// operation in errors.
pub(crate) async fn rename_schemas(
    tx: &mut PgConnection,
    renames: &[Rename],
    lock_wait: Duration,
    lock_timeout: Duration,
    then: &str,
    what: &str,
) -> Result<()> {
    let names: Vec<String> = renames
        .iter()
        .flat_map(|r| [r.from.clone(), r.to.clone()])
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    // Every name exclusively, polled up to lock_timeout (the command's
    // lock_wait): the locks already had stay had until the transaction ends.
    let deadline = Instant::now() + lock_wait;
    let mut pause = Duration::from_millis(20);
    let mut busy = names;
    loop {
        // language=SQL
        busy = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT n FROM unnest($1::text[]) AS n WHERE NOT pg_try_advisory_xact_lock({})",
            db::LOCK_KEY.replace("$1", "n")
        )))
        .bind(&busy)
        .fetch_all(&mut *tx)
        .await
        .map_err(Error::db("locking the schemas"))?;
        if busy.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            let mut who = Vec::new();
            for name in &busy {
                let holders = db::lock_holders(tx, name, None).await.unwrap_or_default();
                who.push(format!(
                    "{name} (held by {})",
                    holders
                        .iter()
                        .map(db::LockHolder::describe)
                        .collect::<Vec<_>>()
                        .join("; and by ")
                ));
            }
            return Err(Error::Usage {
                message: format!(
                    "the {what} waited {} (lock_wait) for schemas that another session works on, and renamed nothing: {}",
                    humantime::format_duration(lock_wait),
                    who.join(", ")
                ),
            });
        }
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
    // language=SQL
    let mut sql = format!("SET LOCAL lock_timeout = {};\n", lock_timeout.as_millis());
    for r in renames {
        sql.push_str(&format!(
            "ALTER SCHEMA {} RENAME TO {};\n",
            quote_ident(&r.from),
            quote_ident(&r.to)
        ));
    }
    sql.push_str(then);
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::Failed {
            message: format!(
                "the {what} was rolled back, nothing was renamed: {}",
                describe_db_error(&e)
            ),
        })?;
    Ok(())
}

/// `tenant_id_query`'s rows: schema name to id (as text).
async fn tenant_ids(conn: &mut PgConnection, query: &str) -> Result<HashMap<String, String>> {
    // language=SQL
    let sql = format!("SELECT q.s::text, q.i::text FROM ({query}) AS q(s, i)");
    let rows = sqlx::query(AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| Error::Config {
            message: format!(
                "tenant_id_query failed: {}; it must return two columns, the tenant's schema name and its id",
                describe_db_error(&e)
            ),
        })?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            Some((
                r.get::<Option<String>, _>(0)?,
                r.get::<Option<String>, _>(1)?,
            ))
        })
        .collect())
}

/// Hands tenants to `jobs` workers from one queue.
async fn tenant_pool(
    cx: Arc<MoveCtx>,
    work: Vec<SchemaMove>,
    jobs: usize,
) -> (Vec<MoveOutcome>, Vec<String>) {
    let queue = Arc::new(Mutex::new(VecDeque::from(work)));
    let done = Arc::new(Mutex::new(Vec::new()));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..jobs.max(1) {
        let (cx, queue, done) = (cx.clone(), queue.clone(), done.clone());
        workers.spawn(async move {
            let mut conn: Option<PgConnection> = None;
            loop {
                if cx.run.stopped() {
                    break;
                }
                let Some(m) = queue.lock().expect("queue lock").pop_front() else {
                    break;
                };
                let out = run_schema(&cx, &mut conn, &m, false).await;
                if out.state.is_failure() && out.state != OutcomeState::Stopped {
                    cx.run.count_failure();
                }
                done.lock().expect("outcome lock").push(out);
            }
            if let Some(c) = conn {
                let _ = c.close().await;
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let not_reached = queue
        .lock()
        .expect("queue lock")
        .drain(..)
        .map(|m| m.source)
        .collect();
    let done = std::mem::take(&mut *done.lock().expect("outcome lock"));
    (done, not_reached)
}

/// Runs a schema's steps that are not done yet. With `final_check`, runs
/// only the shared schema's check (after the tenants); without it, the
/// shared schema's steps stop before its check.
async fn run_schema(
    cx: &MoveCtx,
    conn: &mut Option<PgConnection>,
    m: &SchemaMove,
    final_check: bool,
) -> MoveOutcome {
    let started = Instant::now();
    let sink = &cx.run.sink;
    let mut out = MoveOutcome::new(m);
    if !final_check {
        sink.emit(Event::SchemaStarted {
            phase: m.phase,
            schema: m.source.clone(),
        });
        cx.run.records.record(Record::started(&m.source, m.phase));
    }
    if conn.is_none() {
        match db::connect(&cx.run.connect).await {
            Ok(c) => *conn = Some(c),
            Err(e) => {
                out.state = OutcomeState::Failed;
                out.error = Some(format!("cannot connect: {}", describe_db_error(&e)));
            }
        }
    }
    if let Some(c) = conn.as_mut() {
        let mut broken = run_steps(cx, c, m, final_check, &mut out).await;
        // The source's lock is released: clear what the data-move files
        // and migrations left in the session before the next schema (as
        // migrate's workers do).
        broken = broken || db::discard_session(c).await.is_err();
        if broken && let Some(c) = conn.take() {
            let _ = c.close().await;
        }
    }
    out.duration_ms = started.elapsed().as_millis() as u64;
    if !final_check || out.state.is_failure() {
        let so = out.as_schema_outcome();
        cx.run.record_finished(&so);
        sink.emit(Event::SchemaFinished { outcome: so });
    }
    out
}

/// The steps of one schema under its source's advisory lock. Returns true
/// when the connection must be dropped.
async fn run_steps(
    cx: &MoveCtx,
    conn: &mut PgConnection,
    m: &SchemaMove,
    final_check: bool,
    out: &mut MoveOutcome,
) -> bool {
    let s = &cx.run.settings;
    // The source is only read (cloned, or read by the data moves): shared,
    // so that copies of it may run beside the move but no change can.
    match db::acquire(
        conn,
        &m.source,
        LockMode::Shared,
        s.lock_wait,
        Some(&s.control_schema),
    )
    .await
    {
        Ok(()) => {}
        Err(db::LockFailure::Busy(message)) => {
            out.state = OutcomeState::Failed;
            out.error = Some(message);
            return false;
        }
        Err(db::LockFailure::Db(e)) => {
            out.state = OutcomeState::Failed;
            out.error = Some(format!(
                "while locking schema {}: {}",
                m.source,
                describe_db_error(&e)
            ));
            return true;
        }
    }
    let mut broken = false;
    for step in &m.steps {
        let is_check = step == CHECK;
        // The shared schema's check waits for the tenants, and always runs
        // again then (a rerun may have moved more tenants).
        if m.phase == Phase::Shared && is_check != final_check {
            continue;
        }
        if m.done.contains(step) && !(m.phase == Phase::Shared && is_check) {
            out.steps.push(StepOutcome {
                step: step.clone(),
                state: "skipped".into(),
                rows_read: None,
                rows_written: None,
                duration_ms: 0,
            });
            continue;
        }
        if cx.run.shutdown.load(Ordering::SeqCst) {
            out.state = OutcomeState::Stopped;
            out.error = Some(format!(
                "interrupted before step {step}; rerun to resume from it"
            ));
            break;
        }
        let t0 = Instant::now();
        let cp = |state, rows: (Option<i64>, Option<i64>), error| Checkpoint {
            version: &cx.version,
            source: &m.source,
            step,
            target: &m.target,
            state,
            run_id: Some(cx.run_id),
            rows_read: rows.0,
            rows_written: rows.1,
            error,
            duration_ms: Some(t0.elapsed().as_millis() as i64),
        };
        if let Err(e) =
            store::checkpoint(conn, &cx.control, &cp("running", (None, None), None)).await
        {
            out.state = OutcomeState::Failed;
            out.error = Some(format!(
                "while recording step {step}: {}",
                describe_db_error(&e)
            ));
            broken = true;
            break;
        }
        let r = run_step(cx, conn, m, step, out).await;
        match r {
            Ok(rows) => {
                // Copies, creations and data moves already wrote their
                // checkpoint in their own transaction; this adds the counts
                // and the time.
                if let Err(e) = store::checkpoint(conn, &cx.control, &cp("done", rows, None)).await
                {
                    out.state = OutcomeState::Failed;
                    out.error = Some(format!(
                        "while recording step {step}: {}",
                        describe_db_error(&e)
                    ));
                    broken = true;
                    break;
                }
                out.steps.push(StepOutcome {
                    step: step.clone(),
                    state: "done".into(),
                    rows_read: rows.0,
                    rows_written: rows.1,
                    duration_ms: t0.elapsed().as_millis() as u64,
                });
                cx.run.sink.emit(Event::MoveStepDone {
                    phase: m.phase,
                    schema: m.source.clone(),
                    step: step.clone(),
                    rows_read: rows.0,
                    rows_written: rows.1,
                    duration_ms: t0.elapsed().as_millis() as u64,
                });
            }
            Err(StepFail {
                message,
                broken: b,
                stopped,
            }) => {
                broken = b;
                let msg = format!("step {step}: {message}");
                if b {
                    // The connection may be in an aborted state; record on
                    // a fresh one.
                    if let Ok(mut c2) = db::connect(&cx.run.connect).await {
                        let _ = store::checkpoint(
                            &mut c2,
                            &cx.control,
                            &cp("failed", (None, None), Some(&msg)),
                        )
                        .await;
                        let _ = c2.close().await;
                    }
                } else {
                    let _ = store::checkpoint(
                        conn,
                        &cx.control,
                        &cp("failed", (None, None), Some(&msg)),
                    )
                    .await;
                }
                out.state = if stopped {
                    OutcomeState::Stopped
                } else {
                    OutcomeState::Failed
                };
                out.error = Some(msg);
                out.steps.push(StepOutcome {
                    step: step.clone(),
                    state: "failed".into(),
                    rows_read: None,
                    rows_written: None,
                    duration_ms: t0.elapsed().as_millis() as u64,
                });
                break;
            }
        }
    }
    if !broken {
        let cleanup = async {
            db::reset_session(conn).await?;
            db::unlock(conn, &m.source, LockMode::Shared).await
        }
        .await;
        broken = !matches!(cleanup, Ok(true));
    }
    broken
}

/// Why a step failed.
struct StepFail {
    message: String,
    /// The connection must be dropped.
    broken: bool,
    /// Stopped by Ctrl-C rather than failed.
    stopped: bool,
}

impl StepFail {
    fn new(message: impl Into<String>) -> Self {
        StepFail {
            message: message.into(),
            broken: false,
            stopped: false,
        }
    }

    fn db(e: sqlx::Error) -> Self {
        StepFail {
            message: describe_db_error(&e),
            broken: true,
            stopped: false,
        }
    }
}

/// Runs one step; returns the rows it read and wrote.
async fn run_step(
    cx: &MoveCtx,
    conn: &mut PgConnection,
    m: &SchemaMove,
    step: &str,
    out: &mut MoveOutcome,
) -> Result<(Option<i64>, Option<i64>), StepFail> {
    let l = &cx.loaded;
    match step {
        COPY => {
            let done = done_sql(cx, m, step, (None, None));
            let made = store::created_sql(&cx.control, &cx.version, &m.target, &m.source);
            let jobs = if m.phase == Phase::Shared {
                cx.copy_jobs
            } else {
                1
            };
            let opts = CopyOptions {
                in_rename: Some(format!("{done}; {made}")),
                ..CopyOptions::new(&m.source, &m.target, jobs)
            };
            let run = cx.run.clone();
            let stop = async move {
                while !run.shutdown.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            let report = cx
                .copier
                .copy_schema(&opts, stop)
                .await
                .map_err(|e| StepFail {
                    message: e.to_string(),
                    broken: false,
                    stopped: cx.run.shutdown.load(Ordering::SeqCst),
                })?;
            if m.phase == Phase::Tenant {
                warn_shared_references(cx, conn, m).await;
            }
            out.counts = report
                .checks
                .iter()
                .map(|c| TableCount {
                    table: c.table.clone(),
                    source_tables: Vec::new(),
                    source_rows: c.source_rows,
                    target_rows: c.target_rows,
                })
                .collect();
            Ok((
                Some(report.checks.iter().map(|c| c.source_rows).sum()),
                Some(report.checks.iter().map(|c| c.target_rows).sum()),
            ))
        }
        CREATE => {
            let mut tx = conn.begin().await.map_err(StepFail::db)?;
            // language=SQL
            let sql = format!(
                "CREATE SCHEMA {}; {}; {}",
                quote_ident(&m.target),
                store::created_sql(&cx.control, &cx.version, &m.target, &m.source),
                done_sql(cx, m, step, (None, None))
            );
            if let Err(e) = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *tx).await {
                let _ = tx.rollback().await;
                return Err(StepFail {
                    message: format!(
                        "while creating schema {}: {}",
                        m.target,
                        describe_db_error(&e)
                    ),
                    broken: false,
                    stopped: false,
                });
            }
            tx.commit().await.map_err(StepFail::db)?;
            Ok((None, None))
        }
        MIGRATE => {
            let set = match m.phase {
                Phase::Shared => &l.shared_set,
                Phase::Tenant => &l.tenant_set,
            };
            let mut o = SchemaOutcome::new(&m.target, m.phase);
            // The source's lock is held on this connection; migrating the
            // target takes the target's own lock.
            let broken = migrate_schema(conn, &cx.run, set, m.phase, &m.target, &mut o).await;
            match o.state {
                OutcomeState::Succeeded | OutcomeState::UpToDate => Ok((None, None)),
                state => Err(StepFail {
                    message: o.error.unwrap_or_else(|| state.as_str().into()),
                    broken,
                    stopped: state == OutcomeState::Stopped,
                }),
            }
        }
        CHECK => check(cx, conn, m, out).await,
        _ => {
            let moves = match m.phase {
                Phase::Shared => &l.shared_moves,
                Phase::Tenant => &l.tenant_moves,
            };
            let dm = moves
                .iter()
                .find(|d| d.step == step)
                .ok_or_else(|| StepFail::new(format!("no data-move file for step {step}")))?;
            data_move(cx, conn, m, dm).await
        }
    }
}

/// A clone keeps a tenant's references into the current shared schema
/// (foreign keys, views); after a cut-over they would point at the old
/// version's tables. Says so, naming them.
async fn warn_shared_references(cx: &MoveCtx, conn: &mut PgConnection, m: &SchemaMove) {
    // language=SQL
    let refs: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT c.relname::text FROM pg_catalog.pg_depend d \
         JOIN pg_catalog.pg_class c ON c.oid = CASE d.classid \
              WHEN 'pg_catalog.pg_constraint'::regclass THEN (SELECT conrelid FROM pg_catalog.pg_constraint WHERE oid = d.objid) \
              ELSE (SELECT ev_class FROM pg_catalog.pg_rewrite WHERE oid = d.objid) END \
         JOIN pg_catalog.pg_class r ON r.oid = d.refobjid \
         WHERE d.refclassid = 'pg_catalog.pg_class'::regclass \
           AND d.classid IN ('pg_catalog.pg_constraint'::regclass, 'pg_catalog.pg_rewrite'::regclass) \
           AND c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1) \
           AND r.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $2) \
         ORDER BY 1 LIMIT 10",
    )
    .bind(&m.target)
    .bind(&cx.source_shared)
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_default();
    if !refs.is_empty() {
        cx.run.sink.emit(Event::Warning {
            message: format!(
                "{}: {} refer(s) to tables of {} (foreign keys or views); the copy keeps those references, which after a cut-over point at the previous version's tables: recreate them against {} with a migration of the version",
                m.target,
                refs.join(", "),
                cx.source_shared,
                cx.loaded.v.shared_schema
            ),
        });
    }
}

/// The statement that records `step` of `m` as done, for the transaction
/// that does the step's work.
fn done_sql(cx: &MoveCtx, m: &SchemaMove, step: &str, rows: (Option<i64>, Option<i64>)) -> String {
    store::checkpoint_sql(
        &cx.control,
        &Checkpoint {
            version: &cx.version,
            source: &m.source,
            step,
            target: &m.target,
            state: "done",
            run_id: Some(cx.run_id),
            rows_read: rows.0,
            rows_written: rows.1,
            error: None,
            duration_ms: None,
        },
    )
}

/// Runs one data-move file in one transaction (REPEATABLE READ, so the
/// expected count and the rows moved see the same data) with its
/// checkpoint.
async fn data_move(
    cx: &MoveCtx,
    conn: &mut PgConnection,
    m: &SchemaMove,
    dm: &DataMove,
) -> Result<(Option<i64>, Option<i64>), StepFail> {
    let v = &cx.loaded.v;
    let s = &cx.run.settings;
    let vars = Vars {
        source_schema: &m.source,
        target_schema: &m.target,
        source_shared: &cx.source_shared,
        target_shared: &v.shared_schema,
        tenant: (m.phase == Phase::Tenant).then_some(m.source.as_str()),
        tenant_id: m.tenant_id.as_deref(),
    };
    let file = dm.path.display();
    let sql = files::render(&dm.sql, &vars).map_err(|e| StepFail::new(format!("{file}: {e}")))?;
    let expect = match &dm.expect {
        Expect::Query(q) => {
            Some(files::render(q, &vars).map_err(|e| StepFail::new(format!("{file}: {e}")))?)
        }
        Expect::Unchecked => None,
    };
    let mut tx = conn
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(StepFail::db)?;
    let target_path = if m.target == v.shared_schema {
        quote_ident(&m.target)
    } else {
        format!(
            "{}, {}",
            quote_ident(&m.target),
            quote_ident(&v.shared_schema)
        )
    };
    let result = async {
        // language=SQL
        sqlx::raw_sql(AssertSqlSafe(format!(
            "SET LOCAL search_path TO {target_path}; SET LOCAL lock_timeout = {}; SET LOCAL statement_timeout = {}",
            s.lock_timeout.as_millis(),
            s.statement_timeout.as_millis()
        )))
        .execute(&mut *tx)
        .await
        .map_err(|e| format!("while setting up the session: {}", describe_db_error(&e)))?;
        let expected: Option<i64> = match &expect {
            Some(q) => Some(
                sqlx::query_scalar::<_, Option<i64>>(AssertSqlSafe(format!(
                    "SELECT ({q})::int8"
                )))
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| {
                    format!(
                        "{file}: its expect-rows query failed: {}",
                        describe_db_error(&e)
                    )
                })?
                .unwrap_or(0),
            ),
            None => None,
        };
        let written = sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await
            .map_err(|e| format!("{file}: {}", describe_db_error(&e)))?
            .rows_affected() as i64;
        if let Some(n) = expected
            && n != written
        {
            return Err(format!(
                "{file} wrote {written} rows but its expect-rows query counts {n}; nothing of this step was kept"
            ));
        }
        let done = done_sql(cx, m, &dm.step, (expected, Some(written)));
        sqlx::raw_sql(AssertSqlSafe(done))
            .execute(&mut *tx)
            .await
            .map_err(|e| format!("while recording the step: {}", describe_db_error(&e)))?;
        Ok((expected, Some(written)))
    }
    .await;
    match result {
        Ok(rows) => {
            tx.commit().await.map_err(StepFail::db)?;
            Ok(rows)
        }
        Err(message) => {
            let rolled_back = tx.rollback().await.is_ok();
            Err(StepFail {
                message,
                broken: !rolled_back,
                stopped: false,
            })
        }
    }
}

/// The checks of a moved schema: final counts (reshape), foreign keys and
/// sequences (for a target of its own, or the shared schema's final check).
async fn check(
    cx: &MoveCtx,
    conn: &mut PgConnection,
    m: &SchemaMove,
    out: &mut MoveOutcome,
) -> Result<(Option<i64>, Option<i64>), StepFail> {
    let v = &cx.loaded.v;
    let consolidated_tenant = m.phase == Phase::Tenant && v.consolidates();
    let mut rows = (None, None);
    if v.strategy == Strategy::Reshape {
        counts::final_counts(cx, conn, m, &mut out.counts).await?;
        rows = (
            Some(out.counts.iter().map(|c| c.source_rows).sum()),
            Some(out.counts.iter().map(|c| c.target_rows).sum()),
        );
    }
    if !consolidated_tenant {
        validate_foreign_keys(conn, &m.target).await?;
        set_sequences(conn, &m.target).await.map_err(StepFail::db)?;
    }
    Ok(rows)
}

/// Validates every foreign key of `schema` still marked NOT VALID.
async fn validate_foreign_keys(conn: &mut PgConnection, schema: &str) -> Result<(), StepFail> {
    // language=SQL
    let fks: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, k.conname::text FROM pg_catalog.pg_constraint k \
         JOIN pg_catalog.pg_class c ON c.oid = k.conrelid \
         WHERE k.contype = 'f' AND NOT k.convalidated \
           AND k.connamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1)",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await
    .map_err(StepFail::db)?;
    for (table, fk) in fks {
        // language=SQL
        let sql = format!(
            "ALTER TABLE {}.{} VALIDATE CONSTRAINT {}",
            quote_ident(schema),
            quote_ident(&table),
            quote_ident(&fk)
        );
        conn.execute(AssertSqlSafe(sql)).await.map_err(|e| {
            StepFail::new(format!(
                "foreign key {fk} of {schema}.{table} is not valid: {}",
                describe_db_error(&e)
            ))
        })?;
    }
    Ok(())
}

/// Sets every sequence owned by a column of `schema` past the largest value
/// in that column (never backwards).
async fn set_sequences(conn: &mut PgConnection, schema: &str) -> Result<(), sqlx::Error> {
    // language=SQL
    let owned: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(s.relname), \
                quote_ident(n2.nspname) || '.' || quote_ident(t.relname), quote_ident(a.attname) \
         FROM pg_catalog.pg_depend d \
         JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S' \
         JOIN pg_catalog.pg_namespace n ON n.oid = s.relnamespace \
         JOIN pg_catalog.pg_class t ON t.oid = d.refobjid \
         JOIN pg_catalog.pg_namespace n2 ON n2.oid = t.relnamespace \
         JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid \
         WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass \
           AND d.deptype IN ('a', 'i') AND n2.nspname = $1",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await?;
    for (seq, table, col) in owned {
        // language=SQL
        let sql = format!(
            "SELECT pg_catalog.setval({lit}, m) FROM (SELECT max({col})::int8 AS m FROM {table}) x, {seq} s \
             WHERE m IS NOT NULL AND (m > s.last_value OR (m = s.last_value AND NOT s.is_called))",
            lit = crate::copy::ddl::lit(&seq),
        );
        sqlx::query(AssertSqlSafe(sql)).execute(&mut *conn).await?;
    }
    Ok(())
}
