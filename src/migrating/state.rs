//! The state of a schema, computed from its history rows against a
//! migration set: a pure function, tested without a database.

use serde::Serialize;

use crate::migration::MigrationSet;

/// One row of a schema's history table, as far as checking needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedRow {
    /// The applied version.
    pub version: i64,
    /// The checksum recorded when it was applied.
    pub checksum: Vec<u8>,
    /// False while a `-- no-transaction` migration runs, or after it failed.
    pub success: bool,
    /// The row was marked failed before its `-- no-transaction` down file
    /// ran (tenantmig records `execution_time = -2` then): a false row is
    /// then an interrupted rollback, not a failed migration.
    pub reverting: bool,
}

/// The state of one schema, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaState {
    /// The name was refused (not a valid schema name).
    InvalidName,
    /// The schema does not exist.
    Missing,
    /// A `-- no-transaction` migration failed or was interrupted there.
    Failed,
    /// An applied migration's file was edited since.
    ChecksumMismatch,
    /// A version is applied that no local file has.
    UnknownVersion,
    /// Some migrations are pending.
    Behind,
    /// Every migration is applied.
    UpToDate,
}

impl SchemaState {
    /// The label used in human output.
    pub fn label(self) -> &'static str {
        match self {
            SchemaState::InvalidName => "invalid name",
            SchemaState::Missing => "missing schema",
            SchemaState::Failed => "failed",
            SchemaState::ChecksumMismatch => "checksum mismatch",
            SchemaState::UnknownVersion => "unknown version applied",
            SchemaState::Behind => "behind",
            SchemaState::UpToDate => "up to date",
        }
    }

    /// True for states a migration run refuses to touch.
    pub fn is_refused(self) -> bool {
        matches!(
            self,
            SchemaState::InvalidName
                | SchemaState::Failed
                | SchemaState::ChecksumMismatch
                | SchemaState::UnknownVersion
        )
    }
}

/// Something wrong with a schema's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// The history row's checksum differs from the local file's.
    ChecksumMismatch {
        /// The version.
        version: i64,
        /// Hex checksum recorded in the schema.
        applied: String,
        /// Hex checksum of the local file.
        local: String,
    },
    /// The history names a version no local file has.
    UnknownVersion {
        /// The version.
        version: i64,
    },
    /// A row with success = false: a `-- no-transaction` migration failed
    /// or was interrupted.
    Dirty {
        /// The version.
        version: i64,
        /// True when it was its down file, in a rollback, that failed or
        /// was interrupted.
        reverting: bool,
    },
}

impl Problem {
    /// A one-line description.
    pub fn describe(&self, set: &MigrationSet) -> String {
        match self {
            Problem::ChecksumMismatch {
                version,
                applied,
                local,
            } => format!(
                "migration {} was edited after it was applied: checksum applied {}…, file {}…",
                set.fmt_version(*version),
                &applied[..applied.len().min(16)],
                &local[..local.len().min(16)]
            ),
            Problem::UnknownVersion { version } => format!(
                "version {} is applied but no local migration file has it",
                set.fmt_version(*version)
            ),
            Problem::Dirty {
                version,
                reverting: false,
            } => format!(
                "migration {} (no-transaction) failed or was interrupted; fix the schema by hand, then run `tenantmig repair`",
                set.fmt_version(*version)
            ),
            Problem::Dirty {
                version,
                reverting: true,
            } => format!(
                "the rollback of migration {} (its no-transaction .down.sql) failed or was interrupted; finish or undo it by hand, then run `tenantmig repair` (--clear when it is reverted, --mark-applied when it is not)",
                set.fmt_version(*version)
            ),
        }
    }
}

/// What a schema's history says against the local migration set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaStatus {
    /// The schema.
    pub schema: String,
    /// Its state.
    pub state: SchemaState,
    /// The highest successfully applied version.
    pub applied_version: Option<i64>,
    /// Versions of the set not yet applied, ascending.
    pub pending: Vec<i64>,
    /// What is wrong, when the state is a refused one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
    /// Extra detail (the failed statement of a dirty schema, a refusal reason).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl SchemaStatus {
    /// A schema that does not exist: everything is pending.
    pub fn missing(schema: impl Into<String>, set: &MigrationSet) -> Self {
        SchemaStatus {
            schema: schema.into(),
            state: SchemaState::Missing,
            applied_version: None,
            pending: set.migrations.iter().map(|m| m.version).collect(),
            problems: Vec::new(),
            detail: None,
        }
    }

    /// A name that was refused before any SQL.
    pub fn invalid(schema: impl Into<String>, reason: String) -> Self {
        SchemaStatus {
            schema: schema.into(),
            state: SchemaState::InvalidName,
            applied_version: None,
            pending: Vec::new(),
            problems: Vec::new(),
            detail: Some(reason),
        }
    }
}

/// Accumulates history rows of one schema and yields its [`SchemaStatus`].
///
/// Rows may come in any order. Memory is one flag per local migration while
/// checking, and only the pending versions and problems afterwards.
#[derive(Debug)]
pub struct Checker<'a> {
    set: &'a MigrationSet,
    applied: Vec<bool>,
    problems: Vec<Problem>,
    max_applied: Option<i64>,
}

impl<'a> Checker<'a> {
    /// Starts checking against `set`.
    pub fn new(set: &'a MigrationSet) -> Self {
        Checker {
            set,
            applied: vec![false; set.len()],
            problems: Vec::new(),
            max_applied: None,
        }
    }

    /// Takes one history row into account.
    pub fn push(&mut self, row: &AppliedRow) {
        if !row.success {
            self.problems.push(Problem::Dirty {
                version: row.version,
                reverting: row.reverting,
            });
            return;
        }
        match self.set.index_of(row.version) {
            None => self.problems.push(Problem::UnknownVersion {
                version: row.version,
            }),
            Some(i) => {
                let local = &self.set.migrations[i].checksum;
                if *local != row.checksum {
                    self.problems.push(Problem::ChecksumMismatch {
                        version: row.version,
                        applied: hex::encode(&row.checksum),
                        local: hex::encode(local),
                    });
                }
                self.applied[i] = true;
                self.max_applied = self.max_applied.max(Some(row.version));
            }
        }
    }

    /// The schema's status.
    pub fn finish(mut self, schema: impl Into<String>) -> SchemaStatus {
        self.problems.sort_by_key(|p| match p {
            Problem::Dirty { version, .. } => (0, *version),
            Problem::ChecksumMismatch { version, .. } => (1, *version),
            Problem::UnknownVersion { version } => (2, *version),
        });
        let pending: Vec<i64> = self
            .set
            .migrations
            .iter()
            .zip(&self.applied)
            .filter(|(_, a)| !**a)
            .map(|(m, _)| m.version)
            .collect();
        let state = match self.problems.first() {
            Some(Problem::Dirty { .. }) => SchemaState::Failed,
            Some(Problem::ChecksumMismatch { .. }) => SchemaState::ChecksumMismatch,
            Some(Problem::UnknownVersion { .. }) => SchemaState::UnknownVersion,
            None if pending.is_empty() => SchemaState::UpToDate,
            None => SchemaState::Behind,
        };
        SchemaStatus {
            schema: schema.into(),
            state,
            applied_version: self.max_applied,
            pending,
            problems: self.problems,
            detail: None,
        }
    }
}

/// Where a run takes each schema: what `migrate`, `migrate --target` and
/// `rollback` have in common is the same plan, fan-out, locks and ledger;
/// only the versions each schema runs differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Goal {
    /// Every pending migration (plain `migrate`).
    #[default]
    Head,
    /// Forward, up to and including `version` (`migrate --target`).
    UpTo {
        /// The last version to apply.
        version: i64,
    },
    /// Record versions up to and including `version` as applied without
    /// running them (`stamp`), to adopt schemas another tool built.
    Stamp {
        /// The last version to record.
        version: i64,
    },
    /// Backward (`rollback`): undo applied migrations with their
    /// `.down.sql`, newest first.
    Revert {
        /// Undo every applied version above this one (0: all of them).
        target: Option<i64>,
        /// Undo this many applied versions per schema.
        steps: Option<usize>,
    },
}

impl Goal {
    /// True for a rollback.
    pub fn is_revert(self) -> bool {
        matches!(self, Goal::Revert { .. })
    }

    /// True for a stamp (history rows only, no SQL).
    pub fn is_stamp(self) -> bool {
        matches!(self, Goal::Stamp { .. })
    }

    /// The command recorded in the run ledger.
    pub fn command(self) -> &'static str {
        match self {
            Goal::Head | Goal::UpTo { .. } => "migrate",
            Goal::Stamp { .. } => "stamp",
            Goal::Revert { .. } => "rollback",
        }
    }

    /// Rewrites a schema's `pending` to the versions this goal runs there,
    /// in the order they run: ascending to apply, descending to revert.
    /// Refused schemas are left as they are.
    pub fn apply(self, st: &mut SchemaStatus, set: &MigrationSet) {
        if st.state.is_refused() {
            return;
        }
        match self {
            Goal::Head => {}
            Goal::UpTo { version } | Goal::Stamp { version } => {
                st.pending.retain(|v| *v <= version);
                if st.state == SchemaState::Behind && st.pending.is_empty() {
                    st.state = SchemaState::UpToDate;
                }
            }
            Goal::Revert { target, steps } => {
                let mut undo: Vec<i64> = if st.state == SchemaState::Missing {
                    Vec::new()
                } else {
                    applied_versions(st, set)
                };
                undo.reverse();
                if let Some(t) = target {
                    undo.retain(|v| *v > t);
                }
                if let Some(n) = steps {
                    undo.truncate(n);
                }
                st.pending = undo;
                if st.state != SchemaState::Missing {
                    st.state = if st.pending.is_empty() {
                        SchemaState::UpToDate
                    } else {
                        SchemaState::Behind
                    };
                }
            }
        }
    }
}

/// The versions applied in a schema that is not refused, ascending: every
/// version of the set that is not pending (a refused schema may have
/// applied versions the set lacks, and is never reverted).
pub fn applied_versions(st: &SchemaStatus, set: &MigrationSet) -> Vec<i64> {
    set.migrations
        .iter()
        .map(|m| m.version)
        .filter(|v| st.pending.binary_search(v).is_err())
        .collect()
}

/// Checks a schema's whole history at once (see [`Checker`]).
pub fn check_schema(schema: &str, set: &MigrationSet, rows: &[AppliedRow]) -> SchemaStatus {
    let mut c = Checker::new(set);
    for r in rows {
        c.push(r);
    }
    c.finish(schema)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::Migration;

    fn set() -> MigrationSet {
        MigrationSet::from_migrations(vec![
            Migration::new(1, "a", "create table a();"),
            Migration::new(2, "b", "create table b();"),
            Migration::new(3, "c", "create table c();"),
        ])
    }

    fn row(set: &MigrationSet, v: i64) -> AppliedRow {
        AppliedRow {
            version: v,
            checksum: set.migrations[set.index_of(v).unwrap()].checksum.clone(),
            success: true,
            reverting: false,
        }
    }

    #[test]
    fn a_schema_with_every_version_applied_is_up_to_date() {
        let s = set();
        let st = check_schema("t", &s, &[row(&s, 3), row(&s, 1), row(&s, 2)]);
        assert_eq!(
            (st.state, st.applied_version, st.pending.len()),
            (SchemaState::UpToDate, Some(3), 0)
        );
    }

    #[test]
    fn missing_versions_are_pending_even_below_the_highest_applied() {
        let s = set();
        let st = check_schema("t", &s, &[row(&s, 1), row(&s, 3)]);
        assert_eq!(
            (st.state, st.pending.clone()),
            (SchemaState::Behind, vec![2])
        );
    }

    #[test]
    fn an_edited_applied_migration_is_a_checksum_mismatch_with_both_sums() {
        let s = set();
        let mut r = row(&s, 2);
        r.checksum = vec![0xab; 48];
        let st = check_schema("t", &s, &[row(&s, 1), r]);
        assert_eq!(st.state, SchemaState::ChecksumMismatch);
        match &st.problems[0] {
            Problem::ChecksumMismatch {
                version,
                applied,
                local,
            } => {
                assert_eq!(*version, 2);
                assert!(applied.starts_with("abab"));
                assert_eq!(local, &hex::encode(&s.migrations[1].checksum));
            }
            p => panic!("{p:?}"),
        }
        assert!(st.state.is_refused());
    }

    #[test]
    fn an_unknown_applied_version_is_reported() {
        let s = set();
        let st = check_schema(
            "t",
            &s,
            &[
                row(&s, 1),
                AppliedRow {
                    version: 9,
                    checksum: vec![1],
                    success: true,
                    reverting: false,
                },
            ],
        );
        assert_eq!(st.state, SchemaState::UnknownVersion);
        assert_eq!(st.problems, vec![Problem::UnknownVersion { version: 9 }]);
    }

    #[test]
    fn a_false_row_makes_the_schema_failed_before_anything_else() {
        let s = set();
        let mut bad = row(&s, 2);
        bad.checksum = vec![0; 48];
        let st = check_schema(
            "t",
            &s,
            &[
                row(&s, 1),
                bad,
                AppliedRow {
                    version: 3,
                    checksum: s.migrations[2].checksum.clone(),
                    success: false,
                    reverting: false,
                },
            ],
        );
        assert_eq!(st.state, SchemaState::Failed);
        assert_eq!(
            st.problems[0],
            Problem::Dirty {
                version: 3,
                reverting: false
            }
        );
    }

    #[test]
    fn an_empty_history_has_everything_pending() {
        let s = set();
        let st = check_schema("t", &s, &[]);
        assert_eq!(
            (st.state, st.pending.clone(), st.applied_version),
            (SchemaState::Behind, vec![1, 2, 3], None)
        );
    }

    #[test]
    fn a_target_keeps_only_the_versions_up_to_it() {
        let s = set();
        let mut st = check_schema("t", &s, &[row(&s, 1)]);
        Goal::UpTo { version: 2 }.apply(&mut st, &s);
        assert_eq!(
            (st.state, st.pending.clone()),
            (SchemaState::Behind, vec![2])
        );
        let mut st = check_schema("t", &s, &[row(&s, 1), row(&s, 2)]);
        Goal::UpTo { version: 2 }.apply(&mut st, &s);
        assert_eq!(st.state, SchemaState::UpToDate);
    }

    #[test]
    fn a_rollback_undoes_applied_versions_newest_first_down_to_the_target() {
        let s = set();
        let all = [row(&s, 1), row(&s, 2), row(&s, 3)];
        let mut st = check_schema("t", &s, &all);
        Goal::Revert {
            target: Some(1),
            steps: None,
        }
        .apply(&mut st, &s);
        assert_eq!(
            (st.state, st.pending.clone()),
            (SchemaState::Behind, vec![3, 2])
        );
        let mut st = check_schema("t", &s, &all);
        Goal::Revert {
            target: Some(0),
            steps: None,
        }
        .apply(&mut st, &s);
        assert_eq!(st.pending, vec![3, 2, 1]);
        let mut st = check_schema("t", &s, &[row(&s, 1), row(&s, 2)]);
        Goal::Revert {
            target: None,
            steps: Some(1),
        }
        .apply(&mut st, &s);
        assert_eq!(st.pending, vec![2]);
    }

    #[test]
    fn a_rollback_leaves_refused_schemas_and_schemas_already_below_the_target_alone() {
        let s = set();
        let mut st = check_schema("t", &s, &[row(&s, 1)]);
        Goal::Revert {
            target: Some(2),
            steps: None,
        }
        .apply(&mut st, &s);
        assert_eq!((st.state, st.pending.len()), (SchemaState::UpToDate, 0));
        let mut bad = row(&s, 1);
        bad.checksum = vec![0; 48];
        let mut st = check_schema("t", &s, &[bad]);
        Goal::Revert {
            target: Some(0),
            steps: None,
        }
        .apply(&mut st, &s);
        assert_eq!(st.state, SchemaState::ChecksumMismatch);
    }
}
