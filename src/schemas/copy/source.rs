//! The copy's source side: the leftover temporary schema of an interrupted
//! copy, the source's tables locked before the snapshot is taken, and the
//! check that no table was rewritten behind that snapshot.

use std::time::{Duration, Instant};

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Executor};

use super::{MARK, catalog};
use crate::db;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::ident::quote_ident;

/// Drops the temporary schema an interrupted copy into `dst` left behind,
/// after checking it carries tenantmig's mark.
pub(super) async fn drop_leftover(
    ctl: &mut PgConnection,
    tmp: &str,
    dst: &str,
    sink: &dyn crate::events::EventSink,
    lock_wait: Duration,
) -> Result<()> {
    // language=SQL
    let comment: Option<Option<String>> = sqlx::query_scalar(
        "SELECT obj_description(oid, 'pg_namespace') FROM pg_catalog.pg_namespace WHERE nspname = $1",
    )
    .bind(tmp)
    .fetch_optional(&mut *ctl)
    .await
    .map_err(Error::db("looking for a leftover temporary schema"))?;
    match comment {
        None => Ok(()),
        Some(Some(c)) if c.starts_with(MARK) => {
            // A killed copy's server session may still be building an
            // index in it: wait at most lock_wait, then name it.
            db::set_lock_timeout(ctl, lock_wait)
                .await
                .map_err(Error::db("setting lock_timeout"))?;
            let dropped = ctl
                .execute(AssertSqlSafe(format!(
                    "DROP SCHEMA {} CASCADE",
                    quote_ident(tmp)
                )))
                .await;
            let _ = ctl.execute("RESET lock_timeout").await;
            match dropped {
                Ok(_) => {}
                Err(e) if db::is_lock_timeout(&e) => {
                    let who = db::relation_lock_holders(ctl, tmp).await;
                    return Err(Error::Failed {
                        message: format!(
                            "the leftover temporary schema {tmp} of an interrupted copy into {dst} is still in use after {} (lock_wait){who}; nothing was copied",
                            humantime::format_duration(lock_wait)
                        ),
                    });
                }
                Err(e) => {
                    return Err(Error::db(format!(
                        "dropping the leftover temporary schema {tmp}"
                    ))(e));
                }
            }
            sink.emit(Event::Warning {
                message: format!(
                    "dropped {tmp}, left by an interrupted copy into {dst}, before starting again"
                ),
            });
            Ok(())
        }
        Some(_) => Err(Error::Usage {
            message: format!(
                "schema {tmp} (the temporary name of a copy into {dst}) exists but was not made by tenantmig; rename or drop it first"
            ),
        }),
    }
}

/// Locks the source's tables, and only then takes the copy's snapshot:
/// returns the exported snapshot, the schema's oid and its catalog, read in
/// that snapshot, with `snap` left in the open `REPEATABLE READ`
/// transaction that holds the locks.
///
/// The order matters. A change that rewrites a table (`ALTER COLUMN …
/// TYPE`, `TRUNCATE`, `VACUUM FULL`…) writes the rows into a new file whose
/// rows an older snapshot does not see: a snapshot taken before such a
/// change committed, and used after, reads the table as empty. `LOCK TABLE`
/// takes no snapshot of its own, so locking first and exporting the
/// snapshot next means every such change either committed before the
/// snapshot (and is seen) or waits for the copy (the `ACCESS SHARE` locks).
/// A table created between the list and the locks is caught by comparing
/// the list with the catalog in the snapshot, and the whole step runs again.
pub(super) async fn lock_and_snapshot(
    snap: &mut PgConnection,
    src: &str,
    lock_wait: Duration,
) -> Result<(String, i64, catalog::SchemaDef)> {
    let doing = format!("reading schema {src}");
    // One deadline for all the table locks, whatever their number and the
    // tries: each LOCK statement gets what is left of lock_wait, both as
    // its lock_timeout (per table) and as its statement_timeout (in all).
    let deadline = Instant::now() + lock_wait;
    for _ in 0..3 {
        // language=SQL
        let mut listed: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')",
        )
        .bind(src)
        .fetch_all(&mut *snap)
        .await
        .map_err(Error::db(doing.clone()))?;
        listed.sort();
        // language=SQL
        snap.execute(sqlx::raw_sql(AssertSqlSafe(format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; \
             SET LOCAL search_path TO {}; SET LOCAL lock_timeout = {}",
            quote_ident(src),
            lock_wait.as_millis().max(1)
        ))))
        .await
        .map_err(Error::db(doing.clone()))?;
        let mut vanished = false;
        for chunk in listed.chunks(500) {
            let names: Vec<String> = chunk
                .iter()
                .map(|t| format!("{}.{}", quote_ident(src), quote_ident(t)))
                .collect();
            let left = deadline
                .saturating_duration_since(Instant::now())
                .as_millis()
                .max(1);
            // language=SQL
            let locked = snap
                .execute(sqlx::raw_sql(AssertSqlSafe(format!(
                    "SET LOCAL lock_timeout = {left}; SET LOCAL statement_timeout = {left}; \
                     LOCK TABLE {} IN ACCESS SHARE MODE",
                    names.join(", ")
                ))))
                .await;
            match locked {
                Ok(_) => {}
                // Dropped since the list: list and lock again.
                Err(e)
                    if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42P01") =>
                {
                    vanished = true;
                    break;
                }
                Err(e)
                    if db::is_lock_timeout(&e)
                        || e.as_database_error().and_then(|d| d.code()).as_deref()
                            == Some("57014") =>
                {
                    let who = db::relation_lock_holders(snap, src).await;
                    return Err(Error::Failed {
                        message: format!(
                            "copying schema {src} waited {} (lock_wait) for its tables{who}; nothing was copied",
                            humantime::format_duration(lock_wait)
                        ),
                    });
                }
                Err(e) => {
                    return Err(Error::db(format!("locking the tables of schema {src}"))(e));
                }
            }
        }
        if vanished {
            let _ = snap.execute("ROLLBACK").await;
            continue;
        }
        // language=SQL
        snap.execute("SET LOCAL statement_timeout = 0")
            .await
            .map_err(Error::db(doing.clone()))?;
        // The snapshot, now that the tables are locked.
        let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
            .fetch_one(&mut *snap)
            .await
            .map_err(Error::db(doing.clone()))?;
        let nsp: i64 =
            sqlx::query_scalar("SELECT oid::int8 FROM pg_catalog.pg_namespace WHERE nspname = $1")
                .bind(src)
                .fetch_one(&mut *snap)
                .await
                .map_err(Error::db(doing.clone()))?;
        let def = catalog::read(snap, nsp)
            .await
            .map_err(Error::db(doing.clone()))?;
        let mut seen: Vec<String> = def
            .relations
            .iter()
            .filter(|r| matches!(r.kind, 'r' | 'p'))
            .map(|r| r.name.clone())
            .collect();
        seen.sort();
        if seen != listed {
            // A table came or went between the list and the locks.
            let _ = snap.execute("ROLLBACK").await;
            continue;
        }
        check_not_rewritten(snap, src, nsp).await?;
        return Ok((snapshot, nsp, def));
    }
    Err(Error::Failed {
        message: format!(
            "the tables of schema {src} kept changing while the copy tried to lock them (tables created or dropped by another session); nothing was copied: retry when it is quiet"
        ),
    })
}

/// Fails when a table of the source was rewritten (`ALTER COLUMN … TYPE`,
/// `TRUNCATE`, `VACUUM FULL`, `CLUSTER`) after the copy's snapshot was taken:
/// the snapshot's catalog names the old data file, the live catalog a new
/// one, and the snapshot may see the table as empty. Run on the snapshot's
/// connection: `pg_class` is read in the snapshot, `pg_relation_filenode`
/// from the live catalog. With the locks taken before the snapshot (see
/// [`lock_and_snapshot`]) this cannot happen; the check is what lets the
/// copy's own verification see a difference from the live source at all,
/// since its row counts and hashes read the same snapshot.
pub(super) async fn check_not_rewritten(
    snap: &mut PgConnection,
    src: &str,
    nsp: i64,
) -> Result<()> {
    // language=SQL
    let rewritten: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_catalog.pg_class c \
         WHERE c.relnamespace = $1::int8::oid AND c.relkind = 'r' AND c.relfilenode <> 0 \
           AND pg_catalog.pg_relation_filenode(c.oid) IS DISTINCT FROM c.relfilenode \
         ORDER BY 1",
    )
    .bind(nsp)
    .fetch_all(&mut *snap)
    .await
    .map_err(Error::db(format!("checking the tables of schema {src}")))?;
    if rewritten.is_empty() {
        Ok(())
    } else {
        Err(Error::Failed {
            message: format!(
                "table{} {} of schema {src} {} rewritten by another session after the copy's snapshot was taken, so the snapshot cannot see {} rows; nothing was created: run the copy again",
                if rewritten.len() == 1 { "" } else { "s" },
                rewritten.join(", "),
                if rewritten.len() == 1 { "was" } else { "were" },
                if rewritten.len() == 1 { "its" } else { "their" },
            ),
        })
    }
}
