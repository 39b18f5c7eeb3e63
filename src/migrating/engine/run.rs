//! A run: the shared phase, then the tenants from one queue under a
//! connection budget; what the workers share (`RunCtx`), and the pool.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use super::schema::{describe_db_error, migrate_schema};
use super::{Engine, MigrateOptions, RunReport, StatusReport};
use crate::config::Settings;
use crate::db;
use crate::error::{Error, Result};
use crate::events::{Event, EventSink, OutcomeState, Phase, SchemaOutcome, StopReason};
use crate::ledger::{Ledger, LedgerSender, Record, RunTotals};
use crate::migration::MigrationSet;
use crate::state::{Goal, SchemaState, SchemaStatus};

impl Engine {
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
        drop(cx);
        // The report is the run's truth; a ledger that cannot be written is
        // said in it, never a reason to lose it.
        report.ledger_error = led
            .close_run(report.stopped, report.is_success(), &totals)
            .await;
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

pub(super) fn refused(st: &SchemaStatus, phase: Phase, set: &MigrationSet) -> SchemaOutcome {
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
