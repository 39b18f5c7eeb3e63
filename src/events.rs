//! Events the engine emits while it works, and the outcome of one schema.
//!
//! The engine never prints: it hands events to an [`EventSink`], and the
//! [`crate::output`] module turns them into progress bars, lines or JSON.

use serde::Serialize;

/// Which phase of a run a schema belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The shared schema, migrated once, first.
    Shared,
    /// A tenant schema.
    Tenant,
}

impl Phase {
    /// `shared` or `tenant`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Shared => "shared",
            Phase::Tenant => "tenant",
        }
    }
}

/// How one schema ended in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeState {
    /// Every pending migration was applied.
    Succeeded,
    /// Nothing was pending once the schema was locked.
    UpToDate,
    /// A migration failed; the schema is at `to_version`.
    Failed,
    /// Refused before anything ran (bad history, invalid name).
    Refused,
    /// Stopped between migrations by a shutdown request.
    Stopped,
    /// The schema existed when the run planned and was gone when its turn
    /// came (dropped by another command or another tenant's migration), or
    /// a schema still to be created was removed from the tenant source
    /// meanwhile: nothing was created or run.
    Vanished,
}

impl OutcomeState {
    /// The word stored in the ledger and shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeState::Succeeded => "succeeded",
            OutcomeState::UpToDate => "up_to_date",
            OutcomeState::Failed => "failed",
            OutcomeState::Refused => "refused",
            OutcomeState::Stopped => "stopped",
            OutcomeState::Vanished => "vanished",
        }
    }

    /// True for the states that make a run's exit code non-zero.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            OutcomeState::Failed
                | OutcomeState::Refused
                | OutcomeState::Stopped
                | OutcomeState::Vanished
        )
    }
}

/// The outcome of one schema in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaOutcome {
    /// The schema.
    pub schema: String,
    /// Shared or tenant.
    pub phase: Phase,
    /// How it ended.
    pub state: OutcomeState,
    /// Highest applied version before the run touched it.
    pub from_version: Option<i64>,
    /// Highest applied version afterwards.
    pub to_version: Option<i64>,
    /// Versions applied by this run, in order.
    pub applied: Vec<i64>,
    /// Versions reverted by this run (a rollback), in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reverted: Vec<i64>,
    /// What went wrong, for failed and refused schemas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The version that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_version: Option<i64>,
    /// The statement that failed, for `-- no-transaction` files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_statement: Option<String>,
    /// Tries of the failing or last step (more than 1 after lock-timeout retries).
    pub attempts: u32,
    /// Wall time spent on this schema, lock wait included.
    pub duration_ms: u64,
    /// True when this run created the schema (it was missing).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub created: bool,
}

impl SchemaOutcome {
    /// A fresh outcome, to be filled in.
    pub fn new(schema: impl Into<String>, phase: Phase) -> Self {
        SchemaOutcome {
            schema: schema.into(),
            phase,
            state: OutcomeState::Failed,
            from_version: None,
            to_version: None,
            applied: Vec::new(),
            reverted: Vec::new(),
            error: None,
            failed_version: None,
            failed_statement: None,
            attempts: 0,
            duration_ms: 0,
            created: false,
        }
    }
}

/// Why a run stopped starting new schemas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// More failures than `--max-failures` allows.
    MaxFailures,
    /// A canary tenant did not succeed.
    CanaryFailed,
    /// The shared phase failed.
    SharedFailed,
    /// Ctrl-C, SIGTERM or another shutdown request.
    Shutdown,
    /// The database server could no longer be reached.
    ServerGone,
}

impl StopReason {
    /// A sentence for people.
    pub fn describe(self) -> &'static str {
        match self {
            StopReason::MaxFailures => {
                "more tenants failed than --max-failures allows; no new tenant was started"
            }
            StopReason::CanaryFailed => {
                "a canary tenant did not succeed; the other tenants were not started"
            }
            StopReason::SharedFailed => "the shared schema failed; no tenant was started",
            StopReason::Shutdown => {
                "interrupted; in-flight migrations finished and nothing new was started"
            }
            StopReason::ServerGone => {
                "the database server could no longer be reached; no new tenant was started (rerun when it is back: the tenants not reached and any failed here are taken up again)"
            }
        }
    }
}

/// Something that happened during a command.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Something the operator should know that does not stop the command.
    Warning {
        /// The message.
        message: String,
    },
    /// The run's id in the ledger.
    RunStarted {
        /// The id.
        run_id: i64,
    },
    /// A phase begins.
    PhaseStarted {
        /// Which phase.
        phase: Phase,
        /// Schemas with work to do.
        schemas: usize,
        /// Workers (connections) used.
        jobs: usize,
    },
    /// A worker took a schema.
    SchemaStarted {
        /// Which phase.
        phase: Phase,
        /// The schema.
        schema: String,
    },
    /// A migration was committed in a schema.
    MigrationApplied {
        /// The schema.
        schema: String,
        /// The version.
        version: i64,
        /// Time the migration's SQL took.
        duration_ms: u64,
    },
    /// A version was recorded as applied without running it (`stamp`).
    MigrationStamped {
        /// The schema.
        schema: String,
        /// The version.
        version: i64,
    },
    /// A migration's `.down.sql` was committed in a schema (a rollback).
    MigrationReverted {
        /// The schema.
        schema: String,
        /// The version.
        version: i64,
        /// Time the down file's SQL took.
        duration_ms: u64,
    },
    /// A schema is done, one way or another.
    SchemaFinished {
        /// Its outcome.
        outcome: SchemaOutcome,
    },
    /// The run stops starting new schemas.
    Stopping {
        /// Why.
        reason: StopReason,
    },
    /// A schema copy begins.
    CopyStarted {
        /// The schema copied.
        source: String,
        /// The new schema.
        target: String,
        /// Tables with rows to copy.
        tables: usize,
        /// Size of those tables in the source.
        bytes: i64,
        /// Connections used.
        jobs: usize,
    },
    /// A step of a schema copy is done.
    CopyStep {
        /// What was done, for people.
        step: String,
    },
    /// The tenant phase of a version move begins (followed by its
    /// `PhaseStarted`).
    MoveStarted {
        /// The version moved to.
        version: String,
        /// Tenants with work.
        tenants: usize,
        /// Tenants moved at once.
        jobs: usize,
    },
    /// A step of a version move is done for a schema.
    MoveStepDone {
        /// Shared or tenant.
        phase: Phase,
        /// The source schema.
        schema: String,
        /// The step (`copy`, `create`, `migrate`, `move 0001`, `check`).
        step: String,
        /// Rows read (or expected) by the step.
        rows_read: Option<i64>,
        /// Rows written by the step.
        rows_written: Option<i64>,
        /// Time taken.
        duration_ms: u64,
    },
    /// A worker started copying a table's rows (or a block range of them).
    TableCopyStarted {
        /// The table.
        table: String,
        /// Its size in the source (of this range).
        bytes: i64,
        /// The planner's row estimate.
        estimated_rows: i64,
    },
    /// How far a table in flight has grown in the copy.
    TableCopyProgress {
        /// The table.
        table: String,
        /// Its size in the copy so far.
        bytes_written: i64,
    },
    /// A table's rows (or a block range of them) were copied.
    TableCopied {
        /// The table.
        table: String,
        /// Rows copied.
        rows: i64,
        /// Size in the source.
        bytes: i64,
        /// Time taken.
        duration_ms: u64,
    },
}

/// Receives the engine's events. Implementations must be cheap: they are
/// called from the workers.
pub trait EventSink: Send + Sync {
    /// Handles one event.
    fn emit(&self, event: Event);
}

/// A sink that drops everything (for library users who only want reports).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn emit(&self, _event: Event) {}
}

/// A sink that keeps every event (handy in tests).
#[derive(Debug, Default)]
pub struct CollectEvents(pub std::sync::Mutex<Vec<Event>>);

impl EventSink for CollectEvents {
    fn emit(&self, event: Event) {
        self.0.lock().expect("event list lock").push(event);
    }
}
