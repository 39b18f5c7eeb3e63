use super::*;
use crate::migration::NO_TX_MARKER;

const FILE: &str = "tenant/0009_x.sql";

const TENANT: Scope = Scope::Tenant {
    shared_schema: "public",
};

fn lint(sql: &str) -> Vec<Finding> {
    lint_sql(Path::new(FILE), sql, false, Scope::Shared)
}

fn lint_no_tx(sql: &str) -> Vec<Finding> {
    lint_sql(Path::new(FILE), sql, true, Scope::Shared)
}

fn lint_tenant(sql: &str) -> Vec<Finding> {
    lint_sql(Path::new(FILE), sql, false, TENANT)
}

/// The findings of the rules about a tenant migration's reach only.
fn reach(sql: &str) -> Vec<Finding> {
    lint_tenant(sql)
        .into_iter()
        .filter(|f| {
            matches!(
                f.rule,
                Rule::SearchPathChange
                    | Rule::DropSchema
                    | Rule::Truncate
                    | Rule::OtherSchemaReference
                    | Rule::SharedSchemaChange
            )
        })
        .collect()
}

fn rules(findings: &[Finding]) -> Vec<Rule> {
    findings.iter().map(|f| f.rule).collect()
}

// index-not-concurrent

#[test]
fn an_index_on_an_existing_table_without_concurrently_is_flagged() {
    let f = lint("CREATE INDEX documents_created_at_idx ON documents (created_at);");
    assert_eq!(rules(&f), [Rule::IndexNotConcurrent]);
    assert_eq!(f[0].severity, Severity::Warning);
    assert!(
        f[0].message.starts_with(
            "CREATE INDEX documents_created_at_idx on existing table documents without CONCURRENTLY"
        ),
        "{}",
        f[0].message
    );
}

#[test]
fn an_index_on_a_table_created_in_the_same_file_is_not_flagged() {
    let sql = "CREATE TABLE documents (id bigint PRIMARY KEY, created_at timestamptz);\n\
               CREATE UNIQUE INDEX documents_created_at_idx ON documents (created_at);";
    assert_eq!(lint(sql), []);
}

#[test]
fn an_index_created_concurrently_in_a_no_transaction_file_is_not_flagged() {
    let sql = "-- no-transaction\nCREATE INDEX CONCURRENTLY documents_created_at_idx ON documents (created_at);";
    assert_eq!(lint_no_tx(sql), []);
}

#[test]
fn an_unqualified_create_covers_a_qualified_index_but_a_qualified_create_covers_only_its_schema() {
    let sql = "CREATE TABLE documents (id bigint);\n\
               CREATE INDEX ON app.documents (id);";
    assert_eq!(lint(sql), []);
    let sql = "CREATE TABLE app.documents (id bigint);\n\
               CREATE INDEX ON app.documents (id);\n\
               CREATE INDEX ON other.documents (id);";
    let f = lint(sql);
    assert_eq!(rules(&f), [Rule::IndexNotConcurrent]);
    assert_eq!(f[0].line, 3);
    assert!(f[0].message.contains("other.documents"), "{}", f[0].message);
}

#[test]
fn table_names_are_compared_as_the_parser_folds_them() {
    let sql = "CREATE TABLE Documents (id bigint);\nCREATE INDEX ON documents (id);";
    assert_eq!(lint(sql), []);
    let sql = "CREATE TABLE \"Documents\" (id bigint);\nCREATE INDEX ON documents (id);";
    assert_eq!(rules(&lint(sql)), [Rule::IndexNotConcurrent]);
}

// concurrently-in-transaction

#[test]
fn create_index_concurrently_in_a_transactional_file_is_an_error() {
    let f = lint("CREATE INDEX CONCURRENTLY executions_status_idx ON executions (status);");
    assert_eq!(rules(&f), [Rule::ConcurrentlyInTransaction]);
    assert_eq!(f[0].severity, Severity::Error);
    assert!(
        f[0].message
            .contains("CREATE INDEX CONCURRENTLY executions_status_idx on executions"),
        "{}",
        f[0].message
    );
}

#[test]
fn drop_index_reindex_and_detach_partition_concurrently_in_a_transactional_file_are_errors() {
    let sql = "DROP INDEX CONCURRENTLY executions_status_idx;\n\
               REINDEX INDEX CONCURRENTLY documents_created_at_idx;\n\
               REINDEX (CONCURRENTLY) TABLE documents;\n\
               ALTER TABLE events DETACH PARTITION events_2023 CONCURRENTLY;";
    let f = lint(sql);
    assert_eq!(rules(&f), [Rule::ConcurrentlyInTransaction; 4]);
    assert_eq!(f.iter().map(|f| f.line).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert!(f[0].message.contains("executions_status_idx"));
    assert!(
        f[1].message
            .contains("REINDEX INDEX CONCURRENTLY documents_created_at_idx")
    );
    assert!(
        f[2].message
            .contains("REINDEX TABLE CONCURRENTLY documents")
    );
    assert!(
        f[3].message
            .contains("DETACH PARTITION events_2023 CONCURRENTLY")
    );
}

#[test]
fn concurrent_operations_in_a_no_transaction_file_are_not_flagged() {
    for sql in [
        "DROP INDEX CONCURRENTLY executions_status_idx;",
        "REINDEX TABLE CONCURRENTLY documents;",
        "ALTER TABLE events DETACH PARTITION events_2023 CONCURRENTLY;",
    ] {
        assert_eq!(lint_no_tx(sql), [], "{sql}");
    }
}

#[test]
fn plain_drop_index_reindex_and_concurrently_false_in_a_transaction_are_not_flagged() {
    let sql = "DROP INDEX executions_status_idx;\n\
               REINDEX TABLE documents;\n\
               REINDEX (CONCURRENTLY false) TABLE documents;\n\
               ALTER TABLE events DETACH PARTITION events_2023;";
    assert_eq!(lint(sql), []);
}

// add-column-not-null-without-default

#[test]
fn a_not_null_column_without_default_on_an_existing_table_is_an_error() {
    let f = lint("ALTER TABLE documents ADD COLUMN status text NOT NULL;");
    assert_eq!(rules(&f), [Rule::AddColumnNotNullWithoutDefault]);
    assert_eq!(f[0].severity, Severity::Error);
    assert!(
        f[0].message
            .starts_with("ADD COLUMN status NOT NULL without DEFAULT on existing table documents"),
        "{}",
        f[0].message
    );
}

#[test]
fn a_primary_key_column_without_default_counts_as_not_null() {
    let f = lint("ALTER TABLE documents ADD COLUMN uid uuid PRIMARY KEY;");
    assert_eq!(rules(&f), [Rule::AddColumnNotNullWithoutDefault]);
}

#[test]
fn a_not_null_column_with_a_default_identity_or_serial_is_not_flagged() {
    for sql in [
        "ALTER TABLE documents ADD COLUMN status text NOT NULL DEFAULT 'draft';",
        "ALTER TABLE documents ADD COLUMN seq bigint NOT NULL GENERATED ALWAYS AS IDENTITY;",
        "ALTER TABLE documents ADD COLUMN seq bigserial NOT NULL;",
        "ALTER TABLE documents ADD COLUMN status text;",
    ] {
        assert_eq!(lint(sql), [], "{sql}");
    }
}

#[test]
fn a_not_null_column_on_a_table_created_in_the_same_file_is_not_flagged() {
    let sql = "CREATE TABLE documents (id bigint);\n\
               ALTER TABLE documents ADD COLUMN status text NOT NULL;";
    assert_eq!(lint(sql), []);
}

// column-type-change

#[test]
fn a_column_type_change_on_an_existing_table_is_flagged() {
    let f = lint("ALTER TABLE executions ALTER COLUMN duration_ms TYPE bigint;");
    assert_eq!(rules(&f), [Rule::ColumnTypeChange]);
    assert!(
        f[0].message
            .starts_with("ALTER COLUMN duration_ms TYPE on existing table executions"),
        "{}",
        f[0].message
    );
}

#[test]
fn a_column_type_change_on_a_table_created_in_the_same_file_is_not_flagged() {
    let sql = "CREATE TABLE executions (duration_ms int);\n\
               ALTER TABLE executions ALTER COLUMN duration_ms TYPE bigint;";
    assert_eq!(lint(sql), []);
}

// constraint-without-not-valid

#[test]
fn a_foreign_key_or_check_without_not_valid_on_an_existing_table_is_flagged() {
    let sql = "ALTER TABLE documents ADD CONSTRAINT documents_organization_id_fkey \
               FOREIGN KEY (organization_id) REFERENCES organizations (id);\n\
               ALTER TABLE executions ADD CHECK (duration_ms >= 0);";
    let f = lint(sql);
    assert_eq!(rules(&f), [Rule::ConstraintWithoutNotValid; 2]);
    assert!(
        f[0].message.starts_with(
            "ADD CONSTRAINT documents_organization_id_fkey FOREIGN KEY on existing table documents without NOT VALID"
        ),
        "{}",
        f[0].message
    );
    assert!(
        f[1].message
            .starts_with("ADD CHECK on existing table executions")
    );
}

#[test]
fn a_column_added_with_references_on_an_existing_table_is_flagged() {
    let f = lint(
        "ALTER TABLE documents ADD COLUMN organization_id bigint REFERENCES organizations (id);",
    );
    assert_eq!(rules(&f), [Rule::ConstraintWithoutNotValid]);
    assert!(
        f[0].message
            .contains("organization_id REFERENCES organizations on existing table documents"),
        "{}",
        f[0].message
    );
}

#[test]
fn a_constraint_with_not_valid_its_validation_or_a_unique_constraint_is_not_flagged() {
    let sql = "ALTER TABLE documents ADD CONSTRAINT documents_organization_id_fkey \
               FOREIGN KEY (organization_id) REFERENCES organizations (id) NOT VALID;\n\
               ALTER TABLE executions ADD CONSTRAINT executions_duration_check \
               CHECK (duration_ms >= 0) NOT VALID;\n\
               ALTER TABLE executions VALIDATE CONSTRAINT executions_duration_check;";
    assert_eq!(lint(sql), []);
}

#[test]
fn constraints_on_a_table_created_in_the_same_file_are_not_flagged() {
    let sql = "CREATE TABLE documents (id bigint, organization_id bigint);\n\
               ALTER TABLE documents ADD FOREIGN KEY (organization_id) REFERENCES organizations (id);\n\
               ALTER TABLE documents ADD COLUMN owner_id bigint REFERENCES users (id);";
    assert_eq!(lint(sql), []);
}

// drop-table

#[test]
fn dropping_an_existing_table_is_flagged_once_per_table() {
    let f = lint("DROP TABLE legacy_exports, app.legacy_imports;");
    assert_eq!(rules(&f), [Rule::DropTable; 2]);
    assert!(f[0].message.starts_with("DROP TABLE legacy_exports "));
    assert!(f[1].message.starts_with("DROP TABLE app.legacy_imports "));
}

#[test]
fn dropping_a_table_created_in_the_same_file_or_another_kind_of_object_is_not_flagged() {
    let sql = "CREATE TABLE scratch (id bigint);\n\
               DROP TABLE scratch;\n\
               DROP VIEW documents_view;\n\
               DROP INDEX documents_created_at_idx;";
    assert_eq!(lint(sql), []);
}

// drop-column

#[test]
fn dropping_a_column_of_an_existing_table_is_flagged() {
    let f = lint("ALTER TABLE documents DROP COLUMN legacy_status;");
    assert_eq!(rules(&f), [Rule::DropColumn]);
    assert!(
        f[0].message
            .starts_with("DROP COLUMN legacy_status on documents"),
        "{}",
        f[0].message
    );
}

#[test]
fn dropping_a_column_of_a_table_created_in_the_same_file_or_a_not_null_is_not_flagged() {
    let sql = "CREATE TABLE documents (id bigint, draft text);\n\
               ALTER TABLE documents DROP COLUMN draft;\n\
               ALTER TABLE executions ALTER COLUMN legacy_status DROP NOT NULL;";
    assert_eq!(lint(sql), []);
}

// rename-table

#[test]
fn renaming_an_existing_table_is_flagged() {
    let f = lint("ALTER TABLE organizations RENAME TO workspaces;");
    assert_eq!(rules(&f), [Rule::RenameTable]);
    assert!(
        f[0].message
            .starts_with("ALTER TABLE organizations RENAME TO workspaces"),
        "{}",
        f[0].message
    );
}

#[test]
fn renaming_a_table_created_in_the_same_file_is_not_flagged_and_it_stays_new() {
    let sql = "CREATE TABLE workspaces_new (id bigint);\n\
               ALTER TABLE workspaces_new RENAME TO workspaces;\n\
               CREATE INDEX ON workspaces (id);\n\
               CREATE VIEW teams AS SELECT * FROM organizations;";
    assert_eq!(lint(sql), []);
}

// rename-column

#[test]
fn renaming_a_column_of_an_existing_table_is_flagged() {
    let f = lint("ALTER TABLE documents RENAME COLUMN name TO title;");
    assert_eq!(rules(&f), [Rule::RenameColumn]);
    assert!(
        f[0].message
            .starts_with("ALTER TABLE documents RENAME COLUMN name TO title"),
        "{}",
        f[0].message
    );
}

#[test]
fn renaming_a_column_of_a_new_table_or_of_a_view_is_not_flagged() {
    let sql = "CREATE TABLE documents (id bigint, name text);\n\
               ALTER TABLE documents RENAME COLUMN name TO title;\n\
               ALTER VIEW documents_view RENAME COLUMN name TO title;";
    assert_eq!(lint(sql), []);
}

// no-transaction-multiple-statements

#[test]
fn a_no_transaction_file_with_two_statements_is_flagged_at_the_second() {
    let sql = "-- no-transaction\n\
               CREATE INDEX CONCURRENTLY executions_started_at_idx ON executions (started_at);\n\
               \n\
               CREATE INDEX CONCURRENTLY executions_document_id_idx ON executions (document_id);\n";
    let f = lint_no_tx(sql);
    assert_eq!(rules(&f), [Rule::NoTransactionMultipleStatements]);
    assert_eq!(f[0].line, 4);
    assert!(f[0].message.contains("2 statements"), "{}", f[0].message);
}

#[test]
fn a_no_transaction_file_with_one_statement_or_a_transactional_file_with_two_is_not_flagged() {
    let one = "-- no-transaction\nCREATE INDEX CONCURRENTLY e_idx ON executions (started_at);";
    assert_eq!(lint_no_tx(one), []);
    let two = "ALTER TABLE documents ADD COLUMN summary text;\n\
               ALTER TABLE documents ADD COLUMN summary_at timestamptz;";
    assert_eq!(lint(two), []);
}

// transaction-control

#[test]
fn begin_and_commit_in_a_migration_are_errors() {
    let f = lint("BEGIN;\nALTER TABLE documents ADD COLUMN summary text;\nCOMMIT;");
    assert_eq!(rules(&f), [Rule::TransactionControl; 2]);
    assert_eq!(f[0].severity, Severity::Error);
    assert_eq!((f[0].line, f[1].line), (1, 3));
    assert!(f[0].message.starts_with("BEGIN "));
    assert!(f[1].message.starts_with("COMMIT "));
}

#[test]
fn savepoints_in_a_migration_are_not_flagged() {
    let sql = "SAVEPOINT before_backfill;\n\
               UPDATE documents SET status = 'draft' WHERE status IS NULL;\n\
               RELEASE SAVEPOINT before_backfill;";
    assert_eq!(lint(sql), []);
}

// parse-error

#[test]
fn a_file_that_does_not_parse_gives_one_parse_error_at_the_offending_token() {
    let sql = "-- Archiving.\n\
               CREATE TABLE archive (id bigint);\n\
               ALTER TABLE documents\n    ADD COLUMN archived boolean NOT NULL DEFALT false;\n\
               DROP TABLE legacy_exports;\n";
    let f = lint(sql);
    assert_eq!(rules(&f), [Rule::ParseError]);
    assert_eq!(f[0].severity, Severity::Error);
    assert_eq!(f[0].message, "syntax error at or near \"DEFALT\"");
    assert_eq!(f[0].line, 4);
}

#[test]
fn a_parse_error_is_placed_at_its_token_when_the_token_occurs_once_in_the_statement() {
    let sql = "SELECT (1);\n\n-- broken\nCREATE TABLE t (\n  a int,\n  b int,\n);";
    let f = lint(sql);
    assert_eq!(rules(&f), [Rule::ParseError]);
    assert_eq!(f[0].message, "syntax error at or near \")\"");
    assert_eq!(f[0].line, 7);
}

#[test]
fn a_parse_error_whose_token_repeats_in_the_statement_is_placed_at_the_statement() {
    let sql = "SELECT 1;\n\n-- broken\nCREATE TABLE t (\n  a int,\n  b numeric(10, 2),\n);";
    let f = lint(sql);
    assert_eq!(rules(&f), [Rule::ParseError]);
    assert_eq!(f[0].message, "syntax error at or near \")\"");
    assert_eq!(f[0].line, 4);
}

#[test]
fn an_unterminated_string_and_an_incomplete_file_are_parse_errors() {
    let f = lint("SELECT 1;\nUPDATE documents SET status = 'draft;\n");
    assert_eq!(rules(&f), [Rule::ParseError]);
    assert!(
        f[0].message.starts_with("unterminated quoted string"),
        "{}",
        f[0].message
    );
    assert_eq!(f[0].line, 2);
    let f = lint("SELECT 1;\n\nALTER TABLE documents ADD COLUMN");
    assert_eq!(rules(&f), [Rule::ParseError]);
    assert_eq!(f[0].message, "syntax error at end of input");
    assert_eq!(f[0].line, 3);
}

#[test]
fn valid_sql_and_an_empty_file_give_no_findings() {
    assert_eq!(lint("SELECT 1;"), []);
    assert_eq!(lint(""), []);
    assert_eq!(lint("-- nothing yet\n"), []);
}

// lines, output and the migration entry point

#[test]
fn a_finding_is_placed_on_the_line_of_its_statement_keyword() {
    let sql = "-- Sorting by creation time.\n\
               /* a block comment\n   over two lines */ CREATE INDEX documents_created_at_idx\n\
               ON documents (created_at);\n\
               /* outer /* nested */ still comment */\n\
               -- next\n\
               \n\
               ALTER TABLE documents DROP COLUMN legacy_status;";
    let f = lint(sql);
    assert_eq!(rules(&f), [Rule::IndexNotConcurrent, Rule::DropColumn]);
    assert_eq!(f[0].line, 3);
    assert_eq!(f[1].line, 8);
}

#[test]
fn lines_count_bytes_correctly_after_multibyte_text() {
    let sql = "COMMENT ON TABLE documents IS 'Dokumente – Übersicht';\n\
               ALTER TABLE documents RENAME COLUMN name TO title;";
    assert_eq!(lint(sql)[0].line, 2);
}

#[test]
fn describe_gives_file_line_severity_rule_message_and_safer_form() {
    let f = lint("\n\nCREATE INDEX documents_created_at_idx ON documents (created_at);");
    assert_eq!(
        f[0].describe(),
        format!(
            "tenant/0009_x.sql:3: warning [index-not-concurrent] {}; safer: {}",
            f[0].message,
            Rule::IndexNotConcurrent.safer()
        )
    );
    assert_eq!(f[0].to_string(), f[0].describe());
}

#[test]
fn rules_serialize_as_their_codes_and_severities_in_snake_case() {
    for rule in Rule::ALL {
        let json = serde_json::to_value(rule).unwrap();
        assert_eq!(json, serde_json::json!(rule.code()));
        assert_eq!(Rule::from_code(rule.code()), Some(*rule));
        assert!(!rule.safer().is_empty() && !rule.safer().ends_with('.'));
    }
    assert_eq!(serde_json::to_value(Severity::Error).unwrap(), "error");
    let f = &lint("DROP TABLE legacy_exports;")[0];
    let json = serde_json::to_value(f).unwrap();
    assert_eq!(json["rule"], "drop-table");
    assert_eq!(json["severity"], "warning");
    assert_eq!(json["line"], 1);
    assert_eq!(json["file"], FILE);
}

#[test]
fn lint_migrations_lints_each_up_file_with_its_path_and_transaction_mode() {
    let mut a = Migration::new(1, "index", "CREATE INDEX CONCURRENTLY i ON documents (id);");
    a.path = PathBuf::from("tenant/0001_index.sql");
    let mut b = Migration::new(
        2,
        "index",
        format!("{NO_TX_MARKER}\nCREATE INDEX CONCURRENTLY j ON documents (id);"),
    );
    b.path = PathBuf::from("tenant/0002_index.sql");
    b.down_sql = Some("BEGIN;".into());
    let f = lint_migrations([&a, &b], TENANT);
    assert_eq!(rules(&f), [Rule::ConcurrentlyInTransaction]);
    assert_eq!(f[0].file, Path::new("tenant/0001_index.sql"));
}

// search-path-change, drop-schema, truncate, other-schema-reference,
// shared-schema-change: tenant migrations only

#[test]
fn changing_search_path_in_a_tenant_migration_is_flagged_but_a_functions_own_is_not() {
    for sql in [
        "SET search_path TO audit;",
        "SET LOCAL search_path = public;",
        "RESET search_path;",
        "RESET ALL;",
        "SELECT set_config('search_path', 'audit', true);",
    ] {
        let f = lint_tenant(sql);
        assert_eq!(rules(&f), [Rule::SearchPathChange], "{sql}");
        assert_eq!(f[0].severity, Severity::Warning);
        assert_eq!(lint(sql), [], "a shared migration: {sql}");
    }
    let sql = "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog AS $$ BEGIN RETURN NEW; END $$;\n\
               SET statement_timeout = '1min';";
    assert_eq!(lint_tenant(sql), []);
}

#[test]
fn drop_schema_in_a_tenant_migration_is_an_error() {
    let f = lint_tenant("DROP SCHEMA IF EXISTS legacy CASCADE;");
    assert_eq!(rules(&f), [Rule::DropSchema]);
    assert_eq!(f[0].severity, Severity::Error);
    assert!(
        f[0].message.starts_with("DROP SCHEMA legacy"),
        "{}",
        f[0].message
    );
    assert_eq!(lint("DROP SCHEMA legacy;"), []);
}

#[test]
fn truncate_of_an_existing_table_in_a_tenant_migration_is_flagged() {
    let f = lint_tenant("TRUNCATE usage_events, api_keys RESTART IDENTITY;");
    assert_eq!(rules(&f), [Rule::Truncate]);
    assert!(
        f[0].message.contains("usage_events, api_keys"),
        "{}",
        f[0].message
    );
    let sql = "CREATE TABLE scratch (id int);\nTRUNCATE scratch;";
    assert_eq!(lint_tenant(sql), []);
}

#[test]
fn names_qualified_with_another_schema_are_flagged_wherever_they_are() {
    for (sql, named) in [
        (
            "INSERT INTO audit.events (kind) VALUES ('x');",
            "audit.events",
        ),
        (
            "SELECT * FROM workflows w JOIN billing.accounts a ON a.id = w.account_id;",
            "billing.accounts",
        ),
        (
            "ALTER TABLE documents ADD COLUMN owner bigint REFERENCES crm.people (id);",
            "crm.people",
        ),
        (
            "CREATE INDEX ON documents USING gin (title extensions.gin_trgm_ops);",
            "extensions.gin_trgm_ops",
        ),
        (
            "ALTER TABLE documents ADD COLUMN uid uuid DEFAULT extensions.uuid_generate_v4();",
            "extensions.uuid_generate_v4",
        ),
        (
            "ALTER TABLE documents ADD COLUMN status shared_types.status;",
            "shared_types.status",
        ),
        ("CREATE SCHEMA reporting;", "schema reporting"),
        (
            "ALTER TABLE documents SET SCHEMA archive;",
            "schema archive",
        ),
        (
            "DROP TRIGGER t ON archive.documents;",
            "archive.documents.t",
        ),
        (
            "CREATE FUNCTION util.f() RETURNS int LANGUAGE sql AS 'SELECT 1';",
            "util.f",
        ),
    ] {
        let f = reach(sql);
        assert_eq!(rules(&f), [Rule::OtherSchemaReference], "{sql}");
        assert!(f[0].message.contains(named), "{sql}: {}", f[0].message);
        assert!(
            lint(sql)
                .iter()
                .all(|f| f.rule != Rule::OtherSchemaReference),
            "a shared migration: {sql}"
        );
    }
}

#[test]
fn system_schemas_and_unqualified_names_are_not_flagged() {
    let sql = "CREATE TABLE notes (id bigint, body text COLLATE pg_catalog.\"default\", at timestamptz DEFAULT pg_catalog.now());\n\
               SELECT count(*) FROM information_schema.tables;\n\
               CREATE TEMP TABLE t (id int);\nINSERT INTO pg_temp.t VALUES (1);\n\
               DROP TRIGGER notes_touch ON notes;\n\
               COMMENT ON COLUMN notes.body IS 'text';\n\
               SELECT extract(epoch FROM now()), 1::int, 'x'::varchar(3);";
    assert_eq!(lint_tenant(sql), []);
}

#[test]
fn changing_the_shared_schema_is_flagged_but_reading_or_referencing_it_is_not() {
    for (sql, named) in [
        (
            "ALTER TABLE public.plans ADD COLUMN seats int;",
            "public.plans",
        ),
        (
            "INSERT INTO public.plans (name) VALUES ('pro');",
            "public.plans",
        ),
        (
            "UPDATE public.organizations SET active = true;",
            "public.organizations",
        ),
        (
            "CREATE TABLE public.tenant_copies (id int);",
            "public.tenant_copies",
        ),
        ("CREATE INDEX ON public.users (email);", "public.users"),
        ("GRANT SELECT ON public.plans TO reporting;", "public.plans"),
        (
            "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1';",
            "public.f",
        ),
        ("DROP TABLE IF EXISTS public.legacy;", "public.legacy"),
    ] {
        let f = reach(sql);
        assert_eq!(rules(&f), [Rule::SharedSchemaChange], "{sql}");
        assert!(f[0].message.contains(named), "{sql}: {}", f[0].message);
    }
    for sql in [
        "CREATE TABLE subscriptions (id bigint, plan_id bigint REFERENCES public.plans (id));",
        "INSERT INTO workflows (plan) SELECT name FROM public.plans;",
        "CREATE VIEW my_plans AS SELECT * FROM public.plans;",
        "ALTER TABLE documents ADD COLUMN kind public.doc_kind;",
        "CREATE TRIGGER t BEFORE UPDATE ON documents FOR EACH ROW EXECUTE FUNCTION public.touch();",
        "SELECT public.refresh_counts();",
    ] {
        assert_eq!(lint_tenant(sql), [], "{sql}");
    }
}

#[test]
fn every_fixture_triggers_its_rule_and_its_clean_form_gives_no_finding() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/lint");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        let code = dir.file_name().unwrap().to_str().unwrap().to_string();
        let rule = Rule::from_code(&code).unwrap_or_else(|| panic!("no rule {code}"));
        for (name, want) in [("trigger.sql", Some(rule)), ("clean.sql", None)] {
            let path = dir.join(name);
            let sql = std::fs::read_to_string(&path).unwrap();
            let f = lint_sql(&path, &sql, sql.starts_with(NO_TX_MARKER), TENANT);
            match want {
                Some(rule) => assert!(
                    !f.is_empty() && f.iter().all(|f| f.rule == rule),
                    "{}: {f:#?}",
                    path.display()
                ),
                None => assert_eq!(f, [], "{}", path.display()),
            }
        }
        seen.push(rule);
    }
    seen.sort();
    assert_eq!(seen, Rule::ALL);
}
