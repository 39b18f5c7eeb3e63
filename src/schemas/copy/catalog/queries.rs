//! One query per kind of object, each filling its part of a
//! [`SchemaDef`].

use std::collections::HashMap;

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Row};

use super::{
    Column, Constraint, DefaultAcl, Function, GRANTEE, Grant, Index, Policy, Relation, Rule,
    SchemaDef, Sequence, Statistics, Trigger, TypeDef, ch, ext_member, opt_ch,
};
use crate::ident::quote_ident;

/// The schema's owner, comment and privileges, the current user and the
/// server version.
pub(super) async fn schema(
    conn: &mut PgConnection,
    nsp: i64,
    d: &mut SchemaDef,
) -> Result<(), sqlx::Error> {
    // language=SQL
    let row = sqlx::query(
        "SELECT pg_get_userbyid(n.nspowner)::text, obj_description(n.oid, 'pg_namespace'), \
                n.nspacl IS NOT NULL, current_user::text, current_setting('server_version_num')::int4 \
         FROM pg_catalog.pg_namespace n WHERE n.oid = $1::int8::oid",
    )
    .bind(nsp)
    .fetch_one(&mut *conn)
    .await?;
    d.owner = row.try_get(0)?;
    d.comment = row.try_get(1)?;
    d.has_acl = row.try_get(2)?;
    d.current_user = row.try_get(3)?;
    d.server_version = row.try_get(4)?;
    Ok(())
}

/// Tables, views, materialized views, sequences, foreign tables and
/// composite types (`pg_class`).
pub(super) async fn relations(
    conn: &mut PgConnection,
    nsp: i64,
    d: &mut SchemaDef,
) -> Result<(), sqlx::Error> {
    // language=SQL
    let sql = format!(
        "SELECT c.oid::int8, c.relname::text, c.relkind::text, c.relpersistence::text, \
                c.relispartition, c.relrowsecurity, c.relforcerowsecurity, \
                coalesce(c.reloptions, '{{}}')::text[], pg_get_userbyid(c.relowner)::text, \
                c.relacl IS NOT NULL, obj_description(c.oid, 'pg_class'), \
                CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid, true) END, \
                CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END, \
                ARRAY(SELECT i.inhparent::int8 FROM pg_catalog.pg_inherits i \
                      WHERE i.inhrelid = c.oid ORDER BY i.inhseqno), \
                c.relreplident::text, greatest(c.reltuples, 0)::int8, \
                CASE WHEN c.relkind IN ('r', 'm') THEN pg_relation_size(c.oid) ELSE 0 END::int8, \
                c.relispopulated, \
                CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid, true) END, \
                {} \
         FROM pg_catalog.pg_class c \
         WHERE c.relnamespace = $1::int8::oid AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c') \
         ORDER BY c.relname",
        ext_member("pg_class", "c.oid")
    );
    for r in sqlx::query(AssertSqlSafe(sql))
        .bind(nsp)
        .fetch_all(&mut *conn)
        .await?
    {
        d.relations.push(Relation {
            oid: r.try_get(0)?,
            name: r.try_get(1)?,
            kind: ch(&r, 2)?,
            persistence: ch(&r, 3)?,
            is_partition: r.try_get(4)?,
            row_security: r.try_get(5)?,
            force_row_security: r.try_get(6)?,
            options: r.try_get(7)?,
            owner: r.try_get(8)?,
            has_acl: r.try_get(9)?,
            comment: r.try_get(10)?,
            bound: r.try_get(11)?,
            partkey: r.try_get(12)?,
            parents: r.try_get(13)?,
            replident: ch(&r, 14)?,
            est_rows: r.try_get(15)?,
            bytes: r.try_get(16)?,
            populated: r.try_get(17)?,
            viewdef: r.try_get(18)?,
            extension_member: r.try_get(19)?,
        });
    }
    Ok(())
}

/// The columns of those relations.
pub(super) async fn columns(
    conn: &mut PgConnection,
    nsp: i64,
    d: &mut SchemaDef,
) -> Result<(), sqlx::Error> {
    // language=SQL
    let sql = "SELECT a.attrelid::int8, a.attnum::int4, a.attname::text, \
                format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                nullif(a.attidentity::text, ''), nullif(a.attgenerated::text, ''), \
                pg_get_expr(ad.adbin, ad.adrelid, true), \
                CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation THEN \
                  (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname) \
                   FROM pg_catalog.pg_collation co \
                   JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace \
                   WHERE co.oid = a.attcollation) END, \
                a.attislocal, \
                CASE WHEN a.attstorage <> t.typstorage THEN a.attstorage::text END, \
                nullif(coalesce(a.attstattarget::int4, -1), -1), \
                nullif(a.attcompression::text, ''), \
                coalesce(a.attoptions, '{}')::text[], \
                col_description(a.attrelid, a.attnum), \
                (SELECT et.typnamespace FROM pg_catalog.pg_type et \
                 WHERE et.oid = CASE WHEN t.typcategory = 'A' AND t.typelem <> 0 \
                                     THEN t.typelem ELSE t.oid END) = c.relnamespace \
         FROM pg_catalog.pg_attribute a \
         JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
         JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
         LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum \
         WHERE c.relnamespace = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped \
           AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c') \
         ORDER BY a.attrelid, a.attnum";
    for r in sqlx::query(sql).bind(nsp).fetch_all(&mut *conn).await? {
        d.columns.push(Column {
            rel: r.try_get(0)?,
            num: r.try_get(1)?,
            name: r.try_get(2)?,
            type_sql: r.try_get(3)?,
            not_null: r.try_get(4)?,
            identity: opt_ch(&r, 5)?,
            generated: opt_ch(&r, 6)?,
            default: r.try_get(7)?,
            collation: r.try_get(8)?,
            is_local: r.try_get(9)?,
            storage: opt_ch(&r, 10)?,
            statistics: r.try_get(11)?,
            compression: opt_ch(&r, 12)?,
            options: r.try_get(13)?,
            comment: r.try_get(14)?,
            local_type: r.try_get(15)?,
        });
    }
    Ok(())
}

/// Sequences, with the column that owns each.
pub(super) async fn sequences(
    conn: &mut PgConnection,
    nsp: i64,
    d: &mut SchemaDef,
) -> Result<(), sqlx::Error> {
    // language=SQL
    let sql = "SELECT s.seqrelid::int8, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, \
                s.seqmax, s.seqmin, s.seqcache, s.seqcycle, \
                dep.refobjid::int8, dep.refobjsubid::int4, dep.deptype::text \
         FROM pg_catalog.pg_sequence s \
         JOIN pg_catalog.pg_class c ON c.oid = s.seqrelid \
         LEFT JOIN pg_catalog.pg_depend dep ON dep.classid = 'pg_class'::regclass \
              AND dep.objid = s.seqrelid AND dep.refclassid = 'pg_class'::regclass \
              AND dep.deptype IN ('a', 'i') \
         WHERE c.relnamespace = $1::int8::oid";
    for r in sqlx::query(sql).bind(nsp).fetch_all(&mut *conn).await? {
        let owner: Option<i64> = r.try_get(8)?;
        let col: Option<i32> = r.try_get(9)?;
        let dtype: Option<String> = r.try_get(10)?;
        d.sequences.push(Sequence {
            oid: r.try_get(0)?,
            type_sql: r.try_get(1)?,
            start: r.try_get(2)?,
            increment: r.try_get(3)?,
            max: r.try_get(4)?,
            min: r.try_get(5)?,
            cache: r.try_get(6)?,
            cycle: r.try_get(7)?,
            owned_by: owner.zip(col),
            identity: dtype.as_deref() == Some("i"),
        });
    }
    Ok(())
}

/// The current value of each sequence.
pub(super) async fn sequence_values(
    conn: &mut PgConnection,
    nsp: i64,
    d: &mut SchemaDef,
) -> Result<(), sqlx::Error> {
    if d.sequences.is_empty() {
        return Ok(());
    }
    // Sequences are not transactional: this reads their current values,
    // which are at or past anything the snapshot's rows used.
    let names: HashMap<i64, &str> = d
        .relations
        .iter()
        .map(|r| (r.oid, r.name.as_str()))
        .collect();
    let nspname: String = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_catalog.pg_namespace WHERE oid = $1::int8::oid",
    )
    .bind(nsp)
    .fetch_one(&mut *conn)
    .await?;
    for chunk in d.sequences.chunks(200) {
        // language=SQL
        let sql = chunk
            .iter()
            .filter_map(|s| {
                names.get(&s.oid).map(|n| {
                    format!(
                        "SELECT {}::int8, last_value, is_called FROM {}.{}",
                        s.oid,
                        quote_ident(&nspname),
                        quote_ident(n)
                    )
                })
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        if sql.is_empty() {
            continue;
        }
        for r in sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&mut *conn)
            .await?
        {
            d.sequence_values
                .insert(r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?));
        }
    }
    Ok(())
}

/// Enum, domain, composite, range and base types.
pub(super) async fn types(
    conn: &mut PgConnection,
    nsp: i64,
    d: &mut SchemaDef,
) -> Result<(), sqlx::Error> {
    // language=SQL
    let sql = format!(
        "SELECT t.oid::int8, t.typname::text, t.typtype::text, t.typrelid::int8, \
                pg_get_userbyid(t.typowner)::text, t.typacl IS NOT NULL, \
                obj_description(t.oid, 'pg_type'), \
                CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END, \
                t.typnotnull, \
                CASE WHEN t.typdefaultbin IS NOT NULL THEN pg_get_expr(t.typdefaultbin, 0, true) END, \
                CASE WHEN t.typtype = 'd' AND t.typcollation <> 0 AND t.typcollation <> \
                          (SELECT b.typcollation FROM pg_catalog.pg_type b WHERE b.oid = t.typbasetype) THEN \
                  (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname) \
                   FROM pg_catalog.pg_collation co \
                   JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace \
                   WHERE co.oid = t.typcollation) END, \
                ARRAY(SELECT e.enumlabel::text FROM pg_catalog.pg_enum e \
                      WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder), \
                (SELECT format_type(r.rngsubtype, NULL) FROM pg_catalog.pg_range r WHERE r.rngtypid = t.oid), \
                (SELECT quote_ident(m.typname) FROM pg_catalog.pg_range r \
                 JOIN pg_catalog.pg_type m ON m.oid = r.rngmultitypid WHERE r.rngtypid = t.oid), \
                {} \
         FROM pg_catalog.pg_type t \
         WHERE t.typnamespace = $1::int8::oid AND t.typtype IN ('e', 'd', 'c', 'r', 'b') \
           AND (t.typtype <> 'c' OR (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c') \
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type el WHERE el.typarray = t.oid) \
         ORDER BY t.typname",
        ext_member("pg_type", "t.oid")
    );
    for r in sqlx::query(AssertSqlSafe(sql))
        .bind(nsp)
        .fetch_all(&mut *conn)
        .await?
    {
        d.types.push(TypeDef {
            oid: r.try_get(0)?,
            name: r.try_get(1)?,
            kind: ch(&r, 2)?,
            relid: r.try_get(3)?,
            owner: r.try_get(4)?,
            has_acl: r.try_get(5)?,
            comment: r.try_get(6)?,
            base_type: r.try_get(7)?,
            not_null: r.try_get(8)?,
            default: r.try_get(9)?,
            collation: r.try_get(10)?,
            labels: r.try_get(11)?,
            range_subtype: r.try_get(12)?,
            multirange_name: r.try_get(13)?,
            extension_member: r.try_get(14)?,
        });
    }
    Ok(())
}

/// Functions, procedures and aggregates.
pub(super) async fn functions(
    conn: &mut PgConnection,
    nsp: i64,
    d: &mut SchemaDef,
) -> Result<(), sqlx::Error> {
    // language=SQL
    let sql = format!(
        "SELECT p.oid::int8, p.proname::text, p.prokind::text, \
                quote_ident(n.nspname) || '.' || quote_ident(p.proname), \
                CASE WHEN p.prokind <> 'a' THEN pg_get_functiondef(p.oid) END, \
                pg_get_function_identity_arguments(p.oid), pg_get_userbyid(p.proowner)::text, \
                p.proacl IS NOT NULL, obj_description(p.oid, 'pg_proc'), coalesce(p.prosrc, ''), {} \
         FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
         WHERE p.pronamespace = $1::int8::oid ORDER BY p.proname, p.oid",
        ext_member("pg_proc", "p.oid")
    );
    for r in sqlx::query(AssertSqlSafe(sql))
        .bind(nsp)
        .fetch_all(&mut *conn)
        .await?
    {
        d.functions.push(Function {
            oid: r.try_get(0)?,
            name: r.try_get(1)?,
            kind: ch(&r, 2)?,
            head: r.try_get(3)?,
            def: r.try_get(4)?,
            identity_args: r.try_get(5)?,
            owner: r.try_get(6)?,
            has_acl: r.try_get(7)?,
            comment: r.try_get(8)?,
            body: r.try_get(9)?,
            extension_member: r.try_get(10)?,
        });
    }
    Ok(())
}

/// Constraints of tables and domains.
pub(super) async fn constraints(
    conn: &mut PgConnection,
    nsp: i64,
    d: &mut SchemaDef,
) -> Result<(), sqlx::Error> {
    // language=SQL
    let sql = "SELECT co.conname::text, co.contype::text, co.conrelid::int8, co.contypid::int8, \
                pg_get_constraintdef(co.oid, true), co.convalidated, \
                co.conislocal, co.conparentid::int8, obj_description(co.oid, 'pg_constraint') \
         FROM pg_catalog.pg_constraint co \
         WHERE co.connamespace = $1::int8::oid ORDER BY co.conname";
    for r in sqlx::query(sql).bind(nsp).fetch_all(&mut *conn).await? {
        d.constraints.push(Constraint {
            name: r.try_get(0)?,
            kind: ch(&r, 1)?,
            rel: r.try_get(2)?,
            type_oid: r.try_get(3)?,
            def: r.try_get(4)?,
            validated: r.try_get(5)?,
            is_local: r.try_get(6)?,
            parent: r.try_get(7)?,
            comment: r.try_get(8)?,
        });
    }
    Ok(())
}

/// Indexes, with the constraint each backs.
pub(super) async fn indexes(
    conn: &mut PgConnection,
    nsp: i64,
    d: &mut SchemaDef,
) -> Result<(), sqlx::Error> {
    // language=SQL
    let sql = "SELECT i.indexrelid::int8, ic.relname::text, i.indrelid::int8, ic.relkind::text, \
                pg_get_indexdef(i.indexrelid, 0, true), \
                (SELECT h.inhparent::int8 FROM pg_catalog.pg_inherits h WHERE h.inhrelid = i.indexrelid), \
                (SELECT co.conname::text FROM pg_catalog.pg_constraint co \
                 WHERE co.conindid = i.indexrelid AND co.conrelid = i.indrelid \
                   AND co.contype IN ('p', 'u', 'x')), \
                i.indisclustered, i.indisreplident, i.indisvalid, \
                obj_description(i.indexrelid, 'pg_class'), pg_relation_size(i.indrelid)::int8 \
         FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid \
         WHERE ic.relnamespace = $1::int8::oid ORDER BY ic.relname";
    for r in sqlx::query(sql).bind(nsp).fetch_all(&mut *conn).await? {
        d.indexes.push(Index {
            oid: r.try_get(0)?,
            name: r.try_get(1)?,
            rel: r.try_get(2)?,
            kind: ch(&r, 3)?,
            def: r.try_get(4)?,
            parent: r.try_get(5)?,
            constraint: r.try_get(6)?,
            clustered: r.try_get(7)?,
            replident: r.try_get(8)?,
            valid: r.try_get(9)?,
            comment: r.try_get(10)?,
            table_bytes: r.try_get(11)?,
        });
    }
    Ok(())
}

/// Triggers (those of partitions inherited from the parent left out).
pub(super) async fn triggers(
    conn: &mut PgConnection,
    nsp: i64,
    d: &mut SchemaDef,
) -> Result<(), sqlx::Error> {
    // language=SQL
    let sql = "SELECT tg.tgname::text, tg.tgrelid::int8, pg_get_triggerdef(tg.oid, true), \
                tg.tgenabled::text, obj_description(tg.oid, 'pg_trigger') \
         FROM pg_catalog.pg_trigger tg JOIN pg_catalog.pg_class c ON c.oid = tg.tgrelid \
         WHERE c.relnamespace = $1::int8::oid AND NOT tg.tgisinternal AND tg.tgparentid = 0 \
         ORDER BY c.relname, tg.tgname";
    for r in sqlx::query(sql).bind(nsp).fetch_all(&mut *conn).await? {
        d.triggers.push(Trigger {
            name: r.try_get(0)?,
            rel: r.try_get(1)?,
            def: r.try_get(2)?,
            enabled: ch(&r, 3)?,
            comment: r.try_get(4)?,
        });
    }
    Ok(())
}

/// Rules other than the views' `_RETURN`.
pub(super) async fn rules(
    conn: &mut PgConnection,
    nsp: i64,
    d: &mut SchemaDef,
) -> Result<(), sqlx::Error> {
    // language=SQL
    let sql = "SELECT rw.rulename::text, rw.ev_class::int8, pg_get_ruledef(rw.oid, true), \
                rw.ev_enabled::text, obj_description(rw.oid, 'pg_rewrite') \
         FROM pg_catalog.pg_rewrite rw JOIN pg_catalog.pg_class c ON c.oid = rw.ev_class \
         WHERE c.relnamespace = $1::int8::oid AND rw.rulename <> '_RETURN' \
         ORDER BY c.relname, rw.rulename";
    for r in sqlx::query(sql).bind(nsp).fetch_all(&mut *conn).await? {
        d.rules.push(Rule {
            name: r.try_get(0)?,
            rel: r.try_get(1)?,
            def: r.try_get(2)?,
            enabled: ch(&r, 3)?,
            comment: r.try_get(4)?,
        });
    }
    Ok(())
}

/// Row security policies.
pub(super) async fn policies(
    conn: &mut PgConnection,
    nsp: i64,
    d: &mut SchemaDef,
) -> Result<(), sqlx::Error> {
    // language=SQL
    let sql = "SELECT pol.polname::text, pol.polrelid::int8, pol.polcmd::text, pol.polpermissive, \
                ARRAY(SELECT CASE WHEN ro = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(ro)) END \
                      FROM unnest(pol.polroles) AS ro), \
                pg_get_expr(pol.polqual, pol.polrelid, true), \
                pg_get_expr(pol.polwithcheck, pol.polrelid, true), \
                obj_description(pol.oid, 'pg_policy') \
         FROM pg_catalog.pg_policy pol JOIN pg_catalog.pg_class c ON c.oid = pol.polrelid \
         WHERE c.relnamespace = $1::int8::oid ORDER BY c.relname, pol.polname";
    for r in sqlx::query(sql).bind(nsp).fetch_all(&mut *conn).await? {
        d.policies.push(Policy {
            name: r.try_get(0)?,
            rel: r.try_get(1)?,
            cmd: ch(&r, 2)?,
            permissive: r.try_get(3)?,
            roles: r.try_get(4)?,
            using: r.try_get(5)?,
            check: r.try_get(6)?,
            comment: r.try_get(7)?,
        });
    }
    Ok(())
}

/// Extended statistics.
pub(super) async fn statistics(
    conn: &mut PgConnection,
    nsp: i64,
    d: &mut SchemaDef,
) -> Result<(), sqlx::Error> {
    // language=SQL
    let sql = "SELECT s.stxname::text, quote_ident(n.nspname) || '.' || quote_ident(s.stxname), \
                pg_get_statisticsobjdef(s.oid), pg_get_userbyid(s.stxowner)::text, \
                obj_description(s.oid, 'pg_statistic_ext') \
         FROM pg_catalog.pg_statistic_ext s JOIN pg_catalog.pg_namespace n ON n.oid = s.stxnamespace \
         WHERE s.stxnamespace = $1::int8::oid ORDER BY s.stxname";
    for r in sqlx::query(sql).bind(nsp).fetch_all(&mut *conn).await? {
        d.statistics.push(Statistics {
            name: r.try_get(0)?,
            head: r.try_get(1)?,
            def: r.try_get(2)?,
            owner: r.try_get(3)?,
            comment: r.try_get(4)?,
        });
    }
    Ok(())
}

/// Default privileges granted in the schema.
pub(super) async fn default_acls(
    conn: &mut PgConnection,
    nsp: i64,
    d: &mut SchemaDef,
) -> Result<(), sqlx::Error> {
    // language=SQL
    let sql = format!(
        "SELECT quote_ident(pg_get_userbyid(da.defaclrole)), da.defaclobjtype::text, {GRANTEE}, \
                a.privilege_type, a.is_grantable \
         FROM pg_catalog.pg_default_acl da, aclexplode(da.defaclacl) a \
         WHERE da.defaclnamespace = $1::int8::oid"
    );
    for r in sqlx::query(AssertSqlSafe(sql))
        .bind(nsp)
        .fetch_all(&mut *conn)
        .await?
    {
        d.default_acls.push(DefaultAcl {
            role: r.try_get(0)?,
            objtype: ch(&r, 1)?,
            grant: Grant {
                grantee: r.try_get(2)?,
                privilege: r.try_get(3)?,
                grantable: r.try_get(4)?,
            },
        });
    }
    Ok(())
}

/// Privileges on relations, columns, functions, types and the schema.
pub(super) async fn grants(
    conn: &mut PgConnection,
    nsp: i64,
    d: &mut SchemaDef,
) -> Result<(), sqlx::Error> {
    // language=SQL
    let sql = format!(
        "SELECT 'r', c.oid::int8, 0, {GRANTEE}, a.privilege_type, a.is_grantable \
           FROM pg_catalog.pg_class c, aclexplode(c.relacl) a WHERE c.relnamespace = $1::int8::oid \
         UNION ALL \
         SELECT 'a', c.oid::int8, at.attnum::int4, {GRANTEE}, a.privilege_type, a.is_grantable \
           FROM pg_catalog.pg_attribute at JOIN pg_catalog.pg_class c ON c.oid = at.attrelid, \
                aclexplode(at.attacl) a \
          WHERE c.relnamespace = $1::int8::oid AND at.attacl IS NOT NULL AND NOT at.attisdropped \
         UNION ALL \
         SELECT 'p', p.oid::int8, 0, {GRANTEE}, a.privilege_type, a.is_grantable \
           FROM pg_catalog.pg_proc p, aclexplode(p.proacl) a WHERE p.pronamespace = $1::int8::oid \
         UNION ALL \
         SELECT 't', t.oid::int8, 0, {GRANTEE}, a.privilege_type, a.is_grantable \
           FROM pg_catalog.pg_type t, aclexplode(t.typacl) a WHERE t.typnamespace = $1::int8::oid \
         UNION ALL \
         SELECT 'n', n.oid::int8, 0, {GRANTEE}, a.privilege_type, a.is_grantable \
           FROM pg_catalog.pg_namespace n, aclexplode(n.nspacl) a WHERE n.oid = $1::int8::oid"
    );
    for r in sqlx::query(AssertSqlSafe(sql))
        .bind(nsp)
        .fetch_all(&mut *conn)
        .await?
    {
        let key = (ch(&r, 0)?, r.try_get(1)?, r.try_get(2)?);
        d.grants.entry(key).or_default().push(Grant {
            grantee: r.try_get(3)?,
            privilege: r.try_get(4)?,
            grantable: r.try_get(5)?,
        });
    }
    Ok(())
}

/// Dependencies between the schema's own objects.
pub(super) async fn deps(
    conn: &mut PgConnection,
    nsp: i64,
    d: &mut SchemaDef,
) -> Result<(), sqlx::Error> {
    // Dependencies between the schema's own objects, mapped to the object
    // that is created: a view's rule to the view, a default or constraint
    // to its table or domain, a row type or array type to its relation or
    // element type.
    // language=SQL
    let sql = "WITH objs AS ( \
             SELECT oid FROM pg_catalog.pg_class WHERE relnamespace = $1::int8::oid \
             UNION ALL SELECT oid FROM pg_catalog.pg_type WHERE typnamespace = $1::int8::oid \
             UNION ALL SELECT oid FROM pg_catalog.pg_proc WHERE pronamespace = $1::int8::oid), \
         raw AS ( \
             SELECT d.classid, d.objid, d.refclassid, d.refobjid FROM pg_catalog.pg_depend d \
             WHERE d.deptype = 'n' AND d.refobjid IN (SELECT oid FROM objs) \
               AND d.refclassid IN ('pg_class'::regclass, 'pg_type'::regclass, 'pg_proc'::regclass)) \
         SELECT DISTINCT \
           (CASE r.classid \
              WHEN 'pg_rewrite'::regclass THEN (SELECT ev_class FROM pg_catalog.pg_rewrite WHERE oid = r.objid) \
              WHEN 'pg_attrdef'::regclass THEN (SELECT adrelid FROM pg_catalog.pg_attrdef WHERE oid = r.objid) \
              WHEN 'pg_constraint'::regclass THEN (SELECT CASE WHEN conrelid <> 0 THEN conrelid ELSE contypid END \
                                                  FROM pg_catalog.pg_constraint WHERE oid = r.objid) \
              WHEN 'pg_type'::regclass THEN (SELECT CASE WHEN typrelid <> 0 THEN typrelid \
                                                         WHEN typcategory = 'A' THEN typelem ELSE oid END \
                                             FROM pg_catalog.pg_type WHERE oid = r.objid) \
              ELSE r.objid END)::int8, \
           (CASE r.refclassid \
              WHEN 'pg_type'::regclass THEN (SELECT CASE WHEN typrelid <> 0 THEN typrelid \
                                                         WHEN typcategory = 'A' THEN typelem ELSE oid END \
                                             FROM pg_catalog.pg_type WHERE oid = r.refobjid) \
              ELSE r.refobjid END)::int8 \
         FROM raw r \
         WHERE r.classid IN ('pg_class'::regclass, 'pg_type'::regclass, 'pg_proc'::regclass, \
                             'pg_rewrite'::regclass, 'pg_attrdef'::regclass, 'pg_constraint'::regclass)";
    for r in sqlx::query(sql).bind(nsp).fetch_all(&mut *conn).await? {
        let a: Option<i64> = r.try_get(0)?;
        let b: Option<i64> = r.try_get(1)?;
        if let (Some(a), Some(b)) = (a, b)
            && a != b
        {
            d.deps.push((a, b));
        }
    }
    Ok(())
}

/// Objects of kinds that are not copied, described for a warning.
pub(super) async fn unsupported(
    conn: &mut PgConnection,
    nsp: i64,
    d: &mut SchemaDef,
) -> Result<(), sqlx::Error> {
    // language=SQL
    let sql = "SELECT 'operator ' || o.oid::regoperator::text FROM pg_catalog.pg_operator o WHERE o.oprnamespace = $1::int8::oid \
         UNION ALL SELECT 'collation ' || quote_ident(collname) FROM pg_catalog.pg_collation WHERE collnamespace = $1::int8::oid \
         UNION ALL SELECT 'operator class ' || quote_ident(opcname) FROM pg_catalog.pg_opclass WHERE opcnamespace = $1::int8::oid \
         UNION ALL SELECT 'operator family ' || quote_ident(opfname) FROM pg_catalog.pg_opfamily WHERE opfnamespace = $1::int8::oid \
         UNION ALL SELECT 'conversion ' || quote_ident(conname) FROM pg_catalog.pg_conversion WHERE connamespace = $1::int8::oid \
         UNION ALL SELECT 'text search configuration ' || quote_ident(cfgname) FROM pg_catalog.pg_ts_config WHERE cfgnamespace = $1::int8::oid \
         UNION ALL SELECT 'text search dictionary ' || quote_ident(dictname) FROM pg_catalog.pg_ts_dict WHERE dictnamespace = $1::int8::oid \
         UNION ALL SELECT 'text search parser ' || quote_ident(prsname) FROM pg_catalog.pg_ts_parser WHERE prsnamespace = $1::int8::oid \
         UNION ALL SELECT 'text search template ' || quote_ident(tmplname) FROM pg_catalog.pg_ts_template WHERE tmplnamespace = $1::int8::oid";
    d.unsupported = sqlx::query_scalar(sql)
        .bind(nsp)
        .fetch_all(&mut *conn)
        .await?;
    Ok(())
}

/// Extensions installed in the schema.
pub(super) async fn extensions(
    conn: &mut PgConnection,
    nsp: i64,
    d: &mut SchemaDef,
) -> Result<(), sqlx::Error> {
    d.extensions = sqlx::query_scalar(
        "SELECT extname::text FROM pg_catalog.pg_extension WHERE extnamespace = $1::int8::oid ORDER BY 1",
    )
    .bind(nsp)
    .fetch_all(&mut *conn)
    .await?;
    Ok(())
}
