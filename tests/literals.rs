//! String literals tenantmig writes into SQL (comments of copied objects,
//! `{tenant}` and `{tenant_id}` in data-move files, ledger rows) read the
//! same whatever `standard_conforming_strings` is.

mod common;

use common::*;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tenantmig::ident::quote_literal;

/// Texts that a naive `'...'` quoting gets wrong when backslashes escape.
const TEXTS: [&str; 6] = [
    r"C:\dir\file",
    r"ends with a backslash \",
    r"quote after backslash \' still text",
    "it's got 'quotes'",
    r"\\two\\",
    "plain",
];

#[sqlx::test(migrations = false)]
async fn a_quoted_literal_reads_back_as_its_text_with_standard_conforming_strings_off_or_on(
    pool: PgPool,
) {
    let mut conn = PgConnection::connect(&url_of(&pool)).await.unwrap();
    for setting in ["off", "on"] {
        conn.execute(sqlx::AssertSqlSafe(format!(
            "SET standard_conforming_strings = {setting}"
        )))
        .await
        .unwrap();
        for text in TEXTS {
            let sql = format!("SELECT {}::text", quote_literal(text));
            let got: Result<String, _> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                .fetch_one(&mut conn)
                .await;
            assert_eq!(
                got.as_deref().ok(),
                Some(text),
                "standard_conforming_strings = {setting}: {sql} gave {got:?}"
            );
        }
    }
}

#[sqlx::test(migrations = false)]
async fn a_comment_with_backslashes_and_quotes_is_copied_identically_when_the_database_defaults_to_non_standard_strings(
    pool: PgPool,
) {
    let url = url_of(&pool);
    let db = pool.connect_options().get_database().unwrap().to_string();
    let comment = r"path C:\tmp\x and 'quoted' \' text \";
    let column_comment = r"\n is not a newline here";
    exec(
        &pool,
        &format!(
            "CREATE SCHEMA t_src;
             CREATE TABLE t_src.docs (id int PRIMARY KEY, body text CHECK (body <> {}));
             COMMENT ON TABLE t_src.docs IS {};
             COMMENT ON COLUMN t_src.docs.body IS {};
             INSERT INTO t_src.docs VALUES (1, {});
             ALTER DATABASE \"{db}\" SET standard_conforming_strings = off",
            quote_literal(r"\"),
            quote_literal(comment),
            quote_literal(column_comment),
            quote_literal(comment),
        ),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    cli(&url, dir.path())
        .args(["copy-into-new-schema", "t_src", "t_dst"])
        .assert()
        .success();
    let got: (String, String, String) = sqlx::query_as(
        "SELECT obj_description('t_dst.docs'::regclass, 'pg_class'),
                col_description('t_dst.docs'::regclass, 2),
                (SELECT body FROM t_dst.docs WHERE id = 1)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        got,
        (
            comment.to_string(),
            column_comment.to_string(),
            comment.to_string()
        )
    );
    // The check constraint came along with its backslash.
    let refused = sqlx::query("INSERT INTO t_dst.docs VALUES (2, E'\\\\')")
        .execute(&pool)
        .await;
    assert!(
        refused.is_err(),
        "the CHECK (body <> '\\') was not copied as it was"
    );
}
