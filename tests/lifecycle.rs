//! Schema lifecycle: copy-into-new-schema (fidelity, consistency, all or
//! nothing), create-schema, drop-schema, tenant add and remove, bad input.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use predicates::prelude::*;
use sqlx::{PgPool, Row};
use tenantmig::{CollectEvents, CopyOptions, Engine, Error, Selection, Verify};

fn fidelity_sql() -> String {
    std::fs::read_to_string(repo_dir("tests/cases/copy/fidelity.sql")).expect("fixture")
}

/// Builds the schema `fid` with one of everything.
async fn build_fidelity_schema(pool: &PgPool) {
    exec(
        pool,
        &format!(
            "CREATE SCHEMA fid; SET search_path = fid; {}; RESET search_path",
            fidelity_sql()
        ),
    )
    .await;
}

fn engine(pool: &PgPool) -> (Engine, Arc<CollectEvents>) {
    let empty = folder(&[]);
    let s = settings(pool, empty.path(), empty.path());
    let events = Arc::new(CollectEvents::default());
    let e = Engine::new(s, &Selection::default(), events.clone()).expect("engine");
    (e, events)
}

fn copy_opts(src: &str, dst: &str, verify: Verify) -> CopyOptions {
    CopyOptions {
        verify,
        ..CopyOptions::new(src, dst, 3)
    }
}

/// As [`copy_opts`], forcing the parallel path (several connections, one
/// statement at a time) however small the source.
fn parallel_opts(src: &str, dst: &str, verify: Verify) -> CopyOptions {
    CopyOptions {
        small_below_bytes: 0,
        ..copy_opts(src, dst, verify)
    }
}

/// pg_dump from PATH, or from Debian's versioned folders.
fn pg_dump() -> PathBuf {
    if let Ok(p) = which("pg_dump") {
        return p;
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/pg_dump"))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found
        .pop()
        .expect("pg_dump is needed by this test (install postgresql-client)")
}

fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.exists())
        })
        .ok_or(())
}

/// `pg_dump --schema-only` of one schema, without the per-dump random
/// `\restrict` key lines.
fn dump_schema(url: &str, schema: &str) -> String {
    let out = std::process::Command::new(pg_dump())
        .args(["--schema-only", "--no-tablespaces", "-n", schema, "-d", url])
        .output()
        .expect("pg_dump runs");
    assert!(
        out.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Panics with the first differing lines when two dumps differ.
fn assert_same_dump(source: &str, copy: &str) {
    if source != copy {
        let diff: Vec<String> = source
            .lines()
            .zip(copy.lines())
            .filter(|(x, y)| x != y)
            .take(20)
            .map(|(x, y)| format!("source: {x}\ncopy:   {y}"))
            .collect();
        panic!(
            "pg_dump differs ({} vs {} lines):\n{}",
            source.lines().count(),
            copy.lines().count(),
            diff.join("\n")
        );
    }
}

/// Per table of `schema`: row count and an order-independent hash.
async fn table_fingerprints(pool: &PgPool, schema: &str) -> Vec<(String, i64, String)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_class WHERE relnamespace = $1::regnamespace AND relkind = 'r' ORDER BY 1",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .unwrap();
    let mut out = Vec::new();
    for t in tables {
        let sql = format!(
            "SELECT count(*), coalesce(sum(('x' || substr(md5(x::text), 1, 16))::bit(64)::int8::numeric), 0)::text FROM ONLY \"{schema}\".\"{t}\" x"
        );
        let r = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_one(pool)
            .await
            .unwrap();
        out.push((t, r.get(0), r.get(1)));
    }
    out
}

#[sqlx::test(migrations = false)]
async fn a_copy_matches_its_source_in_pg_dump_rows_and_sequences(pool: PgPool) {
    build_fidelity_schema(&pool).await;
    let url = url_of(&pool);
    let before_src_seq = scalar_i64(&pool, "SELECT last_value FROM fid.invoice_number_seq").await;
    let (engine, _events) = engine(&pool);
    let report = engine
        .copy_schema(
            &copy_opts("fid", "fid_copy", Verify::Checksums),
            std::future::pending(),
        )
        .await
        .expect("copy succeeds");
    assert!(report.checks.iter().all(|c| c.matches()));
    assert!(report.checks.len() >= 8, "{:?}", report.checks);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("names_its_schema") && w.contains("fid")),
        "the function naming its schema in a string is reported: {:?}",
        report.warnings
    );

    // The parallel path (several connections, one statement at a time)
    // gives the same copy.
    let par = engine
        .copy_schema(
            &parallel_opts("fid", "fid_par", Verify::Checksums),
            std::future::pending(),
        )
        .await
        .expect("parallel copy succeeds");
    assert!(par.jobs > 1 && par.checks.iter().all(|c| c.matches()));

    // Structure: pg_dump of both is the same once the name is replaced.
    let a = dump_schema(&url, "fid");
    assert!(
        a.contains("CREATE MATERIALIZED VIEW"),
        "the fixture is dumped"
    );
    for copy in ["fid_copy", "fid_par"] {
        assert_same_dump(&a, &dump_schema(&url, copy).replace(copy, "fid"));
    }
    assert_eq!(
        table_fingerprints(&pool, "fid").await,
        table_fingerprints(&pool, "fid_par").await
    );

    // Rows: counts and hashes per table.
    assert_eq!(
        table_fingerprints(&pool, "fid").await,
        table_fingerprints(&pool, "fid_copy").await
    );
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM fid_copy.document_stats").await,
        3,
        "the materialized view is populated"
    );
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM fid_copy._sqlx_migrations").await,
        1,
        "the history table comes along"
    );

    // Sequences: the copy's next values are the source's, from its own sequences.
    for (table, col) in [
        ("documents", "id"),
        ("pages", "id"),
        ("tags", "id"),
        ("documents", "invoice"),
    ] {
        let seq: String = sqlx::query_scalar("SELECT pg_get_serial_sequence($1, $2)")
            .bind(format!("fid_copy.{table}"))
            .bind(col)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(seq.starts_with("fid_copy."), "{table}.{col} uses {seq}");
    }
    let next_src_doc = scalar_i64(
        &pool,
        "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM fid.documents_id_seq",
    )
    .await;
    let new_id = scalar_i64(
        &pool,
        "INSERT INTO fid_copy.documents (account_id, title) VALUES (1, 'new') RETURNING id",
    )
    .await;
    assert_eq!(new_id, next_src_doc);
    let tag = scalar_i64(
        &pool,
        "INSERT INTO fid_copy.tags (name) VALUES ('t') RETURNING id::int8",
    )
    .await;
    assert_eq!(
        tag,
        50 + 30 * 5,
        "identity with START 50 INCREMENT 5 after 30 rows"
    );
    let page = scalar_i64(
        &pool,
        &format!("INSERT INTO fid_copy.pages (document_id, number) VALUES ({new_id}, 1) RETURNING id::int8"),
    )
    .await;
    assert_eq!(page, 6002);
    let invoice = scalar_i64(
        &pool,
        &format!("SELECT invoice FROM fid_copy.documents WHERE id = {new_id}"),
    )
    .await;
    assert_eq!(invoice, before_src_seq + 7);
    assert_eq!(
        scalar_i64(&pool, "SELECT last_value FROM fid.invoice_number_seq").await,
        before_src_seq,
        "the source's sequence did not move"
    );
    // Foreign keys: inside the copy point into the copy; to the shared schema stay.
    let fks: Vec<(String, String)> = sqlx::query_as(
        "SELECT conname::text, confrelid::regclass::text FROM pg_constraint \
         WHERE connamespace = 'fid_copy'::regnamespace AND contype = 'f' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        fks.contains(&("pages_document_id_fkey".into(), "fid_copy.documents".into())),
        "{fks:?}"
    );
    assert!(
        fks.contains(&("documents_account_id_fkey".into(), "accounts".into())),
        "{fks:?}"
    );
    // The trigger fires in the copy, using the copy's function.
    exec(
        &pool,
        &format!("UPDATE fid_copy.documents SET title = 'changed' WHERE id = {new_id}"),
    )
    .await;
    assert_eq!(
        scalar_i64(
            &pool,
            &format!("SELECT count(*) FROM fid_copy.documents WHERE id = {new_id} AND updated_at IS NOT NULL")
        )
        .await,
        1
    );
}

#[sqlx::test(migrations = false)]
async fn a_copy_reads_one_snapshot_while_the_source_takes_writes(pool: PgPool) {
    exec(
        &pool,
        "CREATE SCHEMA busy; \
         CREATE TABLE busy.a (id bigserial PRIMARY KEY, v text); \
         CREATE TABLE busy.b (id bigserial PRIMARY KEY, a_id bigint REFERENCES busy.a (id), v text); \
         INSERT INTO busy.a (v) SELECT 'x' || g FROM generate_series(1, 50000) g; \
         INSERT INTO busy.b (a_id, v) SELECT 1 + g % 50000, 'y' FROM generate_series(1, 50000) g;",
    )
    .await;
    let writer_pool = pool.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let writer = tokio::spawn(async move {
        let mut n = 0;
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            // Each transaction writes both tables, so a copy that read them
            // at different moments would not match its source.
            exec(
                &writer_pool,
                "BEGIN; INSERT INTO busy.a (v) SELECT 'w' FROM generate_series(1, 200); \
                 INSERT INTO busy.b (a_id, v) SELECT 1, 'w' FROM generate_series(1, 200); COMMIT",
            )
            .await;
            n += 1;
        }
        n
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (engine, _) = engine(&pool);
    let report = engine
        .copy_schema(
            &parallel_opts("busy", "busy_copy", Verify::Checksums),
            std::future::pending(),
        )
        .await
        .expect("copy succeeds while the source takes writes");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let writes = writer.await.unwrap();
    assert!(writes > 0);
    let a = scalar_i64(&pool, "SELECT count(*) FROM busy_copy.a").await;
    let b = scalar_i64(&pool, "SELECT count(*) FROM busy_copy.b").await;
    assert_eq!(a, b, "both tables come from the same moment");
    assert!(report.checks.iter().all(|c| c.matches()));
}

#[sqlx::test(migrations = false)]
async fn a_failed_copy_leaves_no_target_and_no_temporary_schema(pool: PgPool) {
    exec(
        &pool,
        "CREATE SCHEMA src; CREATE TABLE src.t (id int PRIMARY KEY, v text); \
         INSERT INTO src.t SELECT g, 'v' FROM generate_series(1, 1000) g; \
         CREATE FUNCTION public.fail_copy() RETURNS event_trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() \
                          WHERE schema_name LIKE 'tenantmig_copy_%') THEN \
             RAISE EXCEPTION 'injected failure'; END IF; END $$; \
         CREATE EVENT TRIGGER fail_copy ON ddl_command_end WHEN TAG IN ('CREATE INDEX') \
             EXECUTE FUNCTION public.fail_copy();",
    )
    .await;
    let (engine, _) = engine(&pool);
    let err = engine
        .copy_schema(
            &parallel_opts("src", "dst", Verify::Counts),
            std::future::pending(),
        )
        .await
        .expect_err("the injected failure stops the copy");
    assert!(matches!(err, Error::Failed { .. }), "{err}");
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'dst' OR nspname LIKE 'tenantmig_copy_%'"
        )
        .await,
        0
    );
    exec(&pool, "DROP EVENT TRIGGER fail_copy").await;
    engine
        .copy_schema(
            &copy_opts("src", "dst", Verify::Counts),
            std::future::pending(),
        )
        .await
        .expect("a rerun succeeds");
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM dst.t").await, 1000);
}

#[sqlx::test(migrations = false)]
async fn a_killed_copy_leaves_no_target_and_the_rerun_cleans_up(pool: PgPool) {
    exec(
        &pool,
        "CREATE TABLE public.accounts (id int PRIMARY KEY); INSERT INTO public.accounts VALUES (1); \
         CREATE SCHEMA src; CREATE TABLE src.t (id int PRIMARY KEY, account int REFERENCES public.accounts (id)); \
         INSERT INTO src.t SELECT g, 1 FROM generate_series(1, 1000) g;",
    )
    .await;
    let url = url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    // Hold the shared table so the copy stops at its foreign key, after the
    // temporary schema and its rows exist.
    let mut holder = pool.acquire().await.unwrap();
    sqlx::Executor::execute(
        &mut *holder,
        "BEGIN; LOCK TABLE public.accounts IN ACCESS EXCLUSIVE MODE",
    )
    .await
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tenantmig"))
        .current_dir(dir.path())
        .env("DATABASE_URL", &url)
        .env("TENANTMIG_LOCK_WAIT", "60s")
        .args(["copy-into-new-schema", "src", "dst"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_lock_waiter(&pool, "accounts").await;
    child.kill().unwrap();
    child.wait().unwrap();
    sqlx::Executor::execute(&mut *holder, "ROLLBACK")
        .await
        .unwrap();
    drop(holder);
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'dst'"
        )
        .await,
        0,
        "no target after a kill"
    );
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenantmig_copy_%'"
        )
        .await,
        1,
        "the temporary schema is what is left"
    );
    cli(&url, dir.path())
        .args(["copy-into-new-schema", "src", "dst"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "left by an interrupted copy into dst",
        ));
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenantmig_copy_%'"
        )
        .await,
        0
    );
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM dst.t").await, 1000);
}

#[sqlx::test(migrations = false)]
async fn names_that_need_quoting_are_copied_and_dropped(pool: PgPool) {
    exec(
        &pool,
        "CREATE SCHEMA \"My Tenant\"; \
         CREATE TABLE \"My Tenant\".\"Parent\" (id serial PRIMARY KEY); \
         CREATE TABLE \"My Tenant\".child (id serial PRIMARY KEY, parent int REFERENCES \"My Tenant\".\"Parent\" (id)); \
         INSERT INTO \"My Tenant\".\"Parent\" DEFAULT VALUES; INSERT INTO \"My Tenant\".child (parent) VALUES (1);",
    )
    .await;
    let url = url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    cli(&url, dir.path())
        .args([
            "copy-into-new-schema",
            "My Tenant",
            "My Copy",
            "--verify",
            "checksums",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "copied schema My Tenant into My Copy",
        ));
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM \"My Copy\".child").await,
        1
    );
    let target: String = sqlx::query_scalar(
        "SELECT confrelid::regclass::text FROM pg_constraint WHERE connamespace = '\"My Copy\"'::regnamespace AND contype = 'f'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(target, "\"My Copy\".\"Parent\"");
    cli(&url, dir.path())
        .args(["drop-schema", "My Copy", "--yes"])
        .assert()
        .success();
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'My Copy'"
        )
        .await,
        0
    );
}

#[sqlx::test(migrations = false)]
async fn bad_input_is_refused_with_exit_2_and_changes_nothing(pool: PgPool) {
    exec(
        &pool,
        "CREATE SCHEMA a; CREATE TABLE a.t (id int); INSERT INTO a.t VALUES (1), (2); CREATE SCHEMA b;",
    )
    .await;
    let url = url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    let schemas = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT nspname::text FROM pg_namespace WHERE nspname !~ '^(pg_|information_schema)' ORDER BY 1",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let before = schemas().await;
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["copy-into-new-schema", "nope", "c"],
            "source schema \"nope\" does not exist",
        ),
        (
            vec!["copy-into-new-schema", "a", "b"],
            "target schema \"b\" already exists",
        ),
        (vec!["copy-into-new-schema", "a", "a"], "needs a new name"),
        (
            vec![
                "copy-into-new-schema",
                "a",
                "x\"; drop schema a cascade; --",
            ],
            "invalid schema name",
        ),
        (
            vec!["copy-into-new-schema", "a", "c", "--jobs", "0"],
            "--jobs must be at least 1",
        ),
        (vec!["drop-schema", "a"], "with --yes to confirm"),
        (vec!["drop-schema", "pg_catalog", "--yes"], "system schema"),
        (
            vec!["drop-schema", "information_schema", "--yes"],
            "system schema",
        ),
        (vec!["drop-schema", "pg_temp_3", "--yes"], "system schema"),
        (vec!["drop-schema", "public", "--yes"], "--allow-shared"),
        (vec!["drop-schema", "tenantmig", "--yes"], "--allow-shared"),
        (vec!["drop-schema", "missing", "--yes"], "does not exist"),
        (vec!["create-schema", "a"], "already exists"),
        (vec!["tenant", "add", "a"], "already exists"),
        (
            vec!["tenant", "add", "c", "--from-template", "b"],
            "not up to date",
        ),
        (vec!["tenant", "remove", "a"], "with --yes to confirm"),
        (
            vec!["tenant", "remove", "public", "--yes"],
            "--allow-shared",
        ),
    ];
    for (args, msg) in cases {
        cli(&url, dir.path())
            .env("TENANTMIG_TENANT_MIGRATIONS", repo_dir("tenant"))
            .args(&args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(msg).or(predicate::str::contains(msg.to_lowercase())));
        assert_eq!(schemas().await, before, "{args:?} changed nothing");
    }
    // The preview names what would go.
    cli(&url, dir.path())
        .args(["drop-schema", "a"])
        .assert()
        .code(2)
        .stdout(predicate::str::contains("schema a: 1 tables"));
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM a.t").await, 2);
    cli(&url, dir.path())
        .args(["drop-schema", "missing", "--if-exists", "--yes"])
        .assert()
        .success();
}

#[sqlx::test(migrations = false)]
async fn create_schema_applies_a_migration_set_right_away(pool: PgPool) {
    let url = url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    cli(&url, dir.path())
        .env("TENANTMIG_SHARED_MIGRATIONS", repo_dir("shared"))
        .args(["create-schema", "app_v2", "--apply", "shared"])
        .assert()
        .success()
        .stdout(predicate::str::contains("created schema app_v2"));
    let shared_count = std::fs::read_dir(repo_dir("shared")).unwrap().count() as i64;
    assert_eq!(history(&pool, "app_v2").await.len() as i64, shared_count);
    assert!(table_exists(&pool, "app_v2", "organizations").await);
    cli(&url, dir.path())
        .args(["create-schema", "app_v2"])
        .assert()
        .code(2);
    cli(&url, dir.path())
        .args(["create-schema", "app_v2", "--if-not-exists"])
        .assert()
        .success();
    cli(&url, dir.path())
        .args(["create-schema", "Empty One"])
        .assert()
        .success();
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'Empty One'"
        )
        .await,
        1
    );
}

#[sqlx::test(migrations = false)]
async fn tenants_are_added_by_replay_or_template_and_removed_with_yes(pool: PgPool) {
    let url = url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    let tenant = repo_dir("tenant");
    let run = |args: &[&str]| {
        let mut c = cli(&url, dir.path());
        c.env("TENANTMIG_TENANT_MIGRATIONS", &tenant).args(args);
        c
    };
    run(&["tenant", "add", "acme"])
        .assert()
        .success()
        .stdout(predicate::str::contains("added tenant acme"));
    let head = history(&pool, "acme").await;
    assert!(!head.is_empty() && head.iter().all(|(_, ok)| *ok));
    exec(
        &pool,
        "INSERT INTO acme.workflows (name, slug) VALUES ('seed', 'seed')",
    )
    .await;
    run(&["tenant", "add", "globex", "--from-template", "acme"])
        .assert()
        .success()
        .stdout(predicate::str::contains("copied template acme"));
    assert_eq!(history(&pool, "globex").await, head);
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM globex.workflows").await,
        1
    );
    // Both are registered, and `status` sees them up to date.
    run(&["tenants"])
        .assert()
        .success()
        .stdout(predicate::str::contains("acme").and(predicate::str::contains("globex")));
    run(&["status", "--tenants-only"]).assert().success();
    // Remove: preview without --yes, then gone and unregistered.
    run(&["tenant", "remove", "globex"]).assert().code(2);
    assert!(table_exists(&pool, "globex", "workflows").await);
    run(&["tenant", "remove", "globex", "--yes"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "removed it from the tenant registry",
        ));
    assert!(!table_exists(&pool, "globex", "workflows").await);
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM tenantmig.tenants WHERE schema_name = 'globex'"
        )
        .await,
        0
    );
    // drop-schema unregisters too.
    run(&["drop-schema", "acme", "--yes"]).assert().success();
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM tenantmig.tenants").await,
        0
    );
    // Every change is a run in the ledger.
    assert!(scalar_i64(&pool, "SELECT count(*) FROM tenantmig.runs").await >= 4);
}

#[sqlx::test(migrations = false)]
async fn a_tenant_that_cannot_reach_head_is_not_left_behind(pool: PgPool) {
    let url = url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    let tenant = folder(&[
        ("0001_a.sql", "CREATE TABLE a (id int);"),
        ("0002_b.sql", "SELECT 1/0;"),
    ]);
    cli(&url, dir.path())
        .env("TENANTMIG_TENANT_MIGRATIONS", tenant.path())
        .args(["tenant", "add", "broken"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("its schema was removed again"));
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'broken'"
        )
        .await,
        0
    );
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM tenantmig.tenants").await,
        0
    );
}

#[sqlx::test(migrations = false)]
async fn the_drop_preview_names_outside_dependents_and_no_data_keeps_the_history(pool: PgPool) {
    exec(
        &pool,
        "CREATE SCHEMA t1; CREATE TABLE t1.docs (id int PRIMARY KEY); INSERT INTO t1.docs VALUES (1); \
         CREATE TABLE t1._sqlx_migrations (version bigint PRIMARY KEY, description text NOT NULL, \
           installed_on timestamptz NOT NULL DEFAULT now(), success boolean NOT NULL, \
           checksum bytea NOT NULL, execution_time bigint NOT NULL); \
         INSERT INTO t1._sqlx_migrations VALUES (1, 'docs', now(), true, '\\x00', 1); \
         CREATE TABLE t1.s (id serial, g int GENERATED ALWAYS AS (id * 2) STORED); \
         CREATE VIEW public.all_docs AS SELECT id FROM t1.docs;",
    )
    .await;
    let url = url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    cli(&url, dir.path())
        .args(["drop-schema", "t1"])
        .assert()
        .code(2)
        .stdout(
            predicate::str::contains("also dropped: view all_docs")
                .and(predicate::str::contains("default value").not()),
        );
    cli(&url, dir.path())
        .args(["copy-into-new-schema", "t1", "t2", "--no-data"])
        .assert()
        .success();
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM t2.docs").await, 0);
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM t2._sqlx_migrations").await,
        1
    );
}

#[sqlx::test(migrations = false)]
async fn a_schema_under_the_temporary_name_that_is_not_ours_is_kept(pool: PgPool) {
    let tmp = tenantmig::copy::temp_name("c");
    exec(
        &pool,
        &format!(
            "CREATE SCHEMA a; CREATE TABLE a.t (id int); \
             CREATE SCHEMA \"{tmp}\"; CREATE TABLE \"{tmp}\".precious (id int);"
        ),
    )
    .await;
    let url = url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    cli(&url, dir.path())
        .args(["copy-into-new-schema", "a", "c"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("was not made by tenantmig"));
    assert!(table_exists(&pool, &tmp, "precious").await);
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'c'"
        )
        .await,
        0
    );
}
