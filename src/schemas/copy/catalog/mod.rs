//! Reads everything a schema holds from the catalogs, as plain data.
//!
//! Every query runs on the connection that exported the copy's snapshot,
//! with `search_path` set to the source schema alone. PostgreSQL's deparsing
//! functions (`pg_get_indexdef`, `pg_get_constraintdef`, `pg_get_expr`,
//! `pg_get_viewdef`, `pg_get_triggerdef`, `format_type`, `regclass` output)
//! qualify a name only when it is not visible on the search path, so objects
//! of the source schema come out unqualified and objects of every other
//! schema (the shared one, `pg_catalog` aside) come out qualified. Run with
//! the search path set to the target, the same text names the target's
//! objects and keeps references into other schemas as they are: that is the
//! whole name remapping, done by PostgreSQL's own deparser.

mod queries;

use std::collections::HashMap;

use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};

/// One privilege of one grantee, from `aclexplode`.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    /// The grantee, quoted, or `PUBLIC`.
    pub grantee: String,
    /// `SELECT`, `INSERT`, `USAGE`, `EXECUTE`...
    pub privilege: String,
    /// Granted `WITH GRANT OPTION`.
    pub grantable: bool,
}

/// A table, partitioned table, view, materialized view, sequence or
/// composite type's relation.
#[derive(Debug, Clone)]
pub(crate) struct Relation {
    pub oid: i64,
    pub name: String,
    /// `r`, `p`, `v`, `m`, `S`, `f` or `c`.
    pub kind: char,
    /// `u` for unlogged.
    pub persistence: char,
    pub is_partition: bool,
    pub row_security: bool,
    pub force_row_security: bool,
    pub options: Vec<String>,
    pub owner: String,
    pub has_acl: bool,
    pub comment: Option<String>,
    /// `FOR VALUES ...` or `DEFAULT`, for partitions.
    pub bound: Option<String>,
    /// `RANGE (k)`..., for partitioned tables.
    pub partkey: Option<String>,
    /// Parents (partition parent, or `INHERITS` parents in order).
    pub parents: Vec<i64>,
    /// `d`, `n`, `f` or `i`.
    pub replident: char,
    pub est_rows: i64,
    pub bytes: i64,
    pub populated: bool,
    pub viewdef: Option<String>,
    pub extension_member: bool,
}

/// One column of a relation (or attribute of a composite type).
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub rel: i64,
    pub num: i32,
    pub name: String,
    pub type_sql: String,
    pub not_null: bool,
    /// `a` always, `d` by default, or none.
    pub identity: Option<char>,
    /// `s` stored (or `v` virtual on newer servers), or none.
    pub generated: Option<char>,
    pub default: Option<String>,
    pub collation: Option<String>,
    pub is_local: bool,
    pub storage: Option<char>,
    pub statistics: Option<i32>,
    pub compression: Option<char>,
    pub options: Vec<String>,
    pub comment: Option<String>,
    /// The column's type (or its element type) is defined in the schema
    /// itself, so rows move between the two schemas' types through text.
    pub local_type: bool,
}

/// A sequence's parameters and the column that owns it.
#[derive(Debug, Clone)]
pub(crate) struct Sequence {
    pub oid: i64,
    pub type_sql: String,
    pub start: i64,
    pub increment: i64,
    pub max: i64,
    pub min: i64,
    pub cache: i64,
    pub cycle: bool,
    /// (table, column number) of `OWNED BY` or of the identity column.
    pub owned_by: Option<(i64, i32)>,
    /// True for an identity column's sequence.
    pub identity: bool,
}

/// A type defined in the schema: enum, domain, composite or range.
#[derive(Debug, Clone)]
pub(crate) struct TypeDef {
    pub oid: i64,
    pub name: String,
    /// `e`, `d`, `c`, `r` or `b`.
    pub kind: char,
    pub relid: i64,
    pub owner: String,
    pub has_acl: bool,
    pub comment: Option<String>,
    pub base_type: Option<String>,
    pub not_null: bool,
    pub default: Option<String>,
    pub collation: Option<String>,
    pub labels: Vec<String>,
    pub range_subtype: Option<String>,
    pub multirange_name: Option<String>,
    pub extension_member: bool,
}

/// A function, procedure or aggregate.
#[derive(Debug, Clone)]
pub(crate) struct Function {
    pub oid: i64,
    pub name: String,
    /// `f`, `p`, `a` or `w`.
    pub kind: char,
    /// `schema.name` exactly as `pg_get_functiondef` prints it.
    pub head: String,
    pub def: Option<String>,
    pub identity_args: String,
    pub owner: String,
    pub has_acl: bool,
    pub comment: Option<String>,
    pub body: String,
    pub extension_member: bool,
}

impl Function {
    /// Copied: not an aggregate (no definition) nor an extension's.
    pub fn copied(&self) -> bool {
        !self.extension_member && self.def.is_some()
    }

    /// `FUNCTION` or `PROCEDURE`, as `COMMENT ON`, `GRANT` and `ALTER` name it.
    pub fn sql_kind(&self) -> &'static str {
        if self.kind == 'p' {
            "PROCEDURE"
        } else {
            "FUNCTION"
        }
    }

    /// `name(argument types)`, unqualified.
    pub fn signature(&self) -> String {
        format!(
            "{}({})",
            crate::ident::quote_ident(&self.name),
            self.identity_args
        )
    }
}

/// A table or domain constraint.
#[derive(Debug, Clone)]
pub(crate) struct Constraint {
    pub name: String,
    /// `p`, `u`, `x`, `f`, `c`, `t` (or `n` on newer servers).
    pub kind: char,
    pub rel: i64,
    pub type_oid: i64,
    pub def: String,
    pub validated: bool,
    pub is_local: bool,
    pub parent: i64,
    pub comment: Option<String>,
}

/// An index (plain, partitioned, or backing a constraint).
#[derive(Debug, Clone)]
pub(crate) struct Index {
    pub oid: i64,
    pub name: String,
    pub rel: i64,
    /// `i` or `I` (partitioned).
    pub kind: char,
    pub def: String,
    pub parent: Option<i64>,
    /// The constraint it backs, if any.
    pub constraint: Option<String>,
    pub clustered: bool,
    pub replident: bool,
    pub valid: bool,
    pub comment: Option<String>,
    pub table_bytes: i64,
}

/// A user trigger.
#[derive(Debug, Clone)]
pub(crate) struct Trigger {
    pub name: String,
    pub rel: i64,
    pub def: String,
    pub enabled: char,
    pub comment: Option<String>,
}

/// A rewrite rule other than a view's own.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub name: String,
    pub rel: i64,
    pub def: String,
    pub enabled: char,
    pub comment: Option<String>,
}

/// A row-level security policy.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub name: String,
    pub rel: i64,
    pub cmd: char,
    pub permissive: bool,
    pub roles: Vec<String>,
    pub using: Option<String>,
    pub check: Option<String>,
    pub comment: Option<String>,
}

/// An extended statistics object.
#[derive(Debug, Clone)]
pub(crate) struct Statistics {
    pub name: String,
    pub head: String,
    pub def: String,
    pub owner: String,
    pub comment: Option<String>,
}

/// One `ALTER DEFAULT PRIVILEGES ... IN SCHEMA` entry.
#[derive(Debug, Clone)]
pub(crate) struct DefaultAcl {
    pub role: String,
    /// `r` tables, `S` sequences, `f` functions, `T` types.
    pub objtype: char,
    pub grant: Grant,
}

/// Which grants: (object kind, oid, column number or 0).
pub(crate) type GrantKey = (char, i64, i32);

/// Everything read from the source schema.
#[derive(Debug, Default)]
pub(crate) struct SchemaDef {
    pub owner: String,
    pub comment: Option<String>,
    pub has_acl: bool,
    pub relations: Vec<Relation>,
    pub columns: Vec<Column>,
    pub sequences: Vec<Sequence>,
    /// Current value and `is_called` per sequence.
    pub sequence_values: HashMap<i64, (i64, bool)>,
    pub types: Vec<TypeDef>,
    pub functions: Vec<Function>,
    pub constraints: Vec<Constraint>,
    pub indexes: Vec<Index>,
    pub triggers: Vec<Trigger>,
    pub rules: Vec<Rule>,
    pub policies: Vec<Policy>,
    pub statistics: Vec<Statistics>,
    pub default_acls: Vec<DefaultAcl>,
    /// Grants per (object kind, oid, column number).
    pub grants: HashMap<GrantKey, Vec<Grant>>,
    /// (dependent, referenced) pairs among the schema's objects.
    pub deps: Vec<(i64, i64)>,
    /// Objects that exist but are not copied, described for a warning.
    pub unsupported: Vec<String>,
    /// Extensions installed in the schema.
    pub extensions: Vec<String>,
    /// The role running the copy.
    pub current_user: String,
    /// `server_version_num`.
    pub server_version: i32,
}

fn ch(r: &PgRow, i: usize) -> Result<char, sqlx::Error> {
    let s: String = r.try_get(i)?;
    Ok(s.chars().next().unwrap_or(' '))
}

fn opt_ch(r: &PgRow, i: usize) -> Result<Option<char>, sqlx::Error> {
    let s: Option<String> = r.try_get(i)?;
    Ok(s.and_then(|s| s.chars().next()))
}

// language=SQL
const GRANTEE: &str =
    "CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END";

// language=SQL
const EXT_MEMBER: &str = "EXISTS (SELECT 1 FROM pg_catalog.pg_depend e \
     WHERE e.classid = '{catalog}'::regclass AND e.objid = {oid} AND e.deptype = 'e')";

fn ext_member(catalog: &str, oid: &str) -> String {
    EXT_MEMBER
        .replace("{catalog}", catalog)
        .replace("{oid}", oid)
}

/// Reads the schema whose oid is `nsp`. The caller has set `search_path`
/// to that schema alone.
pub(crate) async fn read(conn: &mut PgConnection, nsp: i64) -> Result<SchemaDef, sqlx::Error> {
    let mut d = SchemaDef::default();
    queries::schema(conn, nsp, &mut d).await?;
    queries::relations(conn, nsp, &mut d).await?;
    queries::columns(conn, nsp, &mut d).await?;
    queries::sequences(conn, nsp, &mut d).await?;
    queries::sequence_values(conn, nsp, &mut d).await?;
    queries::types(conn, nsp, &mut d).await?;
    queries::functions(conn, nsp, &mut d).await?;
    queries::constraints(conn, nsp, &mut d).await?;
    queries::indexes(conn, nsp, &mut d).await?;
    queries::triggers(conn, nsp, &mut d).await?;
    queries::rules(conn, nsp, &mut d).await?;
    queries::policies(conn, nsp, &mut d).await?;
    queries::statistics(conn, nsp, &mut d).await?;
    queries::default_acls(conn, nsp, &mut d).await?;
    queries::grants(conn, nsp, &mut d).await?;
    queries::deps(conn, nsp, &mut d).await?;
    queries::unsupported(conn, nsp, &mut d).await?;
    queries::extensions(conn, nsp, &mut d).await?;
    Ok(d)
}
