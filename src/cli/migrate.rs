//! `migrate`, `plan`, `rollback` and `stamp`: one plan, one run, one
//! report, whatever the goal (head, a target version, a revert or a stamp).

use std::io::{self, Write};
use std::sync::Arc;

use clap::Args;
use tenantmig::events::OutcomeState;
use tenantmig::migration::MigrationSet;
use tenantmig::output::{self, Format, HumanEvents, names_list, tenants_word, thousands, versions};
use tenantmig::state::SchemaState;
use tenantmig::{Engine, Error, Goal, MigrateOptions, NoEvents, RunReport, StatusReport};

use super::common::{
    Failure, Global, SelectArgs, args_for_ledger, ctrl_c, run_limits, settings, sink,
};

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Tenants migrated at once, one connection each [config: jobs; default: 4]; capped by the server's free connections.
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// Stop starting new tenants after more than N failures; in-flight ones finish [config: max_failures; default: 0 = stop at the first].
    #[arg(long, value_name = "N")]
    max_failures: Option<usize>,
    /// Migrate N tenants first and go on only if all of them succeed.
    #[arg(long, value_name = "N", default_value_t = 0)]
    canary: usize,
    /// Show the plan (which schemas get which versions) and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run: also print the SQL of each pending migration.
    #[arg(long, requires = "dry_run")]
    sql: bool,
    /// Apply migrations only up to this version (inclusive), e.g. 0003; later ones stay pending.
    #[arg(long, value_name = "VERSION")]
    target: Option<i64>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Also print the SQL of each pending migration.
    #[arg(long)]
    sql: bool,
    /// Plan `migrate --target VERSION`: only versions up to this one.
    #[arg(long, value_name = "VERSION")]
    target: Option<i64>,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Undo every applied version above VERSION; 0 undoes everything and empties the history.
    #[arg(
        long,
        value_name = "VERSION",
        required_unless_present = "steps",
        conflicts_with = "steps"
    )]
    target: Option<i64>,
    /// Undo the last N applied migrations of each schema.
    #[arg(long, value_name = "N")]
    steps: Option<usize>,
    /// Schemas rolled back at once, one connection each [config: jobs; default: 4]; capped by the server's free connections.
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// Stop starting new tenants after more than N failures; in-flight ones finish [config: max_failures; default: 0].
    #[arg(long, value_name = "N")]
    max_failures: Option<usize>,
    /// Show the plan (which schemas undo which versions) and change nothing.
    #[arg(long, conflicts_with = "yes")]
    dry_run: bool,
    /// With --dry-run: also print each .down.sql that would run.
    #[arg(long, requires = "dry_run")]
    sql: bool,
    /// Confirm: down files usually drop tables or columns, and their data with them. Without it the plan is shown and nothing runs.
    #[arg(long)]
    yes: bool,
}

#[derive(Debug, Args)]
pub struct StampArgs {
    /// Record every migration up to this version (inclusive), e.g. 0003.
    version: i64,
    #[command(flatten)]
    select: SelectArgs,
    /// Schemas stamped at once, one connection each [config: jobs; default: 4].
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// Stop starting new tenants after more than N failures [config: max_failures; default: 0].
    #[arg(long, value_name = "N")]
    max_failures: Option<usize>,
    /// Show which schemas would get which history rows, and change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// `tenantmig migrate`: the plan with `--dry-run`, else the run.
pub async fn migrate(g: &Global, stdout: &mut dyn Write, a: &MigrateArgs) -> Result<u8, Failure> {
    let mut s = settings(g)?;
    run_limits(&mut s, a.jobs, a.max_failures)?;
    let selection = a.select.selection();
    let goal = a
        .target
        .map_or(Goal::Head, |version| Goal::UpTo { version });
    let (events, human) = sink(g);
    let engine = Engine::new(s, &selection, events)?;
    if a.dry_run {
        let plan = engine.plan_for(&selection, goal).await?;
        print_plan(stdout, g.format, &engine, &plan, a.sql)?;
        return Ok(0);
    }
    let opts = MigrateOptions {
        selection,
        canary: a.canary,
        dry_run: false,
        args: args_for_ledger(),
        goal,
    };
    run_and_report(stdout, g.format, &engine, &opts, human).await
}

/// `tenantmig plan`: `migrate --dry-run` without the event sink.
pub async fn plan(g: &Global, stdout: &mut dyn Write, a: &PlanArgs) -> Result<u8, Failure> {
    let selection = a.select.selection();
    let engine = Engine::new(settings(g)?, &selection, Arc::new(NoEvents))?;
    let goal = a
        .target
        .map_or(Goal::Head, |version| Goal::UpTo { version });
    let plan = engine.plan_for(&selection, goal).await?;
    print_plan(stdout, g.format, &engine, &plan, a.sql)?;
    Ok(0)
}

/// `tenantmig rollback`: the plan, and the run only with `--yes`.
pub async fn rollback(g: &Global, stdout: &mut dyn Write, a: &RollbackArgs) -> Result<u8, Failure> {
    let mut s = settings(g)?;
    run_limits(&mut s, a.jobs, a.max_failures)?;
    let mut selection = a.select.selection();
    // Naming tenants limits a rollback to them: undoing the shared
    // schema's migrations takes --shared-only or no --tenant at all.
    if !a.select.filter.tenants.is_empty() {
        selection.shared = false;
    }
    let goal = Goal::Revert {
        target: a.target,
        steps: a.steps,
    };
    let (events, human) = sink(g);
    let engine = Engine::new(s, &selection, events)?;
    if a.dry_run || !a.yes {
        let plan = engine.plan_for(&selection, goal).await?;
        print_plan(stdout, g.format, &engine, &plan, a.sql)?;
        let work = plan
            .shared
            .iter()
            .chain(&plan.tenants)
            .any(|t| !t.pending.is_empty());
        if a.dry_run || !work {
            return Ok(0);
        }
        return Err(Error::Usage {
            message: "a rollback runs .down.sql files, which usually drop tables or columns and their rows; check the plan above (--dry-run --sql shows the SQL), then rerun with --yes".into(),
        }
        .into());
    }
    let opts = MigrateOptions {
        selection,
        args: args_for_ledger(),
        goal,
        ..MigrateOptions::default()
    };
    run_and_report(stdout, g.format, &engine, &opts, human).await
}

/// `tenantmig stamp VERSION`: history rows without running the SQL.
pub async fn stamp(g: &Global, stdout: &mut dyn Write, a: &StampArgs) -> Result<u8, Failure> {
    let mut s = settings(g)?;
    run_limits(&mut s, a.jobs, a.max_failures)?;
    let mut selection = a.select.selection();
    // As with rollback: named tenants only.
    if !a.select.filter.tenants.is_empty() {
        selection.shared = false;
    }
    let goal = Goal::Stamp { version: a.version };
    let (events, human) = sink(g);
    let engine = Engine::new(s, &selection, events)?;
    if a.dry_run {
        let plan = engine.plan_for(&selection, goal).await?;
        print_plan(stdout, g.format, &engine, &plan, false)?;
        return Ok(0);
    }
    let opts = MigrateOptions {
        selection,
        args: args_for_ledger(),
        goal,
        ..MigrateOptions::default()
    };
    run_and_report(stdout, g.format, &engine, &opts, human).await
}

/// Prints a plan (migrate, rollback or stamp) as text or JSON.
pub fn print_plan(
    stdout: &mut dyn Write,
    format: Format,
    engine: &Engine,
    plan: &tenantmig::StatusReport,
    sql: bool,
) -> io::Result<()> {
    match format {
        Format::Json => output::json_line(stdout, plan),
        Format::Human => plan_human(stdout, plan, engine.shared_set(), engine.tenant_set(), sql),
    }
}

/// Runs migrate, rollback or stamp and prints the report: exit 1 unless
/// every selected schema got where the run was going.
async fn run_and_report(
    stdout: &mut dyn Write,
    format: Format,
    engine: &Engine,
    opts: &MigrateOptions,
    human: Option<Arc<HumanEvents>>,
) -> Result<u8, Failure> {
    let report = engine.migrate(opts, ctrl_c()).await;
    if let Some(h) = &human {
        h.finish();
    }
    let report = report?;
    match format {
        Format::Json => output::json_line(stdout, &report)?,
        Format::Human => run_summary_human(stdout, &report)?,
    }
    Ok(if report.is_success() { 0 } else { 1 })
}

/// A plan for people: the shared schema, then tenants grouped by the
/// versions they would run ("480 tenants: 0009, 0010"), refusals, and with
/// `sql` the SQL of each version once (the `.down.sql` for a rollback).
fn plan_human(
    w: &mut dyn Write,
    r: &StatusReport,
    shared_set: &MigrationSet,
    tenant_set: &MigrationSet,
    sql: bool,
) -> io::Result<()> {
    let revert = r.goal.is_revert();
    let verb = plan_verb(r.goal);
    let idle = match r.goal {
        Goal::Head => "up to date".to_string(),
        Goal::UpTo { version } => {
            format!("nothing to apply up to {}", tenant_set.fmt_version(version))
        }
        Goal::Stamp { version } => {
            format!("nothing to stamp up to {}", tenant_set.fmt_version(version))
        }
        Goal::Revert { .. } => "nothing to revert".to_string(),
    };
    let mut nothing = true;
    if let Some(s) = &r.shared {
        if s.state.is_refused() {
            writeln!(
                w,
                "shared schema {}: refused ({})",
                s.schema,
                s.state.label()
            )?;
        } else if !s.pending.is_empty() {
            nothing = false;
            writeln!(
                w,
                "shared schema {}: {verb}{}{}",
                s.schema,
                versions(shared_set, &s.pending),
                if revert { " (after the tenants)" } else { "" }
            )?;
        } else {
            writeln!(w, "shared schema {}: {idle}", s.schema)?;
        }
    }
    let groups = r.plan_groups();
    for (pending, names) in &groups {
        nothing = false;
        writeln!(
            w,
            "{} tenant{}: {verb}{} ({})",
            thousands(names.len()),
            if names.len() == 1 { "" } else { "s" },
            versions(tenant_set, pending),
            names_list(names)
        )?;
    }
    let refused: Vec<&str> = r
        .tenants
        .iter()
        .filter(|t| t.state.is_refused())
        .map(|t| t.schema.as_str())
        .collect();
    if !refused.is_empty() {
        writeln!(
            w,
            "{} refused (see `tenantmig status`): {}",
            tenants_word(refused.len()),
            names_list(&refused)
        )?;
    }
    let up = r
        .tenants
        .iter()
        .filter(|t| t.state == SchemaState::UpToDate)
        .count();
    if r.source.is_some() {
        if r.goal == Goal::Head {
            writeln!(w, "{} tenants up to date", thousands(up))?;
        } else {
            writeln!(w, "{}: {idle}", tenants_word(up))?;
        }
    }
    if nothing {
        writeln!(
            w,
            "{}",
            match r.goal {
                Goal::Revert { .. } => "nothing to roll back",
                Goal::Stamp { .. } => "nothing to stamp",
                _ => "nothing to migrate",
            }
        )?;
    }
    if sql {
        let tenants: Vec<&[i64]> = groups.iter().map(|(p, _)| p.as_slice()).collect();
        plan_sql(w, r, shared_set, tenant_set, &tenants)?;
    }
    Ok(())
}

/// The word before a plan's versions ("revert 0009"); none for migrate.
fn plan_verb(goal: Goal) -> &'static str {
    match goal {
        Goal::Revert { .. } => "revert ",
        Goal::Stamp { .. } => "stamp ",
        _ => "",
    }
}

/// `--sql` under a plan: each version's SQL once (the `.down.sql` for a
/// rollback), the shared schema's first, then the tenant groups'.
fn plan_sql(
    w: &mut dyn Write,
    r: &StatusReport,
    shared_set: &MigrationSet,
    tenant_set: &MigrationSet,
    tenant_pending: &[&[i64]],
) -> io::Result<()> {
    let revert = r.goal.is_revert();
    let verb = plan_verb(r.goal);
    let shared = r
        .shared
        .iter()
        .map(|s| ("shared", shared_set, s.pending.as_slice()));
    let tenants = tenant_pending.iter().map(|p| ("tenant", tenant_set, *p));
    let mut shown = std::collections::BTreeSet::new();
    for (name, set, pending) in shared.chain(tenants) {
        for v in pending {
            if !shown.insert((name, *v)) {
                continue;
            }
            let Some(i) = set.index_of(*v) else { continue };
            let m = &set.migrations[i];
            let (text, no_tx) = if revert {
                (m.down_sql.as_deref().unwrap_or_default(), m.down_no_tx())
            } else {
                (m.sql.as_str(), m.no_tx)
            };
            let path = if revert {
                m.path.with_extension("").with_extension("down.sql")
            } else {
                m.path.clone()
            };
            let tx = if no_tx {
                "outside a transaction"
            } else {
                "in a transaction"
            };
            writeln!(
                w,
                "\n-- {verb}{name} {} {} ({}, {tx})\n{}",
                set.fmt_version(*v),
                m.description,
                path.display(),
                text.trim_end()
            )?;
        }
    }
    Ok(())
}

/// The end of a migrate run for people: counts, then every failure.
pub fn run_summary_human(w: &mut dyn Write, r: &RunReport) -> io::Result<()> {
    if let Some(s) = &r.shared
        && !s.state.is_failure()
    {
        if r.goal.is_revert() {
            writeln!(
                w,
                "shared schema {}: {} ({} reverted)",
                s.schema,
                s.state.as_str(),
                s.reverted.len()
            )?;
        } else {
            writeln!(
                w,
                "shared schema {}: {} ({} applied)",
                s.schema,
                s.state.as_str(),
                s.applied.len()
            )?;
        }
    }
    let count = |state| r.tenants.iter().filter(|o| o.state == state).count();
    let (failed, refused) = (count(OutcomeState::Failed), count(OutcomeState::Refused));
    let (stopped, vanished) = (count(OutcomeState::Stopped), count(OutcomeState::Vanished));
    let (done, idle) = match r.goal {
        Goal::Revert { .. } => ("rolled back", "with nothing to revert"),
        Goal::Stamp { .. } => ("stamped", "with nothing to stamp"),
        _ => ("migrated", "already up to date"),
    };
    writeln!(
        w,
        "{} {done}, {} {idle}, {} failed, {} refused, {} stopped, {}{} not reached in {:.1}s{}",
        tenants_word(r.tenants_migrated()),
        thousands(
            r.tenants_up_to_date
                + r.tenants
                    .iter()
                    .filter(|o| o.state == OutcomeState::UpToDate)
                    .count()
        ),
        failed,
        refused,
        stopped,
        if vanished > 0 {
            format!("{vanished} vanished, ")
        } else {
            String::new()
        },
        thousands(r.not_reached.len()),
        r.duration_ms as f64 / 1000.0,
        r.run_id
            .map(|id| format!(" (run {id})"))
            .unwrap_or_default()
    )?;
    let failures: Vec<_> = r.failures().collect();
    if !failures.is_empty() {
        writeln!(w, "failures:")?;
        for o in failures {
            writeln!(
                w,
                "  {} [{}]: {}",
                o.schema,
                o.state.as_str(),
                o.error.as_deref().unwrap_or("")
            )?;
            if let Some(stmt) = &o.failed_statement {
                writeln!(w, "    failed statement: {stmt}")?;
            }
        }
    }
    output::run_end(w, &r.not_reached, r.stopped, r.ledger_error.as_ref())?;
    if !r.is_success() {
        writeln!(
            w,
            "rerun `tenantmig {}` to finish once the failures are fixed; `tenantmig runs show {}` has the details",
            r.goal.command(),
            r.run_id.unwrap_or_default()
        )?;
    }
    Ok(())
}
