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
pub use crate::migrating::statements::{
    Statement, TransactionControl, split_statements, transaction_control,
};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
