//! `snapshot create | list | restore | prune`: rollback points.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use tenantmig::output::{self, Format, fmt_time, human_bytes, secs, thousands};
use tenantmig::{Engine, Error, NoEvents, Selection, Settings};

use super::common::{
    Failure, Global, TenantFilter, args_for_ledger, ctrl_c_saying, settings, sink,
};

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Copy the shared schema and every tenant (or only the --tenant ones) under dated names (<schema>_snap_<YYYYMMDD_HHMMSS>).
    Create {
        #[command(flatten)]
        filter: TenantFilter,
        /// Schemas copied at once [config: jobs; default: 4].
        #[arg(long, short = 'j', value_name = "N")]
        jobs: Option<usize>,
        /// List the schemas that would be copied and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List snapshots, newest first: id, time, state, schemas, rows and size.
    List,
    /// Put a snapshot's copies back under the schemas' names, in one transaction; the schemas they replace are kept as a new snapshot. Shows the renames; --yes confirms.
    Restore {
        /// The snapshot's id (see `tenantmig snapshot list`).
        id: i64,
        /// Confirm the restore.
        #[arg(long)]
        yes: bool,
        /// Show the renames and change nothing (exit 0).
        #[arg(long, conflicts_with = "yes")]
        dry_run: bool,
    },
    /// Drop the copies of snapshots older than a duration (never a restored copy, which is live); --yes confirms.
    Prune {
        /// Age, e.g. 7d, 12h, 30m.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        older_than: std::time::Duration,
        /// Confirm the drop.
        #[arg(long)]
        yes: bool,
        /// List what would be dropped and change nothing (exit 0).
        #[arg(long, conflicts_with = "yes")]
        dry_run: bool,
    },
}

/// `tenantmig snapshot ...`.
pub async fn snapshot(
    g: &Global,
    stdout: &mut dyn Write,
    c: &SnapshotCommand,
) -> Result<u8, Failure> {
    let s = settings(g)?;
    match c {
        SnapshotCommand::Create {
            filter,
            jobs,
            dry_run,
        } => create(g, stdout, s, filter, *jobs, *dry_run).await,
        SnapshotCommand::List => list(g, stdout, s).await,
        SnapshotCommand::Restore { id, yes, dry_run } => {
            restore(g, stdout, s, *id, *yes, *dry_run).await
        }
        SnapshotCommand::Prune {
            older_than,
            yes,
            dry_run,
        } => prune(g, stdout, s, *older_than, *yes, *dry_run).await,
    }
}

/// `snapshot create`: the list with `--dry-run`, else the copies.
async fn create(
    g: &Global,
    stdout: &mut dyn Write,
    s: Settings,
    filter: &TenantFilter,
    jobs: Option<usize>,
    dry_run: bool,
) -> Result<u8, Failure> {
    let jobs = jobs.unwrap_or(s.jobs);
    if jobs == 0 {
        return Err(Error::Usage {
            message: "--jobs must be at least 1".into(),
        }
        .into());
    }
    let selection = Selection {
        shared: filter.tenants.is_empty(),
        tenants: true,
        tenant_names: filter.tenants.clone(),
        exclude: filter.exclude.clone(),
    };
    let (events, human) = sink(g);
    let engine = Engine::new(s, &Selection::default(), events)?;
    if dry_run {
        let mut names = Vec::new();
        if selection.shared {
            names.push(engine.settings().shared_schema.clone());
        }
        names.extend(engine.tenants(&selection).await?.names);
        let stamp = chrono::Utc::now().format("%Y%m%d_%H%M%S").to_string();
        writeln!(
            stdout,
            "would copy {} schema(s), {jobs} at once, e.g. {} -> {}",
            names.len(),
            names.first().map(String::as_str).unwrap_or("-"),
            names
                .first()
                .map(|n| tenantmig::snapshot::snapshot_name(n, &stamp))
                .unwrap_or_default()
        )?;
        for n in &names {
            writeln!(stdout, "  {n}")?;
        }
        return Ok(0);
    }
    let r = engine
        .snapshot_create(
            &selection,
            jobs,
            &args_for_ledger(),
            ctrl_c_saying(
                "interrupted: stopping the copies in flight (dropping what they built) and starting no new one",
            ),
        )
        .await;
    if let Some(h) = &human {
        h.finish();
    }
    let r = r?;
    match g.format {
        Format::Json => output::json_line(stdout, &r)?,
        Format::Human => snapshot_report_human(stdout, &r)?,
    }
    Ok(if r.failed.is_empty() { 0 } else { 1 })
}

/// `snapshot list`.
async fn list(g: &Global, stdout: &mut dyn Write, s: Settings) -> Result<u8, Failure> {
    let engine = Engine::new(s, &Selection::default(), Arc::new(NoEvents))?;
    let list = engine.snapshot_list().await?;
    match g.format {
        Format::Json => output::json_line(stdout, &list)?,
        Format::Human => snapshots_human(stdout, &list)?,
    }
    Ok(0)
}

/// `snapshot restore ID`: the renames, done only with `--yes`.
async fn restore(
    g: &Global,
    stdout: &mut dyn Write,
    s: Settings,
    id: i64,
    yes: bool,
    dry_run: bool,
) -> Result<u8, Failure> {
    let engine = Engine::new(s, &Selection::default(), Arc::new(NoEvents))?;
    let r = engine
        .snapshot_restore(id, !yes, &args_for_ledger())
        .await?;
    match g.format {
        Format::Json => output::json_line(stdout, &r)?,
        Format::Human => restore_human(stdout, &r, yes)?,
    }
    if !yes && !dry_run {
        return Err(Error::Usage {
            message: format!(
                "restoring snapshot {id} replaces {} live schema(s) (kept as a new snapshot); nothing was changed. Rerun with --yes to confirm",
                r.renames.iter().filter(|x| x.to.contains("_snap_")).count()
            ),
        }
        .into());
    }
    Ok(0)
}

/// `snapshot prune --older-than D`: the list, dropped only with `--yes`.
async fn prune(
    g: &Global,
    stdout: &mut dyn Write,
    s: Settings,
    older_than: Duration,
    yes: bool,
    dry_run: bool,
) -> Result<u8, Failure> {
    let engine = Engine::new(s, &Selection::default(), Arc::new(NoEvents))?;
    let snaps = engine.snapshot_prune_plan(older_than).await?;
    if snaps.is_empty() {
        match g.format {
            Format::Json => output::json_line(
                stdout,
                &serde_json::json!({ "snapshots": [], "dropped": false }),
            )?,
            Format::Human => writeln!(
                stdout,
                "no snapshot is older than {}; nothing to prune",
                humantime::format_duration(older_than)
            )?,
        }
        return Ok(0);
    }
    match g.format {
        Format::Json => output::json_line(
            stdout,
            &serde_json::json!({ "snapshots": snaps, "dropped": yes }),
        )?,
        Format::Human => snapshots_human(stdout, &snaps)?,
    }
    if dry_run {
        return Ok(0);
    }
    if !yes {
        return Err(Error::Usage {
            message: format!(
                "prune drops the copies of {} snapshot(s) listed above; nothing was changed. Rerun with --yes to confirm",
                snaps.len()
            ),
        }
        .into());
    }
    let n = engine.snapshot_prune(&snaps, &args_for_ledger()).await?;
    if g.format == Format::Human {
        writeln!(
            stdout,
            "pruned {} snapshot(s): dropped {n} schema(s)",
            snaps.len()
        )?;
    }
    Ok(0)
}

/// The result of `snapshot create`.
fn snapshot_report_human(
    w: &mut dyn Write,
    r: &tenantmig::snapshot::SnapshotReport,
) -> io::Result<()> {
    let snap = &r.snapshot;
    let rows: i64 = snap.schemas.iter().filter_map(|x| x.rows).sum();
    let bytes: i64 = snap.schemas.iter().filter_map(|x| x.bytes).sum();
    writeln!(
        w,
        "snapshot {} ({}): {} schema(s) copied, {} rows ({}), in {}",
        snap.id,
        snap.state,
        snap.schemas.len(),
        thousands(rows.max(0) as usize),
        human_bytes(bytes),
        secs(r.duration_ms)
    )?;
    for x in &snap.schemas {
        writeln!(w, "  {} -> {}", x.schema, x.copy)?;
    }
    for (schema, why) in &r.failed {
        writeln!(w, "FAILED {schema}: {why}")?;
    }
    if r.failed.is_empty() {
        writeln!(
            w,
            "restore it with: tenantmig snapshot restore {} --yes",
            snap.id
        )?;
    }
    Ok(())
}

/// `snapshot list`.
fn snapshots_human(w: &mut dyn Write, list: &[tenantmig::snapshot::Snapshot]) -> io::Result<()> {
    if list.is_empty() {
        return writeln!(w, "no snapshots (take one with tenantmig snapshot create)");
    }
    writeln!(
        w,
        "{:>4}  {:<20}  {:<9}  {:>7}  {:>12}  {:>10}  note",
        "id", "taken (UTC)", "state", "schemas", "rows", "size"
    )?;
    for s in list {
        let counted = s.schemas.iter().any(|x| x.rows.is_some());
        let rows: i64 = s.schemas.iter().filter_map(|x| x.rows).sum();
        let bytes: i64 = s.schemas.iter().filter_map(|x| x.bytes).sum();
        let (rows, bytes) = if counted {
            (thousands(rows.max(0) as usize), human_bytes(bytes))
        } else {
            ("-".to_string(), "-".to_string())
        };
        let gone = s
            .schemas
            .iter()
            .filter(|x| !x.exists && x.restored_at.is_none())
            .count();
        let mut note = s.note.clone().unwrap_or_default();
        if gone > 0 {
            if !note.is_empty() {
                note.push_str("; ");
            }
            note.push_str(&format!("{gone} copy(ies) dropped since"));
        }
        writeln!(
            w,
            "{:>4}  {:<20}  {:<9}  {:>7}  {:>12}  {:>10}  {note}",
            s.id,
            fmt_time(&s.created_at),
            s.state,
            s.schemas.len(),
            rows,
            bytes
        )?;
    }
    Ok(())
}

/// `snapshot restore` (done, or what it would do).
fn restore_human(
    w: &mut dyn Write,
    r: &tenantmig::snapshot::RestoreReport,
    done: bool,
) -> io::Result<()> {
    writeln!(
        w,
        "{} snapshot {}: {} renames in one transaction",
        if done { "restored" } else { "would restore" },
        r.id,
        r.renames.len()
    )?;
    for x in &r.renames {
        writeln!(w, "  {} -> {}", x.from, x.to)?;
    }
    if let Some(id) = r.replaced_snapshot {
        writeln!(
            w,
            "the schemas it replaced are snapshot {id}: tenantmig snapshot restore {id} --yes undoes this restore"
        )?;
    }
    Ok(())
}
