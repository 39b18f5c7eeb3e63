//! Invariant 14: a tenant's session never leaks into the next migration or
//! the next tenant: role, session authorization, search_path, settings,
//! temporary tables, prepared statements and advisory locks are reset.

mod common;

use common::*;
use sqlx::PgPool;

#[sqlx::test(migrations = false)]
async fn inv14_role_search_path_and_session_leftovers_never_reach_the_next_migration_or_tenant(
    pool: PgPool,
) {
    let db: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    // Roles are cluster-wide: one of this test's own.
    let role = format!("{db}_low");
    exec(
        &pool,
        &format!("DROP ROLE IF EXISTS \"{role}\"; CREATE ROLE \"{role}\" NOLOGIN"),
    )
    .await;
    exec(&pool, "CREATE SCHEMA other_schema").await;
    let session_user: String = sqlx::query_scalar("SELECT session_user::text")
        .fetch_one(&pool)
        .await
        .unwrap();

    let shared = folder(&[]);
    let tenant = folder(&[
        // Whatever an earlier tenant left on this connection shows up here.
        (
            "1_clean.sql",
            "DO $$ BEGIN
               IF current_user <> session_user THEN
                 RAISE EXCEPTION 'running as % instead of %', current_user, session_user; END IF;
               IF current_setting('search_path') LIKE '%other_schema%' THEN
                 RAISE EXCEPTION 'search_path leaked: %', current_setting('search_path'); END IF;
               IF to_regclass('pg_temp.leftover') IS NOT NULL THEN
                 RAISE EXCEPTION 'a temporary table leaked'; END IF;
               IF EXISTS (SELECT 1 FROM pg_prepared_statements WHERE name = 'leftover') THEN
                 RAISE EXCEPTION 'a prepared statement leaked'; END IF;
               IF EXISTS (SELECT 1 FROM pg_locks WHERE pid = pg_backend_pid()
                          AND locktype = 'advisory' AND objid = 4242) THEN
                 RAISE EXCEPTION 'an advisory lock leaked'; END IF;
             END $$;",
        ),
        // A session-level SET inside a committed transaction persists …
        ("2_path.sql", "SET search_path TO other_schema;"),
        // … and must not decide where the next migration's objects go.
        ("3_things.sql", "CREATE TABLE things (id int);"),
        // Everything a session can keep, then a role without any rights.
        (
            "4_leftovers.sql",
            &format!(
                "-- no-transaction
                 CREATE TEMP TABLE leftover (id int);
                 PREPARE leftover AS SELECT 1;
                 SELECT pg_advisory_lock(4242);
                 SET search_path TO other_schema;
                 SET ROLE \"{role}\";"
            ),
        ),
        (
            "5_who.sql",
            "CREATE TABLE who AS SELECT current_user::text AS u, current_schema()::text AS s;",
        ),
        // Session authorization, which only a superuser may change.
        (
            "6_authorization.sql",
            &format!("-- no-transaction\nSET SESSION AUTHORIZATION \"{role}\";"),
        ),
        ("7_more.sql", "CREATE TABLE more (id int);"),
    ]);
    let names = tenants(3);
    let mut s = settings(&pool, shared.path(), tenant.path());
    // One connection for every tenant.
    s.jobs = 1;
    let (report, _) = migrate(&s, select(&names)).await;
    let failures: Vec<_> = report
        .failures()
        .map(|o| format!("{}: {:?}", o.schema, o.error))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(report.tenants_migrated(), 3);

    for n in &names {
        assert_eq!(
            history(&pool, n).await,
            (1..=7).map(|v| (v, true)).collect::<Vec<_>>(),
            "{n}"
        );
        for table in ["things", "who", "more"] {
            assert!(
                table_exists(&pool, n, table).await,
                "{n}.{table} is missing"
            );
        }
        let (u, schema): (String, String) =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT u, s FROM \"{n}\".who")))
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(
            (u.as_str(), schema.as_str()),
            (session_user.as_str(), n.as_str())
        );
        let owners: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT tableowner::text FROM pg_tables WHERE schemaname = $1",
        )
        .bind(n)
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(owners, vec![session_user.clone()], "{n}");
    }
    assert!(!table_exists(&pool, "other_schema", "things").await);
    exec(&pool, &format!("DROP ROLE \"{role}\"")).await;
}
