//! `repair`: clearing the failed row a `-- no-transaction` migration left,
//! once an operator has fixed the schema by hand, and re-recording the
//! checksums of migrations edited harmlessly after they were applied.

use std::time::Duration;

use serde::Serialize;

use crate::db::{self, LockMode};
use crate::engine::{Engine, Selection};
use crate::error::{Error, Result};
use crate::events::Phase;
use crate::ledger::{Ledger, Record, RunTotals};
use crate::state::{Problem, SchemaState};

/// One history row to repair.
#[derive(Debug, Clone, Serialize)]
pub struct RepairItem {
    /// The schema.
    pub schema: String,
    /// Shared or tenant.
    pub phase: Phase,
    /// The failed version, or the edited one.
    pub version: i64,
    /// What the ledger knows of the failure (error and statement).
    pub detail: Option<String>,
    /// For a checksum repair: the checksum recorded in the schema and the
    /// local file's, both in hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksums: Option<(String, String)>,
}

/// What `repair` does to the rows it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairAction {
    /// Delete the failed row: the migration runs again on the next migrate
    /// (or, after a failed no-transaction down file, counts as undone).
    Clear,
    /// Mark the failed row as succeeded: it was completed by hand.
    MarkApplied,
    /// Record the local file's checksum in place of the applied one.
    Checksums,
}

impl RepairAction {
    fn note(self, version: i64) -> String {
        match self {
            RepairAction::Clear => format!("repair: failed row of version {version} cleared"),
            RepairAction::MarkApplied => format!("repair: version {version} marked applied"),
            RepairAction::Checksums => format!("repair: checksum of version {version} re-recorded"),
        }
    }
}

impl Engine {
    /// Failed (success = false) history rows in the selected schemas.
    pub async fn repair_candidates(&self, selection: &Selection) -> Result<Vec<RepairItem>> {
        let mut conn = self.connection().await?;
        let report = self.status_with(&mut conn, selection).await?;
        let mut items = Vec::new();
        let all = report
            .shared
            .iter()
            .map(|s| (s, Phase::Shared))
            .chain(report.tenants.iter().map(|t| (t, Phase::Tenant)));
        for (st, phase) in all {
            if st.state != SchemaState::Failed {
                continue;
            }
            for p in &st.problems {
                if let Problem::Dirty { version, .. } = p {
                    items.push(RepairItem {
                        schema: st.schema.clone(),
                        phase,
                        version: *version,
                        detail: st.detail.clone(),
                        checksums: None,
                    });
                }
            }
        }
        Ok(items)
    }

    /// Applied migrations whose local file no longer has the recorded
    /// checksum, in the selected schemas (schemas with a failed row are
    /// left to the plain repair first).
    pub async fn checksum_candidates(&self, selection: &Selection) -> Result<Vec<RepairItem>> {
        let mut conn = self.connection().await?;
        let report = self.status_with(&mut conn, selection).await?;
        let all = report
            .shared
            .iter()
            .map(|s| (s, Phase::Shared))
            .chain(report.tenants.iter().map(|t| (t, Phase::Tenant)));
        let mut items = Vec::new();
        for (st, phase) in all {
            for p in &st.problems {
                if let Problem::ChecksumMismatch {
                    version,
                    applied,
                    local,
                } = p
                {
                    items.push(RepairItem {
                        schema: st.schema.clone(),
                        phase,
                        version: *version,
                        detail: None,
                        checksums: Some((applied.clone(), local.clone())),
                    });
                }
            }
        }
        Ok(items)
    }

    /// Clears (or, with `mark_applied`, marks applied) the given failed rows,
    /// each schema under its advisory lock, and records a `repair` run.
    pub async fn repair(
        &self,
        items: &[RepairItem],
        action: RepairAction,
        args: &[String],
    ) -> Result<i64> {
        let s = &self.settings;
        let mut conn = self.connection().await?;
        self.ensure_control(&mut conn).await?;
        let ledger_conn = self.connection().await?;
        let led = Ledger::start(
            ledger_conn,
            &self.connect,
            &s.control_schema,
            "repair",
            args,
            Duration::ZERO,
        )
        .await?;
        let mut ok = 0i64;
        for item in items {
            let result = repair_one(
                &mut conn,
                item,
                action,
                &s.history_table,
                s.lock_wait,
                Some(&s.control_schema),
            )
            .await;
            if let Err(e) = result {
                // Close the run before giving up, so the ledger says why.
                let totals = RunTotals {
                    total: items.len() as i64,
                    ok,
                    failed: 1,
                    skipped: items.len() as i64 - ok - 1,
                    stopped: 0,
                };
                let msg = e.to_string();
                // The repair's own error is the one to report; a ledger
                // that cannot be closed as well is logged, not swapped in.
                if let Err(fault) = led.finish("failed", &totals, Some(&msg)).await {
                    tracing::warn!(cause = %fault, "the run ledger could not be closed");
                }
                return Err(e);
            }
            let mut rec = Record::started(&item.schema, item.phase);
            rec.state = "succeeded".into();
            rec.failed_version = Some(item.version);
            rec.error = Some(action.note(item.version));
            rec.finished_at = Some(chrono::Utc::now());
            led.record(rec);
            ok += 1;
        }
        let run_id = led.run_id;
        let totals = RunTotals {
            total: items.len() as i64,
            ok,
            failed: 0,
            skipped: 0,
            stopped: 0,
        };
        led.finish("succeeded", &totals, None).await?;
        Ok(run_id)
    }
}

/// Clears or marks one failed row, under the schema's advisory lock.
async fn repair_one(
    conn: &mut sqlx::postgres::PgConnection,
    item: &RepairItem,
    action: RepairAction,
    table: &str,
    lock_wait: Duration,
    control: Option<&str>,
) -> Result<()> {
    match db::acquire(conn, &item.schema, LockMode::Exclusive, lock_wait, control).await {
        Ok(()) => {}
        Err(db::LockFailure::Busy(message)) => return Err(Error::Usage { message }),
        Err(db::LockFailure::Db(e)) => {
            return Err(Error::db(format!("locking schema {}", item.schema))(e));
        }
    }
    let versions = [item.version];
    let r = match (action, &item.checksums) {
        (RepairAction::MarkApplied, _) => {
            db::mark_failed_rows_applied(conn, &item.schema, table, &versions).await
        }
        (RepairAction::Clear, _) => {
            db::delete_failed_rows(conn, &item.schema, table, &versions).await
        }
        (RepairAction::Checksums, Some((applied, local))) => {
            // Only the row as it was shown: a row changed since is left.
            let (old, new) = (
                hex::decode(applied).unwrap_or_default(),
                hex::decode(local).unwrap_or_default(),
            );
            db::set_checksum(conn, &item.schema, table, item.version, &old, &new).await
        }
        (RepairAction::Checksums, None) => Ok(0),
    };
    let _ = db::unlock(conn, &item.schema, LockMode::Exclusive).await;
    r.map_err(Error::db(format!("repairing schema {}", item.schema)))?;
    Ok(())
}
