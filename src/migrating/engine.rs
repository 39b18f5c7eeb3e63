//! The engine: reads the state of every schema, plans, and migrates the
//! shared schema and then the tenants, concurrently, with per-schema locks.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

use crate::config::{Settings, TransactionMode, mask_url};
use crate::db::{self, LockMode};
use crate::error::{Error, Result};
use crate::events::{Event, EventSink, OutcomeState, Phase, SchemaOutcome, StopReason};
use crate::ledger::{self, Ledger, LedgerFault, LedgerSender, Record, RunTotals};
use crate::migration::{Migration, MigrationSet, split_statements};
use crate::state::{Goal, SchemaState, SchemaStatus};
use crate::tenants::{self, TenantList};

/// Above this many schemas, histories are read over several connections.
const PARALLEL_READ_ABOVE: usize = 1000;

/// Connections used to read histories when there are many schemas.
const READ_CONNECTIONS: usize = 3;

/// Which schemas a command looks at.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Include the shared schema.
    pub shared: bool,
    /// Include the tenants.
    pub tenants: bool,
    /// `--tenant` names (replace the configured source when not empty).
    pub tenant_names: Vec<String>,
    /// `--exclude` names.
    pub exclude: Vec<String>,
}

impl Selection {
    /// The shared schema and every tenant.
    pub fn all() -> Self {
        Selection {
            shared: true,
            tenants: true,
            ..Default::default()
        }
    }
}

/// Options of `migrate` beyond the selection and the settings.
#[derive(Debug, Clone, Default)]
pub struct MigrateOptions {
    /// Which schemas.
    pub selection: Selection,
    /// Migrate this many tenants first; go on only if all of them succeed.
    pub canary: usize,
    /// Only plan.
    pub dry_run: bool,
    /// Where each schema goes: head, a target version, or back.
    pub goal: Goal,
    /// The command line, recorded in the ledger.
    pub args: Vec<String>,
}

/// The state of the shared schema and of every selected tenant.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// The shared schema, when selected.
    pub shared: Option<SchemaStatus>,
    /// Every selected tenant, in source order, invalid names included.
    pub tenants: Vec<SchemaStatus>,
    /// Where the tenant list came from.
    pub source: Option<String>,
    /// Highest version of the shared set.
    pub shared_head: Option<i64>,
    /// Highest version of the tenant set.
    pub tenant_head: Option<i64>,
    /// What the plan is for: each schema's `pending` lists the versions
    /// this goal runs there (to revert, newest first, for a rollback).
    pub goal: Goal,
}

impl StatusReport {
    /// True when every selected schema is up to date.
    pub fn all_up_to_date(&self) -> bool {
        self.shared
            .iter()
            .chain(&self.tenants)
            .all(|s| s.state == SchemaState::UpToDate)
    }

    /// Tenants grouped by state, worst first, names in source order.
    pub fn tenants_by_state(&self) -> BTreeMap<SchemaState, Vec<&SchemaStatus>> {
        let mut m: BTreeMap<SchemaState, Vec<&SchemaStatus>> = BTreeMap::new();
        for t in &self.tenants {
            m.entry(t.state).or_default().push(t);
        }
        m
    }

    /// Tenants with work, grouped by their pending versions
    /// ("480 tenants: 9, 10").
    pub fn plan_groups(&self) -> Vec<(Vec<i64>, Vec<&str>)> {
        let mut m: BTreeMap<Vec<i64>, Vec<&str>> = BTreeMap::new();
        for t in &self.tenants {
            let work = t.state == SchemaState::Behind
                || (t.state == SchemaState::Missing && !t.pending.is_empty());
            if work {
                m.entry(t.pending.clone()).or_default().push(&t.schema);
            }
        }
        let mut v: Vec<_> = m.into_iter().collect();
        v.sort_by_key(|(_, names)| std::cmp::Reverse(names.len()));
        v
    }
}

/// What a `migrate` run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The run's id in the ledger (none for a dry run).
    pub run_id: Option<i64>,
    /// True when nothing was changed because `--dry-run` was given.
    pub dry_run: bool,
    /// Where the run took each schema (forward or back).
    pub goal: Goal,
    /// The plan the run started from (left out of the JSON summary, which
    /// would otherwise repeat every tenant; `status --format json` has it).
    #[serde(skip)]
    pub plan: StatusReport,
    /// Tenants selected for the run.
    pub tenants_selected: usize,
    /// The shared schema's outcome, when it had work or was refused.
    pub shared: Option<SchemaOutcome>,
    /// Outcomes of the tenants that had work or were refused.
    pub tenants: Vec<SchemaOutcome>,
    /// Tenants already up to date at planning time.
    pub tenants_up_to_date: usize,
    /// Tenants with work that were never started.
    pub not_reached: Vec<String>,
    /// Why the run stopped early, if it did.
    pub stopped: Option<StopReason>,
    /// Wall time of the run.
    pub duration_ms: u64,
    /// What the run ledger could not record, if anything (the report is
    /// still the whole truth about the run).
    pub ledger_error: Option<LedgerFault>,
}

impl RunReport {
    /// Failed or refused schemas (shared first).
    pub fn failures(&self) -> impl Iterator<Item = &SchemaOutcome> {
        self.shared
            .iter()
            .chain(&self.tenants)
            .filter(|o| o.state.is_failure())
    }

    /// The run's totals as the ledger records them: a schema stopped by
    /// Ctrl-C or SIGTERM is stopped, not failed.
    pub fn totals(&self) -> RunTotals {
        let total = self.plan.tenants.len() as i64 + self.plan.shared.is_some() as i64;
        let stopped = self
            .failures()
            .filter(|o| o.state == OutcomeState::Stopped)
            .count() as i64;
        let failed = self.failures().count() as i64 - stopped;
        let skipped = self.not_reached.len() as i64;
        RunTotals {
            total,
            ok: total - failed - stopped - skipped,
            failed,
            skipped,
            stopped,
        }
    }

    /// True when every selected schema ended at head.
    pub fn is_success(&self) -> bool {
        self.failures().next().is_none() && self.not_reached.is_empty() && self.stopped.is_none()
    }

    /// Tenants migrated by this run.
    pub fn tenants_migrated(&self) -> usize {
        self.tenants
            .iter()
            .filter(|o| o.state == OutcomeState::Succeeded)
            .count()
    }
}

/// The engine: settings, migration sets, connection options and a sink.
pub struct Engine {
    /// Resolved settings.
    pub(crate) settings: Settings,
    /// How to connect.
    pub(crate) connect: PgConnectOptions,
    /// The URL with its password masked, for messages.
    pub(crate) url_masked: String,
    /// Shared migrations (empty when the selection has no shared schema).
    pub(crate) shared_set: Arc<MigrationSet>,
    /// Tenant migrations (empty when the selection has no tenants).
    pub(crate) tenant_set: Arc<MigrationSet>,
    /// Where events go.
    pub(crate) sink: Arc<dyn EventSink>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("url", &self.url_masked)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Builds an engine: reads the migration folders the selection needs
    /// and parses the database URL (no connection yet).
    pub fn new(
        settings: Settings,
        selection: &Selection,
        sink: Arc<dyn EventSink>,
    ) -> Result<Engine> {
        let url = settings.database_url()?.to_string();
        let url_masked = mask_url(&url);
        let connect = PgConnectOptions::from_str(&url)
            .map_err(|e| Error::Config {
                message: format!("database URL {url_masked} is not usable: {e}"),
            })?
            .application_name("tenantmig")
            // A long migration is expected, not a warning; tenantmig reports
            // durations itself (events, ledger, history's execution_time).
            .disable_statement_logging();
        let shared_set = if selection.shared {
            MigrationSet::load(&settings.shared_migrations)?
        } else {
            MigrationSet::default()
        };
        let tenant_set = if selection.tenants {
            MigrationSet::load(&settings.tenant_migrations)?
        } else {
            MigrationSet::default()
        };
        Ok(Engine {
            settings,
            connect,
            url_masked,
            shared_set: Arc::new(shared_set),
            tenant_set: Arc::new(tenant_set),
            sink,
        })
    }

    /// The settings in use.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The shared migration set.
    pub fn shared_set(&self) -> &MigrationSet {
        &self.shared_set
    }

    /// The tenant migration set.
    pub fn tenant_set(&self) -> &MigrationSet {
        &self.tenant_set
    }

    /// Opens a connection, with an error naming the masked URL.
    pub async fn connection(&self) -> Result<PgConnection> {
        ledger::connect(&self.connect, &self.url_masked).await
    }

    /// The tenant list for a selection.
    pub async fn tenants(&self, selection: &Selection) -> Result<TenantList> {
        let mut conn = self.connection().await?;
        tenants::resolve(
            &mut conn,
            &self.settings,
            &selection.tenant_names,
            &selection.exclude,
        )
        .await
    }

    /// Reads the state of the selected schemas in a few catalog queries.
    pub async fn status(&self, selection: &Selection) -> Result<StatusReport> {
        let mut conn = self.connection().await?;
        self.status_with(&mut conn, selection).await
    }

    pub(crate) async fn status_with(
        &self,
        conn: &mut PgConnection,
        selection: &Selection,
    ) -> Result<StatusReport> {
        let s = &self.settings;
        let mut report = StatusReport {
            shared: None,
            tenants: Vec::new(),
            source: None,
            shared_head: self.shared_set.head(),
            tenant_head: self.tenant_set.head(),
            goal: Goal::Head,
        };
        if selection.shared {
            let exists = db::existing_schemas(
                conn,
                std::slice::from_ref(&s.shared_schema),
                &s.history_table,
            )
            .await
            .map_err(Error::db("reading the shared schema's state"))?;
            report.shared = Some(match exists.get(&s.shared_schema) {
                None => SchemaStatus::missing(&s.shared_schema, &self.shared_set),
                Some(has) => db::read_statuses(
                    conn,
                    &[(s.shared_schema.clone(), *has)],
                    &s.history_table,
                    &self.shared_set,
                )
                .await
                .map_err(Error::db("reading the shared schema's history"))?
                .remove(0),
            });
        }
        if selection.tenants {
            let list =
                tenants::resolve(conn, s, &selection.tenant_names, &selection.exclude).await?;
            report.source = Some(list.source.describe());
            let exists = db::existing_schemas(conn, &list.names, &s.history_table)
                .await
                .map_err(Error::db("listing tenant schemas"))?;
            let present: Vec<(String, bool)> = list
                .names
                .iter()
                .filter_map(|n| exists.get(n).map(|h| (n.clone(), *h)))
                .collect();
            let read = self.read_many(conn, &present).await?;
            let mut read: std::collections::HashMap<String, SchemaStatus> =
                read.into_iter().map(|st| (st.schema.clone(), st)).collect();
            for inv in list.invalid {
                report
                    .tenants
                    .push(SchemaStatus::invalid(inv.name.clone(), inv.to_string()));
            }
            for n in &list.names {
                report.tenants.push(
                    read.remove(n)
                        .unwrap_or_else(|| SchemaStatus::missing(n.clone(), &self.tenant_set)),
                );
            }
        }
        // Dirty schemas: add what the ledger knows of the failure.
        let dirty: Vec<String> = report
            .shared
            .iter()
            .chain(&report.tenants)
            .filter(|t| t.state == SchemaState::Failed)
            .map(|t| t.schema.clone())
            .collect();
        if !dirty.is_empty() {
            let known = ledger::last_failures(conn, &s.control_schema, &dirty).await?;
            for st in report.shared.iter_mut().chain(report.tenants.iter_mut()) {
                if let Some((run, _, err, stmt)) = known.get(&st.schema) {
                    let mut d = format!("run {run}");
                    if let Some(e) = err {
                        d.push_str(&format!(": {e}"));
                    }
                    if let Some(sql) = stmt {
                        d.push_str(&format!("; failed statement: {sql}"));
                    }
                    st.detail = Some(d);
                }
            }
        }
        Ok(report)
    }

    /// Reads many tenant histories: on the given connection when there are
    /// few, else over a few extra connections at once (the cost of each
    /// catalog query is mostly planning, which runs on the server's cores).
    async fn read_many(
        &self,
        conn: &mut PgConnection,
        present: &[(String, bool)],
    ) -> Result<Vec<SchemaStatus>> {
        let table = &self.settings.history_table;
        let doing = "reading tenant histories";
        if present.len() <= PARALLEL_READ_ABOVE {
            return db::read_statuses(conn, present, table, &self.tenant_set)
                .await
                .map_err(Error::db(doing));
        }
        let per = present.len().div_ceil(READ_CONNECTIONS);
        let reads = present.chunks(per).map(|part| async move {
            let mut c = self.connection().await?;
            let r = db::read_statuses(&mut c, part, table, &self.tenant_set)
                .await
                .map_err(Error::db(doing));
            let _ = c.close().await;
            r
        });
        let parts = futures::future::try_join_all(reads).await?;
        Ok(parts.into_iter().flatten().collect())
    }

    /// Creates or upgrades the control schema (ledger and registry), under
    /// its own advisory lock.
    pub async fn ensure_control(&self, conn: &mut PgConnection) -> Result<()> {
        let s = &self.settings;
        let set = ledger::control_migrations();
        let schema = s.control_schema.as_str();
        let doing = |what: &str| format!("{what} the control schema {schema}");
        // Current already: nothing to create, so nothing that needs CREATE
        // on the database (a role without it can run every command once the
        // control schema exists and is current).
        let found = db::existing_schemas(conn, &[schema.to_string()], &s.history_table)
            .await
            .map_err(Error::db(doing("looking up")))?;
        if found.get(schema) == Some(&true) {
            let st = db::read_status(conn, schema, &s.history_table, &set)
                .await
                .map_err(Error::db(doing("reading")))?;
            if st.state == SchemaState::UpToDate {
                return Ok(());
            }
        }
        match db::acquire(conn, schema, LockMode::Exclusive, s.lock_wait, None).await {
            Ok(()) => {}
            Err(db::LockFailure::Busy(message)) => return Err(Error::Usage { message }),
            Err(db::LockFailure::Db(e)) => return Err(Error::db(doing("locking"))(e)),
        }
        let result = async {
            db::create_schema(conn, schema).await?;
            db::ensure_history_table(conn, schema, &s.history_table).await?;
            db::set_session(conn, schema, schema, s.lock_timeout, Duration::ZERO).await?;
            let st = db::read_status(conn, schema, &s.history_table, &set).await?;
            let pending: Vec<&Migration> = st
                .pending
                .iter()
                .filter_map(|v| set.index_of(*v).map(|i| &set.migrations[i]))
                .collect();
            if !pending.is_empty() {
                let unit = Unit {
                    schema,
                    table: &s.history_table,
                    session: None,
                    dir: Direction::Apply,
                };
                run_group(conn, &unit, &pending)
                    .await
                    .map_err(|e| e.source)?;
            }
            Ok::<_, sqlx::Error>(st)
        }
        .await;
        let _ = db::reset_session(conn).await;
        let _ = db::unlock(conn, schema, LockMode::Exclusive).await;
        let st = result.map_err(|e| {
            if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42501") {
                Error::Usage {
                    message: format!(
                        "the control schema {schema} is missing or older than this tenantmig, and this role may not create or upgrade it ({}): run tenantmig once as a role that may (the database's owner, or one with CREATE on the database); after that, this role needs only the privileges listed under 'Least privileges' in the guide",
                        describe_db_error(&e)
                    ),
                }
            } else {
                Error::db(doing("creating or upgrading"))(e)
            }
        })?;
        if st.state.is_refused() {
            return Err(Error::Usage {
                message: format!(
                    "the control schema {schema} has a history this tenantmig does not know ({}); is an older tenantmig binary in use?",
                    st.problems
                        .iter()
                        .map(|p| p.describe(&set))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            });
        }
        Ok(())
    }

    /// The plan of a migrate run, without changing anything.
    pub async fn plan(&self, selection: &Selection) -> Result<StatusReport> {
        self.plan_for(selection, Goal::Head).await
    }

    /// The plan of a run towards `goal`: each schema's `pending` holds the
    /// versions it would run, in order. A rollback that needs a missing
    /// `.down.sql` is refused here, naming the versions.
    pub async fn plan_for(&self, selection: &Selection, goal: Goal) -> Result<StatusReport> {
        self.check_goal(goal)?;
        let mut conn = self.connection().await?;
        let mut plan = self.status_with(&mut conn, selection).await?;
        self.aim(&mut plan, goal)?;
        Ok(plan)
    }

    /// The migrations a plan would apply, each once: the shared schema's,
    /// then every version some tenant lacks, in version order.
    pub fn pending_migrations<'a>(&'a self, plan: &StatusReport) -> Vec<&'a Migration> {
        let (mut shared, tenant) = self.pending_by_set(plan);
        shared.extend(tenant);
        shared
    }

    /// As [`Engine::pending_migrations`], the shared set's and the tenant
    /// set's apart (lint rules differ between them).
    pub fn pending_by_set<'a>(
        &'a self,
        plan: &StatusReport,
    ) -> (Vec<&'a Migration>, Vec<&'a Migration>) {
        let mut tenant: std::collections::BTreeSet<i64> = Default::default();
        for t in &plan.tenants {
            if !t.state.is_refused() {
                tenant.extend(t.pending.iter().copied());
            }
        }
        let shared = plan
            .shared
            .iter()
            .filter(|s| !s.state.is_refused())
            .flat_map(|s| s.pending.iter())
            .filter_map(|v| {
                self.shared_set
                    .index_of(*v)
                    .map(|i| &self.shared_set.migrations[i])
            });
        let tenant = tenant.into_iter().filter_map(|v| {
            self.tenant_set
                .index_of(v)
                .map(|i| &self.tenant_set.migrations[i])
        });
        (shared.collect(), tenant.collect())
    }

    /// Lints what a plan is about to apply, as the `lint` setting says:
    /// each finding as a warning event, or a refusal before anything runs.
    #[cfg(not(feature = "lint"))]
    fn lint_plan(&self, _: &StatusReport) -> Result<()> {
        if self.settings.lint == crate::config::LintPolicy::Deny {
            return Err(Error::Usage {
                message: "the lint setting is deny, but this tenantmig was built without the lint feature; rebuild with default features, or set lint = \"off\"".into(),
            });
        }
        Ok(())
    }

    /// Lints the migrations a plan would apply: the shared ones as shared
    /// migrations, the tenant ones as tenant migrations.
    #[cfg(feature = "lint")]
    pub fn lint_pending(&self, plan: &StatusReport) -> Vec<crate::lint::Finding> {
        use crate::lint::{Scope, lint_migrations};
        let (shared, tenant) = self.pending_by_set(plan);
        let mut findings = lint_migrations(shared, Scope::Shared);
        findings.extend(lint_migrations(
            tenant,
            Scope::Tenant {
                shared_schema: &self.settings.shared_schema,
            },
        ));
        findings
    }

    #[cfg(feature = "lint")]
    fn lint_plan(&self, plan: &StatusReport) -> Result<()> {
        use crate::config::LintPolicy;
        let policy = self.settings.lint;
        if policy == LintPolicy::Off || plan.goal.is_revert() || plan.goal.is_stamp() {
            return Ok(());
        }
        let findings = self.lint_pending(plan);
        if findings.is_empty() {
            return Ok(());
        }
        if policy == LintPolicy::Deny {
            let list: Vec<String> = findings
                .iter()
                .map(|f| format!("  {}", f.describe()))
                .collect();
            return Err(Error::Usage {
                message: format!(
                    "lint found {} problem(s) in the migrations about to run, and the lint setting is deny; nothing was changed:\n{}\nfix them (each line names the safer form), or set lint = \"warn\" (TENANTMIG_LINT=warn) to run anyway",
                    findings.len(),
                    list.join("\n")
                ),
            });
        }
        for f in findings {
            self.sink.emit(Event::Warning {
                message: format!("lint: {}", f.describe()),
            });
        }
        Ok(())
    }

    /// Refuses a target version that no selected set has (a typo would
    /// otherwise run everything, or nothing).
    fn check_goal(&self, goal: Goal) -> Result<()> {
        let version = match goal {
            Goal::Head
            | Goal::Revert {
                target: Some(0), ..
            } => return Ok(()),
            Goal::Revert {
                target: None,
                steps,
            } => {
                return if steps == Some(0) {
                    Err(Error::Usage {
                        message: "--steps must be at least 1".into(),
                    })
                } else {
                    Ok(())
                };
            }
            Goal::UpTo { version }
            | Goal::Stamp { version }
            | Goal::Revert {
                target: Some(version),
                ..
            } => version,
        };
        let sets = [&self.shared_set, &self.tenant_set];
        if sets.iter().any(|set| set.index_of(version).is_some()) {
            return Ok(());
        }
        let heads: Vec<String> = [("shared", &self.shared_set), ("tenant", &self.tenant_set)]
            .iter()
            .filter_map(|(name, set)| {
                set.head()
                    .map(|h| format!("{name} head {}", set.fmt_version(h)))
            })
            .collect();
        Err(Error::Usage {
            message: format!(
                "version {version} is not in the selected migration sets ({}); `tenantmig history` lists them{}",
                if heads.is_empty() {
                    "both are empty".to_string()
                } else {
                    heads.join(", ")
                },
                if goal.is_revert() {
                    ", and --target 0 undoes everything"
                } else {
                    ""
                }
            ),
        })
    }

    /// Refuses a plan that would run a transactional file holding `COMMIT`,
    /// `BEGIN` and the like ([`Migration::check_transaction_control`]):
    /// the up files to apply, or the `.down.sql` files of a rollback. A stamp
    /// runs no SQL.
    fn refuse_transaction_control(&self, plan: &StatusReport) -> Result<()> {
        if plan.goal.is_stamp() {
            return Ok(());
        }
        let down = plan.goal.is_revert();
        let mut seen = std::collections::BTreeSet::new();
        for (st, set, name) in self.with_sets(plan) {
            if st.state.is_refused() {
                continue;
            }
            for v in &st.pending {
                if let Some(i) = set.index_of(*v)
                    && seen.insert((name, *v))
                {
                    set.migrations[i].check_transaction_control(down)?;
                }
            }
        }
        Ok(())
    }

    /// Every schema of a plan with its migration set and the set's name,
    /// the shared schema first.
    fn with_sets<'a>(
        &'a self,
        plan: &'a StatusReport,
    ) -> impl Iterator<Item = (&'a SchemaStatus, &'a MigrationSet, &'static str)> {
        let shared = plan
            .shared
            .iter()
            .map(|st| (st, &*self.shared_set, "shared"));
        let tenants = plan
            .tenants
            .iter()
            .map(|st| (st, &*self.tenant_set, "tenant"));
        shared.chain(tenants)
    }

    /// Applies `goal` to every schema of a plan and, for a rollback, checks
    /// that every version to undo has a `.down.sql`.
    fn aim(&self, plan: &mut StatusReport, goal: Goal) -> Result<()> {
        plan.goal = goal;
        if let Some(st) = plan.shared.as_mut() {
            goal.apply(st, &self.shared_set);
        }
        for st in &mut plan.tenants {
            goal.apply(st, &self.tenant_set);
        }
        self.refuse_transaction_control(plan)?;
        if !goal.is_revert() {
            return Ok(());
        }
        let mut missing = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (st, set, name) in self.with_sets(plan) {
            for v in &st.pending {
                if let Some(i) = set.index_of(*v)
                    && !set.migrations[i].is_reversible()
                    && seen.insert((name, *v))
                {
                    missing.push(format!(
                        "{name} {} ({})",
                        set.fmt_version(*v),
                        set.migrations[i].path.display()
                    ));
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::Usage {
            message: format!(
                "cannot roll back: {} ha{} no .down.sql; nothing was changed. Write the down files (a reversible migration is a <version>_<description>.up.sql/.down.sql pair), or stop above {} (a higher --target, or fewer --steps)",
                missing.join(", "),
                if missing.len() == 1 { "s" } else { "ve" },
                if missing.len() == 1 { "it" } else { "them" }
            ),
        })
    }

    /// Migrates: the shared schema first, then every tenant with work.
    ///
    /// `shutdown` resolving (Ctrl-C in the CLI) lets in-flight migrations
    /// finish and starts nothing new.
    pub async fn migrate(
        &self,
        opts: &MigrateOptions,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<RunReport> {
        let started = Instant::now();
        let s = &self.settings;
        self.check_goal(opts.goal)?;
        let mut control = self.connection().await?;
        // Read-only first: a bad tenant query or an unreadable catalog stops
        // the command before anything (even the control schema) is created.
        let mut plan = self.status_with(&mut control, &opts.selection).await?;
        self.aim(&mut plan, opts.goal)?;
        if !opts.dry_run {
            self.lint_plan(&plan)?;
        }
        let mut report = RunReport {
            run_id: None,
            dry_run: opts.dry_run,
            goal: opts.goal,
            tenants_selected: plan.tenants.len(),
            plan,
            shared: None,
            tenants: Vec::new(),
            tenants_up_to_date: 0,
            not_reached: Vec::new(),
            stopped: None,
            duration_ms: 0,
            ledger_error: None,
        };
        report.tenants_up_to_date = report
            .plan
            .tenants
            .iter()
            .filter(|t| t.state == SchemaState::UpToDate)
            .count();
        if opts.dry_run {
            report.duration_ms = started.elapsed().as_millis() as u64;
            return Ok(report);
        }

        self.ensure_control(&mut control).await?;
        let (free, max) = db::free_connections(&mut control)
            .await
            .map_err(Error::db("counting the server's free connections"))?;
        let led = Ledger::start(
            control,
            &self.connect,
            &s.control_schema,
            opts.goal.command(),
            &opts.args,
            started.elapsed(),
        )
        .await?;
        led.plan(planned_totals(&report.plan));
        self.sink.emit(Event::RunStarted { run_id: led.run_id });
        report.run_id = Some(led.run_id);

        // The workers' connections carry the run's id, so that a lock they
        // hold is named with its run (see db::LockHolder).
        let cx = RunCtx::start(
            s.clone(),
            self.connect
                .clone()
                .application_name(&db::run_application_name(led.run_id)),
            self.sink.clone(),
            led.sender(),
            shutdown,
            opts.goal,
            MayCreate {
                missing_at_plan: report
                    .plan
                    .shared
                    .iter()
                    .chain(&report.plan.tenants)
                    .filter(|t| t.state == SchemaState::Missing)
                    .map(|t| t.schema.clone())
                    .collect(),
                recheck_source: opts.selection.tenant_names.is_empty(),
            },
        );

        if opts.goal.is_revert() {
            // Backwards: tenants first (their objects may depend on the
            // shared schema's), and the shared schema only when every
            // tenant got there.
            self.tenant_phase(&cx, &mut report, 0, true, (free, max))
                .await;
            let tenants_ok = report.failures().next().is_none()
                && report.not_reached.is_empty()
                && !cx.stopped();
            if tenants_ok {
                self.shared_phase(&cx, &mut report).await;
            } else if let Some(st) = &report.plan.shared
                && !st.pending.is_empty()
            {
                report.not_reached.push(st.schema.clone());
            }
        } else {
            // The shared phase completes before any tenant starts; a
            // failure stops the run.
            let shared_ok = self.shared_phase(&cx, &mut report).await;
            self.tenant_phase(&cx, &mut report, opts.canary, shared_ok, (free, max))
                .await;
        }
        report.stopped = *cx.stop_reason.lock().expect("stop reason lock");
        report.duration_ms = started.elapsed().as_millis() as u64;

        let totals = report.totals();
        let outcome = if report.stopped == Some(StopReason::Shutdown) {
            "stopped"
        } else if report.is_success() {
            "succeeded"
        } else {
            "failed"
        };
        drop(cx);
        // The report is the run's truth; a ledger that cannot be written is
        // said in it, never a reason to lose it.
        report.ledger_error = led
            .finish(outcome, &totals, report.stopped.map(|r| r.describe()))
            .await
            .err();
        Ok(report)
    }

    /// Runs the shared schema's work, if any. False when it failed or was
    /// refused (the run is halted then).
    async fn shared_phase(&self, cx: &Arc<RunCtx>, report: &mut RunReport) -> bool {
        let mut shared_ok = true;
        if let Some(st) = report.plan.shared.clone() {
            let outcome = if st.state.is_refused() {
                Some(refused(&st, Phase::Shared, &self.shared_set))
            } else if st.state == SchemaState::UpToDate {
                None
            } else {
                self.sink.emit(Event::PhaseStarted {
                    phase: Phase::Shared,
                    schemas: 1,
                    jobs: 1,
                });
                let out = run_pool(
                    cx.clone(),
                    self.shared_set.clone(),
                    Phase::Shared,
                    vec![st.schema.clone()],
                    1,
                )
                .await;
                // Not started at all (the server went away, or a signal
                // came first): not reached, and no tenant may start.
                if !out.not_reached.is_empty() {
                    shared_ok = false;
                    report.not_reached.extend(out.not_reached);
                }
                out.done.into_iter().next()
            };
            if let Some(o) = outcome {
                if o.state.is_failure() {
                    shared_ok = false;
                }
                if o.state == OutcomeState::Refused {
                    cx.record_finished(&o);
                    self.sink.emit(Event::SchemaFinished { outcome: o.clone() });
                }
                report.shared = Some(o);
            }
            if !shared_ok {
                cx.halt(StopReason::SharedFailed);
            }
        }
        shared_ok
    }

    /// Runs the tenants' work from one queue, canaries first; with
    /// `go = false` (the shared schema failed) the tenants with work are
    /// only reported as not reached.
    /// `connections` is the server's (free, max_connections) at the start.
    async fn tenant_phase(
        &self,
        cx: &Arc<RunCtx>,
        report: &mut RunReport,
        canary: usize,
        go: bool,
        connections: (i64, i64),
    ) {
        let s = &self.settings;
        let mut work: Vec<String> = Vec::new();
        for t in &report.plan.tenants {
            if t.state.is_refused() {
                let o = refused(t, Phase::Tenant, &self.tenant_set);
                cx.record_finished(&o);
                self.sink.emit(Event::SchemaFinished { outcome: o.clone() });
                report.tenants.push(o);
            } else if t.state == SchemaState::Behind
                || (t.state == SchemaState::Missing && !cx.goal.is_revert())
            {
                work.push(t.schema.clone());
            }
        }
        if go && !work.is_empty() && !cx.stopped() {
            // One connection is kept spare; at least one worker always tries.
            let (free, max) = connections;
            let cap = (free - 1).max(1) as usize;
            let mut jobs = s.jobs.min(work.len());
            if jobs > cap {
                self.sink.emit(Event::Warning {
                    message: format!(
                        "--jobs {} exceeds the {cap} connections free for this database and role (server max_connections {max}, database and role connection limits); using {cap}",
                        s.jobs
                    ),
                });
                jobs = cap;
            }
            let (canaries, rest) = work.split_at(canary.min(work.len()));
            self.sink.emit(Event::PhaseStarted {
                phase: Phase::Tenant,
                schemas: work.len(),
                jobs,
            });
            if !canaries.is_empty() {
                let out = run_pool(
                    cx.clone(),
                    self.tenant_set.clone(),
                    Phase::Tenant,
                    canaries.to_vec(),
                    jobs.min(canaries.len()),
                )
                .await;
                let all_ok =
                    out.done.iter().all(|o| !o.state.is_failure()) && out.not_reached.is_empty();
                report.tenants.extend(out.done);
                report.not_reached.extend(out.not_reached);
                if !all_ok {
                    cx.halt(StopReason::CanaryFailed);
                }
            }
            if cx.stopped() {
                report.not_reached.extend(rest.iter().cloned());
            } else {
                let out = run_pool(
                    cx.clone(),
                    self.tenant_set.clone(),
                    Phase::Tenant,
                    rest.to_vec(),
                    jobs,
                )
                .await;
                report.tenants.extend(out.done);
                report.not_reached.extend(out.not_reached);
            }
        } else if !work.is_empty() {
            report.not_reached.extend(work);
        }
    }
}

/// What a plan counts before anything runs: every selected schema, and
/// those with nothing to do (neither refused nor with work) as ok.
fn planned_totals(plan: &StatusReport) -> RunTotals {
    let revert = plan.goal.is_revert();
    let shared_ok = plan
        .shared
        .iter()
        .filter(|st| st.state == SchemaState::UpToDate)
        .count();
    let tenants_ok = plan
        .tenants
        .iter()
        // As in `tenant_phase`: refused, behind, or missing (unless going
        // back) means not done yet.
        .filter(|t| {
            !t.state.is_refused()
                && t.state != SchemaState::Behind
                && (revert || t.state != SchemaState::Missing)
        })
        .count();
    let total = (plan.tenants.len() + plan.shared.iter().count()) as i64;
    let ok = (shared_ok + tenants_ok) as i64;
    RunTotals {
        total,
        ok,
        failed: 0,
        skipped: total - ok,
        stopped: 0,
    }
}

fn refused(st: &SchemaStatus, phase: Phase, set: &MigrationSet) -> SchemaOutcome {
    let mut o = SchemaOutcome::new(&st.schema, phase);
    o.state = OutcomeState::Refused;
    o.from_version = st.applied_version;
    o.to_version = st.applied_version;
    let mut msg = if st.problems.is_empty() {
        st.detail
            .clone()
            .unwrap_or_else(|| st.state.label().to_string())
    } else {
        st.problems
            .iter()
            .map(|p| p.describe(set))
            .collect::<Vec<_>>()
            .join("; ")
    };
    if st.state == SchemaState::Failed
        && let Some(d) = &st.detail
    {
        msg.push_str(&format!(" (last failure: {d})"));
    }
    o.error = Some(msg);
    o
}

/// What the workers of a run share.
pub(crate) struct RunCtx {
    /// Settings of the run.
    pub(crate) settings: Settings,
    /// How workers connect.
    pub(crate) connect: PgConnectOptions,
    /// Where events go.
    pub(crate) sink: Arc<dyn EventSink>,
    /// Set when no new schema may start.
    pub(crate) stop: AtomicBool,
    /// Set on Ctrl-C: also stops between migrations of one schema.
    pub(crate) shutdown: AtomicBool,
    /// Failed schemas so far.
    pub(crate) failures: AtomicUsize,
    /// Failures tolerated before stopping.
    pub(crate) max_failures: usize,
    /// The first reason the run stopped.
    pub(crate) stop_reason: Mutex<Option<StopReason>>,
    /// Queues ledger records.
    pub(crate) records: LedgerSender,
    /// Forward (to head or a target) or back.
    pub(crate) goal: Goal,
    /// Which schemas the run may create.
    pub(crate) may_create: MayCreate,
}

/// Which schemas a run may create: never one that existed when it planned
/// and is gone when its turn comes (it vanished: someone dropped it).
#[derive(Debug, Default)]
pub(crate) struct MayCreate {
    /// Schemas that did not exist when the run planned.
    pub(crate) missing_at_plan: HashSet<String>,
    /// Whether such a schema must still be listed by the configured tenant
    /// source (false when the tenants were named with `--tenant`).
    pub(crate) recheck_source: bool,
}

impl RunCtx {
    /// A context for a run: `shutdown` resolving sets the shutdown flag and
    /// stops new work.
    pub(crate) fn start(
        settings: Settings,
        connect: PgConnectOptions,
        sink: Arc<dyn EventSink>,
        records: LedgerSender,
        shutdown: impl Future<Output = ()> + Send + 'static,
        goal: Goal,
        may_create: MayCreate,
    ) -> Arc<RunCtx> {
        let max_failures = settings.max_failures;
        let cx = Arc::new(RunCtx {
            settings,
            connect,
            sink,
            stop: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            failures: AtomicUsize::new(0),
            max_failures,
            stop_reason: Mutex::new(None),
            records,
            goal,
            may_create,
        });
        // A weak reference: the run must not outlive its own end just
        // because nobody pressed Ctrl-C.
        let weak = Arc::downgrade(&cx);
        tokio::spawn(async move {
            shutdown.await;
            if let Some(cx) = weak.upgrade() {
                cx.shutdown.store(true, Ordering::SeqCst);
                cx.halt(StopReason::Shutdown);
            }
        });
        cx
    }

    /// Counts a failed schema and stops the run past `max_failures`.
    pub(crate) fn count_failure(&self) {
        let n = self.failures.fetch_add(1, Ordering::SeqCst) + 1;
        if n > self.max_failures {
            self.halt(StopReason::MaxFailures);
        }
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub(crate) fn halt(&self, reason: StopReason) {
        let mut r = self.stop_reason.lock().expect("stop reason lock");
        if r.is_none() {
            *r = Some(reason);
            self.sink.emit(Event::Stopping { reason });
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    pub(crate) fn record_finished(&self, o: &SchemaOutcome) {
        self.records.record(Record::finished(o));
    }
}

struct PoolOutcome {
    done: Vec<SchemaOutcome>,
    not_reached: Vec<String>,
}

/// Hands `names` to `jobs` workers from one queue; each worker holds one
/// connection for its whole life (reconnecting only after a broken one).
async fn run_pool(
    cx: Arc<RunCtx>,
    set: Arc<MigrationSet>,
    phase: Phase,
    names: Vec<String>,
    jobs: usize,
) -> PoolOutcome {
    let queue = Arc::new(Mutex::new(VecDeque::from(names)));
    let done = Arc::new(Mutex::new(Vec::new()));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..jobs.max(1) {
        let (cx, set, queue, done) = (cx.clone(), set.clone(), queue.clone(), done.clone());
        workers.spawn(async move {
            let mut conn: Option<PgConnection> = None;
            loop {
                if cx.stopped() {
                    break;
                }
                let Some(schema) = queue.lock().expect("queue lock").pop_front() else {
                    break;
                };
                if conn.is_none() {
                    match connect_retrying(&cx.connect).await {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            // The server is gone (or refuses connections):
                            // nothing ran on this schema, and no other
                            // worker will do better. Stop starting schemas.
                            queue.lock().expect("queue lock").push_front(schema);
                            cx.sink.emit(Event::Warning {
                                message: format!(
                                    "cannot connect to the database any more: {}",
                                    describe_db_error(&e)
                                ),
                            });
                            cx.halt(StopReason::ServerGone);
                            break;
                        }
                    }
                }
                cx.sink.emit(Event::SchemaStarted {
                    phase,
                    schema: schema.clone(),
                });
                cx.records.record(Record::started(&schema, phase));
                let started = Instant::now();
                let mut outcome = SchemaOutcome::new(&schema, phase);
                let mut broken = true;
                if let Some(c) = conn.as_mut() {
                    broken = migrate_schema(c, &cx, &set, phase, &schema, &mut outcome).await;
                    // The schema's lock is released: clear what else the
                    // migrations left in the session before the next tenant.
                    broken = broken || db::discard_session(c).await.is_err();
                }
                if broken && let Some(c) = conn.take() {
                    // Closing the connection makes the server drop its
                    // locks and roll back whatever it had open.
                    let _ = c.close().await;
                    // A connection lost to the server going away: find out
                    // now, before this failure counts against
                    // --max-failures, so the run stops for the right reason.
                    match connect_retrying(&cx.connect).await {
                        Ok(c) => conn = Some(c),
                        Err(_) => cx.halt(StopReason::ServerGone),
                    }
                }
                outcome.duration_ms = started.elapsed().as_millis() as u64;
                // Errors quote PostgreSQL and the migrations: nothing that
                // looks like a password leaves here unmasked (summary,
                // events, JSON, ledger).
                outcome.error = outcome.error.map(|e| crate::mask::mask_secrets(&e));
                outcome.failed_statement = outcome
                    .failed_statement
                    .map(|e| crate::mask::mask_secrets(&e));
                // Stopped and vanished schemas say nothing about the
                // migrations: they do not count against --max-failures.
                if phase == Phase::Tenant
                    && outcome.state.is_failure()
                    && !matches!(
                        outcome.state,
                        OutcomeState::Stopped | OutcomeState::Vanished
                    )
                {
                    cx.count_failure();
                }
                cx.record_finished(&outcome);
                cx.sink.emit(Event::SchemaFinished {
                    outcome: outcome.clone(),
                });
                done.lock().expect("outcome lock").push(outcome);
            }
            if let Some(c) = conn {
                let _ = c.close().await;
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let not_reached = queue.lock().expect("queue lock").drain(..).collect();
    let done = std::mem::take(&mut *done.lock().expect("outcome lock"));
    PoolOutcome { done, not_reached }
}

/// Connects, trying three times within about a second: a server that
/// refuses a connection once (a restart's first moments, a full slot) is
/// not yet gone.
async fn connect_retrying(opts: &PgConnectOptions) -> Result<PgConnection, sqlx::Error> {
    let mut pause = Duration::from_millis(200);
    let mut tries = 0;
    loop {
        match db::connect(opts).await {
            Ok(c) => return Ok(c),
            Err(e) if tries >= 2 => return Err(e),
            Err(_) => {
                tries += 1;
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
}

/// A step that failed: which migration, which statement, and why.
#[derive(Debug)]
struct StepError {
    version: Option<i64>,
    statement: Option<String>,
    source: sqlx::Error,
}

impl StepError {
    fn plain(source: sqlx::Error) -> Self {
        StepError {
            version: None,
            statement: None,
            source,
        }
    }
}

pub(crate) use crate::error::describe_db_error;

/// Migrates one schema on `conn`. Returns true when the connection must be
/// dropped (it may still hold the schema's lock or an open transaction).
pub(crate) async fn migrate_schema(
    conn: &mut PgConnection,
    cx: &RunCtx,
    set: &MigrationSet,
    phase: Phase,
    schema: &str,
    out: &mut SchemaOutcome,
) -> bool {
    let s = &cx.settings;
    match db::acquire(
        conn,
        schema,
        LockMode::Exclusive,
        s.lock_wait,
        Some(&s.control_schema),
    )
    .await
    {
        Ok(()) => {}
        Err(db::LockFailure::Busy(message)) => {
            out.error = Some(message);
            return false;
        }
        Err(db::LockFailure::Db(e)) => {
            out.error = Some(format!(
                "while locking schema {schema}: {}",
                describe_db_error(&e)
            ));
            return true;
        }
    }
    let result = migrate_locked(conn, cx, set, phase, schema, out).await;
    if let Err(e) = result {
        out.state = OutcomeState::Failed;
        let what = match e.version {
            Some(v) => {
                let desc = set
                    .index_of(v)
                    .map(|i| set.migrations[i].description.as_str())
                    .unwrap_or("");
                let (verb, prep) = if cx.goal.is_revert() {
                    ("reverting", "in")
                } else {
                    ("applying", "to")
                };
                format!(
                    "while {verb} {} ({desc}) {prep} schema {schema}",
                    set.fmt_version(v)
                )
            }
            None => format!("while migrating schema {schema}"),
        };
        let mut why = describe_db_error(&e.source);
        if db::is_lock_timeout(&e.source) {
            // Who made it wait: whoever still holds locks on the tables it
            // touches (the tenant's own, or the shared schema's).
            why.push_str(&format!(
                " after {} tries of lock_timeout {}",
                out.attempts.max(1),
                humantime::format_duration(s.lock_timeout)
            ));
            why.push_str(
                &db::relation_lock_holders_in(conn, &[schema, s.shared_schema.as_str()]).await,
            );
        }
        out.error = Some(format!("{what}: {why}"));
        out.failed_version = e.version;
        out.failed_statement = e.statement;
    }
    // Always give the schema back: reset the session (role, session
    // authorization, settings), release the lock. If that fails, or the
    // session still runs as someone other than the user who logged in, the
    // caller drops the connection, which releases the lock too.
    let cleanup = async {
        db::reset_session(conn).await?;
        let unlocked = db::unlock(conn, schema, LockMode::Exclusive).await?;
        Ok::<_, sqlx::Error>(unlocked && db::runs_as_session_user(conn).await?)
    }
    .await;
    !matches!(cleanup, Ok(true))
}

async fn migrate_locked(
    conn: &mut PgConnection,
    cx: &RunCtx,
    set: &MigrationSet,
    phase: Phase,
    schema: &str,
    out: &mut SchemaOutcome,
) -> Result<(), StepError> {
    let s = &cx.settings;
    let revert = cx.goal.is_revert();
    if !db::schema_exists(conn, schema)
        .await
        .map_err(StepError::plain)?
    {
        if revert {
            out.state = OutcomeState::UpToDate;
            return Ok(());
        }
        // Never bring back a schema that someone dropped while the run
        // went on: only a schema missing at planning may be created, and
        // only while its tenant source still lists it.
        if !cx.may_create.missing_at_plan.contains(schema) {
            out.state = OutcomeState::Vanished;
            out.error = Some(format!(
                "schema {schema} vanished during the run: it existed when the run planned and was dropped before its turn; it was not re-created"
            ));
            return Ok(());
        }
        if phase == Phase::Tenant
            && cx.may_create.recheck_source
            && !crate::tenants::still_listed(conn, s, schema)
                .await
                .map_err(StepError::plain)?
        {
            out.state = OutcomeState::Vanished;
            out.error = Some(format!(
                "tenant {schema} was removed from the tenant source during the run; its schema was not created"
            ));
            return Ok(());
        }
        if cx.goal.is_stamp() {
            out.state = OutcomeState::Failed;
            out.error = Some(format!(
                "schema {schema} does not exist; stamp adopts existing schemas (create it with `tenantmig migrate` instead)"
            ));
            return Ok(());
        }
        if phase == Phase::Tenant && !s.create_missing_schemas {
            out.state = OutcomeState::Failed;
            out.error = Some(format!(
                "schema {schema} does not exist and create_missing_schemas is false; create it or set create_missing_schemas = true"
            ));
            return Ok(());
        }
        db::create_schema(conn, schema)
            .await
            .map_err(StepError::plain)?;
        out.created = true;
    }
    // Sent again before each migration file and each history write: what
    // one file changes in the session never reaches the next one.
    let session = db::session_sql(
        schema,
        &s.shared_schema,
        s.lock_timeout,
        s.statement_timeout,
    );
    db::execute_script(conn, &session)
        .await
        .map_err(StepError::plain)?;
    db::ensure_history_table(conn, schema, &s.history_table)
        .await
        .map_err(StepError::plain)?;
    // Read again under the lock: the bulk read may be stale by now.
    let mut st = db::read_status(conn, schema, &s.history_table, set)
        .await
        .map_err(StepError::plain)?;
    out.from_version = st.applied_version;
    out.to_version = st.applied_version;
    if st.state.is_refused() {
        let r = refused(&st, phase, set);
        out.state = r.state;
        out.error = r.error;
        return Ok(());
    }
    // What stays applied as a rollback goes (for the outcome's to_version).
    let mut remaining = crate::state::applied_versions(&st, set);
    cx.goal.apply(&mut st, set);
    let pending: Vec<&Migration> = st
        .pending
        .iter()
        .filter_map(|v| set.index_of(*v).map(|i| &set.migrations[i]))
        .collect();
    if pending.is_empty() {
        out.state = OutcomeState::UpToDate;
        return Ok(());
    }
    if revert && let Some(m) = pending.iter().find(|m| !m.is_reversible()) {
        // The plan checked this; a run that applied more since may not.
        out.state = OutcomeState::Refused;
        out.error = Some(format!(
            "migration {} has no .down.sql; nothing was reverted here",
            set.fmt_version(m.version)
        ));
        return Ok(());
    }
    if cx.goal.is_stamp() {
        // History rows only, all in one transaction: the schema was built
        // by something else and is declared to match these versions.
        let mut tx = conn.begin().await.map_err(StepError::plain)?;
        for m in &pending {
            db::insert_history(&mut tx, schema, &s.history_table, m, true, 0)
                .await
                .map_err(|e| StepError {
                    version: Some(m.version),
                    statement: None,
                    source: e,
                })?;
        }
        tx.commit().await.map_err(StepError::plain)?;
        for m in pending {
            out.applied.push(m.version);
            out.to_version = out.to_version.max(Some(m.version));
            cx.sink.emit(Event::MigrationStamped {
                schema: schema.to_string(),
                version: m.version,
            });
        }
        out.state = OutcomeState::Succeeded;
        return Ok(());
    }
    let is_no_tx = |m: &Migration| if revert { m.down_no_tx() } else { m.no_tx };
    for group in groups(&pending, s.transaction_mode, is_no_tx) {
        if cx.shutdown.load(Ordering::SeqCst) {
            out.state = OutcomeState::Stopped;
            out.error = Some("interrupted before the next migration; rerun to finish".into());
            return Ok(());
        }
        let mut attempt = 0u32;
        let applied = loop {
            attempt += 1;
            out.attempts = attempt;
            let no_tx = is_no_tx(group[0]);
            let dir = if revert {
                Direction::Revert
            } else {
                Direction::Apply
            };
            let unit = Unit {
                schema,
                table: &s.history_table,
                session: Some(&session),
                dir,
            };
            let r = if no_tx {
                run_no_tx(conn, &unit, group[0]).await
            } else {
                run_group(conn, &unit, &group).await
            };
            match r {
                Ok(a) => break a,
                Err(e) if db::is_lock_timeout(&e.source) && !no_tx && attempt <= s.lock_retries => {
                    let pause = s.retry_backoff * 2u32.saturating_pow(attempt - 1);
                    tracing::warn!(schema, attempt, "lock_timeout hit; retrying in {pause:?}");
                    tokio::time::sleep(pause).await;
                }
                Err(e) => return Err(e),
            }
        };
        for (v, d) in applied {
            let (schema, duration_ms) = (schema.to_string(), d.as_millis() as u64);
            if revert {
                out.reverted.push(v);
                remaining.retain(|r| *r != v);
                out.to_version = remaining.last().copied();
                cx.sink.emit(Event::MigrationReverted {
                    schema,
                    version: v,
                    duration_ms,
                });
            } else {
                out.applied.push(v);
                out.to_version = out.to_version.max(Some(v));
                cx.sink.emit(Event::MigrationApplied {
                    schema,
                    version: v,
                    duration_ms,
                });
            }
        }
    }
    out.state = OutcomeState::Succeeded;
    Ok(())
}

/// Splits pending migrations into units that each run in one go: a
/// `-- no-transaction` file alone; transactional files one by one, or
/// consecutive ones together with [`TransactionMode::PerSchema`].
/// `no_tx` says which file counts (the up file, or the down file when
/// reverting).
fn groups<'a>(
    pending: &[&'a Migration],
    mode: TransactionMode,
    no_tx: impl Fn(&Migration) -> bool,
) -> Vec<Vec<&'a Migration>> {
    let mut out: Vec<Vec<&Migration>> = Vec::new();
    for m in pending {
        let join = mode == TransactionMode::PerSchema
            && !no_tx(m)
            && out.last().is_some_and(|g| !no_tx(g[0]));
        if join {
            out.last_mut().expect("last group").push(m);
        } else {
            out.push(vec![m]);
        }
    }
    out
}

/// Which way a unit of migrations runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// The up SQL, then a history row.
    Apply,
    /// The `.down.sql`, then the history row goes.
    Revert,
}

impl Direction {
    fn sql(self, m: &Migration) -> &str {
        match self {
            Direction::Apply => &m.sql,
            Direction::Revert => m.down_sql.as_deref().unwrap_or_default(),
        }
    }
}

/// Where and how a unit of migrations runs.
#[derive(Clone, Copy)]
struct Unit<'a> {
    /// The schema.
    schema: &'a str,
    /// Its history table.
    table: &'a str,
    /// The session set-up ([`db::session_sql`]) restored before each file
    /// and each history write; none where nothing else shares the session
    /// (the control schema, scratch schemas).
    session: Option<&'a str>,
    /// Apply or revert.
    dir: Direction,
}

impl Unit<'_> {
    async fn restore_session(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        match self.session {
            Some(sql) => db::execute_script(conn, sql).await,
            None => Ok(()),
        }
    }
}

/// Runs transactional migrations in one transaction, each with its history
/// change: applied, the SQL and its new row commit together, so a migration
/// never runs twice and a schema is never left half-migrated; reverted, the
/// `.down.sql` and the removal of its row commit together, so a migration
/// is either still applied or fully undone.
async fn run_group(
    conn: &mut PgConnection,
    unit: &Unit<'_>,
    group: &[&Migration],
) -> Result<Vec<(i64, Duration)>, StepError> {
    let Unit {
        schema, table, dir, ..
    } = *unit;
    let mut tx = conn.begin().await.map_err(StepError::plain)?;
    if let Err(e) = unit.restore_session(&mut tx).await {
        let _ = tx.rollback().await;
        return Err(StepError::plain(e));
    }
    let mut done = Vec::with_capacity(group.len());
    for m in group {
        let t0 = Instant::now();
        let r = match db::execute_script(&mut tx, dir.sql(m)).await {
            // The file may have changed the session (`SET ROLE`, a plain
            // `SET search_path`, which outlives the commit): undone before
            // its history row and the next file.
            Ok(()) => match unit.restore_session(&mut tx).await {
                Err(e) => Err(e),
                Ok(()) => match dir {
                    Direction::Apply => {
                        let took = t0.elapsed().as_nanos() as i64;
                        db::insert_history(&mut tx, schema, table, m, true, took).await
                    }
                    Direction::Revert => {
                        db::delete_history(&mut tx, schema, table, m.version).await
                    }
                },
            },
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            let _ = tx.rollback().await;
            return Err(StepError {
                version: Some(m.version),
                statement: None,
                source: e,
            });
        }
        done.push((m.version, t0.elapsed()));
    }
    tx.commit().await.map_err(|e| StepError {
        version: group.last().map(|m| m.version),
        statement: None,
        source: e,
    })?;
    Ok(done)
}

/// Runs a `-- no-transaction` file statement by statement, with its history
/// row marked success = false first and settled only at the end: applied,
/// the row turns true; reverted, it goes. A failure or a kill leaves the
/// false row, which later runs refuse until `tenantmig repair` (after a
/// failed undo: clear when it was finished by hand, `--mark-applied` when
/// the migration was put back by hand).
async fn run_no_tx(
    conn: &mut PgConnection,
    unit: &Unit<'_>,
    m: &Migration,
) -> Result<Vec<(i64, Duration)>, StepError> {
    let Unit {
        schema, table, dir, ..
    } = *unit;
    let err = |statement: Option<String>| {
        move |source| StepError {
            version: Some(m.version),
            statement,
            source,
        }
    };
    unit.restore_session(conn).await.map_err(err(None))?;
    match dir {
        Direction::Apply => db::insert_history(conn, schema, table, m, false, -1).await,
        Direction::Revert => db::mark_failed(conn, schema, table, m.version).await,
    }
    .map_err(err(None))?;
    let t0 = Instant::now();
    for stmt in split_statements(dir.sql(m)) {
        db::execute_script(conn, &stmt.sql)
            .await
            .map_err(err(Some(format!("line {}: {}", stmt.line, stmt.sql))))?;
    }
    let took = t0.elapsed();
    unit.restore_session(conn).await.map_err(err(None))?;
    match dir {
        Direction::Apply => {
            db::mark_success(conn, schema, table, m.version, took.as_nanos() as i64).await
        }
        Direction::Revert => db::delete_history(conn, schema, table, m.version).await,
    }
    .map_err(err(None))?;
    Ok(vec![(m.version, took)])
}

/// Applies one migration with its history row, in a transaction or, for a
/// `-- no-transaction` file, statement by statement (used to build scratch
/// schemas, where no lock, retry or ledger is needed).
pub(crate) async fn apply_migration(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
    m: &Migration,
) -> Result<(), sqlx::Error> {
    let unit = Unit {
        schema,
        table,
        session: None,
        dir: Direction::Apply,
    };
    let r = if m.no_tx {
        run_no_tx(conn, &unit, m).await
    } else {
        run_group(conn, &unit, &[m]).await
    };
    r.map(|_| ()).map_err(|e| e.source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_transaction_files_split_groups_and_per_migration_mode_never_groups() {
        let a = Migration::new(1, "a", "select 1");
        let b = Migration::new(2, "b", "select 2");
        let c = Migration::new(3, "c", "-- no-transaction\nselect 3");
        let d = Migration::new(4, "d", "select 4");
        let p = vec![&a, &b, &c, &d];
        let g: Vec<Vec<i64>> = groups(&p, TransactionMode::PerSchema, |m| m.no_tx)
            .iter()
            .map(|g| g.iter().map(|m| m.version).collect())
            .collect();
        assert_eq!(g, vec![vec![1, 2], vec![3], vec![4]]);
        assert_eq!(
            groups(&p, TransactionMode::PerMigration, |m| m.no_tx).len(),
            4
        );
    }
}
