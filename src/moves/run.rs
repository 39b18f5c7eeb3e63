//! The run of `migrate-to`: the shared schema, then the tenant pool, each
//! schema's steps under its source's lock.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::steps::{StepFail, run_step};
use super::store::Checkpoint;
use super::{
    CHECK, Loaded, MoveCtx, MoveOptions, MoveOutcome, MovePlan, MoveReport, SchemaMove,
    StepOutcome, store,
};
use crate::config::Strategy;
use crate::db::{self, LockMode};
use crate::engine::{Engine, RunCtx, describe_db_error};
use crate::error::{Error, Result};
use crate::events::{Event, OutcomeState, Phase, StopReason};
use crate::ledger::{Ledger, Record, RunTotals};

impl Engine {
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
        let mut guard = self.lock_move(&lock_name, &opts.version).await?;

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

        let cx = self.move_ctx(opts, loaded, &led, shutdown);

        let shared_ok = shared_phase(&cx, &plan.shared, &mut report).await;
        tenant_phase(&cx, &plan, shared_ok, free, &mut report).await;

        // The shared schema's checks run last: sequences must pass the ids
        // every tenant brought into a consolidated schema.
        if shared_ok && !cx.run.shutdown.load(Ordering::SeqCst) {
            shared_check(&cx, &plan.shared, &mut report).await;
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

    /// What the move's workers share.
    fn move_ctx(
        &self,
        opts: &MoveOptions,
        loaded: Loaded,
        led: &Ledger,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Arc<MoveCtx> {
        // Workers migrate targets with the version's shared schema on their
        // search path.
        let s = &self.settings;
        let mut run_settings = s.clone();
        run_settings.shared_schema = loaded.v.shared_schema.clone();
        run_settings.create_missing_schemas = false;
        Arc::new(MoveCtx {
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
        })
    }

    /// Takes the lock that allows one move of a version at a time, on a
    /// connection of its own.
    async fn lock_move(&self, lock_name: &str, version: &str) -> Result<PgConnection> {
        let s = &self.settings;
        let mut guard = self.connection().await?;
        match db::acquire(
            &mut guard,
            lock_name,
            LockMode::Exclusive,
            s.lock_wait,
            Some(&s.control_schema),
        )
        .await
        {
            Ok(()) => Ok(guard),
            Err(db::LockFailure::Busy(why)) => Err(Error::Usage {
                message: format!("another tenantmig migrate-to {version} is running: {why}"),
            }),
            Err(db::LockFailure::Db(e)) => Err(Error::db("locking the move")(e)),
        }
    }
}

/// Shared phase: its copy or build and data moves, before any tenant.
/// Returns false when it failed (the run is then halted).
async fn shared_phase(cx: &MoveCtx, m: &SchemaMove, report: &mut MoveReport) -> bool {
    let pending = !m.is_complete();
    cx.run.sink.emit(Event::PhaseStarted {
        phase: Phase::Shared,
        schemas: pending as usize,
        jobs: 1,
    });
    let mut conn = None;
    let out = run_schema(cx, &mut conn, m, false).await;
    if let Some(c) = conn {
        let _ = c.close().await;
    }
    let shared_ok = !out.state.is_failure();
    if !shared_ok {
        cx.run.halt(StopReason::SharedFailed);
    }
    if pending || !shared_ok {
        report.shared = Some(out);
    }
    shared_ok
}

/// Tenant phase: refused tenants are reported, the others not yet
/// moved go to the pool (or are not reached when the shared phase
/// failed or the run stopped). `free` is the server's free connections.
async fn tenant_phase(
    cx: &Arc<MoveCtx>,
    plan: &MovePlan,
    shared_ok: bool,
    free: i64,
    report: &mut MoveReport,
) {
    let s = &cx.run.settings;
    let mut work = Vec::new();
    for t in &plan.tenants {
        if let Some(r) = &t.refused {
            let mut o = MoveOutcome::new(t);
            o.state = OutcomeState::Refused;
            o.error = Some(r.clone());
            let so = o.as_schema_outcome();
            cx.run.record_finished(&so);
            cx.run.sink.emit(Event::SchemaFinished { outcome: so });
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
            cx.run.sink.emit(Event::Warning {
                message: format!(
                    "--jobs {} needs about {} connections; {} are free for this database and role, so {cap} tenants move at once",
                    s.jobs,
                    s.jobs * per,
                    free
                ),
            });
            jobs = cap;
        }
        cx.run.sink.emit(Event::MoveStarted {
            version: cx.version.clone(),
            tenants: work.len(),
            jobs,
        });
        cx.run.sink.emit(Event::PhaseStarted {
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
}

/// The shared schema's final check, after the tenants; its steps and
/// counts join the shared schema's outcome.
async fn shared_check(cx: &MoveCtx, shared: &SchemaMove, report: &mut MoveReport) {
    let mut conn = None;
    let out = run_schema(cx, &mut conn, shared, true).await;
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
    if let Err(broken) = lock_source(cx, conn, m, out).await {
        return broken;
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
        if let Err(b) = run_checkpointed(cx, conn, m, step, out).await {
            broken = b;
            break;
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

/// Takes the source's advisory lock for the steps of `m`. On failure, says
/// so in `out` and returns whether the connection must be dropped.
async fn lock_source(
    cx: &MoveCtx,
    conn: &mut PgConnection,
    m: &SchemaMove,
    out: &mut MoveOutcome,
) -> Result<(), bool> {
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
        Ok(()) => Ok(()),
        Err(db::LockFailure::Busy(message)) => {
            out.state = OutcomeState::Failed;
            out.error = Some(message);
            Err(false)
        }
        Err(db::LockFailure::Db(e)) => {
            out.state = OutcomeState::Failed;
            out.error = Some(format!(
                "while locking schema {}: {}",
                m.source,
                describe_db_error(&e)
            ));
            Err(true)
        }
    }
}

/// Runs one step between its `running` checkpoint and its `done` or
/// `failed` one, and adds it to `out`. On failure, the steps of the schema
/// stop; the error says whether the connection must be dropped.
async fn run_checkpointed(
    cx: &MoveCtx,
    conn: &mut PgConnection,
    m: &SchemaMove,
    step: &str,
    out: &mut MoveOutcome,
) -> Result<(), bool> {
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
    if let Err(e) = store::checkpoint(conn, &cx.control, &cp("running", (None, None), None)).await {
        out.state = OutcomeState::Failed;
        out.error = Some(format!(
            "while recording step {step}: {}",
            describe_db_error(&e)
        ));
        return Err(true);
    }
    match run_step(cx, conn, m, step, out).await {
        Ok(rows) => {
            // Copies, creations and data moves already wrote their
            // checkpoint in their own transaction; this adds the counts
            // and the time.
            if let Err(e) = store::checkpoint(conn, &cx.control, &cp("done", rows, None)).await {
                out.state = OutcomeState::Failed;
                out.error = Some(format!(
                    "while recording step {step}: {}",
                    describe_db_error(&e)
                ));
                return Err(true);
            }
            out.steps.push(StepOutcome {
                step: step.to_string(),
                state: "done".into(),
                rows_read: rows.0,
                rows_written: rows.1,
                duration_ms: t0.elapsed().as_millis() as u64,
            });
            cx.run.sink.emit(Event::MoveStepDone {
                phase: m.phase,
                schema: m.source.clone(),
                step: step.to_string(),
                rows_read: rows.0,
                rows_written: rows.1,
                duration_ms: t0.elapsed().as_millis() as u64,
            });
            Ok(())
        }
        Err(StepFail {
            message,
            broken,
            stopped,
        }) => {
            let msg = format!("step {step}: {message}");
            record_failure(cx, conn, broken, &cp("failed", (None, None), Some(&msg))).await;
            out.state = if stopped {
                OutcomeState::Stopped
            } else {
                OutcomeState::Failed
            };
            out.error = Some(msg);
            out.steps.push(StepOutcome {
                step: step.to_string(),
                state: "failed".into(),
                rows_read: None,
                rows_written: None,
                duration_ms: t0.elapsed().as_millis() as u64,
            });
            Err(broken)
        }
    }
}

/// Records a failed step, on a fresh connection when `broken` (the step's
/// may be in an aborted state). Best effort: the outcome says the failure.
async fn record_failure(cx: &MoveCtx, conn: &mut PgConnection, broken: bool, cp: &Checkpoint<'_>) {
    if broken {
        if let Ok(mut c2) = db::connect(&cx.run.connect).await {
            let _ = store::checkpoint(&mut c2, &cx.control, cp).await;
            let _ = c2.close().await;
        }
    } else {
        let _ = store::checkpoint(conn, &cx.control, cp).await;
    }
}
