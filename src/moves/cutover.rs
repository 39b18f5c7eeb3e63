//! `cutover VERSION [--revert]`: the renames, checked, in one transaction.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};

use super::{CutoverReport, MoveOptions, MovePlan, Rename, store};
use crate::config::{Settings, VersionSettings};
use crate::db;
use crate::engine::{Engine, describe_db_error};
use crate::error::{Error, Result};
use crate::ident::{quote_ident, validate_schema_name};

impl Engine {
    /// The renames of a cut-over to `version` (or of its revert), checked:
    /// every tenant of the tenant source must be moved and checked, and no
    /// new name may be taken.
    pub async fn cutover_plan(&self, version: &str, revert: bool) -> Result<Vec<Rename>> {
        let v = self.settings.version(version)?.clone();
        let s = &self.settings;
        let mut conn = self.connection().await?;
        let has = crate::ledger::ledger_exists(&mut conn, &s.control_schema).await?
            && self.has_move_tables(&mut conn).await?;
        let cut = if has {
            store::cutover(&mut conn, &s.control_schema, version)
                .await
                .map_err(Error::db("reading the version's cut-over"))?
        } else {
            None
        };
        if revert {
            return match cut {
                Some((state, renames)) if state == "live" => Ok(renames
                    .into_iter()
                    .rev()
                    .map(|(from, to)| Rename { from: to, to: from })
                    .collect()),
                _ => Err(Error::Usage {
                    message: format!(
                        "version {version} is not live; there is no cut-over to revert"
                    ),
                }),
            };
        }
        if matches!(&cut, Some((state, _)) if state == "live") {
            return Err(Error::Usage {
                message: format!(
                    "version {version} is already live; tenantmig cutover {version} --revert swaps back"
                ),
            });
        }
        let loaded = self.load_version(version)?;
        let plan = self
            .plan_with(
                &mut conn,
                &loaded,
                &MoveOptions {
                    version: version.into(),
                    ..Default::default()
                },
            )
            .await?;
        if let Some(message) = unfinished_refusal(&plan, version) {
            return Err(Error::Usage { message });
        }
        let renames = cutover_renames(s, &v, &plan);
        self.check_new_names(&mut conn, version, &v.previous_suffix, &renames)
            .await?;
        Ok(renames)
    }

    /// Refuses the cut-over when a new name is not a valid schema name or
    /// an aside name (ending in `suffix`) is taken by an existing schema.
    async fn check_new_names(
        &self,
        conn: &mut PgConnection,
        version: &str,
        suffix: &str,
        renames: &[Rename],
    ) -> Result<()> {
        let mut bad = Vec::new();
        for r in renames {
            if let Err(e) = validate_schema_name(&r.to) {
                bad.push(format!("{}: {e}", r.from));
            }
        }
        let taken: Vec<String> = renames
            .iter()
            .filter(|r| r.to.ends_with(suffix))
            .map(|r| r.to.clone())
            .collect();
        let exists = db::existing_schemas(conn, &taken, &self.settings.history_table)
            .await
            .map_err(Error::db("looking up the names cut-over needs"))?;
        let mut taken: Vec<&String> = exists.keys().collect();
        taken.sort();
        if !taken.is_empty() {
            bad.push(format!(
                "schema(s) {} already exist; cut-over needs those names for the current schemas (drop or rename them, or set versions.{version}.previous_suffix)",
                taken
                    .iter()
                    .take(10)
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !bad.is_empty() {
            return Err(Error::Usage {
                message: format!("cannot cut over to {version}: {}", bad.join("; ")),
            });
        }
        Ok(())
    }

    /// Makes `version` live (or, with `revert`, swaps back) by renaming
    /// schemas in one transaction, under every schema's advisory lock.
    pub async fn cutover(
        &self,
        version: &str,
        revert: bool,
        dry_run: bool,
        args: &[String],
    ) -> Result<CutoverReport> {
        let started = Instant::now();
        let renames = self.cutover_plan(version, revert).await?;
        let mut report = CutoverReport {
            version: version.into(),
            revert,
            dry_run,
            renames,
            run_id: None,
        };
        if dry_run {
            return Ok(report);
        }
        let s = &self.settings;
        let mut conn = self.connection().await?;
        self.ensure_control(&mut conn).await?;
        let pairs: Vec<(String, String)> = report
            .renames
            .iter()
            .map(|r| (r.from.clone(), r.to.clone()))
            .collect();
        let result = async {
            let mut tx = conn
                .begin()
                .await
                .map_err(Error::db("starting the cut-over"))?;
            let record = store::cutover_sql(
                &s.control_schema,
                version,
                if revert { "reverted" } else { "live" },
                &pairs,
                None,
            );
            rename_schemas(
                &mut tx,
                &report.renames,
                s.lock_wait,
                s.lock_timeout,
                &record,
                "cut-over",
            )
            .await?;
            tx.commit()
                .await
                .map_err(Error::db("committing the cut-over"))?;
            Ok(())
        }
        .await;
        let _ = conn.close().await;
        let err = result.as_ref().err().map(|e: &Error| e.to_string());
        let run = self
            .record_run(
                if revert {
                    "cutover --revert"
                } else {
                    "cutover"
                },
                args,
                &s.shared_schema,
                started,
                err.as_deref(),
            )
            .await?;
        result?;
        report.run_id = Some(run);
        Ok(report)
    }
}

/// Why the cut-over to `version` cannot happen yet: the schemas (the shared
/// one first) not moved and checked, at most ten named; None when all are.
fn unfinished_refusal(plan: &MovePlan, version: &str) -> Option<String> {
    let mut unfinished: Vec<String> = plan
        .tenants
        .iter()
        .filter(|t| !t.is_complete())
        .map(|t| match &t.refused {
            Some(r) => format!("{} ({r})", t.source),
            None => t.source.clone(),
        })
        .collect();
    if !plan.shared.is_complete() {
        unfinished.insert(0, format!("{} (the shared schema)", plan.shared.source));
    }
    if unfinished.is_empty() {
        return None;
    }
    let n = unfinished.len();
    unfinished.truncate(10);
    Some(format!(
        "cannot cut over to {version}: {n} schema(s) are not moved and checked yet: {}{}; run tenantmig migrate-to {version} until it succeeds",
        unfinished.join(", "),
        if n > 10 { ", ..." } else { "" }
    ))
}

/// The renames of a cut-over, in order: the current shared schema aside,
/// the version's into its place, then each tenant's the same way (only
/// aside when the version consolidates).
fn cutover_renames(s: &Settings, v: &VersionSettings, plan: &MovePlan) -> Vec<Rename> {
    let suffix = &v.previous_suffix;
    let mut renames = Vec::new();
    let aside = |name: &str| format!("{name}{suffix}");
    renames.push(Rename {
        from: s.shared_schema.clone(),
        to: aside(&s.shared_schema),
    });
    renames.push(Rename {
        from: v.shared_schema.clone(),
        to: s.shared_schema.clone(),
    });
    for t in &plan.tenants {
        renames.push(Rename {
            from: t.source.clone(),
            to: aside(&t.source),
        });
        if !v.consolidates() {
            renames.push(Rename {
                from: t.target.clone(),
                to: t.source.clone(),
            });
        }
    }
    renames
}

/// Renames schemas inside the caller's transaction, under every name's
/// advisory lock (transaction-level, waited for up to `lock_wait`) and
/// `lock_timeout`, then runs `then`
/// (the record of the renames) in the same transaction. `what` names the
/// operation in errors.
pub(crate) async fn rename_schemas(
    tx: &mut PgConnection,
    renames: &[Rename],
    lock_wait: Duration,
    lock_timeout: Duration,
    then: &str,
    what: &str,
) -> Result<()> {
    let names: Vec<String> = renames
        .iter()
        .flat_map(|r| [r.from.clone(), r.to.clone()])
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    // Every name exclusively, polled up to lock_timeout (the command's
    // lock_wait): the locks already had stay had until the transaction ends.
    let deadline = Instant::now() + lock_wait;
    let mut pause = Duration::from_millis(20);
    let mut busy = names;
    loop {
        // language=SQL
        busy = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT n FROM unnest($1::text[]) AS n WHERE NOT pg_try_advisory_xact_lock({})",
            db::LOCK_KEY.replace("$1", "n")
        )))
        .bind(&busy)
        .fetch_all(&mut *tx)
        .await
        .map_err(Error::db("locking the schemas"))?;
        if busy.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            let mut who = Vec::new();
            for name in &busy {
                let holders = db::lock_holders(tx, name, None).await.unwrap_or_default();
                who.push(format!(
                    "{name} (held by {})",
                    holders
                        .iter()
                        .map(db::LockHolder::describe)
                        .collect::<Vec<_>>()
                        .join("; and by ")
                ));
            }
            return Err(Error::Usage {
                message: format!(
                    "the {what} waited {} (lock_wait) for schemas that another session works on, and renamed nothing: {}",
                    humantime::format_duration(lock_wait),
                    who.join(", ")
                ),
            });
        }
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
    // language=SQL
    let mut sql = format!("SET LOCAL lock_timeout = {};\n", lock_timeout.as_millis());
    for r in renames {
        sql.push_str(&format!(
            "ALTER SCHEMA {} RENAME TO {};\n",
            quote_ident(&r.from),
            quote_ident(&r.to)
        ));
    }
    sql.push_str(then);
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::Failed {
            message: format!(
                "the {what} was rolled back, nothing was renamed: {}",
                describe_db_error(&e)
            ),
        })?;
    Ok(())
}
