//! Schema lifecycle: `create-schema`, `drop-schema`, `tenant add` and
//! `tenant remove`.
//!
//! Dropping is never implicit: the library offers a preview
//! ([`Engine::drop_preview`]) and a drop ([`Engine::drop_schema`]); the
//! command line shows the preview and drops only with `--yes`. System
//! schemas are refused always, the shared and control schemas unless the
//! caller allows them explicitly ([`check_droppable`]).

use std::time::Instant;

use serde::Serialize;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection, Executor, Row};

use crate::copy::{CopyOptions, CopyReport, shell_word};
use crate::db::{self, LockMode};
use crate::engine::{Engine, MigrateOptions, RunReport, Selection};
use crate::error::{Error, Result};
use crate::events::Phase;
use crate::ident::{qualified, quote_ident, validate_schema_name};
use crate::ledger::{Ledger, Record, RunTotals};
use crate::state::SchemaState;

/// True for PostgreSQL's own schemas (`pg_catalog`, `information_schema`,
/// `pg_toast`, `pg_temp_N`, `pg_toast_temp_N`, anything starting `pg_`).
pub fn is_system_schema(name: &str) -> bool {
    name == "information_schema" || name.to_ascii_lowercase().starts_with("pg_")
}

/// Refuses to drop a system schema (always), or the shared or control
/// schema unless `allow_shared`.
pub fn check_droppable(name: &str, settings: &crate::Settings, allow_shared: bool) -> Result<()> {
    if is_system_schema(name) {
        return Err(Error::Usage {
            message: format!("{name:?} is a PostgreSQL system schema; tenantmig never drops it"),
        });
    }
    validate_schema_name(name)?;
    let role = if name == settings.shared_schema {
        Some("the shared schema (shared_schema)")
    } else if name == settings.control_schema {
        Some("tenantmig's control schema (control_schema: run ledger and tenant registry)")
    } else {
        None
    };
    if let (Some(role), false) = (role, allow_shared) {
        return Err(Error::Usage {
            message: format!(
                "{name:?} is {role}; dropping it takes --allow-shared as well as --yes"
            ),
        });
    }
    Ok(())
}

/// One table of a drop preview.
#[derive(Debug, Clone, Serialize)]
pub struct TableSize {
    /// The table.
    pub name: String,
    /// `table`, `partitioned table` or `materialized view`.
    pub kind: String,
    /// The planner's row estimate (`None` when never analyzed).
    pub approx_rows: Option<i64>,
    /// Size with indexes and TOAST.
    pub bytes: i64,
}

/// What dropping a schema would remove.
#[derive(Debug, Clone, Serialize)]
pub struct DropPreview {
    /// The schema.
    pub schema: String,
    /// Its tables, largest first.
    pub tables: Vec<TableSize>,
    /// Total size of its tables.
    pub bytes: i64,
    /// Views, sequences, functions and types, by kind.
    pub other_objects: Vec<(String, i64)>,
    /// Objects in other schemas that depend on it and go too (CASCADE).
    pub dependents: Vec<String>,
    /// True when it is in the tenant registry.
    pub registered: bool,
}

/// The result of `drop-schema` or `tenant remove`.
#[derive(Debug, Clone, Serialize)]
pub struct DropReport {
    /// The schema.
    pub schema: String,
    /// False when it did not exist.
    pub dropped: bool,
    /// True when it was removed from the tenant registry.
    pub unregistered: bool,
    /// The run's id in the ledger.
    pub run_id: Option<i64>,
}

/// How a new tenant was brought to head.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum TenantFill {
    /// By running the tenant migrations.
    Replay {
        /// The migrate run.
        run: Box<RunReport>,
    },
    /// By copying an up-to-date template schema.
    Template {
        /// The copy.
        copy: Box<CopyReport>,
    },
}

/// The result of `tenant add`.
#[derive(Debug, Clone, Serialize)]
pub struct TenantAddReport {
    /// The new tenant schema.
    pub schema: String,
    /// Its version afterwards.
    pub version: Option<i64>,
    /// How it was filled.
    pub fill: TenantFill,
    /// True when it was added to the tenant registry.
    pub registered: bool,
    /// Set when the tenant list comes from a query or pattern instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Wall time.
    pub duration_ms: u64,
}

impl Engine {
    fn registry_in_use(&self) -> bool {
        self.settings.tenants.query.is_none() && self.settings.tenants.pattern.is_none()
    }

    async fn registry_exists(&self, conn: &mut PgConnection) -> Result<bool> {
        let table = qualified(&self.settings.control_schema, "tenants");
        // language=SQL
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(&table)
            .fetch_one(&mut *conn)
            .await
            .map_err(Error::db("looking for the tenant registry"))
    }

    /// Records a one-schema run in the ledger (after the work is done);
    /// `error` is the reason it failed.
    pub async fn record_run(
        &self,
        command: &str,
        args: &[String],
        schema: &str,
        started: Instant,
        error: Option<&str>,
    ) -> Result<i64> {
        let mut conn = self.connection().await?;
        self.ensure_control(&mut conn).await?;
        let led = Ledger::start(
            conn,
            &self.connect,
            &self.settings.control_schema,
            command,
            args,
            started.elapsed(),
        )
        .await?;
        let phase = if schema == self.settings.shared_schema {
            Phase::Shared
        } else {
            Phase::Tenant
        };
        let mut rec = Record::started(schema, phase);
        rec.state = if error.is_some() {
            "failed"
        } else {
            "succeeded"
        }
        .into();
        rec.error = error.map(str::to_string);
        rec.finished_at = Some(chrono::Utc::now());
        rec.duration_ms = Some(started.elapsed().as_millis() as i64);
        led.record(rec);
        let run_id = led.run_id;
        let ok = error.is_none() as i64;
        led.finish(
            if ok == 1 { "succeeded" } else { "failed" },
            &RunTotals {
                total: 1,
                ok,
                failed: 1 - ok,
                skipped: 0,
                stopped: 0,
            },
            error,
        )
        .await?;
        Ok(run_id)
    }

    /// Creates an empty schema. Returns false when it existed and
    /// `if_not_exists` was given.
    pub async fn create_schema(&self, name: &str, if_not_exists: bool) -> Result<bool> {
        if is_system_schema(name) {
            return Err(Error::Usage {
                message: format!("{name:?} is reserved for PostgreSQL's own schemas"),
            });
        }
        validate_schema_name(name)?;
        let mut conn = self.connection().await?;
        let exists = db::schema_exists(&mut conn, name)
            .await
            .map_err(Error::db("looking up the schema"))?;
        if exists {
            if if_not_exists {
                return Ok(false);
            }
            return Err(Error::Usage {
                message: format!(
                    "schema {name:?} already exists; pass --if-not-exists to accept an existing schema"
                ),
            });
        }
        // language=SQL
        conn.execute(AssertSqlSafe(format!(
            "CREATE SCHEMA {}",
            quote_ident(name)
        )))
        .await
        .map_err(Error::db(format!("creating schema {name}")))?;
        Ok(true)
    }

    /// True when the schema exists.
    pub async fn schema_exists(&self, name: &str) -> Result<bool> {
        let mut conn = self.connection().await?;
        db::schema_exists(&mut conn, name)
            .await
            .map_err(Error::db(format!("looking up schema {name}")))
    }

    /// What dropping `name` would remove; `None` when it does not exist.
    pub async fn drop_preview(&self, name: &str) -> Result<Option<DropPreview>> {
        let mut conn = self.connection().await?;
        let doing = format!("reading what schema {name} holds");
        // Table sizes take a lock on each table: a table held by an
        // application's ALTER must not hang the preview past lock_wait.
        db::set_lock_timeout(&mut conn, self.settings.lock_wait)
            .await
            .map_err(Error::db(doing.clone()))?;
        match self.drop_preview_on(&mut conn, name, &doing).await {
            Err(Error::Database { source, .. }) if db::is_lock_timeout(&source) => {
                let who = db::relation_lock_holders(&mut conn, name).await;
                Err(Error::Usage {
                    message: format!(
                        "reading what schema {name} holds waited {} (lock_wait) for its tables{who}; nothing was dropped",
                        humantime::format_duration(self.settings.lock_wait)
                    ),
                })
            }
            other => other,
        }
    }

    async fn drop_preview_on(
        &self,
        conn: &mut PgConnection,
        name: &str,
        doing: &str,
    ) -> Result<Option<DropPreview>> {
        let doing = doing.to_string();
        // language=SQL
        let nsp: Option<i64> =
            sqlx::query_scalar("SELECT oid::int8 FROM pg_catalog.pg_namespace WHERE nspname = $1")
                .bind(name)
                .fetch_optional(&mut *conn)
                .await
                .map_err(Error::db(doing.clone()))?;
        let Some(nsp) = nsp else {
            return Ok(None);
        };
        // language=SQL
        let rows = sqlx::query(
            "SELECT c.relname::text, c.relkind::text, \
                    CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::int8 END, \
                    pg_total_relation_size(c.oid)::int8 \
             FROM pg_catalog.pg_class c \
             WHERE c.relnamespace = $1::int8::oid AND c.relkind IN ('r', 'p', 'm') \
             ORDER BY 4 DESC, 1",
        )
        .bind(nsp)
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::db(doing.clone()))?;
        let mut tables = Vec::with_capacity(rows.len());
        for r in rows {
            let kind: String = r.try_get(1).map_err(Error::db(doing.clone()))?;
            tables.push(TableSize {
                name: r.try_get(0).map_err(Error::db(doing.clone()))?,
                kind: match kind.as_str() {
                    "p" => "partitioned table",
                    "m" => "materialized view",
                    _ => "table",
                }
                .into(),
                approx_rows: r.try_get(2).map_err(Error::db(doing.clone()))?,
                bytes: r.try_get(3).map_err(Error::db(doing.clone()))?,
            });
        }
        // language=SQL
        let other: Vec<(String, i64)> = sqlx::query_as(
            "SELECT k, n FROM ( \
               SELECT 'views' AS k, count(*)::int8 AS n FROM pg_catalog.pg_class \
                 WHERE relnamespace = $1::int8::oid AND relkind = 'v' \
               UNION ALL SELECT 'sequences', count(*)::int8 FROM pg_catalog.pg_class \
                 WHERE relnamespace = $1::int8::oid AND relkind = 'S' \
               UNION ALL SELECT 'functions', count(*)::int8 FROM pg_catalog.pg_proc \
                 WHERE pronamespace = $1::int8::oid \
               UNION ALL SELECT 'types', count(*)::int8 FROM pg_catalog.pg_type t \
                 WHERE typnamespace = $1::int8::oid AND typtype IN ('e', 'd', 'c', 'r') \
                   AND (typtype <> 'c' OR (SELECT relkind FROM pg_catalog.pg_class WHERE oid = t.typrelid) = 'c') \
             ) x WHERE n > 0",
        )
        .bind(nsp)
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::db(doing.clone()))?;
        // Objects elsewhere that a CASCADE would take along.
        // language=SQL
        let dependents: Vec<String> = sqlx::query_scalar(
            "WITH inside AS ( \
               SELECT oid FROM pg_catalog.pg_class WHERE relnamespace = $1::int8::oid \
               UNION ALL SELECT oid FROM pg_catalog.pg_type WHERE typnamespace = $1::int8::oid \
               UNION ALL SELECT oid FROM pg_catalog.pg_proc WHERE pronamespace = $1::int8::oid) \
             , dep AS ( \
               SELECT d.classid, d.objid, \
                      CASE d.classid \
                        WHEN 'pg_rewrite'::regclass THEN (SELECT ev_class FROM pg_catalog.pg_rewrite WHERE oid = d.objid) \
                        WHEN 'pg_attrdef'::regclass THEN (SELECT adrelid FROM pg_catalog.pg_attrdef WHERE oid = d.objid) \
                        WHEN 'pg_trigger'::regclass THEN (SELECT tgrelid FROM pg_catalog.pg_trigger WHERE oid = d.objid) \
                        WHEN 'pg_policy'::regclass THEN (SELECT polrelid FROM pg_catalog.pg_policy WHERE oid = d.objid) \
                        WHEN 'pg_constraint'::regclass THEN (SELECT nullif(conrelid, 0) FROM pg_catalog.pg_constraint WHERE oid = d.objid) \
                      END AS owner_rel \
               FROM pg_catalog.pg_depend d \
               WHERE d.refobjid IN (SELECT oid FROM inside) AND d.deptype = 'n' \
                 AND d.classid <> 'pg_namespace'::regclass) \
             SELECT DISTINCT CASE WHEN classid = 'pg_rewrite'::regclass \
                                  THEN pg_describe_object('pg_class'::regclass, owner_rel, 0) \
                                  ELSE pg_describe_object(classid, objid, 0) END \
             FROM dep \
             WHERE (pg_identify_object(classid, objid, 0)).type IS NOT NULL \
               AND CASE WHEN owner_rel IS NOT NULL \
                        THEN (SELECT relnamespace FROM pg_catalog.pg_class WHERE oid = owner_rel) <> $1::int8::oid \
                        ELSE coalesce((pg_identify_object(classid, objid, 0)).schema, $2) <> $2 END \
             ORDER BY 1 LIMIT 50",
        )
        .bind(nsp)
        .bind(name)
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::db(doing.clone()))?;
        let registered = if self.registry_exists(&mut *conn).await? {
            let table = qualified(&self.settings.control_schema, "tenants");
            // language=SQL
            sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT EXISTS (SELECT 1 FROM {table} WHERE schema_name = $1)"
            )))
            .bind(name)
            .fetch_one(&mut *conn)
            .await
            .map_err(Error::db(doing))?
        } else {
            false
        };
        Ok(Some(DropPreview {
            schema: name.to_string(),
            bytes: tables.iter().map(|t| t.bytes).sum(),
            tables,
            other_objects: other,
            dependents,
            registered,
        }))
    }

    /// Drops `name` and everything in it (CASCADE), and removes it from the
    /// tenant registry, in one transaction under the schema's advisory lock.
    /// The caller has checked [`check_droppable`] and the confirmation.
    pub async fn drop_schema(
        &self,
        name: &str,
        command: &str,
        args: &[String],
    ) -> Result<DropReport> {
        let started = Instant::now();
        let s = &self.settings;
        let mut conn = self.connection().await?;
        // One deadline for the whole drop: the advisory lock, then the
        // table locks of the DROP itself get what is left of lock_wait.
        let deadline = Instant::now() + s.lock_wait;
        match db::acquire(
            &mut conn,
            name,
            LockMode::Exclusive,
            s.lock_wait,
            Some(&s.control_schema),
        )
        .await
        {
            Ok(()) => {}
            Err(db::LockFailure::Busy(message)) => return Err(Error::Usage { message }),
            Err(db::LockFailure::Db(e)) => {
                return Err(Error::db(format!("locking schema {name}"))(e));
            }
        }
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(std::time::Duration::from_millis(1));
        let registry = self.registry_exists(&mut conn).await? && name != s.control_schema;
        let result = async {
            let mut tx = conn.begin().await?;
            // language=SQL
            tx.execute(AssertSqlSafe(format!(
                "SET LOCAL lock_timeout = {}",
                left.as_millis()
            )))
            .await?;
            let dropped = db::schema_exists(&mut tx, name).await?;
            db::drop_schema_cascade(&mut tx, name).await?;
            let mut unregistered = false;
            if registry {
                // language=SQL
                let r = tx
                    .execute(
                        sqlx::query(AssertSqlSafe(format!(
                            "DELETE FROM {} WHERE schema_name = $1",
                            qualified(&s.control_schema, "tenants")
                        )))
                        .bind(name),
                    )
                    .await?;
                unregistered = r.rows_affected() > 0;
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>((dropped, unregistered))
        }
        .await;
        let result = match result {
            Err(e) if db::is_lock_timeout(&e) => {
                let who = db::relation_lock_holders(&mut conn, name).await;
                let _ = db::unlock(&mut conn, name, LockMode::Exclusive).await;
                return Err(Error::Usage {
                    message: format!(
                        "dropping schema {name} waited {} (lock_wait) for its tables{who}; nothing was dropped",
                        humantime::format_duration(s.lock_wait)
                    ),
                });
            }
            other => other,
        };
        let _ = db::unlock(&mut conn, name, LockMode::Exclusive).await;
        let (dropped, unregistered) =
            result.map_err(Error::db(format!("dropping schema {name}")))?;
        let run_id = if name == s.control_schema {
            None
        } else {
            Some(self.record_run(command, args, name, started, None).await?)
        };
        Ok(DropReport {
            schema: name.to_string(),
            dropped,
            unregistered,
            run_id,
        })
    }

    /// Adds a tenant: creates its schema and brings it to head, by running
    /// the tenant migrations or, with `template`, by copying an up-to-date
    /// template schema; then registers it when the registry is the tenant
    /// source. A failure drops the half-made schema again: nothing is left.
    pub async fn tenant_add(
        &self,
        name: &str,
        template: Option<&str>,
        args: &[String],
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<TenantAddReport> {
        let started = Instant::now();
        let s = &self.settings;
        if is_system_schema(name) {
            return Err(Error::Usage {
                message: format!("{name:?} is reserved for PostgreSQL's own schemas"),
            });
        }
        validate_schema_name(name)?;
        if name == s.shared_schema || name == s.control_schema {
            return Err(Error::Usage {
                message: format!(
                    "{name:?} is the shared or control schema; a tenant needs a schema of its own"
                ),
            });
        }
        let mut conn = self.connection().await?;
        if db::schema_exists(&mut conn, name)
            .await
            .map_err(Error::db("looking up the schema"))?
        {
            return Err(Error::Usage {
                message: format!(
                    "schema {name:?} already exists; `tenant add` creates a new tenant schema (to bring an existing one to head, run `tenantmig migrate --tenant {}`)",
                    shell_word(name)
                ),
            });
        }
        let fill = match template {
            Some(t) => {
                self.fill_from_template(&mut conn, name, t, args, started, shutdown)
                    .await?
            }
            None => self.fill_by_replay(&mut conn, name, args, shutdown).await?,
        };
        let st = db::read_status(&mut conn, name, &s.history_table, &self.tenant_set)
            .await
            .map_err(Error::db(format!("reading the history of {name}")))?;
        let mut registered = false;
        let mut note = None;
        if self.registry_in_use() {
            self.ensure_control(&mut conn).await?;
            // language=SQL
            let r = sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {} (schema_name) VALUES ($1) ON CONFLICT DO NOTHING",
                qualified(&s.control_schema, "tenants")
            )))
            .bind(name)
            .execute(&mut conn)
            .await
            .map_err(Error::db(format!("registering tenant {name}")))?;
            registered = r.rows_affected() > 0;
        } else {
            note = Some(format!(
                "tenants come from {}: add {name} there so that migrate finds it",
                if s.tenants.query.is_some() {
                    "tenants.query (the application's own table)"
                } else {
                    "tenants.pattern"
                }
            ));
        }
        if matches!(fill, TenantFill::Template { .. }) {
            self.record_run("tenant add", args, name, started, None)
                .await?;
        }
        let _ = conn.close().await;
        Ok(TenantAddReport {
            schema: name.to_string(),
            version: st.applied_version,
            fill,
            registered,
            note,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// `tenant add --from-template`: the template must be at head; its
    /// copy (structure, rows, history) becomes the tenant.
    async fn fill_from_template(
        &self,
        conn: &mut PgConnection,
        name: &str,
        t: &str,
        args: &[String],
        started: Instant,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<TenantFill> {
        let s = &self.settings;
        validate_schema_name(t)?;
        let found = db::existing_schemas(&mut *conn, &[t.to_string()], &s.history_table)
            .await
            .map_err(Error::db("looking up the template"))?;
        match found.get(t) {
            None => {
                return Err(Error::Usage {
                    message: format!("template schema {t:?} does not exist"),
                });
            }
            Some(false) => {
                return Err(Error::Usage {
                    message: format!(
                        "template schema {t:?} is not up to date with the tenant migrations (it has no history table {}); bring it to head first with `tenantmig migrate --tenant {}`",
                        s.history_table,
                        shell_word(t)
                    ),
                });
            }
            Some(true) => {}
        }
        let st = db::read_status(&mut *conn, t, &s.history_table, &self.tenant_set)
            .await
            .map_err(Error::db(format!("reading the history of template {t}")))?;
        if st.state != SchemaState::UpToDate {
            return Err(Error::Usage {
                message: format!(
                    "template schema {t:?} is not up to date with the tenant migrations ({}); bring it to head first with `tenantmig migrate --tenant {}`",
                    st.state.label(),
                    shell_word(t)
                ),
            });
        }
        let opts = CopyOptions::new(t, name, s.jobs);
        let copy = self.copy_schema(&opts, shutdown).await;
        let copy = match copy {
            Ok(c) => c,
            Err(e) => {
                let msg = e.to_string();
                let _ = self
                    .record_run("tenant add", args, name, started, Some(&msg))
                    .await;
                return Err(e);
            }
        };
        Ok(TenantFill::Template {
            copy: Box::new(copy),
        })
    }

    /// `tenant add` without a template: the tenant migrations run in the
    /// new schema (one `migrate` of that tenant); a tenant that cannot
    /// reach head is removed again, when this run created its schema.
    async fn fill_by_replay(
        &self,
        conn: &mut PgConnection,
        name: &str,
        args: &[String],
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<TenantFill> {
        let s = &self.settings;
        let mut settings = s.clone();
        settings.create_missing_schemas = true;
        let selection = Selection {
            shared: false,
            tenants: true,
            tenant_names: vec![name.to_string()],
            exclude: Vec::new(),
        };
        let engine = Engine {
            settings,
            connect: self.connect.clone(),
            url_masked: self.url_masked.clone(),
            shared_set: self.shared_set.clone(),
            tenant_set: self.tenant_set.clone(),
            sink: self.sink.clone(),
        };
        let opts = MigrateOptions {
            selection,
            canary: 0,
            dry_run: false,
            args: args.to_vec(),
            goal: Default::default(),
        };
        let run = engine.migrate(&opts, shutdown).await?;
        if !run.is_success() {
            let why = run
                .failures()
                .next()
                .and_then(|o| o.error.clone())
                .unwrap_or_else(|| "it was not reached".into());
            // Only a schema this run created is removed again, under
            // its lock: one that another process made (and this run
            // waited for) is not ours to drop.
            let created = run.tenants.iter().any(|o| o.schema == name && o.created);
            let removed = created
                && db::try_lock(&mut *conn, name, LockMode::Exclusive)
                    .await
                    .unwrap_or(false)
                && {
                    let dropped = db::drop_schema_cascade(&mut *conn, name).await.is_ok();
                    let _ = db::unlock(&mut *conn, name, LockMode::Exclusive).await;
                    dropped
                };
            return Err(Error::Failed {
                message: format!(
                    "tenant {name} could not be brought to head ({why}); {}",
                    if removed {
                        "its schema was removed again"
                    } else {
                        "its schema was left alone (this run did not create it)"
                    }
                ),
            });
        }
        Ok(TenantFill::Replay { run: Box::new(run) })
    }
}
