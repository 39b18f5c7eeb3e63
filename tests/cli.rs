//! The real binary: exit codes, messages, JSON output, kills and bad input.

mod common;

use std::time::Duration;

use common::*;
use predicates::prelude::*;
use sqlx::PgPool;

/// The binary as a child process to signal, output captured.
fn spawn_cli(
    url: &str,
    dir: &std::path::Path,
    shared: &std::path::Path,
    tenant: &std::path::Path,
) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tenantmig"));
    c.current_dir(dir)
        .env("DATABASE_URL", url)
        .env("TENANTMIG_SHARED_MIGRATIONS", shared)
        .env("TENANTMIG_TENANT_MIGRATIONS", tenant)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    c
}

fn example_workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["shared", "tenant"] {
        let to = dir.path().join(sub);
        std::fs::create_dir(&to).unwrap();
        for f in std::fs::read_dir(repo_dir(sub)).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
        }
    }
    dir
}

#[sqlx::test(migrations = false)]
async fn the_example_app_migrates_and_status_gates_on_up_to_date(pool: PgPool) {
    let url = url_of(&pool);
    let dir = example_workdir();
    cli(&url, dir.path())
        .args(["migrate", "--shared-only"])
        .assert()
        .success();
    exec(&pool, "INSERT INTO organizations (name, schema_name) VALUES ('Acme', 'tenant_acme'), ('Globex', 'tenant_globex')").await;
    let q = (
        "TENANTMIG_TENANTS__QUERY",
        "SELECT schema_name FROM public.organizations ORDER BY id",
    );
    cli(&url, dir.path())
        .env(q.0, q.1)
        .arg("status")
        .assert()
        .code(1)
        .stdout(predicate::str::contains("2 missing schema"));
    cli(&url, dir.path())
        .env(q.0, q.1)
        .args(["migrate", "--dry-run", "--sql"])
        .assert()
        .success()
        .stdout(predicate::str::contains("2 tenants: 0001, 0002"))
        .stdout(predicate::str::contains("CREATE INDEX CONCURRENTLY"));
    cli(&url, dir.path())
        .env(q.0, q.1)
        .arg("migrate")
        .assert()
        .success()
        .stdout(predicate::str::contains("2 tenants migrated"));
    let out = cli(&url, dir.path())
        .env(q.0, q.1)
        .args(["status", "--format", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["tenants"].as_array().unwrap().len(), 2);
    assert_eq!(v["tenants"][1]["state"], "up_to_date");
    assert_eq!(v["tenants"][1]["applied_version"], 9);
    assert_eq!(v["shared"]["applied_version"], 4);
    cli(&url, dir.path())
        .env(q.0, q.1)
        .arg("runs")
        .assert()
        .success()
        .stdout(predicate::str::contains("migrate").and(predicate::str::contains("succeeded")));
    cli(&url, dir.path())
        .args(["runs", "show", "2"])
        .assert()
        .success()
        .stdout(predicate::str::contains("tenant_globex"));
    cli(&url, dir.path())
        .args(["runs", "show", "99"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("there is no run 99"));
}

#[sqlx::test(migrations = false)]
async fn a_data_dependent_failure_is_named_in_the_summary_with_exit_code_1(pool: PgPool) {
    let url = url_of(&pool);
    let shared = folder(&[]);
    let tenant = folder(&[("1_docs.sql", "CREATE TABLE docs (id int, title text);")]);
    let dir = tempfile::tempdir().unwrap();
    let base = |c: &mut assert_cmd::Command| {
        c.env("TENANTMIG_SHARED_MIGRATIONS", shared.path())
            .env("TENANTMIG_TENANT_MIGRATIONS", tenant.path())
            .env("TENANTMIG_TENANTS__PATTERN", "t\\_%")
            .env("TENANTMIG_MAX_FAILURES", "10");
    };
    for t in tenants(4) {
        exec(&pool, &format!("CREATE SCHEMA {t}")).await;
    }
    let mut c = cli(&url, dir.path());
    base(&mut c);
    c.arg("migrate").assert().success();
    exec(&pool, "INSERT INTO t_03.docs VALUES (1, NULL)").await;
    write(
        tenant.path(),
        "2_title.sql",
        "ALTER TABLE docs ALTER COLUMN title SET NOT NULL;",
    );
    let mut c = cli(&url, dir.path());
    base(&mut c);
    c.arg("migrate")
        .assert()
        .code(1)
        .stdout(predicate::str::contains("3 tenants migrated"))
        .stdout(predicate::str::contains(
            "t_03 [failed]: while applying 2 (title) to schema t_03",
        ))
        .stdout(predicate::str::contains("contains null values"))
        .stderr(predicate::str::contains("FAILED t_03"));
    // JSON: events as lines, then the summary.
    let mut c = cli(&url, dir.path());
    base(&mut c);
    let out = c
        .args(["migrate", "--format", "json"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["tenants"][0]["schema"], "t_03");
    assert_eq!(last["tenants"][0]["state"], "failed");
    assert!(
        text.lines()
            .any(|l| l.contains("\"event\":\"schema_finished\""))
    );
}

#[sqlx::test(migrations = false)]
async fn a_sigkilled_run_is_finished_by_the_next_one_without_applying_anything_twice(pool: PgPool) {
    let url = url_of(&pool);
    create_applied_table(&pool).await;
    let shared = folder(&[]);
    let tenant = folder(&[
        (
            "1_a.sql",
            &format!("{} CREATE TABLE a (id int);", record_applied(1)),
        ),
        (
            "2_b.sql",
            &format!("SELECT pg_sleep(0.3); {}", record_applied(2)),
        ),
        ("3_c.sql", &record_applied(3)),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = tenants(12);
    let mut args = vec!["migrate".to_string(), "--jobs".into(), "2".into()];
    for n in &names {
        args.push("--tenant".into());
        args.push(n.clone());
    }
    let mut child = spawn_cli(&url, dir.path(), shared.path(), tenant.path())
        .env("TENANTMIG_TRANSACTION_MODE", "per-migration")
        .args(&args)
        .spawn()
        .unwrap();
    // Kill it once some tenants are done and others are mid-way.
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let n = scalar_i64(
            &pool,
            "SELECT count(*) FROM public.applied WHERE version = 2",
        )
        .await;
        if n >= 3 {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = scalar_i64(&pool, "SELECT count(*) FROM public.applied").await;
    assert!(
        partial > 0 && partial < 36,
        "the kill should land mid-run ({partial} applications)"
    );

    cli_sets(&url, dir.path(), shared.path(), tenant.path())
        .args(&args)
        .assert()
        .success();
    for n in &names {
        assert_eq!(
            history(&pool, n).await,
            vec![(1, true), (2, true), (3, true)],
            "{n}"
        );
    }
    assert_applied_once(&pool, 36).await;
    // The ledger calls the killed run interrupted.
    cli(&url, dir.path())
        .args(["runs", "show", "1"])
        .assert()
        .success()
        .stdout(predicate::str::contains("interrupted"));
}

// 9. Nothing destructive without an explicit confirmation flag.
#[sqlx::test(migrations = false)]
async fn repair_without_yes_shows_what_it_would_change_and_changes_nothing(pool: PgPool) {
    let url = url_of(&pool);
    let shared = folder(&[]);
    let tenant = folder(&[
        ("1_docs.sql", "CREATE TABLE docs (id int);"),
        (
            "2_idx.sql",
            "-- no-transaction\nCREATE INDEX CONCURRENTLY docs_idx ON nope (id);",
        ),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let env = |c: &mut assert_cmd::Command| {
        c.env("TENANTMIG_SHARED_MIGRATIONS", shared.path())
            .env("TENANTMIG_TENANT_MIGRATIONS", tenant.path());
    };
    let mut c = cli(&url, dir.path());
    env(&mut c);
    c.args(["migrate", "--tenant", "t_01"]).assert().code(1);
    let mut c = cli(&url, dir.path());
    env(&mut c);
    c.args(["status", "--tenant", "t_01"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("failed:"))
        .stdout(predicate::str::contains(
            "CREATE INDEX CONCURRENTLY docs_idx ON nope",
        ));
    let mut c = cli(&url, dir.path());
    env(&mut c);
    c.args(["repair", "--tenant", "t_01"])
        .assert()
        .code(2)
        .stdout(predicate::str::contains("t_01: failed migration 2"))
        .stderr(predicate::str::contains("rerun with --yes"));
    assert_eq!(history(&pool, "t_01").await, vec![(1, true), (2, false)]);
    let mut c = cli(&url, dir.path());
    env(&mut c);
    c.args(["repair", "--tenant", "t_01", "--yes"])
        .assert()
        .success();
    assert_eq!(history(&pool, "t_01").await, vec![(1, true)]);
}

#[sqlx::test(migrations = false)]
async fn a_hostile_tenant_name_on_the_command_line_is_rejected(pool: PgPool) {
    let url = url_of(&pool);
    let dir = example_workdir();
    cli(&url, dir.path())
        .args([
            "migrate",
            "--tenant",
            "x\"; drop schema public cascade; --",
            "--tenant",
            "tenant_ok",
        ])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("invalid schema name"))
        .stdout(predicate::str::contains("1 tenant migrated"));
    assert!(table_exists(&pool, "public", "organizations").await);
}

#[sqlx::test(migrations = false)]
async fn jobs_beyond_the_free_connections_are_capped_with_a_message(pool: PgPool) {
    let url = url_of(&pool);
    let dir = example_workdir();
    let names = tenants(12);
    let mut args = vec!["migrate", "--jobs", "50"];
    for n in &names {
        args.push("--tenant");
        args.push(n);
    }
    // The database takes at most 5 connections: far fewer than 50 workers.
    let db = pool.connect_options().get_database().unwrap().to_string();
    exec(
        &pool,
        &format!("ALTER DATABASE \"{db}\" CONNECTION LIMIT 5"),
    )
    .await;
    let out = cli(&url, dir.path())
        .args(&args)
        .assert()
        .success()
        .stderr(predicate::str::contains("--jobs 50 exceeds the"))
        .stderr(predicate::str::contains(
            "connections free for this database and role",
        ))
        .get_output()
        .stderr
        .clone();
    let text = String::from_utf8(out).unwrap();
    let used: usize = text
        .split("; using ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("the warning names the jobs used");
    assert!((1..=5).contains(&used), "{text}");
    for n in &names {
        assert_eq!(history(&pool, n).await.len(), 9, "{n}");
    }
}

#[sqlx::test(migrations = false)]
async fn bad_input_is_a_one_line_error_with_exit_code_2_and_changes_nothing(pool: PgPool) {
    let url = url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    // Missing folder.
    cli(&url, dir.path())
        .arg("migrate")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "cannot read migration folder shared",
        ));
    // Malformed file name.
    let shared = folder(&[("create_users.sql", "SELECT 1;")]);
    cli(&url, dir.path())
        .env("TENANTMIG_SHARED_MIGRATIONS", shared.path())
        .arg("migrate")
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("create_users.sql").and(predicate::str::contains(
                "expected <version>_<description>.sql",
            )),
        );
    // Two files with the same version.
    let shared = folder(&[("1_a.sql", "SELECT 1;"), ("01_b.sql", "SELECT 1;")]);
    cli(&url, dir.path())
        .env("TENANTMIG_SHARED_MIGRATIONS", shared.path())
        .args(["migrate", "--shared-only"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("version 1 is also used by"));
    // A bad configuration key.
    std::fs::write(dir.path().join("tenantmig.toml"), "jbos = 4\n").unwrap();
    cli(&url, dir.path())
        .arg("status")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("jbos"));
    std::fs::remove_file(dir.path().join("tenantmig.toml")).unwrap();
    // A missing --config file.
    cli(&url, dir.path())
        .args(["--config", "nope.toml", "status"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nope.toml"));
    // An unreachable database, password masked.
    let shared = folder(&[("1_a.sql", "SELECT 1;")]);
    cli("postgres://app:s3cret@127.0.0.1:1/db", dir.path())
        .env("TENANTMIG_SHARED_MIGRATIONS", shared.path())
        .args(["migrate", "--shared-only"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "cannot connect to postgres://app:***@127.0.0.1:1/db",
        ))
        .stderr(predicate::str::contains("s3cret").not());
    // Nothing was created in the test database.
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'tenantmig'"
        )
        .await,
        0
    );
    assert!(!table_exists(&pool, "public", "_sqlx_migrations").await);
}

#[sqlx::test(migrations = false)]
async fn ctrl_c_finishes_in_flight_tenants_starts_no_new_one_and_exits_1(pool: PgPool) {
    let url = url_of(&pool);
    let shared = folder(&[]);
    let tenant = folder(&[("1_a.sql", "SELECT pg_sleep(0.4); CREATE TABLE a (id int);")]);
    let dir = tempfile::tempdir().unwrap();
    let names = tenants(10);
    let mut args = vec!["migrate".to_string(), "--jobs".into(), "2".into()];
    for n in &names {
        args.extend(["--tenant".to_string(), n.clone()]);
    }
    let child = spawn_cli(&url, dir.path(), shared.path(), tenant.path())
        .args(&args)
        .spawn()
        .unwrap();
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Once one tenant has committed, others are in flight.
        if scalar_i64(&pool, "SELECT count(*) FROM pg_class WHERE relname = 'a'").await >= 1 {
            break;
        }
    }
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("stopped: interrupted"), "{stdout}");
    let mut done = 0;
    for n in &names {
        let h = history(&pool, n).await;
        assert!(h.is_empty() || h == vec![(1, true)], "{n}: {h:?}");
        assert_eq!(
            !h.is_empty(),
            table_exists(&pool, n, "a").await,
            "{n} is half-migrated"
        );
        done += h.len();
    }
    assert!(
        (1..10).contains(&done),
        "{done} tenants done: the interrupt should land mid-run"
    );
    cli_sets(&url, dir.path(), shared.path(), tenant.path())
        .args(&args)
        .assert()
        .success();
}

#[test]
fn new_history_and_show_write_and_read_the_migration_files() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = dir.path().join("tenant");
    std::fs::create_dir(&tenant).unwrap();
    std::fs::write(
        tenant.join("0001_create_a.sql"),
        "CREATE TABLE a (id int);\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut c = cli("postgres://unused/none", dir.path());
        c.args(args);
        c
    };
    run(&["new", "tenant", "Add", "tags!", "--reversible"])
        .assert()
        .success()
        .stdout(predicate::str::contains("0002_add_tags.up.sql"))
        .stdout(predicate::str::contains("0002_add_tags.down.sql"));
    std::fs::write(
        tenant.join("0002_add_tags.up.sql"),
        "CREATE TABLE tags (id int);\n",
    )
    .unwrap();
    std::fs::write(tenant.join("0002_add_tags.down.sql"), "DROP TABLE tags;\n").unwrap();
    run(&["new", "tenant", "backfill"])
        .assert()
        .success()
        .stdout(predicate::str::contains("0003_backfill.sql"));
    run(&["history", "tenant"])
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"0002\s+add tags\s+[0-9a-f]{16}\s+reversible").unwrap())
        .stdout(predicate::str::contains("0003     backfill"));
    run(&["show", "2", "--down"])
        .assert()
        .success()
        .stdout(predicate::str::contains("0002_add_tags.down.sql"))
        .stdout(predicate::str::contains("DROP TABLE tags;"));
    run(&["show", "1", "--down"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not reversible"));
    run(&["show", "7"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no migration has version 7"));
    run(&["new", "tenant", "--", "--"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no letters or digits"));
}
