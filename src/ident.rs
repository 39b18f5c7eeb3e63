//! Schema names: validation and quoting; string literals: quoting.
//!
//! Every identifier that reaches SQL goes through [`quote_ident`], and every
//! name that comes from outside (configuration, command line, tenant query)
//! goes through [`validate_schema_name`] first. Every string literal
//! tenantmig writes into SQL text goes through [`quote_literal`].

use std::fmt;

/// The longest identifier PostgreSQL keeps (NAMEDATALEN - 1 bytes).
pub const MAX_IDENT_BYTES: usize = 63;

/// A name that was refused as a schema name, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("invalid schema name {name:?}: {reason}")]
pub struct InvalidName {
    /// The name as given.
    pub name: String,
    /// Why it was refused, and what is allowed.
    pub reason: String,
}

const ALLOWED: &str =
    "schema names may contain letters, digits, '_', '$', '-' and inner spaces, at most 63 bytes";

/// Checks that `name` is usable as a schema name.
///
/// Allowed: letters (any case, any script), digits, `_`, `$`, `-` and spaces
/// inside the name, 1 to 63 bytes, not starting with `pg_` (reserved by
/// PostgreSQL). Quotes, semicolons, backslashes and control characters are
/// refused outright: such a name is far more likely an injection attempt or
/// a bug in a tenant query than a real tenant.
pub fn validate_schema_name(name: &str) -> Result<(), InvalidName> {
    let fail = |reason: String| {
        Err(InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return fail(format!("it is empty; {ALLOWED}"));
    }
    if name.len() > MAX_IDENT_BYTES {
        return fail(format!("it is {} bytes long; {ALLOWED}", name.len()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '$' | '-' | ' ')))
    {
        return fail(format!("it contains {c:?}; {ALLOWED}"));
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return fail(format!("it starts or ends with a space; {ALLOWED}"));
    }
    if name.to_ascii_lowercase().starts_with("pg_") {
        return fail("names starting with 'pg_' are reserved for PostgreSQL's own schemas".into());
    }
    Ok(())
}

/// Quotes an identifier for SQL: wraps it in double quotes and doubles any
/// double quote inside, so the text can never end the identifier early.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Quotes a string literal for SQL so that it means the same text whatever
/// the session's `standard_conforming_strings`: single quotes are doubled,
/// and a text with a backslash is written as an escape string (`E'...'`)
/// with each backslash doubled, as PostgreSQL's own `quote_literal` does.
///
/// A plain `'...'` literal with a backslash changes meaning when
/// `standard_conforming_strings` is off (the backslash escapes what follows,
/// so `'a\'` even swallows its closing quote); an escape string reads the
/// same either way, so what tenantmig renders does not depend on the
/// setting. Definitions the server renders (`pg_get_constraintdef` and the
/// like, replayed by a copy) do follow it, which is why every session
/// tenantmig opens also sets `standard_conforming_strings = on` (see
/// `db::connect`).
pub fn quote_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 3);
    if text.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for c in text.chars() {
        if c == '\'' || c == '\\' {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// `"schema"."table"`, both parts quoted.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

/// A validated schema name, displayed as is and quoted with [`Quoted`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SchemaName(String);

impl SchemaName {
    /// Validates and wraps a name.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidName> {
        let name = name.into();
        validate_schema_name(&name)?;
        Ok(SchemaName(name))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name quoted for SQL.
    pub fn quoted(&self) -> String {
        quote_ident(&self.0)
    }
}

impl fmt::Display for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_double_quotes_and_escape_backslashes_in_an_escape_string() {
        assert_eq!(quote_literal("plain"), "'plain'");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"C:\dir\'x'"), r"E'C:\\dir\\''x'''");
        assert_eq!(quote_literal(r"ends with \"), r"E'ends with \\'");
        assert_eq!(quote_literal(""), "''");
    }

    #[test]
    fn ordinary_tenant_names_are_accepted() {
        for n in [
            "public",
            "tenant_acme",
            "t_0001",
            "Tenant A",
            "acme-corp",
            "société",
            "x$1",
        ] {
            assert!(validate_schema_name(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn injection_attempts_are_rejected() {
        let err = validate_schema_name("x\"; drop schema public cascade; --").unwrap_err();
        assert!(err.reason.contains("'\"'"), "{err}");
        for n in [
            "a;b", "a'b", "a\\b", "a\nb", "", " a", "a ", "pg_temp", "PG_x",
        ] {
            assert!(validate_schema_name(n).is_err(), "{n:?}");
        }
        assert!(validate_schema_name(&"a".repeat(64)).is_err());
        assert!(validate_schema_name(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn quoting_doubles_inner_quotes() {
        assert_eq!(quote_ident("a"), "\"a\"");
        assert_eq!(quote_ident("Tenant A"), "\"Tenant A\"");
        assert_eq!(quote_ident("x\"y"), "\"x\"\"y\"");
        assert_eq!(
            qualified("s", "_sqlx_migrations"),
            "\"s\".\"_sqlx_migrations\""
        );
    }
}
