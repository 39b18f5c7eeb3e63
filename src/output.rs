//! Printing: events as a progress bar, plain lines or JSON lines, and the
//! reports of each command in human or JSON form. Every printer writes to a
//! `Write` it is given, so tests print into a `Vec<u8>`.

use std::io::{self, Write};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::engine::{RunReport, StatusReport};
use crate::events::{Event, EventSink, OutcomeState, Phase};
use crate::ledger::{RunSchema, RunSummary};
use crate::migration::MigrationSet;
use crate::state::{Goal, SchemaState};
use crate::tenants::TenantList;

/// Output format of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Text for people; a progress bar on a terminal.
    #[default]
    Human,
    /// JSON lines of events, then one JSON document with the result.
    Json,
}

/// How many names a human listing shows before "… and N more".
const NAMES_SHOWN: usize = 8;

/// The progress bar in use, shared with the log writer so that log lines
/// are printed above the bar instead of through it.
static ACTIVE_BAR: OnceLock<Mutex<Option<ProgressBar>>> = OnceLock::new();

fn active_bar() -> &'static Mutex<Option<ProgressBar>> {
    ACTIVE_BAR.get_or_init(|| Mutex::new(None))
}

/// A `tracing` writer that prints to stderr above the progress bar, if any.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A log line (one event per write) never shows a password.
        let masked = std::str::from_utf8(buf).ok().map(crate::mask::mask_secrets);
        let line = masked.as_ref().map_or(buf, |m| m.as_bytes());
        let bar = active_bar().lock().ok().and_then(|b| b.clone());
        match bar {
            Some(bar) => bar.suspend(|| io::stderr().write_all(line))?,
            None => io::stderr().write_all(line)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

/// Prints events for people: on a terminal a bar (done, failed, remaining,
/// rate, ETA) and a line per failure; elsewhere a line per failure and a
/// progress line every few seconds.
pub struct HumanEvents {
    out: Mutex<Box<dyn Write + Send>>,
    terminal: bool,
    state: Mutex<HumanState>,
}

#[derive(Default)]
struct HumanState {
    bar: Option<ProgressBar>,
    /// A copy's bars: the overall one is `bar`, one per table in flight.
    multi: Option<MultiProgress>,
    /// Table bars in flight, with how many slices of the table are.
    tables: std::collections::HashMap<String, (ProgressBar, usize)>,
    total: usize,
    done: usize,
    failed: usize,
    last_line: Option<std::time::Instant>,
    /// A version move said what it starts; the phase line is not needed.
    moving: bool,
}

impl HumanEvents {
    /// A printer writing lines to `out`; `terminal` enables the bar.
    pub fn new(out: Box<dyn Write + Send>, terminal: bool) -> Self {
        HumanEvents {
            out: Mutex::new(out),
            terminal,
            state: Mutex::new(HumanState::default()),
        }
    }

    fn line(&self, st: &HumanState, text: &str) {
        match &st.bar {
            Some(bar) => bar.println(text),
            None => {
                let mut out = self.out.lock().expect("output lock");
                let _ = writeln!(out, "{text}");
            }
        }
    }

    /// Removes the bar (call before printing the summary).
    pub fn finish(&self) {
        let mut st = self.state.lock().expect("printer lock");
        for (_, (bar, _)) in st.tables.drain() {
            bar.finish_and_clear();
        }
        if let Some(bar) = st.bar.take() {
            bar.finish_and_clear();
        }
        if let Some(m) = st.multi.take() {
            let _ = m.clear();
        }
        if let Ok(mut b) = active_bar().lock() {
            *b = None;
        }
    }
}

impl EventSink for HumanEvents {
    fn emit(&self, event: Event) {
        let mut st = self.state.lock().expect("printer lock");
        match event {
            Event::Warning { message } => self.line(&st, &format!("warning: {message}")),
            Event::RunStarted { run_id } => tracing::info!(run_id, "run started"),
            Event::PhaseStarted {
                phase: Phase::Shared,
                ..
            } => {}
            Event::PhaseStarted {
                phase: Phase::Tenant,
                schemas,
                jobs,
            } => {
                st.total = schemas;
                if self.terminal {
                    let bar = ProgressBar::with_draw_target(
                        Some(schemas as u64),
                        ProgressDrawTarget::stderr(),
                    );
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{spinner} {bar:30} {pos}/{len} tenants {msg} | {per_sec} | ETA {eta}",
                        )
                        .expect("valid template")
                        .progress_chars("=> "),
                    );
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar.set_message("0 failed");
                    if let Ok(mut b) = active_bar().lock() {
                        *b = Some(bar.clone());
                    }
                    st.bar = Some(bar);
                } else if !st.moving {
                    self.line(
                        &st,
                        &format!("migrating {} with {jobs} jobs", tenants_word(schemas)),
                    );
                }
            }
            Event::SchemaStarted { .. }
            | Event::MigrationApplied { .. }
            | Event::MigrationReverted { .. }
            | Event::MigrationStamped { .. } => {}
            Event::SchemaFinished { outcome } => {
                let failed = outcome.state.is_failure();
                if outcome.phase == Phase::Tenant {
                    st.done += 1;
                    if matches!(outcome.state, OutcomeState::Failed | OutcomeState::Refused) {
                        st.failed += 1;
                    }
                }
                if failed {
                    let what = match outcome.state {
                        OutcomeState::Refused => "REFUSED",
                        OutcomeState::Stopped => "STOPPED",
                        OutcomeState::Vanished => "VANISHED",
                        _ => "FAILED",
                    };
                    self.line(
                        &st,
                        &format!(
                            "{what} {}: {}",
                            outcome.schema,
                            outcome.error.as_deref().unwrap_or("")
                        ),
                    );
                }
                if let Some(bar) = &st.bar {
                    bar.inc(1);
                    bar.set_message(format!("{} failed", st.failed));
                } else if outcome.phase == Phase::Tenant && st.total > 0 {
                    let due = st
                        .last_line
                        .is_none_or(|t| t.elapsed() >= Duration::from_secs(5));
                    if due && st.done < st.total {
                        st.last_line = Some(std::time::Instant::now());
                        let text = format!(
                            "progress: {}/{} tenants, {} failed",
                            st.done, st.total, st.failed
                        );
                        self.line(&st, &text);
                    }
                }
            }
            Event::Stopping { reason } => {
                self.line(&st, &format!("stopping: {}", reason.describe()))
            }
            Event::MoveStarted {
                version,
                tenants,
                jobs,
            } => {
                st.moving = true;
                if !self.terminal {
                    self.line(
                        &st,
                        &format!(
                            "moving {} to {version}, {jobs} at a time",
                            tenants_word(tenants)
                        ),
                    );
                }
            }
            Event::MoveStepDone {
                phase,
                schema,
                step,
                rows_read,
                rows_written,
                duration_ms,
            } => {
                // Tenants' steps show in the bar and the summary; the
                // shared schema's, which come one at a time, as lines.
                if phase == Phase::Shared {
                    let rows = match (rows_read, rows_written) {
                        (Some(r), Some(w)) if step == "check" => {
                            format!(", {r} rows counted in the source, {w} in the target")
                        }
                        (Some(r), Some(w)) => format!(", {r} rows read, {w} written"),
                        (None, Some(w)) => format!(", {w} rows written"),
                        _ => String::new(),
                    };
                    self.line(
                        &st,
                        &format!("{schema}: {step} done ({}{rows})", secs(duration_ms)),
                    );
                }
            }
            Event::CopyStarted {
                source,
                target,
                tables,
                bytes,
                jobs,
            } => {
                if self.terminal {
                    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
                    let bar = multi.add(ProgressBar::new(bytes.max(0) as u64));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{spinner} copying {msg} {bar:30} {bytes}/{total_bytes} | {elapsed}",
                        )
                        .expect("valid template")
                        .progress_chars("=> "),
                    );
                    bar.set_message(format!("{source} -> {target}"));
                    bar.enable_steady_tick(Duration::from_millis(120));
                    if let Ok(mut b) = active_bar().lock() {
                        *b = Some(bar.clone());
                    }
                    st.bar = Some(bar);
                    st.multi = Some(multi);
                } else {
                    self.line(
                        &st,
                        &format!(
                            "copying {source} into {target}: {tables} tables, {} over {jobs} connection{}",
                            human_bytes(bytes),
                            if jobs == 1 { "" } else { "s" }
                        ),
                    );
                }
            }
            Event::CopyStep { step } => self.line(&st, &step),
            Event::TableCopyStarted {
                table,
                bytes,
                estimated_rows,
            } => {
                if let Some(multi) = st.multi.clone() {
                    if let Some((bar, n)) = st.tables.get_mut(&table) {
                        // Another block range of a table being copied.
                        bar.inc_length(bytes.max(0) as u64);
                        *n += 1;
                        let est = estimated_rows.max(0) as usize * *n;
                        bar.set_message(format!("~{} rows", thousands(est)));
                    } else {
                        let bar = multi.add(ProgressBar::new(bytes.max(0) as u64));
                        bar.set_style(
                            ProgressStyle::with_template(
                                "    {prefix:24!} {bar:20} {bytes}/{total_bytes} {msg}",
                            )
                            .expect("valid template")
                            .progress_chars("=> "),
                        );
                        bar.set_prefix(table.clone());
                        bar.set_message(format!(
                            "~{} rows",
                            thousands(estimated_rows.max(0) as usize)
                        ));
                        st.tables.insert(table, (bar, 1));
                    }
                }
            }
            Event::TableCopyProgress {
                table,
                bytes_written,
            } => {
                if let Some((bar, _)) = st.tables.get(&table) {
                    let len = bar.length().unwrap_or(0);
                    bar.set_position((bytes_written.max(0) as u64).min(len));
                }
            }
            Event::TableCopied {
                table,
                rows,
                bytes,
                duration_ms,
            } => {
                if let Some(bar) = &st.bar {
                    bar.inc(bytes.max(0) as u64);
                }
                let last = match st.tables.get_mut(&table) {
                    Some((_, n)) => {
                        *n -= 1;
                        *n == 0
                    }
                    None => false,
                };
                if last && let Some((bar, _)) = st.tables.remove(&table) {
                    bar.finish_and_clear();
                    if let Some(m) = &st.multi {
                        m.remove(&bar);
                    }
                }
                tracing::info!(table, rows, duration_ms, "table copied");
            }
        }
    }
}

/// Prints every event as one JSON line.
pub struct JsonEvents {
    out: Mutex<Box<dyn Write + Send>>,
}

impl JsonEvents {
    /// A printer writing JSON lines to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        JsonEvents {
            out: Mutex::new(out),
        }
    }
}

impl EventSink for JsonEvents {
    fn emit(&self, event: Event) {
        // Progress ticks are for bars; JSON readers get the start and end
        // of each table instead.
        if matches!(event, Event::TableCopyProgress { .. }) {
            return;
        }
        let mut out = self.out.lock().expect("output lock");
        if serde_json::to_writer(&mut *out, &event).is_ok() {
            let _ = writeln!(out);
        }
    }
}

/// Writes a value as one JSON line.
pub fn json_line(w: &mut dyn Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *w, value).map_err(io::Error::other)?;
    writeln!(w)
}

fn names_list(names: &[&str]) -> String {
    let mut s = names
        .iter()
        .take(NAMES_SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > NAMES_SHOWN {
        s.push_str(&format!(
            " … and {} more",
            thousands(names.len() - NAMES_SHOWN)
        ));
    }
    s
}

fn versions(set: &MigrationSet, v: &[i64]) -> String {
    let shown: Vec<String> = v
        .iter()
        .take(NAMES_SHOWN)
        .map(|v| set.fmt_version(*v).to_string())
        .collect();
    let mut s = shown.join(", ");
    if v.len() > NAMES_SHOWN {
        s.push_str(&format!(" … ({} in all)", v.len()));
    }
    s
}

fn version_or_none(set: &MigrationSet, v: Option<i64>) -> String {
    v.map(|v| set.fmt_version(v).to_string())
        .unwrap_or_else(|| "none".into())
}

/// "1 tenant", "1,200 tenants".
pub fn tenants_word(n: usize) -> String {
    format!("{} tenant{}", thousands(n), if n == 1 { "" } else { "s" })
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `tenantmig status` for people: the shared schema, then tenants grouped
/// by state ("9,996 up to date, 4 behind: t_0012 …").
pub fn status_human(
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

/// A plan for people: the shared schema, then tenants grouped by the
/// versions they would run ("480 tenants: 0009, 0010"), refusals, and with
/// `sql` the SQL of each version once (the `.down.sql` for a rollback).
pub fn plan_human(
    w: &mut dyn Write,
    r: &StatusReport,
    shared_set: &MigrationSet,
    tenant_set: &MigrationSet,
    sql: bool,
) -> io::Result<()> {
    let revert = r.goal.is_revert();
    let verb = match r.goal {
        Goal::Revert { .. } => "revert ",
        Goal::Stamp { .. } => "stamp ",
        _ => "",
    };
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
        let shared = r
            .shared
            .iter()
            .map(|s| ("shared", shared_set, s.pending.as_slice()));
        let tenants = groups
            .iter()
            .map(|(p, _)| ("tenant", tenant_set, p.as_slice()));
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
    }
    Ok(())
}

/// `repair --checksums` for people: each edited migration once, with the
/// checksum recorded in the schemas and the file's, and the schemas that
/// would change.
pub fn checksum_repairs_human(
    w: &mut dyn Write,
    items: &[crate::repair::RepairItem],
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

/// `verify` for people: tenants grouped by structure, the reference's
/// group first, and for each other group what differs.
pub fn verify_human(w: &mut dyn Write, r: &crate::verify::VerifyReport) -> io::Result<()> {
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
    let failed = r
        .tenants
        .iter()
        .filter(|o| o.state == OutcomeState::Failed)
        .count();
    let refused = r
        .tenants
        .iter()
        .filter(|o| o.state == OutcomeState::Refused)
        .count();
    let stopped = r
        .tenants
        .iter()
        .filter(|o| o.state == OutcomeState::Stopped)
        .count();
    let vanished = r
        .tenants
        .iter()
        .filter(|o| o.state == OutcomeState::Vanished)
        .count();
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
    if !r.not_reached.is_empty() {
        let names: Vec<&str> = r.not_reached.iter().map(String::as_str).collect();
        writeln!(w, "not reached: {}", names_list(&names))?;
    }
    if let Some(reason) = r.stopped {
        writeln!(w, "stopped: {}", reason.describe())?;
    }
    if let Some(fault) = &r.ledger_error {
        writeln!(w, "{fault}")?;
    }
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

/// `tenantmig tenants` for people.
pub fn tenants_human(w: &mut dyn Write, l: &TenantList) -> io::Result<()> {
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

fn fmt_time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `tenantmig runs` for people.
pub fn runs_human(w: &mut dyn Write, runs: &[RunSummary]) -> io::Result<()> {
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
pub fn run_detail_human(
    w: &mut dyn Write,
    run: &RunSummary,
    schemas: &[RunSchema],
) -> io::Result<()> {
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

/// A size for people (`1.50 MiB`).
pub fn human_bytes(n: i64) -> String {
    indicatif::HumanBytes(n.max(0) as u64).to_string()
}

fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// The result of `copy-into-new-schema`.
pub fn copy_report_human(w: &mut dyn Write, r: &crate::copy::CopyReport) -> io::Result<()> {
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
        crate::copy::Verify::None => writeln!(w, "  not checked (--verify none)")?,
        v => writeln!(
            w,
            "  checked: {} of {} tables match the source",
            if v == crate::copy::Verify::Checksums {
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
pub fn drop_preview_human(w: &mut dyn Write, p: &crate::lifecycle::DropPreview) -> io::Result<()> {
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
pub fn tenant_add_human(
    w: &mut dyn Write,
    r: &crate::lifecycle::TenantAddReport,
) -> io::Result<()> {
    use crate::lifecycle::TenantFill;
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

/// The plan of `migrate-to VERSION --dry-run`.
pub fn move_plan_human(
    w: &mut dyn Write,
    p: &crate::moves::MovePlan,
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
    let steps = |w: &mut dyn Write, steps: &[crate::moves::StepPlan], done: &[String]| {
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
pub fn move_report_human(w: &mut dyn Write, r: &crate::moves::MoveReport) -> io::Result<()> {
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
    if !r.not_reached.is_empty() {
        let names: Vec<&str> = r.not_reached.iter().map(String::as_str).collect();
        writeln!(w, "not reached: {}", names_list(&names))?;
    }
    if let Some(reason) = r.stopped {
        writeln!(w, "stopped: {}", reason.describe())?;
    }
    if let Some(fault) = &r.ledger_error {
        writeln!(w, "{fault}")?;
    }
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
pub fn abort_plan_human(w: &mut dyn Write, p: &crate::moves::AbortPlan) -> io::Result<()> {
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
pub fn cutover_human(w: &mut dyn Write, r: &crate::moves::CutoverReport) -> io::Result<()> {
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

/// The result of `snapshot create`.
pub fn snapshot_report_human(
    w: &mut dyn Write,
    r: &crate::snapshot::SnapshotReport,
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
pub fn snapshots_human(w: &mut dyn Write, list: &[crate::snapshot::Snapshot]) -> io::Result<()> {
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
pub fn restore_human(
    w: &mut dyn Write,
    r: &crate::snapshot::RestoreReport,
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

/// `history` as JSON: one object per set.
pub fn history_json(name: &str, set: &MigrationSet) -> serde_json::Value {
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
pub fn history_human(w: &mut dyn Write, name: &str, set: &MigrationSet) -> io::Result<()> {
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
            crate::migration::short_checksum(&m.checksum),
            flags.join(", "),
            vw = set.version_width.max(7)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::Migration;
    use crate::state::SchemaStatus;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(9996), "9,996");
        assert_eq!(thousands(12), "12");
        assert_eq!(thousands(1234567), "1,234,567");
    }

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
