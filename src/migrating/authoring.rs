//! Writing migrations: `tenantmig new` picks the next version and writes
//! the file (or the `.up.sql`/`.down.sql` pair).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::migration::MigrationSet;

/// Versions at or above this are read as timestamps (`YYYYMMDDHHMMSS` has
/// 14 digits; no hand-numbered folder gets near it).
const TIMESTAMP_FROM: i64 = 10_000_000_000;

/// How `tenantmig new` numbers a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum VersionStyle {
    /// As the folder does: timestamps when its last version is one,
    /// otherwise the next number (sequential for an empty folder).
    #[default]
    Auto,
    /// The last version plus one, zero-padded like the folder's files.
    Sequential,
    /// The current UTC time as `YYYYMMDDHHMMSS` (later than the last version).
    Timestamp,
}

/// The version and file name width the next migration of `set` gets.
pub fn next_version(set: &MigrationSet, style: VersionStyle, now: DateTime<Utc>) -> (i64, usize) {
    let head = set.head();
    let timestamps = match style {
        VersionStyle::Auto => head.is_some_and(|h| h >= TIMESTAMP_FROM),
        VersionStyle::Sequential => false,
        VersionStyle::Timestamp => true,
    };
    if timestamps {
        let t: i64 = now
            .format("%Y%m%d%H%M%S")
            .to_string()
            .parse()
            .expect("a timestamp is a number");
        (t.max(head.unwrap_or(0) + 1), 0)
    } else {
        let width = if set.is_empty() { 4 } else { set.version_width };
        (head.unwrap_or(0) + 1, width)
    }
}

/// A description as a file name part: lower case, words joined by `_`.
pub fn slug(description: &str) -> String {
    let mut out = String::new();
    for word in description
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push('_');
        }
        out.push_str(&word.to_lowercase());
    }
    out
}

/// Writes a new migration into `dir`; returns the files written (with
/// `dry_run`, the files it would write, writing nothing).
pub fn new_migration(
    dir: &Path,
    description: &str,
    reversible: bool,
    style: VersionStyle,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<Vec<PathBuf>> {
    let name = slug(description);
    if name.is_empty() {
        return Err(Error::Usage {
            message: format!(
                "the description {description:?} has no letters or digits; describe the change, e.g. \"add tags\""
            ),
        });
    }
    if !dir.is_dir() && !dry_run {
        std::fs::create_dir_all(dir).map_err(|source| Error::MigrationDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let set = if dir.is_dir() {
        MigrationSet::load(dir)?
    } else {
        MigrationSet::default()
    };
    let (version, width) = next_version(&set, style, now);
    let stem = format!("{version:0width$}_{name}");
    let files: Vec<(PathBuf, String)> = if reversible {
        vec![
            (
                dir.join(format!("{stem}.up.sql")),
                format!("-- {description}\n"),
            ),
            (
                dir.join(format!("{stem}.down.sql")),
                format!("-- Undoes {stem}.up.sql\n"),
            ),
        ]
    } else {
        vec![(
            dir.join(format!("{stem}.sql")),
            format!("-- {description}\n"),
        )]
    };
    if dry_run {
        return Ok(files.into_iter().map(|(p, _)| p).collect());
    }
    for (path, text) in &files {
        // create_new: never overwrite a file, even one written meanwhile.
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::MigrationFile {
                path: path.clone(),
                reason: format!("cannot create it: {e}"),
            })?;
        f.write_all(text.as_bytes())
            .map_err(|e| Error::MigrationFile {
                path: path.clone(),
                reason: format!("cannot write it: {e}"),
            })?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::Migration;

    fn set(versions: &[i64], width: usize) -> MigrationSet {
        let mut s = MigrationSet::from_migrations(
            versions
                .iter()
                .map(|v| Migration::new(*v, "x", "select 1"))
                .collect(),
        );
        s.version_width = width;
        s
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().into()
    }

    #[test]
    fn the_next_version_follows_the_folder() {
        let now = at("2026-11-22T10:15:00Z");
        assert_eq!(next_version(&set(&[], 0), VersionStyle::Auto, now), (1, 4));
        assert_eq!(
            next_version(&set(&[1, 9], 4), VersionStyle::Auto, now),
            (10, 4)
        );
        assert_eq!(
            next_version(&set(&[20250101000000], 0), VersionStyle::Auto, now),
            (20261122101500, 0)
        );
        assert_eq!(
            next_version(&set(&[1, 2], 4), VersionStyle::Timestamp, now),
            (20261122101500, 0)
        );
        // A clock behind the last version still moves forward.
        assert_eq!(
            next_version(&set(&[20991231000000], 0), VersionStyle::Auto, now),
            (20991231000001, 0)
        );
    }

    #[test]
    fn descriptions_become_file_name_words() {
        assert_eq!(slug("Add tags to Workflows!"), "add_tags_to_workflows");
        assert_eq!(slug("  --  "), "");
    }

    #[test]
    fn a_new_file_or_pair_is_written_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("0001_a.sql"), "select 1").unwrap();
        let now = at("2026-11-22T10:15:00Z");
        let files =
            new_migration(dir.path(), "add tags", true, VersionStyle::Auto, now, false).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["0002_add_tags.up.sql", "0002_add_tags.down.sql"]);
        let set = MigrationSet::load(dir.path()).unwrap();
        assert!(set.migrations[1].is_reversible());
        let err =
            new_migration(dir.path(), "!!", false, VersionStyle::Auto, now, false).unwrap_err();
        assert!(err.to_string().contains("no letters"), "{err}");
    }
}
