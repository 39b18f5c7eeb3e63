//! `migrate-to VERSION --abort`: dropping what a move created.

use std::time::Instant;

use sqlx::{AssertSqlSafe, Connection, Executor};

use super::{AbortPlan, store};
use crate::db::{self, LockMode};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::ident::quote_ident;

impl Engine {
    /// What `migrate-to VERSION --abort` would drop.
    pub async fn abort_plan(&self, version: &str) -> Result<AbortPlan> {
        self.settings.version(version)?;
        let mut conn = self.connection().await?;
        let mut schemas = Vec::new();
        if crate::ledger::ledger_exists(&mut conn, &self.settings.control_schema).await?
            && self.has_move_tables(&mut conn).await?
        {
            let c = &self.settings.control_schema;
            if let Some((state, _)) = store::cutover(&mut conn, c, version)
                .await
                .map_err(Error::db("reading the version's cut-over"))?
                && state == "live"
            {
                return Err(Error::Usage {
                    message: format!(
                        "version {version} is live (cut over): its schemas now carry the original names and --abort would drop live data. Revert first: tenantmig cutover {version} --revert"
                    ),
                });
            }
            let made = store::created(&mut conn, c, version)
                .await
                .map_err(Error::db("reading the move's schemas"))?;
            let names: Vec<String> = made.iter().map(|(n, _)| n.clone()).collect();
            let exists = db::existing_schemas(&mut conn, &names, &self.settings.history_table)
                .await
                .map_err(Error::db("looking up the move's schemas"))?;
            let shared = &self.settings.version(version)?.shared_schema;
            // Tenants' schemas first, the shared one last.
            for (n, _) in made.iter().filter(|(n, _)| n != shared) {
                schemas.push(n.clone());
            }
            if made.iter().any(|(n, _)| n == shared) {
                schemas.push(shared.clone());
            }
            schemas.retain(|n| exists.contains_key(n));
        }
        Ok(AbortPlan {
            version: version.to_string(),
            schemas,
        })
    }

    /// Drops every schema the move to `version` created and forgets its
    /// checkpoints; the sources are not touched. Refused while the version
    /// is live.
    pub async fn abort_move(&self, version: &str, args: &[String]) -> Result<AbortPlan> {
        let started = Instant::now();
        let plan = self.abort_plan(version).await?;
        let mut conn = self.connection().await?;
        self.ensure_control(&mut conn).await?;
        let c = &self.settings.control_schema;
        let lock_name = format!("migrate-to {version}");
        match db::acquire(
            &mut conn,
            &lock_name,
            LockMode::Exclusive,
            self.settings.lock_wait,
            Some(c),
        )
        .await
        {
            Ok(()) => {}
            Err(db::LockFailure::Busy(why)) => {
                return Err(Error::Usage {
                    message: format!(
                        "a tenantmig migrate-to {version} is running; stop it (Ctrl-C) before aborting: {why}"
                    ),
                });
            }
            Err(db::LockFailure::Db(e)) => return Err(Error::db("locking the move")(e)),
        }
        let result = async {
            for name in &plan.schemas {
                // language=SQL
                conn.execute(AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {} CASCADE",
                    quote_ident(name)
                )))
                .await
                .map_err(Error::db(format!("dropping {name}")))?;
                store::forget(&mut conn, c, version, name)
                    .await
                    .map_err(Error::db("forgetting the move's checkpoints"))?;
            }
            // Checkpoints of steps whose schema never came to be.
            // language=SQL
            for table in ["move_steps", "move_schemas"] {
                sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM {} WHERE version = $1",
                    crate::ident::qualified(c, table)
                )))
                .bind(version)
                .execute(&mut conn)
                .await
                .map_err(Error::db("forgetting the move's checkpoints"))?;
            }
            Ok::<_, Error>(())
        }
        .await;
        let _ = db::unlock(&mut conn, &lock_name, LockMode::Exclusive).await;
        let _ = conn.close().await;
        let err = result.as_ref().err().map(|e: &Error| e.to_string());
        self.record_run(
            "migrate-to --abort",
            args,
            &self.settings.version(version)?.shared_schema.clone(),
            started,
            err.as_deref(),
        )
        .await?;
        result.map(|_| plan)
    }
}
