//! Loading a version, the steps of each phase and the plan of a move.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Row};

use super::files::Expect;
use super::store::StepRow;
use super::{
    CHECK, COPY, CREATE, Loaded, MIGRATE, MoveOptions, MovePlan, SchemaMove, StepPlan, files, store,
};
use crate::config::{Strategy, VersionSettings};
use crate::db;
use crate::engine::{Engine, Selection, describe_db_error};
use crate::error::{Error, Result};
use crate::events::Phase;
use crate::ident::validate_schema_name;
use crate::migration::MigrationSet;
use crate::state::{SchemaState, SchemaStatus};

impl Engine {
    pub(super) fn load_version(&self, name: &str) -> Result<Loaded> {
        let v = self.settings.version(name)?.clone();
        let set = |f: &Option<crate::config::Folders>, default: &std::path::Path| {
            let dirs = f
                .as_ref()
                .map(|f| f.paths())
                .unwrap_or_else(|| vec![default.to_path_buf()]);
            MigrationSet::load_all(&dirs)
        };
        let shared_set = set(&v.shared_migrations, &self.settings.shared_migrations)?;
        let tenant_set = if v.consolidates() {
            MigrationSet::default()
        } else {
            set(&v.tenant_migrations, &self.settings.tenant_migrations)?
        };
        // The version's schemas are built with these files: one that ends
        // or starts a transaction itself is refused before anything runs.
        for m in shared_set.migrations.iter().chain(&tenant_set.migrations) {
            m.check_transaction_control(false)?;
        }
        let shared_moves = match &v.shared_moves {
            Some(d) => files::load(d, false)?,
            None => Vec::new(),
        };
        let tenant_moves = match &v.tenant_moves {
            Some(d) => files::load(d, true)?,
            None => Vec::new(),
        };
        if tenant_moves
            .iter()
            .any(|m| files::uses(&m.sql, "tenant_id"))
            && v.tenant_id_query.is_none()
        {
            return Err(Error::Config {
                message: format!(
                    "[versions.{name}]: the tenant data-move files use {{tenant_id}}; set tenant_id_query to a query returning each tenant's schema name and id"
                ),
            });
        }
        Ok(Loaded {
            v,
            shared_set: Arc::new(shared_set),
            tenant_set: Arc::new(tenant_set),
            shared_moves,
            tenant_moves,
        })
    }

    fn steps_for(&self, l: &Loaded, phase: Phase) -> Vec<StepPlan> {
        let (set, moves) = match phase {
            Phase::Shared => (&l.shared_set, &l.shared_moves),
            Phase::Tenant => (&l.tenant_set, &l.tenant_moves),
        };
        let consolidated = phase == Phase::Tenant && l.v.consolidates();
        let mut out = Vec::new();
        match l.v.strategy {
            Strategy::Clone => out.push(StepPlan {
                step: COPY.into(),
                what: "copy-into-new-schema from the source (rows counted table by table)".into(),
                sql: Vec::new(),
            }),
            Strategy::Reshape if !consolidated => out.push(StepPlan {
                step: CREATE.into(),
                what: "create the target schema".into(),
                sql: Vec::new(),
            }),
            Strategy::Reshape => {}
        }
        if !consolidated && !set.is_empty() {
            out.push(StepPlan {
                step: MIGRATE.into(),
                what: format!(
                    "apply the version's pending {} migrations (up to {})",
                    phase.as_str(),
                    set.head()
                        .map(|h| set.fmt_version(h).to_string())
                        .unwrap_or_default()
                ),
                sql: set
                    .migrations
                    .iter()
                    .map(|m| (m.path.display().to_string(), m.sql.clone()))
                    .collect(),
            });
        }
        for m in moves {
            out.push(StepPlan {
                step: m.step.clone(),
                what: format!(
                    "data move {} (one transaction; {}{})",
                    m.path.display(),
                    match &m.expect {
                        Expect::Query(q) => format!("rows written must equal {q}"),
                        Expect::Unchecked => "rows not checked".into(),
                    },
                    m.copies
                        .iter()
                        .map(|c| format!("; copies {} -> {}", c.source, c.target))
                        .collect::<String>()
                ),
                sql: vec![(m.path.display().to_string(), m.sql.clone())],
            });
        }
        out.push(StepPlan {
            step: CHECK.into(),
            what: match (phase, consolidated) {
                (Phase::Shared, _) => {
                    "after the tenants: counts, foreign keys valid, sequences past the copied ids"
                        .into()
                }
                (Phase::Tenant, true) => format!(
                    "count the tenant's rows in every table declared by -- copies: or of the same name{}",
                    l.v.tenant_column
                        .as_deref()
                        .map(|c| format!(" (WHERE {c} = the tenant's id)"))
                        .unwrap_or_default()
                ),
                (Phase::Tenant, false) => {
                    "counts, foreign keys valid, sequences past the copied ids".into()
                }
            },
            sql: Vec::new(),
        });
        out
    }

    /// The plan of a move: what each schema has left to do, or why it
    /// cannot move. Reads only.
    pub async fn move_plan(&self, opts: &MoveOptions) -> Result<MovePlan> {
        let loaded = self.load_version(&opts.version)?;
        let mut conn = self.connection().await?;
        self.plan_with(&mut conn, &loaded, opts).await
    }

    pub(super) async fn plan_with(
        &self,
        conn: &mut PgConnection,
        l: &Loaded,
        opts: &MoveOptions,
    ) -> Result<MovePlan> {
        let s = &self.settings;
        let v = &l.v;
        let version = opts.version.as_str();
        let selection = Selection {
            shared: true,
            tenants: true,
            ..opts.selection.clone()
        };
        let status = self.status_with(conn, &selection).await?;
        let (done, created, cut) = self.move_records(conn, version).await?;
        if let Some((state, _)) = &cut
            && state == "live"
        {
            return Err(Error::Usage {
                message: format!(
                    "version {version} is live (cut over); there is nothing to move. To move again, revert first: tenantmig cutover {version} --revert"
                ),
            });
        }
        let ids = match &v.tenant_id_query {
            Some(q) => tenant_ids(conn, q).await?,
            None => HashMap::new(),
        };
        let needs_id = l
            .tenant_moves
            .iter()
            .any(|m| files::uses(&m.sql, "tenant_id"));
        let shared_steps = self.steps_for(l, Phase::Shared);
        let tenant_steps = self.steps_for(l, Phase::Tenant);
        let names = |steps: &[StepPlan]| steps.iter().map(|p| p.step.clone()).collect::<Vec<_>>();
        let done_of = |source: &str| -> Vec<String> {
            done.get(source)
                .map(|m| {
                    m.values()
                        .filter(|r| r.state == "done")
                        .map(|r| r.step.clone())
                        .collect()
                })
                .unwrap_or_default()
        };

        // Targets that exist: each must be one this move created.
        let mut targets: Vec<String> = vec![v.shared_schema.clone()];
        if !v.consolidates() {
            targets.extend(status.tenants.iter().map(|t| v.tenant_target(&t.schema)));
        }
        let existing = db::existing_schemas(conn, &targets, &s.history_table)
            .await
            .map_err(Error::db("looking up the target schemas"))?;
        let foreign = |target: &str| existing.contains_key(target) && !created.contains(target);

        let shared_src = status.shared.as_ref().expect("shared selected");
        let mut shared = SchemaMove {
            source: s.shared_schema.clone(),
            target: v.shared_schema.clone(),
            phase: Phase::Shared,
            tenant_id: None,
            steps: names(&shared_steps),
            done: done_of(&s.shared_schema),
            refused: None,
        };
        shared.refused = shared_refusal(v, shared_src, foreign(&v.shared_schema), version);
        if let Some(r) = &shared.refused {
            return Err(Error::Usage {
                message: format!("cannot move to {version}: {r}"),
            });
        }

        let mut tenants = Vec::with_capacity(status.tenants.len());
        for t in &status.tenants {
            let target = v.tenant_target(&t.schema);
            let mut m = SchemaMove {
                source: t.schema.clone(),
                target: target.clone(),
                phase: Phase::Tenant,
                tenant_id: ids.get(&t.schema).cloned(),
                steps: names(&tenant_steps),
                done: done_of(&t.schema),
                refused: None,
            };
            m.refused = if let Some(r) = self.tenant_state_refusal(v, t) {
                Some(r)
            } else if let Err(e) = validate_schema_name(&target) {
                Some(format!("its target name is not usable: {e}"))
            } else if !v.consolidates() && foreign(&target) {
                Some(format!(
                    "the target schema {target} exists and was not created by migrate-to {version}; drop or rename it"
                ))
            } else if needs_id && m.tenant_id.is_none() {
                Some(format!(
                    "tenant_id_query returned no id for {}; the data-move files need {{tenant_id}}",
                    t.schema
                ))
            } else {
                None
            };
            tenants.push(m);
        }
        let to_create = to_create(v, &tenants, |t| existing.contains_key(t));
        Ok(MovePlan {
            version: version.to_string(),
            strategy: v.strategy,
            consolidates: v.consolidates(),
            shared,
            tenants,
            to_create,
            shared_steps,
            tenant_steps,
            source: status.source.unwrap_or_default(),
        })
    }

    /// What the control schema knows of the move to `version`: each
    /// source's step checkpoints, the schemas the move created, and its
    /// cut-over. Nothing before the first move.
    async fn move_records(&self, conn: &mut PgConnection, version: &str) -> Result<MoveRecords> {
        let c = &self.settings.control_schema;
        if !crate::ledger::ledger_exists(conn, c).await? || !self.has_move_tables(conn).await? {
            return Ok(Default::default());
        }
        Ok((
            store::steps(conn, c, version)
                .await
                .map_err(Error::db("reading the move's checkpoints"))?,
            store::created(conn, c, version)
                .await
                .map_err(Error::db("reading the move's schemas"))?
                .into_iter()
                .map(|(n, _)| n)
                .collect::<HashSet<String>>(),
            store::cutover(conn, c, version)
                .await
                .map_err(Error::db("reading the version's cut-over"))?,
        ))
    }

    /// Why a tenant cannot move, from its state alone, or None.
    fn tenant_state_refusal(&self, v: &VersionSettings, t: &SchemaStatus) -> Option<String> {
        if t.state == SchemaState::InvalidName {
            Some(t.detail.clone().unwrap_or_else(|| "invalid name".into()))
        } else if t.state == SchemaState::Missing {
            Some(format!("schema {} does not exist", t.schema))
        } else if t.state.is_refused() {
            Some(format!(
                "its history is {} ({}); see tenantmig status",
                t.state.label(),
                t.detail.clone().unwrap_or_default()
            ))
        } else if v.strategy == Strategy::Reshape && t.state != SchemaState::UpToDate {
            Some(format!(
                "it is {} (at {}) for the current tenant migrations; data moves are written for their head: run tenantmig migrate --tenant {} first",
                t.state.label(),
                t.applied_version
                    .map(|v| self.tenant_set.fmt_version(v).to_string())
                    .unwrap_or_else(|| "nothing".into()),
                t.schema
            ))
        } else {
            None
        }
    }

    pub(super) async fn has_move_tables(&self, conn: &mut PgConnection) -> Result<bool> {
        // language=SQL
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(crate::ident::qualified(
                &self.settings.control_schema,
                "move_steps",
            ))
            .fetch_one(&mut *conn)
            .await
            .map_err(Error::db("looking for the move tables"))
    }
}

/// `tenant_id_query`'s rows: schema name to id (as text).
async fn tenant_ids(conn: &mut PgConnection, query: &str) -> Result<HashMap<String, String>> {
    // language=SQL
    let sql = format!("SELECT q.s::text, q.i::text FROM ({query}) AS q(s, i)");
    let rows = sqlx::query(AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| Error::Config {
            message: format!(
                "tenant_id_query failed: {}; it must return two columns, the tenant's schema name and its id",
                describe_db_error(&e)
            ),
        })?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            Some((
                r.get::<Option<String>, _>(0)?,
                r.get::<Option<String>, _>(1)?,
            ))
        })
        .collect())
}

/// Each source's step checkpoints, the schemas the move created, and the
/// version's cut-over (state and renames), as the control schema has them.
type MoveRecords = (
    HashMap<String, HashMap<String, StepRow>>,
    HashSet<String>,
    Option<(String, Vec<(String, String)>)>,
);

/// Why the shared schema cannot move, or None. `foreign`: its target
/// exists and was not created by this move.
fn shared_refusal(
    v: &VersionSettings,
    src: &SchemaStatus,
    foreign: bool,
    version: &str,
) -> Option<String> {
    if foreign {
        Some(format!(
            "the target schema {} exists and was not created by migrate-to {version}; drop or rename it, or choose another shared_schema",
            v.shared_schema
        ))
    } else if src.state == SchemaState::Missing {
        Some(format!("the shared schema {} does not exist", src.schema))
    } else if src.state.is_refused()
        || (v.strategy == Strategy::Reshape && src.state != SchemaState::UpToDate)
    {
        Some(format!(
            "the shared schema {} is {} for the current shared migrations; data moves are written for their head: run tenantmig migrate --shared-only first",
            src.schema,
            src.state.label()
        ))
    } else {
        None
    }
}

/// The target schemas the move will create: the shared one and, unless the
/// version consolidates, every tenant's that may move, when they do not
/// exist yet.
fn to_create(
    v: &VersionSettings,
    tenants: &[SchemaMove],
    exists: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut to_create = Vec::new();
    if !exists(&v.shared_schema) {
        to_create.push(v.shared_schema.clone());
    }
    if !v.consolidates() {
        to_create.extend(
            tenants
                .iter()
                .filter(|t| t.refused.is_none() && !exists(&t.target))
                .map(|t| t.target.clone()),
        );
    }
    to_create
}
