//! Tests of the pure helpers: `mentions`, `remap_search_path`, `split_large`.

use super::*;

#[test]
fn mentions_finds_the_schema_as_a_word_only() {
    assert!(mentions("select * from t_01.docs", "t_01"));
    assert!(mentions("SELECT * FROM T_01.docs", "t_01"));
    assert!(!mentions("select * from t_012.docs", "t_01"));
    assert!(!mentions("select * from xt_01", "t_01"));
    assert!(mentions("'\"My Tenant\".x'", "My Tenant"));
    assert!(!mentions("my tenant", "My Tenant"));
}

#[test]
fn search_path_lines_are_remapped_and_nothing_else() {
    let def = "CREATE FUNCTION f()\n SET search_path TO 't1', 'public'\nAS $$select 't1'$$";
    let out = remap_search_path(def, "t1", "t2");
    assert!(out.contains("SET search_path TO 't2', 'public'"));
    assert!(out.contains("select 't1'"));
}

#[test]
fn large_tables_are_split_into_block_ranges() {
    let t = |name: &str, bytes: i64| DataTask {
        table: name.into(),
        columns: "a".into(),
        select: "a".into(),
        overriding: false,
        bytes,
        est_rows: 100,
        blocks: None,
    };
    let out = split_large(vec![t("big", 400 << 20), t("small", 1 << 20)], 2, 8192);
    let big: Vec<_> = out.iter().filter(|t| t.table == "big").collect();
    assert!(big.len() >= 2);
    assert_eq!(
        big.iter().filter(|t| t.blocks.unwrap().1.is_none()).count(),
        1
    );
    assert_eq!(
        big.iter().find(|t| t.blocks.unwrap().0 == 0).map(|_| 1),
        Some(1)
    );
}
