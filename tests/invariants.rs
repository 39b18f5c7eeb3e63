//! The ten invariants of the design notes, each against a real PostgreSQL.
//! Every test gets its own database from `#[sqlx::test]`.

mod common;

use std::time::Duration;

use common::*;
use sqlx::PgPool;
use tenantmig::{Engine, OutcomeState, SchemaState, Selection, StopReason, TransactionMode};

const T1: &str = "CREATE TABLE docs (id int PRIMARY KEY, title text);";
const T2: &str = "CREATE TABLE pages (id int PRIMARY KEY, doc int REFERENCES docs (id));";

// 1. A transactional migration and its history row commit together.
#[sqlx::test(migrations = false)]
async fn inv1_a_migration_whose_history_row_cannot_be_written_leaves_nothing_behind(pool: PgPool) {
    let shared = folder(&[]);
    // Migration 2 creates a table and then takes its own history slot, so
    // recording it fails: its table must vanish with the failed row.
    let tenant = folder(&[
        ("1_docs.sql", T1),
        (
            "2_pages.sql",
            "CREATE TABLE pages (id int);\n\
             INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (2, 'squatter', true, '\\x00', 0);",
        ),
    ]);
    let mut s = settings(&pool, shared.path(), tenant.path());
    s.transaction_mode = TransactionMode::PerMigration;
    let (report, _) = migrate(&s, select(&tenants(1))).await;
    assert!(!report.is_success());
    let o = &report.tenants[0];
    assert_eq!(o.state, OutcomeState::Failed);
    assert_eq!(o.failed_version, Some(2));
    assert!(
        o.error.as_deref().unwrap().contains("duplicate key"),
        "{o:?}"
    );
    assert!(
        !table_exists(&pool, "t_01", "pages").await,
        "the SQL committed without its row"
    );
    assert_eq!(history(&pool, "t_01").await, vec![(1, true)]);
}

#[sqlx::test(migrations = false)]
async fn inv1_a_file_failing_halfway_is_rolled_back_whole(pool: PgPool) {
    let shared = folder(&[]);
    let tenant = folder(&[
        ("1_docs.sql", T1),
        (
            "2_two_steps.sql",
            "CREATE TABLE first_half (id int);\nSELECT 1/0;",
        ),
    ]);
    let s = settings(&pool, shared.path(), tenant.path());
    let (report, _) = migrate(&s, select(&tenants(1))).await;
    assert_eq!(report.tenants[0].state, OutcomeState::Failed);
    assert!(
        report.tenants[0]
            .error
            .as_deref()
            .unwrap()
            .contains("division by zero")
    );
    assert!(!table_exists(&pool, "t_01", "first_half").await);
    // Per-schema grouping (the default): the tenant is back at its version before the run.
    assert!(!table_exists(&pool, "t_01", "docs").await);
    assert_eq!(history(&pool, "t_01").await, vec![]);
}

// 2. A no-transaction file records false first, true after; a false row
//    is refused until repair, with the failed statement shown.
#[sqlx::test(migrations = false)]
async fn inv2_a_no_transaction_file_is_recorded_false_while_it_runs(pool: PgPool) {
    let shared = folder(&[]);
    let tenant = folder(&[
        ("1_docs.sql", T1),
        (
            "2_slow.sql",
            "-- no-transaction\nSELECT pg_sleep(1.5);\nCREATE INDEX CONCURRENTLY docs_title_idx ON docs (title);",
        ),
    ]);
    let s = settings(&pool, shared.path(), tenant.path());
    let run = tokio::spawn({
        let s = s.clone();
        async move { migrate(&s, select(&tenants(1))).await.0 }
    });
    let mut seen_false = false;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if history(&pool, "t_01").await.contains(&(2, false)) {
            seen_false = true;
            break;
        }
    }
    let report = run.await.unwrap();
    assert!(
        seen_false,
        "the row of a running no-transaction file must say success = false"
    );
    assert!(report.is_success(), "{:?}", report.tenants);
    assert_eq!(history(&pool, "t_01").await, vec![(1, true), (2, true)]);
    assert!(table_exists(&pool, "t_01", "docs_title_idx").await);
}

#[sqlx::test(migrations = false)]
async fn inv2_a_failed_no_transaction_file_is_refused_until_repair(pool: PgPool) {
    let shared = folder(&[]);
    let tenant = folder(&[
        ("1_docs.sql", T1),
        (
            "2_index.sql",
            "-- no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS docs_title_idx ON docs (title);\nCREATE INDEX CONCURRENTLY nope_idx ON nope (x);",
        ),
        ("3_after.sql", T2),
    ]);
    let s = settings(&pool, shared.path(), tenant.path());
    let (report, _) = migrate(&s, select(&tenants(2))).await;
    let o = &report.tenants[0];
    assert_eq!(o.state, OutcomeState::Failed);
    assert_eq!(o.failed_version, Some(2));
    let stmt = o.failed_statement.as_deref().unwrap();
    assert!(
        stmt.contains("line 3") && stmt.contains("nope_idx"),
        "{stmt}"
    );
    assert_eq!(history(&pool, "t_01").await, vec![(1, true), (2, false)]);

    // Status shows the failure with the statement from the ledger.
    let engine = Engine::new(
        s.clone(),
        &select(&tenants(1)),
        std::sync::Arc::new(tenantmig::NoEvents),
    )
    .unwrap();
    let st = engine.status(&select(&tenants(1))).await.unwrap();
    assert_eq!(st.tenants[0].state, SchemaState::Failed);
    assert!(
        st.tenants[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("nope_idx"),
        "{:?}",
        st.tenants[0]
    );

    // A later run refuses the schema and leaves it alone.
    let (again, _) = migrate(&s, select(&tenants(1))).await;
    assert_eq!(again.tenants[0].state, OutcomeState::Refused);
    assert!(
        again.tenants[0]
            .error
            .as_deref()
            .unwrap()
            .contains("tenantmig repair")
    );
    assert!(!table_exists(&pool, "t_01", "pages").await);

    // Fixed by hand, repaired, then the run finishes (the file is fixed too).
    exec(
        &pool,
        "CREATE TABLE t_01.nope (x int); CREATE TABLE t_02.nope (x int);",
    )
    .await;
    let items = engine
        .repair_candidates(&select(&tenants(2)))
        .await
        .unwrap();
    assert_eq!(items.len(), 2);
    engine
        .repair(&items, tenantmig::repair::RepairAction::Clear, &[])
        .await
        .unwrap();
    assert_eq!(history(&pool, "t_01").await, vec![(1, true)]);
    let (done, _) = migrate(&s, select(&tenants(2))).await;
    assert!(done.is_success(), "{:?}", done.tenants);
    assert_eq!(
        history(&pool, "t_02").await,
        vec![(1, true), (2, true), (3, true)]
    );
}

// 3. Per-schema advisory locks, polled with a deadline.
#[sqlx::test(migrations = false)]
async fn inv3_two_runs_at_once_never_apply_anything_twice(pool: PgPool) {
    create_applied_table(&pool).await;
    let shared = folder(&[]);
    // Not idempotent: each application adds a row to a shared table.
    let tenant = folder(&[
        (
            "1_a.sql",
            &format!("SELECT pg_sleep(0.2); {}", record_applied(1)),
        ),
        ("2_b.sql", &record_applied(2)),
    ]);
    let mut s = settings(&pool, shared.path(), tenant.path());
    s.jobs = 3;
    let names = tenants(6);
    let a = tokio::spawn({
        let (s, n) = (s.clone(), names.clone());
        async move { migrate(&s, select(&n)).await.0 }
    });
    let b = tokio::spawn({
        let (s, n) = (s.clone(), names.clone());
        async move { migrate(&s, select(&n)).await.0 }
    });
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert!(
        a.is_success() && b.is_success(),
        "{:?}\n{:?}",
        a.tenants,
        b.tenants
    );
    assert_applied_once(&pool, 12).await;
}

#[sqlx::test(migrations = false)]
async fn inv3_a_locked_schema_does_not_hold_up_other_schemas_and_gives_up_at_its_deadline(
    pool: PgPool,
) {
    let shared = folder(&[]);
    let tenant = folder(&[("1_docs.sql", T1)]);
    let mut s = settings(&pool, shared.path(), tenant.path());
    s.lock_wait = Duration::from_millis(800);
    s.max_failures = 5;
    s.jobs = 1;
    // Another process holds t_01's lock.
    let mut holder = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(hashtextextended('tenantmig:' || 't_01', 0))")
        .execute(&mut *holder)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let (report, _) = migrate(&s, select(&tenants(3))).await;
    let took = started.elapsed();
    let t1 = report.tenants.iter().find(|o| o.schema == "t_01").unwrap();
    assert_eq!(t1.state, OutcomeState::Failed);
    assert!(
        t1.error.as_deref().unwrap().contains("stayed locked"),
        "{t1:?}"
    );
    assert!(
        t1.error.as_deref().unwrap().contains("backend pid"),
        "{t1:?}"
    );
    for t in ["t_02", "t_03"] {
        let o = report.tenants.iter().find(|o| o.schema == t).unwrap();
        assert_eq!(o.state, OutcomeState::Succeeded, "{o:?}");
    }
    assert!(
        took < Duration::from_secs(10),
        "polling must stop at the deadline: {took:?}"
    );
    drop(holder);
}

// 4. lock_timeout / statement_timeout per tenant session, lock timeouts retried.
#[sqlx::test(migrations = false)]
async fn inv4_a_lock_timeout_is_retried_with_back_off(pool: PgPool) {
    let shared = folder(&[]);
    let tenant = folder(&[
        ("1_docs.sql", T1),
        ("2_alter.sql", "ALTER TABLE docs ADD COLUMN body text;"),
    ]);
    let mut s = settings(&pool, shared.path(), tenant.path());
    let (first, _) = migrate(&s, select(&tenants(1))).await;
    assert!(first.is_success());
    std::fs::remove_file(tenant.path().join("2_alter.sql")).ok();
    // Roll the schema back to version 1 so 2 is pending again.
    exec(&pool, "DELETE FROM t_01._sqlx_migrations WHERE version = 2; ALTER TABLE t_01.docs DROP COLUMN body;").await;
    write(
        tenant.path(),
        "2_alter.sql",
        "ALTER TABLE docs ADD COLUMN body text;",
    );

    s.lock_timeout = Duration::from_millis(200);
    s.lock_retries = 6;
    s.retry_backoff = Duration::from_millis(150);
    // Someone reads docs in a long transaction: the ALTER must wait.
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE t_01.docs IN ACCESS SHARE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(900)).await;
        blocker.rollback().await.unwrap();
    });
    let (report, _) = migrate(&s, select(&tenants(1))).await;
    release.await.unwrap();
    let o = &report.tenants[0];
    assert_eq!(o.state, OutcomeState::Succeeded, "{o:?}");
    assert!(o.attempts > 1, "expected retries, got {o:?}");
}

#[sqlx::test(migrations = false)]
async fn inv4_timeouts_apply_in_each_tenant_session(pool: PgPool) {
    let shared = folder(&[]);
    let tenant = folder(&[
        ("1_docs.sql", T1),
        (
            "2_settings.sql",
            "CREATE TABLE seen AS SELECT current_setting('lock_timeout') AS lt, current_setting('statement_timeout') AS st;",
        ),
        ("3_slow.sql", "SELECT pg_sleep(3);"),
    ]);
    let mut s = settings(&pool, shared.path(), tenant.path());
    s.lock_timeout = Duration::from_millis(1234);
    s.statement_timeout = Duration::from_millis(700);
    s.transaction_mode = TransactionMode::PerMigration;
    let (report, _) = migrate(&s, select(&tenants(1))).await;
    let o = &report.tenants[0];
    assert_eq!(o.state, OutcomeState::Failed);
    assert_eq!(o.failed_version, Some(3));
    assert!(
        o.error.as_deref().unwrap().contains("statement timeout"),
        "{o:?}"
    );
    assert_eq!(o.attempts, 1, "a statement timeout is not retried");
    let lt: String = sqlx::query_scalar("SELECT lt FROM t_01.seen")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(lt, "1234ms");
}

// 5. The shared phase completes before any tenant starts; a shared failure stops the run.
#[sqlx::test(migrations = false)]
async fn inv5_tenants_start_only_after_the_shared_schema_is_migrated(pool: PgPool) {
    let shared = folder(&[(
        "1_plans.sql",
        "SELECT pg_sleep(0.5); CREATE TABLE plans (name text); INSERT INTO plans VALUES ('free');",
    )]);
    // Reads the shared table through the search path (tenant, shared).
    let tenant = folder(&[(
        "1_copy.sql",
        "CREATE TABLE my_plan AS SELECT name FROM plans;",
    )]);
    let s = settings(&pool, shared.path(), tenant.path());
    let (report, _) = migrate(&s, select(&tenants(4))).await;
    assert!(report.is_success(), "{:?}", report.tenants);
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM t_04.my_plan").await,
        1
    );
}

#[sqlx::test(migrations = false)]
async fn inv5_a_shared_failure_stops_the_run_before_any_tenant(pool: PgPool) {
    let shared = folder(&[("1_bad.sql", "CREATE TABLE plans (name text); SELECT nope;")]);
    let tenant = folder(&[("1_docs.sql", T1)]);
    let s = settings(&pool, shared.path(), tenant.path());
    let (report, _) = migrate(&s, select(&tenants(3))).await;
    assert_eq!(report.shared.as_ref().unwrap().state, OutcomeState::Failed);
    assert_eq!(report.stopped, Some(StopReason::SharedFailed));
    assert_eq!(report.not_reached.len(), 3);
    assert!(report.tenants.is_empty());
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 't\\_%'"
        )
        .await,
        0
    );
}

// 6. One failing tenant never stops the others; the policy decides about new ones.
async fn data_dependent_setup(pool: &PgPool) -> (tempfile::TempDir, tempfile::TempDir) {
    let shared = folder(&[]);
    let tenant = folder(&[("1_docs.sql", T1)]);
    let s = settings(pool, shared.path(), tenant.path());
    let (r, _) = migrate(&s, select(&tenants(6))).await;
    assert!(r.is_success());
    for t in tenants(6) {
        exec(
            pool,
            &format!("INSERT INTO {t}.docs VALUES (1, 'a'), (2, 'b')"),
        )
        .await;
    }
    // Tenants 2 and 5 have a document without a title.
    exec(pool, "UPDATE t_02.docs SET title = NULL WHERE id = 2; UPDATE t_05.docs SET title = NULL WHERE id = 1;").await;
    write(
        tenant.path(),
        "2_title_required.sql",
        "ALTER TABLE docs ALTER COLUMN title SET NOT NULL;\nCREATE TABLE audit (id int);",
    );
    (shared, tenant)
}

#[sqlx::test(migrations = false)]
async fn inv6_a_data_dependent_failure_leaves_those_tenants_exactly_as_they_were(pool: PgPool) {
    let (shared, tenant) = data_dependent_setup(&pool).await;
    let mut s = settings(&pool, shared.path(), tenant.path());
    s.max_failures = 10;
    s.jobs = 3;
    let (report, _) = migrate(&s, select(&tenants(6))).await;
    assert!(!report.is_success());
    let failed: Vec<&str> = report.failures().map(|o| o.schema.as_str()).collect();
    assert_eq!(failed.len(), 2);
    assert!(failed.contains(&"t_02") && failed.contains(&"t_05"));
    for o in report.failures() {
        assert!(
            o.error.as_deref().unwrap().contains("contains null values"),
            "{o:?}"
        );
        assert_eq!(o.to_version, Some(1));
    }
    for t in ["t_02", "t_05"] {
        assert_eq!(history(&pool, t).await, vec![(1, true)]);
        assert!(!table_exists(&pool, t, "audit").await);
        assert_eq!(
            scalar_i64(&pool, &format!("SELECT count(*) FROM {t}.docs")).await,
            2
        );
        assert_eq!(
            scalar_i64(
                &pool,
                &format!("SELECT count(*) FROM {t}.docs WHERE title IS NULL")
            )
            .await,
            1
        );
    }
    for t in ["t_01", "t_03", "t_04", "t_06"] {
        assert_eq!(history(&pool, t).await, vec![(1, true), (2, true)]);
        assert!(table_exists(&pool, t, "audit").await);
    }
}

#[sqlx::test(migrations = false)]
async fn inv6_max_failures_stops_starting_new_tenants_and_names_the_rest(pool: PgPool) {
    let (shared, tenant) = data_dependent_setup(&pool).await;
    let mut s = settings(&pool, shared.path(), tenant.path());
    s.max_failures = 0;
    s.jobs = 1;
    let (report, _) = migrate(&s, select(&tenants(6))).await;
    assert_eq!(report.stopped, Some(StopReason::MaxFailures));
    // t_01 succeeds, t_02 fails, nothing after it starts.
    assert_eq!(report.tenants_migrated(), 1);
    assert_eq!(report.failures().count(), 1);
    assert_eq!(report.not_reached, vec!["t_03", "t_04", "t_05", "t_06"]);
    assert_eq!(history(&pool, "t_03").await, vec![(1, true)]);
}

#[sqlx::test(migrations = false)]
async fn inv6_a_failing_canary_keeps_the_other_tenants_untouched(pool: PgPool) {
    let (shared, tenant) = data_dependent_setup(&pool).await;
    let mut s = settings(&pool, shared.path(), tenant.path());
    s.max_failures = 100;
    let (report, _) = migrate_with(&s, select(&tenants(6)), 2).await;
    assert_eq!(report.stopped, Some(StopReason::CanaryFailed));
    assert_eq!(report.tenants.len(), 2);
    assert_eq!(report.not_reached.len(), 4);
    assert_eq!(history(&pool, "t_06").await, vec![(1, true)]);
}

// 7. Edited, missing or unknown applied migrations are found before anything runs.
#[sqlx::test(migrations = false)]
async fn inv7_an_edited_applied_migration_is_refused_per_tenant_with_both_checksums(pool: PgPool) {
    let shared = folder(&[]);
    let tenant = folder(&[("1_docs.sql", T1)]);
    let mut s = settings(&pool, shared.path(), tenant.path());
    s.max_failures = 10;
    let (r, _) = migrate(&s, select(&tenants(3))).await;
    assert!(r.is_success());
    let old = tenantmig::migration::checksum(T1);
    write(
        tenant.path(),
        "1_docs.sql",
        "CREATE TABLE docs (id bigint PRIMARY KEY, title text);",
    );
    write(tenant.path(), "2_pages.sql", T2);
    // t_03 has a version no file has.
    exec(
        &pool,
        "INSERT INTO t_03._sqlx_migrations VALUES (7, 'ghost', now(), true, '\\x01', 0)",
    )
    .await;
    let engine = Engine::new(
        s.clone(),
        &select(&tenants(3)),
        std::sync::Arc::new(tenantmig::NoEvents),
    )
    .unwrap();
    let st = engine.status(&select(&tenants(3))).await.unwrap();
    assert!(
        st.tenants
            .iter()
            .all(|t| t.state == SchemaState::ChecksumMismatch)
    );
    let (report, _) = migrate(&s, select(&tenants(3))).await;
    assert_eq!(report.failures().count(), 3);
    let e = report.tenants[0].error.clone().unwrap();
    let new =
        tenantmig::migration::checksum("CREATE TABLE docs (id bigint PRIMARY KEY, title text);");
    assert!(
        e.contains(&hex::encode(&old)[..16]) && e.contains(&hex::encode(&new)[..16]),
        "{e}"
    );
    let e3 = report
        .tenants
        .iter()
        .find(|o| o.schema == "t_03")
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert!(e3.contains("0007") || e3.contains("version 7"), "{e3}");
    for t in tenants(3) {
        assert!(
            !table_exists(&pool, &t, "pages").await,
            "nothing may run in a refused tenant"
        );
    }
}

// 8. A killed orchestrator leaves every schema finishable; Ctrl-C starts nothing new.
#[sqlx::test(migrations = false)]
async fn inv8_ctrl_c_lets_in_flight_work_finish_and_starts_nothing_new(pool: PgPool) {
    let shared = folder(&[]);
    let tenant = folder(&[(
        "1_docs.sql",
        "SELECT pg_sleep(0.4); CREATE TABLE docs (id int);",
    )]);
    let mut s = settings(&pool, shared.path(), tenant.path());
    s.jobs = 2;
    let selection = select(&tenants(8));
    let engine = Engine::new(
        s.clone(),
        &selection,
        std::sync::Arc::new(tenantmig::NoEvents),
    )
    .unwrap();
    let opts = tenantmig::MigrateOptions {
        selection: selection.clone(),
        canary: 0,
        dry_run: false,
        args: vec![],
        goal: Default::default(),
    };
    let stop = tokio::time::sleep(Duration::from_millis(700));
    let report = engine.migrate(&opts, stop).await.unwrap();
    assert_eq!(report.stopped, Some(StopReason::Shutdown));
    assert!(!report.not_reached.is_empty(), "{report:?}");
    // Whatever started, finished: no tenant is half-done.
    for o in &report.tenants {
        match o.state {
            OutcomeState::Succeeded => assert_eq!(history(&pool, &o.schema).await, vec![(1, true)]),
            // Taken just as the interrupt came: stopped before its first migration.
            OutcomeState::Stopped => {
                assert!(o.applied.is_empty() && history(&pool, &o.schema).await.is_empty())
            }
            _ => panic!("{o:?}"),
        }
    }
    let (rest, _) = migrate(&s, selection).await;
    assert!(rest.is_success());
    assert_eq!(rest.tenants_migrated() + report.tenants_migrated(), 8);
}

// 10. Identifiers are validated and quoted everywhere.
#[sqlx::test(migrations = false)]
async fn inv10_a_hostile_tenant_name_from_the_query_is_rejected_and_never_executed(pool: PgPool) {
    exec(&pool, "CREATE TABLE public.customers (id serial, schema_name text); \
                 INSERT INTO public.customers (schema_name) VALUES ('acme'), ('x\"; drop schema public cascade; --'), ('Mixed Case');").await;
    let shared = folder(&[]);
    let tenant = folder(&[("1_docs.sql", T1)]);
    let mut s = settings(&pool, shared.path(), tenant.path());
    s.tenants.query = Some("SELECT schema_name FROM public.customers ORDER BY id".into());
    let sel = Selection::all();
    let (report, _) = migrate(&s, sel).await;
    assert!(!report.is_success());
    let bad: Vec<_> = report.failures().collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].state, OutcomeState::Refused);
    assert!(
        bad[0]
            .error
            .as_deref()
            .unwrap()
            .contains("invalid schema name"),
        "{:?}",
        bad[0]
    );
    assert!(table_exists(&pool, "acme", "docs").await);
    assert!(
        table_exists(&pool, "Mixed Case", "docs").await,
        "names needing quotes work"
    );
    assert!(
        table_exists(&pool, "public", "customers").await,
        "public survived"
    );
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'x%'"
        )
        .await,
        0
    );
}

// Per-migration transactions: a failure keeps what committed before it.
#[sqlx::test(migrations = false)]
async fn per_migration_mode_keeps_earlier_migrations_of_a_failing_tenant(pool: PgPool) {
    let shared = folder(&[]);
    let tenant = folder(&[
        ("1_docs.sql", T1),
        ("2_pages.sql", T2),
        ("3_bad.sql", "SELECT nope;"),
    ]);
    let mut s = settings(&pool, shared.path(), tenant.path());
    s.transaction_mode = TransactionMode::PerMigration;
    let (report, _) = migrate(&s, select(&tenants(1))).await;
    assert_eq!(report.tenants[0].to_version, Some(2));
    assert_eq!(history(&pool, "t_01").await, vec![(1, true), (2, true)]);
}
