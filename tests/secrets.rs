//! No secret is stored or printed: a password given in a connection string
//! never appears in any output of the binary, nor in any row of the ledger.

mod common;

use common::*;
use sqlx::PgPool;

const PASSWORD: &str = "S3cretPassw0rd";
const QUERY_PASSWORD: &str = "Qu3ryPassw0rd";
const KV_PASSWORD: &str = "K3y Valu3Pass";

/// The test database's URL with a password in its user information (trust
/// authentication accepts any password).
fn with_password(url: &str, password: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_password(Some(password)).unwrap();
    u.to_string()
}

/// Runs the binary and returns its exit code, stdout and stderr.
fn run(c: &mut assert_cmd::Command) -> (Option<i32>, String) {
    let out = c.output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [PASSWORD, QUERY_PASSWORD, KV_PASSWORD, "S3cret", "Valu3Pass"] {
        assert!(
            !text.contains(secret),
            "{what} shows the password {secret:?}:\n{text}"
        );
    }
}

#[sqlx::test(migrations = false)]
async fn no_password_reaches_any_output_or_ledger_row(pool: PgPool) {
    let url = url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    let shared = folder(&[("0001_a.sql", "CREATE TABLE a (id int);")]);
    let tenant = folder(&[("0001_t.sql", "CREATE TABLE t (id int);")]);
    let secret_url = with_password(&url, PASSWORD);
    let query_url = format!("{url}?password={QUERY_PASSWORD}&sslmode=disable");
    let bin = || cli_sets(&url, dir.path(), shared.path(), tenant.path());

    // Two real runs, the password in the URL's user information and in its
    // query, with debug logs on.
    let (code, out) = run(bin()
        .args(["-vv", "--database-url", &secret_url])
        .args(["migrate", "--tenant", "t_01"]));
    assert_eq!(code, Some(0), "{out}");
    assert_no_secret("migrate", &out);
    let (code, out) = run(bin()
        .arg(format!("--database-url={query_url}"))
        .args(["--format", "json", "migrate", "--tenant", "t_02"]));
    assert_eq!(code, Some(0), "{out}");
    assert_no_secret("migrate --format json", &out);

    // A run written by an older tenantmig, which stored the command line as
    // it came.
    exec(
        &pool,
        &format!(
            "INSERT INTO tenantmig.runs (command, args, finished_at, outcome)
             VALUES ('migrate', '[\"--database-url\", \"{secret_url}\", \"migrate\"]', now(), 'succeeded')"
        ),
    )
    .await;

    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM tenantmig.runs ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(ids.len(), 3);
    let (code, out) = run(bin().args(["--database-url", &secret_url, "runs"]));
    assert_eq!(code, Some(0), "{out}");
    assert_no_secret("runs", &out);
    for id in &ids {
        let id = id.to_string();
        let (code, out) = run(bin().args(["--database-url", &secret_url, "runs", "show", &id]));
        assert_eq!(code, Some(0), "{out}");
        assert!(
            out.contains("***"),
            "runs show {id} shows the masked URL:\n{out}"
        );
        assert_no_secret("runs show", &out);
        let (code, out) = run(bin().args(["--format", "json", "runs", "show", &id]));
        assert_eq!(code, Some(0), "{out}");
        assert_no_secret("runs show --format json", &out);
    }

    // A key-value connection string is not a URL tenantmig can use: the
    // error names it, masked.
    let kv = format!("host=127.0.0.1 password='{KV_PASSWORD}' dbname=postgres");
    let (code, out) = run(bin().args(["--database-url", &kv, "status"]));
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("password='***'"), "{out}");
    assert_no_secret("a configuration error", &out);
    let kv = format!("host=127.0.0.1 password={PASSWORD} dbname=postgres");
    let (code, out) = run(bin().env("DATABASE_URL", &kv).arg("migrate"));
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("password=***"), "{out}");
    assert_no_secret("a configuration error from DATABASE_URL", &out);

    // A usage error quoting the URL (given without --database-url).
    let (code, out) = run(bin().args(["migrate", &secret_url]));
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("postgres:***@"), "{out}");
    assert_no_secret("a usage error", &out);

    // Every ledger row, whole, as text (the old row included: only what
    // tenantmig wrote is its business, so that one is left out).
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT r::text FROM tenantmig.runs r WHERE r.pid IS NOT NULL
         UNION ALL SELECT t::text FROM tenantmig.run_tenants t",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(rows.len() >= 4, "{rows:?}");
    assert_no_secret("the ledger", &rows.join("\n"));
}
