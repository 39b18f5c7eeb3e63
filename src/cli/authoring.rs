//! `new`, `history` and `show`: writing and reading migration files, no
//! database needed.

use std::io::{self, Write};

use clap::Args;
use tenantmig::Error;
use tenantmig::migration::MigrationSet;
use tenantmig::output::{self, Format};

use super::common::{ApplySet, Failure, Global, settings};

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The set the migration belongs to.
    #[arg(value_enum)]
    set: ApplySet,
    /// What the migration does, in words (becomes the file name: "add tags" -> 0010_add_tags.sql).
    #[arg(required = true, num_args = 1..)]
    description: Vec<String>,
    /// Write an .up.sql/.down.sql pair, so `rollback` can undo it.
    #[arg(long)]
    reversible: bool,
    /// How to number it: as the folder does (auto), the last version + 1, or the UTC time [config: version_style; default: auto].
    #[arg(long, value_enum)]
    style: Option<tenantmig::authoring::VersionStyle>,
    /// Print the file names it would write, and write nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this set [default: both].
    #[arg(value_enum)]
    set: Option<ApplySet>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The migration's version (e.g. 9 or 0009).
    version: i64,
    /// Print the .down.sql instead.
    #[arg(long)]
    down: bool,
    /// The set to look in [default: tenant, then shared].
    #[arg(long, value_enum)]
    set: Option<ApplySet>,
}

/// `tenantmig new SET DESCRIPTION`: the next file (or pair).
pub async fn new(g: &Global, stdout: &mut dyn Write, a: &NewArgs) -> Result<u8, Failure> {
    let s = settings(g)?;
    let dir = match a.set {
        ApplySet::Shared => &s.shared_migrations,
        ApplySet::Tenant => &s.tenant_migrations,
    };
    let files = tenantmig::authoring::new_migration(
        dir,
        &a.description.join(" "),
        a.reversible,
        a.style.unwrap_or(s.version_style),
        chrono::Utc::now(),
        a.dry_run,
    )?;
    match g.format {
        Format::Json => output::json_line(stdout, &files)?,
        Format::Human => {
            let verb = if a.dry_run { "would create" } else { "created" };
            for f in &files {
                writeln!(stdout, "{verb} {}", f.display())?;
            }
        }
    }
    Ok(0)
}

/// `tenantmig history [SET]`.
pub async fn history(g: &Global, stdout: &mut dyn Write, a: &HistoryArgs) -> Result<u8, Failure> {
    let s = settings(g)?;
    let mut sets = Vec::new();
    for (set, name, dir) in [
        (ApplySet::Shared, "shared", &s.shared_migrations),
        (ApplySet::Tenant, "tenant", &s.tenant_migrations),
    ] {
        if a.set.is_none_or(|x| x == set) {
            sets.push((name, tenantmig::MigrationSet::load(dir)?));
        }
    }
    match g.format {
        Format::Json => output::json_line(
            stdout,
            &sets
                .iter()
                .map(|(name, set)| history_json(name, set))
                .collect::<Vec<_>>(),
        )?,
        Format::Human => {
            for (name, set) in &sets {
                history_human(stdout, name, set)?;
            }
        }
    }
    Ok(0)
}

/// `tenantmig show VERSION`: the SQL (or the .down.sql).
pub async fn show(g: &Global, stdout: &mut dyn Write, a: &ShowArgs) -> Result<u8, Failure> {
    let s = settings(g)?;
    let mut found = None;
    for (set, dir) in [
        (ApplySet::Tenant, &s.tenant_migrations),
        (ApplySet::Shared, &s.shared_migrations),
    ] {
        if a.set.is_some_and(|x| x != set) || (a.set.is_none() && !dir.is_dir()) {
            continue;
        }
        let loaded = tenantmig::MigrationSet::load(dir)?;
        if let Some(i) = loaded.index_of(a.version) {
            found = Some(loaded.migrations[i].clone());
            break;
        }
    }
    let Some(m) = found else {
        return Err(Error::Usage {
            message: format!(
                "no migration has version {} (see tenantmig history)",
                a.version
            ),
        }
        .into());
    };
    let sql = if a.down {
        m.down_sql.clone().ok_or_else(|| Error::Usage {
            message: format!(
                "{} is not reversible: it has no .down.sql file",
                m.path.display()
            ),
        })?
    } else {
        m.sql.clone()
    };
    match g.format {
        Format::Json => output::json_line(
            stdout,
            &serde_json::json!({
                "version": m.version, "description": m.description,
                "path": m.path, "down": a.down, "sql": sql,
            }),
        )?,
        Format::Human => {
            let path = m.path.display().to_string();
            let path = if a.down {
                path.replace(".up.sql", ".down.sql")
            } else {
                path
            };
            writeln!(stdout, "-- {path}")?;
            write!(stdout, "{sql}")?;
            if !sql.ends_with('\n') {
                writeln!(stdout)?;
            }
        }
    }
    Ok(0)
}

/// `history` as JSON: one object per set.
fn history_json(name: &str, set: &MigrationSet) -> serde_json::Value {
    serde_json::json!({
        "set": name,
        "dir": set.dir,
        "migrations": set.migrations.iter().map(|m| serde_json::json!({
            "version": m.version,
            "description": m.description,
            "checksum": hex::encode(&m.checksum),
            "reversible": m.is_reversible(),
            "no_transaction": m.no_tx,
            "path": m.path,
        })).collect::<Vec<_>>(),
    })
}

/// `history` for people: the set's migrations in order.
fn history_human(w: &mut dyn Write, name: &str, set: &MigrationSet) -> io::Result<()> {
    writeln!(
        w,
        "{name} migrations ({}, {}):",
        set.dir.display(),
        set.len()
    )?;
    let width = set
        .migrations
        .iter()
        .map(|m| m.description.len())
        .max()
        .unwrap_or(0)
        .max("description".len());
    writeln!(
        w,
        "  {:<vw$}  {:<width$}  {:<16}  flags",
        "version",
        "description",
        "checksum",
        vw = set.version_width.max(7)
    )?;
    for m in &set.migrations {
        let mut flags = Vec::new();
        if m.is_reversible() {
            flags.push("reversible");
        }
        if m.no_tx {
            flags.push("no-transaction");
        }
        writeln!(
            w,
            "  {:<vw$}  {:<width$}  {:<16}  {}",
            set.fmt_version(m.version).to_string(),
            m.description,
            tenantmig::migration::short_checksum(&m.checksum),
            flags.join(", "),
            vw = set.version_width.max(7)
        )?;
    }
    Ok(())
}
