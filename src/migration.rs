//! Migration files: reading a folder into a [`MigrationSet`].
//!
//! File names follow sqlx: `<version>_<description>.sql`, or a reversible
//! pair `<version>_<description>.up.sql` / `.down.sql`. The checksum is the
//! SHA-384 of the (up) file's bytes, as sqlx computes it, so history rows
//! written by sqlx and by tenantmig agree.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha384};

use crate::error::{Error, Result};

/// The first-line marker of a file that must run outside a transaction.
pub const NO_TX_MARKER: &str = "-- no-transaction";

/// One migration: a version, its SQL and what is needed to record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The integer version from the file name (a sequence or a timestamp).
    pub version: i64,
    /// The description from the file name, underscores turned into spaces.
    pub description: String,
    /// The SQL that applies the migration.
    pub sql: String,
    /// The SQL that undoes it, for a reversible pair.
    pub down_sql: Option<String>,
    /// SHA-384 of `sql`, as recorded in the history table.
    pub checksum: Vec<u8>,
    /// True when the file starts with `-- no-transaction`.
    pub no_tx: bool,
    /// Where the (up) file was read from.
    pub path: PathBuf,
}

impl Migration {
    /// Builds a migration from its parts, computing the checksum.
    pub fn new(version: i64, description: impl Into<String>, sql: impl Into<String>) -> Self {
        let sql = sql.into();
        Migration {
            version,
            description: description.into(),
            checksum: checksum(&sql),
            no_tx: sql.starts_with(NO_TX_MARKER),
            sql,
            down_sql: None,
            path: PathBuf::new(),
        }
    }

    /// True when a `.down.sql` exists for this migration.
    pub fn is_reversible(&self) -> bool {
        self.down_sql.is_some()
    }

    /// True when the `.down.sql` starts with `-- no-transaction`.
    pub fn down_no_tx(&self) -> bool {
        self.down_sql
            .as_deref()
            .is_some_and(|d| d.starts_with(NO_TX_MARKER))
    }
}

/// SHA-384 of a migration's text, the checksum sqlx records.
pub fn checksum(sql: &str) -> Vec<u8> {
    Sha384::digest(sql.as_bytes()).to_vec()
}

/// A short hexadecimal form of a checksum, for messages.
pub fn short_checksum(sum: &[u8]) -> String {
    let h = hex::encode(sum);
    h.chars().take(16).collect()
}

/// Displays a version with the zero padding used by the set's file names.
#[derive(Debug, Clone, Copy)]
pub struct VersionFmt {
    /// The version.
    pub version: i64,
    /// Width to pad to (0 for none).
    pub width: usize,
}

impl fmt::Display for VersionFmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:0width$}", self.version, width = self.width)
    }
}

/// The migrations of one folder, sorted by version.
#[derive(Debug, Clone, Default)]
pub struct MigrationSet {
    /// The folder the set was read from (empty for embedded sets).
    pub dir: PathBuf,
    /// The migrations, in ascending version order.
    pub migrations: Vec<Migration>,
    /// Width of the zero-padded versions in file names (for display).
    pub version_width: usize,
}

impl MigrationSet {
    /// Builds a set from migrations already in memory (sorted here).
    pub fn from_migrations(mut migrations: Vec<Migration>) -> Self {
        migrations.sort_by_key(|m| m.version);
        MigrationSet {
            dir: PathBuf::new(),
            migrations,
            version_width: 0,
        }
    }

    /// Reads every `*.sql` file of `dir`. Other files are ignored; a `.sql`
    /// file whose name does not follow the convention is an error, as are two
    /// files with the same version and a `.down.sql` without its `.up.sql`.
    pub fn load(dir: &Path) -> Result<Self> {
        let entries = std::fs::read_dir(dir).map_err(|source| Error::MigrationDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut ups: BTreeMap<i64, Migration> = BTreeMap::new();
        let mut downs: BTreeMap<i64, (PathBuf, String)> = BTreeMap::new();
        let mut up_kind = std::collections::BTreeSet::new();
        let mut width = 0usize;
        for entry in entries {
            let entry = entry.map_err(|source| Error::MigrationDir {
                path: dir.to_path_buf(),
                source,
            })?;
            let path = entry.path();
            if !path.is_file() {
                continue;
            }
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            if !name.ends_with(".sql") {
                continue;
            }
            let parsed = parse_file_name(&name).map_err(|reason| Error::MigrationFile {
                path: path.clone(),
                reason,
            })?;
            width = width.max(parsed.version_text_len);
            let sql = std::fs::read_to_string(&path).map_err(|e| Error::MigrationFile {
                path: path.clone(),
                reason: format!("cannot read it as UTF-8 text: {e}"),
            })?;
            let dup = |other: &Path| Error::MigrationFile {
                path: path.clone(),
                reason: format!(
                    "version {} is also used by {}; give each migration its own version",
                    parsed.version,
                    other.display()
                ),
            };
            match parsed.kind {
                FileKind::Down => {
                    if let Some((other, _)) = downs.get(&parsed.version) {
                        return Err(dup(other));
                    }
                    downs.insert(parsed.version, (path.clone(), sql));
                }
                FileKind::Simple | FileKind::Up => {
                    if let Some(other) = ups.get(&parsed.version) {
                        return Err(dup(&other.path));
                    }
                    let mut m = Migration::new(parsed.version, parsed.description, sql);
                    m.path = path.clone();
                    if parsed.kind == FileKind::Up {
                        up_kind.insert(parsed.version);
                    }
                    ups.insert(parsed.version, m);
                }
            }
        }
        for (version, (path, sql)) in downs {
            match ups.get_mut(&version) {
                Some(m) if up_kind.contains(&version) => m.down_sql = Some(sql),
                Some(m) => {
                    return Err(Error::MigrationFile {
                        path,
                        reason: format!(
                            "{} is not an .up.sql file; rename it to <version>_<description>.up.sql to pair it with this .down.sql",
                            m.path.display()
                        ),
                    });
                }
                None => {
                    return Err(Error::MigrationFile {
                        path,
                        reason: "there is no matching .up.sql file with the same version".into(),
                    });
                }
            }
        }
        for m in ups.values() {
            if up_kind.contains(&m.version) && m.down_sql.is_none() {
                return Err(Error::MigrationFile {
                    path: m.path.clone(),
                    reason: "there is no matching .down.sql file; add one, or rename the file to <version>_<description>.sql".into(),
                });
            }
        }
        Ok(MigrationSet {
            dir: dir.to_path_buf(),
            migrations: ups.into_values().collect(),
            version_width: width,
        })
    }

    /// Reads several folders as one set (e.g. a version's migrations on top
    /// of the current ones); a version found in two folders is an error.
    pub fn load_all(dirs: &[PathBuf]) -> Result<Self> {
        let mut by_version: BTreeMap<i64, Migration> = BTreeMap::new();
        let mut width = 0;
        for dir in dirs {
            let set = Self::load(dir)?;
            width = width.max(set.version_width);
            for m in set.migrations {
                if let Some(other) = by_version.get(&m.version) {
                    return Err(Error::MigrationFile {
                        path: m.path.clone(),
                        reason: format!(
                            "version {} is also used by {}; versions must be unique across the folders of one set",
                            m.version,
                            other.path.display()
                        ),
                    });
                }
                by_version.insert(m.version, m);
            }
        }
        Ok(MigrationSet {
            dir: dirs.first().cloned().unwrap_or_default(),
            migrations: by_version.into_values().collect(),
            version_width: width,
        })
    }

    /// The highest version, if any.
    pub fn head(&self) -> Option<i64> {
        self.migrations.last().map(|m| m.version)
    }

    /// The index of a version in [`Self::migrations`].
    pub fn index_of(&self, version: i64) -> Option<usize> {
        self.migrations
            .binary_search_by_key(&version, |m| m.version)
            .ok()
    }

    /// A version formatted like the set's file names (e.g. `0007`).
    pub fn fmt_version(&self, version: i64) -> VersionFmt {
        VersionFmt {
            version,
            width: self.version_width,
        }
    }

    /// Number of migrations.
    pub fn len(&self) -> usize {
        self.migrations.len()
    }

    /// True when the set has no migration.
    pub fn is_empty(&self) -> bool {
        self.migrations.is_empty()
    }
}

#[derive(Debug, PartialEq, Eq)]
enum FileKind {
    Simple,
    Up,
    Down,
}

#[derive(Debug)]
struct ParsedName {
    version: i64,
    version_text_len: usize,
    description: String,
    kind: FileKind,
}

fn parse_file_name(name: &str) -> std::result::Result<ParsedName, String> {
    const EXPECTED: &str =
        "expected <version>_<description>.sql (or .up.sql/.down.sql), e.g. 0001_create_users.sql";
    let Some((version_text, rest)) = name.split_once('_') else {
        return Err(format!("the name has no '_' after the version; {EXPECTED}"));
    };
    if version_text.is_empty() || !version_text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "the version {version_text:?} is not an integer; {EXPECTED}"
        ));
    }
    let version: i64 = version_text
        .parse()
        .map_err(|_| format!("the version {version_text:?} does not fit in 64 bits; {EXPECTED}"))?;
    let (stem, kind) = if let Some(s) = rest.strip_suffix(".up.sql") {
        (s, FileKind::Up)
    } else if let Some(s) = rest.strip_suffix(".down.sql") {
        (s, FileKind::Down)
    } else {
        (rest.strip_suffix(".sql").unwrap_or(rest), FileKind::Simple)
    };
    if stem.is_empty() {
        return Err(format!("the description is empty; {EXPECTED}"));
    }
    Ok(ParsedName {
        version,
        version_text_len: version_text.len(),
        description: stem.replace('_', " "),
        kind,
    })
}

/// One SQL statement of a file, with the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The statement's text, without the trailing semicolon.
    pub sql: String,
    /// The line of the file where it starts.
    pub line: usize,
}

/// Splits SQL text into statements at top-level semicolons, honouring
/// quotes, quoted identifiers, dollar quoting and comments. Statements made
/// only of comments and white space are dropped.
///
/// Used for `-- no-transaction` files, whose statements must each be sent on
/// their own (PostgreSQL runs a multi-statement string in one implicit
/// transaction, which `CREATE INDEX CONCURRENTLY` refuses), and so that the
/// statement that failed can be named.
pub fn split_statements(sql: &str) -> Vec<Statement> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut i = 0usize;
    let mut has_code = false;
    let mut code_start = 0usize;
    let push = |out: &mut Vec<Statement>, from: usize, to: usize, has_code: bool| {
        if has_code {
            let text = sql[from..to].trim();
            if !text.is_empty() {
                let line = sql[..from].matches('\n').count() + 1;
                out.push(Statement {
                    sql: text.to_string(),
                    line,
                });
            }
        }
    };
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let mut depth = 1;
                i += 2;
                while i < bytes.len() && depth > 0 {
                    if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            _ => {}
        }
        if !b.is_ascii_whitespace() && !has_code {
            has_code = true;
            code_start = i;
        }
        match b {
            b';' => {
                push(&mut out, code_start.max(start), i, has_code);
                has_code = false;
                i += 1;
                start = i;
                continue;
            }
            b'\'' => {
                let escapes = i > 0
                    && matches!(bytes[i - 1], b'e' | b'E')
                    && (i < 2 || !(bytes[i - 2].is_ascii_alphanumeric() || bytes[i - 2] == b'_'));
                i += 1;
                while i < bytes.len() {
                    if escapes && bytes[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if bytes[i] == b'\'' {
                        if bytes.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == b'"' {
                        if bytes.get(i + 1) == Some(&b'"') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
            }
            b'$' => {
                // A dollar quote is $tag$ where tag is empty or an identifier
                // not starting with a digit; $1 is a parameter, not a quote.
                let prev_ident =
                    i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
                let mut j = i + 1;
                while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                    j += 1;
                }
                let tag_ok = !prev_ident
                    && j < bytes.len()
                    && bytes[j] == b'$'
                    && !bytes.get(i + 1).is_some_and(|c| c.is_ascii_digit());
                if tag_ok {
                    let tag = &sql[i..=j];
                    match sql[j + 1..].find(tag) {
                        Some(pos) => i = j + 1 + pos + tag.len() - 1,
                        None => i = bytes.len(),
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    push(&mut out, code_start.max(start), bytes.len(), has_code);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqls(s: &str) -> Vec<String> {
        split_statements(s).into_iter().map(|s| s.sql).collect()
    }

    #[test]
    fn file_names_parse_like_sqlx() {
        let p = parse_file_name("0007_add_api_keys.sql").unwrap();
        assert_eq!(
            (p.version, p.description.as_str(), p.kind),
            (7, "add api keys", FileKind::Simple)
        );
        let p = parse_file_name("20240101120000_tags.up.sql").unwrap();
        assert_eq!((p.version, p.kind), (20240101120000, FileKind::Up));
        assert_eq!(
            parse_file_name("3_x.down.sql").unwrap().kind,
            FileKind::Down
        );
    }

    #[test]
    fn malformed_file_names_are_rejected_with_the_expected_form() {
        for bad in [
            "create.sql",
            "v1_x.sql",
            "0001_.sql",
            "_x.sql",
            "99999999999999999999_x.sql",
        ] {
            let err = parse_file_name(bad).unwrap_err();
            assert!(
                err.contains("expected <version>_<description>.sql"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn checksum_is_sha384_of_the_text() {
        let sum = checksum("select 1;\n");
        assert_eq!(sum.len(), 48);
        assert_eq!(sum, Sha384::digest(b"select 1;\n").to_vec());
    }

    #[test]
    fn splitting_keeps_semicolons_inside_quotes_comments_and_dollar_bodies() {
        let sql = "-- no-transaction\nCREATE INDEX CONCURRENTLY a ON t (x);\n\
                   INSERT INTO t VALUES ('a;b', E'c\\';d', \"we;ird\");\n\
                   /* block; /* nested; */ still */ SELECT 1;\n\
                   CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\n\
                   SELECT $1;\n-- trailing comment;\n";
        assert_eq!(
            sqls(sql),
            vec![
                "CREATE INDEX CONCURRENTLY a ON t (x)",
                "INSERT INTO t VALUES ('a;b', E'c\\';d', \"we;ird\")",
                "SELECT 1",
                "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql",
                "SELECT $1",
            ]
        );
        let lines: Vec<usize> = split_statements(sql).iter().map(|s| s.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6]);
    }

    #[test]
    fn a_file_of_only_comments_has_no_statement() {
        assert!(sqls("-- no-transaction\n-- nothing\n/* x; */\n;\n").is_empty());
    }
}
