//! `migrate-to VERSION` (and `--abort`) and `cutover`: version moves.

use std::io::{self, Write};
use std::sync::Arc;

use clap::Args;
use tenantmig::events::OutcomeState;
use tenantmig::output::{self, Format, names_list, secs, tenants_word, thousands};
use tenantmig::{Engine, Error, NoEvents, Selection};

use super::common::{
    Failure, Global, TenantFilter, args_for_ledger, ctrl_c, run_limits, settings, sink,
};

#[derive(Debug, Args)]
pub struct MigrateToArgs {
    /// The version, as declared in tenantmig.toml (e.g. v2).
    version: String,
    #[command(flatten)]
    filter: TenantFilter,
    /// Tenants moved at once [config: jobs; default: 4]; capped by the server's free connections.
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// Stop starting new tenants after more than N failures; in-flight ones finish [config: max_failures; default: 0].
    #[arg(long, value_name = "N")]
    max_failures: Option<usize>,
    /// Show the whole plan (schemas to create, steps, each tenant's progress) and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run: also print the SQL of every step (migrations and data-move files, placeholders in place).
    #[arg(long, requires = "dry_run")]
    sql: bool,
    /// Drop every schema this move created and forget its progress; the source schemas stay as they are. Shows the list; --yes confirms.
    #[arg(long, conflicts_with_all = ["dry_run", "tenants", "exclude"])]
    abort: bool,
    /// Confirm --abort.
    #[arg(long, requires = "abort")]
    yes: bool,
}

#[derive(Debug, Args)]
pub struct CutoverArgs {
    /// The version to make live (e.g. v2).
    version: String,
    /// Swap back: undo the version's cut-over, renames in reverse, in one transaction.
    #[arg(long)]
    revert: bool,
    /// Show the renames and change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// `migrate-to VERSION`: the plan, the move, or `--abort`.
pub async fn migrate_to(
    g: &Global,
    stdout: &mut dyn Write,
    a: &MigrateToArgs,
) -> Result<u8, Failure> {
    let mut s = settings(g)?;
    run_limits(&mut s, a.jobs, a.max_failures)?;
    // Fails early, listing the declared versions.
    s.version(&a.version)?;
    let (events, human) = sink(g);
    let quiet = a.dry_run || a.abort;
    let engine = Engine::new(
        s,
        &Selection::all(),
        if quiet { Arc::new(NoEvents) } else { events },
    )?;
    if a.abort {
        let plan = engine.abort_plan(&a.version).await?;
        if plan.schemas.is_empty() {
            match g.format {
                Format::Json => output::json_line(stdout, &plan)?,
                Format::Human => writeln!(
                    stdout,
                    "the move to {} created no schema that still exists; nothing to drop",
                    a.version
                )?,
            }
            if a.yes {
                engine.abort_move(&a.version, &args_for_ledger()).await?;
            }
            return Ok(0);
        }
        if !a.yes {
            match g.format {
                Format::Json => output::json_line(
                    stdout,
                    &serde_json::json!({ "would_drop": plan.schemas, "dropped": false }),
                )?,
                Format::Human => abort_plan_human(stdout, &plan)?,
            }
            return Err(Error::Usage {
                message: format!(
                    "--abort drops the {} schema(s) the move to {} created, with their rows; the source schemas are not touched and nothing was changed. Rerun with --yes to confirm",
                    plan.schemas.len(),
                    a.version
                ),
            }
            .into());
        }
        let plan = engine.abort_move(&a.version, &args_for_ledger()).await?;
        match g.format {
            Format::Json => output::json_line(
                stdout,
                &serde_json::json!({ "dropped": plan.schemas, "version": plan.version }),
            )?,
            Format::Human => {
                abort_plan_human(stdout, &plan)?;
                writeln!(
                    stdout,
                    "dropped {} schema(s) and forgot the move's progress; the source schemas are as they were",
                    plan.schemas.len()
                )?;
            }
        }
        return Ok(0);
    }
    let opts = tenantmig::moves::MoveOptions {
        version: a.version.clone(),
        selection: Selection {
            shared: true,
            tenants: true,
            tenant_names: a.filter.tenants.clone(),
            exclude: a.filter.exclude.clone(),
        },
        dry_run: a.dry_run,
        args: args_for_ledger(),
    };
    let report = engine.migrate_to(&opts, ctrl_c()).await;
    if let Some(h) = &human {
        h.finish();
    }
    let report = report?;
    match (g.format, &report.plan) {
        (Format::Json, Some(plan)) => output::json_line(stdout, plan)?,
        (Format::Human, Some(plan)) => move_plan_human(stdout, plan, a.sql)?,
        (Format::Json, None) => output::json_line(stdout, &report)?,
        (Format::Human, None) => move_report_human(stdout, &report)?,
    }
    Ok(if report.dry_run || report.is_success() {
        0
    } else {
        1
    })
}

/// `tenantmig cutover VERSION`: the renames, or their reverse with `--revert`.
pub async fn cutover(g: &Global, stdout: &mut dyn Write, a: &CutoverArgs) -> Result<u8, Failure> {
    let engine = Engine::new(settings(g)?, &Selection::all(), Arc::new(NoEvents))?;
    let r = engine
        .cutover(&a.version, a.revert, a.dry_run, &args_for_ledger())
        .await?;
    match g.format {
        Format::Json => output::json_line(stdout, &r)?,
        Format::Human => cutover_human(stdout, &r)?,
    }
    Ok(0)
}

/// The plan of `migrate-to VERSION --dry-run`.
fn move_plan_human(
    w: &mut dyn Write,
    p: &tenantmig::moves::MovePlan,
    with_sql: bool,
) -> io::Result<()> {
    writeln!(
        w,
        "move to {} ({}{}); tenants from {}",
        p.version,
        p.strategy.as_str(),
        if p.consolidates {
            format!(", tenants consolidated into {}", p.shared.target)
        } else {
            String::new()
        },
        p.source
    )?;
    if p.to_create.is_empty() {
        writeln!(w, "schemas to create: none")?;
    } else {
        let names: Vec<&str> = p.to_create.iter().map(String::as_str).collect();
        writeln!(
            w,
            "schemas to create ({}): {}",
            p.to_create.len(),
            names_list(&names)
        )?;
    }
    let steps = |w: &mut dyn Write, steps: &[tenantmig::moves::StepPlan], done: &[String]| {
        for st in steps {
            let mark = if done.contains(&st.step) {
                " [done]"
            } else {
                ""
            };
            writeln!(w, "  {}: {}{mark}", st.step, st.what)?;
            if with_sql {
                for (file, sql) in &st.sql {
                    writeln!(w, "    -- {file}")?;
                    for line in sql.lines() {
                        writeln!(w, "    {line}")?;
                    }
                }
            }
        }
        Ok::<_, io::Error>(())
    };
    writeln!(w, "shared: {} -> {}", p.shared.source, p.shared.target)?;
    steps(w, &p.shared_steps, &p.shared.done)?;
    let target = if p.consolidates {
        p.shared.target.clone()
    } else {
        p.tenants
            .first()
            .map(|t| format!("{} (e.g. {})", "its own schema", t.target))
            .unwrap_or_else(|| "its own schema".into())
    };
    writeln!(w, "each tenant -> {target}:")?;
    steps(w, &p.tenant_steps, &[])?;
    let moved = p
        .tenants
        .iter()
        .filter(|t| t.refused.is_none() && t.is_complete())
        .count();
    for (left, names) in p.groups() {
        writeln!(
            w,
            "{}: {} ({})",
            tenants_word(names.len()),
            left.join(", "),
            names_list(&names)
        )?;
    }
    if moved > 0 {
        writeln!(w, "{} already moved and checked", tenants_word(moved))?;
    }
    for t in p.tenants.iter().filter(|t| t.refused.is_some()) {
        writeln!(
            w,
            "REFUSED {}: {}",
            t.source,
            t.refused.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}

/// The summary of a `migrate-to` run.
fn move_report_human(w: &mut dyn Write, r: &tenantmig::moves::MoveReport) -> io::Result<()> {
    let moved = r
        .tenants
        .iter()
        .filter(|o| o.state == OutcomeState::Succeeded)
        .count();
    let failed = r
        .tenants
        .iter()
        .filter(|o| matches!(o.state, OutcomeState::Failed | OutcomeState::Stopped))
        .count();
    let refused = r
        .tenants
        .iter()
        .filter(|o| o.state == OutcomeState::Refused)
        .count();
    let rows: i64 = r
        .shared
        .iter()
        .chain(&r.tenants)
        .flat_map(|o| &o.steps)
        .filter(|s| s.state == "done" && !s.step.starts_with("check"))
        .filter_map(|s| s.rows_written)
        .sum();
    writeln!(
        w,
        "move to {} ({}){}: shared {}; {} moved, {} failed, {refused} refused{}, {} already moved; {} rows written; {}",
        r.version,
        r.strategy.as_str(),
        r.run_id.map(|i| format!(", run {i}")).unwrap_or_default(),
        match &r.shared {
            Some(o) if o.state.is_failure() => "FAILED".to_string(),
            Some(o) => format!("{} -> {} done", o.source, o.target),
            None => "already moved, checked again".to_string(),
        },
        tenants_word(moved),
        failed,
        if r.not_reached.is_empty() {
            String::new()
        } else {
            format!(", {} not reached", r.not_reached.len())
        },
        r.tenants_already_moved,
        thousands(rows.max(0) as usize),
        secs(r.duration_ms)
    )?;
    for o in r.failures() {
        let what = match o.state {
            OutcomeState::Refused => "REFUSED",
            OutcomeState::Stopped => "STOPPED",
            OutcomeState::Vanished => "VANISHED",
            _ => "FAILED",
        };
        writeln!(
            w,
            "{what} {} -> {}: {}",
            o.source,
            o.target,
            o.error.as_deref().unwrap_or("")
        )?;
    }
    output::run_end(w, &r.not_reached, r.stopped, r.ledger_error.as_ref())?;
    if !r.is_success() {
        writeln!(
            w,
            "rerun `tenantmig migrate-to {}` to resume: finished steps are skipped",
            r.version
        )?;
    }
    Ok(())
}

/// What `migrate-to VERSION --abort` drops.
fn abort_plan_human(w: &mut dyn Write, p: &tenantmig::moves::AbortPlan) -> io::Result<()> {
    writeln!(
        w,
        "schemas created by the move to {} ({}):",
        p.version,
        p.schemas.len()
    )?;
    for s in &p.schemas {
        writeln!(w, "  {s}")?;
    }
    Ok(())
}

/// The renames of `cutover`.
fn cutover_human(w: &mut dyn Write, r: &tenantmig::moves::CutoverReport) -> io::Result<()> {
    let verb = match (r.dry_run, r.revert) {
        (true, false) => "would make {v} live",
        (true, true) => "would revert {v}",
        (false, false) => "{v} is live",
        (false, true) => "reverted {v}",
    }
    .replace("{v}", &r.version);
    writeln!(
        w,
        "{verb}: {} renames in one transaction{}",
        r.renames.len(),
        r.run_id.map(|i| format!(" (run {i})")).unwrap_or_default()
    )?;
    for x in &r.renames {
        writeln!(w, "  {} -> {}", x.from, x.to)?;
    }
    Ok(())
}
