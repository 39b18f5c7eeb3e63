//! Promises under faults: two commands racing on one schema (the lock
//! protocol), a schema dropped while a run goes on, signals sent to the real
//! binary, a killed client whose server session goes on, waits bounded by
//! `lock_wait`, and a server that goes away mid-run.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sqlx::{Connection, Executor, PgPool};

/// Rows in `schema.table`.
async fn count(pool: &PgPool, schema: &str, table: &str) -> i64 {
    scalar_i64(
        pool,
        &format!("SELECT count(*) FROM \"{schema}\".\"{table}\""),
    )
    .await
}

/// One tenant `t_01` with a table of 1,000 rows, at version 1.
async fn tenant_with_rows(pool: &PgPool) -> (String, tempfile::TempDir, tempfile::TempDir) {
    let url = url_of(pool);
    let shared = folder(&[]);
    let tenant = folder(&[(
        "0001_items.sql",
        "CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL);
         INSERT INTO items SELECT g, g FROM generate_series(1, 1000) g;",
    )]);
    let dir = tempfile::tempdir().expect("dir");
    cli_sets(&url, dir.path(), shared.path(), tenant.path())
        .args(["migrate", "--tenant", "t_01"])
        .assert()
        .success();
    (url, shared, tenant)
}

// 1. One lock protocol: a copy or a snapshot of a schema that `migrate` is
// rewriting waits for the change (shared lock against exclusive) and sees
// every row; before, the copy took its snapshot first, the rewrite
// committed behind it, and the copy came out empty while its check passed.
#[sqlx::test(migrations = false)]
async fn a_copy_and_a_snapshot_started_during_a_rewrite_wait_and_keep_every_row(pool: PgPool) {
    let (url, shared, tenant) = tenant_with_rows(&pool).await;
    let dir = tempfile::tempdir().expect("dir");
    write(
        tenant.path(),
        "0002_widen.sql",
        "ALTER TABLE items ALTER COLUMN v TYPE bigint; SELECT pg_sleep(2.5);",
    );
    let migrate = spawn(
        &url,
        dir.path(),
        shared.path(),
        tenant.path(),
        &["migrate", "--tenant", "t_01"],
    );
    wait_for_query(&pool, "pg_sleep(2.5)").await;
    let copy = spawn(
        &url,
        dir.path(),
        shared.path(),
        tenant.path(),
        &[
            "copy-into-new-schema",
            "t_01",
            "t_copy",
            "--verify",
            "checksums",
        ],
    );
    let snap = spawn(
        &url,
        dir.path(),
        shared.path(),
        tenant.path(),
        &["snapshot", "create", "--tenant", "t_01", "--jobs", "1"],
    );
    let (code, out) = finish(copy);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = finish(snap);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = finish(migrate);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(count(&pool, "t_copy", "items").await, 1000);
    let snap_copy: String = sqlx::query_scalar(
        "SELECT copy_name FROM tenantmig.snapshot_schemas WHERE schema_name = 't_01'",
    )
    .fetch_one(&pool)
    .await
    .expect("snapshot copy");
    assert_eq!(count(&pool, &snap_copy, "items").await, 1000);
    // Both copies are of the migrated schema: they waited for the change.
    for schema in ["t_copy", snap_copy.as_str()] {
        let ty: String = sqlx::query_scalar(
            "SELECT data_type FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = 'items' AND column_name = 'v'",
        )
        .bind(schema)
        .fetch_one(&pool)
        .await
        .expect("column type");
        assert_eq!(ty, "bigint", "{schema}");
    }
}

// 1. The source's tables are locked before the copy's snapshot is taken, so
// an application's own rewrite (no advisory lock) that commits while the
// copy waits is seen, not lost.
#[sqlx::test(migrations = false)]
async fn a_copy_locks_the_source_tables_before_its_snapshot(pool: PgPool) {
    let (url, shared, tenant) = tenant_with_rows(&pool).await;
    let dir = tempfile::tempdir().expect("dir");
    let mut app = pool.acquire().await.expect("connection");
    app.execute("BEGIN; ALTER TABLE t_01.items ALTER COLUMN v TYPE bigint")
        .await
        .expect("alter");
    let copy = spawn(
        &url,
        dir.path(),
        shared.path(),
        tenant.path(),
        &["copy-into-new-schema", "t_01", "t_copy"],
    );
    wait_for_lock_waiter(&pool, "items").await;
    // Let the copy sit on its lock wait a moment, then commit the rewrite.
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.execute("COMMIT").await.expect("commit");
    let (code, out) = finish(copy);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(count(&pool, "t_copy", "items").await, 1000);
}

// 1. Shared against exclusive: copies of one source run together while a
// reader holds it, a change waits for lock_wait and then names the holder
// (pid, application_name, state, since) and how to end it.
#[sqlx::test(migrations = false)]
async fn readers_share_a_schema_and_a_change_waits_then_names_the_holder(pool: PgPool) {
    let (url, shared, tenant) = tenant_with_rows(&pool).await;
    let dir = tempfile::tempdir().expect("dir");
    write(
        tenant.path(),
        "0002_more.sql",
        "ALTER TABLE items ADD COLUMN w int;",
    );
    let mut reader = sqlx::PgConnection::connect(&url).await.expect("connect");
    reader
        .execute("SET application_name = 'some reader'")
        .await
        .expect("set");
    let pid: i32 = sqlx::query_scalar(
        "SELECT pg_backend_pid() FROM (SELECT pg_advisory_lock_shared(hashtextextended('tenantmig:' || 't_01', 0))) x",
    )
    .fetch_one(&mut reader)
    .await
    .expect("shared lock");
    // Another reader (a copy) goes ahead.
    cli_sets(&url, dir.path(), shared.path(), tenant.path())
        .args(["copy-into-new-schema", "t_01", "t_copy"])
        .assert()
        .success();
    // A change waits lock_wait, then names the holder.
    let started = Instant::now();
    let out = cli_sets(&url, dir.path(), shared.path(), tenant.path())
        .env("TENANTMIG_LOCK_WAIT", "1s")
        // A regression that waits forever fails here instead of hanging.
        .timeout(Duration::from_secs(30))
        .args(["migrate", "--tenant", "t_01"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert!(started.elapsed() < Duration::from_secs(10));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        format!("backend pid {pid}"),
        "shared lock".into(),
        "\"some reader\"".into(),
        "state idle".into(),
        format!("pg_terminate_backend({pid})"),
    ] {
        assert!(text.contains(&needle), "{needle:?} missing: {text}");
    }
    assert_eq!(history(&pool, "t_01").await.len(), 1, "nothing migrated");
    // Once the reader lets go, the change runs.
    reader.close().await.expect("close");
    cli_sets(&url, dir.path(), shared.path(), tenant.path())
        .args(["migrate", "--tenant", "t_01"])
        .assert()
        .success();
    assert_eq!(history(&pool, "t_01").await.len(), 2);
}

// 2. A schema dropped while migrate runs is reported as vanished, not
// re-created; the run exits 1.
#[sqlx::test(migrations = false)]
async fn a_tenant_removed_while_migrate_runs_is_not_recreated(pool: PgPool) {
    let url = url_of(&pool);
    let shared = folder(&[]);
    let tenant = folder(&[("0001_items.sql", "CREATE TABLE items (id int);")]);
    let dir = tempfile::tempdir().expect("dir");
    let names: Vec<String> = (1..=6).map(|i| format!("d_{i:02}")).collect();
    for n in &names {
        cli_sets(&url, dir.path(), shared.path(), tenant.path())
            .args(["tenant", "add", n])
            .assert()
            .success();
    }
    write(
        tenant.path(),
        "0002_gate.sql",
        &format!("ALTER TABLE items ADD COLUMN v int; {}", Gate::sql(4201)),
    );
    // The first tenant waits at the gate while d_05 is removed.
    let gate = Gate::close(&url, 4201).await;
    let migrate = spawn_env(
        &url,
        dir.path(),
        shared.path(),
        tenant.path(),
        &[("TENANTMIG_LOCK_TIMEOUT", "120s")],
        &["migrate", "--jobs", "1"],
    );
    wait_for_query(&pool, "pg_advisory_lock(4201)").await;
    cli_sets(&url, dir.path(), shared.path(), tenant.path())
        .args(["tenant", "remove", "d_05", "--yes"])
        .assert()
        .success();
    gate.open().await;
    let (code, out) = finish(migrate);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("VANISHED d_05"), "{out}");
    assert!(out.contains("1 vanished"), "{out}");
    assert!(!table_exists(&pool, "d_05", "items").await);
    let exists = scalar_i64(
        &pool,
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'd_05'",
    )
    .await;
    assert_eq!(exists, 0, "d_05 was re-created");
    for n in names.iter().filter(|n| *n != "d_05") {
        assert_eq!(history(&pool, n).await.len(), 2, "{n}");
    }
    // The ledger says so too.
    let state: String = sqlx::query_scalar(
        "SELECT t.state FROM tenantmig.run_tenants t JOIN tenantmig.runs r ON r.id = t.run_id \
         WHERE t.schema_name = 'd_05' AND r.command = 'migrate' ORDER BY t.run_id DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .expect("ledger row");
    assert_eq!(state, "vanished");
}

// 2. One tenant's migration that drops another tenant's schema does not get
// it rebuilt empty by the same run.
#[sqlx::test(migrations = false)]
async fn a_schema_dropped_by_another_tenants_migration_is_not_recreated(pool: PgPool) {
    let url = url_of(&pool);
    let shared = folder(&[]);
    let tenant = folder(&[("0001_items.sql", "CREATE TABLE items (id int);")]);
    let dir = tempfile::tempdir().expect("dir");
    cli_sets(&url, dir.path(), shared.path(), tenant.path())
        .args(["migrate", "--tenant", "a_1", "--tenant", "b_2"])
        .assert()
        .success();
    write(
        tenant.path(),
        "0002_oops.sql",
        "DO $$ BEGIN IF current_schema() = 'a_1' THEN DROP SCHEMA b_2 CASCADE; END IF; END $$;",
    );
    cli_sets(&url, dir.path(), shared.path(), tenant.path())
        .args([
            "migrate", "--tenant", "a_1", "--tenant", "b_2", "--jobs", "1",
        ])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("b_2 vanished during the run"));
    let exists = scalar_i64(
        &pool,
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'b_2'",
    )
    .await;
    assert_eq!(exists, 0, "b_2 was re-created");
}

// 4. SIGTERM behaves like Ctrl-C: in-flight work finishes, nothing new
// starts, the summary is printed, exit 1, and no history row is left failed.
#[sqlx::test(migrations = false)]
async fn sigterm_finishes_in_flight_work_prints_the_summary_and_exits_1(pool: PgPool) {
    let url = url_of(&pool);
    let shared = folder(&[]);
    let tenant = folder(&[
        ("0001_items.sql", "CREATE TABLE items (id int);"),
        (
            "0002_slow.sql",
            "-- no-transaction\nSELECT pg_advisory_lock(4202);\nSELECT pg_advisory_unlock(4202);\nALTER TABLE items ADD COLUMN v int;",
        ),
        ("0003_more.sql", "ALTER TABLE items ADD COLUMN w int;"),
    ]);
    let dir = tempfile::tempdir().expect("dir");
    // t_1 waits at the gate inside its no-transaction file when the signal
    // comes; the gate opens once the signal has had time to be handled.
    let gate = Gate::close(&url, 4202).await;
    let child = spawn_env(
        &url,
        dir.path(),
        shared.path(),
        tenant.path(),
        &[("TENANTMIG_LOCK_TIMEOUT", "120s")],
        &[
            "migrate", "--jobs", "1", "--tenant", "t_1", "--tenant", "t_2", "--tenant", "t_3",
        ],
    );
    wait_for_query(&pool, "pg_advisory_lock(4202)").await;
    kill(&child, "TERM");
    tokio::time::sleep(Duration::from_secs(1)).await;
    gate.open().await;
    let (code, out) = finish(child);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("SIGTERM"), "{out}");
    assert!(out.contains("not reached"), "{out}");
    assert!(out.contains("stopped: interrupted"), "{out}");
    // The tenant in flight finished its no-transaction file (no false row)
    // and started nothing after it.
    assert_eq!(history(&pool, "t_1").await, vec![(1, true), (2, true)]);
    assert!(out.contains("1 stopped"), "{out}");
    // The ledger counts it as stopped, not failed.
    let (outcome, failed, stopped, state): (String, i32, i32, String) = sqlx::query_as(
        "SELECT r.outcome, r.tenants_failed, r.tenants_stopped, t.state \
         FROM tenantmig.runs r JOIN tenantmig.run_tenants t ON t.run_id = r.id \
         WHERE t.schema_name = 't_1'",
    )
    .fetch_one(&pool)
    .await
    .expect("ledger");
    assert_eq!(
        (outcome.as_str(), failed, stopped, state.as_str()),
        ("stopped", 0, 1, "stopped")
    );
    let failed = scalar_i64(
        &pool,
        "SELECT count(*) FROM pg_namespace n WHERE n.nspname IN ('t_2', 't_3')",
    )
    .await;
    assert_eq!(failed, 0, "no new tenant was started");
}

// 4. A second signal stops at once.
#[sqlx::test(migrations = false)]
async fn a_second_sigterm_stops_at_once(pool: PgPool) {
    let url = url_of(&pool);
    let shared = folder(&[]);
    let tenant = folder(&[("0001_slow.sql", "SELECT pg_sleep(20);")]);
    let dir = tempfile::tempdir().expect("dir");
    let child = spawn(
        &url,
        dir.path(),
        shared.path(),
        tenant.path(),
        &["migrate", "--tenant", "t_1"],
    );
    wait_for_query(&pool, "pg_sleep(20)").await;
    let started = Instant::now();
    kill(&child, "TERM");
    // Two signals that arrive together may be seen as one: the second
    // comes once the first has been handled.
    tokio::time::sleep(Duration::from_secs(1)).await;
    kill(&child, "TERM");
    let (code, out) = finish(child);
    assert_eq!(code, Some(143), "{out}");
    assert!(started.elapsed() < Duration::from_secs(10), "{out}");
    assert!(history(&pool, "t_1").await.is_empty());
}

// 4. After a SIGKILL the server ends the dead client's statement within
// about a second (client_connection_check_interval), so its lock goes and
// an immediate rerun finishes the job.
#[sqlx::test(migrations = false)]
async fn after_a_sigkill_the_server_ends_the_dead_clients_work_and_a_rerun_finishes(pool: PgPool) {
    let url = url_of(&pool);
    let shared = folder(&[]);
    let tenant = folder(&[(
        "0001_slow.sql",
        "SELECT pg_sleep(60); CREATE TABLE items (id int);",
    )]);
    let dir = tempfile::tempdir().expect("dir");
    let child = spawn(
        &url,
        dir.path(),
        shared.path(),
        tenant.path(),
        &["migrate", "--tenant", "t_1"],
    );
    wait_for_query(&pool, "pg_sleep(60)").await;
    kill(&child, "KILL");
    let _ = finish(child);
    // The rerun's own statement would run as long as the dead one: give it
    // nothing to wait for.
    std::fs::remove_file(tenant.path().join("0001_slow.sql")).expect("rm");
    write(
        tenant.path(),
        "0001_items.sql",
        "CREATE TABLE items (id int);",
    );
    let started = Instant::now();
    cli_sets(&url, dir.path(), shared.path(), tenant.path())
        .env("TENANTMIG_LOCK_WAIT", "10s")
        .timeout(Duration::from_secs(60))
        .args(["migrate", "--tenant", "t_1"])
        .assert()
        .success();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the rerun waited {:?}",
        started.elapsed()
    );
    let sleeping = scalar_i64(
        &pool,
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
         AND query LIKE '%pg_sleep(60)%' AND query NOT LIKE '%pg_stat_activity%'",
    )
    .await;
    assert_eq!(sleeping, 0, "the dead client's statement still runs");
}

// 4. Every wait is bounded by lock_wait: the drop preview and the drop of
// `tenant remove` behind an application's lock on a table.
#[sqlx::test(migrations = false)]
async fn drop_and_its_preview_wait_at_most_lock_wait_and_name_the_blocker(pool: PgPool) {
    let (url, shared, tenant) = tenant_with_rows(&pool).await;
    let dir = tempfile::tempdir().expect("dir");
    let mut app = sqlx::PgConnection::connect(&url).await.expect("connect");
    app.execute(
        "SET application_name = 'the app'; BEGIN; LOCK TABLE t_01.items IN ACCESS EXCLUSIVE MODE",
    )
    .await
    .expect("lock");
    for args in [
        &["drop-schema", "t_01"][..],
        &["drop-schema", "t_01", "--yes"][..],
        &["tenant", "remove", "t_01", "--yes"][..],
    ] {
        let started = Instant::now();
        let out = cli_sets(&url, dir.path(), shared.path(), tenant.path())
            .env("TENANTMIG_LOCK_WAIT", "1s")
            // A regression that waits forever fails here instead of hanging.
            .timeout(Duration::from_secs(30))
            .args(args)
            .assert()
            .failure()
            .get_output()
            .clone();
        let took = started.elapsed();
        let text = String::from_utf8_lossy(&out.stderr).to_string();
        // lock_wait is 1 s; the rest is the binary's own start and work,
        // with room for a loaded machine (unbounded, it would hang).
        assert!(
            took < Duration::from_secs(8),
            "{args:?} took {took:?}: {text}"
        );
        assert!(text.contains("\"the app\""), "{args:?}: {text}");
        assert!(text.contains("pg_terminate_backend("), "{args:?}: {text}");
    }
    app.execute("ROLLBACK").await.expect("rollback");
    assert_eq!(count(&pool, "t_01", "items").await, 1000, "nothing dropped");
}

// 4. A server that stops answering: the run stops starting tenants at once
// (one failure per worker in flight at most, not one per tenant), prints its
// summary with the tenants not reached, and exits 1.
#[sqlx::test(migrations = false)]
async fn a_server_that_goes_away_stops_the_run_with_tenants_not_reached(pool: PgPool) {
    let url = url_of(&pool);
    let db: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&pool)
        .await
        .expect("db");
    let shared = folder(&[]);
    let tenant = folder(&[(
        "0001_slow.sql",
        "SELECT pg_sleep(0.4); CREATE TABLE items (id int);",
    )]);
    let dir = tempfile::tempdir().expect("dir");
    let names: Vec<String> = (1..=30).map(|i| format!("--tenant=s_{i:02}")).collect();
    let mut args = vec!["migrate", "--jobs", "2"];
    args.extend(names.iter().map(String::as_str));
    let child = spawn(&url, dir.path(), shared.path(), tenant.path(), &args);
    wait_for_query(&pool, "pg_sleep(0.4)").await;
    // No new connection is accepted, and every tenantmig session is ended:
    // to tenantmig the server is gone.
    let mut admin = sqlx::PgConnection::connect(&url.replace(&format!("/{db}"), "/postgres"))
        .await
        .expect("admin connection");
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE \"{db}\" WITH ALLOW_CONNECTIONS false"
        )))
        .await
        .expect("close the database");
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{db}' AND application_name LIKE 'tenantmig%'"
        )))
        .await
        .expect("terminate");
    let (code, out) = finish(child);
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE \"{db}\" WITH ALLOW_CONNECTIONS true"
        )))
        .await
        .expect("open the database");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("could no longer be reached"), "{out}");
    // The summary, from memory, lists the tenants not reached.
    assert!(out.contains(" not reached in "), "{out}");
    assert!(out.contains("not reached: s_"), "{out}");
    let failed_lines = out.lines().filter(|l| l.starts_with("FAILED ")).count();
    assert!(failed_lines <= 2, "one failure per worker at most: {out}");
    // A rerun finishes the job.
    let mut rerun = vec!["migrate"];
    rerun.extend(names.iter().map(String::as_str));
    cli_sets(&url, dir.path(), shared.path(), tenant.path())
        .args(rerun)
        .assert()
        .success();
}

// 8. A lock-timeout failure names the session that held the table.
#[sqlx::test(migrations = false)]
async fn a_lock_timeout_failure_names_the_blocking_session(pool: PgPool) {
    let (url, shared, tenant) = tenant_with_rows(&pool).await;
    let dir = tempfile::tempdir().expect("dir");
    write(
        tenant.path(),
        "0002_more.sql",
        "ALTER TABLE items ADD COLUMN w int;",
    );
    let mut app = sqlx::PgConnection::connect(&url).await.expect("connect");
    app.execute("SET application_name = 'the app'; BEGIN; SELECT count(*) FROM t_01.items")
        .await
        .expect("read in a transaction");
    let out = cli_sets(&url, dir.path(), shared.path(), tenant.path())
        .env("TENANTMIG_LOCK_TIMEOUT", "200ms")
        .timeout(Duration::from_secs(30))
        .env("TENANTMIG_LOCK_RETRIES", "1")
        .env("TENANTMIG_RETRY_BACKOFF", "10ms")
        .args(["migrate", "--tenant", "t_01"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("lock timeout"), "{text}");
    assert!(text.contains("\"the app\""), "{text}");
    assert!(text.contains("state idle in transaction"), "{text}");
    assert!(text.contains("pg_terminate_backend("), "{text}");
    app.execute("ROLLBACK").await.expect("rollback");
}

// 8. PostgreSQL's source location ("at line 948" of its C code) is never
// shown, neither in a failed tenant's error nor in a command's error.
#[sqlx::test(migrations = false)]
async fn errors_do_not_carry_postgres_source_lines(pool: PgPool) {
    let url = url_of(&pool);
    let shared = folder(&[]);
    let tenant = folder(&[("0001_bad.sql", "CREATE TABLE items (id int); SELECT 1/0;")]);
    let dir = tempfile::tempdir().expect("dir");
    let line = regex_lite_at_line();
    let out = cli_sets(&url, dir.path(), shared.path(), tenant.path())
        .args(["migrate", "--tenant", "t_01"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(text.contains("division by zero"), "{text}");
    assert!(!line(&text), "{text}");
    let out = cli_sets(&url, dir.path(), shared.path(), tenant.path())
        .env("TENANTMIG_TENANTS__QUERY", "SELECT nope FROM nowhere")
        .args(["status"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(text.contains("nowhere"), "{text}");
    assert!(!line(&text), "{text}");
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT coalesce(error, '') FROM tenantmig.run_tenants")
            .fetch_all(&pool)
            .await
            .expect("ledger");
    assert!(rows.iter().any(|e| e.contains("division by zero")));
    assert!(rows.iter().all(|e| !line(e)), "{rows:?}");
}

/// A matcher for the driver's " at line N" suffix.
fn regex_lite_at_line() -> impl Fn(&str) -> bool {
    |text: &str| {
        text.match_indices(" at line ").any(|(i, m)| {
            text[i + m.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
    }
}

// 8. A no-transaction .down.sql that fails is reported on the next run as
// an interrupted rollback, not as a failed migration.
#[sqlx::test(migrations = false)]
async fn an_interrupted_down_file_is_reported_as_an_interrupted_rollback(pool: PgPool) {
    let url = url_of(&pool);
    let shared = folder(&[]);
    let tenant = folder(&[
        ("0001_items.up.sql", "CREATE TABLE items (id int);"),
        ("0001_items.down.sql", "DROP TABLE items;"),
        (
            "0002_idx.up.sql",
            "-- no-transaction\nCREATE INDEX CONCURRENTLY items_id ON items (id);",
        ),
        (
            "0002_idx.down.sql",
            "-- no-transaction\nSELECT 1/0;\nDROP INDEX CONCURRENTLY items_id;",
        ),
    ]);
    let dir = tempfile::tempdir().expect("dir");
    cli_sets(&url, dir.path(), shared.path(), tenant.path())
        .args(["migrate", "--tenant", "t_01"])
        .assert()
        .success();
    cli_sets(&url, dir.path(), shared.path(), tenant.path())
        .args(["rollback", "--steps", "1", "--tenant", "t_01", "--yes"])
        .assert()
        .code(1);
    cli_sets(&url, dir.path(), shared.path(), tenant.path())
        .args(["migrate", "--tenant", "t_01"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains(
            "the rollback of migration 0002 (its no-transaction .down.sql) failed or was interrupted",
        ));
}

// 1. verify reads a tenant under its shared lock: a tenant that a change
// holds is not read half-way; verify waits lock_wait, then names the holder.
#[sqlx::test(migrations = false)]
async fn verify_waits_for_a_change_and_names_its_holder(pool: PgPool) {
    let (url, shared, tenant) = tenant_with_rows(&pool).await;
    let dir = tempfile::tempdir().expect("dir");
    let mut changer = sqlx::PgConnection::connect(&url).await.expect("connect");
    let pid: i32 = sqlx::query_scalar(
        "SELECT pg_backend_pid() FROM (SELECT pg_advisory_lock(hashtextextended('tenantmig:' || 't_01', 0))) x",
    )
    .fetch_one(&mut changer)
    .await
    .expect("lock");
    cli_sets(&url, dir.path(), shared.path(), tenant.path())
        .env("TENANTMIG_LOCK_WAIT", "1s")
        // A regression that waits forever fails here instead of hanging.
        .timeout(Duration::from_secs(30))
        .args(["verify", "--tenant", "t_01"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(format!(
            "backend pid {pid} (exclusive lock"
        )));
    changer.close().await.expect("close");
    cli_sets(&url, dir.path(), shared.path(), tenant.path())
        .args(["verify", "--tenant", "t_01"])
        .assert()
        .success();
}

// 8. A role without CREATE on the database can run the commands once the
// control schema exists and is current; verify's scratch reference, which
// needs CREATE, says so instead of blaming the migrations.
#[sqlx::test(migrations = false)]
async fn a_role_without_create_on_the_database_works_once_the_control_schema_is_current(
    pool: PgPool,
) {
    let (url, shared, tenant) = tenant_with_rows(&pool).await;
    let dir = tempfile::tempdir().expect("dir");
    // Roles belong to the server, not the test's database: a name of this
    // process and moment never meets one a killed earlier run left behind.
    let role = format!(
        "tm_low_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_micros()
    );
    exec(
        &pool,
        &format!(
            "CREATE ROLE \"{role}\" LOGIN;
             ALTER SCHEMA t_01 OWNER TO \"{role}\";
             ALTER TABLE t_01.items OWNER TO \"{role}\";
             ALTER TABLE t_01._sqlx_migrations OWNER TO \"{role}\";
             GRANT USAGE ON SCHEMA tenantmig TO \"{role}\";
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA tenantmig TO \"{role}\";
             GRANT USAGE ON ALL SEQUENCES IN SCHEMA tenantmig TO \"{role}\";"
        ),
    )
    .await;
    let mut low = url::Url::parse(&url).expect("url");
    low.set_username(&role).expect("user");
    let low = low.to_string();
    write(
        tenant.path(),
        "0002_more.sql",
        "ALTER TABLE items ADD COLUMN w int;",
    );
    let run = |args: &[&str]| {
        let mut c = cli_sets(&low, dir.path(), shared.path(), tenant.path());
        c.args(args);
        c
    };
    run(&["migrate", "--tenant", "t_01"]).assert().success();
    assert_eq!(history(&pool, "t_01").await.len(), 2);
    run(&["status", "--tenant", "t_01"]).assert().success();
    run(&["runs"]).assert().success();
    run(&["verify", "--tenant", "t_01", "--reference", "t_01"])
        .assert()
        .success();
    run(&["verify", "--tenant", "t_01"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "needs CREATE on the database to build the reference",
        ));
    exec(
        &pool,
        &format!("DROP OWNED BY \"{role}\" CASCADE; DROP ROLE \"{role}\";"),
    )
    .await;
}

// 4. A second command that meets a run's lock waits lock_wait, then names
// the holder with its run and what the ledger says of that run.
#[sqlx::test(migrations = false)]
async fn a_lock_held_by_a_run_is_named_with_its_run_and_ledger_state(pool: PgPool) {
    let url = url_of(&pool);
    let shared = folder(&[]);
    let tenant = folder(&[(
        "0001_gate.sql",
        &format!("{} CREATE TABLE items (id int);", Gate::sql(4203)),
    )]);
    let dir = tempfile::tempdir().expect("dir");
    let gate = Gate::close(&url, 4203).await;
    let first = spawn_env(
        &url,
        dir.path(),
        shared.path(),
        tenant.path(),
        &[("TENANTMIG_LOCK_TIMEOUT", "120s")],
        &["migrate", "--tenant", "t_1"],
    );
    wait_for_query(&pool, "pg_advisory_lock(4203)").await;
    let run_id = scalar_i64(&pool, "SELECT max(id) FROM tenantmig.runs").await;
    cli_sets(&url, dir.path(), shared.path(), tenant.path())
        .env("TENANTMIG_LOCK_WAIT", "1s")
        // A regression that waits forever fails here instead of hanging.
        .timeout(Duration::from_secs(30))
        .args(["migrate", "--tenant", "t_1"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains(format!(
            "application_name \"tenantmig run {run_id}\", state active since"
        )))
        .stderr(predicates::str::contains(format!(
            "the ledger records run {run_id} as running"
        )))
        .stderr(predicates::str::contains(
            "query: SELECT pg_advisory_lock(4203)",
        ));
    gate.open().await;
    let (code, out) = finish(first);
    assert_eq!(code, Some(0), "{out}");
}

// A copy that stops (here: its table locks not granted within lock_wait)
// cleans up without the server's "there is no transaction in progress"
// warning in its output.
#[sqlx::test(migrations = false)]
async fn a_stopped_copy_cleans_up_without_a_spurious_warning(pool: PgPool) {
    let (url, shared, tenant) = tenant_with_rows(&pool).await;
    let dir = tempfile::tempdir().expect("dir");
    let mut app = pool.acquire().await.expect("connection");
    app.execute("BEGIN; LOCK TABLE t_01.items IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let out = cli_sets(&url, dir.path(), shared.path(), tenant.path())
        .env("TENANTMIG_LOCK_WAIT", "1s")
        .timeout(Duration::from_secs(30))
        .args(["copy-into-new-schema", "t_01", "t_copy"])
        .output()
        .expect("run");
    app.execute("ROLLBACK").await.expect("rollback");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(!text.contains("no transaction in progress"), "{text}");
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_namespace WHERE nspname = 't_copy' OR nspname LIKE 'tenantmig\\_copy\\_%'",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(left, 0, "{text}");
}
