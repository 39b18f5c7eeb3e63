//! Rollback points: `tenantmig snapshot create | list | restore | prune`.
//!
//! A snapshot is a copy of each schema (copy-into-new-schema) under a dated
//! name, `<schema>_snap_<YYYYMMDD_HHMMSS>`, recorded in the control schema's
//! `snapshots` and `snapshot_schemas` tables; each copy's row commits with
//! the copy's rename. Restoring swaps names in one transaction: the
//! snapshot's copies take the schemas' names, and the schemas they replace
//! are kept as a new snapshot, so a restore can itself be undone.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection, Row};

use crate::copy::CopyOptions;
use crate::copy::ddl::lit;
use crate::engine::{Engine, Selection};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::ident::{MAX_IDENT_BYTES, qualified};
use crate::moves::Rename;

/// One schema of a snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotSchema {
    /// The schema that was copied.
    pub schema: String,
    /// The copy's name.
    pub copy: String,
    /// Rows copied.
    pub rows: Option<i64>,
    /// Size of the tables copied.
    pub bytes: Option<i64>,
    /// When the copy was put back in place, if it was.
    pub restored_at: Option<DateTime<Utc>>,
    /// Whether the copy still exists under its snapshot name.
    pub exists: bool,
}

/// A snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Its id (for `snapshot restore ID`).
    pub id: i64,
    /// When it was taken.
    pub created_at: DateTime<Utc>,
    /// `complete`, `partial` (some copies failed) or `restored`.
    pub state: String,
    /// Why it was taken, when not by `snapshot create`.
    pub note: Option<String>,
    /// Its schemas.
    pub schemas: Vec<SnapshotSchema>,
}

/// What `snapshot create` did.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotReport {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// Schemas whose copy failed, with why.
    pub failed: Vec<(String, String)>,
    /// Wall time.
    pub duration_ms: u64,
}

/// What `snapshot restore` did (or would do).
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// The snapshot restored.
    pub id: i64,
    /// The renames, in order, in one transaction.
    pub renames: Vec<Rename>,
    /// The snapshot that now holds the schemas the restore replaced.
    pub replaced_snapshot: Option<i64>,
}

/// The dated name of a schema's copy: `<schema>_snap_<stamp>`, with the
/// schema part shortened (and a hash of the whole name added) when the
/// result would pass PostgreSQL's 63 bytes.
pub fn snapshot_name(schema: &str, stamp: &str) -> String {
    let suffix = format!("_snap_{stamp}");
    if schema.len() + suffix.len() <= MAX_IDENT_BYTES {
        return format!("{schema}{suffix}");
    }
    let hash = &hex::encode(Sha256::digest(schema.as_bytes()))[..8];
    let mut keep = MAX_IDENT_BYTES - suffix.len() - hash.len() - 1;
    while !schema.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}_{hash}{suffix}", &schema[..keep])
}

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%d_%H%M%S").to_string()
}

/// Snapshot names for `schemas` taken at `at` that no schema has yet (a
/// second snapshot within the same second gets `_2`, `_3`...).
async fn free_names(
    conn: &mut PgConnection,
    control: &str,
    schemas: &[String],
    at: DateTime<Utc>,
) -> Result<Vec<(String, String)>> {
    let base = stamp(at);
    for n in 1..100 {
        let st = if n == 1 {
            base.clone()
        } else {
            format!("{base}_{n}")
        };
        let names: Vec<(String, String)> = schemas
            .iter()
            .map(|s| (s.clone(), snapshot_name(s, &st)))
            .collect();
        let copies: Vec<String> = names.iter().map(|(_, c)| c.clone()).collect();
        // Names of restored copies stay recorded, so they are taken too.
        // language=SQL
        let taken: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT (SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname = ANY($1)) \
                  + (SELECT count(*) FROM {} WHERE copy_name = ANY($1))",
            qualified(control, "snapshot_schemas")
        )))
        .bind(&copies)
        .fetch_one(&mut *conn)
        .await
        .map_err(Error::db("looking up the snapshot names"))?;
        if taken == 0 {
            return Ok(names);
        }
    }
    Err(Error::Usage {
        message: "every snapshot name for this second is taken; retry in a second".into(),
    })
}

/// Resolves once `stop` is set (polled every 100 ms): a copy's shutdown.
async fn stopped(stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Engine {
    async fn snapshot_tables(&self, conn: &mut PgConnection) -> Result<bool> {
        // language=SQL
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(qualified(&self.settings.control_schema, "snapshots"))
            .fetch_one(&mut *conn)
            .await
            .map_err(Error::db("looking for the snapshot tables"))
    }

    /// Takes a snapshot: the shared schema and every tenant, or only the
    /// tenants named in `selection`. Copies run `jobs` at a time; one that
    /// fails leaves no copy and marks the snapshot `partial`.
    pub async fn snapshot_create(
        &self,
        selection: &Selection,
        jobs: usize,
        args: &[String],
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<SnapshotReport> {
        let started = Instant::now();
        let s = &self.settings;
        let mut conn = self.connection().await?;
        let schemas = self.snapshot_schemas(&mut conn, selection).await?;
        self.ensure_control(&mut conn).await?;
        let now = Utc::now();
        let names = free_names(&mut conn, &s.control_schema, &schemas, now).await?;
        // language=SQL
        let id: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "INSERT INTO {} (created_at) VALUES ($1) RETURNING id",
            qualified(&s.control_schema, "snapshots")
        )))
        .bind(now)
        .fetch_one(&mut conn)
        .await
        .map_err(Error::db("recording the snapshot"))?;

        let failed = self.snapshot_copies(id, names, jobs, shutdown).await;
        let snapshot = self
            .finish_snapshot(&mut conn, id, &failed, args, started)
            .await?;
        let _ = conn.close().await;
        Ok(SnapshotReport {
            snapshot,
            failed,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Copies each `(schema, copy)` of snapshot `id`, `jobs` at a time, until
    /// done or `shutdown`; returns the schemas not copied, with why (those
    /// never started: "not copied: interrupted").
    async fn snapshot_copies(
        &self,
        id: i64,
        names: Vec<(String, String)>,
        jobs: usize,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Vec<(String, String)> {
        let stop = Arc::new(AtomicBool::new(false));
        {
            let stop = stop.clone();
            tokio::spawn(async move {
                shutdown.await;
                stop.store(true, Ordering::SeqCst);
            });
        }
        let queue = Arc::new(Mutex::new(VecDeque::from(names)));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let single = queue.lock().expect("queue lock").len() == 1;
        let control = self.settings.control_schema.clone();
        // Several copies at once: one line per schema, not their table bars.
        let quiet = self.quiet_copier();
        let copier = if single { self } else { &quiet };
        let workers = (0..jobs.max(1)).map(|_| {
            let (queue, failed, stop, control) =
                (queue.clone(), failed.clone(), stop.clone(), control.clone());
            async move {
                loop {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Some((schema, copy)) = queue.lock().expect("queue lock").pop_front()
                    else {
                        break;
                    };
                    // language=SQL
                    let record = format!(
                        "INSERT INTO {} (snapshot_id, schema_name, copy_name) VALUES ({id}, {}, {})",
                        qualified(&control, "snapshot_schemas"),
                        lit(&schema),
                        lit(&copy)
                    );
                    let opts = CopyOptions {
                        in_rename: Some(record),
                        ..CopyOptions::new(&schema, &copy, if single { jobs } else { 1 })
                    };
                    match copier.copy_schema(&opts, stopped(stop.clone())).await {
                        Ok(r) => {
                            if !single {
                                self.sink.emit(Event::CopyStep {
                                    step: format!(
                                        "copied {schema} into {copy}: {} rows",
                                        r.rows
                                    ),
                                });
                            }
                            self.record_copy_size(&control, id, &schema, &r).await;
                        }
                        Err(e) => {
                            self.sink.emit(Event::Warning {
                                message: format!("snapshot of {schema} failed: {e}"),
                            });
                            failed.lock().expect("failed lock").push((schema, e.to_string()));
                        }
                    }
                }
            }
        });
        futures::future::join_all(workers).await;
        let mut failed = std::mem::take(&mut *failed.lock().expect("failed lock"));
        failed.extend(
            queue
                .lock()
                .expect("queue lock")
                .drain(..)
                .map(|(s, _)| (s, "not copied: interrupted".to_string())),
        );
        failed
    }

    /// Ends snapshot `id`: records the run (naming the schemas in `failed`
    /// as its error) and the snapshot's state, and reads the snapshot back.
    async fn finish_snapshot(
        &self,
        conn: &mut PgConnection,
        id: i64,
        failed: &[(String, String)],
        args: &[String],
        started: Instant,
    ) -> Result<Snapshot> {
        let s = &self.settings;
        let error = (!failed.is_empty()).then(|| {
            format!(
                "{} schema(s) not copied: {}",
                failed.len(),
                failed
                    .iter()
                    .map(|(s, _)| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
        let run_id = self
            .record_run(
                "snapshot create",
                args,
                &s.shared_schema,
                started,
                error.as_deref(),
            )
            .await?;
        // language=SQL
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET state = $2, run_id = $3 WHERE id = $1",
            qualified(&s.control_schema, "snapshots")
        )))
        .bind(id)
        .bind(if failed.is_empty() {
            "complete"
        } else {
            "partial"
        })
        .bind(run_id)
        .execute(&mut *conn)
        .await
        .map_err(Error::db("recording the snapshot"))?;
        self.snapshots_with(conn, Some(id))
            .await?
            .pop()
            .ok_or_else(|| Error::Failed {
                message: format!("snapshot {id} vanished while it was taken"),
            })
    }

    /// The schemas a snapshot copies: the shared schema and the selected
    /// tenants, every one of which must exist.
    async fn snapshot_schemas(
        &self,
        conn: &mut PgConnection,
        selection: &Selection,
    ) -> Result<Vec<String>> {
        let s = &self.settings;
        let mut schemas = Vec::new();
        if selection.shared {
            schemas.push(s.shared_schema.clone());
        }
        if selection.tenants {
            let list =
                crate::tenants::resolve(&mut *conn, s, &selection.tenant_names, &selection.exclude)
                    .await?;
            if let Some(bad) = list.invalid.first() {
                return Err(Error::Usage {
                    message: bad.to_string(),
                });
            }
            let exists = crate::db::existing_schemas(&mut *conn, &list.names, &s.history_table)
                .await
                .map_err(Error::db("looking up the tenant schemas"))?;
            let missing: Vec<&String> = list
                .names
                .iter()
                .filter(|n| !exists.contains_key(*n))
                .collect();
            if !missing.is_empty() {
                return Err(Error::Usage {
                    message: format!(
                        "schema(s) {} do not exist; nothing was copied",
                        missing
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
            schemas.extend(list.names);
        }
        if schemas.is_empty() {
            return Err(Error::Usage {
                message: "no schema to snapshot: the tenant list is empty".into(),
            });
        }
        Ok(schemas)
    }

    /// Records a finished copy's rows and bytes (for `snapshot list`); a
    /// failure here loses only those figures.
    async fn record_copy_size(
        &self,
        control: &str,
        id: i64,
        schema: &str,
        r: &crate::copy::CopyReport,
    ) {
        if let Ok(mut c) = self.connection().await {
            // language=SQL
            let _ = sqlx::query(AssertSqlSafe(format!(
                "UPDATE {} SET rows = $3, bytes = $4 WHERE snapshot_id = $1 AND schema_name = $2",
                qualified(control, "snapshot_schemas")
            )))
            .bind(id)
            .bind(schema)
            .bind(r.rows)
            .bind(r.bytes)
            .execute(&mut c)
            .await;
            let _ = c.close().await;
        }
    }

    /// Every snapshot, newest first.
    pub async fn snapshot_list(&self) -> Result<Vec<Snapshot>> {
        let mut conn = self.connection().await?;
        if !crate::ledger::ledger_exists(&mut conn, &self.settings.control_schema).await?
            || !self.snapshot_tables(&mut conn).await?
        {
            return Ok(Vec::new());
        }
        self.snapshots_with(&mut conn, None).await
    }

    async fn snapshots_with(
        &self,
        conn: &mut PgConnection,
        only: Option<i64>,
    ) -> Result<Vec<Snapshot>> {
        let c = &self.settings.control_schema;
        // language=SQL
        let sql = format!(
            "SELECT s.id, s.created_at, s.state, s.note, x.schema_name, x.copy_name, x.rows, x.bytes,
                    x.restored_at, EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = x.copy_name)
             FROM {snaps} s LEFT JOIN {schemas} x ON x.snapshot_id = s.id
             WHERE $1::int8 IS NULL OR s.id = $1
             ORDER BY s.id DESC, x.schema_name",
            snaps = qualified(c, "snapshots"),
            schemas = qualified(c, "snapshot_schemas"),
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(only)
            .fetch_all(&mut *conn)
            .await
            .map_err(Error::db("reading the snapshots"))?;
        let mut out: Vec<Snapshot> = Vec::new();
        for r in rows {
            let id: i64 = r.get(0);
            if out.last().is_none_or(|s| s.id != id) {
                out.push(Snapshot {
                    id,
                    created_at: r.get(1),
                    state: r.get(2),
                    note: r.get(3),
                    schemas: Vec::new(),
                });
            }
            if let Some(schema) = r.get::<Option<String>, _>(4) {
                out.last_mut()
                    .expect("pushed")
                    .schemas
                    .push(SnapshotSchema {
                        schema,
                        copy: r.get(5),
                        rows: r.get(6),
                        bytes: r.get(7),
                        restored_at: r.get(8),
                        exists: r.get(9),
                    });
            }
        }
        Ok(out)
    }

    /// One snapshot, or an error naming the known ones.
    pub async fn snapshot(&self, id: i64) -> Result<Snapshot> {
        let mut conn = self.connection().await?;
        let found = if crate::ledger::ledger_exists(&mut conn, &self.settings.control_schema)
            .await?
            && self.snapshot_tables(&mut conn).await?
        {
            self.snapshots_with(&mut conn, Some(id)).await?.pop()
        } else {
            None
        };
        found.ok_or_else(|| Error::Usage {
            message: format!("there is no snapshot {id}; see tenantmig snapshot list"),
        })
    }

    /// Restores snapshot `id` (see the module docs); with `dry_run`, only
    /// returns the renames.
    pub async fn snapshot_restore(
        &self,
        id: i64,
        dry_run: bool,
        args: &[String],
    ) -> Result<RestoreReport> {
        let started = Instant::now();
        let snap = self.snapshot(id).await?;
        let s = &self.settings;
        let usable: Vec<&SnapshotSchema> = snap
            .schemas
            .iter()
            .filter(|x| x.restored_at.is_none() && x.exists)
            .collect();
        if usable.is_empty() {
            return Err(Error::Usage {
                message: format!(
                    "snapshot {id} has no copy left to restore (already restored, or its copies were dropped)"
                ),
            });
        }
        let mut conn = self.connection().await?;
        let (renames, replaced) = self.restore_renames(&mut conn, &usable).await?;
        let mut report = RestoreReport {
            id,
            renames,
            replaced_snapshot: None,
        };
        if dry_run {
            return Ok(report);
        }
        let result = self
            .restore_swap(&mut conn, id, &usable, &report.renames, &replaced)
            .await;
        let _ = conn.close().await;
        let err = result.as_ref().err().map(|e: &Error| e.to_string());
        self.record_run(
            "snapshot restore",
            args,
            &s.shared_schema,
            started,
            err.as_deref(),
        )
        .await?;
        report.replaced_snapshot = result?;
        Ok(report)
    }

    /// The renames that restore `usable`, in order (each live schema aside
    /// under a snapshot name of its own, then the copy into its place), and
    /// the `(schema, aside)` pairs of the schemas set aside.
    async fn restore_renames(
        &self,
        conn: &mut PgConnection,
        usable: &[&SnapshotSchema],
    ) -> Result<(Vec<Rename>, Vec<(String, String)>)> {
        let s = &self.settings;
        let live: Vec<String> = usable.iter().map(|x| x.schema.clone()).collect();
        let exists = crate::db::existing_schemas(&mut *conn, &live, &s.history_table)
            .await
            .map_err(Error::db("looking up the schemas to restore"))?;
        let replacing: Vec<String> = usable
            .iter()
            .filter(|x| exists.contains_key(&x.schema))
            .map(|x| x.schema.clone())
            .collect();
        let mut asides: std::collections::HashMap<String, String> =
            free_names(conn, &s.control_schema, &replacing, Utc::now())
                .await?
                .into_iter()
                .collect();
        let mut renames = Vec::new();
        let mut replaced = Vec::new();
        for x in usable {
            if let Some(aside) = asides.remove(&x.schema) {
                renames.push(Rename {
                    from: x.schema.clone(),
                    to: aside.clone(),
                });
                replaced.push((x.schema.clone(), aside));
            }
            renames.push(Rename {
                from: x.copy.clone(),
                to: x.schema.clone(),
            });
        }
        Ok((renames, replaced))
    }

    /// The restore's one transaction: the renames, snapshot `id`'s copies
    /// marked restored, and the `replaced` schemas kept as a new snapshot,
    /// whose id it returns.
    async fn restore_swap(
        &self,
        conn: &mut PgConnection,
        id: i64,
        usable: &[&SnapshotSchema],
        renames: &[Rename],
        replaced: &[(String, String)],
    ) -> Result<Option<i64>> {
        let s = &self.settings;
        let c = &s.control_schema;
        let mut tx = conn
            .begin()
            .await
            .map_err(Error::db("starting the restore"))?;
        // language=SQL
        let record = format!(
            "UPDATE {} SET restored_at = now() WHERE snapshot_id = {id} AND copy_name = ANY(ARRAY[{}]::text[]);
                 UPDATE {} SET state = 'restored' WHERE id = {id};",
            qualified(c, "snapshot_schemas"),
            usable.iter().map(|x| lit(&x.copy)).collect::<Vec<_>>().join(", "),
            qualified(c, "snapshots"),
        );
        crate::moves::rename_schemas(
            &mut tx,
            renames,
            s.lock_wait,
            s.lock_timeout,
            &record,
            "restore",
        )
        .await?;
        let mut kept = None;
        if !replaced.is_empty() {
            kept = Some(record_replaced(&mut tx, c, id, replaced).await?);
        }
        tx.commit()
            .await
            .map_err(Error::db("committing the restore"))?;
        Ok(kept)
    }

    /// Snapshots taken more than `older_than` ago.
    pub async fn snapshot_prune_plan(&self, older_than: Duration) -> Result<Vec<Snapshot>> {
        let cutoff = Utc::now()
            - chrono::Duration::from_std(older_than).map_err(|_| Error::Usage {
                message: "--older-than is too large".into(),
            })?;
        Ok(self
            .snapshot_list()
            .await?
            .into_iter()
            .filter(|s| s.created_at < cutoff)
            .collect())
    }

    /// Drops the copies of the given snapshots (never a copy that was
    /// restored: that one is a live schema now) and forgets them.
    pub async fn snapshot_prune(&self, snaps: &[Snapshot], args: &[String]) -> Result<usize> {
        let started = Instant::now();
        let c = &self.settings.control_schema;
        let mut conn = self.connection().await?;
        let mut dropped = 0;
        for snap in snaps {
            let mut tx = conn
                .begin()
                .await
                .map_err(Error::db("starting the prune"))?;
            for x in snap
                .schemas
                .iter()
                .filter(|x| x.restored_at.is_none() && x.exists)
            {
                crate::db::drop_schema_cascade(&mut tx, &x.copy)
                    .await
                    .map_err(Error::db(format!("dropping {}", x.copy)))?;
                dropped += 1;
            }
            // language=SQL
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {} WHERE id = $1",
                qualified(c, "snapshots")
            )))
            .bind(snap.id)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("forgetting the snapshot"))?;
            tx.commit()
                .await
                .map_err(Error::db("committing the prune"))?;
        }
        let _ = conn.close().await;
        self.record_run(
            "snapshot prune",
            args,
            &self.settings.shared_schema,
            started,
            None,
        )
        .await?;
        Ok(dropped)
    }
}

/// Records the schemas a restore of snapshot `id` set aside, as
/// `(schema, aside)` pairs, as a new snapshot; returns its id.
async fn record_replaced(
    tx: &mut PgConnection,
    control: &str,
    id: i64,
    replaced: &[(String, String)],
) -> Result<i64> {
    // language=SQL
    let new_id: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "INSERT INTO {} (created_at, state, note) VALUES (now(), 'complete', $1) RETURNING id",
        qualified(control, "snapshots")
    )))
    .bind(format!("the schemas replaced by restoring snapshot {id}"))
    .fetch_one(&mut *tx)
    .await
    .map_err(Error::db("recording the replaced schemas"))?;
    for (schema, aside) in replaced {
        // language=SQL
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (snapshot_id, schema_name, copy_name) VALUES ($1, $2, $3)",
            qualified(control, "snapshot_schemas")
        )))
        .bind(new_id)
        .bind(schema)
        .bind(aside)
        .execute(&mut *tx)
        .await
        .map_err(Error::db("recording the replaced schemas"))?;
    }
    Ok(new_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_are_dated_and_never_pass_63_bytes() {
        assert_eq!(
            snapshot_name("t_1", "20261122_101500"),
            "t_1_snap_20261122_101500"
        );
        let long = "é".repeat(30);
        let n = snapshot_name(&long, "20261122_101500");
        assert!(n.len() <= 63, "{n}");
        assert!(n.ends_with("_snap_20261122_101500"));
        assert_ne!(
            snapshot_name(&format!("{long}a"), "x"),
            snapshot_name(&format!("{long}b"), "x")
        );
    }
}
