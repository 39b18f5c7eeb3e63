//! Inputs that must be refused (exit 2, nothing changed) or at least
//! reported, never silently ignored: transaction control in a transactional
//! migration, migration files whose names no tool reads, a byte-order mark,
//! reserved schemas in a tenant selection, an empty tenant query.

mod common;

use common::*;
use sha2::{Digest, Sha384};
use sqlx::PgPool;

/// Runs the binary: exit code, stdout and stderr.
fn run(c: &mut assert_cmd::Command) -> (Option<i32>, String, String) {
    let out = c.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn schema_exists(pool: &PgPool, schema: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)")
        .bind(schema)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Nothing at all was changed: no control schema, no tenant, no shared table.
async fn assert_untouched(pool: &PgPool) {
    assert!(
        !schema_exists(pool, "tenantmig").await,
        "the control schema was created"
    );
    assert!(
        !schema_exists(pool, "t_01").await,
        "a tenant schema was created"
    );
    assert!(
        !table_exists(pool, "public", "a").await,
        "a shared migration ran"
    );
}

#[sqlx::test(migrations = false)]
async fn a_transactional_migration_that_commits_is_refused_before_anything_runs(pool: PgPool) {
    let url = url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    let shared = folder(&[("0001_a.sql", "CREATE TABLE a (id int);")]);
    let tenant = folder(&[
        ("0001_t.sql", "CREATE TABLE t (id int);"),
        (
            "0002_backfill.sql",
            "-- COMMIT; in a comment is fine\nINSERT INTO t VALUES (1);\nCOMMIT AND CHAIN;\nINSERT INTO t VALUES (2);\n",
        ),
    ]);
    let bin = || cli_sets(&url, dir.path(), shared.path(), tenant.path());
    // Whatever the lint setting: off, warn (the default) or deny.
    for lint in ["off", "warn", "deny"] {
        for args in [
            &["migrate", "--tenant", "t_01"][..],
            &["migrate", "--tenant", "t_01", "--dry-run"],
        ] {
            let (code, _, err) = run(bin().env("TENANTMIG_LINT", lint).args(args));
            assert_eq!(code, Some(2), "lint = {lint}, {args:?}: {err}");
            assert!(err.contains("0002_backfill.sql"), "{err}");
            assert!(err.contains("line 3: COMMIT AND CHAIN"), "{err}");
            assert!(err.contains("-- no-transaction"), "{err}");
            assert_untouched(&pool).await;
        }
    }
    // `lint` still reports it as a finding.
    let (code, out, _) = run(bin().args(["lint", "--all"]));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("transaction-control"), "{out}");

    // The same file marked `-- no-transaction` runs (COMMIT outside a
    // transaction is only a notice).
    write(
        tenant.path(),
        "0002_backfill.sql",
        "-- no-transaction\nINSERT INTO t VALUES (1);\nCOMMIT;\n",
    );
    let (code, _, err) = run(bin().args(["migrate", "--tenant", "t_01"]));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(history(&pool, "t_01").await, [(1, true), (2, true)]);

    // A .down.sql that ends the transaction is refused before a rollback.
    std::fs::remove_file(tenant.path().join("0002_backfill.sql")).unwrap();
    write(
        tenant.path(),
        "0002_backfill.up.sql",
        "-- no-transaction\nINSERT INTO t VALUES (1);\n",
    );
    write(
        tenant.path(),
        "0002_backfill.down.sql",
        "DELETE FROM t;\nROLLBACK;\n",
    );
    exec(&pool, "DELETE FROM t_01._sqlx_migrations WHERE version = 2").await;
    let (code, _, err) = run(bin().args(["migrate", "--tenant", "t_01"]));
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = run(bin().args([
        "rollback",
        "--tenants-only",
        "--tenant",
        "t_01",
        "--steps",
        "1",
        "--yes",
    ]));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("0002_backfill.down.sql") && err.contains("line 2: ROLLBACK"),
        "{err}"
    );
    assert_eq!(history(&pool, "t_01").await, [(1, true), (2, true)]);
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM t_01.t").await, 2);
}

#[sqlx::test(migrations = false)]
async fn migration_files_no_tool_would_read_are_refused_naming_the_file(pool: PgPool) {
    let url = url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    let shared = folder(&[("0001_a.sql", "CREATE TABLE a (id int);")]);
    let tenant = folder(&[("0001_t.sql", "CREATE TABLE t (id int);")]);
    let bin = || cli_sets(&url, dir.path(), shared.path(), tenant.path());

    write(tenant.path(), "0002_index.SQL", "CREATE INDEX ON t (id);");
    let (code, _, err) = run(bin().args(["migrate", "--tenant", "t_01"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("0002_index.SQL") && err.contains("rename it to 0002_index.sql"),
        "{err}"
    );
    assert_untouched(&pool).await;
    std::fs::remove_file(tenant.path().join("0002_index.SQL")).unwrap();

    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::OsStr::from_bytes(b"0002_caf\xe9.sql");
        std::fs::write(tenant.path().join(name), "SELECT 1;").unwrap();
        let (code, _, err) = run(bin().args(["migrate", "--tenant", "t_01"]));
        assert_eq!(code, Some(2), "{err}");
        assert!(
            err.contains("0002_caf") && err.contains("not valid UTF-8"),
            "{err}"
        );
        assert_untouched(&pool).await;
        std::fs::remove_file(tenant.path().join(name)).unwrap();
    }
}

#[sqlx::test(migrations = false)]
async fn a_byte_order_mark_is_stripped_with_a_warning_and_kept_in_the_checksum(pool: PgPool) {
    let url = url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    let shared = folder(&[("0001_a.sql", "CREATE TABLE a (id int);")]);
    let raw = "\u{feff}-- no-transaction\nCREATE INDEX CONCURRENTLY t_id_idx ON t (id);\n";
    let tenant = folder(&[
        ("0001_t.sql", "\u{feff}CREATE TABLE t (id int);"),
        ("0002_index.sql", raw),
    ]);
    let (code, _, err) = run(cli_sets(&url, dir.path(), shared.path(), tenant.path())
        .args(["migrate", "--tenant", "t_01"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("0002_index.sql: removed the UTF-8 byte-order mark"),
        "{err}"
    );
    assert!(
        err.contains("0001_t.sql: removed the UTF-8 byte-order mark"),
        "{err}"
    );
    assert_eq!(history(&pool, "t_01").await, [(1, true), (2, true)]);
    let sum: Vec<u8> =
        sqlx::query_scalar("SELECT checksum FROM t_01._sqlx_migrations WHERE version = 2")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        sum,
        Sha384::digest(raw.as_bytes()).to_vec(),
        "sqlx's checksum"
    );
    // A second run finds nothing changed (the checksums agree).
    let (code, _, err) = run(cli_sets(&url, dir.path(), shared.path(), tenant.path())
        .args(["status", "--tenant", "t_01"]));
    assert_eq!(code, Some(0), "{err}");
}

#[sqlx::test(migrations = false)]
async fn reserved_schemas_left_out_of_a_selection_are_named_in_a_warning(pool: PgPool) {
    let url = url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    let shared = folder(&[("0001_a.sql", "CREATE TABLE a (id int);")]);
    let tenant = folder(&[("0001_t.sql", "CREATE TABLE t (id int);")]);
    let (code, _, err) = run(
        cli_sets(&url, dir.path(), shared.path(), tenant.path()).args([
            "migrate",
            "--tenant",
            "public",
            "--tenant",
            "tenantmig",
            "--tenant",
            "information_schema",
            "--tenant",
            "pg_catalog",
            "--tenant",
            "t_01",
        ]),
    );
    assert_eq!(code, Some(0), "{err}");
    for (schema, why) in [
        ("public", "the shared schema"),
        ("tenantmig", "control schema"),
        ("information_schema", "PostgreSQL's own schemas"),
        ("pg_catalog", "PostgreSQL's own schemas"),
    ] {
        let line = err
            .lines()
            .find(|l| l.contains(&format!("left schema {schema} out of the tenants")))
            .unwrap_or_else(|| panic!("no warning for {schema}:\n{err}"));
        assert!(line.contains("WARN") && line.contains(why), "{line}");
    }
    assert_eq!(history(&pool, "t_01").await, [(1, true)]);
    assert!(!table_exists(&pool, "public", "t").await);
}

#[sqlx::test(migrations = false)]
async fn an_empty_tenant_query_is_refused_not_read_as_the_registry(pool: PgPool) {
    let url = url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    let shared = folder(&[("0001_a.sql", "CREATE TABLE a (id int);")]);
    let tenant = folder(&[("0001_t.sql", "CREATE TABLE t (id int);")]);
    for value in ["", "   "] {
        let (code, _, err) = run(cli_sets(&url, dir.path(), shared.path(), tenant.path())
            .env("TENANTMIG_TENANTS__QUERY", value)
            .arg("migrate"));
        assert_eq!(code, Some(2), "{value:?}: {err}");
        assert!(err.contains("tenants.query is empty"), "{err}");
        assert!(err.contains("unset TENANTMIG_TENANTS__QUERY"), "{err}");
        assert_untouched(&pool).await;
    }
    std::fs::write(dir.path().join("tenantmig.toml"), "[tenants]\nquery = ''\n").unwrap();
    let (code, _, err) =
        run(cli_sets(&url, dir.path(), shared.path(), tenant.path()).arg("status"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("tenants.query is empty"), "{err}");
}

#[sqlx::test(migrations = false)]
async fn a_tenant_migration_reaching_beyond_its_schema_is_warned_about_or_refused_under_deny(
    pool: PgPool,
) {
    let url = url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    let shared = folder(&[(
        "0001_a.sql",
        "CREATE TABLE a (id int PRIMARY KEY); CREATE SCHEMA audit; CREATE TABLE audit.events (kind text);",
    )]);
    let tenant = folder(&[
        (
            "0001_t.sql",
            "CREATE TABLE t (id int, a_id int REFERENCES public.a (id));",
        ),
        (
            "0002_audit.sql",
            "INSERT INTO audit.events VALUES ('migrated');\nALTER TABLE public.a ADD COLUMN IF NOT EXISTS note text;\nSET LOCAL search_path = audit;\n",
        ),
    ]);
    let bin = || cli_sets(&url, dir.path(), shared.path(), tenant.path());
    let (code, _, err) = run(bin()
        .env("TENANTMIG_LINT", "deny")
        .args(["migrate", "--tenant", "t_01"]));
    assert_eq!(code, Some(2), "{err}");
    for rule in [
        "other-schema-reference",
        "shared-schema-change",
        "search-path-change",
    ] {
        assert!(
            err.contains("0002_audit.sql") && err.contains(rule),
            "{rule}: {err}"
        );
    }
    assert!(
        !err.contains("0001_t.sql"),
        "a reference to the shared schema is fine: {err}"
    );
    assert_untouched(&pool).await;
    let (code, _, err) = run(bin().args(["migrate", "--tenant", "t_01"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("warning: lint:") && err.contains("[other-schema-reference] audit.events"),
        "{err}"
    );
}
