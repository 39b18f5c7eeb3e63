//! The history table is sqlx's: a schema migrated by sqlx's own `Migrator`
//! reads as up to date in tenantmig, and a schema migrated by tenantmig is
//! one sqlx's `Migrator` finds nothing to do in (it checks every checksum).

mod common;

use std::sync::Arc;

use common::*;
use sqlx::migrate::{Migrate, Migrator};
use sqlx::postgres::PgConnection;
use sqlx::{Connection, PgPool};
use tenantmig::{Engine, NoEvents, SchemaState, Selection};

async fn connect_in(pool: &PgPool, schema: &str) -> PgConnection {
    let opts = pool
        .connect_options()
        .as_ref()
        .clone()
        .options([("search_path", schema)]);
    PgConnection::connect_with(&opts).await.expect("connect")
}

#[sqlx::test(migrations = false)]
async fn sqlx_and_tenantmig_agree_on_every_schema(pool: PgPool) {
    let tenant_dir = repo_dir("tenant");
    let shared = folder(&[]);
    let s = settings(&pool, shared.path(), &tenant_dir);

    // sqlx migrates one schema.
    exec(&pool, "CREATE SCHEMA by_sqlx").await;
    let migrator = Migrator::new(tenant_dir.as_path())
        .await
        .expect("sqlx reads the folder");
    let mut conn = connect_in(&pool, "by_sqlx").await;
    migrator.run(&mut conn).await.expect("sqlx migrates");

    // tenantmig migrates another.
    let names = vec!["by_tenantmig".to_string()];
    let (report, _) = migrate(
        &s,
        Selection {
            shared: false,
            ..select(&names)
        },
    )
    .await;
    assert!(report.is_success(), "{:?}", report.tenants);

    // tenantmig sees both as up to date.
    let both = vec!["by_sqlx".to_string(), "by_tenantmig".to_string()];
    let sel = Selection {
        shared: false,
        ..select(&both)
    };
    let engine = Engine::new(s.clone(), &sel, Arc::new(NoEvents)).unwrap();
    let st = engine.status(&sel).await.unwrap();
    for t in &st.tenants {
        assert_eq!(t.state, SchemaState::UpToDate, "{t:?}");
        assert_eq!(t.applied_version, Some(9));
    }

    // sqlx finds nothing to do in the tenantmig schema, and the same checksums.
    let mut conn = connect_in(&pool, "by_tenantmig").await;
    let before = history(&pool, "by_tenantmig").await;
    migrator
        .run(&mut conn)
        .await
        .expect("sqlx accepts tenantmig's history");
    assert_eq!(history(&pool, "by_tenantmig").await, before);
    let applied = conn
        .list_applied_migrations("_sqlx_migrations")
        .await
        .unwrap();
    assert_eq!(
        applied.len(),
        migrator
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .count()
    );
    for a in applied {
        let local = migrator
            .iter()
            .find(|m| m.version == a.version && m.migration_type.is_up_migration())
            .unwrap();
        assert_eq!(
            a.checksum.as_ref(),
            local.checksum.as_ref(),
            "version {}",
            a.version
        );
    }
    // The history rows carry the same descriptions sqlx writes.
    let d: Vec<String> = sqlx::query_scalar(
        "SELECT a.description FROM by_sqlx._sqlx_migrations a JOIN by_tenantmig._sqlx_migrations b USING (version, description, checksum, success)",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(d.len(), 9);
}
