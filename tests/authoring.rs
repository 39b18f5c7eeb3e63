//! The rest of a migration's life cycle through the real binary: migrate
//! to a target, roll back, stamp, repair, verify and lint, over a shared
//! schema and several tenants.

mod common;

use common::*;
use predicates::prelude::*;
use sqlx::PgPool;

/// A shared set with one reversible migration and a tenant set with a
/// plain one, then two reversible ones (the last with a no-transaction
/// down file).
fn reversible_sets() -> (tempfile::TempDir, tempfile::TempDir) {
    let shared = folder(&[
        (
            "0001_plans.up.sql",
            "CREATE TABLE public.plans (id int PRIMARY KEY);",
        ),
        ("0001_plans.down.sql", "DROP TABLE public.plans;"),
    ]);
    let tenant = folder(&[
        (
            "0001_items.sql",
            "CREATE TABLE items (id int PRIMARY KEY, name text);",
        ),
        (
            "0002_item_note.up.sql",
            "ALTER TABLE items ADD COLUMN note text;",
        ),
        (
            "0002_item_note.down.sql",
            "ALTER TABLE items DROP COLUMN note;",
        ),
        (
            "0003_notes.up.sql",
            "CREATE TABLE notes (id int PRIMARY KEY, body text);",
        ),
        (
            "0003_notes.down.sql",
            "-- no-transaction\nDROP TABLE notes;",
        ),
    ]);
    (shared, tenant)
}

/// The binary on the given migration sets, tenants `t_…` found by pattern.
fn tool(
    url: &str,
    dir: &std::path::Path,
    shared: &std::path::Path,
    tenant: &std::path::Path,
    args: &[&str],
) -> assert_cmd::Command {
    let mut c = cli_sets(url, dir, shared, tenant);
    c.env("TENANTMIG_TENANTS__PATTERN", "t\\_%").args(args);
    c
}

/// The last JSON line of a command's output (the report after the events).
fn last_json(out: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(out);
    serde_json::from_str(text.lines().last().expect("some output")).expect("JSON")
}

async fn versions(pool: &PgPool, schema: &str) -> Vec<i64> {
    history(pool, schema)
        .await
        .into_iter()
        .map(|(v, _)| v)
        .collect()
}

async fn has_column(pool: &PgPool, schema: &str, table: &str, column: &str) -> bool {
    scalar_i64(
        pool,
        &format!(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = '{schema}' AND table_name = '{table}' AND column_name = '{column}'"
        ),
    )
    .await
        == 1
}

#[sqlx::test(migrations = false)]
async fn migrate_to_a_target_then_roll_back_a_subset_of_tenants(pool: PgPool) {
    let url = url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    let (shared, tenant) = reversible_sets();
    let run = |args: &[&str]| tool(&url, dir.path(), shared.path(), tenant.path(), args);
    for t in tenants(4) {
        exec(&pool, &format!("CREATE SCHEMA {t}")).await;
    }

    // Forward to 0002 only.
    run(&["migrate", "--target", "2", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains("4 tenants: 0001, 0002"));
    run(&["migrate", "--target", "0002"]).assert().success();
    for t in tenants(4) {
        assert_eq!(versions(&pool, &t).await, vec![1, 2]);
        assert!(!table_exists(&pool, &t, "notes").await);
    }
    assert!(table_exists(&pool, "public", "plans").await);
    run(&["migrate", "--target", "7"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "version 7 is not in the selected migration sets",
        ));
    run(&["migrate"]).assert().success();

    // Roll back the last two migrations of two tenants: the plan first.
    let two = ["--tenant", "t_01", "--tenant", "t_02"];
    let mut args = vec!["rollback", "--steps", "2"];
    args.extend(two);
    run(&args)
        .assert()
        .code(2)
        .stdout(predicate::str::contains(
            "2 tenants: revert 0003, 0002 (t_01, t_02)",
        ))
        .stderr(predicate::str::contains("rerun with --yes"));
    assert_eq!(versions(&pool, "t_01").await, vec![1, 2, 3]);
    let mut dry = args.clone();
    dry.extend(["--dry-run", "--sql"]);
    run(&dry).assert().success().stdout(
        predicate::str::contains("-- revert tenant 0003 notes").and(predicate::str::contains(
            "ALTER TABLE items DROP COLUMN note;",
        )),
    );
    args.extend(["--yes", "--format", "json"]);
    let out = run(&args).assert().success().get_output().stdout.clone();
    let report = last_json(&out);
    assert_eq!(report["goal"]["kind"], "revert");
    assert!(
        report["shared"].is_null(),
        "--tenant leaves the shared schema alone"
    );
    for t in ["t_01", "t_02"] {
        assert_eq!(versions(&pool, t).await, vec![1]);
        assert!(!table_exists(&pool, t, "notes").await);
        assert!(!has_column(&pool, t, "items", "note").await);
    }
    for t in ["t_03", "t_04"] {
        assert_eq!(versions(&pool, t).await, vec![1, 2, 3]);
        assert!(has_column(&pool, t, "items", "note").await);
    }
    assert!(table_exists(&pool, "public", "plans").await);
    let runs = scalar_i64(
        &pool,
        "SELECT count(*) FROM tenantmig.runs WHERE command = 'rollback' AND outcome = 'succeeded'",
    )
    .await;
    assert_eq!(runs, 1, "the rollback is a run in the ledger");

    // Everything back to 0 is refused before anything runs: 0001 has no
    // down file.
    run(&["rollback", "--target", "0", "--tenants-only", "--yes"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("tenant 0001").and(predicate::str::contains("no .down.sql")),
        );
    assert_eq!(versions(&pool, "t_03").await, vec![1, 2, 3]);

    // One tenant's down file fails: the others finish, the shared schema
    // (after the tenants) is not reached, and a rerun finishes the job.
    exec(&pool, "ALTER TABLE t_03.items DROP COLUMN note").await;
    run(&["rollback", "--target", "1", "--yes"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("t_03").and(predicate::str::contains("not reached")));
    assert_eq!(versions(&pool, "t_03").await, vec![1, 2]);
    assert_eq!(versions(&pool, "t_04").await, vec![1]);
    assert_eq!(versions(&pool, "public").await, vec![1]);
    exec(&pool, "ALTER TABLE t_03.items ADD COLUMN note text").await;
    run(&["rollback", "--target", "1", "--yes"])
        .assert()
        .success();
    assert_eq!(versions(&pool, "t_03").await, vec![1]);
    // The shared schema was at 0001, which is not above the target.
    assert_eq!(versions(&pool, "public").await, vec![1]);
    run(&["rollback", "--target", "0", "--shared-only", "--yes"])
        .assert()
        .success();
    assert!(versions(&pool, "public").await.is_empty());
    assert!(!table_exists(&pool, "public", "plans").await);
    // And forward again from there.
    run(&["migrate"]).assert().success();
    assert_eq!(versions(&pool, "t_02").await, vec![1, 2, 3]);
}

#[sqlx::test(migrations = false)]
async fn schemas_built_by_plain_sql_are_adopted_by_stamp_then_migrated(pool: PgPool) {
    let url = url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    let (shared, tenant) = reversible_sets();
    let run = |args: &[&str]| tool(&url, dir.path(), shared.path(), tenant.path(), args);
    // What another tool left: tables, no history table.
    exec(&pool, "CREATE TABLE public.plans (id int PRIMARY KEY)").await;
    for t in tenants(3) {
        exec(
            &pool,
            &format!(
                "CREATE SCHEMA {t}; CREATE TABLE {t}.items (id int PRIMARY KEY, name text, note text)"
            ),
        )
        .await;
    }
    // Without stamping, migrate would run 0001 again and fail.
    run(&["migrate", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains("3 tenants: 0001, 0002, 0003"));
    run(&["stamp", "2", "--dry-run"]).assert().success().stdout(
        predicate::str::contains("shared schema public: stamp 0001")
            .and(predicate::str::contains("3 tenants: stamp 0001, 0002")),
    );
    assert!(history(&pool, "t_01").await.is_empty());
    run(&["stamp", "2"])
        .assert()
        .success()
        .stdout(predicate::str::contains("3 tenants stamped"));
    for t in tenants(3) {
        assert_eq!(versions(&pool, &t).await, vec![1, 2]);
    }
    assert_eq!(versions(&pool, "public").await, vec![1]);
    let runs = scalar_i64(
        &pool,
        "SELECT count(*) FROM tenantmig.runs WHERE command = 'stamp'",
    )
    .await;
    assert_eq!(runs, 1);
    // Now only 0003 runs.
    run(&["migrate"])
        .assert()
        .success()
        .stdout(predicate::str::contains("3 tenants migrated"));
    for t in tenants(3) {
        assert_eq!(versions(&pool, &t).await, vec![1, 2, 3]);
        assert!(table_exists(&pool, &t, "notes").await);
    }
    run(&["status"]).assert().success();
    // Stamping a schema that does not exist fails for it, and a version no
    // set has is refused.
    run(&["stamp", "2", "--tenant", "t_09"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("t_09").and(predicate::str::contains("does not exist")));
    assert!(!table_exists(&pool, "t_09", "_sqlx_migrations").await);
    run(&["stamp", "12"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "version 12 is not in the selected migration sets",
        ));
}

#[sqlx::test(migrations = false)]
async fn a_failed_no_transaction_migration_is_repaired_and_edited_checksums_re_recorded(
    pool: PgPool,
) {
    let url = url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    let shared = folder(&[]);
    let tenant = folder(&[
        ("0001_items.sql", "CREATE TABLE items (id int, name text);"),
        (
            "0002_items_idx.sql",
            "-- no-transaction\nCREATE INDEX CONCURRENTLY items_name_idx ON items (name);\nCREATE INDEX CONCURRENTLY items_title_idx ON items (name, id);",
        ),
        ("0003_tags.sql", "CREATE TABLE tags (id int);"),
    ]);
    let run = |args: &[&str]| tool(&url, dir.path(), shared.path(), tenant.path(), args);
    for t in tenants(3) {
        exec(&pool, &format!("CREATE SCHEMA {t}")).await;
    }
    // In t_02 the second index's name is taken: its statement fails after
    // the first index was built.
    exec(&pool, "CREATE TABLE t_02.items_title_idx (x int)").await;
    run(&["migrate", "--max-failures", "5"])
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("2 tenants migrated").and(predicate::str::contains(
                "CREATE INDEX CONCURRENTLY items_title_idx",
            )),
        );
    assert_eq!(history(&pool, "t_02").await, vec![(1, true), (2, false)]);
    // Refused until repaired.
    run(&["migrate"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("tenantmig repair"));
    // Fixed by hand, then marked applied.
    exec(
        &pool,
        "DROP TABLE t_02.items_title_idx; CREATE INDEX items_title_idx ON t_02.items (name, id)",
    )
    .await;
    run(&["repair", "--mark-applied", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "t_02: failed migration 2 — will mark as applied",
        ));
    run(&["repair", "--mark-applied"]).assert().code(2);
    assert_eq!(history(&pool, "t_02").await, vec![(1, true), (2, false)]);
    run(&["repair", "--mark-applied", "--yes"])
        .assert()
        .success();
    assert_eq!(history(&pool, "t_02").await, vec![(1, true), (2, true)]);
    run(&["migrate"]).assert().success();
    assert_eq!(versions(&pool, "t_02").await, vec![1, 2, 3]);

    // A comment added to an applied file: every schema reports it, migrate
    // refuses, repair --checksums shows the change and needs --yes.
    let edited = "-- items: one row per item\nCREATE TABLE items (id int, name text);";
    write(tenant.path(), "0001_items.sql", edited);
    run(&["status"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("checksum mismatch"));
    run(&["migrate"]).assert().code(1);
    run(&["repair", "--checksums"])
        .assert()
        .code(2)
        .stdout(
            predicate::str::contains("tenant 0001 items")
                .and(predicate::str::contains("in 3 schemas: t_01, t_02, t_03")),
        )
        .stderr(predicate::str::contains("rerun with --yes"));
    run(&["repair", "--checksums", "--yes"])
        .assert()
        .success()
        .stdout(predicate::str::contains("repaired 3 row(s) in 3 schema(s)"));
    run(&["status"]).assert().success();
    let recorded = scalar_i64(
        &pool,
        &format!(
            "SELECT count(*) FROM t_03._sqlx_migrations WHERE version = 1 AND checksum = sha384(convert_to($q${edited}$q$, 'UTF8'))"
        ),
    )
    .await;
    assert_eq!(recorded, 1, "the file's SHA-384 is recorded");
    run(&["repair", "--checksums"])
        .assert()
        .success()
        .stdout(predicate::str::contains("nothing to repair"));
}

#[sqlx::test(migrations = false)]
async fn verify_finds_a_tenant_altered_by_hand_and_leaves_no_scratch_schema(pool: PgPool) {
    let url = url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    let (shared, tenant) = (repo_dir("shared"), repo_dir("tenant"));
    let run = |args: &[&str]| tool(&url, dir.path(), &shared, &tenant, args);
    for t in tenants(5) {
        exec(&pool, &format!("CREATE SCHEMA {t}")).await;
    }
    run(&["migrate"]).assert().success();
    run(&["verify"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "no drift: 5 tenants match the reference",
        ));

    // A scratch schema a killed verify left behind is cleaned up.
    exec(
        &pool,
        "CREATE SCHEMA _tenantmig_verify_0dead; COMMENT ON SCHEMA _tenantmig_verify_0dead IS 'tenantmig verify scratch schema; dropped when verify ends'",
    )
    .await;
    // By hand, in t_03: an index dropped and a column's type changed.
    exec(
        &pool,
        "DROP INDEX t_03.documents_created_at_idx; ALTER TABLE t_03.executions ALTER COLUMN status TYPE varchar(32)",
    )
    .await;
    let out = run(&["verify"])
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("4 tenants match the reference (t_01, t_02, t_04, t_05)")
                .and(predicate::str::contains("1 tenant with fingerprint"))
                .and(predicate::str::contains("(t_03):"))
                .and(predicate::str::contains("index documents_created_at_idx missing"))
                .and(predicate::str::contains(
                    "column executions.status character varying(32) not null default 'queued'::text, expected text not null default 'queued'::text",
                ))
                .and(predicate::str::contains("drift: 1 of 5 tenants")),
        )
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8_lossy(&out);
    assert!(!text.contains("t_01:"), "{text}");
    let leftovers = scalar_i64(
        &pool,
        "SELECT count(*) FROM pg_namespace WHERE nspname LIKE '\\_tenantmig\\_verify%'",
    )
    .await;
    assert_eq!(leftovers, 0, "scratch schemas are dropped");

    // Against a named tenant, as JSON.
    let out = run(&["verify", "--reference", "t_03", "--format", "json"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let report = last_json(&out);
    assert_eq!(report["reference"], "tenant t_03");
    let groups = report["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0]["matches_reference"], true);
    assert_eq!(groups[0]["tenants"], serde_json::json!(["t_03"]));
    assert_eq!(groups[1]["tenants"].as_array().unwrap().len(), 4);
    assert!(
        groups[1]["differences"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(
                "index documents_created_at_idx not in the reference"
            ))
    );
    run(&["verify", "--reference", "nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--reference nope: no such schema"));
    run(&["verify", "--tenant", "t_01", "--tenant", "t_02"])
        .assert()
        .success();
}

/// Every lint rule: its `trigger.sql` gives a finding of that rule (and
/// only of it), its `clean.sql` (the safer form) gives none.
#[test]
fn each_lint_rule_fires_on_its_trigger_file_and_not_on_its_clean_form() {
    let cases = repo_dir("tests/cases/lint");
    let dir = tempfile::tempdir().unwrap();
    let mut rules = 0;
    for entry in std::fs::read_dir(&cases).unwrap() {
        let rule_dir = entry.unwrap().path();
        let rule = rule_dir.file_name().unwrap().to_string_lossy().to_string();
        let lint = |file: &str| {
            let out = cli("postgres://unused", dir.path())
                .args(["lint", "--format", "json"])
                .arg(rule_dir.join(file))
                .output()
                .unwrap();
            (out.status.code(), last_json(&out.stdout))
        };
        let (code, found) = lint("trigger.sql");
        let codes: Vec<&str> = found
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["rule"].as_str().unwrap())
            .collect();
        assert!(
            !codes.is_empty() && codes.iter().all(|c| *c == rule),
            "{rule}: {codes:?}"
        );
        let f = &found[0];
        assert!(f["line"].as_u64().unwrap() >= 1);
        assert!(f["file"].as_str().unwrap().ends_with("trigger.sql"));
        assert!(!f["safer"].as_str().unwrap().is_empty());
        let errors = found
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["severity"] == "error");
        assert_eq!(code, Some(if errors { 1 } else { 0 }), "{rule}");
        let (code, found) = lint("clean.sql");
        assert_eq!(found, serde_json::json!([]), "{rule}: the clean form");
        assert_eq!(code, Some(0));
        rules += 1;
    }
    assert!(rules >= 11, "one folder per rule");
}

#[sqlx::test(migrations = false)]
async fn migrate_lints_the_pending_migrations_first_and_warns_or_refuses(pool: PgPool) {
    let url = url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    let shared = folder(&[]);
    let tenant = folder(&[(
        "0001_docs.sql",
        "CREATE TABLE docs (id int, created_at timestamptz);\nCREATE INDEX docs_created_idx ON docs (created_at);",
    )]);
    let run = |args: &[&str]| tool(&url, dir.path(), shared.path(), tenant.path(), args);
    for t in tenants(2) {
        exec(&pool, &format!("CREATE SCHEMA {t}")).await;
    }
    // An index on a table the same file creates is fine.
    run(&["lint"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "1 file checked: 0 errors, 0 warnings",
        ));
    run(&["migrate"]).assert().success();
    run(&["lint"])
        .assert()
        .success()
        .stdout(predicate::str::contains("0 files checked"));
    // The next migration indexes the existing table without CONCURRENTLY.
    write(
        tenant.path(),
        "0002_docs_id.sql",
        "\n-- look-ups by id\nCREATE INDEX docs_id_idx ON docs (id);",
    );
    run(&["lint", "--deny", "warnings"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "0002_docs_id.sql:3: warning [index-not-concurrent]",
        ));
    run(&["migrate"])
        .env("TENANTMIG_LINT", "deny")
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("lint found 1 problem(s)")
                .and(predicate::str::contains("nothing was changed")),
        );
    assert_eq!(history(&pool, "t_01").await.len(), 1);
    run(&["migrate"]).assert().success().stderr(
        predicate::str::contains("lint: ").and(predicate::str::contains("index-not-concurrent")),
    );
    assert_eq!(history(&pool, "t_01").await.len(), 2);
}

#[sqlx::test(migrations = false)]
async fn every_changing_command_has_a_dry_run_that_changes_nothing(pool: PgPool) {
    let url = url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    let (shared, tenant) = reversible_sets();
    let run = |args: &[&str]| tool(&url, dir.path(), shared.path(), tenant.path(), args);
    exec(&pool, "CREATE SCHEMA t_01").await;
    run(&["migrate"]).assert().success();
    let state = "SELECT (SELECT count(*) FROM pg_namespace) * 1000 + (SELECT count(*) FROM t_01._sqlx_migrations) + (SELECT count(*) FROM tenantmig.runs) * 100";
    let before = scalar_i64(&pool, state).await;
    let cases: &[(&[&str], &str)] = &[
        (&["migrate", "--dry-run"], "nothing to migrate"),
        (
            &["rollback", "--steps", "1", "--dry-run"],
            "1 tenant: revert 0003",
        ),
        (&["stamp", "3", "--dry-run"], "nothing to stamp"),
        (&["repair", "--dry-run"], "nothing to repair"),
        (&["repair", "--checksums", "--dry-run"], "nothing to repair"),
        (
            &["create-schema", "t_02", "--apply", "tenant", "--dry-run"],
            "would create schema t_02",
        ),
        (&["drop-schema", "t_01", "--dry-run"], "items"),
        (
            &["copy-into-new-schema", "t_01", "t_03", "--dry-run"],
            "would copy schema t_01 into the new schema t_03",
        ),
        (
            &["tenant", "add", "t_04", "--dry-run"],
            "would create tenant schema t_04 by applying the 3 tenant migrations",
        ),
        (&["tenant", "remove", "t_01", "--dry-run"], "items"),
        (
            &["snapshot", "create", "--dry-run"],
            "would copy 2 schema(s)",
        ),
        (
            &["snapshot", "prune", "--older-than", "1d", "--dry-run"],
            "nothing to prune",
        ),
        (&["new", "tenant", "add tags", "--dry-run"], "would create"),
    ];
    for (args, says) in cases {
        run(args)
            .assert()
            .success()
            .stdout(predicate::str::contains(*says));
    }
    assert_eq!(
        scalar_i64(&pool, state).await,
        before,
        "a dry run changed something"
    );
    // The numbering style comes from the configuration unless --style says.
    run(&["new", "tenant", "add tags", "--dry-run"])
        .env("TENANTMIG_VERSION_STYLE", "timestamp")
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"would create .*/\d{14}_add_tags\.sql").unwrap());
    run(&[
        "new",
        "tenant",
        "add tags",
        "--dry-run",
        "--style",
        "sequential",
    ])
    .env("TENANTMIG_VERSION_STYLE", "timestamp")
    .assert()
    .success()
    .stdout(predicate::str::contains("0004_add_tags.sql"));
    assert_eq!(std::fs::read_dir(tenant.path()).unwrap().count(), 5);
}
