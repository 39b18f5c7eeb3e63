//! The read path that decides each schema's state in bulk: whatever the
//! history holds (a prefix of the set, a failed or reverting row, an edited
//! checksum, an unknown or a skipped version, no table at all), the status
//! must be the one its rows give.

mod common;

use common::*;
use sqlx::{AssertSqlSafe, PgPool, Row};
use tenantmig::state::{AppliedRow, Checker};
use tenantmig::{Engine, MigrationSet, NoEvents, SchemaState, SchemaStatus, Selection};

/// One history row: version, checksum, success, execution_time.
type Row4 = (i64, Vec<u8>, bool, i64);

/// Creates `schema` with a history table holding `rows`.
async fn history(pool: &PgPool, schema: &str, rows: &[Row4]) {
    exec(pool, &format!("CREATE SCHEMA {schema}")).await;
    exec(
        pool,
        &format!(
            "CREATE TABLE {schema}._sqlx_migrations (version BIGINT PRIMARY KEY, \
             description TEXT NOT NULL, installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), \
             success BOOLEAN NOT NULL, checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL)"
        ),
    )
    .await;
    for (v, c, ok, t) in rows {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {schema}._sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES ($1, 'x', $2, $3, $4)"
        )))
        .bind(v)
        .bind(ok)
        .bind(c)
        .bind(t)
        .execute(pool)
        .await
        .unwrap();
    }
}

/// The status the rows give, with a checker over every row.
async fn from_rows(pool: &PgPool, set: &MigrationSet, schema: &str) -> SchemaStatus {
    let mut c = Checker::new(set);
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT version, checksum, success, execution_time = -2 FROM {schema}._sqlx_migrations"
    )))
    .fetch_all(pool)
    .await
    .unwrap();
    for r in rows {
        c.push(&AppliedRow {
            version: r.get(0),
            checksum: r.get(1),
            success: r.get(2),
            reverting: r.get(3),
        });
    }
    c.finish(schema)
}

#[sqlx::test]
async fn every_history_is_decided_as_its_rows_say(pool: PgPool) {
    let shared = folder(&[]);
    let tenant = repo_dir("tenant");
    let set = MigrationSet::load(&tenant).unwrap();
    let n = set.len();
    assert!(n >= 6, "the example tenant set has enough migrations");
    let row = |i: usize| {
        (
            set.migrations[i].version,
            set.migrations[i].checksum.clone(),
            true,
            1,
        )
    };
    let prefix = |k: usize| (0..k).map(row).collect::<Vec<_>>();

    let mut cases: Vec<(String, Vec<Row4>)> = Vec::new();
    for k in 0..=n {
        cases.push((format!("h_prefix_{k:02}"), prefix(k)));
    }
    let mut failed = prefix(5);
    failed.push((
        set.migrations[5].version,
        set.migrations[5].checksum.clone(),
        false,
        -1,
    ));
    cases.push(("h_failed".into(), failed));
    let mut reverting = prefix(n);
    reverting[n - 1].2 = false;
    reverting[n - 1].3 = -2;
    cases.push(("h_reverting".into(), reverting));
    let mut edited = prefix(n);
    edited[2].1[0] ^= 0xff;
    cases.push(("h_checksum".into(), edited));
    let mut empty_checksum = prefix(3);
    empty_checksum[2].1 = Vec::new();
    cases.push(("h_empty_checksum".into(), empty_checksum));
    let mut unknown = prefix(n);
    unknown.push((99_999_999, vec![1, 2, 3], true, 1));
    cases.push(("h_unknown".into(), unknown));
    let mut gap = prefix(3);
    gap.push(row(4));
    cases.push(("h_gap".into(), gap));
    let mut failed_unknown = prefix(2);
    failed_unknown.push((99_999_998, vec![9], false, 3));
    cases.push(("h_failed_unknown".into(), failed_unknown));

    for (schema, rows) in &cases {
        history(&pool, schema, rows).await;
    }
    exec(&pool, "CREATE SCHEMA h_no_table").await;

    let mut names: Vec<String> = cases.iter().map(|(s, _)| s.clone()).collect();
    names.push("h_no_table".into());
    names.push("h_missing".into());
    let selection = Selection {
        shared: false,
        tenants: true,
        tenant_names: names.clone(),
        exclude: Vec::new(),
    };
    let engine = Engine::new(
        settings(&pool, shared.path(), &tenant),
        &selection,
        std::sync::Arc::new(NoEvents),
    )
    .unwrap();
    let report = engine.status(&selection).await.unwrap();
    assert_eq!(report.tenants.len(), names.len());

    for got in &report.tenants {
        let expected = match got.schema.as_str() {
            "h_missing" => SchemaStatus::missing("h_missing", &set),
            "h_no_table" => Checker::new(&set).finish("h_no_table"),
            s => from_rows(&pool, &set, s).await,
        };
        assert_eq!(got, &expected, "{}", got.schema);
    }
    let state = |s: &str| report.tenants.iter().find(|t| t.schema == s).unwrap().state;
    assert_eq!(state("h_prefix_00"), SchemaState::Behind);
    assert_eq!(state(&format!("h_prefix_{n:02}")), SchemaState::UpToDate);
    assert_eq!(state("h_failed"), SchemaState::Failed);
    assert_eq!(state("h_reverting"), SchemaState::Failed);
    assert_eq!(state("h_checksum"), SchemaState::ChecksumMismatch);
    assert_eq!(state("h_empty_checksum"), SchemaState::ChecksumMismatch);
    assert_eq!(state("h_unknown"), SchemaState::UnknownVersion);
    assert_eq!(state("h_gap"), SchemaState::Behind);
    assert_eq!(state("h_failed_unknown"), SchemaState::Failed);
    assert_eq!(state("h_no_table"), SchemaState::Behind);
    assert_eq!(state("h_missing"), SchemaState::Missing);
}
