//! Helpers shared by the integration tests: every test gets its own
//! database from `#[sqlx::test]`; these build settings, migration folders
//! and engines against it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Executor, PgPool, Row};
use tempfile::TempDir;
use tenantmig::{CollectEvents, Engine, MigrateOptions, RunReport, Selection, Settings};

/// The URL of the test's own database (DATABASE_URL with its name swapped).
pub fn url_of(pool: &PgPool) -> String {
    let db = pool
        .connect_options()
        .get_database()
        .expect("test database name")
        .to_string();
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL must be set for the tests");
    let mut u = url::Url::parse(&base).expect("DATABASE_URL parses");
    u.set_path(&format!("/{db}"));
    u.to_string()
}

/// A folder of migration files.
pub fn folder(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, sql) in files {
        std::fs::write(dir.path().join(name), sql).expect("write migration");
    }
    dir
}

/// Writes (or overwrites) one file of a folder.
pub fn write(dir: &Path, name: &str, sql: &str) {
    std::fs::write(dir.join(name), sql).expect("write migration");
}

/// The repository's example folders.
pub fn repo_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// Settings for a test database, with fast retries and short lock waits.
pub fn settings(pool: &PgPool, shared: &Path, tenant: &Path) -> Settings {
    Settings {
        database_url: Some(url_of(pool)),
        shared_migrations: shared.to_path_buf(),
        tenant_migrations: tenant.to_path_buf(),
        lock_wait: std::time::Duration::from_secs(20),
        retry_backoff: std::time::Duration::from_millis(100),
        ..Settings::default()
    }
}

/// Tenant names t_01 … t_nn.
pub fn tenants(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("t_{i:02}")).collect()
}

/// Selection of the shared schema plus the named tenants.
pub fn select(names: &[String]) -> Selection {
    Selection {
        shared: true,
        tenants: true,
        tenant_names: names.to_vec(),
        exclude: Vec::new(),
    }
}

/// Runs `migrate` through the library, collecting events.
pub async fn migrate(settings: &Settings, selection: Selection) -> (RunReport, Arc<CollectEvents>) {
    migrate_with(settings, selection, 0).await
}

/// As [`migrate`], with canaries.
pub async fn migrate_with(
    settings: &Settings,
    selection: Selection,
    canary: usize,
) -> (RunReport, Arc<CollectEvents>) {
    let events = Arc::new(CollectEvents::default());
    let engine = Engine::new(settings.clone(), &selection, events.clone()).expect("engine");
    let opts = MigrateOptions {
        selection,
        canary,
        dry_run: false,
        args: vec!["test".into()],
        goal: Default::default(),
    };
    let report = engine
        .migrate(&opts, std::future::pending())
        .await
        .expect("migrate runs");
    (report, events)
}

/// Applied versions of a schema's history, ascending, with their success flag.
pub async fn history(pool: &PgPool, schema: &str) -> Vec<(i64, bool)> {
    let sql =
        format!("SELECT version, success FROM \"{schema}\"._sqlx_migrations ORDER BY version");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Does `schema.table` exist?
pub async fn table_exists(pool: &PgPool, schema: &str, table: &str) -> bool {
    sqlx::query_scalar("SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL")
        .bind(schema)
        .bind(table)
        .fetch_one(pool)
        .await
        .expect("to_regclass")
}

/// Runs SQL on the test database.
pub async fn exec(pool: &PgPool, sql: &str) {
    pool.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A scalar from the test database.
pub async fn scalar_i64(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The tenantmig binary, with a clean environment pointing at `url`.
pub fn cli(url: &str, dir: &Path) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::new(env!("CARGO_BIN_EXE_tenantmig"));
    c.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", url)
        .env("CI", "true");
    c
}

/// Creates `public.applied`, which non-idempotent test migrations add a
/// row to each time they run (see [`record_applied`]).
pub async fn create_applied_table(pool: &PgPool) {
    exec(
        pool,
        "CREATE TABLE public.applied (schema_name text, version int)",
    )
    .await;
}

/// SQL that records one application of `version` in `public.applied`.
pub fn record_applied(version: i64) -> String {
    format!("INSERT INTO public.applied SELECT current_schema(), {version};")
}

/// Asserts `public.applied` holds `expected` rows, none of them twice.
pub async fn assert_applied_once(pool: &PgPool, expected: i64) {
    assert_eq!(
        scalar_i64(pool, "SELECT count(*) FROM public.applied").await,
        expected
    );
    assert_eq!(
        scalar_i64(
            pool,
            "SELECT count(*) FROM (SELECT DISTINCT schema_name, version FROM public.applied) d"
        )
        .await,
        expected,
        "a migration was applied twice"
    );
}

/// The binary with the migration folders set through the environment.
pub fn cli_sets(url: &str, dir: &Path, shared: &Path, tenant: &Path) -> assert_cmd::Command {
    let mut c = cli(url, dir);
    c.env("TENANTMIG_SHARED_MIGRATIONS", shared)
        .env("TENANTMIG_TENANT_MIGRATIONS", tenant);
    c
}

/// Waits until some session waits for a lock on the table `relname`
/// (a command under test blocked where the test holds a lock).
pub async fn wait_for_lock_waiter(pool: &PgPool, relname: &str) {
    let sql = format!(
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
         WHERE c.relname = '{relname}' AND NOT l.granted"
    );
    for _ in 0..600 {
        if scalar_i64(pool, &sql).await > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no session ever waited for a lock on {relname}");
}

/// The binary started in the background, with the same clean environment as
/// [`cli_sets`], its output captured.
pub fn spawn(url: &str, dir: &Path, shared: &Path, tenant: &Path, args: &[&str]) -> Child {
    spawn_env(url, dir, shared, tenant, &[], args)
}

/// As [`spawn`], with more environment variables.
pub fn spawn_env(
    url: &str,
    dir: &Path,
    shared: &Path,
    tenant: &Path,
    env: &[(&str, &str)],
    args: &[&str],
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tenantmig"))
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", url)
        .env("CI", "true")
        .env("TENANTMIG_SHARED_MIGRATIONS", shared)
        .env("TENANTMIG_TENANT_MIGRATIONS", tenant)
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tenantmig")
}

/// A gate a test migration waits at: `SELECT pg_advisory_lock(key)`, then
/// lets go at once. The test holds the key on its own connection
/// ([`Gate::close`]) until it has done what must happen while the run is
/// in flight, then opens it: no timing margins. The run's sessions need a
/// `lock_timeout` longer than the wait (`TENANTMIG_LOCK_TIMEOUT`).
pub struct Gate {
    conn: sqlx::PgConnection,
    key: i64,
}

impl Gate {
    /// The SQL a migration runs to pass the gate.
    pub fn sql(key: i64) -> String {
        format!("SELECT pg_advisory_lock({key}); SELECT pg_advisory_unlock({key});")
    }

    /// Holds `key`, so that migrations running [`Gate::sql`] wait.
    pub async fn close(url: &str, key: i64) -> Gate {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(key)
            .execute(&mut conn)
            .await
            .expect("close the gate");
        Gate { conn, key }
    }

    /// Lets the waiting migrations through.
    pub async fn open(mut self) {
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(self.key)
            .execute(&mut self.conn)
            .await
            .expect("open the gate");
    }
}

/// Waits for a child and returns (exit code, stdout + stderr).
pub fn finish(child: Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().expect("wait for tenantmig");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Waits until a session of this database runs a statement containing
/// `needle` (other than the asking one).
pub async fn wait_for_query(pool: &PgPool, needle: &str) {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND state = 'active' AND query LIKE '%{needle}%' AND query NOT LIKE '%pg_stat_activity%'"
    );
    for _ in 0..400 {
        if scalar_i64(pool, &sql).await > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no session ever ran {needle}");
}

/// Sends a signal to a child process.
pub fn kill(child: &Child, signal: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{signal} failed");
}
