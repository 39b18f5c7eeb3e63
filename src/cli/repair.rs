//! `repair`: clear a failed `-- no-transaction` row, mark it applied, or
//! re-record checksums; shows the rows first and changes them only with
//! `--yes`.

use std::io::{self, Write};
use std::sync::Arc;

use clap::Args;
use tenantmig::migration::MigrationSet;
use tenantmig::output::{self, Format, names_list, thousands};
use tenantmig::repair::RepairAction;
use tenantmig::{Engine, Error, NoEvents};

use super::common::{Failure, Global, SelectArgs, args_for_ledger, settings};

#[derive(Debug, Args)]
pub struct RepairArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Mark the failed migration as applied (it was completed by hand) instead of clearing its row so it runs again.
    #[arg(long, conflicts_with = "checksums")]
    mark_applied: bool,
    /// Instead: re-record the checksums of applied migrations whose files were edited harmlessly (whitespace, comments).
    #[arg(long)]
    checksums: bool,
    /// Only show what would change (also what happens without --yes, but with exit code 0).
    #[arg(long, conflicts_with = "yes")]
    dry_run: bool,
    /// Confirm: without it, repair only shows what it would change.
    #[arg(long)]
    yes: bool,
}

/// `tenantmig repair`: the candidates, then the change with `--yes`.
pub async fn repair(g: &Global, stdout: &mut dyn Write, a: &RepairArgs) -> Result<u8, Failure> {
    let selection = a.select.selection();
    let engine = Engine::new(settings(g)?, &selection, Arc::new(NoEvents))?;
    let (items, action) = if a.checksums {
        let items = engine.checksum_candidates(&selection).await?;
        (items, RepairAction::Checksums)
    } else if a.mark_applied {
        (
            engine.repair_candidates(&selection).await?,
            RepairAction::MarkApplied,
        )
    } else {
        (
            engine.repair_candidates(&selection).await?,
            RepairAction::Clear,
        )
    };
    if items.is_empty() && g.format == Format::Json {
        output::json_line(stdout, &items)?;
        return Ok(0);
    }
    if items.is_empty() {
        writeln!(
            stdout,
            "nothing to repair: no schema has {}",
            if a.checksums {
                "an applied migration whose checksum differs from its file"
            } else {
                "a failed migration row"
            }
        )?;
        return Ok(0);
    }
    let schemas = items
        .iter()
        .map(|i| i.schema.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    match g.format {
        Format::Json => output::json_line(stdout, &items)?,
        Format::Human if a.checksums => {
            checksum_repairs_human(stdout, &items, engine.shared_set(), engine.tenant_set())?
        }
        Format::Human => {
            let verb = if a.mark_applied {
                "mark as applied"
            } else {
                "clear (so it runs again)"
            };
            for i in &items {
                writeln!(
                    stdout,
                    "{} {}: failed migration {} — will {verb}{}",
                    i.phase.as_str(),
                    i.schema,
                    i.version,
                    i.detail
                        .as_ref()
                        .map(|d| format!("\n    last failure: {d}"))
                        .unwrap_or_default()
                )?;
            }
        }
    }
    if a.dry_run {
        return Ok(0);
    }
    if !a.yes {
        let message = if a.checksums {
            format!(
                "repair --checksums would re-record {} checksum(s) in {schemas} schema(s), and it cannot tell a harmless edit (whitespace, comments) from changed SQL: check the edits above (e.g. with `git diff` on the files), then rerun with --yes to confirm",
                items.len()
            )
        } else {
            format!(
                "repair changes history rows of {schemas} schema(s); check each schema by hand first (e.g. drop an INVALID index left by CREATE INDEX CONCURRENTLY), then rerun with --yes to confirm"
            )
        };
        return Err(Error::Usage { message }.into());
    }
    let run = engine.repair(&items, action, &args_for_ledger()).await?;
    match g.format {
        Format::Json => output::json_line(
            stdout,
            &serde_json::json!({ "run_id": run, "repaired": items.len(), "schemas": schemas }),
        )?,
        Format::Human => writeln!(
            stdout,
            "repaired {} row(s) in {schemas} schema(s) (run {run}); run `tenantmig migrate` to continue",
            items.len()
        )?,
    }
    Ok(0)
}

/// `repair --checksums` for people: each edited migration once, with the
/// checksum recorded in the schemas and the file's, and the schemas that
/// would change.
fn checksum_repairs_human(
    w: &mut dyn Write,
    items: &[tenantmig::repair::RepairItem],
    shared_set: &MigrationSet,
    tenant_set: &MigrationSet,
) -> io::Result<()> {
    type Key<'a> = (&'a str, i64, &'a str, &'a str);
    let mut groups: std::collections::BTreeMap<Key<'_>, Vec<&str>> = Default::default();
    for i in items {
        if let Some((applied, local)) = &i.checksums {
            groups
                .entry((i.phase.as_str(), i.version, applied, local))
                .or_default()
                .push(&i.schema);
        }
    }
    for ((phase, version, applied, local), names) in groups {
        let set = if phase == "shared" {
            shared_set
        } else {
            tenant_set
        };
        let (desc, path) = set
            .index_of(version)
            .map(|i| {
                (
                    set.migrations[i].description.as_str(),
                    set.migrations[i].path.display().to_string(),
                )
            })
            .unwrap_or_default();
        writeln!(
            w,
            "{phase} {} {desc} ({path}): checksum {}… recorded, file now {}…, in {}: {}",
            set.fmt_version(version),
            &applied[..applied.len().min(16)],
            &local[..local.len().min(16)],
            if names.len() == 1 {
                "1 schema".to_string()
            } else {
                format!("{} schemas", thousands(names.len()))
            },
            names_list(&names)
        )?;
    }
    Ok(())
}
