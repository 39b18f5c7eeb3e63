//! `verify`: the drift check of every tenant's structure against a
//! reference.

use std::io::{self, Write};
use std::sync::Arc;

use clap::Args;
use tenantmig::output::{self, Format, names_list, tenants_word, thousands};
use tenantmig::{Engine, NoEvents, Selection};

use super::common::{Failure, Global, TenantFilter, settings};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    filter: TenantFilter,
    /// Compare with this tenant schema [default: a scratch schema built from the tenant migrations, dropped afterwards].
    #[arg(long, value_name = "TENANT")]
    reference: Option<String>,
}

/// `tenantmig verify`: exit 1 on any drift.
pub async fn verify(g: &Global, stdout: &mut dyn Write, a: &VerifyArgs) -> Result<u8, Failure> {
    let selection = Selection {
        shared: false,
        tenants: true,
        tenant_names: a.filter.tenants.clone(),
        exclude: a.filter.exclude.clone(),
    };
    let engine = Engine::new(settings(g)?, &selection, Arc::new(NoEvents))?;
    let report = engine
        .verify(&tenantmig::verify::VerifyOptions {
            selection,
            reference: a.reference.clone(),
        })
        .await?;
    match g.format {
        Format::Json => output::json_line(stdout, &report)?,
        Format::Human => verify_human(stdout, &report)?,
    }
    Ok(if report.has_drift() { 1 } else { 0 })
}

/// `verify` for people: tenants grouped by structure, the reference's
/// group first, and for each other group what differs.
fn verify_human(w: &mut dyn Write, r: &tenantmig::verify::VerifyReport) -> io::Result<()> {
    writeln!(
        w,
        "reference: {} ({} objects, fingerprint {})",
        r.reference, r.reference_objects, r.reference_fingerprint
    )?;
    for g in &r.groups {
        if g.matches_reference {
            writeln!(
                w,
                "{} {} the reference ({})",
                tenants_word(g.tenants.len()),
                if g.tenants.len() == 1 {
                    "matches"
                } else {
                    "match"
                },
                names_list(&g.tenants.iter().map(String::as_str).collect::<Vec<_>>())
            )?;
            continue;
        }
        let names: Vec<&str> = g.tenants.iter().map(String::as_str).collect();
        writeln!(
            w,
            "{} with fingerprint {} ({}):",
            tenants_word(g.tenants.len()),
            g.fingerprint,
            names_list(&names)
        )?;
        for d in g.differences.iter().take(DIFFERENCES_SHOWN) {
            writeln!(w, "  {d}")?;
        }
        if g.differences.len() > DIFFERENCES_SHOWN {
            writeln!(
                w,
                "  … and {} more (--format json lists them all)",
                g.differences.len() - DIFFERENCES_SHOWN
            )?;
        }
    }
    if !r.missing.is_empty() {
        let names: Vec<&str> = r.missing.iter().map(String::as_str).collect();
        writeln!(
            w,
            "{} without a schema: {}",
            tenants_word(names.len()),
            names_list(&names)
        )?;
    }
    if !r.invalid.is_empty() {
        let names: Vec<&str> = r.invalid.iter().map(String::as_str).collect();
        writeln!(w, "invalid tenant names: {}", names_list(&names))?;
    }
    if r.has_drift() {
        writeln!(
            w,
            "drift: {} of {} differ from the reference{} in {:.1}s",
            thousands(r.drifted()),
            tenants_word(r.tenants_checked),
            if r.missing.is_empty() {
                String::new()
            } else {
                format!(", {} missing", thousands(r.missing.len()))
            },
            r.duration_ms as f64 / 1000.0
        )?;
    } else {
        writeln!(
            w,
            "no drift: {} {} the reference in {:.1}s",
            tenants_word(r.tenants_checked),
            if r.tenants_checked == 1 {
                "matches"
            } else {
                "match"
            },
            r.duration_ms as f64 / 1000.0
        )?;
    }
    Ok(())
}

/// Differences printed per group before "… and N more".
const DIFFERENCES_SHOWN: usize = 20;
