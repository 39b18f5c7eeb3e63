//! `status`, `tenants` and `runs`: read-only views of the schemas, the
//! tenant list and the run ledger.

use std::io::{self, Write};
use std::sync::Arc;

use clap::{Args, Subcommand};
use tenantmig::ledger::{RunSchema, RunSummary};
use tenantmig::migration::MigrationSet;
use tenantmig::output::{
    self, Format, fmt_time, names_list, tenants_word, thousands, version_or_none, versions,
};
use tenantmig::state::SchemaState;
use tenantmig::tenants::TenantList;
use tenantmig::{Engine, NoEvents, Selection, StatusReport};

use super::common::{Failure, Global, SelectArgs, TenantFilter, settings};

#[derive(Debug, Args)]
pub struct RunsArgs {
    #[command(subcommand)]
    show: Option<RunsCommand>,
    /// How many runs to list, newest first.
    #[arg(long, default_value_t = 20, value_name = "N")]
    limit: i64,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// One run: command, start, end, outcome, and per schema the state, versions, error, duration and attempts.
    Show {
        /// The run's id (see `tenantmig runs`).
        id: i64,
    },
}

/// `tenantmig status`: exit 1 unless every schema is up to date.
pub async fn status(g: &Global, stdout: &mut dyn Write, a: &SelectArgs) -> Result<u8, Failure> {
    let selection = a.selection();
    let engine = Engine::new(settings(g)?, &selection, Arc::new(NoEvents))?;
    let report = engine.status(&selection).await?;
    match g.format {
        Format::Json => output::json_line(stdout, &report)?,
        Format::Human => status_human(stdout, &report, engine.shared_set(), engine.tenant_set())?,
    }
    Ok(if report.all_up_to_date() { 0 } else { 1 })
}

/// `tenantmig tenants`: exit 1 when a name was rejected.
pub async fn tenants(g: &Global, stdout: &mut dyn Write, f: &TenantFilter) -> Result<u8, Failure> {
    let selection = Selection {
        shared: false,
        tenants: false,
        tenant_names: f.tenants.clone(),
        exclude: f.exclude.clone(),
    };
    let engine = Engine::new(settings(g)?, &selection, Arc::new(NoEvents))?;
    let list = engine.tenants(&selection).await?;
    match g.format {
        Format::Json => output::json_line(stdout, &list)?,
        Format::Human => tenants_human(stdout, &list)?,
    }
    Ok(if list.invalid.is_empty() { 0 } else { 1 })
}

/// `tenantmig runs` and `runs show ID`.
pub async fn runs(g: &Global, stdout: &mut dyn Write, a: &RunsArgs) -> Result<u8, Failure> {
    let s = settings(g)?;
    let control = s.control_schema.clone();
    let engine = Engine::new(s, &Selection::default(), Arc::new(NoEvents))?;
    let mut conn = engine.connection().await?;
    match &a.show {
        None => {
            let runs = tenantmig::ledger::list_runs(&mut conn, &control, a.limit).await?;
            match g.format {
                Format::Json => output::json_line(stdout, &runs)?,
                Format::Human => runs_human(stdout, &runs)?,
            }
        }
        Some(RunsCommand::Show { id }) => {
            let (run, schemas) = tenantmig::ledger::show_run(&mut conn, &control, *id).await?;
            match g.format {
                Format::Json => output::json_line(
                    stdout,
                    &serde_json::json!({ "run": run, "schemas": schemas }),
                )?,
                Format::Human => run_detail_human(stdout, &run, &schemas)?,
            }
        }
    }
    Ok(0)
}

/// `tenantmig status` for people: the shared schema, then tenants grouped
/// by state ("9,996 up to date, 4 behind: t_0012 …").
fn status_human(
    w: &mut dyn Write,
    r: &StatusReport,
    shared_set: &MigrationSet,
    tenant_set: &MigrationSet,
) -> io::Result<()> {
    if let Some(s) = &r.shared {
        write!(
            w,
            "shared schema {}: {} (applied {}, head {}",
            s.schema,
            s.state.label(),
            version_or_none(shared_set, s.applied_version),
            version_or_none(shared_set, r.shared_head)
        )?;
        if !s.pending.is_empty() {
            write!(w, ", pending {}", versions(shared_set, &s.pending))?;
        }
        writeln!(w, ")")?;
        for p in &s.problems {
            writeln!(w, "  {}", p.describe(shared_set))?;
        }
        if let Some(d) = &s.detail {
            writeln!(w, "  {d}")?;
        }
    }
    if let Some(source) = &r.source {
        writeln!(
            w,
            "tenants: {} (from {source}; head {})",
            thousands(r.tenants.len()),
            version_or_none(tenant_set, r.tenant_head)
        )?;
        let groups = r.tenants_by_state();
        let summary: Vec<String> = groups
            .iter()
            .rev()
            .map(|(state, list)| format!("{} {}", thousands(list.len()), state.label()))
            .collect();
        if !summary.is_empty() {
            writeln!(w, "  {}", summary.join(", "))?;
        }
        for (state, list) in &groups {
            match state {
                SchemaState::UpToDate => {}
                SchemaState::Behind | SchemaState::Missing => {
                    let names: Vec<&str> = list.iter().map(|t| t.schema.as_str()).collect();
                    writeln!(w, "  {}: {}", state.label(), names_list(&names))?;
                }
                _ => {
                    writeln!(w, "  {}:", state.label())?;
                    for t in list.iter().take(50) {
                        let why = if t.problems.is_empty() {
                            t.detail.clone().unwrap_or_default()
                        } else {
                            t.problems
                                .iter()
                                .map(|p| p.describe(tenant_set))
                                .collect::<Vec<_>>()
                                .join("; ")
                        };
                        writeln!(w, "    {}: {why}", t.schema)?;
                        if t.state == SchemaState::Failed
                            && let Some(d) = &t.detail
                        {
                            writeln!(w, "      last failure: {d}")?;
                        }
                    }
                    if list.len() > 50 {
                        writeln!(
                            w,
                            "    … and {} more (use --format json for all)",
                            thousands(list.len() - 50)
                        )?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// `tenantmig tenants` for people.
fn tenants_human(w: &mut dyn Write, l: &TenantList) -> io::Result<()> {
    writeln!(
        w,
        "{} from {}",
        tenants_word(l.names.len()),
        l.source.describe()
    )?;
    for n in &l.names {
        writeln!(w, "{n}")?;
    }
    if !l.reserved.is_empty() {
        writeln!(
            w,
            "left out (shared, control or system schema): {}",
            l.reserved.join(", ")
        )?;
    }
    if !l.excluded.is_empty() {
        writeln!(w, "left out by --exclude: {}", l.excluded.join(", "))?;
    }
    for inv in &l.invalid {
        writeln!(w, "rejected: {inv}")?;
    }
    Ok(())
}

/// `tenantmig runs` for people.
fn runs_human(w: &mut dyn Write, runs: &[RunSummary]) -> io::Result<()> {
    if runs.is_empty() {
        return writeln!(w, "no runs recorded yet");
    }
    // The command column is as wide as its longest entry.
    let cw = runs
        .iter()
        .map(|r| r.command.chars().count())
        .max()
        .unwrap_or(0)
        .max(10);
    writeln!(
        w,
        "{:>6}  {:<cw$} {:<19}  {:>8}  {:<11} {:>7} {:>6} {:>7}",
        "id", "command", "started (UTC)", "took", "outcome", "ok", "failed", "skipped"
    )?;
    for r in runs {
        let took = r
            .finished_at
            .map(|f| {
                format!(
                    "{:.1}s",
                    (f - r.started_at).num_milliseconds() as f64 / 1000.0
                )
            })
            .unwrap_or_else(|| "-".into());
        writeln!(
            w,
            "{:>6}  {:<cw$} {:<19}  {:>8}  {:<11} {:>7} {:>6} {:>7}",
            r.id,
            r.command,
            fmt_time(&r.started_at),
            took,
            r.outcome,
            r.tenants_ok,
            r.tenants_failed,
            r.tenants_skipped
        )?;
    }
    Ok(())
}

/// `tenantmig runs show ID` for people.
fn run_detail_human(w: &mut dyn Write, run: &RunSummary, schemas: &[RunSchema]) -> io::Result<()> {
    writeln!(w, "run {}: {} {}", run.id, run.command, run.args)?;
    writeln!(w, "  started  {}", fmt_time(&run.started_at))?;
    writeln!(
        w,
        "  finished {}",
        run.finished_at
            .as_ref()
            .map(fmt_time)
            .unwrap_or_else(|| "-".into())
    )?;
    writeln!(
        w,
        "  outcome  {} ({} ok, {} failed, {}{} not reached)",
        run.outcome,
        run.tenants_ok,
        run.tenants_failed,
        if run.tenants_stopped > 0 {
            format!("{} stopped, ", run.tenants_stopped)
        } else {
            String::new()
        },
        run.tenants_skipped
    )?;
    if let Some(m) = &run.message {
        writeln!(w, "  note     {m}")?;
    }
    writeln!(
        w,
        "{:<32} {:<7} {:<12} {:>6} {:>6} {:>9} {:>8}  error",
        "schema", "phase", "state", "from", "to", "ms", "attempts"
    )?;
    let v = |x: Option<i64>| x.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    for s in schemas {
        writeln!(
            w,
            "{:<32} {:<7} {:<12} {:>6} {:>6} {:>9} {:>8}  {}",
            s.schema,
            s.phase,
            s.state,
            v(s.from_version),
            v(s.to_version),
            v(s.duration_ms),
            s.attempts,
            s.error.as_deref().unwrap_or("")
        )?;
        if let Some(stmt) = &s.failed_statement {
            writeln!(w, "{:<32} failed statement: {stmt}", "")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenantmig::migration::Migration;
    use tenantmig::state::{Goal, SchemaStatus};

    #[test]
    fn status_groups_tenants_by_state_instead_of_listing_them_all() {
        let set = MigrationSet::from_migrations(vec![
            Migration::new(1, "a", "x"),
            Migration::new(2, "b", "y"),
        ]);
        let mut tenants = Vec::new();
        for i in 0..1000 {
            let mut st = SchemaStatus::missing(format!("t_{i:04}"), &set);
            st.state = if i % 250 == 12 {
                SchemaState::Behind
            } else {
                SchemaState::UpToDate
            };
            tenants.push(st);
        }
        let r = StatusReport {
            shared: None,
            tenants,
            source: Some("test".into()),
            shared_head: None,
            tenant_head: Some(2),
            goal: Goal::Head,
        };
        let mut buf = Vec::new();
        status_human(&mut buf, &r, &set, &set).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.contains("996 up to date, 4 behind"), "{text}");
        assert!(
            text.contains("behind: t_0012, t_0262, t_0512, t_0762"),
            "{text}"
        );
        assert!(text.lines().count() < 10, "{text}");
    }
}
