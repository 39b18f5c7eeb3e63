//! Invariant 13: the run ledger tells the truth through faults. Its writer
//! reconnects when its connection is killed, the summary is printed from
//! memory when the ledger cannot be written, a run is shown as running while
//! its process lives, and a dead run is closed with counts that agree with
//! its rows and with the history tables.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use sqlx::{Connection, PgConnection, PgPool};

/// The binary as a background child process, output captured.
fn spawn_migrate(url: &str, shared: &Path, tenant: &Path, args: &[String]) -> Child {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    spawn(
        url,
        shared.parent().expect("temp folder"),
        shared,
        tenant,
        &args,
    )
}

/// `migrate --jobs N --tenant …` arguments.
fn migrate_args(names: &[String], jobs: usize) -> Vec<String> {
    let mut args = vec!["migrate".to_string(), "--jobs".into(), jobs.to_string()];
    for n in names {
        args.extend(["--tenant".to_string(), n.clone()]);
    }
    args
}

/// `tenantmig runs --format json`, as the list of runs.
fn runs_json(url: &str) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let out = cli(url, dir.path())
        .args(["runs", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap_or_else(|e| panic!("runs --format json: {e}: {out:?}"))
        .as_array()
        .cloned()
        .expect("an array of runs")
}

/// The outcome `runs --format json` shows for run `id`.
fn shown_outcome(url: &str, id: i64) -> String {
    runs_json(url)
        .iter()
        .find(|r| r["id"] == id)
        .map(|r| r["outcome"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

/// `tenantmig runs show ID --format json`.
fn run_show_json(url: &str, id: i64) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = cli(url, dir.path())
        .args(["runs", "show", &id.to_string(), "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The first number of the summary line ("40 tenants migrated, …").
fn migrated_in_summary(stdout: &str) -> usize {
    let line = stdout
        .lines()
        .find(|l| l.contains(" migrated, "))
        .unwrap_or_else(|| panic!("no summary line in:\n{stdout}"));
    line.split_whitespace()
        .next()
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap()
}

/// Polls `probe` every 50 ms until it is true or `within` has passed.
async fn eventually(within: Duration, mut probe: impl AsyncFnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if probe().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The ledger connection's backend pid of run `id`, once that backend is alive.
async fn live_ledger_pid(pool: &PgPool, id: i64) -> Option<i32> {
    sqlx::query_scalar(
        "SELECT backend_pid FROM tenantmig.runs WHERE id = $1 \
         AND backend_pid IN (SELECT pid FROM pg_stat_activity)",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .ok()
    .flatten()
}

async fn terminate(pool: &PgPool, pid: i32) {
    let done: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(pool)
        .await
        .unwrap();
    assert!(done, "backend {pid} was not terminated");
}

// (a) Killing the ledger's connection mid-run loses nothing: the writer
// reconnects, the run ends normally, and every tenant has its row.
#[sqlx::test(migrations = false)]
async fn inv13_a_killed_ledger_connection_is_replaced_and_every_record_is_written(pool: PgPool) {
    let url = url_of(&pool);
    let shared = folder(&[]);
    let tenant = folder(&[("1_a.sql", "SELECT pg_sleep(0.1); CREATE TABLE a (id int);")]);
    let names = tenants(40);
    let child = spawn_migrate(&url, shared.path(), tenant.path(), &migrate_args(&names, 2));

    // Kill the ledger's connection once it has written some rows, and the
    // replacement once it is there.
    let mut kills = 0;
    let mut killed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while kills < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let rows = scalar_i64(
            &pool,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'tenantmig' AND tablename = 'run_tenants'",
        )
        .await;
        if rows == 0 || scalar_i64(&pool, "SELECT count(*) FROM tenantmig.run_tenants").await < 4 {
            continue;
        }
        if let Some(pid) = live_ledger_pid(&pool, 1).await
            && !killed.contains(&pid)
        {
            terminate(&pool, pid).await;
            killed.push(pid);
            kills += 1;
        }
    }
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        kills, 2,
        "the ledger never got a new connection\n{stdout}\n{stderr}"
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("40 tenants migrated"), "{stdout}");
    assert!(
        !stdout.contains("ledger could not be written"),
        "the ledger recovered: {stdout}"
    );
    let (outcome, total, ok, failed, skipped): (String, i32, i32, i32, i32) = sqlx::query_as(
        "SELECT outcome, tenants_total, tenants_ok, tenants_failed, tenants_skipped \
         FROM tenantmig.runs WHERE id = 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (outcome.as_str(), total, ok, failed, skipped),
        ("succeeded", 41, 41, 0, 0)
    );
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM tenantmig.run_tenants WHERE run_id = 1 AND state = 'succeeded' AND to_version = 1"
        )
        .await,
        40,
        "every tenant has its row"
    );
}

// (c) A run is shown as running while its process lives, even after its
// ledger connection was replaced; a second run neither waits for it nor
// marks it interrupted.
#[sqlx::test(migrations = false)]
async fn inv13_a_live_run_is_shown_running_and_another_run_does_not_close_it(pool: PgPool) {
    let url = url_of(&pool);
    let shared = folder(&[]);
    let tenant = folder(&[(
        "1_a.sql",
        "SELECT pg_sleep(CASE WHEN current_schema() LIKE 'slow%' THEN 1.5 ELSE 0 END); \
         CREATE TABLE a (id int);",
    )]);
    let slow: Vec<String> = (1..=5).map(|i| format!("slow_{i}")).collect();
    let fast: Vec<String> = (1..=3).map(|i| format!("fast_{i}")).collect();
    let mut first = spawn_migrate(&url, shared.path(), tenant.path(), &migrate_args(&slow, 1));

    let started = eventually(Duration::from_secs(20), async || {
        live_ledger_pid(&pool, 1).await.is_some()
    })
    .await;
    assert!(started, "the first run never recorded itself");
    assert_eq!(shown_outcome(&url, 1), "running");

    // Its ledger connection is killed: the run is still alive, and says so
    // again as soon as the writer has reconnected.
    let pid = live_ledger_pid(&pool, 1).await.unwrap();
    terminate(&pool, pid).await;
    let again = eventually(Duration::from_secs(5), async || {
        shown_outcome(&url, 1) == "running"
            && live_ledger_pid(&pool, 1).await.is_some_and(|p| p != pid)
    })
    .await;
    assert!(
        again,
        "a live run whose ledger connection was replaced is shown as {}",
        shown_outcome(&url, 1)
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first run ended too early for the test"
    );

    // A second run, on other tenants, while the first one works.
    let second = spawn_migrate(&url, shared.path(), tenant.path(), &migrate_args(&fast, 2))
        .wait_with_output()
        .unwrap();
    assert_eq!(second.status.code(), Some(0), "{}", text(&second.stderr));
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first run ended too early for the test"
    );
    let runs = runs_json(&url);
    let outcome = |id: i64| {
        runs.iter()
            .find(|r| r["id"] == id)
            .map(|r| r["outcome"].as_str().unwrap().to_string())
    };
    assert_eq!(outcome(1).as_deref(), Some("running"), "{runs:?}");
    assert_eq!(outcome(2).as_deref(), Some("succeeded"), "{runs:?}");
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM tenantmig.runs WHERE id = 1 AND finished_at IS NULL"
        )
        .await,
        1,
        "the second run closed the first one"
    );
    // While it runs, its counts are live: what is done so far is ok, the
    // rest is not reached yet.
    let live = runs.iter().find(|r| r["id"] == 1).unwrap();
    assert_eq!(live["tenants_total"], 6, "{live}");
    assert!(live["tenants_ok"].as_i64().unwrap() >= 1, "{live}");

    let out = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = run_show_json(&url, 1);
    assert_eq!(shown["run"]["outcome"], "succeeded", "{shown}");
    assert_eq!(shown["run"]["tenants_ok"], 6, "{shown}");
    assert_eq!(shown["schemas"].as_array().unwrap().len(), 5, "{shown}");
}

/// A throwaway PostgreSQL cluster that a test can stop and start.
struct Cluster {
    /// Holds the data folder, the socket and the log; removed on drop.
    dir: tempfile::TempDir,
    /// Where initdb and pg_ctl are.
    bin: PathBuf,
    /// The port it listens on (127.0.0.1).
    port: u16,
}

impl Cluster {
    /// Starts one, or says why it cannot (and the test skips).
    fn start() -> Result<Cluster, String> {
        let bin = pg_bin().ok_or("no initdb/pg_ctl in PATH or /usr/lib/postgresql/*/bin")?;
        let root = unsafe_is_root();
        if root
            && !Command::new("id")
                .arg("postgres")
                .output()
                .is_ok_and(|o| o.status.success())
        {
            return Err("running as root and there is no postgres OS user for initdb".into());
        }
        let dir = tempfile::Builder::new()
            .prefix("tenantmig-test-pg.")
            .tempdir()
            .map_err(|e| e.to_string())?;
        if root {
            let chown = Command::new("chown")
                .args(["postgres:", &dir.path().display().to_string()])
                .status()
                .map_err(|e| e.to_string())?;
            if !chown.success() {
                return Err("cannot chown the cluster folder to postgres".into());
            }
        }
        let mut c = Cluster { dir, bin, port: 0 };
        let init = c
            .as_pg("initdb")
            .args([
                "-D",
                &c.data(),
                "--auth=trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .output()
            .map_err(|e| e.to_string())?;
        if !init.status.success() {
            return Err(format!("initdb failed: {}", text(&init.stderr)));
        }
        for _ in 0..5 {
            c.port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| e.to_string())?
                .port();
            if c.pg_ctl_start() {
                return Ok(c);
            }
        }
        Err(format!(
            "pg_ctl start failed: {}",
            std::fs::read_to_string(c.dir.path().join("log")).unwrap_or_default()
        ))
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A server binary, run as the postgres OS user when the test is root.
    fn as_pg(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        let mut c = if unsafe_is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        c.current_dir(self.dir.path());
        c
    }

    fn pg_ctl_start(&self) -> bool {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=40",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.as_pg("pg_ctl")
            .args([
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "-o",
                &opts,
                "start",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn stop(&self, mode: &str) {
        let out = self
            .as_pg("pg_ctl")
            .args(["-D", &self.data(), "-m", mode, "-w", "stop"])
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl stop: {}", text(&out.stderr));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .as_pg("pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn unsafe_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| text(&o.stdout).trim() == "0")
}

/// The folder holding initdb and pg_ctl: PATH first, then Debian's newest.
fn pg_bin() -> Option<PathBuf> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if has(&d) {
                return Some(d);
            }
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let d = e.path().join("bin");
            has(&d).then_some((v, d))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, d)| d)
}

// (b) The server stops mid-run: the summary is printed from memory, with
// what the ledger could not record; once the server is back, the run is
// shown interrupted, with counts computed from its rows, and after a rerun
// every row agrees with the history tables.
#[tokio::test]
async fn inv13_a_server_stopped_mid_run_still_gets_its_summary_and_an_honest_ledger() {
    let cluster = match Cluster::start() {
        Ok(c) => c,
        Err(why) => {
            eprintln!("skipped: cannot start a throwaway PostgreSQL cluster: {why}");
            return;
        }
    };
    let url = cluster.url();
    let shared = folder(&[]);
    let tenant = folder(&[("1_a.sql", "SELECT pg_sleep(0.05); CREATE TABLE a (id int);")]);
    let names = tenants(60);
    let args = migrate_args(&names, 2);
    let child = spawn_migrate(&url, shared.path(), tenant.path(), &args);

    let mut conn = PgConnection::connect(&url).await.unwrap();
    let mut migrated = 0;
    for _ in 0..400 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        migrated = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relname = 'a' AND n.nspname LIKE 't\\_%'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if migrated >= 12 {
            break;
        }
    }
    assert!(migrated >= 12, "the run did not get going");
    drop(conn);
    cluster.stop("fast");

    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let in_memory = migrated_in_summary(&stdout);
    assert!(
        stdout.contains("the run ledger could not be written"),
        "{stdout}\n{stderr}"
    );
    let unrecorded: usize = stdout
        .split("; ")
        .find_map(|p| {
            p.strip_suffix(" schema records were not recorded")
                .or_else(|| p.strip_suffix(" schema record was not recorded"))
        })
        .and_then(|n| n.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of unrecorded records in:\n{stdout}"));

    assert!(cluster.pg_ctl_start(), "restart failed");
    let mut conn = PgConnection::connect(&url).await.unwrap();
    // Tenants migrated by the first run (before any rerun).
    let before: Vec<String> = sqlx::query_scalar(
        "SELECT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relname = 'a' AND n.nspname LIKE 't\\_%' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    // The summary counted every commit it saw acknowledged; a commit whose
    // answer was lost with the server may be one of the in-flight tenants.
    assert!(
        (in_memory..=in_memory + 2).contains(&before.len()),
        "memory said {in_memory}, the histories say {}",
        before.len()
    );
    assert_eq!(shown_outcome(&url, 1), "interrupted");

    let dir = tempfile::tempdir().unwrap();
    cli_sets(&url, dir.path(), shared.path(), tenant.path())
        .args(&args)
        .assert()
        .success();

    let shown = run_show_json(&url, 1);
    let run = &shown["run"];
    assert_eq!(run["outcome"], "interrupted", "{shown}");
    let rows = shown["schemas"].as_array().unwrap();
    let state_of = |s: &str| -> Vec<String> {
        rows.iter()
            .filter(|r| r["state"] == s)
            .map(|r| r["schema"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(state_of("running").is_empty(), "{shown}");
    let succeeded = state_of("succeeded");
    // Nothing the ledger calls succeeded is missing from the histories …
    for s in &succeeded {
        assert!(
            before.contains(s),
            "{s} recorded succeeded but not migrated by run 1"
        );
    }
    // … and everything run 1 migrated is either recorded, or was among the
    // records the summary said it could not write.
    assert!(
        before.len() - succeeded.len() <= unrecorded,
        "{} migrated, {} recorded, {unrecorded} reported unrecorded",
        before.len(),
        succeeded.len()
    );
    // The counts come from the rows: the shared schema (up to date when
    // planned) plus the succeeded rows are ok; failed, refused, stopped and
    // interrupted rows failed; the rest was not reached or not recorded.
    let failed_rows = rows.iter().filter(|r| r["state"] != "succeeded").count();
    assert_eq!(run["tenants_total"], 61, "{run}");
    assert_eq!(run["tenants_ok"], 1 + succeeded.len(), "{run}");
    assert_eq!(run["tenants_failed"], failed_rows, "{run}");
    assert_eq!(
        run["tenants_skipped"],
        61 - 1 - succeeded.len() - failed_rows,
        "{run}"
    );
    // The rerun recorded exactly the tenants it migrated.
    let rerun = run_show_json(&url, 2);
    let mut rerun_done: Vec<String> = rerun["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "succeeded")
        .map(|r| r["schema"].as_str().unwrap().to_string())
        .collect();
    rerun_done.sort();
    let mut expected: Vec<String> = names
        .iter()
        .filter(|n| !before.contains(n))
        .cloned()
        .collect();
    expected.sort();
    assert_eq!(rerun_done, expected);
}
