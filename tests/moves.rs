//! Version moves on the worked example (examples/v2): reshape into one v2
//! schema and clone into per-tenant schemas, with kills, failures, resume,
//! abort, cut-over and revert, and snapshots.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use predicates::prelude::*;
use sqlx::PgPool;
use tenantmig::moves::{MoveOptions, MoveReport};
use tenantmig::{CollectEvents, Engine, OutcomeState, Selection, Settings, Strategy};

/// The worked example's tenants and how many workflows each is seeded with.
const TENANTS: [(&str, i64); 3] = [("tenant_a", 12), ("tenant_b", 20), ("tenant_c", 5)];

/// The tables of a v1 tenant schema.
const TABLES: [&str; 8] = [
    "workflows",
    "documents",
    "executions",
    "document_pages",
    "api_keys",
    "usage_events",
    "tags",
    "workflow_tags",
];

/// The settings of examples/v2/tenantmig.toml, on the test's database.
fn example_settings(pool: &PgPool) -> Settings {
    let mut s = Settings::load_from(
        Some(&repo_dir("examples/v2/tenantmig.toml")),
        [("DATABASE_URL".to_string(), url_of(pool))],
    )
    .expect("the example configuration loads");
    s.shared_migrations = repo_dir("shared");
    s.tenant_migrations = repo_dir("tenant");
    s.lock_wait = Duration::from_secs(20);
    let v = s.versions.get_mut("v2").expect("v2 declared");
    v.shared_migrations = Some(tenantmig::config::Folders::One(repo_dir(
        "examples/v2/shared",
    )));
    v.shared_moves = Some(repo_dir("examples/v2/moves/shared"));
    v.tenant_moves = Some(repo_dir("examples/v2/moves/tenant"));
    s
}

/// The example app's v1 with three seeded tenants.
async fn build_v1(pool: &PgPool) -> Settings {
    let s = example_settings(pool);
    let shared_only = Selection {
        shared: true,
        ..Selection::default()
    };
    let (r, _) = migrate(&s, shared_only).await;
    assert!(r.is_success(), "{r:?}");
    let mut orgs = String::from("INSERT INTO public.organizations (name, schema_name) VALUES ");
    orgs.push_str(
        &TENANTS
            .iter()
            .map(|(t, _)| format!("('{t}', '{t}')"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    exec(pool, &orgs).await;
    let seed = std::fs::read_to_string(repo_dir("tests/cases/move/seed_shared.sql")).unwrap();
    exec(pool, &seed).await;
    let (r, _) = migrate(&s, Selection::all()).await;
    assert!(r.is_success(), "{r:?}");
    let seed = std::fs::read_to_string(repo_dir("tests/cases/move/seed_tenant.sql")).unwrap();
    for (t, rows) in TENANTS {
        exec(
            pool,
            &format!(
                "SET search_path TO {t}, public; SET tenantmig_seed.rows = '{rows}';\n{seed}\n;RESET search_path; RESET tenantmig_seed.rows"
            ),
        )
        .await;
    }
    s
}

async fn move_to(s: &Settings, version: &str, dry_run: bool) -> MoveReport {
    move_with_events(s, version, dry_run).await.0
}

async fn move_with_events(
    s: &Settings,
    version: &str,
    dry_run: bool,
) -> (MoveReport, Arc<CollectEvents>) {
    let events = Arc::new(CollectEvents::default());
    let engine = Engine::new(s.clone(), &Selection::all(), events.clone()).expect("engine");
    let r = engine
        .migrate_to(
            &MoveOptions {
                version: version.into(),
                dry_run,
                args: vec!["test".into()],
                ..Default::default()
            },
            std::future::pending(),
        )
        .await
        .expect("migrate-to runs");
    (r, events)
}

/// Rows of `table` per tenant: (source count, count in app_v2 for its id).
async fn consolidated_counts(pool: &PgPool, tenant: &str, table: &str) -> (i64, i64) {
    let source = scalar_i64(pool, &format!("SELECT count(*) FROM {tenant}.{table}")).await;
    let target = scalar_i64(
        pool,
        &format!(
            "SELECT count(*) FROM app_v2.{table} WHERE tenant_id = \
             (SELECT id FROM public.organizations WHERE schema_name = '{tenant}')"
        ),
    )
    .await;
    (source, target)
}

async fn assert_tenant_moved(pool: &PgPool, tenant: &str) {
    for table in TABLES {
        let (source, target) = consolidated_counts(pool, tenant, table).await;
        assert!(source > 0, "{tenant}.{table} was seeded");
        assert_eq!(source, target, "{tenant}.{table}: rows in v1 and in app_v2");
    }
}

#[sqlx::test(migrations = false)]
async fn reshape_consolidates_every_tenant_into_one_schema_with_exact_counts(pool: PgPool) {
    let s = build_v1(&pool).await;
    let before = scalar_i64(&pool, "SELECT count(*) FROM tenant_b.documents").await;

    let plan = move_to(&s, "v2", true).await;
    assert!(plan.dry_run && plan.run_id.is_none());
    let p = plan.plan.as_ref().expect("a dry run carries its plan");
    assert_eq!(p.to_create, vec!["app_v2".to_string()]);
    assert_eq!(p.tenants.len(), 3);
    assert!(
        !table_exists(&pool, "app_v2", "workflows").await,
        "a dry run changes nothing"
    );

    let r = move_to(&s, "v2", false).await;
    assert!(r.is_success(), "{r:#?}");
    assert_eq!(r.strategy, Strategy::Reshape);
    assert_eq!(r.tenants.len(), 3);
    for (t, _) in TENANTS {
        assert_tenant_moved(&pool, t).await;
    }
    for table in ["plans", "organizations", "users"] {
        assert_eq!(
            scalar_i64(&pool, &format!("SELECT count(*) FROM public.{table}")).await,
            scalar_i64(&pool, &format!("SELECT count(*) FROM app_v2.{table}")).await,
            "{table}"
        );
    }
    // The sources are untouched.
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM tenant_b.documents").await,
        before
    );
    // Every step of every tenant is checkpointed, with its counts.
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM tenantmig.move_steps WHERE version = 'v2' AND state = 'done' \
             AND source_schema LIKE 'tenant_%' AND step LIKE 'move %' AND rows_read = rows_written"
        )
        .await,
        3 * 8
    );
    // Sequences are past the copied ids: a new row gets a fresh id.
    let max = scalar_i64(&pool, "SELECT max(id) FROM app_v2.workflows").await;
    let next = scalar_i64(
        &pool,
        "INSERT INTO app_v2.workflows (tenant_id, name, slug) \
         SELECT id, 'fresh', 'fresh' FROM app_v2.organizations ORDER BY id LIMIT 1 RETURNING id",
    )
    .await;
    assert!(next > max, "new id {next} must pass the copied {max}");
    // Every foreign key is valid.
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT convalidated \
             AND connamespace = 'app_v2'::regnamespace"
        )
        .await,
        0
    );

    // A rerun finds everything done and moves no row twice.
    exec(&pool, "DELETE FROM app_v2.workflows WHERE name = 'fresh'").await;
    let again = move_to(&s, "v2", false).await;
    assert!(again.is_success(), "{again:#?}");
    assert_eq!(again.tenants_already_moved, 3);
    assert!(again.tenants.is_empty());
    for (t, _) in TENANTS {
        assert_tenant_moved(&pool, t).await;
    }
}

/// A copy of the example's tenant moves with `edit` applied to one file.
fn edited_moves(file: &str, edit: impl Fn(&str) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(repo_dir("examples/v2/moves/tenant")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        let mut sql = std::fs::read_to_string(&p).unwrap();
        if name == file {
            sql = edit(&sql);
        }
        std::fs::write(dir.path().join(&name), sql).unwrap();
    }
    dir
}

#[sqlx::test(migrations = false)]
async fn a_failing_data_move_fails_only_its_tenant_and_a_rerun_resumes(pool: PgPool) {
    let mut s = build_v1(&pool).await;
    s.max_failures = 10;
    // documents fails outright for tenant_b; workflows writes one row short
    // for tenant_c, which its expect-rows check must catch.
    let docs = edited_moves("0002_documents.sql", |sql| {
        format!(
            "{sql}\nDO $$ BEGIN PERFORM 1 / (CASE WHEN {{tenant}} = 'tenant_b' THEN 0 ELSE 1 END); END $$;\n"
        )
    });
    let short = edited_moves("0001_workflows.sql", |sql| {
        sql.replace(
            "FROM   {source_schema}.workflows;",
            "FROM   {source_schema}.workflows WHERE {tenant} <> 'tenant_c' OR id > 1;",
        )
    });
    assert!(
        std::fs::read_to_string(short.path().join("0001_workflows.sql"))
            .unwrap()
            .contains("id > 1"),
        "the edit applies to the example file"
    );
    // Both edits in one folder.
    std::fs::copy(
        docs.path().join("0002_documents.sql"),
        short.path().join("0002_documents.sql"),
    )
    .unwrap();
    s.versions.get_mut("v2").unwrap().tenant_moves = Some(short.path().to_path_buf());

    let r = move_to(&s, "v2", false).await;
    assert!(!r.is_success());
    let by = |t: &str| r.tenants.iter().find(|o| o.source == t).unwrap();
    assert_eq!(by("tenant_a").state, OutcomeState::Succeeded);
    assert_tenant_moved(&pool, "tenant_a").await;
    let b = by("tenant_b");
    assert_eq!(b.state, OutcomeState::Failed);
    let err = b.error.as_deref().unwrap();
    assert!(
        err.contains("move 0002") && err.contains("division by zero"),
        "{err}"
    );
    let c = by("tenant_c");
    assert_eq!(c.state, OutcomeState::Failed);
    let err = c.error.as_deref().unwrap();
    assert!(
        err.contains("0001_workflows.sql wrote 4 rows but its expect-rows query counts 5"),
        "{err}"
    );
    // The failed steps left nothing: tenant_b's documents and tenant_c's
    // workflows are not in app_v2; tenant_b's workflows, a finished step,
    // are.
    assert_eq!(
        consolidated_counts(&pool, "tenant_b", "documents").await.1,
        0
    );
    assert_eq!(
        consolidated_counts(&pool, "tenant_c", "workflows").await.1,
        0
    );
    assert_eq!(
        consolidated_counts(&pool, "tenant_b", "workflows").await,
        (20, 20)
    );

    // Fixed files: the rerun resumes each tenant at its failed step.
    s.versions.get_mut("v2").unwrap().tenant_moves = Some(repo_dir("examples/v2/moves/tenant"));
    let r = move_to(&s, "v2", false).await;
    assert!(r.is_success(), "{r:#?}");
    assert_eq!(r.tenants_already_moved, 1);
    let b = r.tenants.iter().find(|o| o.source == "tenant_b").unwrap();
    let skipped: Vec<&str> = b
        .steps
        .iter()
        .filter(|s| s.state == "skipped")
        .map(|s| s.step.as_str())
        .collect();
    assert_eq!(skipped, vec!["move 0001"]);
    for (t, _) in TENANTS {
        assert_tenant_moved(&pool, t).await;
    }
}

#[sqlx::test(migrations = false)]
async fn a_killed_move_resumes_and_ends_with_exact_counts(pool: PgPool) {
    build_v1(&pool).await;
    let url = url_of(&pool);
    // Hold tenant_b's documents so the move stops in the middle of
    // tenant_b, after tenant_a and tenant_b's first step are done.
    let mut holder = pool.acquire().await.unwrap();
    sqlx::Executor::execute(
        &mut *holder,
        "BEGIN; LOCK TABLE tenant_b.documents IN ACCESS EXCLUSIVE MODE",
    )
    .await
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tenantmig"))
        .current_dir(repo_dir(""))
        .env("DATABASE_URL", &url)
        .env("TENANTMIG_LOCK_TIMEOUT", "60s")
        .args([
            "--config",
            "examples/v2/tenantmig.toml",
            "migrate-to-v2",
            "--jobs",
            "1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_lock_waiter(&pool, "documents").await;
    child.kill().unwrap();
    child.wait().unwrap();
    sqlx::Executor::execute(&mut *holder, "ROLLBACK")
        .await
        .unwrap();
    drop(holder);

    assert_tenant_moved(&pool, "tenant_a").await;
    assert_eq!(
        consolidated_counts(&pool, "tenant_b", "workflows").await,
        (20, 20)
    );
    assert_eq!(
        consolidated_counts(&pool, "tenant_b", "documents").await.1,
        0,
        "the interrupted step left nothing"
    );
    assert_eq!(
        consolidated_counts(&pool, "tenant_c", "workflows").await.1,
        0
    );

    let out = cli(&url, &repo_dir(""))
        .args([
            "--config",
            "examples/v2/tenantmig.toml",
            "--format",
            "json",
            "migrate-to",
            "v2",
        ])
        .assert()
        .success();
    let json: serde_json::Value = serde_json::from_slice(
        out.get_output()
            .stdout
            .split(|b| *b == b'\n')
            .rfind(|l| !l.is_empty())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(json["tenants_already_moved"], 1, "{json}");
    let b = json["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["source"] == "tenant_b")
        .unwrap();
    assert_eq!(b["steps"][0]["step"], "move 0001");
    assert_eq!(b["steps"][0]["state"], "skipped");
    for (t, _) in TENANTS {
        assert_tenant_moved(&pool, t).await;
    }
}

#[sqlx::test(migrations = false)]
async fn abort_drops_what_the_move_created_and_nothing_else(pool: PgPool) {
    let s = build_v1(&pool).await;
    let r = move_to(&s, "v2", false).await;
    assert!(r.is_success(), "{r:#?}");
    let url = url_of(&pool);
    let run = |extra: &[&str]| {
        let mut c = cli(&url, &repo_dir(""));
        c.args(["--config", "examples/v2/tenantmig.toml", "migrate-to", "v2"])
            .args(extra);
        c
    };
    run(&["--abort"])
        .assert()
        .code(2)
        .stdout(predicate::str::contains("app_v2"))
        .stderr(predicate::str::contains("--yes"));
    assert!(table_exists(&pool, "app_v2", "workflows").await);
    run(&["--abort", "--yes"]).assert().success();
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'app_v2'"
        )
        .await,
        0
    );
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM tenantmig.move_steps").await,
        0
    );
    for (t, rows) in TENANTS {
        assert_eq!(
            scalar_i64(&pool, &format!("SELECT count(*) FROM {t}.workflows")).await,
            rows,
            "{t} is untouched"
        );
    }
    // A new move starts from scratch.
    let r = move_to(&s, "v2", false).await;
    assert!(r.is_success(), "{r:#?}");
    for (t, _) in TENANTS {
        assert_tenant_moved(&pool, t).await;
    }
}

/// A clone version: every schema copied, plus one new tenant migration and
/// one new shared migration.
fn clone_settings(pool: &PgPool, extra: &Path) -> Settings {
    let mut s = example_settings(pool);
    let text = format!(
        "[versions.v2]\nstrategy = \"clone\"\nshared_schema = \"public_v2\"\ntenant_schema = \"{{schema}}_v2\"\n\
         shared_migrations = [{:?}, {:?}]\ntenant_migrations = [{:?}, {:?}]\n",
        repo_dir("shared"),
        extra.join("shared"),
        repo_dir("tenant"),
        extra.join("tenant"),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.toml"), text).unwrap();
    let v = Settings::load_from(Some(&dir.path().join("t.toml")), Vec::new()).unwrap();
    s.versions = v.versions;
    s
}

fn clone_extra() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("shared")).unwrap();
    std::fs::create_dir(dir.path().join("tenant")).unwrap();
    std::fs::write(
        dir.path().join("shared/0005_plans_trial_days.sql"),
        "ALTER TABLE plans ADD COLUMN trial_days integer NOT NULL DEFAULT 14;",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tenant/0010_workflows_archived_at.sql"),
        "ALTER TABLE workflows ADD COLUMN archived_at timestamptz;",
    )
    .unwrap();
    dir
}

async fn column_exists(pool: &PgPool, schema: &str, table: &str, column: &str) -> bool {
    scalar_i64(
        pool,
        &format!(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = '{schema}' \
             AND table_name = '{table}' AND column_name = '{column}'"
        ),
    )
    .await
        == 1
}

#[sqlx::test(migrations = false)]
async fn clone_copies_every_schema_applies_the_new_migrations_then_cuts_over_and_back(
    pool: PgPool,
) {
    build_v1(&pool).await;
    // References into the shared schema, which a clone keeps: warned.
    exec(
        &pool,
        "ALTER TABLE tenant_a.workflows ADD CONSTRAINT workflows_created_by_fkey \
         FOREIGN KEY (created_by) REFERENCES public.users (id); \
         CREATE VIEW tenant_b.workflow_authors AS SELECT w.id, u.email \
         FROM tenant_b.workflows w JOIN public.users u ON u.id = w.created_by",
    )
    .await;
    let extra = clone_extra();
    let s = clone_settings(&pool, extra.path());
    let (r, events) = move_with_events(&s, "v2", false).await;
    assert!(r.is_success(), "{r:#?}");
    let warned: Vec<String> = events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            tenantmig::Event::Warning { message } => Some(message.clone()),
            _ => None,
        })
        .collect();
    assert!(
        warned
            .iter()
            .any(|w| w.starts_with("tenant_a_v2: workflows refer(s) to tables of public")),
        "{warned:?}"
    );
    assert!(
        warned
            .iter()
            .any(|w| w.starts_with("tenant_b_v2: workflow_authors refer(s)")),
        "{warned:?}"
    );
    assert!(
        !warned.iter().any(|w| w.starts_with("tenant_c_v2")),
        "{warned:?}"
    );
    assert_eq!(r.strategy, Strategy::Clone);
    for (t, rows) in TENANTS {
        let v2 = format!("{t}_v2");
        assert!(column_exists(&pool, &v2, "workflows", "archived_at").await);
        assert!(!column_exists(&pool, t, "workflows", "archived_at").await);
        assert_eq!(
            scalar_i64(&pool, &format!("SELECT count(*) FROM {v2}.workflows")).await,
            rows
        );
        assert_eq!(history(&pool, &v2).await.last().map(|(v, _)| *v), Some(10));
        let o = r.tenants.iter().find(|o| o.source == t).unwrap();
        assert!(!o.counts.is_empty(), "the copy's counts are reported");
        assert!(o.counts.iter().all(|c| c.source_rows == c.target_rows));
    }
    assert!(column_exists(&pool, "public_v2", "plans", "trial_days").await);

    // Cut over: v2 takes the names, v1 keeps a suffix, in one transaction.
    let url = url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("tenantmig.toml");
    std::fs::write(
        &toml,
        format!(
            "shared_migrations = {:?}\ntenant_migrations = {:?}\n[tenants]\nquery = \"SELECT schema_name FROM public.organizations ORDER BY id\"\n\
             [versions.v2]\nstrategy = \"clone\"\nshared_schema = \"public_v2\"\ntenant_schema = \"{{schema}}_v2\"\n\
             shared_migrations = [{:?}, {:?}]\ntenant_migrations = [{:?}, {:?}]\n",
            repo_dir("shared"),
            repo_dir("tenant"),
            repo_dir("shared"),
            extra.path().join("shared"),
            repo_dir("tenant"),
            extra.path().join("tenant"),
        ),
    )
    .unwrap();
    cli(&url, dir.path())
        .args(["cutover", "v2", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains("public_v2 -> public"));
    assert!(!column_exists(&pool, "public", "plans", "trial_days").await);
    cli(&url, dir.path())
        .args(["cutover", "v2"])
        .assert()
        .success()
        .stdout(predicate::str::contains("tenant_a_v2 -> tenant_a"));
    assert!(column_exists(&pool, "public", "plans", "trial_days").await);
    assert!(!column_exists(&pool, "public_v1", "plans", "trial_days").await);
    for (t, _) in TENANTS {
        assert!(column_exists(&pool, t, "workflows", "archived_at").await);
        assert!(!column_exists(&pool, &format!("{t}_v1"), "workflows", "archived_at").await);
    }
    // While v2 is live, neither a new move nor an abort may run.
    cli(&url, dir.path())
        .args(["migrate-to", "v2", "--abort", "--yes"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--revert"));
    cli(&url, dir.path())
        .args(["migrate-to-v2"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("live"));

    cli(&url, dir.path())
        .args(["cutover", "v2", "--revert"])
        .assert()
        .success();
    assert!(!column_exists(&pool, "public", "plans", "trial_days").await);
    assert!(column_exists(&pool, "public_v2", "plans", "trial_days").await);
    for (t, _) in TENANTS {
        assert!(!column_exists(&pool, t, "workflows", "archived_at").await);
        assert!(column_exists(&pool, &format!("{t}_v2"), "workflows", "archived_at").await);
    }
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE '%\\_v1'"
        )
        .await,
        0
    );

    // A tenant added since the move blocks the cut-over, named.
    exec(
        &pool,
        "INSERT INTO public.organizations (name, schema_name) VALUES ('late', 'tenant_late')",
    )
    .await;
    let (r, _) = migrate(&s, select(&["tenant_late".to_string()])).await;
    assert!(r.is_success());
    cli(&url, dir.path())
        .args(["cutover", "v2"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("tenant_late"));
}

#[sqlx::test(migrations = false)]
async fn a_snapshot_restores_by_renaming_and_the_restore_can_be_undone(pool: PgPool) {
    build_v1(&pool).await;
    let url = url_of(&pool);
    let cmd = |args: &[&str]| {
        let mut c = cli(&url, &repo_dir(""));
        c.args(["--config", "examples/v2/tenantmig.toml"])
            .args(args);
        c
    };
    cmd(&[
        "snapshot", "create", "--tenant", "tenant_a", "--tenant", "tenant_b",
    ])
    .assert()
    .success()
    .stdout(predicate::str::contains("tenant_a -> tenant_a_snap_"));
    cmd(&["snapshot", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("complete"));
    // Damage after the snapshot.
    exec(
        &pool,
        "DELETE FROM tenant_a.workflow_tags; DELETE FROM tenant_a.tags",
    )
    .await;
    exec(&pool, "ALTER TABLE tenant_b.tags ADD COLUMN oops int").await;

    cmd(&["snapshot", "restore", "1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--yes"));
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM tenant_a.tags").await,
        0
    );
    cmd(&["snapshot", "restore", "1", "--yes"])
        .assert()
        .success()
        .stdout(predicate::str::contains("snapshot 2"));
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM tenant_a.tags").await,
        3
    );
    assert!(!column_exists(&pool, "tenant_b", "tags", "oops").await);
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM tenant_c.workflows").await,
        5,
        "a tenant outside the snapshot is untouched"
    );
    // The replaced schemas are snapshot 2: restoring it undoes the restore.
    cmd(&["snapshot", "restore", "2", "--yes"])
        .assert()
        .success();
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM tenant_a.tags").await,
        0
    );
    assert!(column_exists(&pool, "tenant_b", "tags", "oops").await);

    // Prune drops the copies left, never a restored (live) one.
    cmd(&["snapshot", "prune", "--older-than", "0s"])
        .assert()
        .code(2);
    cmd(&["snapshot", "prune", "--older-than", "0s", "--yes"])
        .assert()
        .success();
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE '%\\_snap\\_%'"
        )
        .await,
        0
    );
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM tenant_a.workflows").await,
        12
    );
}

#[sqlx::test(migrations = false)]
async fn bad_input_is_refused_before_anything_changes(pool: PgPool) {
    let s = build_v1(&pool).await;
    let url = url_of(&pool);
    let cmd = |args: &[&str]| {
        let mut c = cli(&url, &repo_dir(""));
        c.args(["--config", "examples/v2/tenantmig.toml"])
            .args(args);
        c
    };
    cmd(&["migrate-to", "v9"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("declared versions: v2"));
    cmd(&["cutover", "v2"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not moved"));
    cmd(&["cutover", "v2", "--revert"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not live"));
    // A tenant behind the current tenant migrations is refused by reshape.
    exec(
        &pool,
        "DELETE FROM tenant_c._sqlx_migrations WHERE version = 9; DROP TABLE tenant_c.workflow_tags, tenant_c.tags",
    )
    .await;
    let out = cmd(&["--format", "json", "migrate-to-v2", "--dry-run"])
        .assert()
        .success();
    let plan: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let c = plan["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["source"] == "tenant_c")
        .unwrap();
    assert!(
        c["refused"]
            .as_str()
            .unwrap()
            .contains("migrate --tenant tenant_c"),
        "{c}"
    );
    let r = move_to(&s, "v2", false).await;
    assert!(!r.is_success());
    let c = r.tenants.iter().find(|o| o.source == "tenant_c").unwrap();
    assert_eq!(c.state, OutcomeState::Refused);
    assert_tenant_moved(&pool, "tenant_a").await;
    assert_eq!(
        consolidated_counts(&pool, "tenant_c", "workflows").await.1,
        0
    );
    // The command exits 1 while a tenant is refused, naming it.
    cmd(&["migrate-to", "v2"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("REFUSED tenant_c -> app_v2"));
    // A target name taken by a schema the move did not make is refused.
    exec(&pool, "CREATE SCHEMA app_v3").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tenantmig.toml"),
        format!(
            "[versions.v3]\nstrategy = \"reshape\"\nshared_schema = \"app_v3\"\nshared_migrations = {:?}\n",
            repo_dir("examples/v2/shared")
        ),
    )
    .unwrap();
    cli(&url, dir.path())
        .env("TENANTMIG_SHARED_MIGRATIONS", repo_dir("shared"))
        .env("TENANTMIG_TENANT_MIGRATIONS", repo_dir("tenant"))
        .args(["migrate-to", "v3"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "app_v3 exists and was not created",
        ));
}

/// The tenants of `tests/cases/move/rename` and their workflows.
const RENAME_TENANTS: [(&str, i64); 2] = [("tenant_a", 3), ("tenant_b", 5)];

/// A configuration for `tests/cases/move/rename`, with `tenant_moves` as
/// given and `extra` lines in `[versions.v2]`, written into `dir`.
fn rename_config(dir: &Path, tenant_moves: &Path, extra: &str) -> std::path::PathBuf {
    let case = repo_dir("tests/cases/move/rename");
    let toml = dir.join("tenantmig.toml");
    std::fs::write(
        &toml,
        format!(
            "shared_migrations = {:?}\ntenant_migrations = {:?}\n\
             [tenants]\nquery = \"SELECT schema_name FROM public.organizations ORDER BY id\"\n\
             [versions.v2]\nstrategy = \"reshape\"\nshared_schema = \"app_v2\"\n\
             shared_migrations = {:?}\nshared_moves = {:?}\ntenant_moves = {:?}\n\
             tenant_id_query = \"SELECT schema_name, id FROM public.organizations\"\n\
             tenant_column = \"tenant_id\"\n{extra}",
            case.join("shared"),
            case.join("tenant"),
            case.join("v2/shared"),
            case.join("v2/moves/shared"),
            tenant_moves,
        ),
    )
    .unwrap();
    toml
}

/// v1 of `tests/cases/move/rename`: two tenants with a few workflows each,
/// in a table that v2 renames.
async fn build_rename_v1(pool: &PgPool, toml: &Path) -> Settings {
    let s = Settings::load_from(Some(toml), [("DATABASE_URL".to_string(), url_of(pool))])
        .expect("the configuration loads");
    let (r, _) = migrate(
        &s,
        Selection {
            shared: true,
            ..Selection::default()
        },
    )
    .await;
    assert!(r.is_success(), "{r:?}");
    // A deleted organization first, so ids and positions differ.
    exec(
        pool,
        "INSERT INTO public.organizations (schema_name) VALUES ('gone'); DELETE FROM public.organizations; \
         INSERT INTO public.organizations (schema_name) VALUES ('tenant_a'), ('tenant_b')",
    )
    .await;
    let (r, _) = migrate(&s, Selection::all()).await;
    assert!(r.is_success(), "{r:?}");
    for (t, n) in RENAME_TENANTS {
        exec(
            pool,
            &format!(
                "INSERT INTO {t}.workflow_workflow (name) SELECT 'w' || g FROM generate_series(1, {n}) g"
            ),
        )
        .await;
    }
    s
}

/// The rename case's tenant data move with `edit` applied.
fn rename_moves(edit: impl Fn(&str) -> String) -> tempfile::TempDir {
    let file = "0001_workflows.sql";
    let sql =
        std::fs::read_to_string(repo_dir("tests/cases/move/rename/v2/moves/tenant").join(file))
            .unwrap();
    let edited = edit(&sql);
    assert_ne!(edited, sql, "the edit applies to the case's file");
    folder(&[(file, &edited)])
}

#[sqlx::test(migrations = false)]
async fn a_renamed_table_declared_with_copies_is_counted_by_the_final_check(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let toml = rename_config(
        dir.path(),
        &repo_dir("tests/cases/move/rename/v2/moves/tenant"),
        "",
    );
    let s = build_rename_v1(&pool, &toml).await;
    let (r, events) = move_with_events(&s, "v2", false).await;
    assert!(r.is_success(), "{r:#?}");
    for (t, n) in RENAME_TENANTS {
        let o = r.tenants.iter().find(|o| o.source == t).unwrap();
        assert_eq!(
            o.counts,
            vec![tenantmig::moves::TableCount {
                table: "workflow".into(),
                source_tables: vec!["workflow_workflow".into()],
                source_rows: n,
                target_rows: n,
            }],
            "{t}: the check counted the renamed table"
        );
        let check = o.steps.iter().find(|s| s.step == "check").unwrap();
        assert_eq!((check.rows_read, check.rows_written), (Some(n), Some(n)));
    }
    let shared = r.shared.as_ref().unwrap();
    assert_eq!(shared.counts.len(), 1, "{shared:#?}");
    assert_eq!(shared.counts[0].table, "organizations");
    let warned = events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, tenantmig::Event::Warning { .. }))
        .count();
    assert_eq!(warned, 0, "every table was compared");
}

#[sqlx::test(migrations = false)]
async fn a_data_move_that_drops_rows_fails_the_final_check_naming_both_tables_and_counts(
    pool: PgPool,
) {
    // The expect-rows query shares the file's bug, so only the final check
    // can see the rows left behind.
    let buggy = rename_moves(|sql| {
        sql.replace(
            "FROM {source_schema}.workflow_workflow\n",
            "FROM {source_schema}.workflow_workflow WHERE id > 1\n",
        )
        .replace(
            "FROM   {source_schema}.workflow_workflow;",
            "FROM   {source_schema}.workflow_workflow WHERE id > 1;",
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let toml = rename_config(dir.path(), buggy.path(), "");
    build_rename_v1(&pool, &toml).await;
    let a_id = scalar_i64(
        &pool,
        "SELECT id FROM public.organizations WHERE schema_name = 'tenant_a'",
    )
    .await;
    let out = cli(&url_of(&pool), dir.path())
        .args(["migrate-to", "v2", "--max-failures", "5"])
        .assert()
        .code(1);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        stdout.contains(&format!(
            "step check: row counts differ: source table tenant_a.workflow_workflow has 3 rows but target table app_v2.workflow has 2 where tenant_id = {a_id}"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("source table tenant_b.workflow_workflow has 5 rows but target table app_v2.workflow has 4"),
        "{stdout}"
    );
}

#[sqlx::test(migrations = false)]
async fn a_final_check_that_compares_no_table_fails_unless_require_counts_is_false(pool: PgPool) {
    // The same rename, undeclared: no table of tenant_a has a namesake in
    // app_v2, so the check would compare nothing.
    let undeclared =
        rename_moves(|sql| sql.replace("-- copies: workflow_workflow -> workflow\n", ""));
    let dir = tempfile::tempdir().unwrap();
    let toml = rename_config(dir.path(), undeclared.path(), "");
    build_rename_v1(&pool, &toml).await;
    let url = url_of(&pool);
    cli(&url, dir.path())
        .args(["migrate-to", "v2", "--max-failures", "5"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "FAILED tenant_a -> app_v2: step check: the final check could compare no table: none of the 1 table(s) of tenant_a (workflow_workflow) has a table of the same name in app_v2 with a column tenant_id",
        ))
        .stdout(predicate::str::contains(
            "`-- copies: workflow_workflow -> <its table in app_v2>`",
        ))
        .stdout(predicate::str::contains("require_counts = false"));
    // The rows were moved (the files passed their own check); only the
    // final check stands in the way of a cut-over.
    cli(&url, dir.path())
        .args(["cutover", "v2"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not moved and checked"));

    // Opted out: the rerun's check passes, with one warning for both
    // tenants (naming whichever came first).
    rename_config(dir.path(), undeclared.path(), "require_counts = false\n");
    let out = cli(&url, dir.path())
        .args(["migrate-to", "v2"])
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    let warned: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(": the final check compared no table"))
        .collect();
    assert_eq!(warned.len(), 1, "{stderr}");
    assert!(
        warned[0].starts_with("warning: tenant_") && warned[0].contains("require_counts = false"),
        "{stderr}"
    );
}
