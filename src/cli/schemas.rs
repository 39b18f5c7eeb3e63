//! `create-schema`, `drop-schema`, `copy-into-new-schema` and `tenant add`
//! / `tenant remove`: one schema at a time, destructive steps only with
//! `--yes`.

use std::io::{self, Write};
use std::sync::Arc;

use clap::{Args, Subcommand};
use tenantmig::output::{self, Format, human_bytes, secs, thousands};
use tenantmig::{CopyOptions, Engine, Error, Goal, MigrateOptions, NoEvents, Selection, Verify};

use super::common::{
    ApplySet, Confirm, Failure, Global, args_for_ledger, ctrl_c, ctrl_c_saying, settings, sink,
};
use super::migrate::{print_plan, run_summary_human};

#[derive(Debug, Args)]
pub struct CreateSchemaArgs {
    /// The schema to create (quote names with capitals or spaces for the shell).
    name: String,
    /// Accept an existing schema instead of failing (with --apply, it is still brought to head).
    #[arg(long)]
    if_not_exists: bool,
    /// Bring the new schema to head with this migration set right away.
    #[arg(long, value_enum, value_name = "SET")]
    apply: Option<ApplySet>,
    /// Say what would be created (and, with --apply, which migrations would run) and change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
pub struct DropSchemaArgs {
    /// The schema to drop.
    name: String,
    /// Succeed quietly when the schema does not exist.
    #[arg(long)]
    if_exists: bool,
    /// Confirm: without it, only show what would be dropped (tables, approximate rows, size) and exit 2.
    #[arg(long)]
    yes: bool,
    /// Also allow dropping the shared or control schema (with --yes).
    #[arg(long)]
    allow_shared: bool,
    /// Only show what would be dropped (exit 0).
    #[arg(long, conflicts_with = "yes")]
    dry_run: bool,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The schema to copy.
    source: String,
    /// The new schema; it must not exist.
    target: String,
    /// Copy the structure only; the history table's rows are still copied, so the copy knows its version.
    #[arg(long)]
    no_data: bool,
    /// Connections copying tables and building indexes at once [config: jobs; default: 4].
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// Check before the copy is put in place: row counts per table, row counts and row hashes, or nothing.
    #[arg(long, value_enum, default_value_t = Verify::Counts)]
    verify: Verify,
    /// Check the names and show what would be copied (tables, approximate rows, size); change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant schema, bring it to head and register it.
    Add {
        /// The new tenant's schema.
        name: String,
        /// Copy this up-to-date schema instead of running the tenant migrations (faster for long histories).
        #[arg(long, value_name = "SCHEMA")]
        from_template: Option<String>,
        /// Say how the tenant would be created and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Drop a tenant's schema and unregister it; without --yes only show what would go.
    Remove {
        /// The tenant's schema.
        name: String,
        /// Confirm the drop.
        #[arg(long)]
        yes: bool,
        /// Only show what would be dropped (exit 0).
        #[arg(long, conflicts_with = "yes")]
        dry_run: bool,
    },
}

/// `tenantmig create-schema`, brought to head with `--apply`.
pub async fn create_schema(
    g: &Global,
    stdout: &mut dyn Write,
    a: &CreateSchemaArgs,
) -> Result<u8, Failure> {
    let mut s = settings(g)?;
    let selection = match a.apply {
        Some(ApplySet::Shared) => {
            s.shared_schema = a.name.clone();
            Selection {
                shared: true,
                tenants: false,
                ..Selection::default()
            }
        }
        Some(ApplySet::Tenant) => Selection {
            shared: false,
            tenants: true,
            tenant_names: vec![a.name.clone()],
            exclude: Vec::new(),
        },
        None => Selection::default(),
    };
    let (events, human) = sink(g);
    let engine = Engine::new(s, &selection, events)?;
    if a.dry_run {
        let exists = engine.schema_exists(&a.name).await?;
        if exists && !a.if_not_exists {
            return Err(Error::Usage {
                message: format!(
                    "schema {:?} already exists; pass --if-not-exists to accept it",
                    a.name
                ),
            }
            .into());
        }
        writeln!(
            stdout,
            "{} schema {}",
            if exists {
                "would keep the existing"
            } else {
                "would create"
            },
            a.name
        )?;
        if a.apply.is_some() {
            let plan = engine.plan_for(&selection, Goal::Head).await?;
            print_plan(stdout, g.format, &engine, &plan, false)?;
        }
        return Ok(0);
    }
    let created = engine.create_schema(&a.name, a.if_not_exists).await?;
    let mut report = None;
    if a.apply.is_some() {
        let opts = MigrateOptions {
            selection,
            canary: 0,
            dry_run: false,
            args: args_for_ledger(),
            goal: Default::default(),
        };
        let r = engine.migrate(&opts, ctrl_c()).await;
        if let Some(h) = &human {
            h.finish();
        }
        report = Some(r?);
    }
    match g.format {
        Format::Json => output::json_line(
            stdout,
            &serde_json::json!({ "schema": a.name, "created": created, "run": report }),
        )?,
        Format::Human => {
            writeln!(
                stdout,
                "{} schema {}",
                if created {
                    "created"
                } else {
                    "kept the existing"
                },
                a.name
            )?;
            if let Some(r) = &report {
                run_summary_human(stdout, r)?;
            }
        }
    }
    Ok(match &report {
        Some(r) if !r.is_success() => 1,
        _ => 0,
    })
}

/// `tenantmig drop-schema`: a preview, the drop only with `--yes`.
pub async fn drop_schema(
    g: &Global,
    stdout: &mut dyn Write,
    a: &DropSchemaArgs,
) -> Result<u8, Failure> {
    let s = settings(g)?;
    tenantmig::lifecycle::check_droppable(&a.name, &s, a.allow_shared)?;
    let engine = Engine::new(s, &Selection::default(), Arc::new(NoEvents))?;
    drop_command(
        &engine,
        g,
        stdout,
        &a.name,
        a.if_exists,
        Confirm::from_flags(a.dry_run, a.yes),
        "drop-schema",
    )
    .await
}

/// `tenantmig copy-into-new-schema`: all or nothing, recorded as a run.
pub async fn copy_into_new_schema(
    g: &Global,
    stdout: &mut dyn Write,
    a: &CopyArgs,
) -> Result<u8, Failure> {
    let s = settings(g)?;
    let jobs = a.jobs.unwrap_or(s.jobs);
    let (events, human) = sink(g);
    let engine = Engine::new(s, &Selection::default(), events)?;
    if a.dry_run {
        return copy_dry_run(&engine, g, stdout, a).await;
    }
    let opts = CopyOptions {
        data: !a.no_data,
        verify: a.verify,
        ..CopyOptions::new(&a.source, &a.target, jobs)
    };
    let started = std::time::Instant::now();
    let report = engine
        .copy_schema(
            &opts,
            ctrl_c_saying("interrupted: stopping the copy and dropping what it built"),
        )
        .await;
    if let Some(h) = &human {
        h.finish();
    }
    let (report, error) = match report {
        Ok(r) => (Some(r), None),
        Err(e) => (None, Some(e)),
    };
    // A copy that got as far as running is a run in the ledger.
    if !matches!(
        error,
        Some(Error::Usage { .. } | Error::InvalidName(_) | Error::Connect { .. })
    ) {
        let msg = error.as_ref().map(|e| e.to_string());
        let _ = engine
            .record_run(
                "copy-into-new-schema",
                &args_for_ledger(),
                &a.target,
                started,
                msg.as_deref(),
            )
            .await;
    }
    if let Some(e) = error {
        return Err(e.into());
    }
    let report = report.expect("a report when there is no error");
    match g.format {
        Format::Json => output::json_line(stdout, &report)?,
        Format::Human => copy_report_human(stdout, &report)?,
    }
    Ok(0)
}

/// `tenantmig tenant add | remove`.
pub async fn tenant(g: &Global, stdout: &mut dyn Write, c: &TenantCommand) -> Result<u8, Failure> {
    match c {
        TenantCommand::Add {
            name,
            from_template,
            dry_run,
        } => tenant_add(g, stdout, name, from_template.as_deref(), *dry_run).await,
        TenantCommand::Remove { name, yes, dry_run } => {
            tenant_remove(g, stdout, name, *yes, *dry_run).await
        }
    }
}

/// `tenant add`: create, bring to head (or copy a template), register.
async fn tenant_add(
    g: &Global,
    stdout: &mut dyn Write,
    name: &str,
    from_template: Option<&str>,
    dry_run: bool,
) -> Result<u8, Failure> {
    let selection = Selection {
        shared: false,
        tenants: true,
        tenant_names: vec![name.to_string()],
        exclude: Vec::new(),
    };
    let (events, human) = sink(g);
    let engine = Engine::new(settings(g)?, &selection, events)?;
    if dry_run {
        tenantmig::ident::validate_schema_name(name).map_err(Error::from)?;
        if engine.schema_exists(name).await? {
            return Err(Error::Usage {
                message: format!(
                    "schema {name:?} already exists; to bring it to head run `tenantmig migrate --tenant {name}`"
                ),
            }
            .into());
        }
        let how = match from_template {
            Some(t) => format!("by copying the template schema {t}"),
            None => {
                let set = engine.tenant_set();
                format!(
                    "by applying the {} tenant migrations{}",
                    set.len(),
                    set.head()
                        .map(|h| format!(" (up to {})", set.fmt_version(h)))
                        .unwrap_or_default()
                )
            }
        };
        let register = if engine.settings().tenants.query.is_some() {
            "; the tenant list comes from tenants.query, so add it to the application's table too"
        } else {
            ", then register it"
        };
        writeln!(stdout, "would create tenant schema {name} {how}{register}")?;
        return Ok(0);
    }
    let r = engine
        .tenant_add(name, from_template, &args_for_ledger(), ctrl_c())
        .await;
    if let Some(h) = &human {
        h.finish();
    }
    let r = r?;
    match g.format {
        Format::Json => output::json_line(stdout, &r)?,
        Format::Human => tenant_add_human(stdout, &r)?,
    }
    Ok(0)
}

/// `tenant remove`: as `drop-schema`, and unregister.
async fn tenant_remove(
    g: &Global,
    stdout: &mut dyn Write,
    name: &str,
    yes: bool,
    dry_run: bool,
) -> Result<u8, Failure> {
    let s = settings(g)?;
    tenantmig::lifecycle::check_droppable(name, &s, false)?;
    let engine = Engine::new(s, &Selection::default(), Arc::new(NoEvents))?;
    let confirm = Confirm::from_flags(dry_run, yes);
    drop_command(&engine, g, stdout, name, false, confirm, "tenant remove").await
}

/// `copy-into-new-schema --dry-run`: the names checked, the source's
/// tables listed, nothing changed.
async fn copy_dry_run(
    engine: &Engine,
    g: &Global,
    stdout: &mut dyn Write,
    a: &CopyArgs,
) -> Result<u8, Failure> {
    tenantmig::ident::validate_schema_name(&a.source).map_err(Error::from)?;
    tenantmig::ident::validate_schema_name(&a.target).map_err(Error::from)?;
    if engine.schema_exists(&a.target).await? {
        return Err(Error::Usage {
            message: format!(
                "schema {:?} already exists; copy-into-new-schema only creates new schemas (drop it first with `tenantmig drop-schema`)",
                a.target
            ),
        }
        .into());
    }
    let Some(preview) = engine.drop_preview(&a.source).await? else {
        return Err(Error::Usage {
            message: format!(
                "schema {:?} does not exist (names are case-sensitive)",
                a.source
            ),
        }
        .into());
    };
    match g.format {
        Format::Json => output::json_line(
            stdout,
            &serde_json::json!({ "would_copy": preview, "into": a.target, "data": !a.no_data }),
        )?,
        Format::Human => {
            let rows: i64 = preview
                .tables
                .iter()
                .filter_map(|t| t.approx_rows)
                .map(|r| r.max(0))
                .sum();
            writeln!(
                stdout,
                "would copy schema {} into the new schema {}: {} tables, about {} rows, {}{}",
                a.source,
                a.target,
                preview.tables.len(),
                output::thousands(rows as usize),
                output::human_bytes(preview.bytes),
                if a.no_data {
                    " (structure only: --no-data)"
                } else {
                    ""
                }
            )?;
        }
    }
    Ok(0)
}

/// `drop-schema` and `tenant remove`: preview, then drop only with `--yes`.
async fn drop_command(
    engine: &Engine,
    g: &Global,
    stdout: &mut dyn Write,
    name: &str,
    if_exists: bool,
    confirm: Confirm,
    command: &str,
) -> Result<u8, Failure> {
    let Some(preview) = engine.drop_preview(name).await? else {
        if if_exists {
            writeln!(
                io::stderr(),
                "schema {name} does not exist; nothing to drop"
            )?;
            return Ok(0);
        }
        let hint = if command == "drop-schema" {
            "; pass --if-exists to accept that"
        } else {
            ""
        };
        return Err(Error::Usage {
            message: format!("schema {name:?} does not exist (names are case-sensitive{hint})"),
        }
        .into());
    };
    if confirm != Confirm::Yes {
        match g.format {
            Format::Json => output::json_line(
                stdout,
                &serde_json::json!({ "would_drop": preview, "dropped": false }),
            )?,
            Format::Human => drop_preview_human(stdout, &preview)?,
        }
        if confirm == Confirm::Preview {
            return Ok(0);
        }
        return Err(Error::Usage {
            message: format!(
                "{command} is destructive: it drops schema {name:?} and everything in it; nothing was changed. Rerun with --yes to confirm"
            ),
        }
        .into());
    }
    let report = engine
        .drop_schema(name, command, &args_for_ledger())
        .await?;
    match g.format {
        Format::Json => output::json_line(stdout, &report)?,
        Format::Human => {
            drop_preview_human(stdout, &preview)?;
            writeln!(
                stdout,
                "dropped schema {name}{}{}",
                if report.unregistered {
                    " and removed it from the tenant registry"
                } else {
                    ""
                },
                report
                    .run_id
                    .map(|i| format!(" (run {i})"))
                    .unwrap_or_default()
            )?;
            if command == "tenant remove" && engine.settings().tenants.query.is_some() {
                writeln!(
                    stdout,
                    "  note: tenants come from tenants.query (the application's own table): remove {name} there too"
                )?;
            }
        }
    }
    Ok(0)
}

/// The result of `copy-into-new-schema`.
fn copy_report_human(w: &mut dyn Write, r: &tenantmig::copy::CopyReport) -> io::Result<()> {
    writeln!(
        w,
        "copied schema {} into {}: {} objects, {} tables, {} rows ({}), {} indexes, in {} with {} connection{}",
        r.source,
        r.target,
        r.objects,
        r.tables,
        thousands(r.rows.max(0) as usize),
        human_bytes(r.bytes),
        r.indexes,
        secs(r.duration_ms),
        r.jobs,
        if r.jobs == 1 { "" } else { "s" }
    )?;
    let t = &r.timings;
    writeln!(
        w,
        "  objects {} | rows {} | indexes {} | constraints and the rest {} | check {}",
        secs(t.schema_ms),
        secs(t.data_ms),
        secs(t.indexes_ms),
        secs(t.constraints_ms),
        secs(t.verify_ms)
    )?;
    match r.verify {
        tenantmig::copy::Verify::None => writeln!(w, "  not checked (--verify none)")?,
        v => writeln!(
            w,
            "  checked: {} of {} tables match the source",
            if v == tenantmig::copy::Verify::Checksums {
                "row counts and row hashes"
            } else {
                "row counts"
            },
            r.checks.len()
        )?,
    }
    for warning in &r.warnings {
        writeln!(w, "  warning: {warning}")?;
    }
    Ok(())
}

/// What `drop-schema` or `tenant remove` would remove.
fn drop_preview_human(w: &mut dyn Write, p: &tenantmig::lifecycle::DropPreview) -> io::Result<()> {
    let rows: i64 = p.tables.iter().filter_map(|t| t.approx_rows).sum();
    writeln!(
        w,
        "schema {}: {} tables, about {} rows, {}",
        p.schema,
        p.tables.len(),
        thousands(rows.max(0) as usize),
        human_bytes(p.bytes)
    )?;
    for t in p.tables.iter().take(20) {
        writeln!(
            w,
            "  {:<32} {:<18} {:>14} rows {:>12}",
            t.name,
            t.kind,
            t.approx_rows
                .map(|n| format!("~{}", thousands(n.max(0) as usize)))
                .unwrap_or_else(|| "?".into()),
            human_bytes(t.bytes)
        )?;
    }
    if p.tables.len() > 20 {
        writeln!(w, "  … and {} more tables", p.tables.len() - 20)?;
    }
    if !p.other_objects.is_empty() {
        let parts: Vec<String> = p
            .other_objects
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        writeln!(w, "  also: {}", parts.join(", "))?;
    }
    for d in &p.dependents {
        writeln!(w, "  outside the schema, also dropped: {d}")?;
    }
    if p.registered {
        writeln!(
            w,
            "  it is in the tenant registry and will be removed from it"
        )?;
    }
    Ok(())
}

/// The result of `tenant add`.
fn tenant_add_human(
    w: &mut dyn Write,
    r: &tenantmig::lifecycle::TenantAddReport,
) -> io::Result<()> {
    use tenantmig::lifecycle::TenantFill;
    let how = match &r.fill {
        TenantFill::Replay { run } => format!(
            "ran {} tenant migrations{}",
            run.tenants.first().map(|o| o.applied.len()).unwrap_or(0),
            run.run_id
                .map(|i| format!(" (run {i})"))
                .unwrap_or_default()
        ),
        TenantFill::Template { copy } => format!(
            "copied template {} ({} tables, {} rows)",
            copy.source,
            copy.tables,
            thousands(copy.rows.max(0) as usize)
        ),
    };
    writeln!(
        w,
        "added tenant {} at version {}: {how}, in {}{}",
        r.schema,
        r.version
            .map(|v| v.to_string())
            .unwrap_or_else(|| "none".into()),
        secs(r.duration_ms),
        if r.registered { "; registered" } else { "" }
    )?;
    if let Some(n) = &r.note {
        writeln!(w, "  note: {n}")?;
    }
    Ok(())
}
