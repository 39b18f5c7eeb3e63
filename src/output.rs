//! Printing: events as a progress bar, plain lines or JSON lines, and the
//! helpers every report printer shares (JSON lines, name lists, counts,
//! sizes, times). Each command's human report is printed by the command
//! line, beside its handler (`src/cli/`). Every printer writes to a `Write`
//! it is given, so tests print into a `Vec<u8>`.

use std::io::{self, Write};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::events::{Event, EventSink, OutcomeState, Phase, SchemaOutcome};
use crate::migration::MigrationSet;

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

    /// The tenant phase starts: a bar on a terminal, else one line.
    fn tenant_phase_started(&self, st: &mut HumanState, schemas: usize, jobs: usize) {
        st.total = schemas;
        if self.terminal {
            let bar =
                ProgressBar::with_draw_target(Some(schemas as u64), ProgressDrawTarget::stderr());
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
                st,
                &format!("migrating {} with {jobs} jobs", tenants_word(schemas)),
            );
        }
    }

    /// A schema is done: a line for a failure, the bar or a progress line
    /// every few seconds.
    fn schema_finished(&self, st: &mut HumanState, outcome: SchemaOutcome) {
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
                st,
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
                self.line(st, &text);
            }
        }
    }

    /// A copy starts: an overall bar in bytes on a terminal, else one line.
    fn copy_started(
        &self,
        st: &mut HumanState,
        source: String,
        target: String,
        tables: usize,
        bytes: i64,
        jobs: usize,
    ) {
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
                st,
                &format!(
                    "copying {source} into {target}: {tables} tables, {} over {jobs} connection{}",
                    human_bytes(bytes),
                    if jobs == 1 { "" } else { "s" }
                ),
            );
        }
    }

    /// A table (or one more block range of it) starts copying: its own bar.
    fn table_copy_started(
        &self,
        st: &mut HumanState,
        table: String,
        bytes: i64,
        estimated_rows: i64,
    ) {
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

    /// A table (or a block range of it) is copied: the overall bar moves,
    /// the table's bar goes with its last range.
    fn table_copied(
        &self,
        st: &mut HumanState,
        table: String,
        rows: i64,
        bytes: i64,
        duration_ms: u64,
    ) {
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
            } => self.tenant_phase_started(&mut st, schemas, jobs),
            Event::SchemaStarted { .. }
            | Event::MigrationApplied { .. }
            | Event::MigrationReverted { .. }
            | Event::MigrationStamped { .. } => {}
            Event::SchemaFinished { outcome } => self.schema_finished(&mut st, outcome),
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
            } => self.copy_started(&mut st, source, target, tables, bytes, jobs),
            Event::CopyStep { step } => self.line(&st, &step),
            Event::TableCopyStarted {
                table,
                bytes,
                estimated_rows,
            } => self.table_copy_started(&mut st, table, bytes, estimated_rows),
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
            } => self.table_copied(&mut st, table, rows, bytes, duration_ms),
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

/// Up to eight names, then "… and N more".
pub fn names_list(names: &[&str]) -> String {
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

/// Up to eight versions as the set writes them, then "… (N in all)".
pub fn versions(set: &MigrationSet, v: &[i64]) -> String {
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

/// A version as the set writes it, or "none".
pub fn version_or_none(set: &MigrationSet, v: Option<i64>) -> String {
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

/// A time for people, to the second (`2024-05-01 12:00:00`).
pub fn fmt_time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A size for people (`1.50 MiB`).
pub fn human_bytes(n: i64) -> String {
    indicatif::HumanBytes(n.max(0) as u64).to_string()
}

/// Milliseconds as seconds for people (`1.5 s`).
pub fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// The end of a run's summary: the schemas not reached, why the run stopped
/// early, and what the ledger could not record (each only when there is
/// something to say).
pub fn run_end(
    w: &mut dyn Write,
    not_reached: &[String],
    stopped: Option<crate::events::StopReason>,
    ledger_error: Option<&crate::ledger::LedgerFault>,
) -> io::Result<()> {
    if !not_reached.is_empty() {
        let names: Vec<&str> = not_reached.iter().map(String::as_str).collect();
        writeln!(w, "not reached: {}", names_list(&names))?;
    }
    if let Some(reason) = stopped {
        writeln!(w, "stopped: {}", reason.describe())?;
    }
    if let Some(fault) = ledger_error {
        writeln!(w, "{fault}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(9996), "9,996");
        assert_eq!(thousands(12), "12");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
