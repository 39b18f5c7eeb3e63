//! Migration files: reading a folder into a [`MigrationSet`].
//!
//! File names follow sqlx: `<version>_<description>.sql`, or a reversible
//! pair `<version>_<description>.up.sql` / `.down.sql`. The checksum is the
//! SHA-384 of the (up) file's bytes, as sqlx computes it, so history rows
//! written by sqlx and by tenantmig agree. A UTF-8 byte-order mark at the
//! start of a file is left out of its SQL but kept in its checksum.

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
    /// SHA-384 of the file's bytes (a byte-order mark included), as sqlx
    /// records it in the history table; of `sql` for a migration built in
    /// memory.
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

    /// The path of the `.down.sql` of a reversible pair.
    pub fn down_path(&self) -> PathBuf {
        let name = self.path.to_string_lossy();
        match name.strip_suffix(".up.sql") {
            Some(stem) => PathBuf::from(format!("{stem}.down.sql")),
            None => self.path.clone(),
        }
    }

    /// Refuses a file that runs in a transaction and ends, starts or
    /// prepares one itself ([`transaction_control`]): the up file, or the
    /// `.down.sql` with `down`. A `-- no-transaction` file may hold such
    /// statements.
    ///
    /// This runs before anything is applied, whatever the `lint` setting and
    /// in builds without the `lint` feature: such a file breaks the promise
    /// that a migration and its history row commit together.
    pub fn check_transaction_control(&self, down: bool) -> Result<()> {
        let (sql, no_tx, path) = if down {
            match &self.down_sql {
                Some(sql) => (sql.as_str(), self.down_no_tx(), self.down_path()),
                None => return Ok(()),
            }
        } else {
            (self.sql.as_str(), self.no_tx, self.path.clone())
        };
        if no_tx {
            return Ok(());
        }
        match transaction_control(sql) {
            None => Ok(()),
            Some(tc) => Err(Error::MigrationFile {
                path,
                reason: format!(
                    "line {}: {} in a file that runs in one transaction: it would end the transaction tenantmig opens, so the file and its history row would no longer commit together. Remove it (each migration already runs all or nothing with its history row), or make `{NO_TX_MARKER}` the first line of the file to run it statement by statement outside a transaction; nothing was changed",
                    tc.line, tc.keyword
                ),
            }),
        }
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
            let Some(name) = migration_file_name(&path)? else {
                continue;
            };
            let parsed = parse_file_name(&name).map_err(|reason| Error::MigrationFile {
                path: path.clone(),
                reason,
            })?;
            width = width.max(parsed.version_text_len);
            let (sql, raw_checksum) = read_sql(&path)?;
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
                    m.checksum = raw_checksum;
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

/// The name of a migration file of a folder, or `None` for a file that is
/// not one (not ending in `.sql` in any case). A name that is not UTF-8, or
/// whose `.sql` (or `.up.sql`, `.down.sql`) is not in lower case, is refused:
/// neither sqlx nor tenantmig would ever run the file, and ignoring it
/// silently would leave a migration out without anyone knowing.
fn migration_file_name(path: &Path) -> Result<Option<String>> {
    let Some(os_name) = path.file_name() else {
        return Ok(None);
    };
    let lossy = os_name.to_string_lossy();
    let lower = lossy.to_lowercase();
    if !lower.ends_with(".sql") {
        return Ok(None);
    }
    let refuse = |reason: String| {
        Err(Error::MigrationFile {
            path: path.to_path_buf(),
            reason,
        })
    };
    let Some(name) = os_name.to_str() else {
        return refuse(
            "its name is not valid UTF-8, so it would never run; rename it to <version>_<description>.sql in UTF-8".into(),
        );
    };
    for ext in [".up.sql", ".down.sql", ".sql"] {
        if lower.ends_with(ext) {
            if !name.ends_with(ext) {
                let stem = &name[..name.len() - ext.len()];
                return refuse(format!(
                    "its extension is not {ext} in lower case, so it would never run (sqlx and tenantmig read only {ext} files); rename it to {stem}{ext}"
                ));
            }
            break;
        }
    }
    Ok(Some(name.to_string()))
}

/// The UTF-8 byte-order mark some Windows editors put at the start of a file.
const BOM: &str = "\u{feff}";

/// A migration file's SQL and its checksum. A UTF-8 byte-order mark at the
/// start is removed from the SQL (it is not valid SQL, and it would hide a
/// `-- no-transaction` first line), with a warning naming the file; the
/// checksum stays that of the file's bytes, BOM included, which is what
/// sqlx records, so both tools agree on the schemas either migrated.
fn read_sql(path: &Path) -> Result<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::MigrationFile {
        path: path.to_path_buf(),
        reason: format!("cannot read it: {e}"),
    })?;
    let sum = Sha384::digest(&bytes).to_vec();
    let text = String::from_utf8(bytes).map_err(|e| Error::MigrationFile {
        path: path.to_path_buf(),
        reason: format!("it is not UTF-8 text ({e}); save it as UTF-8"),
    })?;
    let text = match text.strip_prefix(BOM) {
        Some(rest) => {
            tracing::warn!(
                "{}: removed the UTF-8 byte-order mark at the start of the file before reading its SQL (the checksum is still that of the file's bytes, as sqlx records it); save the file without a BOM to silence this warning",
                path.display()
            );
            rest.to_string()
        }
        None => text,
    };
    Ok((text, sum))
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
/// quotes, quoted identifiers, dollar quoting, comments, parentheses (a
/// rule's `DO (...; ...)` actions) and the `BEGIN ATOMIC ... END` body of a
/// `CREATE FUNCTION` or `CREATE PROCEDURE`, as psql does. Statements made
/// only of comments and white space are dropped.
///
/// Used for `-- no-transaction` files, whose statements must each be sent on
/// their own (PostgreSQL runs a multi-statement string in one implicit
/// transaction, which `CREATE INDEX CONCURRENTLY` refuses), so that the
/// statement that failed can be named, and to find transaction control
/// statements ([`transaction_control`]).
pub fn split_statements(sql: &str) -> Vec<Statement> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut i = 0usize;
    let mut has_code = false;
    let mut code_start = 0usize;
    let mut parens = 0usize;
    let mut body = AtomicBody::default();
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
        if let Some(end) = comment_end(bytes, i) {
            i = end;
            continue;
        }
        if !b.is_ascii_whitespace() && !has_code {
            has_code = true;
            code_start = i;
        }
        match b {
            b';' if parens == 0 && body.depth == 0 => {
                push(&mut out, code_start.max(start), i, has_code);
                has_code = false;
                body = AtomicBody::default();
                i += 1;
                start = i;
                continue;
            }
            b'(' => parens += 1,
            b')' => parens = parens.saturating_sub(1),
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
            b if is_word_start(b) && (i == 0 || !is_word_byte(bytes[i - 1])) => {
                let end = word_end(bytes, i);
                body.word(&sql[i..end], parens);
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    push(&mut out, code_start.max(start), bytes.len(), has_code);
    out
}

/// Where the comment starting at `i` ends (`--` to the end of the line,
/// `/* */` nested), or `None` when no comment starts there.
fn comment_end(bytes: &[u8], i: usize) -> Option<usize> {
    match bytes[i] {
        b'-' if bytes.get(i + 1) == Some(&b'-') => {
            let mut j = i;
            while j < bytes.len() && bytes[j] != b'\n' {
                j += 1;
            }
            Some(j)
        }
        b'/' if bytes.get(i + 1) == Some(&b'*') => {
            let mut depth = 1;
            let mut j = i + 2;
            while j < bytes.len() && depth > 0 {
                if bytes[j] == b'/' && bytes.get(j + 1) == Some(&b'*') {
                    depth += 1;
                    j += 2;
                } else if bytes[j] == b'*' && bytes.get(j + 1) == Some(&b'/') {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            Some(j)
        }
        _ => None,
    }
}

/// A byte that starts an unquoted word (letters, `_`, any non-ASCII byte).
fn is_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

/// A byte inside an unquoted word (also digits and `$`).
fn is_word_byte(b: u8) -> bool {
    is_word_start(b) || b.is_ascii_digit() || b == b'$'
}

fn word_end(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && is_word_byte(bytes[i]) {
        i += 1;
    }
    i
}

/// psql's rule for the SQL-standard body of a function or procedure: in a
/// statement that starts `CREATE [OR REPLACE] FUNCTION|PROCEDURE`, a `BEGIN`
/// outside parentheses opens a body that its `END` closes (a `CASE` inside
/// it also ends with `END`), and semicolons inside it do not end the
/// statement.
#[derive(Default)]
struct AtomicBody {
    /// The first letters of the statement's first words, when they are
    /// `create`, `or`, `replace`, `function` or `procedure` (else 0).
    lead: [u8; 4],
    /// Words seen in the statement.
    words: usize,
    /// `BEGIN`s (and `CASE`s inside them) not yet closed by `END`.
    depth: usize,
}

impl AtomicBody {
    fn word(&mut self, word: &str, parens: usize) {
        let w = word.to_ascii_lowercase();
        if self.words < self.lead.len()
            && matches!(
                w.as_str(),
                "create" | "or" | "replace" | "function" | "procedure"
            )
        {
            self.lead[self.words] = w.as_bytes()[0];
        }
        self.words += 1;
        let routine = |c: u8| c == b'f' || c == b'p';
        let in_routine = self.lead[0] == b'c'
            && (routine(self.lead[1])
                || (self.lead[1] == b'o' && self.lead[2] == b'r' && routine(self.lead[3])));
        if !in_routine || parens > 0 {
            return;
        }
        match w.as_str() {
            "begin" => self.depth += 1,
            "case" if self.depth > 0 => self.depth += 1,
            "end" if self.depth > 0 => self.depth -= 1,
            _ => {}
        }
    }
}

/// A statement that ends, starts or prepares a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionControl {
    /// Its leading keywords as written, upper-cased (`COMMIT`, `START
    /// TRANSACTION`, `ROLLBACK AND CHAIN`...).
    pub keyword: String,
    /// The line of the file where it starts (1-based).
    pub line: usize,
}

/// The first top-level statement of `sql` that ends, starts or prepares a
/// transaction: `BEGIN`, `START TRANSACTION`, `COMMIT` (also `COMMIT AND
/// CHAIN`, `COMMIT PREPARED`), `END`, `ROLLBACK` (but not `ROLLBACK TO
/// SAVEPOINT`, which stays inside the transaction), `ABORT` or `PREPARE
/// TRANSACTION`. Words inside strings, comments, dollar-quoted bodies and
/// `BEGIN ATOMIC` bodies do not count (the statements are found by
/// [`split_statements`]).
///
/// Such a statement in a file that runs in a transaction ends or splits the
/// transaction tenantmig opened, so the file and its history row no longer
/// commit together.
pub fn transaction_control(sql: &str) -> Option<TransactionControl> {
    split_statements(sql).into_iter().find_map(|st| {
        let words = leading_words(&st.sql, 6);
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        match w.as_slice() {
            ["BEGIN" | "COMMIT" | "END" | "ABORT", ..]
            | ["START" | "PREPARE", "TRANSACTION", ..] => {}
            ["ROLLBACK", "TO", ..] | ["ROLLBACK", "WORK" | "TRANSACTION", "TO", ..] => return None,
            ["ROLLBACK", ..] => {}
            _ => return None,
        }
        // The keywords for the message: `COMMIT AND CHAIN`, not the rest.
        let shown = 1 + w[1..]
            .iter()
            .take_while(|x| {
                matches!(
                    **x,
                    "TRANSACTION" | "WORK" | "AND" | "NO" | "CHAIN" | "PREPARED"
                )
            })
            .count();
        Some(TransactionControl {
            keyword: w[..shown].join(" "),
            line: st.line,
        })
    })
}

/// Up to `n` leading words of a statement, upper-cased, comments skipped.
fn leading_words(sql: &str, n: usize) -> Vec<String> {
    let bytes = sql.as_bytes();
    let mut words = Vec::new();
    let mut i = 0;
    while i < bytes.len() && words.len() < n {
        if let Some(end) = comment_end(bytes, i) {
            i = end;
        } else if bytes[i].is_ascii_whitespace() {
            i += 1;
        } else if is_word_start(bytes[i]) {
            let end = word_end(bytes, i);
            words.push(sql[i..end].to_ascii_uppercase());
            i = end;
        } else {
            break;
        }
    }
    words
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
    fn a_name_in_upper_case_or_not_utf8_is_refused_not_ignored() {
        for (name, named) in [
            ("0001_a.SQL", "rename it to 0001_a.sql"),
            ("0001_a.Sql", "rename it to 0001_a.sql"),
            ("0001_a.UP.sql", "rename it to 0001_a.up.sql"),
            ("0001_a.down.SQL", "rename it to 0001_a.down.sql"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(name), "SELECT 1;").unwrap();
            let err = MigrationSet::load(dir.path()).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(named), "{name}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("README.md"), "not a migration").unwrap();
        std::fs::write(dir.path().join("0001_a.sql~"), "a backup").unwrap();
        assert!(MigrationSet::load(dir.path()).unwrap().is_empty());
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            let name = std::ffi::OsStr::from_bytes(b"0002_caf\xe9.sql");
            std::fs::write(dir.path().join(name), "SELECT 1;").unwrap();
            let err = MigrationSet::load(dir.path()).unwrap_err().to_string();
            assert!(
                err.contains("0002_caf") && err.contains("not valid UTF-8"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_byte_order_mark_is_left_out_of_the_sql_but_kept_in_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let raw = format!("{BOM}{NO_TX_MARKER}\nCREATE INDEX CONCURRENTLY i ON t (x);\n");
        std::fs::write(dir.path().join("0001_i.sql"), &raw).unwrap();
        let set = MigrationSet::load(dir.path()).unwrap();
        let m = &set.migrations[0];
        assert!(m.no_tx, "the BOM hid the -- no-transaction line");
        assert!(m.sql.starts_with(NO_TX_MARKER));
        assert_eq!(m.checksum, Sha384::digest(raw.as_bytes()).to_vec());
        assert_ne!(m.checksum, checksum(&m.sql));
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
    fn splitting_keeps_begin_atomic_bodies_and_parenthesised_rule_actions_whole() {
        let sql = "CREATE OR REPLACE FUNCTION f(x int) RETURNS int LANGUAGE sql\n\
                   BEGIN ATOMIC\n  SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END;\n  SELECT 2;\nEND;\n\
                   CREATE PROCEDURE p() BEGIN ATOMIC INSERT INTO t VALUES (1); END;\n\
                   CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO u VALUES (1); INSERT INTO u VALUES (2));\n\
                   CREATE TABLE begin_end (begin int, \"end\" int);\nSELECT 3;";
        let got = sqls(sql);
        assert_eq!(got.len(), 5, "{got:#?}");
        assert!(got[0].ends_with("SELECT 2;\nEND"), "{}", got[0]);
        assert!(got[1].ends_with("VALUES (1); END"), "{}", got[1]);
        assert!(got[2].ends_with("VALUES (2))"), "{}", got[2]);
        assert_eq!(got[4], "SELECT 3");
    }

    #[test]
    fn transaction_control_statements_are_found_with_their_line() {
        for (sql, keyword, line) in [
            ("CREATE TABLE t (id int);\nCOMMIT;", "COMMIT", 2),
            ("BEGIN;\nCREATE TABLE t (id int);", "BEGIN", 1),
            (
                "begin transaction isolation level serializable;",
                "BEGIN TRANSACTION",
                1,
            ),
            ("SELECT 1;\n\n  start transaction;", "START TRANSACTION", 3),
            ("SELECT 1; COMMIT AND CHAIN;", "COMMIT AND CHAIN", 1),
            ("SELECT 1;\n/* done */ END;", "END", 2),
            ("SELECT 1;\nABORT;", "ABORT", 2),
            ("SELECT 1;\nROLLBACK;", "ROLLBACK", 2),
            (
                "SELECT 1;\nrollback work and no chain;",
                "ROLLBACK WORK AND NO CHAIN",
                2,
            ),
            ("PREPARE TRANSACTION 'x';", "PREPARE TRANSACTION", 1),
            ("COMMIT PREPARED 'x';", "COMMIT PREPARED", 1),
            ("-- a comment; BEGIN;\nCOMMIT /* why */ ;", "COMMIT", 2),
        ] {
            let tc = transaction_control(sql).unwrap_or_else(|| panic!("{sql}"));
            assert_eq!((tc.keyword.as_str(), tc.line), (keyword, line), "{sql}");
        }
    }

    #[test]
    fn transaction_words_in_strings_comments_bodies_and_savepoints_are_not_transaction_control() {
        for sql in [
            "INSERT INTO t VALUES ('COMMIT;'), (E'x\\';COMMIT;');",
            "-- COMMIT;\n/* BEGIN; /* nested */ ROLLBACK; */ SELECT 1;",
            "DO $$ BEGIN PERFORM 1; END $$;",
            "CREATE FUNCTION f() RETURNS trigger AS $body$\nBEGIN\n  RETURN NEW;\nEND;\n$body$ LANGUAGE plpgsql;",
            "CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;",
            "SAVEPOINT s; ROLLBACK TO SAVEPOINT s; ROLLBACK WORK TO s; RELEASE SAVEPOINT s;",
            "CREATE TABLE \"commit\" (begin_at date, \"end\" int); SELECT begin_at AS end_at FROM \"commit\";",
            "PREPARE q AS SELECT 1;",
        ] {
            assert_eq!(transaction_control(sql), None, "{sql}");
        }
    }

    #[test]
    fn a_transactional_file_with_commit_is_refused_naming_file_line_and_no_transaction() {
        let mut m = Migration::new(3, "x", "CREATE TABLE t (id int);\nCOMMIT;\n");
        m.path = PathBuf::from("tenant/0003_x.up.sql");
        let err = m.check_transaction_control(false).unwrap_err().to_string();
        assert!(err.contains("tenant/0003_x.up.sql"), "{err}");
        assert!(err.contains("line 2: COMMIT"), "{err}");
        assert!(err.contains(NO_TX_MARKER), "{err}");
        let ok = Migration::new(4, "y", format!("{NO_TX_MARKER}\nSELECT 1;\nCOMMIT;"));
        assert!(ok.check_transaction_control(false).is_ok());
        m.down_sql = Some("BEGIN;\nDROP TABLE t;".into());
        m.sql = "SELECT 1;".into();
        m.no_tx = false;
        assert!(m.check_transaction_control(false).is_ok());
        let err = m.check_transaction_control(true).unwrap_err().to_string();
        assert!(
            err.contains("tenant/0003_x.down.sql") && err.contains("line 1: BEGIN"),
            "{err}"
        );
    }

    #[test]
    fn a_file_of_only_comments_has_no_statement() {
        assert!(sqls("-- no-transaction\n-- nothing\n/* x; */\n;\n").is_empty());
    }
}
