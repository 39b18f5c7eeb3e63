//! The engine: reads the state of every schema, plans, and migrates the
//! shared schema and then the tenants, concurrently, with per-schema locks.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

use crate::config::{Settings, mask_url};
use crate::db::{self, LockMode};
use crate::error::{Error, Result};
use crate::events::{EventSink, OutcomeState, SchemaOutcome, StopReason};
use crate::ledger::{self, LedgerFault, RunTotals};
use crate::migration::{Migration, MigrationSet};
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
        let stopped = self
            .failures()
            .filter(|o| o.state == OutcomeState::Stopped)
            .count() as i64;
        RunTotals::of_run(
            self.plan.tenants.len() as i64 + self.plan.shared.is_some() as i64,
            self.failures().count() as i64,
            stopped,
            self.not_reached.len() as i64,
        )
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
            self.sink.emit(crate::events::Event::Warning {
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
}

mod run;
mod schema;

pub(crate) use run::RunCtx;
use schema::{Direction, Unit, run_group};
pub(crate) use schema::{apply_migration, describe_db_error, migrate_schema};
